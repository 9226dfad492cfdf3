"""Moved to :mod:`stablesal.core.tables`; this alias is kept for one release."""

import sys

from .core import tables as _moved

sys.modules[__name__] = _moved
