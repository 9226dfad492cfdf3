"""Moved to :mod:`stablesal.studies.consensus.run`; this alias is kept for one release."""

import sys

from .studies.consensus import run as _moved

sys.modules[__name__] = _moved
