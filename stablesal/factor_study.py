"""Moved to :mod:`stablesal.studies.factors.run`; this alias is kept for one release."""

import sys

from .studies.factors import run as _moved

sys.modules[__name__] = _moved
