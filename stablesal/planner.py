"""Moved to :mod:`stablesal.studies.consensus.planner`; this alias is kept for one release."""

import sys

from .studies.consensus import planner as _moved

sys.modules[__name__] = _moved
