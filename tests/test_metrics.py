import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from stablesal.metrics import (
    deletion_insertion, grey_maps, mean_ci, mege, normalised_l2, pairwise_similarity, randomised_copy,
    reco, spearman, ssim, topk_intersection,
)


def test_identical_maps_are_perfectly_similar():
    maps = grey_maps(torch.rand(4, 3, 16, 16))
    scores = pairwise_similarity(maps, maps)
    assert torch.allclose(scores["ssim"], torch.ones(4).double())
    assert torch.allclose(scores["spearman"], torch.ones(4).double())
    assert scores["normalised_l2"].abs().max() < 1e-12
    assert torch.equal(scores["topk_intersection"], torch.ones(4).double())
    for fn, direction in ((ssim, True), (spearman, True), (normalised_l2, False), (topk_intersection, True)):
        assert fn.info.higher_is_better is direction


def test_spearman_matches_scipy_with_ties():
    a = torch.randint(0, 5, (3, 40)).float()  # many ties, like grouped maps
    b = torch.rand(3, 40)
    ours = spearman(a, b)
    for i in range(3):
        assert abs(ours[i].item() - spearmanr(a[i].numpy(), b[i].numpy()).statistic) < 1e-10


def test_grey_maps_and_topk():
    maps = torch.zeros(1, 3, 10, 10)
    maps[0, :, 0, 0] = 100.0  # an outlier is clipped at the 99th percentile
    maps[0, 0, 5, 5] = -1.0
    grey = grey_maps(maps)
    assert grey.max() == 1 and grey.min() == 0 and grey.shape == (1, 10, 10)
    a = torch.arange(100.).view(1, 100)
    assert topk_intersection(a, a.flip(1)).item() == 0.0


def test_mean_ci_and_mege_reco():
    mean, low, high = mean_ci([1.0, 2.0, 3.0, float("nan")])
    assert mean == 2.0 and low < 2.0 < high
    assert mege([0.0, 0.0]) == 1.0 and mege([1.0]) == 0.5
    assert reco([0.1, 0.2], [0.8, 0.9]) == 1.0  # perfectly separated
    assert reco([0.5, 0.5], [0.5, 0.5]) == 0.0


class Counting(torch.nn.Module):
    """p(class 0) rises with the mean of the first channel: deleting bright pixels lowers it."""

    def forward(self, x):
        score = x[:, 0].mean(dim=(1, 2)) * 20
        return torch.stack([score, torch.zeros_like(score)], 1)


def test_deletion_insertion_prefer_the_true_map():
    torch.manual_seed(0)
    images = torch.rand(6, 3, 8, 8)
    target = torch.zeros(6, dtype=torch.long)
    true_map = images[:, :1].clone()  # the model's evidence
    _, good = deletion_insertion(Counting().eval(), images, true_map, target, steps=8)
    _, bad = deletion_insertion(Counting().eval(), images, -true_map.abs() + 2, target, steps=8)  # reversed ranking
    assert (good < bad).all()
    _, good_ins = deletion_insertion(Counting().eval(), images, true_map, target, steps=8, mode="insertion")
    _, bad_ins = deletion_insertion(Counting().eval(), images, -true_map.abs() + 2, target, steps=8, mode="insertion")
    assert (good_ins > bad_ins).all()
    curves, _ = deletion_insertion(Counting().eval(), images, true_map, target, steps=8, normalise=True)
    assert torch.allclose(curves[:, 0], torch.ones(6)) and torch.allclose(curves[:, -1], torch.zeros(6), atol=1e-6)
    with pytest.raises(ValueError, match="substrate: unknown fill 'nosie'; did you mean 'noise'"):
        deletion_insertion(Counting().eval(), images, true_map, target, substrate="nosie")


