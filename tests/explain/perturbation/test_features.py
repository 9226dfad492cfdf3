"""Tests of :mod:`stablesal.explain.perturbation.features`.

Properties of the perturbation pipeline (docs/methods.md §4) on small analytic models."""

import torch

from stablesal.explain.perturbation.features import GaussianSmoothing, Segments
from stablesal.explain.segmentation import Grid


def test_gaussian_smoothing_keeps_a_partition_of_unity():
    image = torch.rand(3, 20, 20)
    features = GaussianSmoothing(2.0)(Segments(Grid(rows=3, cols=3))(image))
    assert torch.allclose(features.weights.sum(0), torch.ones(20, 20), atol=1e-5)
    assert features.weights.min() >= 0
