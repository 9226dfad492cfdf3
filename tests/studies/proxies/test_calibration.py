"""The proxy calibration's statistics against hand-computed answers and SciPy."""

import json

import numpy as np
import pytest
from scipy import stats

from stablesal.core.intervals import Weights
from stablesal.studies.proxies.calibration import calibrate, calibration_rows, per_image_agreement


def _pairs(per_image, count, noise=0.0, seed=0):
    """values [n, K, K]: image i's pairs all per_image[i] (plus noise), upper triangle, NaN elsewhere."""
    rng = np.random.default_rng(seed)
    values = np.full((len(per_image), count, count), np.nan)
    a, b = np.triu_indices(count, 1)
    values[:, a, b] = np.asarray(per_image)[:, None] + noise * rng.standard_normal((len(per_image), len(a)))
    return values


def _units(arrays):
    units = []
    for (model_set, method, grouping), values in arrays.items():
        n, k = values.shape[:2]
        rows = [{"image": i, "model_a": a, "model_b": b, "spearman": float(values[i, a, b]), "degenerate": False}
                for i in range(n) for a in range(k) for b in range(a + 1, k)]
        units.append({"model_set": model_set, "method": method, "grouping": grouping, "n_images": n, "n_models": k,
                      "rows": rows})
    return units


def test_per_image_agreement_by_hand():
    values = _pairs([0.2, 0.4], 3)
    values[0, 0, 1] = 0.8  # image 0's pairs: 0.8, 0.2, 0.2
    weights = Weights(np.ones(2), {"s": np.array([1.0, 1.0, 0.0])})  # model 2 deleted: only the pair (0, 1)
    assert per_image_agreement(values, weights, "s") == pytest.approx([0.8, 0.4])
    values[1, 0, 1] = np.nan  # a degenerate pair is left out
    full = Weights(np.ones(2), {"s": np.ones(3)})
    assert per_image_agreement(values, full, "s") == pytest.approx([0.4, 0.4])


def test_calibrate_recovers_a_known_offset_and_a_perfect_image_ranking():
    """Truth pairs at t_i, proxy pairs at t_i + 0.1, null pairs at 0.05: the difference is 0.1, the
    excesses t̄ − 0.05 and t̄ + 0.05, and the images rank alike (ρ = 1); with noise, ρ equals
    SciPy's Spearman of the per-image means and every interval holds its estimate."""
    per_image = np.linspace(0.2, 0.8, 12)
    arrays = {("truth", "saliency", "pixel"): _pairs(per_image, 5),
              ("finetune", "saliency", "pixel"): _pairs(per_image + 0.1, 4),
              ("random_label", "saliency", "pixel"): _pairs(np.full(12, 0.05), 3)}
    row = calibrate(arrays, "finetune", "saliency", "pixel")
    assert row["difference"] == pytest.approx(0.1) and row["rank_correlation"] == pytest.approx(1.0)
    assert row["truth_beyond_null"] == pytest.approx(per_image.mean() - 0.05)
    assert row["proxy_beyond_null"] == pytest.approx(per_image.mean() + 0.05)
    assert (row["k_truth"], row["k_proxy"], row["k_null"]) == (5, 4, 3) and row["proxy"] == "finetune"
    assert not row["within_tolerance"] and not row["interval_within_tolerance"] and row["rank_target_met"]
    noisy = {**arrays, ("finetune", "saliency", "pixel"): _pairs(per_image[::-1] * 0.3 + 0.3, 4, noise=0.2, seed=1),
             ("truth", "saliency", "pixel"): _pairs(per_image, 5, noise=0.2, seed=2)}
    row = calibrate(noisy, "finetune", "saliency", "pixel")
    proxy_means = np.nanmean(noisy[("finetune", "saliency", "pixel")].reshape(12, -1), 1)
    truth_means = np.nanmean(noisy[("truth", "saliency", "pixel")].reshape(12, -1), 1)
    assert row["rank_correlation"] == pytest.approx(stats.spearmanr(proxy_means, truth_means).statistic)
    assert row["difference"] == pytest.approx(proxy_means.mean() - truth_means.mean())
    for name in ("truth_agreement", "proxy_agreement", "difference", "rank_correlation", "truth_beyond_null"):
        assert row[f"{name}_ci_low"] <= row[name] <= row[f"{name}_ci_high"], name


def test_calibration_rows_read_the_studys_units():
    per_image = np.linspace(0.3, 0.6, 6)
    arrays = {("truth", m, "pixel"): _pairs(per_image, 3) for m in ("saliency", "smoothgrad")}
    arrays[("laplace", "saliency", "pixel")] = _pairs(per_image - 0.02, 3)
    arrays[("random_label", "saliency", "pixel")] = _pairs(np.zeros(6), 3)
    arrays[("random_label", "smoothgrad", "pixel")] = _pairs(np.zeros(6), 3)
    rows = calibration_rows(_units(arrays), ["laplace"])
    assert [(r["proxy"], r["method"]) for r in rows] == [("laplace", "saliency")]  # smoothgrad: no laplace unit
    assert rows[0]["difference"] == pytest.approx(-0.02) and rows[0]["within_tolerance"]


def test_leave_one_calibration_out_by_hand(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "analysis"))
    from proxy_transfer import transfer

    def calibration(name, difference):
        return {"dataset": {"name": name}, "architecture": "small_cnn", "commit": "c",
                "rows": [{"proxy": "finetune", "method": "saliency", "grouping": "pixel", "difference": difference,
                          "difference_ci_low": difference - 0.05, "difference_ci_high": difference + 0.05,
                          "truth_agreement": 0.5, "proxy_agreement": 0.5 + difference, "rank_correlation": 0.8,
                          "rank_correlation_ci_low": 0.6, "rank_correlation_ci_high": 0.9, "cost_share": 0.2}]}

    result = transfer([calibration("a", 0.1), calibration("b", 0.2), calibration("c", 0.3)])
    first = next(r for r in result["rows"] if r["held_out"] == "a/small_cnn")
    assert first["correction"] == pytest.approx(0.25) and first["error"] == pytest.approx(-0.15)
    assert (first["error_ci_low"], first["error_ci_high"]) == pytest.approx((-0.2, -0.1))
    assert first["predicted"] == pytest.approx(0.6 - 0.25) and first["uncorrected_error"] == pytest.approx(0.1)
    middle = next(r for r in result["summary"] if r["held_out"] == "b/small_cnn")
    assert middle["mean_abs_error"] == pytest.approx(0.0) and middle["within_tolerance"] == 1
    json.dumps(result)  # a JSON file
