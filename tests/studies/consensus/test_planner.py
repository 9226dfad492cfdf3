"""Tests of :mod:`stablesal.studies.consensus.planner`.

The planner: variance components recovered from synthetic maps with known variances, predictions
against held-out groups of simulated models, the Spearman–Brown formula by hand, and bad requests."""

import math
import warnings

import numpy as np
import pytest
import torch

from stablesal.core.seeding import derive
from stablesal.core.settings import StudySettings
from stablesal.metrics import grey_maps
from stablesal.studies.consensus.planner import (
    MAX_MODELS, QUANTITY, PilotAccumulator, Plan, centred, check_target, held_out_reliability, observed_reliability,
    pilot, predicted_reliability, reliability_curve, smallest_reaching,
)
from stablesal.studies.stability.run import explain_groupings


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
    assert ("5 models and 186 samples for a mean map whose correlation with the infinite-model mean map is 0.9 "
            "(reliability ρ² = 0.81)") in plan.sentence(0.9)
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
    from tests.helpers.basic_models import Spot

    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) + 0.5
    models = [Spot(0.5 + 0.2 * k).eval() for k in range(3)]
    settings = StudySettings(n_samples=4)
    deterministic = pilot(models, images, torch.zeros(2, dtype=torch.long), "saliency", {"pixel": None}, settings)
    assert not deterministic.random and np.all(deterministic.components["E_s"] == 0)
    noisy = pilot(models, images, torch.zeros(2, dtype=torch.long), "smoothgrad", {"pixel": None}, settings)
    assert noisy.random and noisy.pilot_samples == 4 and np.all(noisy.components["E_s"] > 0)


# ------------------------------ tests the mutation run asked for (marked mutation)
# Known answers for :mod:`stablesal.studies.consensus.planner` that the mutation run asked for: the variance components
# against NumPy on small maps whose images differ, the pilot against the seeds its docstring
# states, the Spearman–Brown inversions at exact equality, the recommendation and its sentence
# word for word, the curve's rows and the held-out reliability against NumPy correlations.


def what(target: float) -> str:
    """The sentence's name of what is predicted: the correlation ρ = ``target`` and its square."""
    return f"correlation with the infinite-model mean map is {target:g} (reliability ρ² = {target ** 2:.3g})"


def numpy_components(first: np.ndarray, second: np.ndarray | None) -> dict:
    """The docstring's estimators, written with NumPy: ``first``/``second`` ``[K, N, H, W]``."""
    def centre(maps):
        return maps - maps.reshape(*maps.shape[:2], -1).mean(2)[..., None, None]

    c1 = centre(first)
    k = c1.shape[0]
    between = c1.var(axis=0, ddof=1).reshape(c1.shape[1], -1).mean(1)
    if second is None:
        e_s = np.zeros_like(between)
    else:
        e_s = ((c1 - centre(second)) ** 2 / 2).mean(0).reshape(c1.shape[1], -1).mean(1)
    v_mu = (c1.mean(0) ** 2).reshape(c1.shape[1], -1).mean(1) - between / k
    return {"V_mu": np.clip(v_mu, 0, None), "E_m": np.clip(between - e_s, 0, None), "E_s": e_s}


def small_maps(seed=0, scale=0.1):
    """Three models, two images of 2 × 3 pixels, with offsets (removed by centring), a signal that
    differs between the images, and values well below 1."""
    rng = np.random.default_rng(seed)
    mu = scale * np.stack([np.array([[1.0, 0.0, -1.0], [0.5, 0.0, -0.5]]), 3 * np.array([[0.0, 1.0, 0.0], [-1, 0, 0]])])
    first = mu + scale * rng.normal(size=(3, 2, 2, 3)) * np.array([0.3, 1.5]).reshape(1, 2, 1, 1) + rng.normal(
        size=(3, 2, 1, 1))
    second = first + scale * rng.normal(size=(3, 2, 2, 3)) * np.array([0.2, 0.6]).reshape(1, 2, 1, 1)
    return first, second


@pytest.mark.mutation
def test_centred_against_numpy():
    grey = torch.tensor([[[1.0, 2.0], [3.0, 6.0]], [[-1.0, -1.0], [0.0, 10.0]]])
    expected = grey.numpy() - np.array([3.0, 2.0]).reshape(2, 1, 1)
    out = centred(grey)
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-15)


@pytest.mark.mutation
def test_components_against_numpy_per_image():
    first, second = small_maps()
    accumulator = PilotAccumulator()
    for k in range(3):
        accumulator.add(torch.from_numpy(first[k]), torch.from_numpy(second[k]))
    got = accumulator.components()
    expected = numpy_components(first, second)
    for key in ("V_mu", "E_m", "E_s"):
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-10, atol=1e-15)
    # the images differ, so a mix-up of per-image and pooled means would show; V_μ stays below 1
    assert abs(expected["E_s"][0] - expected["E_s"][1]) > 1e-3 and abs(expected["V_mu"][0] - expected["V_mu"][1]) > 1e-3
    assert 0 < expected["V_mu"].max() < 1 and expected["E_m"].min() > 0
    # deterministic methods: no second run, E_s = 0
    deterministic = PilotAccumulator()
    for k in range(3):
        deterministic.add(torch.from_numpy(first[k]))
    got = deterministic.components()
    expected = numpy_components(first, None)
    for key in ("V_mu", "E_m", "E_s"):
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-10, atol=1e-15)
    assert deterministic.repeats == 0 and deterministic.n_models == 3


