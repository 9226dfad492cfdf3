"""One fill vocabulary: what replaces removed pixels, wherever stablesal removes them.

The perturbation pipeline's replacements, the deletion/insertion, SRG and µFidelity substrates,
the suppression sampler, the path methods' baselines and the classical fills of the inpainting
comparison all take the same fill specifications (docs/methods.md §4, step 5):

* a number, or one number per channel: a constant colour (``0`` is black);
* ``"imagenet"``: the ImageNet mean pixel (0 after ImageNet normalisation; RISE's fill);
* ``"image-mean"`` (alias ``"mean"``): each image's mean colour;
* ``"image-median"``: each image's per-channel median;
* ``"blur"``: a Gaussian blur of the image, σ = :func:`blur_sigma` unless given (5 px at 224 px,
  Petsiuk et al.'s insertion substrate, scaled with the image side);
* ``"noise"``: uniform noise in [0, 1] from the caller's generator;
* ``"segment-mean"``: each segment's mean colour (LIME's ``hide_color=None``; needs segments).

Fills that need the removed pixels themselves (an inpainter, other images) are objects of
:mod:`stablesal.perturbation.replacement`; this module holds the ones that are one image per
image, computed here once for every caller.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .imaging import gaussian_blur
from .registry import Registry, unknown_name_error

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # = 0 after ImageNet normalisation: RISE's effective fill
BLUR_SIGMA_AT_224 = 5.0  # px; Petsiuk, Das & Saenko (2018)'s insertion blur

# name → fn(images [B, C, H, W], segments [B, H, W] | None, generator, sigma) → [B, C, H, W]
FILLS = Registry("fill")
ALIASES = {"mean": "image-mean", "black": 0.0}


def blur_sigma(height: int, width: int) -> float:
    """The one default blur σ (px): 5 px at 224 px, proportional to the shorter side, at least 0.5
    (0.71 px at 32 px)."""
    return max(0.5, BLUR_SIGMA_AT_224 * min(height, width) / 224)


@FILLS.register("imagenet")
def _imagenet(images, segments, generator, sigma):
    colour = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device)
    if images.shape[1] != 3:
        colour = colour.mean().reshape(1)  # grey images: the ImageNet mean's grey level
    return _constant(images, colour)


@FILLS.register("image-mean")
def _image_mean(images, segments, generator, sigma):
    return images.mean(dim=(2, 3), keepdim=True).expand_as(images)


@FILLS.register("image-median")
def _image_median(images, segments, generator, sigma):
    return images.flatten(2).median(dim=2).values[:, :, None, None].expand_as(images)


@FILLS.register("blur")
def _blur(images, segments, generator, sigma):
    return gaussian_blur(images, blur_sigma(*images.shape[-2:]) if sigma is None else sigma)


@FILLS.register("noise", random=True)
def _noise(images, segments, generator, sigma):
    return torch.rand(images.shape, generator=generator, dtype=images.dtype).to(images.device)


@FILLS.register("segment-mean", needs_segments=True)
def _segment_mean(images, segments, generator, sigma):
    if segments is None:
        raise ValueError("the 'segment-mean' fill needs segments")
    out = torch.empty_like(images)
    for index, (image, labels) in enumerate(zip(images, segments)):
        flat = labels.reshape(-1).to(image.device)
        count = int(flat.max()) + 1
        sums = torch.zeros(image.shape[0], count, dtype=image.dtype, device=image.device).index_add_(
            1, flat, image.reshape(image.shape[0], -1))
        sizes = torch.bincount(flat, minlength=count).clamp(min=1).to(image.dtype)
        out[index] = (sums / sizes)[:, flat].view_as(image)
    return out


def _constant(images: torch.Tensor, value) -> torch.Tensor:
    colour = torch.as_tensor(value, dtype=images.dtype, device=images.device).reshape(-1)
    if colour.numel() not in (1, images.shape[1]):
        raise ValueError(f"a constant fill has {colour.numel()} values for images of {images.shape[1]} channels")
    return colour.view(1, -1, 1, 1).expand_as(images)


def canonical(fill, where: str = "fill"):
    """The fill specification with aliases resolved: a float, a tuple of floats, or a registered
    name. An unknown name or a malformed value is a ``ValueError`` naming ``where``."""
    if isinstance(fill, str):
        fill = ALIASES.get(fill, fill)
    if isinstance(fill, bool):
        raise ValueError(f"{where} must be a number, a colour or a fill name, got {fill!r}")
    if isinstance(fill, (int, float)):
        return float(fill)
    if isinstance(fill, str):
        if fill not in FILLS:
            raise unknown_name_error(where, fill, [*FILLS, *ALIASES, "<a number>"], "fill")
        return fill
    if isinstance(fill, Sequence) and fill and all(isinstance(v, (int, float)) for v in fill):
        return tuple(float(v) for v in fill)
    raise ValueError(f"{where} must be a number, a colour (one number per channel) or one of "
                     f"{sorted([*FILLS, *ALIASES])}, got {fill!r}")


def describe(fill) -> str:
    """The id of a fill in result tables: ``constant(0)``, ``constant(0.1,0.2,0.3)``, ``image-mean``, ..."""
    fill = canonical(fill)
    if isinstance(fill, float):
        return f"constant({fill:g})"
    if isinstance(fill, tuple):
        return "constant(" + ",".join(f"{v:g}" for v in fill) + ")"
    return fill


def fill_images(fill, images: torch.Tensor, segments: torch.Tensor | None = None,
                generator: torch.Generator | None = None, sigma: float | None = None) -> torch.Tensor:
    """The fill of each image ``[B, C, H, W]`` for ``images`` ``[B, C, H, W]`` (pixels in [0, 1]).

    ``segments`` ``[B, H, W]`` is needed by ``"segment-mean"``; ``generator`` draws ``"noise"``;
    ``sigma`` (px) overrides the blur's default σ."""
    fill = canonical(fill)
    if isinstance(fill, (float, tuple)):
        return _constant(images, fill)
    return FILLS[fill](images, segments, generator, sigma)


def is_random(fill) -> bool:
    """Whether the fill draws from a generator."""
    fill = canonical(fill)
    return isinstance(fill, str) and bool(FILLS.info(fill, "random", False))
