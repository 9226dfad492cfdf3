"""Moved to :mod:`stablesal.core.registry`; this alias is kept for one release."""

import sys

from .core import registry as _moved

sys.modules[__name__] = _moved
