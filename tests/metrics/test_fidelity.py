"""Tests of :mod:`stablesal.metrics.fidelity`."""

import numpy as np
import pytest
import torch
from torch import nn

from stablesal.explain.inpainting import ConstantFill
from stablesal.metrics import (
    deletion_insertion, inpaint_metric, iou_top, mu_fidelity, output_drops, pointing_game, randomised_copy,
    relevance_mass, saliency_metric, srg,
)

from tests.helpers.basic_models import Quadrant, nonlinear_model


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


class RegionDetector(nn.Module):
    """Class 0's logit is the brightness of the top-left quadrant."""

    def forward(self, x):
        score = 20 * (x[:, :, :4, :4].mean((1, 2, 3)) - 0.5)
        return torch.stack([score, -score], 1)


def test_srg_rewards_the_true_region_and_is_antisymmetric():
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.3
    images[:, :, :4, :4] = 0.9
    truth = torch.zeros(3, 1, 8, 8)
    truth[:, :, :4, :4] = 1
    truth += 1e-3 * torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))  # distinct values: no ties
    target = torch.zeros(3, dtype=torch.long)
    good = srg(RegionDetector(), images, truth, target)
    reverse = srg(RegionDetector(), images, -truth, target)
    random = srg(RegionDetector(), images, torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(2)), target)
    assert (good["srg"] > 0.3).all() and (good["srg"] > random["srg"]).all()
    assert torch.allclose(reverse["srg"], -good["srg"], atol=1e-6)
    assert torch.allclose(good["lif"], reverse["mif"], atol=1e-6)


# ------------------------------ known answers: each formula against an independent computation
# Known-answer tests: each formula against an independent computation (SciPy, scikit-learn,
# autograd written out, or a value derived by hand), so that a wrong constant or operator fails.


@pytest.fixture
def images():
    return torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))


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


def test_three_dimensional_maps_are_read_as_one_channel():
    """Maps [B, H, W] and [B, 1, H, W] give the same grey map and µFidelity."""
    from stablesal.metrics import grey_maps

    generator = torch.Generator().manual_seed(12)
    maps = torch.randn(2, 5, 7, generator=generator)
    assert torch.allclose(grey_maps(maps), grey_maps(maps.unsqueeze(1)))
    subsets = torch.rand(15, 5, 7, generator=generator) < 0.3
    drops = torch.randn(2, 15, generator=generator)
    assert torch.allclose(mu_fidelity(maps, subsets, drops), mu_fidelity(maps.unsqueeze(1), subsets, drops))


def test_random_cell_subsets_remove_whole_cells():
    from stablesal.metrics import random_cell_subsets

    subsets = random_cell_subsets(18, 18, n_subsets=30, grid=9, fraction=0.2, seed=3)
    assert subsets.shape == (30, 18, 18)
    blocks = subsets.view(30, 9, 2, 9, 2)
    assert torch.equal(blocks, blocks[:, :, :1, :, :1].expand_as(blocks))  # constant on each 2×2 cell
    assert (blocks[:, :, 0, :, 0].flatten(1).sum(1) == 16).all()          # round(0.2 · 81) cells each
    assert random_cell_subsets(18, 18, fraction=0.001, seed=3).view(200, -1).sum(1).unique().tolist() == [4]
    assert torch.equal(random_cell_subsets(9, 9), random_cell_subsets(9, 9, n_subsets=200, grid=9, seed=0))


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


def test_deletion_with_an_inpainter_substrate_and_localisation_metrics():
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.2
    images[:, :, :8, :8] += 0.7
    truth = torch.zeros(2, 16, 16)
    truth[:, :8, :8] = 1
    good = truth.unsqueeze(1) + 1e-3 * torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    target = torch.zeros(2, dtype=torch.long)
    _, auc_good = deletion_insertion(Quadrant().eval(), images, good, target, steps=8, substrate=ConstantFill("mean"))
    _, auc_bad = deletion_insertion(Quadrant().eval(), images, 2 - good, target, steps=8, substrate=ConstantFill("mean"))
    assert (auc_good < auc_bad).all()
    assert torch.allclose(iou_top(good, truth), torch.ones(2))
    assert torch.allclose(pointing_game(good, truth), torch.ones(2))
    assert (relevance_mass(good, truth) > 0.99).all()
    better = saliency_metric(Quadrant().eval(), images, good, target)
    worse = saliency_metric(Quadrant().eval(), images, torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(3)),
                            target)
    assert (better < worse).all()


