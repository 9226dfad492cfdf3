"""Moved to :mod:`stablesal.studies.factors.effects`; this alias is kept for one release."""

import sys

from .studies.factors import effects as _moved

sys.modules[__name__] = _moved
