"""Moved to :mod:`stablesal.core.imaging`; this alias is kept for one release."""

import sys

from .core import imaging as _moved

sys.modules[__name__] = _moved
