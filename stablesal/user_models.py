"""Moved to :mod:`stablesal.models.user_models`; this alias is kept for one release."""

import sys

from .models import user_models as _moved

sys.modules[__name__] = _moved
