"""Moved to :mod:`stablesal.core.storage`; this alias is kept for one release."""

import sys

from .core import storage as _moved

sys.modules[__name__] = _moved
