"""The planner beyond the null (issue #28, item 5): the component of the mean map beyond a null
family's mean map, by hand on maps built from orthogonal patterns; the pilot bootstrapped over
models (seeded, reproducible, its interval around the estimate); the refusal when trained maps are
the null's in distribution; the quantity named (a correlation, and its square the reliability);
and the beyond-null prediction against held-out models."""

import math

import numpy as np
import pytest
import torch
from scipy.linalg import hadamard

from stablesal.studies.consensus.planner import (
    MAX_MODELS, QUANTITY, PilotAccumulator, beyond_null_variance, bootstrap_plan, gram_statistics,
    held_out_reliability, make_plan, models_needed_many, resampled_components,
)


def patterns() -> torch.Tensor:
    """15 centred, mutually orthogonal 4 × 4 maps with mean square 1: the rows of a 16 × 16
    Hadamard matrix but the constant one. Mean over pixels of p_i · p_j = δ_ij."""
    return torch.from_numpy(hadamard(16)[1:].astype(float)).view(15, 1, 4, 4)


def exact_sets(noise: float = 2.0):
    """μ₀ = 2 p₀ (the null's mean map, V = 4), δ = p₁ (beyond it, V = 1), μ = μ₀ + δ (V = 5).
    Trained pilot: g_k = μ + noise · p_{2+k}, k < 3; null: h_j = μ₀ + p_{5+j}, j < 3. Every noise
    pattern is orthogonal to the rest, so each estimate is exact: V_μ = 5, E_m = noise² (between-model
    variance noise² + 0), V_μ₀ = 4, C = cov(μ, μ₀) = 4, V_μ,beyond = 5 − 4² / 4 = 1 = V_δ."""
    p = patterns()
    mu0, delta = 2 * p[0], p[1]
    trained = [mu0 + delta + noise * p[2 + k] for k in range(3)]
    null = [mu0 + p[5 + j] for j in range(3)]
    return trained, null


def accumulate(maps, seconds=None) -> PilotAccumulator:
    accumulator = PilotAccumulator()
    for index, grey in enumerate(maps):
        accumulator.add(grey, None if seconds is None else seconds[index])
    return accumulator


def test_the_plan_beyond_the_null_by_hand_on_orthogonal_patterns():
    trained, null = exact_sets(noise=2.0)
    plan = make_plan("saliency", "pixel", False, None, accumulate(trained), accumulate(null), "random_label",
                     target=0.9, resamples=50, seed=0)
    assert plan.components["V_mu"] == pytest.approx([5.0]) and plan.components["E_m"] == pytest.approx([4.0])
    stats = gram_statistics(accumulate(trained), accumulate(null))
    point = resampled_components(stats, np.ones((1, 3)), np.ones((1, 3)))
    assert point["V_mu_null"][0] == pytest.approx([4.0]) and point["C"][0] == pytest.approx([4.0])
    assert point["V_mu_beyond"][0] == pytest.approx([1.0])
    assert plan.beyond["V_mu"] == pytest.approx([1.0]) and plan.shared == pytest.approx(1.0)
    # raw: ρ² = 5 / (5 + 4 / K) ≥ 0.81 ⇔ K ≥ 4 · 0.81 / (0.19 · 5) = 3.41: 4 models.
    # beyond the null: ρ² = 1 / (1 + 4 / K) ≥ 0.81 ⇔ K ≥ 4 · 0.81 / 0.19 = 17.05: 18 models
    assert make_plan("saliency", "pixel", False, None, accumulate(trained), resamples=50).models_needed(0.9) == 4
    assert plan.models_needed(0.9) == 18 and plan.recommendation(0.9)["models"] == 18
    assert plan.reliability(18) >= 0.9 > plan.reliability(17)
    assert plan.reliability(4, part="raw") >= 0.9 > plan.reliability(3, part="raw")
    # every resample sees the same orthogonal structure: the interval is the estimate itself
    assert (plan.interval["models_low"], plan.interval["models_high"]) == (18, 18)
    assert plan.refusal is None and plan.null == "random_label"
    # the null's scale does not matter (the difference V_μ − V_μ₀ would change: 5 − 16 = −11)
    doubled = make_plan("saliency", "pixel", False, None, accumulate(trained), accumulate([2 * h for h in null]),
                        "random_label", resamples=50)
    assert doubled.beyond["V_mu"] == pytest.approx([1.0]) and doubled.models_needed(0.9) == 18


