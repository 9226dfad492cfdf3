"""Moved to :mod:`stablesal.pipeline.config`; this alias is kept for one release."""

import sys

from .pipeline import config as _moved

sys.modules[__name__] = _moved
