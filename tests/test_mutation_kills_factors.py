"""Tests written against the survivors of `make mutation` in stablesal/factor_effects.py (see
mutation/equivalent_factor_effects.md for the ones that cannot change a result): each checks a
known answer, a documented default or message, or a value recomputed independently with NumPy
(the bootstrap replayed by hand, η² as a least-squares R²). Every test is fast."""

import itertools
import warnings

import numpy as np
import pytest

from stablesal.factor_effects import (FACTORS, analyse, check_crossed, design_reading, effect_sizes, eta_squared,
                                      rank_agreement, resolved_orderings, seg_smooth_verdict, split_designs)
from test_factor_effects import _rows  # the same fully crossed design with planted effects


# --------------------------------------------------------------------------------------
# helpers (independent of the code under test)
# --------------------------------------------------------------------------------------

def _table_rows(table: dict[tuple[int, int], list[float]]) -> list[dict]:
    """A segmentation × sampler design from per-image SRG scores given per (segmentation, sampler)."""
    rows = []
    for (segmentation, sampler), scores in table.items():
        row = {factor: "only" for factor in FACTORS}
        row.update(segmentation=str(segmentation), sampler=str(sampler), srg=list(scores))
        rows.append(row)
    return rows


def _r2(y, codes):
    """η² of one factor as the R² of a least-squares fit on its one-hot levels."""
    onehot = np.eye(codes.max() + 1)[codes]
    fitted = onehot @ np.linalg.lstsq(onehot, y, rcond=None)[0]
    return 1 - np.square(y - fitted).sum() / np.square(y - y.mean()).sum()


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


# --------------------------------------------------------------------------------------
# defaults: 2 000 resamples (docs/methods.md §4.3), seed 0 in every function
# --------------------------------------------------------------------------------------

def test_effect_sizes_defaults_are_2000_resamples_seeded_with_0():
    """Without arguments effect_sizes draws the documented 2 000 resamples from seed 0: its
    interval is the one replayed by hand with default_rng(0) and 2 000 draws."""
    rows = _rows({"sampler": [0.0, 0.5], "map": [0.0, 0.3]}, n_images=10, noise=0.5, seed=4)
    out = effect_sizes(rows, metrics=("srg",))
    assert out["n_boot"] == 2000
    replicate = _replicates(rows, ("sampler", "map"), 2000, seed=0)
    effects = {e["factor"]: e for e in out["effects"]}
    for factor in ("sampler", "map"):
        low, high = np.quantile(replicate[factor], [0.025, 0.975])
        assert effects[factor]["eta2_srg_ci_low"] == pytest.approx(low)
        assert effects[factor]["eta2_srg_ci_high"] == pytest.approx(high)


def test_rank_agreement_defaults_are_2000_resamples_seeded_with_0():
    """rank_agreement's default interval is the 95 % percentile interval of 2 000 resamples drawn
    with default_rng(0), replayed by hand (continuous per-image values, so the count matters)."""
    rows, spearman, identical = _agreement_rows()
    out = rank_agreement(rows)
    for name, per_image in (("spearman", spearman), ("identical", identical)):
        low, high = _agreement_interval(per_image, 2000, 0, 0.95)
        assert out[name] == pytest.approx(per_image.mean())
        assert out[f"{name}_ci_low"] == pytest.approx(low) and out[f"{name}_ci_high"] == pytest.approx(high)


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


# --------------------------------------------------------------------------------------
# analyse passes its settings on
# --------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------
# check_crossed / split_designs: the design's name in the message
# --------------------------------------------------------------------------------------

def test_check_crossed_without_a_name_calls_it_the_design():
    """The default name is "design": the messages read "the design design …"."""
    rows = _rows({"sampler": [0.0, 1.0], "map": [0.0, 0.3]}, n_images=2, noise=0.1)
    with pytest.raises(ValueError, match=r"^the design design is not fully crossed: 1 of 4"):
        check_crossed(rows[1:])
    with pytest.raises(ValueError, match=r"^the design design has repeated configurations$"):
        check_crossed(rows + rows[:1])


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


# --------------------------------------------------------------------------------------
# effect_sizes: orderings and their intervals
# --------------------------------------------------------------------------------------

def test_ordering_interval_when_the_first_factor_has_the_smaller_effect():
    """When the first factor in FACTORS order (segmentation) has the smaller η², the ordering
    names the sampler larger and its interval is that of η²_sampler − η²_segmentation, both ends
    replayed by hand."""
    rows = _rows({"segmentation": [0.0, 0.2], "sampler": [0.0, 0.6]}, n_images=12, noise=0.5, seed=8)
    out = effect_sizes(rows, metrics=("srg",), n_boot=300, seed=5)
    (ordering,) = out["orderings"]
    assert (ordering["larger"], ordering["smaller"]) == ("sampler", "segmentation")
    replicate = _replicates(rows, ("segmentation", "sampler"), 300, seed=5)
    low, high = np.quantile(replicate["sampler"] - replicate["segmentation"], [0.025, 0.975])
    assert ordering["ci_low"] == pytest.approx(low) and ordering["ci_high"] == pytest.approx(high)
    assert ordering["ci_low"] < ordering["ci_high"]


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
    low, high = np.quantile(replicate[ordering["larger"]] - replicate[ordering["smaller"]], [0.025, 0.975])
    assert low != pytest.approx(-high, abs=0.01)  # the interval is not symmetric about 0
    assert ordering["ci_low"] == pytest.approx(low) and ordering["ci_high"] == pytest.approx(high)
    assert not ordering["resolved"]


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
        low, high = np.nanquantile(replicate[factor], [0.025, 0.975])
        assert effects[factor]["eta2_srg_ci_low"] == pytest.approx(low)
        assert effects[factor]["eta2_srg_ci_high"] == pytest.approx(high)


