"""Tests of :mod:`stablesal.explain.perturbation.calculators`.

Known-answer tests: each formula against an independent computation (SciPy, scikit-learn,
autograd written out, or a value derived by hand), so that a wrong constant or operator fails."""

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from stablesal.core.seeding import image_seeds
from stablesal.explain.perturbation import Perturbation
from stablesal.explain.segmentation import Grid

from tests.helpers.basic_models import nonlinear_model


def test_lime_ridge_and_kernel_match_scikit_learn():
    """LIME's calculator: ridge (α = 1) on [Z; 1] weighted by sqrt(exp(−d²/0.25²)), d the cosine
    distance to the all-kept sample, against scikit-learn's Ridge with the same weights."""
    sklearn = pytest.importorskip("sklearn.linear_model")
    from sklearn.metrics.pairwise import cosine_distances

    from stablesal.explain.perturbation.calculators import LimeKernelRidge, Observations

    generator = torch.Generator().manual_seed(7)
    z = (torch.rand(60, 8, generator=generator) < 0.6).double()
    z[z.sum(1) == 0, 0] = 1.0
    y = (z @ torch.linspace(-1, 1, 8, dtype=torch.float64)).tanh() + 0.05 * torch.randn(60, generator=generator,
                                                                                     dtype=torch.float64)
    obs = Observations(z=z, y=y, y_full=0.7, y_empty=0.0)
    ours = LimeKernelRidge()(obs).numpy()
    design = np.vstack([z.numpy(), np.ones((1, 8))])
    target = np.concatenate([y.numpy(), [0.7]])
    distance = cosine_distances(design, np.ones((1, 8))).ravel()
    kernel = np.sqrt(np.exp(-distance ** 2 / 0.25 ** 2))
    reference = sklearn.Ridge(alpha=1.0).fit(design, target, sample_weight=kernel).coef_
    assert np.allclose(ours, reference, atol=1e-8)


def test_rise_is_the_published_formula():
    """RISE transcribed from the paper and its authors' code: each sample's 7×7 binary grid
    upsampled with scikit-image (order 1, reflected borders) to (7 + 1)·cell pixels, cropped at
    the sample's shift, the image kept where the mask is; saliency = Σ_n Y_n M_n / (N p)."""
    from skimage.transform import resize

    from stablesal.explain.perturbation import RISE

    model = nonlinear_model(3)
    image = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(9))
    explainer = RISE(model, n_samples=40, grid=4, p=0.5, replacement=0.0, chunk_size=16)
    ours = explainer.attribute(image[None], target=1, seed=3)[0, 0].double()
    seed = image_seeds(image[None], 3)[0]
    _, obs, _, offsets = explainer.observe(image, 1, torch.Generator().manual_seed(seed), 16)
    cell = math.ceil(8 / 4)
    saliency = torch.zeros(8, 8, dtype=torch.float64)
    with torch.no_grad():
        for z, (top, left) in zip(obs.z, offsets.tolist()):
            grid = z.view(4, 4).numpy()
            up = resize(grid, (5 * cell, 5 * cell), order=1, mode="reflect", anti_aliasing=False)
            mask = torch.from_numpy(up[top:top + 8, left:left + 8])
            score = torch.softmax(model((image * mask.float())[None]), 1)[0, 1].double()
            saliency += score * mask
    saliency /= 40 * 0.5
    assert torch.allclose(ours, saliency, atol=1e-5)
    # the earlier normalisation by the observed keep rate stays available, and differs
    from stablesal.explain.perturbation.calculators import RiseScore

    observed = RISE(model, n_samples=40, grid=4, p=0.5, replacement=0.0, chunk_size=16,
                    calculator=RiseScore(normalise="mean")).attribute(image[None], target=1, seed=3)[0, 0].double()
    assert torch.allclose(observed * obs.z.mean(), saliency * 0.5, atol=1e-5)
    assert not torch.allclose(observed, saliency, atol=1e-4)


