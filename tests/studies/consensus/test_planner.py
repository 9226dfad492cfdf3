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
