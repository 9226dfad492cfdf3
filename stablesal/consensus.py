"""Moved to :mod:`stablesal.studies.consensus.test`; this alias is kept for one release."""

import sys

from .studies.consensus import test as _moved

sys.modules[__name__] = _moved