def test_inpaint_metric_prefers_the_true_region_to_a_random_map():
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.2
    images[:, :, :8, :8] += 0.7
    target = torch.zeros(2, dtype=torch.long)

    def true_map(x, t):
        out = torch.zeros(x.shape[0], 1, 16, 16)
        out[:, :, :8, :8] = 1
        return out + 1e-3 * torch.rand(out.shape, generator=torch.Generator().manual_seed(1))

    def random_map(x, t):
        return torch.rand(x.shape[0], 1, 16, 16, generator=torch.Generator().manual_seed(5))

    fill = ConstantFill("zero")
    good = inpaint_metric(Quadrant().eval(), true_map, images, target, fill, class_conditional=False)["area"]
    bad = inpaint_metric(Quadrant().eval(), random_map, images, target, fill, class_conditional=False)["area"]
    assert (good <= bad).all() and (good < bad).any()


# ------------------------------ tests the mutation run asked for (marked mutation)
# Tests written against the survivors of `make mutation` (see mutation/*.md): each checks
# a known answer or a property computed independently of the code under test (a value derived by
# hand, NumPy or SciPy), so that a changed constant, operator or argument fails. Every test is fast.


@pytest.mark.mutation
def test_rows_per_call_measures_in_the_images_dtype_and_checks_its_argument():
    """``batch_size="auto"`` measures the model on inputs of the images' dtype (a float64 model
    fails on float32 inputs); a bool or a non-integer is not a batch size."""
    from stablesal.metrics import deletion_insertion

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 5 * 3, 3)).double().eval()
    images = torch.rand(2, 2, 5, 3, dtype=torch.float64)
    maps = torch.rand(2, 5, 3, dtype=torch.float64)
    target = torch.tensor([0, 2])
    auto, _ = deletion_insertion(model, images, maps, target, steps=3, batch_size="auto")
    fixed, _ = deletion_insertion(model, images, maps, target, steps=3, batch_size=1)
    assert torch.allclose(auto, fixed)
    for bad in (True, 2.5, 0, "many"):
        with pytest.raises(ValueError, match="batch_size must be a positive int or 'auto'"):
            deletion_insertion(model, images, maps, target, steps=3, batch_size=bad)


@pytest.mark.mutation
def test_randomised_copy_resets_only_modules_that_own_parameters():
    """A module with parameters but no ``reset_parameters`` is copied as it is (not an error);
    a container's own ``reset_parameters`` is not called (it owns no parameter)."""
    from stablesal.metrics import randomised_copy

    class Scale(nn.Module):  # owns a parameter, has no reset_parameters
        def __init__(self):
            super().__init__()
            self.factor = nn.Parameter(torch.tensor(3.0))

        def forward(self, x):
            return x * self.factor

    class Block(nn.Module):  # owns no parameter; its children do
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 4)
            self.resets = 0

        def reset_parameters(self):
            self.resets += 1

        def forward(self, x):
            return self.linear(x)

    model = nn.Sequential(Block(), Scale())
    copy = randomised_copy(model, seed=1)
    assert copy[1].factor.item() == 3.0
    assert copy[0].resets == 0
    assert not torch.equal(copy[0].linear.weight, model[0].linear.weight)


