"""Stage 5 of a perturbation pipeline: what replaces the removed part of the image.

The perturbed sample is the alpha blend ``repl + m ⊙ (x − repl)`` of the image ``x`` ``[C, H, W]``
and a replacement ``repl`` under the keep mask ``m`` ``[n, 1, H, W]`` (docs/methods.md §4, step 5).
Most replacements are one image per explained image (:meth:`Replacement.reference`); those that
depend on the sample (other images, inpainting) set ``per_sample`` and fill each sample from its
own mask. Pixel values are in [0, 1] (models normalise inside).
"""

from __future__ import annotations

import abc
import functools
from typing import Callable, Sequence

import torch

from ...core.fills import ALIASES, FILLS, IMAGENET_MEAN, canonical, describe, fill_images, is_random
from ...core.registry import Registry

REPLACEMENTS = Registry("fill")  # entries are registered next to their definitions



class Replacement(abc.ABC):
    name = "replacement"
    per_sample = False
    random = False  # True when the fill is drawn from the seed's generator

    @abc.abstractmethod
    def reference(self, image: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The replacement image ``[C, H, W]`` for ``image``."""

    def draw(self, n_samples: int, generator: torch.Generator):
        """Per-sample random choices (drawn once per image, before chunking), or None."""
        return None

    def fill(self, image, masks, reference, choices) -> torch.Tensor:
        """Per-sample replacements ``[n, C, H, W]`` for keep masks ``[n, 1, H, W]``."""
        return reference

    def __str__(self) -> str:
        return self.name


class StaticFill(Replacement):
    """One fill image per explained image: any fill of the vocabulary (:data:`stablesal.fills.FILLS`,
    e.g. ``StaticFill("image-median")``); its id in result tables is the fill's name."""

    sigma: float | None = None

    def __init__(self, fill_spec="image-mean"):
        self.fill_spec = canonical(fill_spec)

    @property
    def random(self) -> bool:
        return is_random(self.fill_spec)

    def __str__(self):
        return describe(self.fill_spec)

    def reference(self, image, labels, generator):
        segments = None if labels is None else labels.unsqueeze(0)
        return fill_images(self.fill_spec, image.unsqueeze(0), segments, generator, self.sigma)[0]


@REPLACEMENTS.register("constant")
class Constant(StaticFill):
    """A constant colour: a number, a per-channel sequence, or ``"imagenet"`` (the ImageNet mean)."""

    def __init__(self, value: float | Sequence[float] | str = 0.0):
        if isinstance(value, str) and value != "imagenet":
            raise ValueError(f"constant fill must be a number, a colour or 'imagenet', got {value!r}")
        self.value = value
        super().__init__(canonical(value, "constant fill"))

    def __str__(self):
        return "constant(imagenet)" if self.value == "imagenet" else describe(self.fill_spec)


# the image's mean colour (SEG-SMOOTH's metric fill; GEN-REMOVE's SP and LIME fills) and each segment's
# mean colour (LIME's default ``hide_color=None``); every other vocabulary fill by name
ImageMean = functools.partial(StaticFill, "image-mean")
SegmentMean = functools.partial(StaticFill, "segment-mean")


@REPLACEMENTS.register("blur")
class Blur(StaticFill):
    """A Gaussian blur of the image; σ (px) defaults to :func:`stablesal.fills.blur_sigma` (5 px at
    224 px, scaled with the image side), the one blur default of every fill. A method with a
    published blur of its own gives it as ``sigma`` (px) or ``relative`` (σ / the shorter side).
    """

    def __init__(self, sigma: float | None = None, relative: float | None = None):
        for name, value in (("sigma", sigma), ("relative", relative)):
            if value is not None and not value > 0:
                raise ValueError(f"blur {name} must be positive, got {value}")
        if sigma is not None and relative is not None:
            raise ValueError("give the blur's sigma (px) or its relative size, not both")
        super().__init__("blur")
        self.sigma = None if sigma is None else float(sigma)
        self.relative = None if relative is None else float(relative)

    def __str__(self):
        if self.relative is not None:
            return f"blur(sigma={self.relative:g}*side)"
        return "blur(sigma=5*side/224)" if self.sigma is None else f"blur(sigma={self.sigma:g})"

    def reference(self, image, labels, generator):
        sigma = self.sigma if self.relative is None else self.relative * min(image.shape[-2:])
        return fill_images("blur", image.unsqueeze(0), sigma=sigma)[0]


class OtherImages(Replacement):
    """Every sample is filled from an image drawn at random from ``bank`` ``[K, C, H, W]``."""

    per_sample = True
    random = True

    def __init__(self, bank: torch.Tensor):
        if not isinstance(bank, torch.Tensor) or bank.dim() != 4 or bank.shape[0] < 1:
            raise ValueError("bank must be a tensor of images [K, C, H, W] with K >= 1")
        self.bank = bank

    def __str__(self):
        return f"other-images(k={self.bank.shape[0]})"

    def reference(self, image, labels, generator):
        if self.bank.shape[1:] != image.shape:
            raise ValueError(f"bank images have shape {tuple(self.bank.shape[1:])}, expected {tuple(image.shape)}")
        return self.bank.mean(0).to(image.device, image.dtype)

    def draw(self, n_samples, generator):
        return torch.randint(0, self.bank.shape[0], (n_samples,), generator=generator)

    def fill(self, image, masks, reference, choices):
        return self.bank[choices.to(self.bank.device)].to(image.device, image.dtype)


class Inpaint(Replacement):
    """Fill each sample's removed region with an inpainter ``(images [n,C,H,W], holes [n,1,H,W]
    bool) → images`` (see :mod:`stablesal.inpainting`); soft masks are binarised at 0.5 for the
    hole and the blend keeps the soft edge."""

    per_sample = True

    def __init__(self, inpainter: Callable):
        if not callable(inpainter):
            raise TypeError("inpainter must be callable (images, holes) -> images")
        self.inpainter = inpainter

    def __str__(self):
        return f"inpaint({getattr(self.inpainter, 'name', type(self.inpainter).__name__)})"

    def reference(self, image, labels, generator):
        return image.mean(dim=(1, 2), keepdim=True).expand_as(image)

    def fill(self, image, masks, reference, choices):
        holes = masks < 0.5
        with torch.inference_mode():
            filled = self.inpainter(image.unsqueeze(0).expand(masks.shape[0], -1, -1, -1), holes)
        return filled.to(image.dtype)


def make_replacement(name, **options) -> Replacement:
    if isinstance(name, Replacement):
        return name
    if isinstance(name, (int, float, list, tuple)) and not isinstance(name, bool):
        return Constant(name if isinstance(name, (int, float)) else tuple(name))
    if name == "imagenet":
        return Constant("imagenet")
    if isinstance(name, str) and name in ALIASES:  # "mean" → "image-mean", "black" → 0
        name = ALIASES[name]
        if not isinstance(name, str):
            return Constant(name)
    if isinstance(name, str) and name not in REPLACEMENTS and name in FILLS and not options:
        return StaticFill(name)  # any fill of stablesal.fills: one file adds a fill
    if not isinstance(name, str) or name not in REPLACEMENTS:
        raise ValueError(f"unknown fill {name!r}; expected a number, 'imagenet', one of "
                         f"{sorted(set(REPLACEMENTS) | set(FILLS))}, or an OtherImages / Inpaint object")
    return REPLACEMENTS[name](**options)