@pytest.mark.mutation
def test_components_with_four_models_and_one_repeat():
    """Welford's update against NumPy's variance for four models, the last added ones far from the
    first; with a second run for one model only, E_s is that model's term (averaged over the
    models that have one)."""
    first, second = small_maps(seed=3)
    extra = first[:1] + 5.0 * np.array([[[[1.0, -1.0, 0.0], [0.0, 2.0, -2.0]]]])
    four = np.concatenate([first, extra])
    accumulator = PilotAccumulator()
    accumulator.add(torch.from_numpy(four[0]), torch.from_numpy(second[0]))
    for k in range(1, 4):
        accumulator.add(torch.from_numpy(four[k]))
    got = accumulator.components()
    c = four - four.reshape(4, 2, -1).mean(2)[..., None, None]
    c2 = second[0] - second[0].reshape(2, -1).mean(1)[:, None, None]
    e_s = ((c[0] - c2) ** 2 / 2).reshape(2, -1).mean(1)
    between = c.var(axis=0, ddof=1).reshape(2, -1).mean(1)
    np.testing.assert_allclose(got["E_s"], e_s, rtol=1e-10)
    np.testing.assert_allclose(got["E_m"], np.clip(between - e_s, 0, None), rtol=1e-10)
    np.testing.assert_allclose(got["V_mu"], np.clip((c.mean(0) ** 2).reshape(2, -1).mean(1) - between / 4, 0, None),
                               rtol=1e-10, atol=1e-15)
    assert accumulator.repeats == 1


@pytest.mark.mutation
def test_predicted_reliability_without_signal_or_noise_is_zero_without_warnings():
    components = {"V_mu": np.array([0.0, 1.0]), "E_m": np.array([0.0, 3.0]), "E_s": np.array([0.0, 0.0])}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # image 0: no signal, no noise: counts as 0; image 1: sqrt(1 / (1 + 3)) = 0.5
        assert predicted_reliability(components, 1) == pytest.approx(0.25, abs=1e-15)


@pytest.mark.mutation
def test_inversions_at_exact_equality():
    # V = 1, E_m = 3: ρ(1) = sqrt(1 / 4) = 0.5 exactly, so one model reaches the target 0.5
    plan = Plan("saliency", "grid", False, 3, None, {"V_mu": np.array([1.0]), "E_m": np.array([3.0]),
                                                     "E_s": np.array([0.0])})
    assert plan.reliability(1) == 0.5 and plan.models_needed(0.5) == 1
    # V = 1, E_m = 0, E_s = 3 at 32 pilot samples: ρ(1 model, 32 samples) = 0.5 exactly
    noisy = Plan("smoothgrad", "grid", True, 3, 32, {"V_mu": np.array([1.0]), "E_m": np.array([0.0]),
                                                     "E_s": np.array([3.0])})
    assert noisy.reliability(1, 32) == 0.5 and noisy.samples_needed(0.5, 1) == 32
    assert smallest_reaching(lambda count: True, 10) == 1
    assert smallest_reaching(lambda count: count >= 7, 10) == 7 and smallest_reaching(lambda count: False, 10) is None


@pytest.mark.mutation
def test_check_target_bounds():
    for bad in (0.0, 1.0, 1, 0, -0.2, 1.5, "0.5", None):
        with pytest.raises(ValueError, match="target reliability must be in \\(0, 1\\)"):
            check_target(bad)
    for good in (1e-9, 0.5, 0.999):
        check_target(good)


