"""Known-answer tests: each formula against an independent computation (SciPy, scikit-learn,
autograd written out, or a value derived by hand), so that a wrong constant or operator fails."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from stablesal.attribution import SmoothGrad, SparsifiedSmoothGrad
from stablesal.seeding import image_seeds
from stablesal.metrics import deletion_insertion, mege, mu_fidelity, output_drops, pointing_game, reco
from stablesal.sampling import GaussianNoise, Suppression


def nonlinear_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()


@pytest.fixture
def images():
    return torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))


def test_smoothgrad_noise_has_the_stated_sigma():
    """σ = noise_level × input range, measured on the drawn noise (a σ ×10 mistake fails)."""
    x = torch.zeros(3, 16, 16)
    drawn, _ = GaussianNoise(n_samples=400, noise_level=0.15).draw(x, 0, 400, torch.Generator().manual_seed(0))
    assert drawn.std().item() == pytest.approx(0.15, rel=0.02)
    wider, _ = GaussianNoise(400, 0.15, input_range=(-1.0, 1.0)).draw(x, 0, 400, torch.Generator().manual_seed(0))
    assert wider.std().item() == pytest.approx(0.30, rel=0.02)


def test_smoothgrad_on_a_nonlinear_model_is_the_mean_gradient_of_its_own_draws(images):
    """SmoothGrad = mean over samples of ∇f(x + σε), recomputed with plain autograd on the same
    draws (each image's generator from its seed, noise in blocks of 16 samples)."""
    model, sigma, count = nonlinear_model(), 0.15, 20
    target = torch.tensor([0, 1, 2])
    ours = SmoothGrad(model, n_samples=count, noise_level=sigma).attribute(images, target=target, seed=5)
    for index, seed in enumerate(image_seeds(images, 5)):
        generator = torch.Generator().manual_seed(seed)
        noise = torch.cat([torch.randn((min(16, count - start), 3, 8, 8), generator=generator)
                           for start in range(0, count, 16)])
        samples = (images[index] + sigma * noise).requires_grad_(True)
        model(samples)[:, target[index]].sum().backward()
        assert torch.allclose(ours[index], samples.grad.mean(0), atol=1e-6)


def test_suppression_keep_rate_is_uniform():
    """Bernoulli suppression draws a keep rate π ~ U(0, 1) per sample: the kept share of 4096
    pixels follows U(0, 1) (Kolmogorov–Smirnov), and a fixed-rate sampler does not."""
    from scipy import stats

    x = torch.ones(1, 64, 64)
    drawn, _ = Suppression(n_samples=600).draw(x, 0, 600, torch.Generator().manual_seed(1))
    kept = drawn.flatten(1).mean(1).numpy()
    assert stats.kstest(kept, "uniform").pvalue > 0.01
    fixed, _ = Suppression(n_samples=600, mode="fixed", keep_rate=0.5).draw(x, 0, 600, torch.Generator().manual_seed(1))
    assert stats.kstest(fixed.flatten(1).mean(1).numpy(), "uniform").pvalue < 1e-6
    assert set(np.unique(drawn.numpy())) <= {0.0, 1.0}  # erased to the black fill, never blended


def test_sparsified_smoothgrad_keeps_the_top_k_of_each_sample():
    """A linear model with zero noise: every sample's gradient is W, so the map is the indicator
    of the 10 % largest |W| (ranked over all channels and pixels)."""
    weights = torch.randn(2, 3 * 10 * 10, generator=torch.Generator().manual_seed(3))
    model = nn.Linear(300, 2)
    model.weight.data, model.bias.data = weights, torch.zeros(2)
    wrapped = nn.Sequential(nn.Flatten(), model).eval()
    x = torch.rand(1, 3, 10, 10)
    ours = SparsifiedSmoothGrad(wrapped, n_samples=3, noise_level=0.0, topk=0.1).attribute(x, target=1, seed=0)
    expected = torch.zeros(300)
    expected[weights[1].abs().topk(30).indices] = 1.0
    assert torch.equal(ours.flatten(), expected)


def test_mu_fidelity_by_hand_on_a_nonlinear_model(images):
    """µFidelity (Bhatt et al., IJCAI 2020) = Pearson correlation, over subsets S, between Σ_{i∈S} a_i
    and f(x) − f(x with S set to the image mean), with f the target's softmax probability."""
    from scipy.stats import pearsonr

    model = nonlinear_model(1)
    target = torch.tensor([2, 0, 1])
    generator = torch.Generator().manual_seed(4)
    subsets = torch.rand(20, 8, 8, generator=generator) < 0.3
    maps = torch.randn(3, 3, 8, 8, generator=generator)
    drops = output_drops(model, images, target, subsets)
    ours = mu_fidelity(maps, subsets, drops)
    with torch.no_grad():
        for index in range(3):
            image = images[index]
            full = torch.softmax(model(image[None]), 1)[0, target[index]]
            fill = image.mean(dim=(1, 2), keepdim=True)
            removed = [float(maps[index].sum(0)[s].sum()) for s in subsets]
            drop = [float(full - torch.softmax(model(torch.where(s, fill, image)[None]), 1)[0, target[index]])
                    for s in subsets]
            assert ours[index].item() == pytest.approx(pearsonr(removed, drop).statistic, abs=1e-5)


def test_mege_and_reco_on_known_distance_sets():
    same, different = [0.1, 0.2, 0.6], [0.5, 0.7, 0.8]
    assert mege(same) == pytest.approx(1 / 1.3)
    # γ = 0.2: TPR 2/3, TNR 1; γ = 0.6: TPR 1, TNR 2/3; nothing better
    assert reco(same, different) == pytest.approx(2 / 3)
    assert reco([0.9], [0.1]) == 0.0  # inverted sets: no threshold separates them


def test_pointing_game_counts_ties():
    """A map whose maximum is shared by pixels in and out of the object scores the share of the
    tied pixels inside; the first tied pixel is not special."""
    maps = torch.zeros(2, 1, 4, 4)
    maps[0, 0, 0, 0] = maps[0, 0, 3, 3] = 1.0     # two maxima, one inside
    maps[1, 0, 3, 3] = 1.0                          # one maximum, outside
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[:, 0, 0] = True
    assert pointing_game(maps, masks).tolist() == [0.5, 0.0]


def test_deletion_curve_in_closed_form():
    """A two-class model with p_1 = sigmoid(α · mean(x)); deleting k of N pixels of an all-ones
    image to 0 gives p_k = sigmoid(α (1 − k/N)), and the AUC is the trapezoid rule on it."""
    class MeanModel(nn.Module):
        def forward(self, x):
            logit = 4.0 * x.mean(dim=(1, 2, 3))
            return torch.stack([torch.zeros_like(logit), logit], 1)

    images = torch.ones(1, 1, 4, 4)
    maps = torch.arange(16.0).view(1, 1, 4, 4)
    curves, auc = deletion_insertion(MeanModel().eval(), images, maps, torch.tensor([1]), steps=4,
                                     mode="deletion", substrate=0.0, batch_size=3)
    expected = torch.sigmoid(4.0 * (1 - torch.tensor([0, 4, 8, 12, 16]) / 16))
    assert torch.allclose(curves[0], expected, atol=1e-6)
    assert auc.item() == pytest.approx(float(np.trapezoid(expected.numpy(), dx=0.25)), abs=1e-6)
    curves, _ = deletion_insertion(MeanModel().eval(), images, maps, torch.tensor([1]), steps=4,
                                   mode="insertion", substrate=0.0, batch_size=3)
    assert torch.allclose(curves[0], expected.flip(0), atol=1e-6)


def test_lime_ridge_and_kernel_match_scikit_learn():
    """LIME's calculator: ridge (α = 1) on [Z; 1] weighted by sqrt(exp(−d²/0.25²)), d the cosine
    distance to the all-kept sample, against scikit-learn's Ridge with the same weights."""
    sklearn = pytest.importorskip("sklearn.linear_model")
    from sklearn.metrics.pairwise import cosine_distances

    from stablesal.perturbation.calculators import LimeKernelRidge, Observations

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


def test_kendall_and_spearman_against_scipy():
    from scipy.stats import kendalltau, spearmanr

    from stablesal.metrics import kendall_tau_matrix, spearman

    a, b = torch.rand(2, 50, generator=torch.Generator().manual_seed(8))
    assert spearman(a[None], b[None]).item() == pytest.approx(spearmanr(a, b).statistic)
    scores = {"x": {"m1": 0.1, "m2": 0.4, "m3": 0.9, "m4": 0.5}, "y": {"m1": 0.2, "m2": 0.3, "m3": 0.8, "m4": 0.6}}
    row = kendall_tau_matrix(scores, {"x": True, "y": True})[0]
    expected = kendalltau([0.1, 0.4, 0.9, 0.5], [0.2, 0.3, 0.8, 0.6]).statistic
    assert row["tau"] == pytest.approx(expected) and math.isfinite(row["p_value"])


def test_rise_is_the_published_formula():
    """RISE transcribed from the paper and its authors' code: each sample's 7×7 binary grid
    upsampled with scikit-image (order 1, reflected borders) to (7 + 1)·cell pixels, cropped at
    the sample's shift, the image kept where the mask is; saliency = Σ_n Y_n M_n / (N p)."""
    from skimage.transform import resize

    from stablesal.perturbation import RISE

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
    from stablesal.perturbation.calculators import RiseScore

    observed = RISE(model, n_samples=40, grid=4, p=0.5, replacement=0.0, chunk_size=16,
                    calculator=RiseScore(normalise="mean")).attribute(image[None], target=1, seed=3)[0, 0].double()
    assert torch.allclose(observed * obs.z.mean(), saliency * 0.5, atol=1e-5)
    assert not torch.allclose(observed, saliency, atol=1e-4)


def test_mu_fidelity_spearman_option_ranks_first():
    from scipy.stats import spearmanr

    generator = torch.Generator().manual_seed(11)
    subsets = torch.rand(30, 6, 6, generator=generator) < 0.4
    maps = torch.randn(2, 1, 6, 6, generator=generator)
    drops = torch.randn(2, 30, generator=generator)
    ours = mu_fidelity(maps, subsets, drops, correlation="spearman")
    removed = (maps[:, 0].flatten(1) @ subsets.flatten(1).float().T).numpy()
    for i in range(2):
        assert ours[i].item() == pytest.approx(spearmanr(removed[i], drops[i].numpy()).statistic)
    with pytest.raises(ValueError, match="correlation must be one of"):
        mu_fidelity(maps, subsets, drops, correlation="kendall")


def test_relevance_mass_by_hand():
    """Share of the positive part inside the mask, per image, with negative evidence ignored and a
    total below 1 (so no clamp or product can pass for the ratio)."""
    from stablesal.metrics import relevance_mass

    maps = torch.tensor([[[0.2, -0.5], [0.1, 0.0]], [[0.0, 0.3], [0.3, 0.0]]]).unsqueeze(1)
    masks = torch.tensor([[[True, False], [False, False]], [[False, True], [False, False]]])
    assert relevance_mass(maps, masks).tolist() == pytest.approx([0.2 / 0.3, 0.5])
    two_channels = torch.cat([maps, maps], 1)  # channels are summed first: the ratio is unchanged
    assert relevance_mass(two_channels, masks).tolist() == pytest.approx([0.2 / 0.3, 0.5])


def test_kendall_tau_matrix_orients_every_metric_and_uses_shared_methods():
    from scipy.stats import kendalltau

    from stablesal.metrics import kendall_tau_matrix

    scores = {"faithful": {"a": 0.9, "b": 0.5, "c": 0.1, "d": 0.4},
              "error": {"a": 0.1, "b": 0.6, "c": 0.9},          # lower is better; d missing
              "other": {"a": 0.2, "b": 0.3, "c": 0.25, "d": 0.8}}
    rows = {(r["metric_a"], r["metric_b"]): r for r in kendall_tau_matrix(
        scores, {"faithful": True, "error": False, "other": True})}
    assert set(rows) == {("faithful", "error"), ("faithful", "other"), ("error", "other")}
    # faithful and error rank a, b, c the same way once error's direction is flipped
    assert rows[("faithful", "error")]["tau"] == pytest.approx(1.0)
    assert rows[("faithful", "error")]["n_methods"] == 3
    assert rows[("error", "other")]["tau"] == pytest.approx(kendalltau([-0.1, -0.6, -0.9], [0.2, 0.3, 0.25]).statistic)
    expected = kendalltau([0.9, 0.5, 0.1, 0.4], [0.2, 0.3, 0.25, 0.8]).statistic
    assert rows[("faithful", "other")]["tau"] == pytest.approx(expected) and rows[("faithful", "other")]["n_methods"] == 4
    assert kendall_tau_matrix({"x": {"a": 1, "b": 2}, "y": {"a": 1, "b": 2}}, {"x": True, "y": True}) == []


def test_mean_ci_small_samples():
    from scipy import stats

    from stablesal.metrics import mean_ci

    assert mean_ci([2.0]) == (2.0, 2.0, 2.0)
    assert all(math.isnan(v) for v in mean_ci([float("nan")]))
    low, high = stats.t.interval(0.95, 1, loc=2.0, scale=stats.sem([1.0, 3.0]))
    assert mean_ci([1.0, 3.0]) == pytest.approx((2.0, low, high))


def test_three_dimensional_maps_are_read_as_one_channel():
    """Maps [B, H, W] and [B, 1, H, W] give the same grey map and µFidelity."""
    from stablesal.metrics import grey_maps

    generator = torch.Generator().manual_seed(12)
    maps = torch.randn(2, 5, 7, generator=generator)
    assert torch.allclose(grey_maps(maps), grey_maps(maps.unsqueeze(1)))
    subsets = torch.rand(15, 5, 7, generator=generator) < 0.3
    drops = torch.randn(2, 15, generator=generator)
    assert torch.allclose(mu_fidelity(maps, subsets, drops), mu_fidelity(maps.unsqueeze(1), subsets, drops))


def test_kernel_shap_without_sampler_weights_uses_the_shapley_kernel():
    from stablesal.perturbation.calculators import KernelShap, LimeOLS, Observations
    from stablesal.perturbation.samplers import shapley_kernel

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
    from stablesal.perturbation.calculators import ContextualImportance, Observations

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


def test_suppression_modes_by_distribution():
    """Global: one scale per sample shared by every pixel; continuous: per-pixel uniform values;
    fixed: the stated keep rate."""
    x = torch.ones(1, 32, 32)
    generator = torch.Generator().manual_seed(14)
    scaled, _ = Suppression(n_samples=200, mode="global").draw(x, 0, 200, generator)
    per_sample = scaled.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample))
    assert 0.4 < per_sample[:, 0].mean() < 0.6 and per_sample.min() >= 0 and per_sample.max() <= 1
    continuous, _ = Suppression(n_samples=50, mode="continuous").draw(x, 0, 50, generator)
    assert continuous.flatten(1).std(1).min() > 0.2  # varies inside each sample, not binary
    assert ((continuous > 0) & (continuous < 1)).float().mean() > 0.99
    fixed, _ = Suppression(n_samples=200, mode="fixed", keep_rate=0.25).draw(x, 0, 200, generator)
    assert fixed.mean().item() == pytest.approx(0.25, abs=0.01)


