"""Moved to :mod:`stablesal.core.checks`; this alias is kept for one release."""

import sys

from .core import checks as _moved

sys.modules[__name__] = _moved