@pytest.mark.mutation
def test_recommendation_and_sentence_word_for_word():
    # V = 1, E_m = 0, E_s = 1 at 256 pilot samples. ρ²(K, n) = 1 / (1 + 256 / (n K)).
    plan = Plan("smoothgrad", "grid", True, 3, 256, {"V_mu": np.array([1.0]), "E_m": np.array([0.0]),
                                                     "E_s": np.array([1.0])})
    target = math.sqrt(0.5005)
    # at the default 256 samples one model gives ρ² = 0.5 < 0.5005, two give 2/3: 2 models. Then the
    # fewest samples for 2 models: 1 / (1 + 128 / n) ≥ 0.5005 ⇔ n ≥ 128 · 0.5005 / 0.4995 = 128.256: 129
    named = {"quantity": QUANTITY, "reliability": pytest.approx(0.5005), "null": None}
    expected = {"method": "smoothgrad", "grouping": "grid", "target": target, "models": 2, "samples": 129, **named}
    assert plan.recommendation(target) == expected
    assert plan.recommendation(target, max_samples=256) == expected
    # at 257 samples one model reaches it (257 / 513 = 0.50097 ≥ 0.5005); then 1 / (1 + 256 / n) ≥ 0.5005:
    # n ≥ 256 · 0.5005 / 0.4995 = 256.51: 257
    one = {"method": "smoothgrad", "grouping": "grid", "target": target, "models": 1, "samples": 257, **named}
    assert plan.recommendation(target, max_samples=257) == one
    assert plan.sentence(target) == (f"smoothgrad with grid: 2 models and 129 samples for a mean map whose "
                                     f"{what(target)} (predicted from 3 pilot models)")
    assert plan.sentence(target, max_samples=257) == (f"smoothgrad with grid: 1 model and 257 samples for a mean map "
                                                      f"whose {what(target)} (predicted from 3 pilot models)")
    # deterministic: no samples in the plan or the sentence
    deterministic = Plan("saliency", "fastslic", False, 4, None, {"V_mu": np.array([1.0]), "E_m": np.array([3.0]),
                                                                  "E_s": np.array([0.0])})
    # ρ²(K) = 1 / (1 + 3 / K) ≥ 0.64 ⇔ K ≥ 3 · 0.64 / 0.36 = 5.33: 6 models
    assert deterministic.recommendation(0.8) == {"method": "saliency", "grouping": "fastslic", "target": 0.8,
                                                 "models": 6, "samples": None, "quantity": QUANTITY,
                                                 "reliability": pytest.approx(0.64), "null": None}
    assert deterministic.sentence(0.8) == (f"saliency with fastslic: 6 models for a mean map whose {what(0.8)} "
                                           "(predicted from 4 pilot models)")
    assert deterministic.sentence(0.5) == (f"saliency with fastslic: 1 model for a mean map whose {what(0.5)} "
                                           "(predicted from 4 pilot models)")
    # ρ²(2) = 1 / (1 + 3 / 2) = 0.4 ≥ 0.36: two models, plural
    assert deterministic.sentence(0.6) == (f"saliency with fastslic: 2 models for a mean map whose {what(0.6)} "
                                           "(predicted from 4 pilot models)")
    # the sentence names the correlation and its square, the reliability, for what they are
    assert what(0.9) == "correlation with the infinite-model mean map is 0.9 (reliability ρ² = 0.81)"


@pytest.mark.mutation
def test_targets_out_of_reach():
    hopeless = {"V_mu": np.array([1.0]), "E_m": np.array([1e6]), "E_s": np.array([1.0])}
    noisy = Plan("smoothgrad", "grid", True, 3, 32, hopeless)
    # ρ(10 000 models) = sqrt(1 / (1 + 100)) ≈ 0.0995 < 0.5
    assert noisy.models_needed(0.5) is None
    assert noisy.recommendation(0.5) == {"method": "smoothgrad", "grouping": "grid", "target": 0.5, "models": None,
                                         "samples": None, "quantity": QUANTITY, "reliability": 0.25, "null": None}
    assert noisy.sentence(0.5) == (f"smoothgrad with grid: a mean map whose {what(0.5)} is out of reach (more than "
                                   f"{MAX_MODELS} models at 256 samples)")
    assert noisy.sentence(0.5, max_samples=64) == (f"smoothgrad with grid: a mean map whose {what(0.5)} is out of "
                                                   f"reach (more than {MAX_MODELS} models at 64 samples)")
    fixed = Plan("saliency", "pixel", False, 3, None, hopeless | {"E_s": np.array([0.0])})
    assert fixed.sentence(0.5) == (f"saliency with pixel: a mean map whose {what(0.5)} is out of reach (more than "
                                   f"{MAX_MODELS} models)")


@pytest.mark.mutation
def test_reliability_curve_rows_by_hand():
    components = {"V_mu": np.array([1.0]), "E_m": np.array([1.0]), "E_s": np.array([1.0])}
    noisy = Plan("smoothgrad", "grid", True, 3, 32, components)
    rows = reliability_curve(noisy, models=(1, 4), samples=(32, 64))
    # ρ = sqrt(1 / (1 + (1 + 32 / n) / K))
    expected = [{"method": "smoothgrad", "grouping": "grid", "models": k, "samples": n,
                 "reliability": math.sqrt(1 / (1 + (1 + 32 / n) / k))} for k in (1, 4) for n in (32, 64)]
    assert [set(r) for r in rows] == [set(e) for e in expected]
    for row, want in zip(rows, expected):
        assert row == {**want, "reliability": pytest.approx(want["reliability"], rel=1e-12)}
    # without sample counts: the pilot's own
    assert [(r["models"], r["samples"]) for r in reliability_curve(noisy, models=(2,))] == [(2, 32)]
    # a deterministic plan ignores sample counts (and a pilot_samples value it should not have)
    fixed = Plan("saliency", "grid", False, 3, None, components | {"E_s": np.array([0.0])})
    rows = reliability_curve(fixed, models=(1, 2), samples=(32, 64))
    assert rows == [{"method": "saliency", "grouping": "grid", "models": k, "samples": None,
                     "reliability": pytest.approx(math.sqrt(1 / (1 + 1 / k)))} for k in (1, 2)]
    odd = Plan("saliency", "grid", False, 3, 32, components | {"E_s": np.array([0.0])})
    assert [r["reliability"] for r in reliability_curve(odd, models=(1,))] == [pytest.approx(math.sqrt(0.5))]


