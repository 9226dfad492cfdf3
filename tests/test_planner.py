"""The planner: variance components recovered from synthetic maps with known variances, predictions
against held-out groups of simulated models, the Spearman–Brown formula by hand, and bad requests."""

import math

import numpy as np
import pytest
import torch

from stablesal.planner import (
    PilotAccumulator, Plan, held_out_reliability, observed_reliability, pilot, predicted_reliability,
    reliability_curve,
)
from stablesal.settings import StudySettings


def synthetic_maps(n_models, n_images=40, side=16, sd_model=0.6, sd_sample=0.8, seed=0, mu=None):
    """g_{k,r} = μ + m_k + s_{k,r}: μ with unit spatial variance, pixel-independent noise."""
    generator = torch.Generator().manual_seed(seed)
    if mu is None:
        mu = torch.randn(n_images, side, side, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
    models = mu + sd_model * torch.randn(n_models, *mu.shape, generator=generator, dtype=torch.float64)
    runs = [models + sd_sample * torch.randn(models.shape, generator=generator, dtype=torch.float64)
            for _ in range(2)]
    return mu, runs


def test_components_recover_the_simulated_variances():
    # five pilot models: V_μ's noise correction ((0.36 + 0.64) / 5 = 0.2 of V_μ = 1) must be made
    mu, (first, second) = synthetic_maps(5, n_images=400, sd_model=0.6, sd_sample=0.8)
    accumulator = PilotAccumulator()
    for k in range(5):
        accumulator.add(first[k], second[k])
    components = accumulator.components()
    # centring removes one of H·W degrees of freedom; the rest are the simulated variances
    assert np.mean(components["E_s"]) == pytest.approx(0.64, rel=0.05)
    assert np.mean(components["E_m"]) == pytest.approx(0.36, rel=0.1)
    assert np.mean(components["V_mu"]) == pytest.approx(float(mu.var(dim=(1, 2), unbiased=False).mean()), rel=0.05)


def test_spearman_brown_by_hand():
    components = {"V_mu": np.array([1.0, 4.0]), "E_m": np.array([1.0, 2.0]), "E_s": np.array([0.5, 0.0])}
    # image 0: 1 / (1 + 1.5 / K); image 1: 4 / (4 + 2 / K)
    for k in (1, 3, 10):
        expected = (math.sqrt(1 / (1 + 1.5 / k)) + math.sqrt(4 / (4 + 2 / k))) / 2
        assert predicted_reliability(components, k) == pytest.approx(expected)
    # four times the pilot's samples: a quarter of the explainer variance
    expected = (math.sqrt(1 / (1 + (1 + 0.125) / 2)) + math.sqrt(4 / (4 + 1.0))) / 2
    assert predicted_reliability(components, 2, n_samples=128, pilot_samples=32) == pytest.approx(expected)
    assert predicted_reliability({"V_mu": np.array([0.0]), "E_m": np.array([1.0]), "E_s": np.array([0.0])}, 5) == 0


def test_prediction_from_three_pilot_models_matches_held_out_groups():
    mu, (first, second) = synthetic_maps(3 + 16, sd_model=1.5, sd_sample=1.0, seed=5)
    accumulator = PilotAccumulator()
    for k in range(3):
        accumulator.add(first[k], second[k])
    plan = Plan("smoothgrad", "pixel", True, 3, 32, accumulator.components())
    for k in (4, 8):
        observed = held_out_reliability(first[3:], k, n_draws=20, seed=k)
        assert plan.reliability(k) == pytest.approx(observed, abs=0.05)
    # the truth, from the simulation's own variances: sqrt(1 / (1 + (2.25 + 1) / K))
    assert plan.reliability(8) == pytest.approx(math.sqrt(1 / (1 + 3.25 / 8)), abs=0.05)


def test_inverse_planning_is_the_smallest_sufficient_count():
    components = {"V_mu": np.array([1.0]), "E_m": np.array([1.0]), "E_s": np.array([1.0])}
    plan = Plan("smoothgrad", "fastslic", True, 3, 32, components)
    models = plan.models_needed(0.9)
    # ρ² = 1 / (1 + 2 / K) ≥ 0.81  ⇔  K ≥ 2 · 0.81 / 0.19 = 8.53
    assert models == 9
    assert plan.reliability(models) >= 0.9 > plan.reliability(models - 1)
    samples = plan.samples_needed(0.9, 5)
    # 1 / (1 + (1 + 32 / n) / 5) ≥ 0.81  ⇔  1 + 32 / n ≤ 5 · 0.19 / 0.81  ⇔  n ≥ 32 / 0.1728 = 185.2
    assert samples == 186
    assert plan.samples_needed(0.9, 4) is None  # model variation alone: 1 / (1 + 1 / 4) = 0.8 < 0.81
    recommendation = plan.recommendation(0.9, max_samples=256)
    assert recommendation["models"] == 5 and recommendation["samples"] == 186
    assert "5 models and 186 samples for reliability 0.9" in plan.sentence(0.9)
    curve = reliability_curve(plan, models=(1, 4), samples=(32, 64))
    assert [(r["models"], r["samples"]) for r in curve] == [(1, 32), (1, 64), (4, 32), (4, 64)]


def test_bad_requests_get_clear_messages():
    components = {"V_mu": np.array([1.0]), "E_m": np.array([1.0]), "E_s": np.array([0.0])}
    deterministic = Plan("integrated_gradients", "pixel", False, 3, None, components)
    with pytest.raises(ValueError, match="target reliability must be in \\(0, 1\\)"):
        deterministic.models_needed(1.0)
    with pytest.raises(ValueError, match="sample planner needs a random method"):
        deterministic.samples_needed(0.9, 4)
    assert deterministic.recommendation(0.5)["samples"] is None
    accumulator = PilotAccumulator()
    accumulator.add(torch.rand(2, 4, 4))
    accumulator.add(torch.rand(2, 4, 4))
    with pytest.raises(ValueError, match="at least 3 models"):
        accumulator.components()
    with pytest.raises(ValueError, match="at least 3 models"):
        pilot([torch.nn.Identity()] * 2, torch.rand(1, 3, 4, 4), torch.zeros(1, dtype=torch.long), "saliency",
              {"pixel": None}, StudySettings())
    with pytest.raises(ValueError, match="needs at least 8 models"):
        held_out_reliability(torch.rand(5, 1, 4, 4), 4)
    with pytest.raises(ValueError, match="two groups"):
        observed_reliability([torch.rand(1, 4, 4)])


def test_pilot_on_models_estimates_explainer_noise_only_for_random_methods():
    from test_consensus import Spot

    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) + 0.5
    models = [Spot(0.5 + 0.2 * k).eval() for k in range(3)]
    settings = StudySettings(n_samples=4)
    deterministic = pilot(models, images, torch.zeros(2, dtype=torch.long), "saliency", {"pixel": None}, settings)
    assert not deterministic.random and np.all(deterministic.components["E_s"] == 0)
    noisy = pilot(models, images, torch.zeros(2, dtype=torch.long), "smoothgrad", {"pixel": None}, settings)
    assert noisy.random and noisy.pilot_samples == 4 and np.all(noisy.components["E_s"] > 0)
