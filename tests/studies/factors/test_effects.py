"""Tests of :mod:`stablesal.studies.factors.effects`.

The factor study's statistics: η² on balanced designs against hand values and least squares,
bootstrap intervals that resolve a planted ordering and leave a tie unresolved, the split into
balanced designs, and readings that name only resolved orderings."""

import itertools
import warnings
from statistics import NormalDist

import numpy as np
import pytest
import torch

from stablesal.studies.factors.effects import (
    FACTORS, analyse, bootstrap_weights, check_crossed, design_reading, effect_sizes, eta_squared, rank_agreement,
    resolved_orderings, seg_smooth_verdict, split_designs,
)
from stablesal.studies.factors.run import _rank_agreement


def test_eta_squared_of_a_2x2_design_by_hand():
    # y = [1, 2, 3, 6]; grand mean 3, SS_total = 4 + 1 + 0 + 9 = 14.
    # A: level means 1.5 and 4.5 -> SS_A = 2 (1.5² + 1.5²) = 9; B: means 2 and 4 -> SS_B = 2 (1 + 1) = 4.
    out = eta_squared(np.array([1.0, 2.0, 3.0, 6.0]), {"A": np.array([0, 0, 1, 1]), "B": np.array([0, 1, 0, 1])})
    assert out["A"] == pytest.approx(9 / 14)
    assert out["B"] == pytest.approx(4 / 14)
    assert out["interactions"] == pytest.approx(1 / 14)


def test_eta_squared_equals_the_r2_of_a_one_factor_least_squares_fit():
    """Independent computation: η² of a factor is the R² of regressing the configuration means on
    that factor's one-hot levels (NumPy lstsq), on a 3 × 4 × 2 balanced design."""
    rng = np.random.default_rng(3)
    levels = [range(3), range(4), range(2)]
    design = np.array(list(itertools.product(*levels)))
    y = rng.normal(size=len(design)) + design[:, 0] * 0.7 - (design[:, 1] == 2) * 1.3
    codes = {f"f{i}": design[:, i] for i in range(3)}
    out = eta_squared(y, codes)
    for i in range(3):
        onehot = np.eye(design[:, i].max() + 1)[design[:, i]]
        fitted = onehot @ np.linalg.lstsq(onehot, y, rcond=None)[0]
        r2 = 1 - np.square(y - fitted).sum() / np.square(y - y.mean()).sum()
        assert out[f"f{i}"] == pytest.approx(r2, rel=1e-10)
    # replicate axes are kept: the same means twice give the same η² twice
    stacked = eta_squared(np.stack([y, y]), codes)
    assert stacked["f0"].shape == (2,) and stacked["f0"][1] == pytest.approx(out["f0"])


def test_eta_squared_of_constant_scores_is_nan_not_zero():
    out = eta_squared(np.ones(4), {"A": np.array([0, 0, 1, 1])})
    assert np.isnan(out["A"])


def test_bootstrap_weights_are_resampling_counts():
    weights = bootstrap_weights(7, 500, seed=1)
    counts = weights * 7
    assert np.allclose(counts, np.round(counts)) and np.allclose(counts.sum(1), 7)
    # each image is drawn once on average, and P(not drawn) = (1 - 1/n)^n
    assert counts.mean() == pytest.approx(1.0)
    assert (counts == 0).mean() == pytest.approx((1 - 1 / 7) ** 7, abs=0.03)
    assert np.array_equal(weights, bootstrap_weights(7, 500, seed=1))
    assert not np.array_equal(weights, bootstrap_weights(7, 500, seed=2))


