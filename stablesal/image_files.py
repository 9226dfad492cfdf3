"""Moved to :mod:`stablesal.data.image_files`; this alias is kept for one release."""

import sys

from .data import image_files as _moved

sys.modules[__name__] = _moved
