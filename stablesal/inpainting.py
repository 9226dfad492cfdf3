"""Moved to :mod:`stablesal.explain.inpainting`; this alias is kept for one release."""

import sys

from .explain import inpainting as _moved

sys.modules[__name__] = _moved
