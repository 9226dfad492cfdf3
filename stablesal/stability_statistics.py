"""Moved to :mod:`stablesal.studies.stability.statistics`; this alias is kept for one release."""

import sys

from .studies.stability import statistics as _moved

sys.modules[__name__] = _moved
