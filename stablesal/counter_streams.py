"""Moved to :mod:`stablesal.core.counter_streams`; this alias is kept for one release."""

import sys

from .core import counter_streams as _moved

sys.modules[__name__] = _moved
