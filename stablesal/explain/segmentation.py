"""Partitions of images into segments (super-pixels or square grids), batched and cached.

A segmenter maps images ``[B, C, H, W]`` in ``[0, 1]`` to integer labels ``[B, H, W]`` with
consecutive ids ``0..m_b-1`` per image. Segments are computed on the un-normalised image.
Default parameters follow the scikit-image gallery for 224-pixel images, scaled to the
image's area (docs/methods.md §2); on 32×32 images they give about 30-100 segments.
"""

from __future__ import annotations

import abc
import hashlib
import math
import warnings
from collections import OrderedDict

import numpy as np
import torch
from skimage.segmentation import slic
from skimage.segmentation import felzenszwalb
from skimage.segmentation import quickshift
from skimage.color import rgb2gray
from skimage.filters import sobel
from skimage.segmentation import watershed

from ..core.registry import Registry
from ..core.checks import check_images

SEGMENTERS = Registry("segmenter")  # entries are registered next to their definitions


def relabel(labels: np.ndarray) -> np.ndarray:
    """Consecutive ids 0..m-1 in order of first appearance (row-major)."""
    _, first, inverse = np.unique(labels.ravel(), return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # rank of each unique id by first appearance
    return order[inverse].reshape(labels.shape).astype(np.int64)


def _to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    array = image.detach().cpu().float().clamp(0, 1).numpy().transpose(1, 2, 0)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray((array[..., :3] * 255 + 0.5).astype(np.uint8))


class Segmenter(abc.ABC):
    """Base class: subclasses implement :meth:`segment_one` on one uint8 ``[H, W, 3]`` image."""

    cache_size = 4096

    def __init__(self) -> None:
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()

    def __str__(self) -> str:  # canonical configuration string: the id in result tables
        params = ",".join(f"{k}={v}" for k, v in sorted(self.params().items()))
        return f"{self.name}({params})"

    name = "segmenter"

    def params(self) -> dict:
        return {}

    @abc.abstractmethod
    def segment_one(self, image: np.ndarray) -> np.ndarray:
        """Integer labels ``[H, W]`` for one uint8 ``[H, W, 3]`` image."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Segment a batch: ``[B, C, H, W]`` in [0, 1] → LongTensor ``[B, H, W]`` on the images' device."""
        check_images(images, "images")
        out = []
        for index, image in enumerate(images):
            pixels = _to_uint8_hwc(image)
            key = hashlib.blake2b(pixels.tobytes() + str(pixels.shape).encode() + str(self).encode(),
                                  digest_size=16).digest()
            labels = self._cache.get(key)
            if labels is None:
                labels = relabel(self.segment_one(pixels))
                if labels.max() < 1:
                    raise ValueError(
                        f"{self} produced a single segment for image {index}; grouping over one segment "
                        f"would erase the map. Use more segments or another segmenter."
                    )
                self._cache[key] = labels
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(key)
            out.append(torch.from_numpy(labels))
        return torch.stack(out).to(images.device)


@SEGMENTERS.register("fastslic")
class FastSLIC(Segmenter):
    """SLIC super-pixels with fast-slic (Achanta et al., 2012; Kim's fast-slic implementation).

    ``num_threads`` defaults to 1: fast-slic's own default (all cores) crashed with a
    segmentation fault on 32×32 images on a 16-core machine, and threads give nothing at the
    image sizes stablesal segments one by one."""

    name = "fastslic"

    def __init__(self, n_segments: int = 64, compactness: float = 10.0, num_threads: int = 1):
        super().__init__()
        self.n_segments, self.compactness, self.num_threads = int(n_segments), float(compactness), int(num_threads)

    def params(self):
        return {"n": self.n_segments, "compactness": self.compactness}

    def segment_one(self, image):
        from fast_slic import Slic

        return Slic(num_components=self.n_segments, compactness=self.compactness,
                    num_threads=self.num_threads).iterate(image)


@SEGMENTERS.register("slic")
class SkimageSLIC(Segmenter):
    """SLIC from scikit-image (Achanta et al., 2012)."""

    name = "slic"

    def __init__(self, n_segments: int = 64, compactness: float = 10.0, sigma: float = 1.0):
        super().__init__()
        self.n_segments, self.compactness, self.sigma = int(n_segments), float(compactness), float(sigma)

    def params(self):
        return {"n": self.n_segments, "compactness": self.compactness, "sigma": self.sigma}

    def segment_one(self, image):
        return slic(image, n_segments=self.n_segments, compactness=self.compactness, sigma=self.sigma,
                    start_label=0, channel_axis=2)


@SEGMENTERS.register("felzenszwalb")
class Felzenszwalb(Segmenter):
    """Graph-based segmentation (Felzenszwalb & Huttenlocher, 2004). ``min_size`` defaults to
    half the mean segment area for ``n_segments`` segments, so the count tracks image size."""

    name = "felzenszwalb"

    def __init__(self, scale: float = 100.0, sigma: float = 0.5, min_size: int | None = None, n_segments: int = 64):
        super().__init__()
        self.scale, self.sigma, self.min_size, self.n_segments = float(scale), float(sigma), min_size, int(n_segments)

    def params(self):
        return {"scale": self.scale, "sigma": self.sigma, "min_size": self.min_size, "n": self.n_segments}

    def segment_one(self, image):
        area = image.shape[0] * image.shape[1]
        min_size = self.min_size or max(2, area // (2 * self.n_segments))
        scale = self.scale * area / (224 * 224)  # the gallery's scale=100 is for 224-pixel images
        return felzenszwalb(image, scale=max(scale, 1.0), sigma=self.sigma, min_size=min_size)


@SEGMENTERS.register("quickshift", takes_count=False)  # no segment count
class Quickshift(Segmenter):
    """Quick shift mode seeking (Vedaldi & Soatto, 2008).

    Quick shift takes no segment count. ``kernel_size`` and ``max_dist`` are pixel distances given
    for 32-pixel images; on larger images both grow with √(side / 32), side = √(H·W). Measured on
    three scikit-image photographs, that keeps the count near the 32-px one (69–207 at 32 px,
    52–167 at 64 px, 67–116 at 224 px), where unscaled distances give 807–2 123 segments at 224 px."""

    name = "quickshift"

    def __init__(self, kernel_size: float = 1.5, max_dist: float = 4.0, ratio: float = 0.5):
        super().__init__()
        self.kernel_size, self.max_dist, self.ratio = float(kernel_size), float(max_dist), float(ratio)

    def params(self):
        return {"kernel_size": self.kernel_size, "max_dist": self.max_dist, "ratio": self.ratio}

    def segment_one(self, image):
        growth = math.sqrt(max(1.0, math.sqrt(image.shape[0] * image.shape[1]) / 32))
        return quickshift(image, kernel_size=self.kernel_size * growth, max_dist=self.max_dist * growth,
                          ratio=self.ratio)


@SEGMENTERS.register("watershed")
class Watershed(Segmenter):
    """Compact watershed on the Sobel gradient of the grey image (Neubert & Protzel, 2014)."""

    name = "watershed"

    def __init__(self, n_segments: int = 64, compactness: float = 0.001):
        super().__init__()
        self.n_segments, self.compactness = int(n_segments), float(compactness)

    def params(self):
        return {"n": self.n_segments, "compactness": self.compactness}

    def segment_one(self, image):
        return watershed(sobel(rgb2gray(image)), markers=self.n_segments, compactness=self.compactness)


@SEGMENTERS.register("grid")
class Grid(Segmenter):
    """Square grid of ``rows × cols`` cells; ``n_segments`` picks the most square grid with about that many."""

    name = "grid"

    def __init__(self, n_segments: int = 64, rows: int | None = None, cols: int | None = None):
        super().__init__()
        if rows is None or cols is None:
            rows = max(1, int(round(math.sqrt(n_segments))))
            cols = max(1, int(round(n_segments / rows)))
        if rows * cols < 2:
            raise ValueError(f"a grid needs at least 2 cells, got rows={rows}, cols={cols}")
        self.rows, self.cols = int(rows), int(cols)

    def params(self):
        return {"rows": self.rows, "cols": self.cols}

    def segment_one(self, image):
        height, width = image.shape[:2]
        row = np.minimum(np.arange(height) * self.rows // height, self.rows - 1)
        col = np.minimum(np.arange(width) * self.cols // width, self.cols - 1)
        return row[:, None] * self.cols + col[None, :]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, "images")
        labels = torch.from_numpy(self.segment_one(np.zeros(images.shape[2:]))).to(images.device)
        return labels.expand(images.shape[0], -1, -1).contiguous()




def make_segmenter(name: str, n_segments: int = 64, **options) -> Segmenter:
    """A segmenter by name; ``n_segments`` is passed to those that take a target count."""
    cls = SEGMENTERS.lookup(name)
    if not SEGMENTERS.info(name, "takes_count", True):
        return cls(**options)
    return cls(n_segments=n_segments, **options)


def matched_grid(segments: torch.Tensor, tolerance: float = 0.1) -> Grid:
    """The grid control for ``segments`` ``[B, H, W]``: the grid whose cell area H·W/(rows·cols)
    is closest to the super-pixels' mean segment size (the mean over images of H·W / count),
    preferring the squarest cells among the grids within ``tolerance`` (relative) of it.

    Matching the size, not a nominal count, is what makes "super-pixel vs grid" a comparison of
    shape alone: both discard the same amount of resolution."""
    height, width = segments.shape[-2:]
    target = float((height * width / count_segments(segments).double()).mean())
    candidates = []
    for rows in range(1, height + 1):
        for cols in range(1, width + 1):
            if rows * cols < 2:
                continue
            error = abs(height * width / (rows * cols) - target) / target
            squareness = abs(math.log((height / rows) / (width / cols)))
            candidates.append((error > tolerance, squareness if error <= tolerance else error, error, rows, cols))
    _, _, error, rows, cols = min(candidates)
    if error > tolerance:
        warnings.warn(f"no grid matches the mean segment size {target:.1f} px within {tolerance:.0%} "
                      f"(closest: {rows}×{cols}, {error:.0%} off)")
    return Grid(rows=rows, cols=cols)


def count_segments(segments: torch.Tensor) -> torch.Tensor:
    """Number of segments of each image of ``segments`` ``[B, H, W]``."""
    return segments.flatten(1).max(1).values + 1


def check_segments(segments: torch.Tensor, images: torch.Tensor, name: str = "segments") -> torch.Tensor:
    """Check a user-supplied partition against the images it belongs to."""
    if not isinstance(segments, torch.Tensor) or segments.is_floating_point():
        raise TypeError(f"{name} must be an integer tensor [B, H, W] of segment ids")
    expected = (images.shape[0], *images.shape[2:])
    if tuple(segments.shape) != expected:
        raise ValueError(f"{name} has shape {tuple(segments.shape)}, expected {expected} to match the images")
    if (segments < 0).any():
        raise ValueError(f"{name} holds negative ids")
    if (count_segments(segments) < 2).any():
        raise ValueError(f"{name} has an image with a single segment; grouping needs at least two")
    return segments.long()
