"""Stages 1-2 of a perturbation pipeline: what a "feature" is, and how its mask is smoothed.

A feature set of one image is a stack of weight maps ``w`` ``[S, H, W]`` plus hard labels
``[H, W]`` (the segment each pixel belongs to, used for per-segment maps and segment-mean fills).
A perturbation mask keeps feature ``s`` with weight ``z_s``:

* partitions (hard segments, their Gaussian-smoothed versions, RISE's bilinear grid) satisfy
  Σ_s w_s = 1 at every pixel, so the mask is ``m = Σ_s z_s w_s`` (SEG-SMOOTH, docs/methods.md §4,
  ``m_n = Σ_s z_ns w_s / Σ_s w_s``);
* overlapping windows (sliding patches, as in Captum's ``Occlusion``) are binary, and a pixel is
  removed when any removed window covers it: ``m = 1[(1 − z)ᵀ w = 0]``.

RISE's random shift (Petsiuk et al., BMVC 2018) draws the masks on a canvas one grid cell larger
than the image and crops it at a random offset per sample; the canvas is kept in ``canvas`` and
cropped by the pipeline.
"""

from __future__ import annotations

import abc
import functools
import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from skimage.transform import resize

from ...core.imaging import gaussian_blur
from ..segmentation import Grid, Segmenter, make_segmenter


@dataclass
class Features:
    """Features of one image. ``weights`` ``[S, H, W]`` (float), ``labels`` ``[H, W]`` (long),
    ``overlapping`` (binary windows combined by 'any removed'), and for RISE's random shift a
    ``canvas`` ``[S, H', W']`` (H' ≥ H + cell) and ``shift``, the number of offsets per side
    drawn for each sample (0: no shift, the centred crop in ``weights`` is used)."""

    weights: torch.Tensor
    labels: torch.Tensor
    overlapping: bool = False
    canvas: torch.Tensor | None = None
    cell: int = 0
    shift: int = 0
    hard: bool = False   # weights are the one-hot masks of labels (masks are then a gather, not a product)

    @property
    def count(self) -> int:
        return int(self.weights.shape[0])


def one_hot(labels: torch.Tensor) -> torch.Tensor:
    """Hard segment masks ``[S, H, W]`` (float) from labels ``[H, W]`` with ids 0..S-1."""
    count = int(labels.max()) + 1
    return F.one_hot(labels, count).permute(2, 0, 1).float()


# --------------------------------------------------------------------------------------
# Segmenters of the pipeline: each turns one image [C, H, W] into Features
# --------------------------------------------------------------------------------------

class FeatureSegmenter(abc.ABC):
    """A segmenter stage; ``str()`` is its canonical id."""

    name = "features"

    @abc.abstractmethod
    def __call__(self, image: torch.Tensor) -> Features:
        """The features of one image ``[C, H, W]``."""

    def __str__(self) -> str:
        return self.name


class Segments(FeatureSegmenter):
    """Hard segments from any :class:`stablesal.segmentation.Segmenter` (super-pixels or a grid)."""

    def __init__(self, segmenter: Segmenter | str = "fastslic", n_segments: int = 49, **options):
        self.segmenter = make_segmenter(segmenter, n_segments=n_segments, **options) if isinstance(
            segmenter, str) else segmenter
        if not isinstance(self.segmenter, Segmenter):
            raise TypeError(f"segmenter must be a Segmenter or a name, got {type(segmenter).__name__}")

    def __str__(self) -> str:
        return str(self.segmenter)

    def __call__(self, image):
        labels = self.segmenter(image.unsqueeze(0))[0]
        return Features(one_hot(labels).to(image.dtype), labels, hard=True)


EDGES = ("reflect", "clamp")


@functools.lru_cache(maxsize=16)
def _reflected_tents(rows: int, cols: int, size: tuple[int, int]) -> np.ndarray:
    """Each cell's indicator upsampled as RISE's code does it: ``[rows·cols, *size]``."""
    grids = np.eye(rows * cols).reshape(rows * cols, rows, cols)
    return np.stack([resize(g, size, order=1, mode="reflect", anti_aliasing=False) for g in grids])