def test_design_interval_not_estimable_keeps_its_fields():
    from stablesal.intervals import Weights, design_interval, pair_mean

    pairs = np.random.default_rng(0).random((4, 2, 2))
    interval = design_interval(lambda w: pair_mean(pairs, w, "main"), 4, {"main": 2}, confidence=0.8)
    assert interval.estimate == pytest.approx(pair_mean(pairs, Weights.ones(4, {"main": 2}), "main"))
    assert all(math.isnan(v) for v in (interval.low, interval.high, interval.se, interval.df))
    assert interval.confidence == 0.8
    # an undefined estimate gets no interval even when every deletion is defined
    undefined = design_interval(lambda w: float("nan") if w.images.all() else 1.0, 4, {})
    assert math.isnan(undefined.se) and math.isnan(undefined.low)


def test_random_cell_subsets_remove_whole_cells():
    from stablesal.metrics import random_cell_subsets

    subsets = random_cell_subsets(18, 18, n_subsets=30, grid=9, fraction=0.2, seed=3)
    assert subsets.shape == (30, 18, 18)
    blocks = subsets.view(30, 9, 2, 9, 2)
    assert torch.equal(blocks, blocks[:, :, :1, :, :1].expand_as(blocks))  # constant on each 2×2 cell
    assert (blocks[:, :, 0, :, 0].flatten(1).sum(1) == 16).all()          # round(0.2 · 81) cells each
    assert random_cell_subsets(18, 18, fraction=0.001, seed=3).view(200, -1).sum(1).unique().tolist() == [4]
    assert torch.equal(random_cell_subsets(9, 9), random_cell_subsets(9, 9, n_subsets=200, grid=9, seed=0))


