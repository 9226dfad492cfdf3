"""One fill vocabulary: each fill against an independent computation, and every caller (pipeline
replacements, metric substrates, suppression, path baselines, the classical fills of the
inpainting comparison) fills removed pixels with exactly the fill of :mod:`stablesal.core.fills`."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from stablesal.core.fills import FILLS, blur_sigma, canonical, describe, fill_images
from stablesal.explain.gradient.methods import resolve_baseline
from stablesal.explain.gradient.sampling import Suppression
from stablesal.explain.inpainting import ConstantFill
from stablesal.explain.perturbation.replacement import make_replacement
from stablesal.metrics import deletion_insertion, output_drops, removal_curves

IMAGES = torch.rand(2, 3, 13, 11, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


SEGMENTS = (torch.arange(13 * 11).view(13, 11) % 5).expand(2, -1, -1).contiguous()


NAMES = [name for name in FILLS if not FILLS.info(name, "needs_segments", False)]


def test_image_mean_median_and_segment_mean_by_numpy():
    pixels = IMAGES.numpy()
    mean = fill_images("mean", IMAGES).numpy()
    np.testing.assert_allclose(mean, np.broadcast_to(pixels.mean(axis=(2, 3), keepdims=True), pixels.shape))
    # torch's median of an even count is the lower middle value; 143 pixels: the middle one
    median = fill_images("image-median", IMAGES).numpy()
    np.testing.assert_allclose(median[:, :, 0, 0], np.median(pixels.reshape(2, 3, -1), axis=2))
    by_segment = fill_images("segment-mean", IMAGES, SEGMENTS).numpy()
    labels = SEGMENTS[0].numpy()
    for label in range(5):
        inside = labels == label
        np.testing.assert_allclose(by_segment[:, :, inside], np.broadcast_to(
            pixels[:, :, inside].mean(axis=2, keepdims=True), pixels[:, :, inside].shape))
    with pytest.raises(ValueError, match="needs segments"):
        fill_images("segment-mean", IMAGES)


def test_blur_matches_scipy_and_has_one_default_sigma():
    assert blur_sigma(224, 224) == 5.0 and blur_sigma(32, 40) == pytest.approx(5 * 32 / 224)
    assert blur_sigma(16, 16) == 0.5  # floor
    for sigma in (None, 1.5):
        used = blur_sigma(13, 11) if sigma is None else sigma
        expected = ndimage.gaussian_filter(IMAGES.numpy(), sigma=(0, 0, used, used), mode="mirror",
                                           truncate=max(1, int(3 * used)) / used)
        np.testing.assert_allclose(fill_images("blur", IMAGES, sigma=sigma).numpy(), expected, atol=1e-12)


def test_constants_imagenet_and_noise():
    assert torch.equal(fill_images(0.25, IMAGES), torch.full_like(IMAGES, 0.25))
    assert torch.equal(fill_images("black", IMAGES), torch.zeros_like(IMAGES))
    colour = fill_images((0.1, 0.2, 0.3), IMAGES)
    assert torch.allclose(colour[1, :, 4, 4], torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64))
    imagenet = fill_images("imagenet", IMAGES)
    assert torch.allclose(imagenet[0, :, 0, 0], torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64))
    first = fill_images("noise", IMAGES, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, fill_images("noise", IMAGES, generator=torch.Generator().manual_seed(3)))
    assert not torch.equal(first, fill_images("noise", IMAGES, generator=torch.Generator().manual_seed(4)))
    assert 0 <= float(first.min()) and float(first.max()) <= 1
    black = make_replacement("black").reference(IMAGES[0], None, None)  # aliases work in every caller
    assert torch.equal(black, torch.zeros_like(IMAGES[0])) and str(make_replacement("black")) == "constant(0)"


def test_bad_fills_are_named():
    with pytest.raises(ValueError, match="substrate: unknown fill 'blurr'; did you mean 'blur'"):
        canonical("blurr", "substrate")
    with pytest.raises(ValueError, match="fill must be a number"):
        canonical(True)
    with pytest.raises(ValueError, match="fill must be a number"):
        canonical(["a"])
    with pytest.raises(ValueError, match="3 values for images of 1 channels"):
        fill_images((0.1, 0.2, 0.3), IMAGES[:, :1])
    assert describe(0) == "constant(0)" and describe("mean") == "image-mean" and describe([0.5, 1]) == "constant(0.5,1)"


class Recorder(nn.Module):
    """Records every input and predicts a constant, so a fill can be read back from the model's view."""

    def __init__(self):
        super().__init__()
        self.seen = []
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.bias.expand(x.shape[0], -1) + 0 * x.flatten(1)[:, :3]


