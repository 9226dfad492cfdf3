"""Properties of the perturbation pipeline (docs/methods.md §4) on small analytic models."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stablesal.seeding import image_seeds
from stablesal.perturbation import RISE, Occlusion, Perturbation, make_preset
from stablesal.perturbation.calculators import make_calculator
from stablesal.perturbation.presets import PRESETS, budget_options, takes_budget
from stablesal.perturbation.features import FeatureSegmenter, Features, GaussianSmoothing, Segments
from stablesal.perturbation.samplers import ShapSampler
from stablesal.segmentation import Grid


def small_model(channels=3, side=16, classes=4, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(channels, 6, 3, padding=1), nn.Tanh(), nn.Flatten(),
                          nn.Linear(6 * side * side, classes)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


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


def test_rise_pixel_map_equals_rise_formula_with_the_clamped_options():
    """The non-default options: PyTorch's edge-clamping upsampling and division by N·mean(Z)
    (the published variant is tested in test_formulas.py)."""
    from stablesal.perturbation.calculators import RiseScore
    from stablesal.perturbation.features import BilinearGrid

    model, side = small_model(), 16
    x = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(1))
    n, grid, p = 300, 4, 0.5
    ours = RISE(model, n_samples=n, grid=grid, p=p, chunk_size=64, segmenter=BilinearGrid(grid, edge="clamp"),
                calculator=RiseScore(normalise="mean")).attribute(x, target=[1, 2], seed=7)
    cell = math.ceil(side / grid)
    for index, seed in enumerate(image_seeds(x, 7)):
        # RISE's own construction, written out: binary grids → bilinear upsampling → random crop
        generator = torch.Generator().manual_seed(seed)
        z = torch.rand(n, grid * grid, generator=generator) < p
        offsets = torch.randint(0, cell, (n, 2), generator=generator)
        up = F.interpolate(z.float().view(n, 1, grid, grid), size=((grid + 1) * cell,) * 2, mode="bilinear",
                           align_corners=False)
        masks = torch.stack([up[k, 0, dy:dy + side, dx:dx + side] for k, (dy, dx) in enumerate(offsets.tolist())])
        fill = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
        blended = fill + masks.unsqueeze(1) * (x[index] - fill)
        scores = torch.softmax(model(blended), 1)[:, [1, 2][index]]
        expected = (scores.view(-1, 1, 1) * masks).sum(0) / (n * z.float().mean())
        for channel in range(3):
            assert torch.allclose(ours[index, channel], expected, atol=1e-5)


def test_single_feature_rise_lime_pda_rank_alike():
    model = small_model(seed=3)
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    pipeline = Perturbation(model, segmenter="grid", n_segments=16, sampler="single", replacement=0.0,
                            calculator="rise", map="segment")
    maps = pipeline.attribute_all(x, target=[0, 1, 3], calculators=["rise", "lime-ols", "pda"], maps=["segment"])
    labels = Grid(rows=4, cols=4)(x)[0]
    first_pixel = torch.stack([(labels == s).flatten().nonzero()[0, 0] for s in range(16)])
    for index in range(3):
        orders = [maps[(name, "segment")][index, 0].flatten()[first_pixel].argsort() for name in
                  ("rise", "lime-ols", "pda")]
        assert torch.equal(orders[0], orders[1]) and torch.equal(orders[1], orders[2])


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


def test_shap_sampler_enumerates_all_coalitions_when_budget_allows():
    z, weights = ShapSampler().draw(64, 5, torch.Generator().manual_seed(0))
    assert len({tuple(row.tolist()) for row in z[:32]}) == 32  # all 2^5 coalitions, each once
    assert torch.isfinite(weights).all() and (weights > 0).all()


@pytest.mark.parametrize("preset", sorted(PRESETS))   # every registered preset
def test_seeded_runs_are_bit_identical_and_batch_independent(preset):
    model = small_model(seed=4)
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    options = budget_options(preset, 64)
    pipeline = make_preset(preset, model, chunk_size=32, **options)
    first = pipeline.attribute(x, target=[0, 1, 2], seed=11)
    again = pipeline.attribute(x, target=[0, 1, 2], seed=11)
    assert torch.equal(first, again)
    one_by_one = torch.cat([pipeline.attribute(x[i:i + 1], target=[i], seed=11) for i in range(3)])
    assert torch.equal(first, one_by_one)
    other_chunk = make_preset(preset, model, chunk_size=7, **options).attribute(x, target=[0, 1, 2], seed=11)
    assert torch.allclose(first, other_chunk, atol=1e-6)
    assert first.shape == x.shape and torch.isfinite(first).all()
    if pipeline.random:  # the registry's own flag: a random preset's maps move with the seed
        assert not torch.equal(first, pipeline.attribute(x, target=[0, 1, 2], seed=12))


def test_one_budget_name_for_every_preset():
    """Presets that draw samples take ``n_samples`` (RISE's ``n_masks`` is a deprecated alias);
    the single-feature ones take none and their sample count is the feature count."""
    assert {name for name in PRESETS if takes_budget(name)} == {"rise", "lime", "kernel_shap"}  # PDA: one per feature
    model = small_model(seed=4)
    for name in ("rise", "lime", "kernel_shap"):
        assert make_preset(name, model, **budget_options(name, 37)).n_samples == 37
    with pytest.warns(DeprecationWarning, match="n_samples"):
        assert RISE(model, n_masks=21).n_samples == 21


def test_occlusion_matches_captum():
    from captum.attr import Occlusion as CaptumOcclusion

    model = small_model(seed=8)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(9))
    ours = Occlusion(model, size=6, stride=4).attribute(x, target=[1, 3])

    def probability(inputs):
        return torch.softmax(model(inputs), 1)

    theirs = CaptumOcclusion(probability).attribute(x, target=[1, 3], sliding_window_shapes=(3, 6, 6),
                                                    strides=(3, 4, 4), baselines=0.0)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_gaussian_smoothing_keeps_a_partition_of_unity():
    image = torch.rand(3, 20, 20)
    features = GaussianSmoothing(2.0)(Segments(Grid(rows=3, cols=3))(image))
    assert torch.allclose(features.weights.sum(0), torch.ones(20, 20), atol=1e-5)
    assert features.weights.min() >= 0


def test_pixel_map_of_linear_calculators_matches_segment_weights_without_shift():
    """Without the shift, RISE's accumulated pixel map equals Σ_s a_s w_s (the general route)."""
    model = small_model(seed=1)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    pipeline = Perturbation(model, segmenter="grid-bilinear", n_segments=16, smoothing="none", n_samples=200,
                            calculator="rise", map="pixel", chunk_size=64)
    generator = torch.Generator().manual_seed(image_seeds(x, 0)[0])
    features, obs, rise_sum, _ = pipeline.observe(x[0], 0, generator, 64)
    scores = make_calculator("rise")(obs).float()
    general = torch.einsum("s,shw->hw", scores, features.weights)
    assert torch.allclose(pipeline.attribute(x, target=0)[0, 0], general, atol=1e-6)


class WrongSize(FeatureSegmenter):
    def __call__(self, image):
        labels = torch.zeros(8, 8, dtype=torch.long)
        labels[4:] = 1
        return Features(F.one_hot(labels, 2).permute(2, 0, 1).float(), labels)


def test_bad_configurations_give_clear_errors():
    model = small_model()
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="single-feature"):
        Perturbation(model, sampler="random", calculator="ciu")
    with pytest.raises(ValueError, match="n_samples"):
        Perturbation(model, n_samples=0)
    with pytest.raises(ValueError, match="grid-bilinear"):
        Perturbation(model, segmenter="grid", smoothing="shift").attribute(x, target=0)
    with pytest.raises(ValueError, match="masks of size"):
        Perturbation(model, segmenter=WrongSize()).attribute(x, target=0)
    with pytest.raises(ValueError, match="unknown perturbation sampler"):
        Perturbation(model, sampler="everything")
    with pytest.raises(ValueError, match="target out of range"):
        Perturbation(model, n_samples=4).attribute(x, target=9)
    with pytest.raises(ValueError, match="training mode"):
        Perturbation(small_model().train())
    with pytest.raises(ValueError, match="NaN"):
        Perturbation(model, n_samples=4).attribute(torch.full((1, 3, 16, 16), float("nan")), target=0)
    with pytest.raises(ValueError, match="distinct"):
        Perturbation(model, segmenter="grid", n_segments=4, sampler="unique-random", n_samples=100).attribute(
            x, target=0)


def test_imagenet_fill_of_a_grey_image_is_the_imagenet_mean_grey_level():
    from stablesal.perturbation.replacement import IMAGENET_MEAN, Constant

    grey = torch.rand(1, 5, 5)
    fill = Constant("imagenet").reference(grey, None, None)
    assert fill.shape == (1, 5, 5) and torch.allclose(fill, torch.full_like(grey, sum(IMAGENET_MEAN) / 3))
    colour = Constant("imagenet").reference(torch.rand(3, 2, 2), None, None)
    assert torch.allclose(colour[:, 0, 0], torch.tensor(IMAGENET_MEAN))
    with pytest.raises(ValueError, match="a constant fill has 3 values for images of 2 channels"):
        Constant([0.1, 0.2, 0.3]).reference(torch.rand(2, 2, 2), None, None)