class BilinearGrid(FeatureSegmenter):
    """RISE's masks: a ``rows × cols`` grid whose cells are upsampled bilinearly to tents.

    The canvas has ``(rows + 1) × cell`` pixels per side (``cell = ceil(H / rows)``), exactly as in
    RISE; without a random shift the centred crop is used. Bilinear interpolation weights sum to
    one, so the tents form a partition of unity. ``edge="reflect"`` (default) upsamples as the RISE
    authors' code does (scikit-image ``resize``, order 1, reflected borders); ``"clamp"`` uses
    PyTorch's bilinear interpolation, which repeats the edge cells (maps differ by up to a few per
    cent near the border).
    """

    def __init__(self, rows: int = 7, cols: int | None = None, edge: str = "reflect"):
        self.rows, self.cols = int(rows), int(cols or rows)
        if self.rows * self.cols < 2:
            raise ValueError(f"a grid needs at least 2 cells, got {self.rows}x{self.cols}")
        if edge not in EDGES:
            raise ValueError(f"edge must be one of {EDGES}, got {edge!r}")
        self.edge = edge

    def __str__(self) -> str:
        return f"grid-bilinear({self.rows}x{self.cols})" + ("" if self.edge == "reflect" else f",edge={self.edge}")

    def _canvas(self, size: tuple[int, int], dtype, device) -> torch.Tensor:
        count = self.rows * self.cols
        cells = torch.eye(count, dtype=dtype, device=device).view(count, 1, self.rows, self.cols)
        if self.edge == "clamp":
            return F.interpolate(cells, size=size, mode="bilinear", align_corners=False)[:, 0]
        return torch.from_numpy(_reflected_tents(self.rows, self.cols, tuple(size))).to(device, dtype)

    def __call__(self, image):
        height, width = image.shape[-2:]
        cell_h, cell_w = math.ceil(height / self.rows), math.ceil(width / self.cols)
        canvas = self._canvas(((self.rows + 1) * cell_h, (self.cols + 1) * cell_w), image.dtype, image.device)
        top, left = cell_h // 2, cell_w // 2
        weights = canvas[:, top:top + height, left:left + width]
        labels = weights.argmax(0)
        return Features(weights.contiguous(), labels, canvas=canvas.contiguous(), cell=min(cell_h, cell_w))


class SlidingPatches(FeatureSegmenter):
    """Square windows of ``size`` pixels every ``stride`` pixels (Zeiler & Fergus occlusion; the
    SP method of GEN-REMOVE). Positions follow Captum's ``Occlusion``: ``ceil((H − size) /
    stride) + 1`` per side, the last ones clipped at the border."""

    def __init__(self, size: int | None = 8, stride: int | None = 4, scale_from: tuple[int, int] | None = None):
        """``size`` / ``stride`` None: ``scale_from`` = (size, stride) at 224 px, scaled to the image side."""
        if (size is None or stride is None) and scale_from is None:
            raise ValueError("give size and stride, or scale_from=(size, stride) at 224 px")
        if (size is not None and size < 1) or (stride is not None and stride < 1):
            raise ValueError(f"size and stride must be positive, got size={size}, stride={stride}")
        self.size, self.stride, self.scale_from = size, stride, scale_from

    def __str__(self) -> str:
        if self.size is None or self.stride is None:
            return f"patches(size={self.scale_from[0]}/224,stride={self.scale_from[1]}/224)"
        return f"patches(size={self.size},stride={self.stride})"

    def resolve(self, side: int) -> tuple[int, int]:
        size = self.size or max(2, round(self.scale_from[0] * side / 224))
        stride = self.stride or max(1, round(self.scale_from[1] * side / 224))
        return size, stride

    def __call__(self, image):
        height, width = image.shape[-2:]
        size, stride = self.resolve(min(height, width))
        if size > min(height, width):
            raise ValueError(f"patch size {size} exceeds the image side {min(height, width)}")
        rows = [i * stride for i in range(math.ceil((height - size) / stride) + 1)]
        cols = [j * stride for j in range(math.ceil((width - size) / stride) + 1)]
        weights = torch.zeros(len(rows) * len(cols), height, width, dtype=image.dtype, device=image.device)
        for index, (top, left) in enumerate((r, c) for r in rows for c in cols):
            weights[index, top:top + size, left:left + size] = 1
        if len(weights) < 2:
            raise ValueError(f"{self} gives a single window on a {height}x{width} image")
        return Features(weights, weights.argmax(0), overlapping=True)