def test_beyond_null_variance_by_hand():
    # V = 5, V₀ = 4, C = 4: 5 − 16/4 = 1; no null structure (V₀ ≤ 0): nothing removed; capped removal
    assert beyond_null_variance(5.0, 4.0, 4.0) == pytest.approx(1.0)
    assert beyond_null_variance(5.0, 0.0, 4.0) == pytest.approx(5.0)
    assert beyond_null_variance(5.0, 1.0, 4.0, mean_square=6.0) == pytest.approx(-1.0)


def synthetic(n_models, mu, sd_model, seed, n_images=40, side=16):
    generator = torch.Generator().manual_seed(seed)
    return [mu + sd_model * torch.randn(n_images, side, side, generator=generator, dtype=torch.float64)
            for _ in range(n_models)]


def base_maps(seed=99, n_images=40, side=16, scale=1.0):
    return scale * torch.randn(n_images, side, side, generator=torch.Generator().manual_seed(seed),
                               dtype=torch.float64)


def test_the_pilot_bootstrap_is_seeded_and_its_interval_holds_the_estimate():
    mu0, delta = base_maps(1), base_maps(2, scale=0.6)
    trained, null = synthetic(6, mu0 + delta, 1.0, seed=3), synthetic(6, mu0, 1.0, seed=4)
    repeats = [g + 0.5 * torch.randn(g.shape, generator=torch.Generator().manual_seed(10 + k), dtype=torch.float64)
               for k, g in enumerate(trained)]

    def plan(seed, resamples=400):
        return make_plan("smoothgrad", "pixel", True, 32, accumulate(trained, repeats), accumulate(null),
                         "random_label", target=0.9, max_samples=256, resamples=resamples, seed=seed)

    first, again, other = plan(0), plan(0), plan(1)
    assert first.interval == again.interval                      # reproducible from its seed
    assert first.interval != other.interval                      # and the seed is used
    assert first.interval["resamples"] == 400 and first.interval["seed"] == 0
    models = first.recommendation(0.9)["models"]
    assert first.interval["models_low"] <= models <= first.interval["models_high"]
    assert first.interval["models_low"] < first.interval["models_high"]
    assert first.interval["shared_low"] < first.shared < first.interval["shared_high"]
    # the estimate is near the truth: δ's spatial variance, 0.36 less its pixel mean
    assert first.shared == pytest.approx(float(delta.var(dim=(1, 2), unbiased=False).mean()), abs=0.05)
    recommendation = first.recommendation(0.9)
    assert (recommendation["models_low"], recommendation["models_high"]) == (first.interval["models_low"],
                                                                             first.interval["models_high"])
    sentence = first.sentence(0.9)
    assert "95 % interval" in sentence and "400 bootstrap resamples of the pilot models" in sentence
    with pytest.raises(ValueError, match="resamples must be an integer of at least 2"):
        bootstrap_plan(gram_statistics(accumulate(trained), accumulate(null)), 0.9, resamples=1)


def test_the_bootstrap_centres_on_the_estimate_not_above_it_by_the_noise():
    """A resample's copies of one model are not pairs of distinct models: left out of V_μ, the
    bootstrap median stays at the estimate (with them it would sit E_m / K higher: 1 / 6 here)."""
    trained = synthetic(6, base_maps(5), 1.0, seed=6)
    stats = gram_statistics(accumulate(trained))
    rng = np.random.default_rng(0)
    weights = rng.multinomial(6, np.full(6, 1 / 6), size=2000).astype(float)
    spatial = resampled_components(stats, weights)["V_mu"].mean(1)
    point = resampled_components(stats, np.ones((1, 6)))["V_mu"].mean()
    assert np.nanmedian(spatial) == pytest.approx(point, abs=0.02)