@pytest.mark.mutation
def test_normalise_curve_by_hand():
    """(p_t − p_T)/(p_0 − p_T): a decreasing and an increasing curve both run from 1 to 0; a
    flat curve (p_0 = p_T) is 0 everywhere, not a division by zero."""
    from stablesal.metrics.fidelity import _normalise_curve

    curves = torch.tensor([[0.9, 0.5, 0.1], [0.2, 0.5, 0.8], [0.4, 0.7, 0.4]])
    expected = torch.tensor([[1.0, 0.5, 0.0], [1.0, 0.5, 0.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(_normalise_curve(curves), expected)


@pytest.mark.mutation
def test_srg_defaults_by_hand():
    """SRG with its defaults (10 deletion points, the image's mean colour as fill, curves not
    normalised), recomputed with NumPy: a nonlinear model, distinct map values."""
    from stablesal.metrics import srg

    generator = torch.Generator().manual_seed(4)
    images = torch.rand(2, 3, 4, 5, generator=generator)
    maps = torch.rand(2, 1, 4, 5, generator=generator)
    weights = torch.randn(3, 60, generator=generator)
    model = nn.Sequential(nn.Flatten(), nn.Tanh(), nn.Linear(60, 3, bias=False)).eval()
    model[2].weight.data = weights
    target = torch.tensor([0, 2])
    scores = srg(model, images, maps, target)

    def curve(image, map_, label, most_first, steps=10, fill=None):
        pixels = image.numpy().reshape(3, -1)
        order = np.argsort(-map_.numpy().ravel() if most_first else map_.numpy().ravel(), kind="stable")
        mean = pixels.mean(1, keepdims=True) if fill is None else np.full((3, 1), fill, np.float32)
        values = []
        for fraction in np.linspace(0, 1, steps):
            current = pixels.copy()
            current[:, order[:int(round(fraction * 20))]] = mean
            logits = weights.double().numpy() @ np.tanh(current.ravel())
            values.append(np.exp(logits[label]) / np.exp(logits).sum())
        return np.mean(values)

    for i in range(2):
        lif = curve(images[i], maps[i], int(target[i]), False)
        mif = curve(images[i], maps[i], int(target[i]), True)
        assert float(scores["lif"][i]) == pytest.approx(lif, abs=1e-5)
        assert float(scores["mif"][i]) == pytest.approx(mif, abs=1e-5)
        assert float(scores["srg"][i]) == pytest.approx(lif - mif, abs=1e-5)
    # other steps and a constant fill reach both curves
    other = srg(model, images, maps, target, steps=4, fill=0.5)
    for i in range(2):
        lif = curve(images[i], maps[i], int(target[i]), False, steps=4, fill=0.5)
        mif = curve(images[i], maps[i], int(target[i]), True, steps=4, fill=0.5)
        assert float(other["lif"][i]) == pytest.approx(lif, abs=1e-5)
        assert float(other["mif"][i]) == pytest.approx(mif, abs=1e-5)


@pytest.mark.mutation
def test_removal_engine_keeps_to_its_rows_per_call():
    """Every (image, mask) pair is evaluated once, never more than ``rows`` pairs per model call."""
    from stablesal.metrics import removed_probabilities

    sizes = []

    class Counting(torch.nn.Module):
        def forward(self, x):
            sizes.append(len(x))
            return torch.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3))], 1)

    images = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    fill = torch.zeros_like(images)
    masks = torch.rand(7, 1, 4, 4, generator=torch.Generator().manual_seed(1)) < 0.5

    def removed(block, chosen):
        return masks[chosen].unsqueeze(0).expand(images[block].shape[0], -1, -1, -1, -1)

    for rows in (1, 3, 5, 12, 40):
        sizes.clear()
        out = removed_probabilities(Counting(), images, fill, torch.zeros(5, dtype=torch.long), 7, removed, rows)
        assert max(sizes) <= rows and sum(sizes) == 5 * 7, (rows, sizes)
        expected = torch.softmax(torch.stack([torch.where(masks[m], 0.0, images).mean((1, 2, 3)) for m in range(7)],
                                             1).unsqueeze(-1) * torch.tensor([1.0, -1.0]), -1)[..., 0]
        assert torch.allclose(out, expected, atol=1e-6)