def test_shapley_kernel_values():
    """(M − 1) / (C(M, k) k (M − k)) in float64; the empty and full coalitions get the large weight."""
    from stablesal.perturbation.samplers import LARGE_WEIGHT, shapley_kernel

    weights = shapley_kernel(torch.tensor([0, 1, 2, 3, 4]), 4)
    assert weights[1].item() == pytest.approx(3 / (4 * 1 * 3), rel=1e-12)
    assert weights[2].item() == pytest.approx(3 / (6 * 2 * 2), rel=1e-12)
    assert weights[3].item() == pytest.approx(3 / (4 * 3 * 1), rel=1e-12)
    assert weights[0].item() == weights[4].item() == LARGE_WEIGHT
    assert shapley_kernel(torch.tensor([7]), 30).item() == pytest.approx(29 / (math.comb(30, 7) * 7 * 23), rel=1e-12)


def test_probability_sampler_bounds_and_keep_probability():
    from stablesal.perturbation.samplers import ProbabilitySampler

    default = ProbabilitySampler()
    assert (default.low, default.high, default.keep_probability) == (0.0, 1.0, 0.5)
    assert ProbabilitySampler(0.2, 0.6).keep_probability == pytest.approx(0.4)
    for low, high in ((0.5, 0.5), (0.2, 1.5), (-0.1, 0.5)):
        with pytest.raises(ValueError, match="need 0 <= low < high <= 1"):
            ProbabilitySampler(low, high)
    z, _ = ProbabilitySampler(0.2, 0.6).draw(4000, 50, torch.Generator().manual_seed(0))
    assert z.float().mean().item() == pytest.approx(0.4, abs=0.01)