# --------------------------------------------------------------------------------------
# eta_squared: any number of leading axes
# --------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------
# rank_agreement
# --------------------------------------------------------------------------------------

def test_rank_agreement_returns_exactly_the_keys_the_reading_uses():
    """The summary holds the mean and interval of each measure and the image count, nothing else."""
    rows, _, _ = _agreement_rows(n_images=6)
    out = rank_agreement(rows, n_boot=50)
    assert set(out) == {"n_images", "spearman", "spearman_ci_low", "spearman_ci_high",
                        "identical", "identical_ci_low", "identical_ci_high"}
    assert out["n_images"] == 6


def test_rank_agreement_of_one_image_is_its_value():
    """One image: every resample is that image, so the mean and both interval ends are its value."""
    out = rank_agreement([{"rank_agreement": [0.3], "rank_identical": [1.0]},
                          {"rank_agreement": [0.5], "rank_identical": [0.0]}], n_boot=20)
    assert out["n_images"] == 1
    assert out["spearman"] == out["spearman_ci_low"] == out["spearman_ci_high"] == pytest.approx(0.4)
    assert out["identical"] == out["identical_ci_low"] == out["identical_ci_high"] == pytest.approx(0.5)


def test_rank_agreement_interval_follows_the_seed():
    """The interval is the one replayed by hand with the given seed (continuous per-image values)."""
    rows, spearman, identical = _agreement_rows(n_images=20, seed=5)
    out = rank_agreement(rows, confidence=0.9, n_boot=300, seed=7)
    for name, per_image in (("spearman", spearman), ("identical", identical)):
        low, high = _agreement_interval(per_image, 300, 7, 0.9)
        assert out[f"{name}_ci_low"] == pytest.approx(low) and out[f"{name}_ci_high"] == pytest.approx(high)


# --------------------------------------------------------------------------------------
# readings: exact text
# --------------------------------------------------------------------------------------

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


def test_resolved_orderings_are_sorted_by_decreasing_difference():
    """resolved_orderings keeps the metric's orderings only, each list by decreasing difference."""
    orderings = [_ordering("map", "calculator", 0.25, True), _ordering("sampler", "calculator", 0.45, True),
                 _ordering("sampler", "map", 0.2, False), _ordering("map", "sampler", 0.3, False),
                 _ordering("sampler", "map", 0.9, True, metric="deletion_auc")]
    resolved, unresolved = resolved_orderings(orderings)
    assert [o["difference"] for o in resolved] == [0.45, 0.25]
    assert [o["difference"] for o in unresolved] == [0.3, 0.2]


def test_design_reading_exact_text_with_resolved_and_unresolved_orderings():
    """The reading, word for word: η² of every factor, then the interactions' own η², the
    resolved orderings by decreasing difference at the confidence level in %, then the others."""
    orderings = [_ordering("map", "calculator", 0.25, True), _ordering("sampler", "calculator", 0.45, True),
                 _ordering("sampler", "map", 0.2, False), _ordering("calculator", "map", 0.3, False)]
    assert design_reading(_reading_analysis(orderings), "Main") == (
        HEADER + "Resolved at 95 % (the interval of the η² difference excludes 0): sampler > calculator, "
        "map > calculator. Not resolved: calculator vs map, sampler vs map.")


def test_design_reading_exact_text_when_nothing_is_resolved():
    """No resolved ordering: the header, the level (90 % at confidence 0.9), then the others."""
    orderings = [_ordering("sampler", "map", 0.2, False), _ordering("map", "calculator", 0.25, False)]
    assert design_reading(_reading_analysis(orderings, confidence=0.9), "Main") == (
        HEADER + "No ordering of the factors is resolved at 90 %. Not resolved: map vs calculator, sampler vs map.")


def test_design_reading_exact_text_when_everything_is_resolved():
    """Every ordering resolved: the text ends with the resolved list's full stop."""
    orderings = [_ordering("sampler", "map", 0.2, True)]
    assert design_reading(_reading_analysis(orderings), "Main") == (
        HEADER + "Resolved at 95 % (the interval of the η² difference excludes 0): sampler > map.")


def test_seg_smooth_verdict_exact_text():
    """The verdict, word for word: one clause per factor, joined by "; ", ending with a full stop."""
    orderings = [_ordering("segmentation", "calculator", 0.3, True), _ordering("map", "calculator", 0.1, False)]
    assert seg_smooth_verdict(_reading_analysis(orderings)) == (
        "SEG-SMOOTH's claim on these data: segmentation matters more than the attribution calculation "
        "(resolved); the map type vs the attribution calculation is not resolved.")
