"""The classical perturbation methods as pipeline presets with their published defaults
(docs/methods.md §4). Each returns a :class:`~stablesal.perturbation.pipeline.Perturbation`; any
keyword of ``Perturbation`` overrides the preset.

Segment counts are given for any image size; super-pixel segmenters keep the scaled defaults of
:mod:`stablesal.segmentation`.
"""

from __future__ import annotations

import warnings

import torch

from ...core.registry import Registry
from .pipeline import Perturbation
from .replacement import Blur
from .samplers import ProbabilitySampler
from .replacement import Inpaint
from .features import SlidingPatches
from ..segmentation import SkimageSLIC
from .features import Segments

PDA_BLUR = 5.0 / 32  # PDA's blur σ as a share of the image side (the stand-in for conditional sampling)

# Every perturbation preset, registered next to its definition with what cannot be computed from
# it: its ``family``. What can (``random``, ``budget``, ``needs_baselines``) is read from the
# pipeline it builds (stablesal.explain.protocol); a study's grouping projects the finished map.
PRESETS = Registry("perturbation preset")


def _build(model, defaults: dict, overrides: dict) -> Perturbation:
    return Perturbation(model, **{**defaults, **overrides})


@PRESETS.register("rise", family="perturbation")
def rise(model, n_samples: int = 4000, grid: int = 7, p: float = 0.5, n_masks: int | None = None,
         **overrides) -> Perturbation:
    """RISE (Petsiuk, Das & Saenko, BMVC 2018): 7×7 binary grids kept with p = 0.5, upsampled
    bilinearly and randomly shifted, 4000 masks, masked pixels set to the ImageNet mean (0 after
    normalisation, as in the authors' code); saliency Σ_n Y_n M_n / (N p). The number of masks is
    ``n_samples``, the budget's name in every preset (``n_masks`` is its deprecated alias)."""
    if n_masks is not None:
        warnings.warn("RISE(n_masks=...) is deprecated: the budget is n_samples in every preset", DeprecationWarning,
                      stacklevel=2)
        n_samples = n_masks
    return _build(model, {"segmenter": "grid-bilinear", "n_segments": grid * grid, "smoothing": "shift",
                          "sampler": "random", "sampler_options": {"p": p}, "n_samples": n_samples,
                          "replacement": "imagenet", "calculator": "rise", "map": "pixel"}, overrides)


@PRESETS.register("lime", family="perturbation")
def lime(model, n_samples: int = 1000, segmenter: str = "quickshift", **overrides) -> Perturbation:
    """LIME for images (Ribeiro, Singh & Guestrin, KDD 2016) as the ``lime`` package runs it:
    quick-shift super-pixels, 1000 samples whose number of removed features is uniform, removed
    super-pixels filled with their mean colour, ridge regression (α = 1) weighted by an exponential
    kernel (width 0.25) on the cosine distance; one score per super-pixel."""
    return _build(model, {"segmenter": segmenter, "sampler": ProbabilitySampler(0.0, 1.0), "n_samples": n_samples,
                          "replacement": "segment-mean", "calculator": "lime-ridge", "map": "segment"}, overrides)


@PRESETS.register("kernel_shap", family="perturbation")
def kernel_shap(model, n_samples: int | None = None, n_segments: int = 50, **overrides) -> Perturbation:
    """KernelSHAP (Lundberg & Lee, NeurIPS 2017) on SLIC super-pixels: coalitions enumerated by
    size and then sampled, Shapley-kernel weighted least squares, removed super-pixels set to the
    image mean. ``n_samples`` defaults to the shap package's 2M + 2048."""
    count = n_samples if n_samples is not None else 2 * n_segments + 2048
    return _build(model, {"segmenter": "slic", "n_segments": n_segments, "sampler": "shap", "n_samples": count,
                          "replacement": "image-mean", "calculator": "kernel-shap", "map": "segment"}, overrides)


@PRESETS.register("occlusion", family="perturbation")
def occlusion(model, size: int = 8, stride: int = 4, fill: float = 0.0, **overrides) -> Perturbation:
    """Occlusion (Zeiler & Fergus, ECCV 2014), sliding square patches: the drop in the target's
    probability when each patch is filled, averaged over the patches covering each pixel (the
    same map as Captum's ``Occlusion`` with ``strides=stride``)."""
    return _build(model, {"segmenter": "patches", "segmenter_options": {"size": size, "stride": stride},
                          "sampler": "single", "replacement": fill, "calculator": "pda", "map": "pixel"}, overrides)


