"""Moved to :mod:`stablesal.studies.removal.run`; this alias is kept for one release."""

import sys

from .studies.removal import run as _moved

sys.modules[__name__] = _moved