def test_the_planner_refuses_when_trained_maps_are_the_null_in_distribution():
    mu0 = base_maps(7)
    for seed in range(3):
        trained, null = synthetic(5, mu0, 1.0, seed=20 + seed), synthetic(5, mu0, 1.0, seed=40 + seed)
        plan = make_plan("saliency", "pixel", False, None, accumulate(trained), accumulate(null), "random_label",
                         resamples=300, seed=seed)
        assert plan.refusal is not None and plan.interval["shared_low"] <= 0
        sentence = plan.sentence(0.9)
        assert sentence.startswith("saliency with pixel: no plan, because the mean map's shared component is not "
                                   "above the random_label null") and "\n" not in sentence
        assert plan.recommendation(0.9)["models"] is None and plan.recommendation(0.9)["refused"] == plan.refusal
        # the same trained maps against a null with another mean map: a plan
        other = synthetic(5, base_maps(8), 1.0, seed=60 + seed)
        assert make_plan("saliency", "pixel", False, None, accumulate(trained), accumulate(other), "random_label",
                         resamples=300, seed=seed).refusal is None


def test_the_quantity_is_named_a_correlation_and_its_square_the_reliability():
    trained, null = exact_sets()
    plan = make_plan("saliency", "pixel", False, None, accumulate(trained), accumulate(null), "untrained",
                     resamples=20)
    recommendation = plan.recommendation(0.9)
    assert recommendation["quantity"] == QUANTITY + ", both with the untrained null's mean map partialled out"
    assert QUANTITY == "correlation of the K′-model mean map with the infinite-model mean map"
    assert recommendation["reliability"] == pytest.approx(0.81) and recommendation["target"] == 0.9
    assert ("18 models for a mean map whose correlation with the infinite-model mean map beyond the untrained null "
            "(its mean map partialled out) is 0.9 (reliability ρ² = 0.81) (predicted from 3 pilot models)") \
        in plan.sentence(0.9)


def test_models_needed_many_matches_the_scalar_inversion():
    signal = np.array([[1.0, 4.0], [1.0, 1.0], [0.0, 0.0]])
    noise = np.array([[1.0, 2.0], [1.0, 1.0], [1.0, 1.0]])
    counts = models_needed_many(signal, noise, 0.9)
    for row in range(2):
        rho = [np.mean(np.sqrt(signal[row] / (signal[row] + noise[row] / k))) for k in range(1, 100)]
        expected = 1 + next(index for index, value in enumerate(rho) if value >= 0.9)
        assert counts[row] == expected
    assert counts[2] == MAX_MODELS + 1  # no signal: out of reach


def test_the_beyond_prediction_matches_held_out_groups_with_the_null_mean_partialled_out():
    mu0, delta = base_maps(11), base_maps(12, scale=0.7)
    trained = synthetic(3 + 16, mu0 + delta, 1.2, seed=13)
    null = synthetic(12, mu0, 1.0, seed=14)
    plan = make_plan("saliency", "pixel", False, None, accumulate(trained[:3]), accumulate(null), "random_label",
                     resamples=20)
    null_mean = torch.stack(null).mean(0)
    held_out = torch.stack(trained[3:])
    for k in (4, 8):
        observed = held_out_reliability(held_out, k, n_draws=20, seed=k, partial_out=null_mean)
        assert plan.reliability(k, part="beyond") == pytest.approx(observed, abs=0.06)
        # the raw prediction is for another quantity: it is far higher than what lies beyond the null
        assert plan.reliability(k, part="raw") > observed + 0.05
    # the truth, from the simulation's own variances: sqrt(0.49 / (0.49 + 1.44 / K))
    assert plan.reliability(8, part="beyond") == pytest.approx(math.sqrt(0.49 / (0.49 + 1.44 / 8)), abs=0.06)