def test_straight_line_path_with_a_baseline():
    """IG's samples x' + α(x − x') on Captum's Gauss–Legendre nodes (50 by default), and the factor
    x − x'."""
    from captum.attr._utils.approximation_methods import approximation_parameters

    from stablesal.sampling import StraightLinePath

    path = StraightLinePath()
    _, alphas = approximation_parameters("gausslegendre")
    assert path.n_samples == 50 and path.method == "gausslegendre"
    assert torch.allclose(path._alphas, torch.tensor(alphas(50), dtype=torch.float64))
    x, baseline = torch.rand(2, 3, 3), torch.rand(2, 3, 3)
    samples, delta = path.draw(x, 4, 7, None, baseline=baseline)
    expected = baseline + path._alphas[4:7].view(-1, 1, 1, 1).float() * (x - baseline)
    assert torch.allclose(samples, expected) and torch.allclose(delta, (x - baseline).expand(3, -1, -1, -1))
    batch, batch_delta = path.draw_batch(x[None], 4, 7, baseline[None])
    assert torch.allclose(batch[0], expected) and torch.allclose(batch_delta[0], delta)
    zero, _ = path.draw(x, 0, 2, None)
    assert torch.allclose(zero, path._alphas[:2].view(-1, 1, 1, 1).float() * x)