def test_kernel_shap_without_sampler_weights_uses_the_shapley_kernel():
    from stablesal.explain.perturbation.calculators import KernelShap, LimeOLS, Observations
    from stablesal.explain.perturbation.samplers import shapley_kernel

    generator = torch.Generator().manual_seed(13)
    z = (torch.rand(40, 6, generator=generator) < 0.5).double()
    y = torch.randn(40, generator=generator, dtype=torch.float64)
    plain = KernelShap()(Observations(z=z, y=y, y_full=1.0, y_empty=0.0))
    weighted = KernelShap()(Observations(z=z, y=y, y_full=1.0, y_empty=0.0, weights=shapley_kernel(z.sum(1), 6)))
    assert torch.allclose(plain, weighted)
    uniform = KernelShap()(Observations(z=z, y=y, y_full=1.0, y_empty=0.0, weights=torch.ones(40, dtype=torch.float64)))
    assert not torch.allclose(plain, uniform)
    # OLS with more features than samples: the minimum-norm least-squares solution (as NumPy's)
    few = (torch.rand(4, 9, generator=generator) < 0.5).double()
    target = torch.randn(4, generator=generator, dtype=torch.float64)
    ours = LimeOLS()(Observations(z=few, y=target, y_full=0.3, y_empty=0.0)).numpy()
    design = np.vstack([few.numpy(), np.ones((1, 9))])
    values = np.concatenate([target.numpy(), [0.3]])
    centred = design - design.mean(0)
    reference = np.linalg.lstsq(centred, values - values.mean(), rcond=None)[0]
    assert np.allclose(ours, reference, atol=1e-8)


def test_ciu_by_hand():
    """CIU from single-feature samples: CI = |y_sample − y_ref| / range, CU = (y_present − min) /
    (max − min) (0.5 when nothing changes); the score is CI × CU. Rows come in a shuffled order:
    the changed feature is read from each row."""
    from stablesal.explain.perturbation.calculators import ContextualImportance, Observations

    order = torch.tensor([2, 0, 1])
    removed = torch.ones(3, 3, dtype=torch.float64)
    removed[torch.arange(3), order] = 0.0            # row r removes feature order[r]
    y = torch.tensor([0.5, 0.2, 0.9], dtype=torch.float64)  # outputs of those rows
    scores = ContextualImportance()(Observations(z=removed, y=y, y_full=0.9, y_empty=0.1))
    # feature 2 removed → 0.5: CI 0.4, present = full 0.9 is the max → CU 1
    # feature 0 removed → 0.2: CI 0.7, CU 1; feature 1 removed → 0.9 (no change): CI 0, CU 0.5
    assert scores.tolist() == pytest.approx([0.7, 0.0, 0.4])
    halved = ContextualImportance(output_range=2.0)(Observations(z=removed, y=y, y_full=0.9, y_empty=0.1))
    assert halved.tolist() == pytest.approx([0.35, 0.0, 0.2])
    kept = 1 - removed                                 # inverse samples: row r keeps only order[r]
    inverse = ContextualImportance()(Observations(z=kept, y=torch.tensor([0.3, 0.1, 0.6], dtype=torch.float64),
                                                  y_full=0.9, y_empty=0.2, inverse=True))
    # reference = empty 0.2; feature 2 kept → 0.3: CI 0.1, present 0.3 is the max → CU 1
    # feature 0 kept → 0.1: CI 0.1, present 0.1 is the min → CU 0; feature 1 kept → 0.6: CI 0.4, CU 1
    assert inverse.tolist() == pytest.approx([0.0, 0.4, 0.1])
    with pytest.raises(ValueError, match="CIU needs exactly one single-feature sample per feature"):
        ContextualImportance()(Observations(z=removed[:2], y=y[:2], y_full=0.9, y_empty=0.1))


class PixelSum(nn.Module):
    """Logit t = Σ weights_t · x: additive in the pixels, so exactly linear in kept segments."""

    def __init__(self, side=4, classes=2, seed=0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, 3 * side * side, generator=torch.Generator().manual_seed(seed)),
                                   requires_grad=False)

    def forward(self, x):
        return x.flatten(1) @ self.weight.T