def _rows(effects: dict[str, list[float]], n_images: int, noise: float, seed: int = 0) -> list[dict]:
    """A fully crossed design whose per-image SRG is Σ_factor effect[level] + image noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for combo in itertools.product(*(range(len(v)) for v in effects.values())):
        row = dict(zip(effects, (str(level) for level in combo)))
        for factor in FACTORS:
            row.setdefault(factor, "only")
        mean = sum(effects[f][level] for f, level in zip(effects, combo))
        score = (mean + noise * rng.normal(size=n_images)).tolist()
        row.update(srg=score, deletion_auc=score, insertion_auc=score)
        rows.append(row)
    return rows


def test_intervals_resolve_a_planted_ordering_and_not_a_tie():
    # sampler matters most; segmentation and calculator have identical effects (a tie)
    rows = _rows({"sampler": [0.0, 1.0], "segmentation": [0.0, 0.3], "calculator": [0.3, 0.0]}, n_images=40,
                 noise=0.5, seed=5)
    analysis = effect_sizes(rows, metrics=("srg",), n_boot=1000, seed=0)
    effects = {e["factor"]: e for e in analysis["effects"]}
    assert [e["factor"] for e in analysis["effects"]][0] == "sampler"
    assert set(effects) == {"sampler", "segmentation", "calculator", "interactions"}  # one-level factors dropped
    for effect in effects.values():
        assert effect["eta2_srg_ci_low"] <= effect["eta2_srg"] <= effect["eta2_srg_ci_high"]
    # true (infinite-image) η²: 0.25 / (0.25 + 0.0225 + 0.0225) = 0.847 for the sampler
    assert effects["sampler"]["eta2_srg_ci_low"] < 0.847 < effects["sampler"]["eta2_srg_ci_high"]
    resolved = {(o["larger"], o["smaller"]) for o in analysis["orderings"] if o["resolved"]}
    assert ("sampler", "segmentation") in resolved and ("sampler", "calculator") in resolved
    tie = next(o for o in analysis["orderings"] if {o["larger"], o["smaller"]} == {"segmentation", "calculator"})
    assert not tie["resolved"] and tie["ci_low"] < 0 < tie["ci_high"]


def test_interval_narrows_with_more_images():
    effects = {"sampler": [0.0, 0.4], "map": [0.0, 0.2]}
    width = []
    for n in (10, 160):
        e = effect_sizes(_rows(effects, n, noise=0.5, seed=2), metrics=("srg",), n_boot=500)["effects"][0]
        width.append(e["eta2_srg_ci_high"] - e["eta2_srg_ci_low"])
    assert width[1] < width[0] / 2


def test_split_designs_separates_the_single_feature_samplers_and_ciu():
    rows = []
    for segmentation, sampler, calculator, kind in itertools.product(["grid", "slic"], ["random", "shap", "single"],
                                                                     ["rise", "pda", "ciu"], ["pixel", "segment"]):
        if calculator == "ciu" and sampler != "single":
            continue
        for size in (["M"] if sampler == "single" else ["M", "400"]):
            rows.append({"segmentation": segmentation, "sampler": sampler, "n_samples": size,
                         "calculator": calculator, "map": kind, "srg": [0.0]})
    designs = split_designs(rows)
    assert {r["sampler"] for r in designs["main"]} == {"random", "shap"}
    assert {r["calculator"] for r in designs["main"]} == {"rise", "pda"}
    assert len(designs["main"]) == 2 * 2 * 2 * 2 * 2
    assert {r["sampler"] for r in designs["single_feature"]} == {"single"}
    assert {r["calculator"] for r in designs["single_feature"]} == {"rise", "pda", "ciu"}
    with pytest.raises(ValueError, match="not fully crossed"):
        check_crossed(designs["main"][1:], "main")
    with pytest.raises(ValueError, match="repeated"):
        check_crossed(designs["main"] + designs["main"][:1], "main")


def test_analyse_runs_every_design():
    rows = _rows({"sampler": [0.0, 1.0], "calculator": [0.0, 0.1]}, n_images=8, noise=0.1)
    for row in rows:
        row["rank_agreement"], row["rank_identical"] = [0.5] * 8, [0.0] * 8
    out = analyse(rows, n_boot=200)
    assert set(out["designs"]) == {"main"} and out["rank_agreement"]["spearman"] == pytest.approx(0.5)


def test_rank_agreement_between_calculators():
    base = torch.arange(16.0).view(1, 1, 4, 4).repeat(2, 3, 1, 1)
    maps = {("a", "pixel"): base, ("b", "pixel"): base * 3 + 1,        # same order, other values
            ("c", "pixel"): -base}                                    # reversed
    out = _rank_agreement(maps)
    assert out[("a", "pixel")]["rank_agreement"] == pytest.approx([0.0, 0.0])    # mean of 1 and -1
    assert out[("a", "pixel")]["rank_identical"] == pytest.approx([0.5, 0.5])
    assert out[("c", "pixel")]["rank_agreement"] == pytest.approx([-1.0, -1.0])
    rows = [{"rank_agreement": [0.2, 0.4], "rank_identical": [0.0, 1.0]},
            {"rank_agreement": [0.6, float("nan")], "rank_identical": [1.0, 1.0]}]
    summary = rank_agreement(rows, n_boot=200)
    # per image: (0.2 + 0.6) / 2 = 0.4 and 0.4 (NaN ignored) -> 0.4; identical: 0.5 and 1.0 -> 0.75
    assert summary["spearman"] == pytest.approx(0.4) and summary["identical"] == pytest.approx(0.75)
    assert summary["identical_ci_low"] >= 0.5 and summary["identical_ci_high"] <= 1.0
    assert rank_agreement([{"srg": [1.0]}]) is None


def _analysis(resolved_pairs, unresolved_pairs):
    effects = [{"factor": f, "levels": 2, "eta2_srg": 0.1, "eta2_srg_ci_low": 0.0, "eta2_srg_ci_high": 0.2}
               for f in ("sampler", "segmentation", "calculator", "map", "interactions")]
    orderings = [{"metric": "srg", "larger": a, "smaller": b, "difference": 0.1, "ci_low": 0.01 if ok else -0.1,
                  "ci_high": 0.2, "resolved": ok}
                 for pairs, ok in ((resolved_pairs, True), (unresolved_pairs, False)) for a, b in pairs]
    return {"effects": effects, "orderings": orderings, "n_images": 5, "n_configurations": 16, "confidence": 0.95}


def test_reading_names_only_resolved_orderings():
    analysis = _analysis([("sampler", "calculator")], [("segmentation", "calculator"), ("calculator", "map")])
    text = design_reading(analysis, "Main")
    assert "sampler > calculator" in text
    assert "segmentation > calculator" not in text and "segmentation vs calculator" in text
    verdict = seg_smooth_verdict(analysis)
    assert "segmentation vs the attribution calculation is not resolved" in verdict
    assert "the map type vs the attribution calculation is not resolved" in verdict
    verdict = seg_smooth_verdict(_analysis([("calculator", "map"), ("segmentation", "calculator")], []))
    assert "segmentation matters more than the attribution calculation (resolved)" in verdict
    assert "the map type matters less than the attribution calculation (resolved)" in verdict
    assert "No ordering" in design_reading(_analysis([], [("sampler", "map")]), "Main")


def test_intervals_are_reproducible_and_follow_the_seed():
    rows = _rows({"sampler": [0.0, 1.0], "map": [0.0, 0.3]}, n_images=12, noise=0.5, seed=1)
    first = effect_sizes(rows, metrics=("srg",), n_boot=300, seed=4)["effects"][0]
    again = effect_sizes(rows, metrics=("srg",), n_boot=300, seed=4)["effects"][0]
    other = effect_sizes(rows, metrics=("srg",), n_boot=300, seed=5)["effects"][0]
    assert first == again
    assert first["eta2_srg"] == other["eta2_srg"] and first["eta2_srg_ci_low"] != other["eta2_srg_ci_low"]


def test_incomplete_design_names_a_missing_configuration():
    rows = _rows({"sampler": [0.0, 1.0], "map": [0.0, 0.3]}, n_images=2, noise=0.1)
    missing = rows.pop(0)
    with pytest.raises(ValueError, match=r"1 of 4 configurations missing, e\.g\. \{'sampler': '0', 'map': '0'\}"):
        check_crossed(rows, "main")
    assert missing["sampler"] == "0" and missing["map"] == "0"


def _r2(y, codes):
    onehot = np.eye(codes.max() + 1)[codes]
    fitted = onehot @ np.linalg.lstsq(onehot, y, rcond=None)[0]
    return 1 - np.square(y - fitted).sum() / np.square(y - y.mean()).sum()


def test_intervals_and_orderings_against_an_independent_bootstrap():
    """Replay the documented procedure by hand: draw images with replacement with the same
    generator, recompute every configuration mean, η² as a least-squares R², and take the
    bias-corrected percentiles (also at 90 %); orderings from the same replicates."""
    rows = _rows({"sampler": [0.0, 0.5], "map": [0.0, 0.4, 0.1]}, n_images=9, noise=0.6, seed=7)
    codes = {f: np.array([int(r[f]) for r in rows]) for f in ("sampler", "map")}
    scores = np.array([r["srg"] for r in rows])
    draws = np.random.default_rng(3).integers(0, 9, size=(200, 9))
    replicate = {f: np.array([_r2(scores[:, d].mean(1), codes[f]) for d in draws]) for f in codes}
    for confidence in (0.95, 0.9):
        out = effect_sizes(rows, metrics=("srg",), n_boot=200, confidence=confidence, seed=3)
        assert out["n_images"] == 9 and out["n_configurations"] == 6 and out["n_boot"] == 200
        assert out["confidence"] == confidence
        effects = {e["factor"]: e for e in out["effects"]}
        assert effects["interactions"]["levels"] == 6 and effects["map"]["levels"] == 3
        for factor in codes:
            low, high = _bias_corrected(replicate[factor], _r2(scores.mean(1), codes[factor]), confidence)
            assert effects[factor]["eta2_srg"] == pytest.approx(_r2(scores.mean(1), codes[factor]))
            assert effects[factor]["eta2_srg_ci_low"] == pytest.approx(low)
            assert effects[factor]["eta2_srg_ci_high"] == pytest.approx(high)
        (ordering,) = out["orderings"]
        difference = replicate["sampler"] - replicate["map"]
        point = effects["sampler"]["eta2_srg"] - effects["map"]["eta2_srg"]
        low, high = _bias_corrected(difference if point >= 0 else -difference, abs(point), confidence)
        assert ordering["metric"] == "srg" and ordering["difference"] == pytest.approx(abs(point))
        assert (ordering["larger"], ordering["smaller"]) == (("sampler", "map") if point >= 0 else ("map", "sampler"))
        assert ordering["ci_low"] == pytest.approx(low) and ordering["ci_high"] == pytest.approx(high)
        assert ordering["resolved"] == bool(low > 0)
    with pytest.raises(ValueError, match="confidence"):
        effect_sizes(rows, confidence=1.0)
    with pytest.raises(ValueError, match="confidence"):
        effect_sizes(rows, confidence=0.0)


def test_rank_agreement_interval_against_numpy():
    rows = [{"rank_agreement": [0.1, 0.5, 0.9, 0.3], "rank_identical": [0.0, 0.5, 1.0, 0.0]},
            {"rank_agreement": [0.3, 0.7, 0.7, 0.1], "rank_identical": [0.0, 1.0, 1.0, 0.0]}]
    per_image = np.array([0.2, 0.6, 0.8, 0.2])
    draws = np.random.default_rng(2).integers(0, 4, size=(300, 4))
    for confidence in (0.95, 0.8):
        out = rank_agreement(rows, confidence=confidence, n_boot=300, seed=2)
        alpha = (1 - confidence) / 2
        low, high = np.quantile(per_image[draws].mean(1), [alpha, 1 - alpha])
        assert out["n_images"] == 4 and out["spearman"] == pytest.approx(0.45)
        assert out["spearman_ci_low"] == pytest.approx(low) and out["spearman_ci_high"] == pytest.approx(high)


def test_interval_notes_name_the_bootstrap_that_ran():
    """The factor study's notes carry the level, resample count and seed of the analysis they
    describe (not defaults), and name the images as sampled with model 0 held fixed."""
    from stablesal.studies.factors.effects import interval_notes

    analysis = {"designs": {"main": {"confidence": 0.9, "n_boot": 123}, "other": {"confidence": 0.5, "n_boot": 1}}}
    notes = interval_notes(analysis, seed=17)
    assert set(notes) == {"factor_study.analysis", "factor_study.configurations"}
    boot = notes["factor_study.analysis"]
    assert (boot["kind"], boot["level"], boot["n_boot"], boot["seed"]) == ("bias-corrected-bootstrap", 0.9, 123, 17)
    assert boot["sampled"] == ["test images"] and boot["fixed"] == ["model 0", "the explainers' draws"]
    assert boot["reference"] == "docs/methods.md §4.3"
    table = notes["factor_study.configurations"]
    assert (table["kind"], table["level"], table["sampled"]) == ("t-over-units", 0.95, ["test images"])
    assert table["fixed"] == ["model 0", "the explainers' draws"]
    empty = interval_notes({"designs": {}}, seed=0)["factor_study.analysis"]
    assert (empty["level"], empty["n_boot"]) == (0.95, 0)
    # the exceptions it names are the analysis's own columns: η² bounds per metric, then the orderings'
    # and the rank agreements' bounds
    parts = [part.strip() for part in boot["columns"].split(",")]
    assert parts[0].split(" / ") == ["eta2_<metric>_ci_low", "_ci_high"]
    assert parts[1] == "orderings' ci_low / ci_high" and parts[2].startswith("rank_agreement's *_ci_low")


# ------------------------------ tests the mutation run asked for (marked mutation)
# Tests written against the survivors of `make mutation` in stablesal/factor_effects.py (see
# mutation/equivalent_factor_effects.md for the ones that cannot change a result): each checks a
# known answer, a documented default or message, or a value recomputed independently with NumPy
# (the bootstrap replayed by hand, η² as a least-squares R²). Every test is fast.


def _table_rows(table: dict[tuple[int, int], list[float]]) -> list[dict]:
    """A segmentation × sampler design from per-image SRG scores given per (segmentation, sampler)."""
    rows = []
    for (segmentation, sampler), scores in table.items():
        row = {factor: "only" for factor in FACTORS}
        row.update(segmentation=str(segmentation), sampler=str(sampler), srg=list(scores))
        rows.append(row)
    return rows


def _replicates(rows, factors, n_boot, seed, metric="srg"):
    """Bootstrap replicates of every factor's η², replayed by hand: draw images with replacement
    with the documented generator, drop images with a non-finite score, recompute the
    configuration means and η² (NaN for a replicate that drew no usable image)."""
    scores = np.array([r[metric] for r in rows], dtype=float)
    finite = np.isfinite(scores).all(0)
    codes = {f: np.array([sorted({r[f] for r in rows}).index(r[f]) for r in rows]) for f in factors}
    draws = np.random.default_rng(seed).integers(0, scores.shape[1], size=(n_boot, scores.shape[1]))
    out = {f: [] for f in factors}
    for draw in draws:
        kept = draw[finite[draw]]
        for f in factors:
            out[f].append(_r2(scores[:, kept].mean(1), codes[f]) if kept.size else np.nan)
    return {f: np.array(v) for f, v in out.items()}


def _bias_corrected(replicates, point, confidence=0.95):
    """Efron's bias-corrected percentile interval replayed by hand (statistics.NormalDist, not
    SciPy): z0 from the share of finite replicates below ``point`` (ties half), clipped to
    [1/(2B), 1 − 1/(2B)] (within rounding of the point is a tie), then NumPy's Φ(2 z0 ∓ z) quantiles."""
    values = np.asarray(replicates, dtype=float)
    values = values[np.isfinite(values)]
    tied = np.abs(values - point) <= 1e-12 + 1e-9 * abs(point)
    share = (np.sum((values < point) & ~tied) + 0.5 * np.sum(tied)) / values.size
    share = min(max(share, 0.5 / values.size), 1 - 0.5 / values.size)
    normal = NormalDist()
    z0, z = normal.inv_cdf(share), normal.inv_cdf(0.5 + confidence / 2)
    return np.quantile(values, [normal.cdf(2 * z0 - z), normal.cdf(2 * z0 + z)])


