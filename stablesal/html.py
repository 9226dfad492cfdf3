"""Moved to :mod:`stablesal.report.html`; this alias is kept for one release."""

import sys

from .report import html as _moved

sys.modules[__name__] = _moved
