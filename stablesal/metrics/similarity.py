"""Map preparation and pairwise similarity between saliency maps (SSIM, Spearman, normalised L2,
top-k intersection), and maps on a common scale across K models. Maps are ``[B, C, H, W]``
(or ``[B, H, W]``) tensors.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from scipy.stats import rankdata

from .registry import METRICS, register_metric


# --------------------------------------------------------------------------------------
# Map preparation and pairwise similarity (Gong et al., BMVC 2024; Ye & Farnia, AISTATS 2025)
# --------------------------------------------------------------------------------------

MIN_SPREAD = 1e-20  # a map whose max − min is below this counts as constant; real attributions are far larger


def grey_maps(maps: torch.Tensor, clip_percentile: float = 99.0) -> torch.Tensor:
    """PAIR's grayscale visualisation (the one the SUPERPIXEL protocol cites): |a| summed over
    channels, then ``(g − min) / (p − min)`` clipped to [0, 1], with ``p`` the per-image
    ``clip_percentile`` of g: ``[B, C, H, W]`` → ``[B, H, W]``. Subtracting the minimum matters:
    without it a map with an offset (every grouped map, whose smallest segment is rarely 0) sits
    high in [0, 1] and looks alike to SSIM. A constant map (max − min at most ``MIN_SPREAD``)
    becomes all zeros; in a map with fewer than 1 % non-minimal pixels those pixels become 1."""
    grey = maps.abs().sum(1) if maps.dim() == 4 else maps.abs()
    flat = grey.flatten(1).double()
    low = flat.min(dim=1).values.view(-1, 1, 1)
    top = torch.quantile(flat, clip_percentile / 100.0, dim=1).view(-1, 1, 1)
    span = top - low
    # a map whose spread is rounding residue (LIME's ridge on a constant output leaves ~1e-30) is
    # constant: all zeros, not noise stretched to [0, 1]
    flat_map = (flat.max(dim=1).values.view(-1, 1, 1) - low) <= MIN_SPREAD
    out = ((grey.double() - low) / span.clamp(min=MIN_SPREAD)).clamp(0.0, 1.0)
    return torch.where(flat_map, torch.zeros_like(out), out).float()


def degenerate_maps(greys: torch.Tensor) -> torch.Tensor:
    """Whether each grey map ``[B, H, W]`` (:func:`grey_maps`) is constant, ``[B]`` bool: a map with
    no spread points nowhere (a model whose output ignores its input gives one). Two such maps are
    "identical" to SSIM (1.0) and undefined to Spearman, so the stability study leaves every pair
    with one out of every similarity and counts them."""
    flat = greys.flatten(1)
    return flat.amax(1) <= flat.amin(1)


SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # the Gaussian window's half-width in σ (scikit-image's, an 11-px window at σ = 1.5)
SSIM_K1, SSIM_K2 = 0.01, 0.03  # the stabilising constants of Wang et al. (2004), as scikit-image sets them


SSIM_REFERENCE_SIDE = 32  # the side at which the protocol's σ = 1.5 px is set (CIFAR-sized maps)


def ssim_sigma(height: int, width: int) -> float:
    """The SSIM window's σ for maps of ``height × width``: 1.5 px up to 32 px, then growing with
    the shorter side, so that the window covers the same share of the map at every size (at
    224 px, σ = 10.5 px)."""
    return SSIM_SIGMA * max(1.0, min(height, width) / SSIM_REFERENCE_SIDE)


@register_metric("ssim", higher_is_better=True, low=-1.0, high=1.0,
                 description="structural similarity of the grey maps", kind="pairwise")
def ssim(a: torch.Tensor, b: torch.Tensor, sigma: float | None = None, crop: bool = False) -> torch.Tensor:
    """SSIM per image of grey maps ``[B, H, W]`` in [0, 1]: Gaussian weights (σ = 1.5 px at 32 px,
    truncated at 3.5 σ, an 11-px window; ``sigma=None`` scales σ with the map's side,
    :func:`ssim_sigma`), population covariance, data range 1, as scikit-image computes it with the
    settings of Ye & Farnia.

    scikit-image averages the SSIM map only over pixels at least 5 px (the window radius) from
    the border: on a 32-px map that is 22 × 22 pixels, 47 % of the map. By default stablesal
    averages the whole SSIM map, whose local statistics are computed with reflected borders
    (scikit-image's own filter mode), so every pixel counts; ``crop=True`` gives scikit-image's
    cropped mean. Both are tested against scikit-image."""
    x, y = a.detach().cpu().double().numpy(), b.detach().cpu().double().numpy()
    sigma = ssim_sigma(*x.shape[-2:]) if sigma is None else sigma
    # the five local statistics of every image in one filter call (σ 0 along the stacking axis):
    # scikit-image's computation, vectorised over the batch
    local = gaussian_filter(np.stack([x, y, x * x, y * y, x * y]), sigma=(0, 0, sigma, sigma),
                            truncate=SSIM_TRUNCATE, mode="reflect")
    mean_x, mean_y, mean_xx, mean_yy, mean_xy = local
    var_x, var_y = mean_xx - mean_x * mean_x, mean_yy - mean_y * mean_y
    cov_xy = mean_xy - mean_x * mean_y
    c1, c2 = (SSIM_K1 * 1.0) ** 2, (SSIM_K2 * 1.0) ** 2  # data range 1
    full = ((2 * mean_x * mean_y + c1) * (2 * cov_xy + c2)
            / ((mean_x ** 2 + mean_y ** 2 + c1) * (var_x + var_y + c2)))
    if crop:
        pad = int(SSIM_TRUNCATE * sigma + 0.5)  # the window's radius, scikit-image's crop
        full = full[:, pad:full.shape[1] - pad, pad:full.shape[2] - pad]
    return torch.from_numpy(full.reshape(len(full), -1).mean(axis=1, dtype=np.float64))


@register_metric("spearman", higher_is_better=True, low=-1.0, high=1.0,
                 description="Spearman rank correlation of the flattened maps (average ranks for ties)",
                 kind="pairwise")
def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's ρ per image between maps ``[B, ...]``; tied values get average ranks, so
    piecewise-constant (grouped) maps are handled correctly. NaN when a map is constant."""
    ra = rankdata(a.detach().cpu().flatten(1).double().numpy(), axis=1)
    rb = rankdata(b.detach().cpu().flatten(1).double().numpy(), axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    denominator = np.sqrt((ra ** 2).sum(1) * (rb ** 2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return torch.from_numpy((ra * rb).sum(1) / denominator)


@register_metric("normalised_l2", higher_is_better=False, low=0.0, high=2.0, description="|| a/||a|| - b/||b|| ||",
                 kind="pairwise")
def normalised_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a = a / a.norm(dim=1, keepdim=True).clamp(min=1e-30)
    b = b / b.norm(dim=1, keepdim=True).clamp(min=1e-30)
    return (a - b).norm(dim=1)


def _top_set(values: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """``[B, P]`` bool: the k largest values of each row, ties broken by a random order of the
    positions drawn from ``generator`` (one order for the batch)."""
    order = torch.randperm(values.shape[1], generator=generator)
    _, by_value = values[:, order].sort(dim=1, descending=True, stable=True)
    return torch.zeros_like(values, dtype=torch.bool).scatter_(1, order[by_value[:, :k]], True)


@register_metric("topk_intersection", higher_is_better=True, low=0.0, high=1.0,
                 description="shared fraction of the top 10 % pixels", kind="pairwise")
def topk_intersection(a: torch.Tensor, b: torch.Tensor, fraction: float = 0.1, seed: int = 0) -> torch.Tensor:
    """|top-k(a) ∩ top-k(b)| / k with k = ``fraction`` of the pixels, per image of ``[B, ...]`` maps.

    Ties at the k-th value (a grouped map's segments, a map that is zero over most of the image)
    are broken at random, each map with its own random order of positions from ``seed``: by position,
    two maps tied in the same places would share their first pixels and overlap more than their
    values say."""
    a, b = a.flatten(1), b.flatten(1)
    k = max(1, int(round(fraction * a.shape[1])))
    generator = torch.Generator().manual_seed(seed)
    top_a, top_b = _top_set(a.cpu(), k, generator), _top_set(b.cpu(), k, generator)
    return (top_a & top_b).sum(1).double() / k


def pairwise_metrics() -> tuple[str, ...]:
    """The registered pairwise metrics, in registration order (the stability study computes each)."""
    return tuple(METRICS.names(kind="pairwise"))


def pairwise_similarity(a: torch.Tensor, b: torch.Tensor, metrics=None) -> dict[str, torch.Tensor]:
    """Every pairwise metric (or those named in ``metrics``) per image between grey maps ``[B, H, W]``."""
    return {name: METRICS.lookup(name, "metrics")(a, b) for name in (pairwise_metrics() if metrics is None else metrics)}


# --------------------------------------------------------------------------------------
# Across K models: maps on a common scale
# --------------------------------------------------------------------------------------

def unit_maps(maps: torch.Tensor) -> torch.Tensor:
    """Channel-summed signed maps scaled to unit L2 norm per image ``[B, H, W]``: removes the
    arbitrary gradient scale of each model before variances are compared."""
    summed = maps.sum(1) if maps.dim() == 4 else maps
    return summed / summed.flatten(1).norm(dim=1).clamp(min=1e-30).view(-1, 1, 1)


def centred_unit_maps(maps: torch.Tensor) -> torch.Tensor:
    """Channel-summed signed maps minus their mean over pixels, scaled to unit L2 norm per image
    ``[B, H, W]`` (float64): the inner product of two of them is the Pearson correlation of the
    signed maps over pixels, the consistency form of an intraclass correlation (an offset shared by
    every pixel is no agreement). A constant map has no direction: its entries are NaN."""
    summed = (maps.sum(1) if maps.dim() == 4 else maps).double()
    centred = summed - summed.flatten(1).mean(1).view(-1, 1, 1)
    norm = centred.flatten(1).norm(dim=1).view(-1, 1, 1)
    return torch.where(norm > 0, centred / norm.clamp(min=1e-300), torch.full_like(centred, float("nan")))


def flat_scores(maps: torch.Tensor) -> torch.Tensor:
    """``[B, H·W]`` scores of ``[B, C, H, W]`` (channels summed) or ``[B, H, W]`` maps."""
    return (maps.sum(1) if maps.dim() == 4 else maps).flatten(1)