def test_baseline_distribution_draws_count_and_validation():
    from stablesal.sampling import BaselineDistribution

    references = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)])
    sampler = BaselineDistribution(n_samples=8)
    samples, delta = sampler.draw(torch.full((1, 4, 4), 0.5), 5, 9, torch.Generator().manual_seed(1),
                                  baseline=references)
    assert samples.shape[0] == delta.shape[0] == 4
    # each sample lies on the segment from its reference to x
    chosen = torch.where(delta.flatten(1)[:, :1] > 0, 0.0, 1.0)  # delta = x − x' is +0.5 or −0.5
    assert torch.allclose(delta.abs(), torch.full_like(delta, 0.5))
    alpha = (samples.flatten(1)[:, 0] - chosen[:, 0]) / delta.flatten(1)[:, 0]
    assert ((alpha >= 0) & (alpha <= 1)).all()
    for bad in (None, torch.zeros(1, 4, 4)):
        with pytest.raises(ValueError, match="needs baselines"):
            sampler.draw(torch.zeros(1, 4, 4), 0, 2, torch.Generator(), baseline=bad)


def test_suppression_units_fill_and_counts():
    """Patch units are constant on square patches, segment units on segments, samples count
    stop − start, and erased pixels take the fill value."""
    x = torch.rand(2, 10, 10, generator=torch.Generator().manual_seed(15))
    patches, _ = Suppression(n_samples=20, unit="patch", patch_size=4, fill=0.3).draw(
        x, 5, 9, torch.Generator().manual_seed(2))
    assert patches.shape == (4, 2, 10, 10)
    kept = torch.isclose(patches, x.expand_as(patches))
    assert (kept | torch.isclose(patches, torch.tensor(0.3))).all()
    grid = kept[:, 0, :8, :8].reshape(4, 2, 4, 2, 4)
    assert torch.equal(grid, grid[:, :, :1, :, :1].expand_as(grid))        # 4 × 4 patches
    segments = torch.arange(10).repeat(10, 1) // 5                          # two vertical halves
    sampler = Suppression(n_samples=8, unit="segment")
    first, _ = sampler.draw(x, 0, 8, torch.Generator().manual_seed(3), segments=segments)
    again, _ = sampler.draw(x, 0, 8, torch.Generator().manual_seed(3), segments=segments)
    assert torch.equal(first, again)  # drawn from the given generator
    halves = (first[:, 0] != 0).view(8, 10, 2, 5)
    assert torch.equal(halves, halves[:, :, :, :1].expand_as(halves))


