"""Segment counts track the requested count, not the image size (issue 16: 224-pixel images)."""

import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage.transform import resize

from stablesal.explain.segmentation import SEGMENTERS, make_segmenter, relabel


def photographs(side: int) -> torch.Tensor:
    """Three of scikit-image's bundled photographs at ``side`` pixels, ``[3, 3, side, side]``."""
    images = [resize(load(), (side, side), anti_aliasing=True) for load in (skdata.astronaut, skdata.chelsea,
                                                                           skdata.coffee)]
    return torch.tensor(np.stack(images), dtype=torch.float32).permute(0, 3, 1, 2).contiguous()


def counts(name: str, images: torch.Tensor) -> list[int]:
    return [len(torch.unique(labels)) for labels in make_segmenter(name, n_segments=64)(images)]


@pytest.mark.parametrize("name", sorted(SEGMENTERS))
def test_counts_at_224_pixels_stay_near_the_32_pixel_counts(name):
    small, large = counts(name, photographs(32)), counts(name, photographs(224))
    # within a factor of 3 of the 32-px count, image by image (quickshift unscaled: 807-2 123 at 224 px)
    for at_32, at_224 in zip(small, large):
        assert at_32 / 3 <= at_224 <= at_32 * 3, (name, small, large)


def test_quickshift_distances_grow_with_the_square_root_of_the_side():
    from skimage.segmentation import quickshift

    def by_hand(image: torch.Tensor, growth: float) -> np.ndarray:
        pixels = (image.permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)  # the segmenter's input
        return relabel(quickshift(pixels, kernel_size=1.5 * growth, max_dist=4.0 * growth, ratio=0.5))

    for side, growth in ((128, 2.0), (32, 1.0)):  # √(128 / 32) = 2; unchanged at 32 px
        image = photographs(side)[:1]
        np.testing.assert_array_equal(make_segmenter("quickshift")(image)[0].numpy(), by_hand(image[0], growth))