def test_deletion_curve_matches_a_step_by_step_loop_for_any_chunking():
    """Grouping (image, step) pairs into model calls changes nothing: every chunking gives the
    curve of the obvious loop that zeroes the next pixels and calls the model once per step."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 6 * 6, 3)).eval()
    images, maps = torch.rand(5, 2, 6, 6), torch.rand(5, 1, 6, 6)
    target = torch.tensor([0, 1, 2, 0, 1])
    order = maps.flatten(1).argsort(1, descending=True)
    expected = []
    for count in [round(f * 36) for f in torch.linspace(0, 1, 5).tolist()]:
        removed = torch.zeros(5, 36, dtype=torch.bool).scatter_(1, order[:, :count], True).view(5, 1, 6, 6)
        expected.append(torch.softmax(model(torch.where(removed, 0.0, images)), 1).gather(1, target.view(-1, 1))[:, 0])
    expected = torch.stack(expected, 1)
    for batch_size in (1, 3, 7, 25, 1000, "auto"):
        curves, _ = deletion_insertion(model, images, maps, target, steps=4, batch_size=batch_size)
        assert torch.allclose(curves, expected, atol=1e-6), batch_size
    with pytest.raises(ValueError, match="batch_size"):
        deletion_insertion(model, images, maps, target, batch_size=0)


def test_randomised_copy_changes_weights_only_in_copy():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten()).eval()
    before = model[0].weight.clone()
    clone = randomised_copy(model, seed=1)
    assert torch.equal(model[0].weight, before) and not torch.equal(clone[0].weight, before)


def test_confidence_diagnostic_endpoints():
    from stablesal.diagnostics import confidence_by_strength

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4)).eval()
    images, targets = torch.rand(3, 3, 8, 8), torch.tensor([0, 1, 2])
    rows = confidence_by_strength(model, images, targets, levels=(0.0, 1.0), n_samples=4)
    at_zero = [r for r in rows if r["strength"] == 0.0]
    # strength 0: both samplers return the image itself
    assert abs(at_zero[0]["probability"] - at_zero[1]["probability"]) < 1e-6
    erased = next(r for r in rows if r["sampler"] == "suppression" and r["strength"] == 1.0)
    black = torch.softmax(model(torch.zeros(1, 3, 8, 8)), 1)[0, :3].mean().item()
    assert abs(erased["probability"] - black) < 1e-5  # everything erased: the black image


def test_mu_fidelity_of_the_true_attribution_is_one():
    from stablesal.metrics import mu_fidelity, output_drops, random_cell_subsets

    class Additive(torch.nn.Module):
        """logit_0 = Σ w ⊙ x, logit_1 = 0; with small weights p_0 is close to linear in the logit."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(1, 3, 9, 9) * 1e-3)

        def forward(self, x):
            score = (self.w * x).flatten(1).sum(1)
            return torch.stack([score, torch.zeros_like(score)], 1)

    torch.manual_seed(0)
    model, images = Additive().eval(), torch.rand(2, 3, 9, 9)
    subsets = random_cell_subsets(9, 9, 50, grid=9, seed=1)
    assert subsets.shape == (50, 9, 9) and torch.allclose(subsets.float().mean((1, 2)), torch.full((50,), 16 / 81))
    target = torch.zeros(2, dtype=torch.long)
    drops = output_drops(model, images, target, subsets, substrate=0.0)
    exact = model.w.detach() * images  # the true per-pixel contribution when removing to zero
    assert (mu_fidelity(exact, subsets, drops) > 0.999).all()
    assert mu_fidelity(torch.rand(2, 3, 9, 9), subsets, drops).abs().mean() < 0.5


def test_grey_maps_subtract_the_minimum_and_clip_at_the_percentile():
    """PAIR's grayscale: (|a| − min) / (p99 − min), clipped to [0, 1], checked against NumPy."""
    generator = torch.Generator().manual_seed(0)
    maps = torch.rand(3, 2, 12, 12, generator=generator) + 5.0  # an offset every pixel shares
    grey = grey_maps(maps).double().numpy()
    magnitude = maps.abs().sum(1).double().numpy().reshape(3, -1)
    low, top = magnitude.min(1, keepdims=True), np.percentile(magnitude, 99, axis=1, keepdims=True)
    expected = np.clip((magnitude - low) / (top - low), 0, 1).reshape(3, 12, 12)
    assert np.allclose(grey, expected, atol=1e-6)
    # the offset is gone: a map and the same map plus a constant have the same grey map
    shifted = grey_maps(maps[:, :1] + 100.0)
    assert torch.allclose(shifted, grey_maps(maps[:, :1]), atol=1e-4)
    assert grey_maps(torch.full((1, 1, 4, 4), 3.0)).abs().max() == 0  # a constant map is all zeros


def test_ssim_uses_the_whole_map_and_matches_scikit_image():
    from skimage.metrics import structural_similarity

    generator = np.random.default_rng(0)
    a = generator.random((2, 32, 32))
    b = np.clip(a + 0.3 * generator.random((2, 32, 32)), 0, 1)
    ours, cropped = ssim(torch.from_numpy(a), torch.from_numpy(b)), ssim(torch.from_numpy(a), torch.from_numpy(b),
                                                                        crop=True)
    for i in range(2):
        value, full = structural_similarity(a[i], b[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                            data_range=1.0, full=True)
        assert cropped[i].item() == pytest.approx(value, abs=1e-12)  # scikit-image's mean over the 22×22 interior
        assert ours[i].item() == pytest.approx(full.mean(), abs=1e-12)  # every pixel of the SSIM map
        assert abs(ours[i].item() - value) > 1e-4  # the border matters on a 32-px map
        other = structural_similarity(a[i], b[i], gaussian_weights=True, sigma=3.0, use_sample_covariance=False,
                                      data_range=1.0, full=True)[1].mean()
        assert abs(ours[i].item() - other) > 1e-3  # a wrong window would be caught


def test_ssim_window_grows_with_the_map_side():
    """σ = 1.5 px up to 32 px, then in proportion to the shorter side (scikit-image at that σ)."""
    from skimage.metrics import structural_similarity

    from stablesal.metrics import ssim, ssim_sigma

    assert ssim_sigma(25, 25) == 1.5 and ssim_sigma(32, 40) == 1.5 and ssim_sigma(224, 224) == pytest.approx(10.5)
    assert ssim_sigma(64, 96) == pytest.approx(3.0)
    rng = np.random.default_rng(7)
    a, b = rng.random((1, 64, 64)), rng.random((1, 64, 64))
    _, full = structural_similarity(a[0], b[0], gaussian_weights=True, sigma=3.0, use_sample_covariance=False,
                                    data_range=1.0, full=True)
    assert float(ssim(torch.from_numpy(a), torch.from_numpy(b))[0]) == pytest.approx(float(full.mean()))
    _, small = structural_similarity(a[0, :32, :32], b[0, :32, :32], gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=1.0, full=True)
    assert float(ssim(torch.from_numpy(a[:, :32, :32]), torch.from_numpy(b[:, :32, :32]))[0]) == pytest.approx(
        float(small.mean()))
