"""Moved to :mod:`stablesal.studies.folds.run`; this alias is kept for one release."""

import sys

from .studies.folds import run as _moved

sys.modules[__name__] = _moved
