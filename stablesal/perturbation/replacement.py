"""Stage 5 of a perturbation pipeline: what replaces the removed part of the image.

The perturbed sample is the alpha blend ``repl + m ⊙ (x − repl)`` of the image ``x`` ``[C, H, W]``
and a replacement ``repl`` under the keep mask ``m`` ``[n, 1, H, W]`` (docs/methods.md §4, step 5).
Most replacements are one image per explained image (:meth:`Replacement.reference`); those that
depend on the sample (other images, inpainting) set ``per_sample`` and fill each sample from its
own mask. Pixel values are in [0, 1] (models normalise inside).
"""

from __future__ import annotations

import abc
from typing import Callable, Sequence

import torch

from ..registry import Registry
from ..imaging import gaussian_blur

REPLACEMENTS = Registry("fill")  # entries are registered next to their definitions

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # = 0 after ImageNet normalisation: RISE's effective fill


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


@REPLACEMENTS.register("constant")
class Constant(Replacement):
    """A constant colour: a number, a per-channel sequence, or ``"imagenet"`` (the ImageNet mean)."""

    def __init__(self, value: float | Sequence[float] | str = 0.0):
        if isinstance(value, str) and value != "imagenet":
            raise ValueError(f"constant fill must be a number, a colour or 'imagenet', got {value!r}")
        self.value = value

    def __str__(self):
        value = self.value if isinstance(self.value, str) else (
            f"{self.value:g}" if isinstance(self.value, (int, float)) else ",".join(f"{v:g}" for v in self.value))
        return f"constant({value})"

    def reference(self, image, labels, generator):
        value = IMAGENET_MEAN if self.value == "imagenet" else self.value
        colour = torch.as_tensor(value, dtype=image.dtype, device=image.device).reshape(-1, 1, 1)
        if self.value == "imagenet" and image.shape[0] != 3:
            colour = colour.mean(0, keepdim=True)  # grey images: the ImageNet mean's grey level
        if colour.shape[0] not in (1, image.shape[0]):
            raise ValueError(f"constant colour has {colour.shape[0]} values for an image of {image.shape[0]} channels")
        return colour.expand_as(image)


@REPLACEMENTS.register("image-mean")
class ImageMean(Replacement):
    """The image's mean colour (SEG-SMOOTH's metric fill; GEN-REMOVE's SP and LIME fills)."""

    name = "image-mean"

    def reference(self, image, labels, generator):
        return image.mean(dim=(1, 2), keepdim=True).expand_as(image)


@REPLACEMENTS.register("image-median")
class ImageMedian(Replacement):
    name = "image-median"

    def reference(self, image, labels, generator):
        return image.flatten(1).median(dim=1).values.view(-1, 1, 1).expand_as(image)


@REPLACEMENTS.register("blur")
class Blur(Replacement):
    """A Gaussian blur of the image (σ in pixels; Meaningful Perturbation's filler, radius 10 at
    224 px)."""

    def __init__(self, sigma: float = 5.0):
        if sigma <= 0:
            raise ValueError(f"blur sigma must be positive, got {sigma}")
        self.sigma = float(sigma)

    def __str__(self):
        return f"blur(sigma={self.sigma:g})"

    def reference(self, image, labels, generator):
        return gaussian_blur(image.unsqueeze(0), self.sigma)[0]


@REPLACEMENTS.register("noise")
class Noise(Replacement):
    """Uniform noise in [0, 1], one draw per explained image (seeded)."""

    name = "noise"
    random = True

    def reference(self, image, labels, generator):
        return torch.rand(image.shape, generator=generator, dtype=image.dtype).to(image.device)


@REPLACEMENTS.register("segment-mean")
class SegmentMean(Replacement):
    """Each segment filled with its own mean colour (LIME's default ``hide_color=None``)."""

    name = "segment-mean"

    def reference(self, image, labels, generator):
        count = int(labels.max()) + 1
        flat = labels.reshape(-1)
        sums = torch.zeros(image.shape[0], count, dtype=image.dtype, device=image.device).index_add_(
            1, flat, image.reshape(image.shape[0], -1))
        sizes = torch.bincount(flat, minlength=count).clamp(min=1).to(image.dtype)
        return (sums / sizes)[:, flat].view_as(image)


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
    if isinstance(name, (int, float)):
        return Constant(name)
    if name == "imagenet":
        return Constant("imagenet")
    if not isinstance(name, str) or name not in REPLACEMENTS:
        raise ValueError(f"unknown fill {name!r}; expected a number, 'imagenet', one of "
                         f"{sorted(REPLACEMENTS)}, or an OtherImages / Inpaint object")
    return REPLACEMENTS[name](**options)