@pytest.mark.mutation
def test_inpainted_deletion_and_insertion_curves_by_hand():
    """Deletion/insertion with an inpainter as substrate, recomputed with NumPy: at each of the
    ``steps + 1`` equal fractions the removed (deletion) or not-yet-inserted (insertion) pixels are
    holes ``[B, 1, H, W]`` that the inpainter fills; with no hole the image itself is scored, with
    every pixel a hole each image's own mean colour (the inpainter is not called); the area is the
    trapezoid rule on fractions in [0, 1]. A nonlinear model, a non-square image (H·W = 12, so
    every count f·H·W is an integer) and every chunking of the model calls."""
    generator = torch.Generator().manual_seed(7)
    images = torch.rand(2, 3, 3, 4, generator=generator)
    maps = torch.rand(2, 1, 3, 4, generator=generator)  # distinct values: one order of removal
    weights = torch.randn(3, 36, generator=generator)
    model = nn.Sequential(nn.Flatten(), nn.Tanh(), nn.Linear(36, 3, bias=False)).eval()
    model[2].weight.data = weights
    target = torch.tensor([2, 0])
    steps, fill_value = 4, 0.9
    holes_seen = []

    def inpainter(x, holes):  # a plain callable: fills the holes with a constant grey
        holes_seen.append((tuple(holes.shape), int(holes.sum())))
        return torch.where(holes, torch.full_like(x, fill_value), x)

    def expected_curve(i, mode):
        pixels = images[i].double().numpy().reshape(3, 12)
        order = np.argsort(-maps[i].double().numpy().ravel(), kind="stable")
        values = []
        for count in (0, 3, 6, 9, 12):  # the fractions 0, 1/4, ..., 1 of 12 pixels
            first = np.zeros(12, bool)
            first[order[:count]] = True
            holes = first if mode == "deletion" else ~first
            if holes.all():
                current = np.repeat(pixels.mean(1, keepdims=True), 12, 1)
            else:
                current = np.where(holes[None], fill_value, pixels)
            logits = weights.double().numpy() @ np.tanh(current.ravel())
            values.append(np.exp(logits[int(target[i])]) / np.exp(logits).sum())
        return np.array(values)

    for mode in ("deletion", "insertion"):
        expected = np.stack([expected_curve(i, mode) for i in range(2)])
        area = ((expected[:, 1:] + expected[:, :-1]) / 2).sum(1) / steps
        for batch_size in (1, 2, 5):
            holes_seen.clear()
            curves, auc = deletion_insertion(model, images, maps, target, steps=steps, mode=mode,
                                             substrate=inpainter, batch_size=batch_size)
            assert curves.shape == (2, steps + 1) and auc.shape == (2,)
            assert np.allclose(curves.double().numpy(), expected, atol=1e-5), (mode, batch_size)
            assert np.allclose(auc.double().numpy(), area, atol=1e-5), (mode, batch_size)
            # the inpainter sees only partial masks, as [B, 1, H, W] with the whole batch at once
            removed = (1, 2, 3) if mode == "deletion" else (3, 2, 1)  # quarters of each image
            assert holes_seen == [((2, 1, 3, 4), 2 * 3 * k) for k in removed], (mode, batch_size)


def _region_pixels(region):
    """The (row, column) pairs of a boolean ``[1, 1, H, W]`` region, in raster order."""
    assert region.dtype == torch.bool and region.shape[:2] == (1, 1)
    return [tuple(p) for p in region[0, 0].nonzero().tolist()]


@pytest.mark.mutation
def test_top_region_on_a_zero_mean_map_is_the_top_raw_pixels():
    """With ``factor`` 4 a 4 × 8 map is pooled to 1 × 2 cells (and an 8 × 4 map to 2 × 1): here both
    cells average exactly 0, so the smoothed map is flat and the raw map alone (the 1e-9 tie-break)
    orders the pixels: the top pixel is the raw maximum 6, the next the first of the 1s in raster
    order. A fraction rounding to 0 pixels still takes 1. Maps ``[B, H, W]`` and ``[B, C, H, W]``
    (channels summed) give the same region."""
    from stablesal.metrics.fidelity import _top_region

    wide = torch.zeros(4, 8)
    wide[:2, :4] = 1.0  # left cell: eight 1s, one 6 and seven -2s: sum 0
    wide[2:, :4] = -2.0
    wide[3, 1] = 6.0  # right cell: all 0
    for grid, first, second in ((wide, (3, 1), (0, 0)), (wide.T.contiguous(), (1, 3), (0, 0))):
        for fraction, expected in ((0.01, [first]), (1 / 32, [first]), (2 / 32, sorted([first, second]))):
            channels = torch.stack([2 * grid, -grid])[None]  # [1, 2, H, W], summing to the map
            for maps in (grid[None, None], grid[None], channels):
                region = _top_region(maps, fraction, 4)
                assert region.shape == (1, 1, *grid.shape)
                assert _region_pixels(region) == expected, (tuple(grid.shape), fraction, maps.dim())


