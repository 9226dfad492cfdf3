"""How many retrained models a proxy's K′ variants are worth for the mean map (docs/methods.md §8,
"What the variants are worth").

The retrained models (the truth) are split in two: a *reference* half, whose mean map per image
stands for the map retraining converges to, and a *pool* (the other half, model 0, the proxies'
parent, among them). For k = 1 … |pool|, the mean map of k pool models drawn at random is compared
with the reference mean map (Pearson r per image, averaged over the draws): the curve r(k) of how
close k retrained models get. The mean map of the proxy's K′ variants is compared with the same
reference, r_proxy; the variants are *worth* the k at which r(k) = r_proxy (linear between the
integers). Worth K′ or more: the variants stand in for as many retrained models. A random
explainer's mean over K′ draws is smoother than one draw whatever the models, so the variants are
read against their parent explained K′ times (``analysis/proxy_worth.py``'s ``parent`` rows).

The interval is a percentile bootstrap over the images (the models held fixed: the split and the
pool's draws are one realisation, which the interval does not cover).
"""

from __future__ import annotations

import numpy as np
import torch

from ...core.seeding import derive


def flat_maps(maps: torch.Tensor) -> torch.Tensor:
    """``[n, H·W]`` float64 maps of one model from ``[n, C, H, W]`` (channels summed) or ``[n, H, W]``."""
    if maps.dim() == 4:
        maps = maps.sum(1)
    if maps.dim() != 3:
        raise ValueError(f"maps must be [n, C, H, W] or [n, H, W], got {tuple(maps.shape)}")
    return maps.flatten(1).double()


def image_correlations(maps: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``[n]``: Pearson r per image between ``maps`` ``[n, d]`` and ``reference`` ``[n, d]`` (NaN
    where either map is constant)."""
    a = maps - maps.mean(1, keepdim=True)
    b = reference - reference.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def truth_curve(pool: torch.Tensor, reference: torch.Tensor, draws: int = 20, seed: int = 0) -> torch.Tensor:
    """``[K, n]``: for k = 1 … K (``pool`` ``[K, n, d]``), each image's Pearson r between the mean
    map of k pool models and ``reference`` ``[n, d]``, averaged over ``draws`` subsets of k drawn
    without replacement from ``derive(seed, "worth", k)`` (k = K: the one subset)."""
    count = pool.shape[0]
    rows = []
    for k in range(1, count + 1):
        generator = torch.Generator().manual_seed(derive(seed, "worth", k))
        subsets = [torch.arange(count)] if k == count else [torch.randperm(count, generator=generator)[:k]
                                                            for _ in range(draws)]
        rows.append(torch.stack([image_correlations(pool[s].mean(0), reference) for s in subsets]).mean(0))
    return torch.stack(rows)


def equivalent_models(curve: np.ndarray, value: float) -> tuple[float, str]:
    """The k at which the increasing-on-average ``curve`` ``[K]`` (r of k = 1 … K models) reaches
    ``value``, linear between integers, and where it lies: ``"within"``, ``"below"`` (under r(1):
    k = 1 reported) or ``"above"`` (over r(K): k = K reported). The first crossing is used."""
    curve = np.asarray(curve, dtype=float)
    if not np.isfinite(value) or not np.isfinite(curve).all():
        return float("nan"), "undefined"
    if value <= curve[0]:
        return 1.0, "below" if value < curve[0] else "within"
    for index in range(1, len(curve)):
        if curve[index] >= value:
            low, high = curve[index - 1], curve[index]
            return float(index + (value - low) / (high - low)), "within"
    return float(len(curve)), "above"


def mean_map_worth(truth: torch.Tensor, proxy: torch.Tensor, draws: int = 20, resamples: int = 1000,
                   seed: int = 0) -> dict:
    """What ``proxy`` ``[K′, n, d]`` maps are worth in retrained models ``truth`` ``[K_t, n, d]``
    (models 0 … K_t/2 − 1 the pool, the rest the reference; see the module docstring): the worth,
    its 95 % percentile bootstrap interval over images (``resamples`` draws from ``derive(seed,
    "worth-bootstrap")``), r_proxy and the curve r(k), both averaged over the images."""
    if truth.dim() != 3 or proxy.dim() != 3 or truth.shape[1:] != proxy.shape[1:]:
        raise ValueError(f"truth and proxy must be maps [K, n, d] of the same images, got {tuple(truth.shape)} "
                         f"and {tuple(proxy.shape)}")
    if truth.shape[0] < 4 or proxy.shape[0] < 2:
        raise ValueError(f"need at least 4 retrained models and 2 variants, got {truth.shape[0]} and {proxy.shape[0]}")
    half = truth.shape[0] // 2
    reference = truth[half:].mean(0)
    curve = truth_curve(truth[:half], reference, draws, seed).numpy()  # [K, n]
    proxy_r = image_correlations(proxy.mean(0), reference).numpy()  # [n]
    usable = np.isfinite(proxy_r) & np.isfinite(curve).all(0)
    curve, proxy_r = curve[:, usable], proxy_r[usable]
    estimate, side = equivalent_models(curve.mean(1), float(proxy_r.mean()))
    rng = np.random.default_rng(derive(seed, "worth-bootstrap"))
    boot = []
    for _ in range(resamples):
        pick = rng.integers(0, len(proxy_r), len(proxy_r))
        boot.append(equivalent_models(curve[:, pick].mean(1), float(proxy_r[pick].mean()))[0])
    low, high = np.nanpercentile(boot, [2.5, 97.5]) if np.isfinite(boot).any() else (float("nan"),) * 2
    return {"worth": estimate, "worth_ci_low": float(low), "worth_ci_high": float(high), "side": side,
            "k_proxy": int(proxy.shape[0]), "k_pool": half, "k_reference": int(truth.shape[0] - half),
            "n_images": int(usable.sum()), "proxy_r": float(proxy_r.mean()),
            "truth_r": [float(v) for v in curve.mean(1)]}
