"""Moved to :mod:`stablesal.report.sections.stability`; this alias is kept for one release."""

import sys

from .report.sections import stability as _moved

sys.modules[__name__] = _moved