def test_uniform_weights_and_unique_random_limits():
    from stablesal.perturbation.samplers import UniqueRandom

    assert torch.allclose(GaussianNoise(n_samples=8).weights(), torch.full((8,), 1 / 8))
    rows, _ = UniqueRandom(0.5).draw(14, 4, torch.Generator().manual_seed(4))  # every proper, non-empty subset
    assert len({tuple(r.tolist()) for r in rows}) == 14 and rows.sum(1).min() > 0 and rows.sum(1).max() < 4
    with pytest.raises(ValueError, match="cannot draw 15 distinct samples"):
        UniqueRandom(0.5).draw(15, 4, torch.Generator())
    assert UniqueRandom(0.3).keep_probability == 0.3
    for p in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="p must be in"):
            UniqueRandom(p)


def test_randomised_copy_reinitialises_every_learnable_layer():
    from stablesal.metrics import randomised_copy

    model = nonlinear_model(4)
    before = [p.clone() for p in model.parameters()]
    copy = randomised_copy(model)
    assert torch.equal(copy[0].weight, randomised_copy(model, seed=0)[0].weight)  # seed 0 by default
    assert not torch.equal(copy[0].weight, randomised_copy(model, seed=1)[0].weight)
    for original, new in zip(model.parameters(), copy.parameters()):
        assert not torch.equal(original, new) and not new.requires_grad
    assert not copy.training
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))  # the original is untouched