def _agreement_interval(per_image, n_boot, seed, confidence):
    """Percentile-bootstrap interval of a mean over images, replayed by hand."""
    per_image = np.asarray(per_image, dtype=float)
    draws = np.random.default_rng(seed).integers(0, per_image.size, size=(n_boot, per_image.size))
    alpha = (1 - confidence) / 2
    return np.quantile(per_image[draws].mean(1), [alpha, 1 - alpha])


def _agreement_rows(n_images=25, seed=11):
    """Two configurations' rank agreement per image, continuous values (no ties in the means)."""
    rng = np.random.default_rng(seed)
    spearman = rng.uniform(0.0, 1.0, size=(2, n_images))
    identical = rng.uniform(0.0, 1.0, size=(2, n_images))
    rows = [{"rank_agreement": s.tolist(), "rank_identical": i.tolist()} for s, i in zip(spearman, identical)]
    return rows, spearman.mean(0), identical.mean(0)


@pytest.mark.mutation
def test_effect_sizes_defaults_are_2000_resamples_seeded_with_0():
    """Without arguments effect_sizes draws the documented 2 000 resamples from seed 0: its
    interval is the one replayed by hand with default_rng(0) and 2 000 draws."""
    rows = _rows({"sampler": [0.0, 0.5], "map": [0.0, 0.3]}, n_images=10, noise=0.5, seed=4)
    out = effect_sizes(rows, metrics=("srg",))
    assert out["n_boot"] == 2000
    replicate = _replicates(rows, ("sampler", "map"), 2000, seed=0)
    effects = {e["factor"]: e for e in out["effects"]}
    for factor in ("sampler", "map"):
        low, high = _bias_corrected(replicate[factor], effects[factor]["eta2_srg"])
        assert effects[factor]["eta2_srg_ci_low"] == pytest.approx(low)
        assert effects[factor]["eta2_srg_ci_high"] == pytest.approx(high)


