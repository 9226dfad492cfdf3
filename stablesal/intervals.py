"""Moved to :mod:`stablesal.core.intervals`; this alias is kept for one release."""

import sys

from .core import intervals as _moved

sys.modules[__name__] = _moved
