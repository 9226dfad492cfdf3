"""Moved to :mod:`stablesal.explain.gradient.sampling`; this alias is kept for one release."""

import sys

from .explain.gradient import sampling as _moved

sys.modules[__name__] = _moved
