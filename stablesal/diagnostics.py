"""Moved to :mod:`stablesal.explain.gradient.diagnostics`; this alias is kept for one release."""

import sys

from .explain.gradient import diagnostics as _moved

sys.modules[__name__] = _moved