@pytest.mark.mutation
def test_rank_agreement_defaults_are_2000_resamples_seeded_with_0():
    """rank_agreement's default interval is the 95 % percentile interval of 2 000 resamples drawn
    with default_rng(0), replayed by hand (continuous per-image values, so the count matters)."""
    rows, spearman, identical = _agreement_rows()
    out = rank_agreement(rows)
    for name, per_image in (("spearman", spearman), ("identical", identical)):
        low, high = _agreement_interval(per_image, 2000, 0, 0.95)
        assert out[name] == pytest.approx(per_image.mean())
        assert out[f"{name}_ci_low"] == pytest.approx(low) and out[f"{name}_ci_high"] == pytest.approx(high)


@pytest.mark.mutation
def test_analyse_defaults_are_2000_resamples_seeded_with_0():
    """analyse (called without a seed by analysis/factor_images_needed.py) uses 2 000 resamples
    and seed 0 for the designs and for the rank agreement, replayed by hand."""
    rows = _rows({"sampler": [0.0, 0.5], "map": [0.0, 0.3]}, n_images=25, noise=0.5, seed=4)
    agreement, spearman, _ = _agreement_rows(n_images=25)
    for row, extra in zip(rows, itertools.cycle(agreement)):
        row.update(extra)
    out = analyse(rows)
    assert out["designs"]["main"]["n_boot"] == 2000 and out["designs"]["main"]["confidence"] == 0.95
    # every row of the design carries one of the two agreement rows: the per-image mean is theirs
    low, high = _agreement_interval(spearman, 2000, 0, 0.95)
    assert out["rank_agreement"]["spearman"] == pytest.approx(spearman.mean())
    assert out["rank_agreement"]["spearman_ci_low"] == pytest.approx(low)
    assert out["rank_agreement"]["spearman_ci_high"] == pytest.approx(high)