class Interactions(nn.Module):
    """A non-additive logit: products of quadrant sums (segments of a 2×2 grid interact)."""

    def forward(self, x):
        q = [x[:, :, :2, :2].sum((1, 2, 3)), x[:, :, :2, 2:].sum((1, 2, 3)), x[:, :, 2:, :2].sum((1, 2, 3)),
             x[:, :, 2:, 2:].sum((1, 2, 3))]
        logit = q[0] * q[1] + 0.5 * q[2] - q[0] * q[2] * q[3] + q[3]
        return torch.stack([logit, -logit], 1)


def _shapley_values(model, x, target, labels, count):
    """Exact Shapley values by enumerating every coalition (fill 0)."""
    def value(keep):
        mask = torch.zeros_like(labels, dtype=x.dtype)
        for s in keep:
            mask[labels == s] = 1
        return float(model((x * mask).unsqueeze(0))[0, target])

    values = []
    for s in range(count):
        others = [o for o in range(count) if o != s]
        total = 0.0
        for size in range(count):
            for coalition in itertools.combinations(others, size):
                weight = math.factorial(size) * math.factorial(count - size - 1) / math.factorial(count)
                total += weight * (value(coalition + (s,)) - value(coalition))
        values.append(total)
    return torch.tensor(values, dtype=torch.float64)


@pytest.mark.parametrize("model", [PixelSum(), Interactions()], ids=["additive", "interactions"])
def test_kernel_shap_recovers_exact_shapley_values(model):
    x = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(5)).double()
    model = model.double().eval()
    pipeline = Perturbation(model, segmenter="grid", n_segments=4, sampler="shap", n_samples=16, replacement=0.0,
                            calculator="kernel-shap", map="segment", output="logit")
    labels = Grid(rows=2, cols=2)(x)[0]
    attributions = pipeline.attribute(x, target=0)[0, 0]
    ours = torch.stack([attributions[labels == s][0] for s in range(4)]).double()
    exact = _shapley_values(model, x[0], 0, labels, 4)
    assert torch.allclose(ours, exact, atol=1e-4 * exact.abs().max().item() + 1e-6)


# ------------------------------ tests the mutation run asked for (marked mutation)
# Tests written against the survivors of `make mutation` (see mutation/*.md): each checks
# a known answer or a property computed independently of the code under test (a value derived by
# hand, NumPy or SciPy), so that a changed constant, operator or argument fails. Every test is fast.


@pytest.mark.mutation
def test_single_feature_calculators_check_their_sampler():
    from stablesal.explain.perturbation.calculators import ContextualImportance
    from stablesal.explain.perturbation.samplers import RandomSampler, SingleFeature

    ContextualImportance().check(SingleFeature())
    for sampler in (RandomSampler(0.5), object()):          # a sampler that does not say it is single-feature
        with pytest.raises(ValueError, match="needs single-feature samples"):
            ContextualImportance().check(sampler)


@pytest.mark.mutation
def test_rise_names():
    from stablesal.explain.perturbation.calculators import RiseScore

    assert str(RiseScore()) == "rise" and str(RiseScore("mean")) == "rise(normalise=mean)"


@pytest.mark.mutation
def test_lime_ridge_matches_a_float64_reference_to_rounding():
    """LIME's kernel ridge recomputed with NumPy: rows [Z; 1], cosine distance to the full row
    (k kept of S: k / (√k √S), 0 for the empty row), kernel sqrt(exp(−d²/w²)), weighted ridge
    with an unpenalised intercept. Agreement to 1e-14: rows that keep one feature have norm 1
    exactly and must not be nudged
    (that moves the scores by ~3e-13; rounding differences are ~1e-16)."""
    from stablesal.explain.perturbation.calculators import LimeKernelRidge, Observations

    z = torch.tensor([[1, 0], [0, 1], [0, 0], [1, 0], [0, 1], [1, 0]], dtype=torch.float64)
    y = torch.tensor([0.7, 0.2, 0.05, 0.72, 0.18, 0.69], dtype=torch.float64)
    ours = LimeKernelRidge()(Observations(z, y, 0.9, 0.05)).numpy()
    design = np.vstack([z.numpy(), np.ones((1, 2))])
    outputs = np.append(y.numpy(), 0.9)
    kept = design.sum(1)
    cosine = np.where(kept > 0, kept / (np.sqrt(np.maximum(kept, 1)) * np.sqrt(2)), 0.0)
    kernel = np.sqrt(np.exp(-(1 - cosine) ** 2 / 0.25 ** 2))
    w = kernel / kernel.sum()
    zc, yc = design - w @ design, outputs - w @ outputs
    reference = np.linalg.solve((zc * kernel[:, None]).T @ zc + np.eye(2), (zc * kernel[:, None]).T @ yc)
    assert np.abs(ours - reference).max() < 3e-14


