"""Moved to :mod:`stablesal.report.sections.common`; this alias is kept for one release."""

import sys

from .report.sections import common as _moved

sys.modules[__name__] = _moved
