"""Moved to :mod:`stablesal.core.fills`; this alias is kept for one release."""

import sys

from .core import fills as _moved

sys.modules[__name__] = _moved
