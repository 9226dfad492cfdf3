"""Moved to :mod:`stablesal.core.multiple_testing`; this alias is kept for one release."""

import sys

from .core import multiple_testing as _moved

sys.modules[__name__] = _moved