@pytest.mark.mutation
def test_analyse_passes_n_boot_confidence_and_seed_to_every_statistic():
    """analyse's design is effect_sizes of that design with the same n_boot, confidence and seed,
    and its rank agreement is the interval replayed by hand with that seed and confidence."""
    rows = _rows({"sampler": [0.0, 0.5], "calculator": [0.0, 0.3]}, n_images=25, noise=0.5, seed=6)
    agreement, spearman, identical = _agreement_rows(n_images=25, seed=12)
    for row, extra in zip(rows, itertools.cycle(agreement)):
        row.update(extra)
    out = analyse(rows, n_boot=300, confidence=0.9, seed=3)
    design = out["designs"]["main"]
    assert design["n_boot"] == 300 and design["confidence"] == 0.9
    assert design == effect_sizes(rows, n_boot=300, confidence=0.9, seed=3)
    for name, per_image in (("spearman", spearman), ("identical", identical)):
        low, high = _agreement_interval(per_image, 300, 3, 0.9)
        assert out["rank_agreement"][f"{name}_ci_low"] == pytest.approx(low)
        assert out["rank_agreement"][f"{name}_ci_high"] == pytest.approx(high)


@pytest.mark.mutation
def test_check_crossed_without_a_name_calls_it_the_design():
    """The default name is "design": the messages read "the design design …"."""
    rows = _rows({"sampler": [0.0, 1.0], "map": [0.0, 0.3]}, n_images=2, noise=0.1)
    with pytest.raises(ValueError, match=r"^the design design is not fully crossed: 1 of 4"):
        check_crossed(rows[1:])
    with pytest.raises(ValueError, match=r"^the design design has repeated configurations$"):
        check_crossed(rows + rows[:1])


