"""Moved to :mod:`stablesal.models.training`; this alias is kept for one release."""

import sys

from .models import training as _moved

sys.modules[__name__] = _moved
