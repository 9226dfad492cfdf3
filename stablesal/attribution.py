"""Moved to :mod:`stablesal.explain.gradient.methods`; this alias is kept for one release."""

import sys

from .explain.gradient import methods as _moved

sys.modules[__name__] = _moved
