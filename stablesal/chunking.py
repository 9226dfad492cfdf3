"""Moved to :mod:`stablesal.core.chunking`; this alias is kept for one release."""

import sys

from .core import chunking as _moved

sys.modules[__name__] = _moved
