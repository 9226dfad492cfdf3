"""Stability study results built from synthetic unit maps, as ``run_unit``'s rows would hold them."""

import numpy as np


def pearson(x, y) -> float:
    """Pearson r of two flat maps (what run_unit's ``centred_cross`` holds), computed by NumPy."""
    return float(np.corrcoef(x, y)[0, 1])


def study_result(maps, varies, random=True, retest=None, partition=None, model_set="main", grouping="pixel",
            pair_values=None, retest_values=None):
    """A study result built from unit maps ``[K, n, d]`` (as run_unit's rows would hold them);
    ``pair_values`` / ``retest_values``: constant pairwise metrics added to every pair / retest
    row (pairs then also get both models right)."""
    k, n, _ = maps.shape
    rows = []
    extra = {} if pair_values is None else {"a_correct": True, "b_correct": True, **pair_values}
    for a in range(k):
        for b in range(a + 1, k):
            for i in range(n):
                row = {"image": i, "model_a": a, "model_b": b,
                       "sq_distance": float(np.square(maps[a, i] - maps[b, i]).sum()),
                       "centred_cross": pearson(maps[a, i], maps[b, i]), **extra}
                if partition is not None:
                    projected = partition @ maps[:, i].T  # [d, K]
                    residual = maps[:, i].T - projected
                    row["residual_cross@g"] = float(residual[:, a] @ residual[:, b])
                    row["projected@g"] = float(np.square(projected[:, a] - projected[:, b]).sum())
                    row["predicted@g"] = 0.5 * row["projected@g"]
                rows.append(row)
    retest_rows = [] if retest is None else [
        {"image": i, "model": a, "sq_distance": float(np.square(maps[a, i] - retest[a, i]).sum()),
         "centred_cross": pearson(maps[a, i], retest[a, i]), **(retest_values or {})}
        for a in range(k) for i in range(n)]
    return {"model_set": model_set, "method": "m", "grouping": grouping, "rows": rows, "retest_rows": retest_rows,
            "n_images": n, "n_models": k, "varies": varies, "random": random, "draws": "independent",
            "explain_seconds_per_model": 0.0}
