"""Moved to :mod:`stablesal.explain.perturbation`; this alias (and those of its submodules,
``stablesal.perturbation.samplers`` etc.) is kept for one release."""

import sys

from .explain import perturbation as _moved
from .explain.perturbation import calculators, features, pipeline, presets, replacement, samplers

sys.modules[__name__] = _moved
for _name in ('calculators', 'features', 'pipeline', 'presets', 'replacement', 'samplers'):
    sys.modules[f"{__name__}.{_name}"] = getattr(_moved, _name)