# one sample per feature by default; n_samples is the budget only with multi_segment=True
@PRESETS.register("pda", family="perturbation")
def pda(model, n_segments: int = 49, multi_segment: bool = False, n_samples: int = 1000, **overrides) -> Perturbation:
    """Prediction difference analysis (Zintgraf et al., ICLR 2017): y(x) minus the mean output with
    a feature removed; removed pixels are drawn from a blurred copy of the image (a stand-in for
    the paper's conditional sampling; σ = side / 6.4, 5 px at 32 px, so that a removed segment
    keeps its surroundings' colour but not its detail). ``multi_segment`` removes random sets of segments and
    averages over the samples in which each is removed."""
    sampler = {"sampler": "random", "n_samples": n_samples} if multi_segment else {"sampler": "single"}
    return _build(model, {"segmenter": "slic", "n_segments": n_segments, **sampler, "replacement": Blur(relative=PDA_BLUR),
                          "calculator": "pda", "map": "pixel", "smoothing": "none"}, overrides)


@PRESETS.register("ciu", family="perturbation")
def ciu(model, n_segments: int = 49, inverse: bool = False, **overrides) -> Perturbation:
    """Contextual importance and utility (Främling, 2020) from single-feature (or inverse) samples
    on SLIC super-pixels, removed pixels set to the image mean."""
    return _build(model, {"segmenter": "slic", "n_segments": n_segments,
                          "sampler": "inverse-single" if inverse else "single", "replacement": "image-mean",
                          "calculator": "ciu", "map": "segment"}, overrides)


def make_preset(name: str, model, **overrides) -> Perturbation:
    return PRESETS.lookup(name)(model, **overrides)


def preset_budget(name: str) -> str | None:
    """The ``budget`` of the pipeline that preset ``name`` builds with its defaults (around a
    stand-in model): ``"n_samples"``, or None for the single-feature presets (occlusion, CIU,
    sliding patch, PDA), which have as many samples as features."""
    return make_preset(name, torch.nn.Identity().eval()).budget


def takes_budget(name: str) -> bool:
    """Whether preset ``name`` draws a number of samples (see :func:`preset_budget`)."""
    return preset_budget(name) is not None


def budget_options(name: str, n_samples: int) -> dict:
    """``{budget: n_samples}`` for a preset that takes a budget, ``{}`` for one that does not."""
    budget = preset_budget(name)
    return {} if budget is None else {budget: n_samples}


def _inpaint_or(fill, inpainter):
    return Inpaint(inpainter) if inpainter is not None else fill


@PRESETS.register("sliding_patch", family="perturbation")
def sliding_patch(model, size: int | None = None, stride: int | None = None, inpainter=None, **overrides):
    """SP / SP-G (GEN-REMOVE): square patches of 29 px every 3 px at 224 px (scaled to the image
    side when ``size``/``stride`` are None, resolved at the first call), score p_c(x) − p_c(x̃)
    averaged over the patches covering each pixel; SP fills with the image mean colour, SP-G
    (``inpainter`` given) inpaints each patch."""
    return _build(model, {"segmenter": SlidingPatches(size, stride, scale_from=(29, 3)), "sampler": "single",
                          "replacement": _inpaint_or("image-mean", inpainter), "calculator": "pda",
                          "map": "pixel"}, overrides)


def gen_lime(model, inpainter=None, n_samples: int = 500, n_segments: int = 50, **overrides):
    """LIME / LIME-G as GEN-REMOVE runs them: SLIC with 50 segments (compactness 30, σ 3), 500
    samples, ridge with the cosine kernel of width 0.25; mean-pixel fill (LIME) or inpainting
    (LIME-G)."""
    return _build(model, {"segmenter": Segments(SkimageSLIC(n_segments=n_segments, compactness=30.0, sigma=3.0)),
                          "sampler": ProbabilitySampler(0.0, 1.0), "n_samples": n_samples,
                          "replacement": _inpaint_or("image-mean", inpainter), "calculator": "lime-ridge",
                          "map": "segment"}, overrides)



# The factories' names as the papers and Captum write them (RISE, LIME, KernelSHAP, ...): the same
# functions, so ``stablesal.RISE(model)`` and ``stablesal.explain.perturbation.rise(model)`` are one.
RISE, LIME, KernelSHAP, Occlusion, PDA, CIU = rise, lime, kernel_shap, occlusion, pda, ciu
SlidingPatch, GenLIME = sliding_patch, gen_lime