@pytest.mark.mutation
def test_split_designs_names_the_incomplete_design():
    """An incomplete design is reported under its own name, "main" or "single_feature"."""
    main = _rows({"sampler": [0.0, 1.0], "map": [0.0, 0.3]}, n_images=2, noise=0.1)
    for row in main:
        row["sampler"] = ["random", "shap"][int(row["sampler"])]
    single = [dict(row, sampler={"random": "single", "shap": "inverse-single"}[row["sampler"]]) for row in main]
    with pytest.raises(ValueError, match=r"^the main design is not fully crossed"):
        split_designs(main[1:] + single)
    with pytest.raises(ValueError, match=r"^the single_feature design is not fully crossed"):
        split_designs(main + single[1:])
    assert set(split_designs(main + single)) == {"main", "single_feature"}


@pytest.mark.mutation
def test_ordering_interval_when_the_first_factor_has_the_smaller_effect():
    """When the first factor in FACTORS order (segmentation) has the smaller η², the ordering
    names the sampler larger and its interval is that of η²_sampler − η²_segmentation, both ends
    replayed by hand."""
    rows = _rows({"segmentation": [0.0, 0.2], "sampler": [0.0, 0.6]}, n_images=12, noise=0.5, seed=8)
    out = effect_sizes(rows, metrics=("srg",), n_boot=300, seed=5)
    (ordering,) = out["orderings"]
    assert (ordering["larger"], ordering["smaller"]) == ("sampler", "segmentation")
    replicate = _replicates(rows, ("segmentation", "sampler"), 300, seed=5)
    low, high = _bias_corrected(replicate["sampler"] - replicate["segmentation"], ordering["difference"])
    assert ordering["ci_low"] == pytest.approx(low) and ordering["ci_high"] == pytest.approx(high)
    assert ordering["ci_low"] < ordering["ci_high"]


@pytest.mark.mutation
def test_ordering_interval_on_an_exact_tie_is_the_interval_of_larger_minus_smaller():
    """Two factors whose point η² are exactly equal (the two off-diagonal cells have the same
    mean, per image they differ): the difference is 0, and whichever factor is named larger the
    interval is that of η²_larger − η²_smaller, replayed by hand (an asymmetric interval, so a
    flipped sign or a swapped name shows)."""
    rows = _table_rows({(0, 0): [0.0, 0.25, 0.0, 0.25, 0.5], (0, 1): [0.75, 0.25, 0.5, 0.5, 0.5],
                        (1, 0): [0.0, 0.5, 0.5, 1.0, 0.5], (1, 1): [1.5, 1.25, 1.0, 1.5, 1.25]})
    out = effect_sizes(rows, metrics=("srg",), n_boot=400, seed=1)
    effects = {e["factor"]: e["eta2_srg"] for e in out["effects"]}
    assert effects["segmentation"] == effects["sampler"]
    (ordering,) = out["orderings"]
    assert ordering["difference"] == 0.0 and {ordering["larger"], ordering["smaller"]} == {"segmentation", "sampler"}
    replicate = _replicates(rows, ("segmentation", "sampler"), 400, seed=1)
    low, high = _bias_corrected(replicate[ordering["larger"]] - replicate[ordering["smaller"]], 0.0)
    assert low != pytest.approx(-high, abs=0.01)  # the interval is not symmetric about 0
    assert ordering["ci_low"] == pytest.approx(low) and ordering["ci_high"] == pytest.approx(high)
    assert not ordering["resolved"]


