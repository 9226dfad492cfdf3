"""Tests of :mod:`stablesal.explain.perturbation.replacement`.

Inpainters keep known pixels and fill holes plausibly; the evaluation metrics behave on analytic cases."""

import pytest
import torch
from torch import nn

from stablesal.explain.inpainting import OpenCVInpainter
from stablesal.explain.perturbation import Inpaint, Perturbation

from tests.helpers.basic_models import smooth_images


def test_inpainting_plugs_into_the_perturbation_pipeline():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 3)).eval()
    images = smooth_images(2)
    maps = Perturbation(model, segmenter="grid", n_segments=4, sampler="single", calculator="pda",
                        replacement=Inpaint(OpenCVInpainter("telea"))).attribute(images, target=[0, 1])
    assert maps.shape == images.shape and torch.isfinite(maps).all()


def test_imagenet_fill_of_a_grey_image_is_the_imagenet_mean_grey_level():
    from stablesal.explain.perturbation.replacement import IMAGENET_MEAN, Constant

    grey = torch.rand(1, 5, 5)
    fill = Constant("imagenet").reference(grey, None, None)
    assert fill.shape == (1, 5, 5) and torch.allclose(fill, torch.full_like(grey, sum(IMAGENET_MEAN) / 3))
    colour = Constant("imagenet").reference(torch.rand(3, 2, 2), None, None)
    assert torch.allclose(colour[:, 0, 0], torch.tensor(IMAGENET_MEAN))
    with pytest.raises(ValueError, match="a constant fill has 3 values for images of 2 channels"):
        Constant([0.1, 0.2, 0.3]).reference(torch.rand(2, 2, 2), None, None)
