"""Consensus tests: 10⁴ permutations for 100 images × 100 regions, trained vs untrained models.

Three implementations of the same one-sided two-sample permutation p-values (K trained and L
untrained models' ranks per region, the statistic the trained models' rank sum):

- ``stablesal``: :func:`stablesal.core.multiple_testing.two_sample_permutation_p_values` followed by
  Benjamini–Hochberg per image (the whole consensus decision);
- ``floor``: the same relabellings as one NumPy matrix product and a comparison, nothing else;
- ``scipy``: ``scipy.stats.permutation_test`` (vectorised over regions), the nearest installable
  peer (no toolkit offers a consensus test), timed on a tenth of the regions and scaled.

The exact rank-sum test (no permutations) is timed beside them. Target: under 30 s on 2 cores.

    python benchmarks/bench_consensus.py [--images 100] [--regions 100] [--models 10] [--permutations 10000]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stablesal.core.multiple_testing import rank_sum_p_values, reject, two_sample_permutation_p_values  # noqa: E402


def floor(trained: np.ndarray, reference: np.ndarray, permutations: int, seed: int) -> np.ndarray:
    """The relabelling statistic for all regions at once, in chunks of 256 permutations."""
    pooled = np.concatenate([trained, reference])
    observed = trained.sum(0)
    rng = np.random.default_rng(seed)
    exceed = np.zeros(pooled.shape[1])
    for start in range(0, permutations, 256):
        size = min(256, permutations - start)
        chosen = np.zeros((size, pooled.shape[0]))
        np.put_along_axis(chosen, np.argsort(rng.random((size, pooled.shape[0])), 1)[:, :len(trained)], 1.0, 1)
        exceed += (chosen @ pooled >= observed).sum(0)
    return (1 + exceed) / (1 + permutations)


def timed(fn) -> tuple[float, object]:
    began = time.perf_counter()
    out = fn()
    return time.perf_counter() - began, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--regions", type=int, default=100)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--permutations", type=int, default=10_000)
    parser.add_argument("--out", default="benchmarks/results/consensus.json")
    args = parser.parse_args()
    from scipy import stats

    rng = np.random.default_rng(0)
    shape = (args.images, args.regions)
    trained = np.stack([np.stack([rng.permutation(args.regions) + 1.0 for _ in range(args.images)])
                        for _ in range(args.models)])
    reference = np.stack([np.stack([rng.permutation(args.regions) + 1.0 for _ in range(args.images)])
                          for _ in range(args.models)])
    flat_t, flat_r = trained.reshape(args.models, -1), reference.reshape(args.models, -1)

    def ours():
        p = two_sample_permutation_p_values(flat_t, flat_r, args.permutations, seed=1).reshape(shape)
        return p, np.stack([reject(row) for row in p])

    seconds_ours, (p_ours, _) = timed(ours)
    seconds_floor, p_floor = timed(lambda: floor(flat_t, flat_r, args.permutations, seed=2))
    seconds_exact, _ = timed(lambda: np.stack([reject(row) for row in rank_sum_p_values(trained, args.regions)]))
    tenth = max(1, flat_t.shape[1] // 10)
    seconds_scipy, result = timed(lambda: stats.permutation_test(
        (flat_t[:, :tenth], flat_r[:, :tenth]), lambda x, y, axis: x.sum(axis), permutation_type="independent",
        vectorized=True, n_resamples=args.permutations, alternative="greater", axis=0, random_state=3))
    seconds_scipy *= flat_t.shape[1] / tenth
    # the three are Monte Carlo estimates of the same p-values: they agree to a few standard errors
    agreement = float(np.abs(p_ours.ravel()[:tenth] - result.pvalue).max())
    record = {"machine": platform.machine(), "processor": platform.processor(), "images": args.images,
              "regions": args.regions, "models": args.models, "reference_models": args.models,
              "permutations": args.permutations, "stablesal_s": round(seconds_ours, 2),
              "floor_s": round(seconds_floor, 2), "scipy_s_scaled": round(seconds_scipy, 1),
              "rank_sum_exact_s": round(seconds_exact, 3), "ratio_to_floor": round(seconds_ours / seconds_floor, 2),
              "ratio_to_scipy": round(seconds_ours / seconds_scipy, 3),
              "max_abs_difference_to_scipy": round(agreement, 4),
              "max_abs_difference_to_floor": round(float(np.abs(p_ours.ravel() - p_floor).max()), 4)}
    print(json.dumps(record, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    return 0 if seconds_ours < 30 else 1


if __name__ == "__main__":
    raise SystemExit(main())
