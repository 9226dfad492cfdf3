"""Perturbation explanations as one composable pipeline (SEG-SMOOTH, docs/methods.md §4).

Stages, one module each: :mod:`.features` (segmenter, mask smoothing) → :mod:`.samplers` →
:mod:`.replacement` → :mod:`.pipeline` (batched model outputs, maps) with :mod:`.calculators`;
:mod:`.presets` holds the factories ``rise``, ``lime``, ``kernel_shap``, ``occlusion``, ``pda`` and
``ciu`` (also under the papers' names, ``RISE``, ``LIME``, ``KernelSHAP``, ...).
"""

from .calculators import make_calculator
from .features import BilinearGrid, GaussianSmoothing, RandomShift, Segments, SlidingPatches, make_feature_segmenter
from .pipeline import Perturbation
from .presets import (
    CIU, LIME, PDA, PRESETS, RISE, KernelSHAP, Occlusion, ciu, kernel_shap, lime, make_preset, occlusion, pda, rise,
)
from .replacement import Blur, Constant, ImageMean, Inpaint, OtherImages, SegmentMean, make_replacement
from .samplers import make_sampler

__all__ = [
    "Perturbation", "rise", "lime", "kernel_shap", "occlusion", "pda", "ciu", "RISE", "LIME", "KernelSHAP", "Occlusion",
    "PDA", "CIU", "PRESETS", "make_preset",
    "BilinearGrid", "SlidingPatches", "Segments", "GaussianSmoothing", "RandomShift", "make_feature_segmenter",
    "make_sampler", "make_calculator", "make_replacement", "Constant", "ImageMean", "Blur", "SegmentMean",
    "OtherImages", "Inpaint",
]
