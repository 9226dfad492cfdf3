"""Tests of :mod:`stablesal.explain.perturbation.pipeline`.

Properties of the perturbation pipeline (docs/methods.md §4) on small analytic models."""

import pytest
import torch
import torch.nn.functional as F

from stablesal.core.seeding import image_seeds
from stablesal.explain.perturbation import Perturbation
from stablesal.explain.perturbation.calculators import make_calculator
from stablesal.explain.perturbation.features import FeatureSegmenter, Features
from stablesal.explain.segmentation import Grid

from tests.helpers.basic_models import small_model


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


def test_rise_maps_do_not_depend_on_the_chunk_size():
    """The chunk size is chosen by timing, so it can differ from run to run: the RISE sum is
    accumulated in float64 and the map is the same bits for any chunk (a float32 product per chunk
    moved the maps by ~1e-8 and the report's RISE rows by ~1e-6 between identical runs)."""
    from torch import nn

    from stablesal.explain.perturbation import make_preset

    class DoubleNet(nn.Module):  # its logits do not depend on the batch they are computed in
        def __init__(self):
            super().__init__()
            self.weight = torch.randn(3 * 16 * 16, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

        def forward(self, x):
            return torch.tanh(x.double().flatten(1) @ self.weight).float()

    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    maps = []
    for chunk in (7, 64, 300):
        pipeline = make_preset("rise", DoubleNet().eval(), n_samples=150)
        pipeline.chunk_size = chunk
        maps.append(pipeline.attribute(images, target=[0, 3], seed=5))
    assert torch.equal(maps[0], maps[1]) and torch.equal(maps[1], maps[2])
