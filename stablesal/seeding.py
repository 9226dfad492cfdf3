"""Moved to :mod:`stablesal.core.seeding`; this alias is kept for one release."""

import sys

from .core import seeding as _moved

sys.modules[__name__] = _moved