@pytest.mark.parametrize("name", NAMES + [0.3])
def test_every_caller_fills_with_the_vocabulary(name):
    images = IMAGES.float()
    generator = torch.Generator().manual_seed(0)
    expected = fill_images(name, images, generator=generator)
    target, maps = torch.zeros(2, dtype=torch.long), torch.rand(2, 1, 13, 11, generator=torch.Generator().manual_seed(5))
    # deletion with one step: the last curve point is the image with every pixel removed
    model = Recorder().eval()
    deletion_insertion(model, images, maps, target, steps=1, substrate=name, batch_size=4)
    assert torch.allclose(model.seen[-1].view(2, 2, 3, 13, 11)[:, 1], expected, atol=1e-6)  # [image, step]
    model = Recorder().eval()
    removal_curves(model, images, maps, target, steps=2, fill=name)
    assert torch.allclose(model.seen[-1].view(2, 2, 3, 13, 11)[:, -1], expected, atol=1e-6)
    model = Recorder().eval()
    output_drops(model, images, target, torch.ones(1, 13, 11, dtype=torch.bool), substrate=name)
    assert torch.allclose(model.seen[-1], expected, atol=1e-6)  # one subset that removes everything, both images
    if name != "blur":  # the path baseline's blur keeps its own σ (1/8 of the side)
        assert torch.allclose(resolve_baseline(images, name), expected, atol=1e-6)
    if not isinstance(name, str) or name != "noise":  # the pipeline draws noise from each image's own stream
        replacement = make_replacement(name)
        reference = replacement.reference(images[0], SEGMENTS[0], torch.Generator().manual_seed(0))
        assert torch.allclose(reference, expected[0], atol=1e-6)
    # suppression that keeps nothing shows the fill (fixed keep rate 0)
    sampler = Suppression(2, mode="fixed", keep_rate=0.0, fill=name)
    drawn, _ = sampler.draw(images[0], 0, 2, torch.Generator().manual_seed(0))
    if not (isinstance(name, str) and name == "noise"):
        assert torch.allclose(drawn, expected[0].expand(2, -1, -1, -1), atol=1e-6)


def test_blurred_path_baseline_and_classical_fills_use_the_vocabulary():
    images = IMAGES.float()
    assert torch.allclose(resolve_baseline(images, "blur"), fill_images("blur", images, sigma=11 / 8), atol=1e-6)
    holes = torch.ones(2, 1, 13, 11, dtype=torch.bool)
    assert torch.allclose(ConstantFill("blur", sigma=2.0).fill(images, holes, None),
                          fill_images("blur", images, sigma=2.0))
    assert torch.allclose(ConstantFill("mean").fill(images, holes, None), fill_images("mean", images))
    assert torch.equal(ConstantFill("zero").fill(images, holes, None), torch.zeros_like(images))
    colour = ConstantFill("colour", colour=torch.tensor([0.1, 0.2, 0.3])).fill(images, holes, None)
    assert torch.allclose(colour, fill_images((0.1, 0.2, 0.3), images))


def test_a_fill_registered_in_one_file_reaches_every_caller():
    """Adding a fill is one registration in stablesal.core.fills (here a temporary one): the pipeline's
    replacements, the metric substrates, suppression and the path baselines all accept its name."""
    from stablesal.pipeline.config import load_config

    @FILLS.register("half-mean-for-test")
    def half_mean(images, segments, generator, sigma):
        return 0.5 * images.mean(dim=(2, 3), keepdim=True).expand_as(images)

    try:
        images = IMAGES.float()
        expected = 0.5 * images.mean(dim=(2, 3), keepdim=True).expand_as(images)
        assert torch.allclose(make_replacement("half-mean-for-test").reference(images[0], None, None), expected[0])
        assert str(make_replacement("half-mean-for-test")) == "half-mean-for-test"
        assert torch.allclose(resolve_baseline(images, "half-mean-for-test"), expected)
        drawn, _ = Suppression(1, mode="fixed", keep_rate=0.0, fill="half-mean-for-test").draw(images[0], 0, 1, None)
        assert torch.allclose(drawn[0], expected[0])
        model = Recorder().eval()
        deletion_insertion(model, images, torch.rand(2, 1, 13, 11), torch.zeros(2, dtype=torch.long), steps=1,
                           substrate="half-mean-for-test", batch_size=4)
        assert torch.allclose(model.seen[-1].view(2, 2, 3, 13, 11)[:, 1], expected, atol=1e-6)
        load_config(overrides={"factors": {"replacement": "half-mean-for-test"}})  # the config knows it too
    finally:
        FILLS.unregister("half-mean-for-test")
    with pytest.raises(ValueError, match="unknown fill"):
        make_replacement("half-mean-for-test")