def numpy_reliability(a: np.ndarray, b: np.ndarray) -> float:
    """sqrt(max(0, Pearson r)) per image, averaged (the correlation of centred maps is Pearson's)."""
    values = [math.sqrt(max(0.0, np.corrcoef(x.ravel(), y.ravel())[0, 1])) for x, y in zip(a, b)]
    return float(np.mean(values))


@pytest.mark.mutation
def test_observed_reliability_against_numpy_on_small_maps():
    rng = np.random.default_rng(5)
    base = 1e-3 * rng.normal(size=(3, 4, 4))
    groups = [base + 1e-3 * rng.normal(size=(3, 4, 4)) for _ in range(3)]
    groups[2][1] = -groups[0][1]  # a negatively correlated image: clipped at 0
    got = observed_reliability([torch.from_numpy(g) for g in groups])
    pairs = [(0, 1), (0, 2), (1, 2)]
    assert got == pytest.approx(np.mean([numpy_reliability(groups[a], groups[b]) for a, b in pairs]), rel=1e-10)
    with pytest.raises(ValueError, match="^observed_reliability needs at least two groups of models$"):
        observed_reliability([torch.from_numpy(base)])


@pytest.mark.mutation
def test_held_out_reliability_against_numpy():
    rng = np.random.default_rng(8)
    maps = rng.normal(size=(7, 2, 3, 3)) + 2 * rng.normal(size=(1, 2, 3, 3))
    for n_models, n_draws, seed in ((2, 3, 4), (3, 1, 0)):
        draws = np.random.default_rng(seed)
        expected = []
        for _ in range(n_draws):
            order = draws.permutation(7)
            expected.append(numpy_reliability(maps[order[:n_models]].mean(0), maps[order[n_models:2 * n_models]].mean(0)))
        got = held_out_reliability(torch.from_numpy(maps), n_models, n_draws=n_draws, seed=seed)
        assert got == pytest.approx(float(np.mean(expected)), rel=1e-10)
    # defaults: 20 draws from seed 0
    draws = np.random.default_rng(0)
    expected = []
    for _ in range(20):
        order = draws.permutation(7)
        expected.append(numpy_reliability(maps[order[:3]].mean(0), maps[order[3:6]].mean(0)))
    assert held_out_reliability(torch.from_numpy(maps), 3) == pytest.approx(float(np.mean(expected)), rel=1e-10)
    with pytest.raises(ValueError, match="^held-out reliability at K′ = 4 needs at least 8 models, got 7$"):
        held_out_reliability(torch.from_numpy(maps), 4)


@pytest.mark.mutation
def test_pilot_against_the_stated_seeds_and_numpy():
    """pilot() explains model k with seeds derive(settings.seed, "pilot", k, repeat) (two repeats for a
    random method, one for a deterministic one) and estimates the components as NumPy does here."""
    from tests.helpers.basic_models import Spot

    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)) + 0.5
    targets = torch.zeros(2, dtype=torch.long)
    models = [Spot(0.5 + 0.2 * k).eval() for k in range(3)]
    settings = StudySettings(n_samples=4, n_segments=4, seed=7)
    segments = torch.arange(4).repeat_interleave(16).view(1, 8, 8).expand(2, 8, 8).contiguous()
    groupings = {"grid": segments}
    # rise: a perturbation preset, built from the model itself (not from the method name alone)
    for method in ("smoothgrad", "saliency", "rise"):
        plan = pilot(models, images, targets, method, groupings, settings)
        random = method in ("smoothgrad", "rise")
        runs = [[grey_maps(explain_groupings(method, model, derive(7, "pilot", k, r), images, targets, groupings,
                                             settings)["grid"]).double().numpy() for r in range(2 if random else 1)]
                for k, model in enumerate(models)]
        first = np.stack([r[0] for r in runs])
        second = np.stack([r[1] for r in runs]) if random else None
        expected = numpy_components(first, second)
        for key in ("V_mu", "E_m", "E_s"):
            np.testing.assert_allclose(plan.components[key], expected[key], rtol=1e-9, atol=1e-15)
        assert (plan.method, plan.grouping, plan.random, plan.pilot_models) == (method, "grid", random, 3)
        assert plan.pilot_samples == (4 if random else None)
        if random:
            assert np.all(expected["E_s"] > 0)


# --- the bootstrap of the plan, recomputed by hand ------------------------------------------------

def _by_hand_terms(gram, w):
    """One resample's (mean square, between, V_μ) per image from a Gram [N, K, K] and weights [K], by
    loops: V_μ is the weighted mean of the products of distinct models, between the weighted mean
    diagonal minus it."""
    n_images, k = gram.shape[0], gram.shape[1]
    square, between, spatial = np.zeros(n_images), np.zeros(n_images), np.full(n_images, np.nan)
    for n in range(n_images):
        total = sum(w[a] * w[b] * gram[n, a, b] for a in range(k) for b in range(k))
        square[n] = total / k ** 2
        pairs = sum(w[a] * w[b] for a in range(k) for b in range(k) if a != b)
        cross = sum(w[a] * w[b] * gram[n, a, b] for a in range(k) for b in range(k) if a != b)
        if pairs > 0:
            spatial[n] = cross / pairs
        between[n] = sum(w[a] * gram[n, a, a] for a in range(k)) / w.sum() - spatial[n]
    return square, between, spatial


