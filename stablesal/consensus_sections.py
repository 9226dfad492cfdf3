"""Moved to :mod:`stablesal.report.sections.consensus`; this alias is kept for one release."""

import sys

from .report.sections import consensus as _moved

sys.modules[__name__] = _moved