def make_feature_segmenter(name: str, n_segments: int = 49, **options) -> FeatureSegmenter:
    """``grid``, ``grid-bilinear``, ``patches`` or any segmenter name of :mod:`stablesal.segmentation`."""
    if name == "grid-bilinear":
        rows = options.pop("rows", None) or max(2, int(round(math.sqrt(n_segments))))
        return BilinearGrid(rows, options.pop("cols", None))
    if name == "patches":
        return SlidingPatches(**options)
    if name == "grid":
        rows = max(1, int(round(math.sqrt(n_segments))))
        return Segments(Grid(rows=rows, cols=options.get("cols") or rows))
    return Segments(name, n_segments=n_segments, **options)


# --------------------------------------------------------------------------------------
# Mask smoothing
# --------------------------------------------------------------------------------------

class Smoothing:
    """A mask-smoothing stage: ``Features → Features``."""

    name = "none"

    def __call__(self, features: Features) -> Features:
        return features

    def __str__(self) -> str:
        return self.name


class NoSmoothing(Smoothing):
    """Hard masks (or the segmenter's own weights)."""


class GaussianSmoothing(Smoothing):
    """Blur every segment mask with a Gaussian of ``sigma`` pixels (reflect padding keeps the
    partition of unity). ``sigma="auto"`` is SEG-SMOOTH's 70/√M pixels at 224 px (10 px for
    M = 49), scaled to the image side."""

    def __init__(self, sigma: float | str = "auto"):
        if sigma != "auto" and (not isinstance(sigma, (int, float)) or sigma <= 0):
            raise ValueError(f"sigma must be a positive number of pixels or 'auto', got {sigma!r}")
        self.sigma = sigma

    def __str__(self) -> str:
        return f"gaussian(sigma={self.sigma})"

    def resolve(self, count: int, side: int) -> float:
        if self.sigma == "auto":
            return 70.0 / math.sqrt(count) * side / 224.0
        return float(self.sigma)

    def __call__(self, features):
        if features.overlapping:
            raise ValueError("Gaussian smoothing needs a partition into segments, not overlapping patches")
        sigma = self.resolve(features.count, features.weights.shape[-1])
        weights = gaussian_blur(features.weights.unsqueeze(1), sigma)[:, 0]
        weights = weights / weights.sum(0, keepdim=True).clamp(min=1e-12)
        return Features(weights, features.labels)


class RandomShift(Smoothing):
    """RISE's random shift: every sample crops the bilinear canvas at its own offset in
    ``[0, cell)²``. Needs the ``grid-bilinear`` segmenter."""

    name = "shift"

    def __call__(self, features):
        if features.canvas is None:
            raise ValueError("the random shift needs the 'grid-bilinear' segmenter (RISE masks); "
                             "use Gaussian smoothing for other segmentations")
        return replace(features, shift=features.cell)


SMOOTHINGS = ("none", "gaussian", "shift")


def make_smoothing(name: str | Smoothing | None, sigma: float | str = "auto") -> Smoothing:
    if isinstance(name, Smoothing):
        return name
    if name in (None, "none"):
        return NoSmoothing()
    if name == "gaussian":
        return GaussianSmoothing(sigma)
    if name == "shift":
        return RandomShift()
    raise ValueError(f"unknown smoothing {name!r}; expected 'none', 'gaussian' or 'shift'")