def _by_hand_count(signal, noise, target):
    """The fewest models (1 … MAX_MODELS, else MAX_MODELS + 1) whose image-mean ρ reaches ``target``,
    by trying every count."""
    from stablesal.studies.consensus.planner import MAX_MODELS

    models = np.arange(1, MAX_MODELS + 1)[:, None]
    s = np.clip(signal, 0, None)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(s > 0, np.sqrt(s / (s + noise[None, :] / models)), 0.0).mean(1)
    reaching = np.flatnonzero(rho >= target)
    return int(reaching[0] + 1) if reaching.size else MAX_MODELS + 1


def _by_hand_bootstrap(stats, target, scale, resamples, seed, beyond):
    rng = np.random.default_rng(derive(seed, "planner-bootstrap"))
    k = stats["G"].shape[-1]
    weights = rng.multinomial(k, np.full(k, 1.0 / k), size=resamples).astype(float)
    if beyond:
        n_null = stats["H"].shape[-1]
        null_weights = rng.multinomial(n_null, np.full(n_null, 1.0 / n_null), size=resamples).astype(float)
    counts, values = [], []
    for b in range(resamples):
        w = weights[b]
        square, between, spatial = _by_hand_terms(stats["G"], w)
        with_repeat = w * stats["has_repeat"]
        explainer = (stats["r"] @ with_repeat) / with_repeat.sum() if with_repeat.sum() > 0 else np.zeros_like(between)
        if beyond:
            v = null_weights[b]
            _, _, null_spatial = _by_hand_terms(stats["H"], v)
            cross = np.array([sum(w[a] * v[c] * stats["X"][n, a, c] for a in range(k) for c in range(len(v)))
                              for n in range(len(between))]) / (w.sum() * v.sum())
            removed = np.where(null_spatial > 0, cross ** 2 / np.where(null_spatial > 0, null_spatial, 1.0), 0.0)
            removed[np.isnan(null_spatial)] = np.nan  # one distinct null model: no null mean map
            shared = spatial - np.minimum(removed, square)
        else:
            shared = spatial
        if not np.isfinite(shared).all():
            continue
        noise = np.clip(between - explainer, 0, None) + explainer * scale
        counts.append(_by_hand_count(shared, noise, target))
        values.append(shared.mean())
    from stablesal.studies.consensus.planner import MAX_MODELS

    counts = np.sort(counts)
    used = len(counts)
    low, high = int(counts[int(np.floor(0.025 * (used - 1)))]), int(counts[int(np.ceil(0.975 * (used - 1)))])
    return {"used": used, "models_low": None if low > MAX_MODELS else low,
            "models_high": None if high > MAX_MODELS else high,
            "shared_low": float(np.quantile(values, 0.025)), "shared_high": float(np.quantile(values, 0.975))}


