"""Moved to :mod:`stablesal.core.executor`; this alias is kept for one release."""

import sys

from .core import executor as _moved

sys.modules[__name__] = _moved
