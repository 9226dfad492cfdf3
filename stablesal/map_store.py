"""Moved to :mod:`stablesal.studies.stability.map_store`; this alias is kept for one release."""

import sys

from .studies.stability import map_store as _moved

sys.modules[__name__] = _moved
