"""Moved to :mod:`stablesal.core.settings`; this alias is kept for one release."""

import sys

from .core import settings as _moved

sys.modules[__name__] = _moved