@pytest.mark.mutation
def test_top_region_smooths_by_area_pooling_and_half_pixel_bilinear_upsampling():
    """A 6 × 2 map whose rows are 1, 1, 2, 2, 0.5, 0.5, with ``factor`` 2: pooled to the 3 × 1 cell
    means (1, 2, 0.5), then upsampled bilinearly with half-pixel centres (``align_corners=False``:
    output row i samples input row 0.5·i − 0.25, clamped) to the rows 1, 1.25, 1.75, 1.625, 0.875,
    0.5. The top 8 of the 12 pixels are rows 0–3. (Sampling corner to corner would give rows
    1, 1.4, 1.8, 1.7, 1.1, 0.5, whose top 4 rows are 1–4.)"""
    from stablesal.metrics.fidelity import _top_region

    maps = torch.tensor([1.0, 1.0, 2.0, 2.0, 0.5, 0.5]).view(1, 1, 6, 1).expand(1, 1, 6, 2).contiguous()
    region = _top_region(maps, 2 / 3, 2)
    assert _region_pixels(region) == [(r, c) for r in range(4) for c in range(2)]


@pytest.mark.mutation
def test_top_region_ranks_by_the_smoothed_map_not_the_raw_one():
    """A single bright pixel (10) is diluted by the 2 × 2 pooling (cell mean 2.5) and loses to a
    uniformly warm cell (3 everywhere): the top pixel is the corner of the warm cell, where the
    upsampled map is exactly 3, although the raw maximum is elsewhere; the raw map only breaks ties."""
    from stablesal.metrics.fidelity import _top_region

    maps = torch.zeros(1, 1, 4, 4)
    maps[0, 0, 0, 0] = 10.0
    maps[0, 0, 2:, 2:] = 3.0
    assert _region_pixels(_top_region(maps, 1 / 16, 2)) == [(3, 3)]
    # the next is (0, 0): the clamped corner of the bright cell, 2.5 > 2.25 at (2, 3) and (3, 2)
    assert _region_pixels(_top_region(maps, 2 / 16, 2)) == [(0, 0), (3, 3)]


@pytest.mark.mutation
def test_top_region_breaks_ties_by_position():
    """On a flat map every pixel ties; the region is the first pixels in raster order (a stable
    sort). PyTorch's default CPU sort keeps equal keys in index order only in rows of up to 16
    entries, hence the 25- and 36-pixel maps."""
    from stablesal.metrics.fidelity import _top_region

    maps = torch.ones(1, 1, 5, 5)
    for factor in (1, 5):
        assert _region_pixels(_top_region(maps, 0.4, factor)) == [(r, c) for r in range(2) for c in range(5)]
    maps = torch.zeros(1, 3, 6, 6)  # 36 ties
    assert _region_pixels(_top_region(maps, 0.5, 2)) == [(r, c) for r in range(3) for c in range(6)]


@pytest.mark.mutation
def test_removal_curves_remove_tied_pixels_in_index_order():
    """SRG's curves promise ties broken by position (a flat map removes pixels row by row). On a
    6×6 map of zeros (36 ties: PyTorch's CPU sort returns ties in index order only for rows of up to
    16 entries without ``stable=True``) the first sixth removed is exactly the first row, which the
    model reads: its probability falls from sigmoid(5) to sigmoid(−5) at the first step."""
    from stablesal.metrics.fidelity import removal_curves

    class FirstRow(torch.nn.Module):
        def forward(self, x):
            score = 10 * x[:, 0, 0, :].mean(1) - 5
            return torch.stack([score, torch.zeros_like(score)], 1)

    images = torch.ones(2, 3, 6, 6)
    curves = removal_curves(FirstRow().eval(), images, torch.zeros(2, 1, 6, 6), torch.zeros(2, dtype=torch.long),
                            steps=7, fill=0.0)
    high, low = torch.sigmoid(torch.tensor(5.0)).item(), torch.sigmoid(torch.tensor(-5.0)).item()
    assert curves[:, 0].tolist() == pytest.approx([high, high])
    assert curves[:, 1].tolist() == pytest.approx([low, low])  # row 0 (pixels 0-5) went first