def _random_stats(seed=4, k=4, n_null=3, images=3, pixels=40, null_coupling=1e-3):
    """Gram statistics of random centred maps: models that share a signal per image, two of them with
    repeat terms (one larger than its between-model spread), and null maps nearly uncorrelated with
    each other but correlated with the trained ones (the removed amount C²/V₀ then exceeds the mean
    map's mean square, and the cap binds)."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=(images, pixels))
    maps = np.stack([signal * rng.uniform(0.5, 1.5) + rng.normal(size=(images, pixels)) * 0.8 for _ in range(k)])
    null = np.stack([signal * null_coupling + rng.normal(size=(images, pixels)) for _ in range(n_null)])
    maps -= maps.mean(-1, keepdims=True)
    null -= null.mean(-1, keepdims=True)
    gram = np.einsum("knp,lnp->nkl", maps, maps) / pixels
    r = np.zeros((images, k))
    r[:, 0], r[:, 2] = rng.uniform(0.1, 0.3, images), rng.uniform(3.0, 5.0, images)  # model 2: larger than between
    return {"G": gram, "r": r, "has_repeat": np.array([True, False, True, False]),
            "H": np.einsum("knp,lnp->nkl", null, null) / pixels, "X": np.einsum("knp,lnp->nkl", maps, null) / pixels}


@pytest.mark.mutation
@pytest.mark.parametrize("beyond, scale", [(None, 0.5), (False, 0.5), (None, None)])
def test_the_bootstrap_plan_is_its_resamples_recomputed_by_hand(beyond, scale):
    from stablesal.studies.consensus.planner import bootstrap_plan

    stats = _random_stats()
    extra = {} if scale is None else {"scale": scale}
    # 77 resamples: the 2.5 % point falls between two different counts, where the percentile method matters
    got = bootstrap_plan(stats, 0.95, resamples=77, beyond=beyond, **extra)  # seed: its default, 0
    expected = _by_hand_bootstrap(stats, 0.95, 1.0 if scale is None else scale, 77, 0, beyond is not False)
    assert got["seed"] == 0 and got["confidence"] == 0.95 and got["resamples"] == 77
    for key, value in expected.items():
        assert got[key] == (value if value is None else pytest.approx(value, rel=1e-9, abs=1e-12)), key
    if beyond is False:
        assert got["models_low"] + 1 < got["models_high"]  # the counts spread: the percentile methods matter


@pytest.mark.mutation
def test_a_null_resample_of_one_distinct_model_is_not_used():
    """A resample drawing one of the 3 null models three times has no null mean map (NaN), even
    though floating point leaves its cross term a rounding residue rather than 0: it is not used."""
    from stablesal.studies.consensus.planner import bootstrap_plan

    stats = _random_stats(seed=0, images=1)
    got = bootstrap_plan(stats, 0.95, 0.5, 200, 3, beyond=True)
    assert got["used"] == _by_hand_bootstrap(stats, 0.95, 0.5, 200, 3, True)["used"] < 200


@pytest.mark.mutation
def test_two_resamples_are_enough_and_one_is_refused():
    from stablesal.studies.consensus.planner import bootstrap_plan

    stats = _random_stats()
    assert bootstrap_plan(stats, 0.9, resamples=2, seed=1)["used"] == 2
    with pytest.raises(ValueError, match="resamples must be an integer of at least 2"):
        bootstrap_plan(stats, 0.9, resamples=1)


@pytest.mark.mutation
def test_the_fewest_models_at_the_exact_target_and_at_the_largest_count():
    """ρ(m) = √(1 / (1 + 3/m)) is exactly 0.5 at m = 1 (signal 1, noise 3): reached, so one model;
    noise 3·MAX_MODELS reaches 0.5 exactly at MAX_MODELS, and one more unit of noise never does."""
    from stablesal.studies.consensus.planner import MAX_MODELS, models_needed_many

    counts = models_needed_many(np.array([[1.0], [1.0], [1.0], [0.0]]),
                                np.array([[3.0], [3.0 * MAX_MODELS], [3.0 * MAX_MODELS + 1], [1.0]]), 0.5)
    assert counts.tolist() == [1, MAX_MODELS, MAX_MODELS + 1, MAX_MODELS + 1] and counts.dtype == np.int64
    # an image without signal or noise counts as ρ = 0, not as undefined: (1 + 0) / 2 reaches 0.5 with one model
    assert models_needed_many(np.array([[1.0, 0.0]]), np.array([[0.0, 0.0]]), 0.5).tolist() == [1]


@pytest.mark.mutation
def test_a_plan_needing_exactly_the_largest_count_keeps_it_and_one_beyond_is_none():
    """Every model's maps the same signal plus its own noise of equal size (a Gram constant off the
    diagonal): every resample gives the same terms, so the interval is one count."""
    from stablesal.studies.consensus.planner import MAX_MODELS, bootstrap_plan

    gram = np.full((1, 4, 4), 1.0) + np.eye(4)[None] * 3.0 * MAX_MODELS  # V_μ = 1, noise = 3·MAX_MODELS
    stats = {"G": gram, "r": np.zeros((1, 4)), "has_repeat": np.zeros(4, bool)}
    plan = bootstrap_plan(stats, 0.5, resamples=40)
    assert (plan["models_low"], plan["models_high"]) == (MAX_MODELS, MAX_MODELS)
    beyond_reach = bootstrap_plan(dict(stats, G=gram + np.eye(4)[None]), 0.5, resamples=40)
    assert (beyond_reach["models_low"], beyond_reach["models_high"]) == (None, None)


# --- the plan's parts, refusals, sentence and curve ----------------------------------------------

def _plan(**overrides):
    """A plan with a null by hand: raw V_μ 1.0, beyond 0.25 per image, explainer noise 0.5 at 16 samples."""
    components = {"V_mu": np.array([1.0, 1.0]), "E_m": np.array([0.2, 0.2]), "E_s": np.array([0.5, 0.5])}
    values = dict(method="smoothgrad", grouping="grid", random=True, pilot_models=3, pilot_samples=16,
                  components=components, null="random_label", null_models=3,
                  beyond=dict(components, V_mu=np.array([0.25, 0.25])), shared=0.25, interval=None, refusal=None)
    return Plan(**{**values, **overrides})


@pytest.mark.mutation
def test_the_planned_part_is_beyond_the_null_and_a_plan_without_one_has_no_beyond():
    plan = _plan()
    assert plan.planned() is plan.beyond and plan.planned("raw") is plan.components
    alone = _plan(null=None, null_models=0, beyond=None)
    assert alone.planned() is alone.components
    with pytest.raises(ValueError, match="^this plan has no null: there is no component beyond it$"):
        alone.planned("beyond")


@pytest.mark.mutation
def test_a_refused_plan_recommends_no_count_even_with_an_interval():
    interval = {"models_low": 3, "models_high": 9, "resamples": 50, "shared_low": -0.1, "shared_high": 0.2}
    recommendation = _plan(interval=interval, refusal="because x").recommendation(0.9)
    assert recommendation["refused"] == "because x"
    assert recommendation["models_low"] is None and recommendation["models_high"] is None


@pytest.mark.mutation
def test_the_sentence_counts_one_sample_and_states_the_interval_both_ways():
    strong = {"V_mu": np.array([1.0]), "E_m": np.array([0.01]), "E_s": np.array([0.0])}  # one model, one sample
    plan = _plan(components=strong, null=None, null_models=0, beyond=None,
                 interval={"models_low": 1, "models_high": 4, "resamples": 50})
    assert plan.recommendation(0.9)["samples"] == 1
    text = plan.sentence(0.9)
    assert "1 model and 1 sample for a mean map" in text
    assert text.endswith("; 95 % interval 1–4 models (50 bootstrap resamples of the pilot models)")
    open_ended = _plan(components=strong, null=None, null_models=0, beyond=None,
                       interval={"models_low": 2, "models_high": None, "resamples": 50}).sentence(0.9)
    assert open_ended.endswith(f"; 95 % interval 2 to more than {MAX_MODELS} models (50 bootstrap resamples of the "
                               "pilot models)")


@pytest.mark.mutation
def test_the_refusal_reason_at_its_edges_word_for_word():
    from stablesal.studies.consensus.planner import refusal_reason

    assert refusal_reason(0.5, None, None) is None
    assert refusal_reason(0.5, {"shared_low": 0.01, "shared_high": 0.9}, "random_label") is None
    assert refusal_reason(0.0, None, None) == ("because the pilot's mean map has no spatial variance above its "
                                               "noise (0, which reaches 0)")
    assert refusal_reason(0.5, {"shared_low": 0.0, "shared_high": 0.9}, "random_label") == (
        "because the mean map's shared component is not above the random_label null (its spatial variance beyond "
        "the null's mean map is 0.5, 95 % bootstrap interval [0, 0.9], which reaches 0): more models would only "
        "average toward what random_label models show too")


def _accumulator(seed, k=3, repeats=True, images=2, side=6, repeat_noise=0.1):
    rng = torch.Generator().manual_seed(seed)
    signal = torch.rand(images, side, side, generator=rng)
    out = PilotAccumulator()
    for _ in range(k):
        first = signal + 0.3 * torch.rand(images, side, side, generator=rng)
        out.add(first, first + repeat_noise * torch.rand(images, side, side, generator=rng) if repeats else None)
    return out


@pytest.mark.mutation
def test_make_plan_names_its_null_and_defaults_to_the_documented_target_samples_and_seed():
    from stablesal.studies.consensus.planner import bootstrap_plan, gram_statistics, make_plan

    trained, null = _accumulator(1), _accumulator(2, repeats=False)
    plan = make_plan("smoothgrad", "grid", True, 16, trained, null, resamples=40)
    assert plan.null == "reference" and plan.null_models == 3  # a null without a name is "reference"
    explicit = make_plan("smoothgrad", "grid", True, 16, trained, null, None, 0.9, 256, 40, 0)
    assert plan.interval == explicit.interval and plan.shared == explicit.shared
    assert plan.interval == bootstrap_plan(gram_statistics(trained, null), 0.9, 16 / 256, 40, 0, beyond=True)
    assert (plan.beyond["V_mu"] >= 0).all()  # clamped at 0 per image
    alone = make_plan("smoothgrad", "grid", True, 16, trained, resamples=40)
    assert alone.null is None and alone.null_models == 0 and alone.beyond is None
    # no sample count given: the pilot's sample scale is 1 (explainer noise large enough to move the counts)
    noisy = _accumulator(1, repeat_noise=3.0)
    assert make_plan("smoothgrad", "grid", True, None, noisy, resamples=40).interval == bootstrap_plan(
        gram_statistics(noisy), 0.9, 1.0, 40, 0)
    # max_samples defaults to 256: at the pilot's 256 samples the scale is 1, and the counts (thousands) move with it
    loud = _accumulator(3, repeat_noise=30.0)
    assert make_plan("smoothgrad", "grid", True, 256, loud, resamples=40).interval == bootstrap_plan(
        gram_statistics(loud), 0.9, 1.0, 40, 0)
    assert make_plan("smoothgrad", "grid", True, 16, trained, resamples=0).interval is None


@pytest.mark.mutation
def test_pilot_passes_its_null_its_name_and_its_bootstrap_settings_on():
    from tests.helpers.basic_models import Spot

    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) + 0.5
    models = [Spot(0.5 + 0.2 * k).eval() for k in range(3)]
    null = [Spot(0.3 + 0.1 * k).eval() for k in range(3)]
    settings = StudySettings(n_samples=4, seed=7)
    targets = torch.zeros(2, dtype=torch.long)
    plan = pilot(models, images, targets, "smoothgrad", {"pixel": None}, settings, null_models=null,
                 null_name="random_label", target=0.8, max_samples=64, resamples=30, seed=5)
    assert plan.null == "random_label" and plan.null_models == 3 and plan.beyond is not None
    assert plan.interval["resamples"] == 30 and plan.interval["seed"] == 5
    defaults = pilot(models, images, targets, "smoothgrad", {"pixel": None}, settings, resamples=30)
    assert defaults.interval["seed"] == 7  # the settings' seed when none is given
    assert defaults.interval == pilot(models, images, targets, "smoothgrad", {"pixel": None}, settings, target=0.9,
                                      max_samples=256, resamples=30, seed=7).interval


@pytest.mark.mutation
def test_partialling_out_is_the_least_squares_residual_numpy_computes():
    from stablesal.studies.consensus.planner import _partialled

    rng = np.random.default_rng(2)
    maps, partial = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4)) * 1e-3  # small: no clamp at 1
    got = _partialled(torch.from_numpy(maps), torch.from_numpy(partial)).numpy()
    for n in range(2):
        x, z = (maps[n] - maps[n].mean()).ravel(), (partial[n] - partial[n].mean()).ravel()
        np.testing.assert_allclose(got[n], x - (x @ z) / (z @ z) * z, rtol=1e-9, atol=1e-12)


@pytest.mark.mutation
def test_the_curve_gives_raw_and_beyond_reliabilities_at_each_sample_count():
    plan = _plan()
    rows = reliability_curve(plan, models=(2,), samples=(4, 64))
    assert [row["samples"] for row in rows] == [4, 64]
    for row in rows:
        assert row["reliability"] == plan.reliability(2, row["samples"], part="raw")
        assert row["reliability_beyond"] == plan.reliability(2, row["samples"], part="beyond")
    assert rows[0]["reliability"] != rows[0]["reliability_beyond"] and rows[0]["reliability"] != rows[1]["reliability"]


@pytest.mark.mutation
def test_the_beyond_part_is_clamped_at_zero_per_image_and_refused_below_it():
    """Trained maps that are the null's maps again: V_μ,beyond is below 0 on both images; the plan's
    beyond part holds 0 there and the plan is refused."""
    from stablesal.studies.consensus.planner import gram_statistics, make_plan, resampled_components

    trained, null = _accumulator(0), _accumulator(0, repeats=False)
    raw = resampled_components(gram_statistics(trained, null), np.ones((1, 3)), np.ones((1, 3)))["V_mu_beyond"][0]
    assert (raw < 0).all()
    plan = make_plan("smoothgrad", "grid", True, 16, trained, null, "random_label", resamples=0)
    assert plan.beyond["V_mu"].tolist() == [0.0, 0.0] and plan.shared == pytest.approx(raw.mean())
    assert plan.refusal.startswith("because the mean map's shared component is not above the random_label null")


@pytest.mark.mutation
def test_gram_statistics_of_a_pilot_with_and_without_repeats_by_hand():
    from stablesal.studies.consensus.planner import gram_statistics

    rng = torch.Generator().manual_seed(8)
    accumulator = PilotAccumulator()
    runs = [torch.rand(2, 4, 4, generator=rng) for _ in range(4)]
    accumulator.add(runs[0], runs[1])
    accumulator.add(runs[2])  # a model explained once
    accumulator.add(runs[3], runs[0])
    stats = gram_statistics(accumulator)
    maps = np.stack([centred(run).flatten(1).numpy() for run in (runs[0], runs[2], runs[3])])
    np.testing.assert_allclose(stats["G"], np.einsum("knp,lnp->nkl", maps, maps) / 16)
    first = lambda a, b: ((centred(a) - centred(b)).square() / 2).flatten(1).mean(1).numpy()  # noqa: E731
    np.testing.assert_allclose(stats["r"], np.stack([first(runs[0], runs[1]), np.zeros(2), first(runs[3], runs[0])], 1))
    assert stats["has_repeat"].tolist() == [True, False, True]


@pytest.mark.mutation
def test_the_pilot_explains_its_null_with_the_stated_seeds_on_its_grouping():
    """The null models' maps come from derive(settings.seed, "pilot-null", j) on the pilot's grouping
    (a grid here): the plan equals make_plan on accumulators filled by hand with those maps."""
    from tests.helpers.basic_models import Spot
    from stablesal.studies.consensus.planner import make_plan

    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) + 0.5
    targets = torch.zeros(2, dtype=torch.long)
    models = [Spot(0.5 + 0.2 * k).eval() for k in range(3)]
    null = [Spot(0.3 + 0.1 * k).eval() for k in range(3)]
    groupings = {"grid": torch.arange(4).repeat_interleave(16).view(1, 8, 8).expand(2, 8, 8).contiguous()}
    settings = StudySettings(n_samples=4, seed=7)
    plan = pilot(models, images, targets, "smoothgrad", groupings, settings, null_models=null,
                 null_name="random_label", resamples=20)
    grey = lambda model, seed: grey_maps(explain_groupings("smoothgrad", model, seed, images, targets, groupings,  # noqa: E731
                                                           settings)["grid"])
    trained, reference = PilotAccumulator(), PilotAccumulator()
    for k, model in enumerate(models):
        trained.add(grey(model, derive(7, "pilot", k, 0)), grey(model, derive(7, "pilot", k, 1)))
    for j, model in enumerate(null):
        reference.add(grey(model, derive(7, "pilot-null", j)))
    expected = make_plan("smoothgrad", "grid", True, 4, trained, reference, "random_label", resamples=20, seed=7)
    assert plan.shared == expected.shared and plan.interval == expected.interval


@pytest.mark.mutation
def test_the_planner_defaults_are_the_consensus_settings_defaults():
    """One source of defaults: the planner's target and sample cap are [consensus] target and max_samples."""
    import inspect

    from stablesal.core.settings import ConsensusSettings
    from stablesal.studies.consensus.planner import make_plan

    for function in (pilot, make_plan):
        parameters = inspect.signature(function).parameters
        assert parameters["target"].default == ConsensusSettings().target
        assert parameters["max_samples"].default == ConsensusSettings().max_samples
