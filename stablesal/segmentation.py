"""Moved to :mod:`stablesal.explain.segmentation`; this alias is kept for one release."""

import sys

from .explain import segmentation as _moved

sys.modules[__name__] = _moved
