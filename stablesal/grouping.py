"""Moved to :mod:`stablesal.explain.grouping`; this alias is kept for one release."""

import sys

from .explain import grouping as _moved

sys.modules[__name__] = _moved
