"""Moved to :mod:`stablesal.studies.removal.fill_quality`; this alias is kept for one release."""

import sys

from .studies.removal import fill_quality as _moved

sys.modules[__name__] = _moved
