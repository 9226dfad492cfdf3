"""Moved to :mod:`stablesal.studies.stability.run`; this alias is kept for one release."""

import sys

from .studies.stability import run as _moved

sys.modules[__name__] = _moved
