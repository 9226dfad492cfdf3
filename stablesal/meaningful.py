"""Moved to :mod:`stablesal.explain.perturbation.meaningful`; this alias is kept for one release."""

import sys

from .explain.perturbation import meaningful as _moved

sys.modules[__name__] = _moved