@pytest.mark.mutation
def test_an_interval_that_touches_zero_does_not_resolve_the_ordering():
    """Resolved means the interval excludes 0. Segmentation's effect exceeds the sampler's only
    in image 0; resamples without it (P = (3/4)⁴ ≈ 32 %) give exactly equal η², so the 2.5 %
    quantile of the difference is exactly 0 and the ordering is not resolved."""
    rows = _table_rows({(0, 0): [0.0] * 4, (0, 1): [1.0] * 4, (1, 0): [3.0, 1.0, 1.0, 1.0],
                        (1, 1): [4.0, 2.0, 2.0, 2.0]})
    out = effect_sizes(rows, metrics=("srg",), n_boot=400, seed=1)
    (ordering,) = out["orderings"]
    assert (ordering["larger"], ordering["smaller"]) == ("segmentation", "sampler")
    assert ordering["difference"] > 0 and ordering["ci_low"] == 0.0 and ordering["ci_high"] > 0
    assert ordering["resolved"] is False


@pytest.mark.mutation
def test_resamples_without_a_usable_image_are_dropped_quietly():
    """Images with a NaN score are left out; a resample that draws none of the usable images
    (P = (3/5)⁵ ≈ 8 %) gives NaN and is ignored, without a RuntimeWarning, and the interval is the
    one replayed by hand over the remaining resamples."""
    rows = _rows({"sampler": [0.0, 0.5], "map": [0.0, 0.3]}, n_images=5, noise=0.5, seed=9)
    for row in rows:
        row["srg"] = row["srg"][:2] + [float("nan")] * 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = effect_sizes(rows, metrics=("srg",), n_boot=300, seed=2)
    replicate = _replicates(rows, ("sampler", "map"), 300, seed=2)
    assert np.isnan(replicate["sampler"]).sum() > 7  # the case occurs
    effects = {e["factor"]: e for e in out["effects"]}
    for factor in ("sampler", "map"):
        low, high = _bias_corrected(replicate[factor], effects[factor]["eta2_srg"])
        assert effects[factor]["eta2_srg_ci_low"] == pytest.approx(low)
        assert effects[factor]["eta2_srg_ci_high"] == pytest.approx(high)


@pytest.mark.mutation
def test_eta_squared_keeps_several_leading_axes():
    """Means of shape [2, 3, C] give η² of shape [2, 3], each the η² of its own slice (the
    docstring: leading axes are kept)."""
    rng = np.random.default_rng(4)
    design = np.array(list(itertools.product(range(2), range(3))))
    codes = {"A": design[:, 0], "B": design[:, 1]}
    means = rng.normal(size=(2, 3, len(design)))
    out = eta_squared(means, codes)
    for factor in codes:
        assert out[factor].shape == (2, 3)
        for i, j in itertools.product(range(2), range(3)):
            assert out[factor][i, j] == pytest.approx(_r2(means[i, j], codes[factor]))
    assert out["interactions"][1, 2] == pytest.approx(1 - out["A"][1, 2] - out["B"][1, 2])


@pytest.mark.mutation
def test_rank_agreement_returns_exactly_the_keys_the_reading_uses():
    """The summary holds the mean and interval of each measure and the image count, nothing else."""
    rows, _, _ = _agreement_rows(n_images=6)
    out = rank_agreement(rows, n_boot=50)
    assert set(out) == {"n_images", "spearman", "spearman_ci_low", "spearman_ci_high",
                        "identical", "identical_ci_low", "identical_ci_high"}
    assert out["n_images"] == 6


@pytest.mark.mutation
def test_rank_agreement_of_one_image_is_its_value():
    """One image: every resample is that image, so the mean and both interval ends are its value."""
    out = rank_agreement([{"rank_agreement": [0.3], "rank_identical": [1.0]},
                          {"rank_agreement": [0.5], "rank_identical": [0.0]}], n_boot=20)
    assert out["n_images"] == 1
    assert out["spearman"] == out["spearman_ci_low"] == out["spearman_ci_high"] == pytest.approx(0.4)
    assert out["identical"] == out["identical_ci_low"] == out["identical_ci_high"] == pytest.approx(0.5)


