"""Rank tests across retrained models and false-discovery control (docs/methods.md §7).

The consensus map (:mod:`stablesal.consensus`) asks, for every region of an image, whether K
independently retrained models rank it consistently high among the image's regions. This module
holds the two tests it uses and the step-up procedures that control the false-discovery rate
over many regions; nothing here knows about models or images.

* :func:`rank_sum_p_values`: the one-sample rank-sum test. Each model ranks the R regions of an
  image (1 = lowest score, R = highest); under the null that a region is a typical region of its
  image, its rank under model k is uniform on {1, …, R}, independently across models that were
  trained independently. The statistic is the sum of the region's K ranks; its exact null
  distribution is the K-fold convolution of the discrete uniform, so the test is exact for any K
  (the rank-sum relative of Breitling et al.'s rank product, *FEBS Letters* 573, 2004; exact
  distributions of both in Eisinga, Breitling & Heskes, *FEBS Letters* 587, 2013).
* :func:`two_sample_permutation_p_values`: trained models against reference models (e.g.
  untrained networks of the same architecture), the sum of the trained models' ranks compared
  with its distribution over random relabellings of the K + L models; the same relabelling is
  applied to every region, so the dependence between regions is kept (Nichols & Holmes, *Human
  Brain Mapping* 15, 2002). P-values are (1 + #{S_b ≥ S}) / (1 + B), valid for any number of
  permutations B (Phipson & Smyth, *Stat. Appl. Genet. Mol. Biol.* 9, 2010).
* :func:`benjamini_hochberg` (independent or positively dependent tests, Benjamini & Hochberg,
  *JRSS B* 57, 1995) and :func:`benjamini_yekutieli` (any dependence, Benjamini & Yekutieli,
  *Ann. Statist.* 29, 2001);
* :func:`holm`: family-wise error control across the rows a reading counts (Holm, *Scand. J.
  Statist.* 6, 1979).
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
from .settings import PROCEDURES  # noqa: F401  (re-exported: defined with the other settings' choices)



@functools.lru_cache(maxsize=256)
def rank_sum_null(n_models: int, n_regions: int) -> np.ndarray:
    """Upper-tail probabilities of the sum of ``n_models`` independent uniform ranks on
    {1, …, ``n_regions``}: ``out[t - n_models] = P(T ≥ t)`` for t = K … K·R (float64, read-only)."""
    if n_models < 1 or n_regions < 1:
        raise ValueError(f"n_models and n_regions must be at least 1, got {n_models} and {n_regions}")
    uniform = np.full(n_regions, 1.0 / n_regions)
    pmf = np.ones(1)
    for _ in range(n_models):
        pmf = np.convolve(pmf, uniform)
    # the tail summed from the top keeps tiny probabilities exact to rounding
    survival = np.cumsum(pmf[::-1])[::-1].clip(max=1.0)
    survival.setflags(write=False)
    return survival


def rank_sum_p_values(ranks: np.ndarray, n_regions: np.ndarray | int) -> np.ndarray:
    """Exact one-sided p-values of the rank-sum test.

    ``ranks``: ``[K, N, R]`` ranks (1 … R_n for the present regions of image n, NaN for absent
    ones); ``n_regions``: R_n per image (or one count). Returns ``[N, R]`` p-values
    P(T ≥ observed sum), NaN where the region is absent."""
    ranks = np.asarray(ranks, dtype=float)
    if ranks.ndim != 3:
        raise ValueError(f"ranks must be [models, images, regions], got shape {ranks.shape}")
    n_models, n_images, _ = ranks.shape
    counts = np.broadcast_to(np.asarray(n_regions, dtype=int), (n_images,))
    totals = ranks.sum(axis=0)
    out = np.full(totals.shape, np.nan)
    for image in range(n_images):
        present = np.isfinite(totals[image])
        survival = rank_sum_null(n_models, int(counts[image]))
        out[image, present] = survival[totals[image, present].astype(int) - n_models]
    return out


def two_sample_permutation_p_values(trained: np.ndarray, reference: np.ndarray, n_permutations: int = 10_000,
                                    seed: int = 0, chunk: int = 256) -> np.ndarray:
    """One-sided permutation p-values that the trained models rank each region higher than the
    reference models do.

    ``trained``: ``[K, M]`` ranks (or any scores) of M regions under K models; ``reference``:
    ``[L, M]``. NaN columns (absent regions) give NaN. Each permutation relabels the K + L models
    at random (the same relabelling for every region); the statistic is the sum over the K
    models labelled trained; p = (1 + b) / (1 + B) (Phipson & Smyth, 2010). When there are no more
    than ``n_permutations`` distinct relabellings, C(K + L, K), each is used once instead: the exact
    permutation test, p = b / C with the observed labelling among them (4 vs 4 models: 70
    relabellings, not 10 000 random ones). Cost: one ``[B, K + L] × [K + L, M]`` product, in chunks
    of ``chunk`` relabellings."""
    trained, reference = np.asarray(trained, dtype=float), np.asarray(reference, dtype=float)
    if trained.ndim != 2 or reference.ndim != 2 or trained.shape[1] != reference.shape[1]:
        raise ValueError(f"trained and reference must be [models, regions] with the same regions, got "
                         f"{trained.shape} and {reference.shape}")
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be at least 1, got {n_permutations}")
    pooled = np.concatenate([trained, reference])
    present = np.isfinite(pooled).all(axis=0)
    values = np.where(present, pooled, 0.0)
    n_trained, n_models = trained.shape[0], pooled.shape[0]
    observed = values[:n_trained].sum(axis=0)
    # sums of integer ranks are exact in float64; a relative tolerance guards other scores
    tolerance = 1e-9 * np.abs(observed).clip(min=1.0)
    exceed = np.zeros(values.shape[1], dtype=np.int64)
    relabellings = math.comb(n_models, n_trained)
    if relabellings <= n_permutations:  # every relabelling once: the exact test
        every = np.array(list(itertools.combinations(range(n_models), n_trained)), dtype=np.int64)
        for start in range(0, relabellings, chunk):
            chosen = np.zeros((len(every[start:start + chunk]), n_models))
            np.put_along_axis(chosen, every[start:start + chunk], 1.0, axis=1)
            exceed += (chosen @ values >= observed - tolerance).sum(axis=0)
        return np.where(present, exceed / relabellings, np.nan)
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_permutations:
        size = min(chunk, n_permutations - done)
        labels = np.argsort(rng.random((size, n_models)), axis=1)[:, :n_trained]
        chosen = np.zeros((size, n_models))
        np.put_along_axis(chosen, labels, 1.0, axis=1)
        exceed += (chosen @ values >= observed - tolerance).sum(axis=0)
        done += size
    p_values = (1.0 + exceed) / (1.0 + n_permutations)
    return np.where(present, p_values, np.nan)


def benjamini_hochberg(p_values: np.ndarray, q: float = 0.05) -> np.ndarray:
    """Rejections of the Benjamini–Hochberg step-up procedure at level ``q`` over the finite
    entries of ``p_values`` (any shape; NaN entries are not tests and are never rejected)."""
    return _step_up(p_values, q, dependence_factor=1.0)


def benjamini_yekutieli(p_values: np.ndarray, q: float = 0.05) -> np.ndarray:
    """Rejections of the Benjamini–Yekutieli procedure: BH at ``q / Σ_{i≤m} 1/i``, which controls the
    false-discovery rate under any dependence between the tests."""
    m = int(np.isfinite(np.asarray(p_values, dtype=float)).sum())
    return _step_up(p_values, q, dependence_factor=float(np.sum(1.0 / np.arange(1, m + 1))) if m else 1.0)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's (1979) step-down adjusted p-values over the finite entries of ``p_values`` (NaN
    entries are not tests and stay NaN): sorted ascending, p̃_(i) = max_{j≤i} min(1, (m − j + 1) p_(j)).
    Rejecting where p̃ ≤ α controls the family-wise error rate at α under any dependence."""
    p_values = np.asarray(p_values, dtype=float)
    tests = np.isfinite(p_values)
    out = np.full(p_values.shape, np.nan)
    flat = p_values[tests]
    if flat.size == 0:
        return out
    order = np.argsort(flat, kind="stable")
    scaled = np.minimum(1.0, (flat.size - np.arange(flat.size)) * flat[order])
    adjusted = np.empty(flat.size)
    adjusted[order] = np.maximum.accumulate(scaled)
    out[tests] = adjusted
    return out


def reject(p_values: np.ndarray, q: float = 0.05, procedure: str = "bh") -> np.ndarray:
    """Rejections by ``procedure`` (``"bh"`` or ``"by"``) at level ``q``."""
    if procedure not in PROCEDURES:
        raise ValueError(f"procedure must be one of {PROCEDURES}, got {procedure!r}")
    return benjamini_hochberg(p_values, q) if procedure == "bh" else benjamini_yekutieli(p_values, q)


def _step_up(p_values: np.ndarray, q: float, dependence_factor: float) -> np.ndarray:
    if not 0.0 < q < 1.0:
        raise ValueError(f"q (the false-discovery rate) must be in (0, 1), got {q}")
    p_values = np.asarray(p_values, dtype=float)
    tests = np.isfinite(p_values)
    flat = p_values[tests]
    out = np.zeros(p_values.shape, dtype=bool)
    if flat.size == 0:
        return out
    order = np.sort(flat)
    thresholds = q * np.arange(1, flat.size + 1) / (flat.size * dependence_factor)
    passed = np.nonzero(order <= thresholds)[0]
    if passed.size:
        cutoff = order[passed[-1]]
        out[tests] = flat <= cutoff
    return out