@pytest.mark.mutation
def test_prediction_difference_by_hand():
    """PDA: y_full − mean of the outputs of the samples where the feature is removed; a feature
    never removed scores 0. N ≠ S and unequal removal counts."""
    from stablesal.explain.perturbation.calculators import Observations, PredictionDifference

    z = torch.tensor([[0, 1, 1], [0, 0, 1], [1, 0, 1], [0, 1, 1]], dtype=torch.float64)
    y = torch.tensor([0.4, 0.1, 0.6, 0.7], dtype=torch.float64)
    scores = PredictionDifference()(Observations(z, y, y_full=0.9, y_empty=0.0))
    # feature 0 removed in rows 0, 1, 3: mean 0.4; feature 1 in rows 1, 2: mean 0.35; feature 2 never
    assert scores.tolist() == pytest.approx([0.5, 0.55, 0.0])


@pytest.mark.mutation
def test_ciu_message_is_exact():
    from stablesal.explain.perturbation.calculators import ContextualImportance, Observations

    z = torch.ones(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^CIU needs exactly one single-feature sample per feature$"):
        ContextualImportance()(Observations(z, torch.zeros(2, dtype=torch.float64), 0.9, 0.1))


@pytest.mark.mutation
def test_kernel_shap_and_lime_ols_match_a_float64_least_squares_reference():
    """Both fits recomputed with NumPy's least squares on [Z, 1] in float64: LIME-OLS adds the
    full row (output y_full), KernelSHAP the full and empty rows with weight 10⁶. y_full and
    y_empty carry more digits than float32 holds (rounding them to float32 moves the scores by
    ~1e-8), and must keep them; the tolerances leave room for rounding (the 10⁶ weights make
    KernelSHAP's system stiff: reordering its float64 arithmetic moves it by up to ~2e-10)."""
    from stablesal.explain.perturbation.calculators import KernelShap, LimeOLS, Observations
    from stablesal.explain.perturbation.samplers import LARGE_WEIGHT

    generator = torch.Generator().manual_seed(0)
    z = (torch.rand(12, 4, generator=generator) < 0.5).double()
    y = torch.rand(12, generator=generator, dtype=torch.float64)
    y_full, y_empty = 0.90000000596, 0.299999997  # each about half a float32 spacing from a float32 value
    sizes = z.sum(1).numpy()
    kernel = np.array([3 / (math.comb(4, int(k)) * k * (4 - k)) if 0 < k < 4 else LARGE_WEIGHT for k in sizes])

    def fit(rows, outputs, weights):
        design = np.hstack([rows, np.ones((len(rows), 1))]) * np.sqrt(weights)[:, None]
        return np.linalg.lstsq(design, outputs * np.sqrt(weights), rcond=None)[0][:4]

    shap = KernelShap()(Observations(z, y, y_full, y_empty)).numpy()
    expected = fit(np.vstack([z.numpy(), np.ones((1, 4)), np.zeros((1, 4))]), np.append(y.numpy(), [y_full, y_empty]),
                   np.append(kernel, [LARGE_WEIGHT, LARGE_WEIGHT]))
    assert np.abs(shap - expected).max() < 2e-9
    ols = LimeOLS()(Observations(z, y, y_full, y_empty)).numpy()
    expected = fit(np.vstack([z.numpy(), np.ones((1, 4))]), np.append(y.numpy(), y_full), np.ones(13))
    assert np.abs(ols - expected).max() < 1e-12
