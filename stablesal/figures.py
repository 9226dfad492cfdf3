"""Moved to :mod:`stablesal.report.figures`; this alias is kept for one release."""

import sys

from .report import figures as _moved

sys.modules[__name__] = _moved