def test_shap_sampler_enumerates_then_samples_by_kernel_mass():
    """KernelSHAP's sampler on 6 features: the sizes 0, 6, 1, 5 are enumerated (14 rows with
    their exact kernel weights); the rest of the budget draws sizes 2, 3, 4 in proportion to their
    total kernel weight C(6, k)·w_k, each random row carrying an equal share of that weight."""
    from stablesal.perturbation.samplers import ShapSampler, shapley_kernel

    rows, weights = ShapSampler().draw(14 + 29, 6, torch.Generator().manual_seed(5))  # sizes 2 and 4 need 30
    assert rows.shape == (43, 6) and weights.dtype == torch.float64
    sizes = rows.sum(1)
    assert sorted(sizes[:14].tolist()) == [0, 1, 1, 1, 1, 1, 1, 5, 5, 5, 5, 5, 5, 6]
    assert len({tuple(r.tolist()) for r in rows[:14]}) == 14
    mass = {k: float(shapley_kernel(torch.tensor([k]), 6)[0]) * math.comb(6, k) for k in (2, 3, 4)}
    total = sum(mass.values())
    assert weights[14:].sum().item() == pytest.approx(total, rel=1e-9)
    assert torch.allclose(weights[1:14][sizes[1:14] == 1],
                          torch.full((6,), float(shapley_kernel(torch.tensor([1]), 6)[0]), dtype=torch.float64))
    drawn = torch.cat([ShapSampler().draw(43, 6, torch.Generator().manual_seed(seed))[0][14:].sum(1)
                       for seed in range(100)])
    for k in (2, 3, 4):
        assert (drawn == k).float().mean().item() == pytest.approx(mass[k] / total, abs=0.03)
    # a budget that leaves exactly one random row still draws it
    one, _ = ShapSampler().draw(15, 6, torch.Generator().manual_seed(6))
    assert one.shape[0] == 15 and one[14].sum().item() in (2, 3, 4)


def test_kendall_skips_pairs_with_too_few_shared_methods():
    from stablesal.metrics import kendall_tau_matrix

    scores = {"sparse": {"a": 1.0, "b": 2.0}, "x": {"a": 0.1, "b": 0.2, "c": 0.3}, "y": {"a": 0.3, "b": 0.2, "c": 0.1}}
    rows = kendall_tau_matrix(scores, {"sparse": True, "x": True, "y": True})
    assert [(r["metric_a"], r["metric_b"]) for r in rows] == [("x", "y")] and rows[0]["tau"] == pytest.approx(-1.0)


def test_gradient_shap_noise_and_its_message():
    from stablesal.sampling import BaselineDistribution

    references = torch.zeros(1, 1, 4, 4)
    x = torch.ones(1, 4, 4)
    clean, _ = BaselineDistribution(n_samples=4).draw(x, 0, 4, torch.Generator().manual_seed(0), baseline=references)
    assert torch.allclose(clean, clean.flatten(1)[:, :1].view(4, 1, 1, 1).expand_as(clean))  # on the path: α·x
    noisy, _ = BaselineDistribution(n_samples=4, noise_level=0.5).draw(x, 0, 4, torch.Generator().manual_seed(0),
                                                                     baseline=references)
    assert (noisy - clean).std().item() == pytest.approx(0.5, rel=0.35)
    with pytest.raises(ValueError, match="GradientSHAP needs baselines"):
        BaselineDistribution().draw(x, 0, 1, torch.Generator(), baseline=None)


def test_unique_random_is_seeded_and_suppression_checks_its_arguments():
    from stablesal.perturbation.samplers import UniqueRandom

    first, _ = UniqueRandom(0.4).draw(30, 8, torch.Generator().manual_seed(7))
    again, _ = UniqueRandom(0.4).draw(30, 8, torch.Generator().manual_seed(7))
    assert torch.equal(first, again)
    default = Suppression()
    assert (default.n_samples, default.mode, default.unit, default.patch_size, default.keep_rate, default.fill) == (
        50, "bernoulli", "pixel", 4, 0.5, 0.0)
    for bad in ({"keep_rate": 1.5}, {"keep_rate": -0.1}, {"mode": "erase"}, {"unit": "row"}):
        with pytest.raises(ValueError):
            Suppression(**bad)
