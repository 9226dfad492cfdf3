"""What a proxy's variants are worth in retrained models: Pearson r by NumPy, the crossing by hand,
and known answers from maps built with a known number of independent draws."""

import numpy as np
import pytest
import torch

from stablesal.studies.proxies.worth import (
    equivalent_models, flat_maps, image_correlations, mean_map_worth, truth_curve,
)


def test_image_correlations_are_numpys_pearson_r_and_nan_for_a_constant_map():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 50, generator=generator, dtype=torch.float64), torch.randn(3, 50, generator=generator,
                                                                                      dtype=torch.float64)
    b[1] = 0.5 * a[1] + b[1]
    r = image_correlations(a + 3.0, b)
    for i in range(3):
        assert float(r[i]) == pytest.approx(np.corrcoef(a[i].numpy(), b[i].numpy())[0, 1], abs=1e-12)
    a[2] = 1.0
    assert torch.isnan(image_correlations(a, b)[2])


def test_flat_maps_sums_channels_and_refuses_other_shapes():
    maps = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    assert torch.equal(flat_maps(maps), maps.sum(1).reshape(2, 4).double())
    assert flat_maps(maps[:, 0]).shape == (2, 4)
    with pytest.raises(ValueError, match=r"maps must be \[n, C, H, W\] or \[n, H, W\]"):
        flat_maps(maps[0, 0])


def test_equivalent_models_interpolates_the_first_crossing_and_names_its_side():
    curve = [0.2, 0.5, 0.6, 0.9]
    assert equivalent_models(curve, 0.55) == (pytest.approx(2.5), "within")
    assert equivalent_models(curve, 0.6) == (pytest.approx(3.0), "within")
    assert equivalent_models(curve, 0.2) == (1.0, "within")
    assert equivalent_models(curve, 0.1) == (1.0, "below")
    assert equivalent_models(curve, 0.95) == (4.0, "above")
    assert equivalent_models([0.2, 0.6, 0.5, 0.9], 0.55) == (pytest.approx(1 + 0.35 / 0.4), "within")
    assert np.isnan(equivalent_models(curve, float("nan"))[0])


def _maps(rng, k, n=40, d=400, shared=None, noise=1.0):
    """``[k, n, d]``: a shared map per image plus independent noise of variance ``noise`` per model."""
    mu = rng.normal(0, 1, (n, d)) if shared is None else shared
    return mu, torch.tensor(mu + rng.normal(0, np.sqrt(noise), (k, n, d)))


def test_the_curve_follows_the_correlation_of_a_k_model_mean_with_the_reference():
    """Maps = μ + ε, ε of variance σ² per model: the mean of k has r with a reference mean of m
    equal to 1/√((1 + σ²/k)(1 + σ²/m)), here with σ² = 1, m = 16."""
    rng = np.random.default_rng(1)
    _, maps = _maps(rng, 24)
    curve = truth_curve(maps[:8], maps[8:].mean(0), draws=10, seed=0).mean(1).numpy()
    expected = [1 / np.sqrt((1 + 1 / k) * (1 + 1 / 16)) for k in range(1, 9)]
    assert np.allclose(curve, expected, atol=0.01)
    again = truth_curve(maps[:8], maps[8:].mean(0), draws=10, seed=0)
    assert torch.equal(again, truth_curve(maps[:8], maps[8:].mean(0), draws=10, seed=0))


def test_variants_with_the_retrained_models_noise_are_worth_their_count_and_copies_of_one_model_about_one():
    rng = np.random.default_rng(2)
    mu, truth = _maps(rng, 32)
    _, independent = _maps(rng, 4, shared=mu)  # 4 more draws of retraining: worth about 4
    fair = mean_map_worth(truth, independent, resamples=200)
    assert fair["side"] == "within" and fair["worth"] == pytest.approx(4, abs=0.6)
    assert fair["worth_ci_low"] < 4 < fair["worth_ci_high"] and fair["worth_ci_high"] - fair["worth_ci_low"] < 3
    parent = truth[0].numpy()
    copies = torch.tensor(parent + rng.normal(0, 0.1, (8, *parent.shape)))  # 8 near-copies of model 0
    near = mean_map_worth(truth, copies, resamples=200)
    assert near["worth"] < 1.3 and near["k_proxy"] == 8 and near["k_pool"] == 16 and near["k_reference"] == 16
    assert near["proxy_r"] == pytest.approx(near["truth_r"][0], abs=0.03)


def test_mean_map_worth_refuses_mismatched_or_too_few_maps():
    maps = torch.zeros(4, 3, 5)
    with pytest.raises(ValueError, match="same images"):
        mean_map_worth(maps, torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match="at least 4 retrained models and 2 variants"):
        mean_map_worth(maps[:3], torch.zeros(2, 3, 5))