@pytest.mark.mutation
def test_rank_agreement_interval_follows_the_seed():
    """The interval is the one replayed by hand with the given seed (continuous per-image values)."""
    rows, spearman, identical = _agreement_rows(n_images=20, seed=5)
    out = rank_agreement(rows, confidence=0.9, n_boot=300, seed=7)
    for name, per_image in (("spearman", spearman), ("identical", identical)):
        low, high = _agreement_interval(per_image, 300, 7, 0.9)
        assert out[f"{name}_ci_low"] == pytest.approx(low) and out[f"{name}_ci_high"] == pytest.approx(high)


def _effect(factor, value, low, high):
    return {"factor": factor, "levels": 2, "eta2_srg": value, "eta2_srg_ci_low": low, "eta2_srg_ci_high": high}


def _ordering(larger, smaller, difference, resolved, metric="srg"):
    return {"metric": metric, "larger": larger, "smaller": smaller, "difference": difference,
            "ci_low": 0.01 if resolved else -0.1, "ci_high": 0.5, "resolved": resolved}


def _reading_analysis(orderings, confidence=0.95):
    effects = [_effect("sampler", 0.5, 0.4, 0.6), _effect("map", 0.3, 0.2, 0.4),
               _effect("calculator", 0.05, 0.01, 0.1), _effect("interactions", 0.15, 0.1, 0.2)]
    return {"effects": effects, "orderings": orderings, "n_images": 30, "n_configurations": 12,
            "confidence": confidence}


HEADER = ("Main (12 configurations, 30 images): η² of SRG sampler 0.50 [0.40, 0.60], map 0.30 [0.20, 0.40], "
          "calculator 0.05 [0.01, 0.10]; interactions 0.15 [0.10, 0.20]. ")


@pytest.mark.mutation
def test_resolved_orderings_are_sorted_by_decreasing_difference():
    """resolved_orderings keeps the metric's orderings only, each list by decreasing difference."""
    orderings = [_ordering("map", "calculator", 0.25, True), _ordering("sampler", "calculator", 0.45, True),
                 _ordering("sampler", "map", 0.2, False), _ordering("map", "sampler", 0.3, False),
                 _ordering("sampler", "map", 0.9, True, metric="deletion_auc")]
    resolved, unresolved = resolved_orderings(orderings)
    assert [o["difference"] for o in resolved] == [0.45, 0.25]
    assert [o["difference"] for o in unresolved] == [0.3, 0.2]


@pytest.mark.mutation
def test_design_reading_exact_text_with_resolved_and_unresolved_orderings():
    """The reading, word for word: η² of every factor, then the interactions' own η², the
    resolved orderings by decreasing difference at the confidence level in %, then the others."""
    orderings = [_ordering("map", "calculator", 0.25, True), _ordering("sampler", "calculator", 0.45, True),
                 _ordering("sampler", "map", 0.2, False), _ordering("calculator", "map", 0.3, False)]
    assert design_reading(_reading_analysis(orderings), "Main") == (
        HEADER + "Resolved at 95 % (the interval of the η² difference excludes 0): sampler > calculator, "
        "map > calculator. Not resolved: calculator vs map, sampler vs map.")


@pytest.mark.mutation
def test_design_reading_exact_text_when_nothing_is_resolved():
    """No resolved ordering: the header, the level (90 % at confidence 0.9), then the others."""
    orderings = [_ordering("sampler", "map", 0.2, False), _ordering("map", "calculator", 0.25, False)]
    assert design_reading(_reading_analysis(orderings, confidence=0.9), "Main") == (
        HEADER + "No ordering of the factors is resolved at 90 %. Not resolved: map vs calculator, sampler vs map.")


@pytest.mark.mutation
def test_design_reading_exact_text_when_everything_is_resolved():
    """Every ordering resolved: the text ends with the resolved list's full stop."""
    orderings = [_ordering("sampler", "map", 0.2, True)]
    assert design_reading(_reading_analysis(orderings), "Main") == (
        HEADER + "Resolved at 95 % (the interval of the η² difference excludes 0): sampler > map.")


@pytest.mark.mutation
def test_seg_smooth_verdict_exact_text():
    """The verdict, word for word: one clause per factor, joined by "; ", ending with a full stop."""
    orderings = [_ordering("segmentation", "calculator", 0.3, True), _ordering("map", "calculator", 0.1, False)]
    assert seg_smooth_verdict(_reading_analysis(orderings)) == (
        "SEG-SMOOTH's claim on these data: segmentation matters more than the attribution calculation "
        "(resolved); the map type vs the attribution calculation is not resolved.")
