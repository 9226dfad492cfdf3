"""Removal by inpainting (GEN-REMOVE, docs/methods.md §5): one interface ``(images, holes) → images``.

``images`` ``[n, C, H, W]`` in [0, 1], ``holes`` ``[n, 1, H, W]`` bool (True = remove and fill);
pixels outside the holes are returned unchanged. Used by the perturbation pipeline
(:class:`stablesal.perturbation.Inpaint`), the deletion metrics (``substrate=inpainter``) and
meaningful perturbation (MP-G).

* classical, weight-free: OpenCV Telea and Navier–Stokes, scikit-image biharmonic, and ROAD's
  noisy linear imputation;
* :class:`LearnedInpainter`: a small convolutional network that stablesal trains on the user's
  own training images with random free-form, rectangular and segment-shaped holes, optionally
  conditioned on a class label (what INPAINT-METRIC gets from a text prompt);
* :class:`CallableInpainter`: any user function, e.g. a local diffusion inpainting pipeline;
* the classical constant fills (:class:`ConstantFill`: image mean, blur, black, a fixed colour)
  and a control, :class:`SampledBackground` (fresh in-distribution backgrounds).

:func:`stablesal.fill_quality.inpainting_quality` compares them all: PSNR/SSIM in held-out holes
and how often the classifier's prediction survives when the background is filled.
"""

from __future__ import annotations

import abc
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
import warnings
from tqdm.auto import tqdm
from skimage.restoration import inpaint_biharmonic
import scipy.sparse as sparse
from scipy.sparse.linalg import spsolve

from ..core.imaging import gaussian_blur
from ..core.fills import fill_images
from ..core.checks import check_images
from ..core.settings import InpainterConfig
from ..core.storage import CorruptFileError, config_hash, load_torch, save_torch


def check_holes(images: torch.Tensor, holes: torch.Tensor) -> torch.Tensor:
    check_images(images, "images")
    if not isinstance(holes, torch.Tensor):
        raise TypeError("holes must be a bool tensor [n, 1, H, W]")
    if holes.dim() == 3:
        holes = holes.unsqueeze(1)
    expected = (images.shape[0], 1, *images.shape[2:])
    if tuple(holes.shape) != expected:
        raise ValueError(f"holes has shape {tuple(holes.shape)}, expected {expected} to match the images")
    return holes.bool()


class Inpainter(abc.ABC):
    """Base class: subclasses fill ``holes`` of ``images``; the result keeps the known pixels."""

    name = "inpainter"

    def __call__(self, images: torch.Tensor, holes: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        holes = check_holes(images, holes)
        filled = self.fill(images, holes, labels)
        return torch.where(holes, filled.to(images.dtype), images)

    @abc.abstractmethod
    def fill(self, images, holes, labels):
        """The filled images ``[n, C, H, W]`` (only the values inside ``holes`` are used)."""

    def __str__(self) -> str:
        return self.name


def _to_uint8_batch(images: torch.Tensor) -> np.ndarray:
    """``images`` [n, C, H, W] in [0, 1] → uint8 [n, H, W, C], rounded."""
    return np.ascontiguousarray((images.detach().cpu().float().clamp(0, 1).numpy().transpose(0, 2, 3, 1) * 255 + 0.5)
                                .astype(np.uint8))


class OpenCVInpainter(Inpainter):
    """OpenCV's Telea (fast marching, 2004) or Navier–Stokes (Bertalmio et al., 2001) inpainting on
    8-bit images; ``radius`` in pixels."""

    def __init__(self, method: str = "telea", radius: int = 3):
        if method not in ("telea", "ns"):
            raise ValueError(f"method must be 'telea' or 'ns', got {method!r}")
        self.method, self.radius = method, int(radius)
        self.name = f"opencv-{method}"

    def fill(self, images, holes, labels):
        import cv2

        flag = cv2.INPAINT_TELEA if self.method == "telea" else cv2.INPAINT_NS
        # one conversion of the whole batch each way: per-image conversions cost a fifth more at 32 px
        pixels = _to_uint8_batch(images)
        masks = holes[:, 0].cpu().numpy().astype(np.uint8)
        if pixels.shape[3] == 1:
            pixels = pixels[..., 0]
        result = np.stack([cv2.inpaint(p, m, self.radius, flag) for p, m in zip(pixels, masks)])
        result = result.reshape(*result.shape[:3], -1).transpose(0, 3, 1, 2)
        return torch.from_numpy(result.astype(np.float32) / 255.0).to(images)


class BiharmonicInpainter(Inpainter):
    """scikit-image's ``inpaint_biharmonic`` (Damelin & Hoang, 2018)."""

    name = "biharmonic"

    def fill(self, images, holes, labels):
        out = torch.empty_like(images)
        for index in range(images.shape[0]):
            pixels = images[index].detach().cpu().double().numpy().transpose(1, 2, 0)
            mask = holes[index, 0].cpu().numpy()
            result = inpaint_biharmonic(pixels, mask, channel_axis=-1) if mask.any() else pixels
            out[index] = torch.from_numpy(result.transpose(2, 0, 1).copy()).to(images)
        return out


class NoisyLinearImputation(Inpainter):
    """ROAD's noisy linear imputation (Rong et al., ICML 2022): every removed pixel equals the
    weighted mean of its 8 neighbours (weight 1/6 for the 4 direct, 1/12 for the diagonal ones)
    plus Gaussian noise of std ``noise``; one sparse linear solve per image for all channels."""

    name = "road-linear"

    def __init__(self, noise: float = 0.01, seed: int = 0):
        self.noise, self.seed = float(noise), int(seed)

    def fill(self, images, holes, labels):
        out = images.detach().clone()
        height, width = images.shape[-2:]
        neighbours = [(-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
                      (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12)]
        generator = torch.Generator().manual_seed(self.seed)
        for index in range(images.shape[0]):
            mask = holes[index, 0].cpu().numpy()
            unknown = np.flatnonzero(mask.ravel())
            if unknown.size == 0:
                continue
            position = -np.ones(height * width, dtype=np.int64)
            position[unknown] = np.arange(unknown.size)
            pixels = images[index].detach().cpu().double().numpy().reshape(images.shape[1], -1)
            rows, cols, values = [], [], []
            rhs = np.zeros((unknown.size, images.shape[1]))
            ys, xs = np.divmod(unknown, width)
            total = np.zeros(unknown.size)
            for dy, dx, weight in neighbours:
                ny, nx = ys + dy, xs + dx
                inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
                flat = ny[inside] * width + nx[inside]
                total[inside] += weight
                neighbour_unknown = position[flat] >= 0
                rows_inside = np.flatnonzero(inside)
                rows.append(rows_inside[neighbour_unknown])
                cols.append(position[flat[neighbour_unknown]])
                values.append(np.full(neighbour_unknown.sum(), -weight))
                rhs[rows_inside[~neighbour_unknown]] += weight * pixels[:, flat[~neighbour_unknown]].T
            rows.append(np.arange(unknown.size))
            cols.append(np.arange(unknown.size))
            values.append(total)
            matrix = sparse.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                                       shape=(unknown.size, unknown.size))
            solved = spsolve(matrix, rhs).reshape(unknown.size, -1)
            solved = solved + self.noise * torch.randn(solved.shape, generator=generator, dtype=torch.float64).numpy()
            flat_out = out[index].view(images.shape[1], -1)
            flat_out[:, torch.from_numpy(unknown).to(images.device)] = torch.from_numpy(solved.T.copy()).to(images)
        return out.clamp(0, 1)


class ConstantFill(Inpainter):
    """The classical fills behind the same interface: the image's mean colour, a blur (σ px), black,
    or a fixed ``colour`` ``[C]`` (e.g. the training set's mean pixel, the grey that occlusion and
    LIME's ``hide_color`` use after normalisation).

    ``mean`` and ``blur`` are computed from the whole image, removed pixels included, so they carry
    information about what was removed (the mean colour of the background, the blurred object);
    ``zero`` and ``colour`` carry none."""

    def __init__(self, kind: str = "mean", sigma: float | None = None, colour: torch.Tensor | None = None,
                 name: str | None = None):
        if kind not in ("mean", "blur", "zero", "colour"):
            raise ValueError(f"kind must be 'mean', 'blur', 'zero' or 'colour', got {kind!r}")
        if (kind == "colour") != (colour is not None):
            raise ValueError("colour (a [C] tensor) is needed for kind='colour' and only for it")
        self.kind, self.sigma = kind, None if sigma is None else float(sigma)
        self.colour = None if colour is None else torch.as_tensor(colour, dtype=torch.float32).flatten()
        blur = "blur" if sigma is None else f"blur(sigma={sigma:g})"
        default = {"mean": "mean-colour", "blur": blur, "zero": "black", "colour": "colour"}[kind]
        self.name = name or default

    def fill(self, images, holes, labels):
        if self.kind == "colour" and self.colour.numel() != images.shape[1]:
            raise ValueError(f"colour has {self.colour.numel()} channels, images have {images.shape[1]}")
        spec = tuple(self.colour.tolist()) if self.kind == "colour" else {"mean": "image-mean", "zero": 0.0,
                                                                          "blur": "blur"}[self.kind]
        return fill_images(spec, images, sigma=self.sigma)  # the one fill vocabulary (stablesal.fills)


class SampledBackground(Inpainter):
    """Fill the holes of image ``i`` with ``backgrounds[i % len(backgrounds)]`` ``[M, C, H, W]``: fresh
    draws from the data's own background distribution (for the generated dataset,
    :func:`stablesal.data.render_backgrounds`). A control, not an inpainter: it shows how often
    the prediction survives a background that is in-distribution by construction but unrelated
    to the image, the ceiling of what an in-distribution fill can be expected to keep."""

    def __init__(self, backgrounds: torch.Tensor, name: str = "fresh-background"):
        check_images(backgrounds, "backgrounds")
        self.backgrounds, self.name = backgrounds, name

    def fill(self, images, holes, labels):
        if tuple(self.backgrounds.shape[1:]) != tuple(images.shape[1:]):
            raise ValueError(f"backgrounds have shape {tuple(self.backgrounds.shape[1:])} per image, "
                             f"images {tuple(images.shape[1:])}")
        index = torch.arange(images.shape[0]) % self.backgrounds.shape[0]
        return self.backgrounds[index].to(images)


class CallableInpainter(Inpainter):
    """Wrap any ``fn(images, holes) → images`` (or ``fn(images, holes, labels)``), e.g. a local
    diffusion inpainting pipeline."""

    def __init__(self, fn: Callable, name: str = "callable", conditional: bool = False):
        if not callable(fn):
            raise TypeError("fn must be callable (images, holes) -> images")
        self.fn, self.name, self.conditional = fn, name, conditional

    def fill(self, images, holes, labels):
        result = self.fn(images, holes, labels) if self.conditional else self.fn(images, holes)
        if not isinstance(result, torch.Tensor) or result.shape != images.shape:
            raise ValueError(f"inpainter {self.name} returned {getattr(result, 'shape', type(result))}, expected a "
                             f"tensor of shape {tuple(images.shape)}")
        return result


# --------------------------------------------------------------------------------------
# The learned inpainter
# --------------------------------------------------------------------------------------

def boundary_fill(images: torch.Tensor, keep: torch.Tensor, sigmas=(1.0, 2.0, 4.0, 8.0)) -> torch.Tensor:
    """A coarse fill from the hole's boundary only: normalized convolution (Knutsson & Westin,
    1993) of the known pixels that touch a hole, summed over Gaussian scales ``sigmas`` (px, scaled
    by side/32) so that the nearest boundary pixels dominate, like diffusion inpainting whose
    fill depends only on boundary values. Pixels farther from every hole do not leak in: a
    background hole around an object takes the colour of the ring around the object, not of the
    object. ``keep`` ``[n, 1, H, W]`` is 1 on known pixels; known pixels are returned unchanged."""
    scale = images.shape[-1] / 32
    hole = 1 - keep
    ring = F.max_pool2d(hole, 3, stride=1, padding=1) * keep
    numerator, denominator = torch.zeros_like(images), torch.zeros_like(keep)
    for sigma in sigmas:
        numerator = numerator + gaussian_blur(images * ring, max(0.5, sigma * scale))
        denominator = denominator + gaussian_blur(ring, max(0.5, sigma * scale))
    mean = (images * keep).sum((2, 3), keepdim=True) / keep.sum((2, 3), keepdim=True).clamp(min=1)
    fill = torch.where(denominator > 1e-6, numerator / denominator.clamp(min=1e-6), mean)
    return torch.where(keep > 0, images, fill).clamp(0, 1)


class InpaintingNet(nn.Module):
    """Encoder (two stride-2 stages) → global context → dilated residual middle (dilations 2, 4, 8) →
    decoder with skip connections and bilinear upsampling, predicting a correction to the coarse
    :func:`boundary_fill` (so training starts from a sensible fill). Input: the image with holes
    zeroed, the coarse fill, the hole mask and, when conditional, a learned class embedding
    broadcast over the image (index ``num_classes`` = unconditional).

    The global context is the mean of the encoder features over the known pixels, the mean known
    colour and the known share, mapped by a small MLP and added everywhere: when the hole is the
    whole background, the only known pixels are the object's, and the fill of a far corner must
    depend on them (a dilated stack alone reaches them poorly). Bilinear rather than nearest
    upsampling and replicate rather than zero padding remove the 4-pixel grid and the one-pixel
    frame of the object's colour along the image border that large fills otherwise show."""

    def __init__(self, channels: int = 3, width: int = 16, num_classes: int = 0, embedding: int = 8):
        super().__init__()
        self.num_classes = num_classes
        extra = embedding if num_classes else 0
        self.embed = nn.Embedding(num_classes + 1, embedding) if num_classes else None
        act = nn.ELU
        self.enc1 = nn.Sequential(nn.Conv2d(2 * channels + 1 + extra, width, 3, padding=1), act())
        self.enc2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), act(),
                                  nn.Conv2d(2 * width, 2 * width, 3, padding=1), act())
        self.enc3 = nn.Sequential(nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), act())
        self.middle = nn.ModuleList([nn.Sequential(nn.Conv2d(4 * width, 4 * width, 3, padding=d, dilation=d), act())
                                     for d in (2, 4, 8)])
        self.context = nn.Sequential(nn.Linear(4 * width + 2 * channels, 4 * width), act(), nn.Linear(4 * width, 4 * width))
        self.dec2 = nn.Sequential(nn.Conv2d(4 * width + 2 * width, 2 * width, 3, padding=1), act())
        self.dec1 = nn.Sequential(nn.Conv2d(2 * width + width, width, 3, padding=1), act(),
                                  nn.Conv2d(width, channels, 1))
        for layer in self.modules():  # zero padding paints a frame of the object's colour along the border
            if isinstance(layer, nn.Conv2d) and layer.padding != (0, 0):
                layer.padding_mode = "replicate"

    def forward(self, images, holes, labels=None):
        keep = (~holes).to(images.dtype)
        coarse = boundary_fill(images, keep)
        parts = [images * keep, coarse, holes.to(images.dtype)]
        if self.embed is not None:
            if labels is None:
                labels = torch.full((images.shape[0],), self.num_classes, dtype=torch.long, device=images.device)
            parts.append(self.embed(labels)[:, :, None, None].expand(-1, -1, *images.shape[2:]))
        e1 = self.enc1(torch.cat(parts, 1))
        e2 = self.enc2(e1)
        h = self.enc3(e2)
        known = F.adaptive_avg_pool2d(keep, h.shape[2:])
        features = (h * known).sum((2, 3)) / known.sum((2, 3)).clamp(min=1e-3)
        colour = (images * keep).sum((2, 3)) / keep.sum((2, 3)).clamp(min=1)
        share = keep.mean((2, 3)).expand(-1, images.shape[1])
        h = h + self.context(torch.cat([features, colour, share], 1))[:, :, None, None]
        for block in self.middle:
            h = h + block(h)
        h = F.interpolate(h, size=e2.shape[2:], mode="bilinear", align_corners=False)
        h = self.dec2(torch.cat([h, e2], 1))
        h = F.interpolate(h, size=e1.shape[2:], mode="bilinear", align_corners=False)
        return (coarse + self.dec1(torch.cat([h, e1], 1))).clamp(0, 1)


INPAINTER_VERSION = 4  # bump when the network or its training changes: old checkpoints are then retrained
HOLE_KINDS = ("blob", "rectangle", "segments", "background")


def random_holes(count: int, height: int, width: int, generator: torch.Generator,
                 coverage: tuple[float, float] = (0.1, 0.6),
                 kinds: tuple[str, ...] = ("blob", "rectangle", "segments")) -> torch.Tensor:
    """Random holes ``[count, 1, H, W]`` (bool) covering a share of the image drawn uniformly from
    ``coverage``, of ``kinds`` in equal shares (image ``i`` gets ``kinds[i % len(kinds)]``):

    - ``blob``: free-form blobs (smooth noise thresholded at the coverage quantile);
    - ``rectangle``: one rectangle with a random aspect ratio;
    - ``segments``: random Voronoi cells (the shape of super-pixels) removed with the coverage as
      probability;
    - ``background``: everything but one compact region and a one-pixel ring around it, the
      shape of removing the background around an object (and of the last deletion steps).
    """
    unknown = set(kinds) - set(HOLE_KINDS)
    if not kinds or unknown:
        raise ValueError(f"kinds must be a non-empty subset of {HOLE_KINDS}, got {kinds!r}")
    kind = torch.tensor([HOLE_KINDS.index(kinds[i % len(kinds)]) for i in range(count)])
    target = coverage[0] + (coverage[1] - coverage[0]) * torch.rand(count, generator=generator)
    # Every kind's random numbers are drawn, in a fixed order, so the holes of one kind do not
    # depend on which other kinds were asked for; the shapes are only built for the kinds in use.
    noise = torch.rand(count, 1, height, width, generator=generator)
    aspect = torch.exp((torch.rand(count, generator=generator) - 0.5) * 1.2)
    top_draw = torch.rand(count, generator=generator)
    left_draw = torch.rand(count, generator=generator)
    cells = 24
    seeds = torch.rand(count, cells, 2, generator=generator) * torch.tensor([height, width])
    removed = torch.rand(count, cells, generator=generator) < target.unsqueeze(1)
    coarse_noise = torch.rand(count, 1, height, width, generator=generator)
    holes = torch.zeros(count, 1, height, width, dtype=torch.bool)
    for index, name in enumerate(HOLE_KINDS):
        chosen = kind == index
        if not chosen.any():
            continue
        share = target[chosen]
        if name == "blob":  # smooth noise, thresholded at the quantile that gives the target coverage
            smooth = gaussian_blur(noise[chosen], sigma=max(1.0, height / 10))
            thresholds = torch.stack([torch.quantile(m.flatten(), 1 - float(t)) for m, t in zip(smooth, share)])
            holes[chosen] = smooth > thresholds.view(-1, 1, 1, 1)
        elif name == "rectangle":  # the target area with a random aspect ratio
            ys = torch.arange(height).view(1, -1, 1)
            xs = torch.arange(width).view(1, 1, -1)
            rect_h = (torch.sqrt(share * height * width * aspect[chosen])).clamp(1, height).round().long()
            rect_w = (share * height * width / rect_h).clamp(1, width).round().long()
            top = (top_draw[chosen] * (height - rect_h + 1).float()).long()
            left = (left_draw[chosen] * (width - rect_w + 1).float()).long()
            holes[chosen] = ((ys >= top.view(-1, 1, 1)) & (ys < (top + rect_h).view(-1, 1, 1))
                             & (xs >= left.view(-1, 1, 1)) & (xs < (left + rect_w).view(-1, 1, 1))).unsqueeze(1)
        elif name == "segments":  # Voronoi cells of random seed points, each removed with the target probability
            grid = torch.stack(torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij"), -1).float()
            nearest = torch.cdist(grid.view(1, -1, 2).expand(int(chosen.sum()), -1, -1), seeds[chosen]).argmin(2)
            holes[chosen] = removed[chosen].gather(1, nearest).view(-1, 1, height, width)
        else:  # background: keep the highest region of coarse noise grown by one pixel, remove the rest
            smooth = gaussian_blur(coarse_noise[chosen], sigma=max(1.0, height / 6))
            thresholds = torch.stack([torch.quantile(m.flatten(), float(t)) for m, t in zip(smooth, share)])
            kept = F.max_pool2d((smooth > thresholds.view(-1, 1, 1, 1)).float(), 3, stride=1, padding=1) > 0
            holes[chosen] = ~kept
    return holes


def training_holes(count: int, height: int, width: int, generator: torch.Generator,
                   background_share: float) -> torch.Tensor:
    """Holes for one training batch: ``background_share`` of ``background`` holes covering 60-95 %
    of the image, the rest blobs, rectangles and segments covering 10-60 %."""
    backgrounds = int(round(background_share * count))
    parts = []
    if backgrounds < count:
        parts.append(random_holes(count - backgrounds, height, width, generator, coverage=(0.1, 0.6)))
    if backgrounds:
        parts.append(random_holes(backgrounds, height, width, generator, coverage=(0.6, 0.95), kinds=("background",)))
    return torch.cat(parts)


def _with_object_holes(holes: torch.Tensor, masks: torch.Tensor, share: float, flipped: bool) -> torch.Tensor:
    """Replace the first ``share`` of ``holes`` (blobs, rectangles, segments: :func:`training_holes`
    puts its background holes last) by holes made from the object ``masks`` ``[n, H, W]``
    of the same images: alternately the object grown by one pixel (learn to paint background where
    an object was) and everything but the object (learn a plausible background around it)."""
    count = int(round(share * holes.shape[0]))
    if count == 0:
        return holes
    objects = masks[:count].unsqueeze(1)
    if flipped:
        objects = objects.flip(3)
    grown = F.max_pool2d(objects.float(), 3, stride=1, padding=1) > 0
    remove_object = (torch.arange(count) % 2 == 0).view(-1, 1, 1, 1)
    holes = holes.clone()
    holes[:count] = torch.where(remove_object, grown, ~objects)
    return holes


class LearnedInpainter(Inpainter):
    """A trained :class:`InpaintingNet`; ``labels`` (class indices) condition the fill when it is
    conditional, otherwise or when ``labels`` is None it inpaints unconditionally."""

    def __init__(self, net: InpaintingNet, meta: dict | None = None, batch_size: int = 256):
        self.net = net.eval()
        for parameter in self.net.parameters():
            parameter.requires_grad_(False)
        self.meta = meta or {}
        self.batch_size = batch_size
        self.name = "learned" + ("-conditional" if net.num_classes else "")

    def fill(self, images, holes, labels):
        device = next(self.net.parameters()).device
        out = []
        with torch.inference_mode():
            for start in range(0, images.shape[0], self.batch_size):
                part = slice(start, start + self.batch_size)
                lab = None if labels is None or not self.net.num_classes else labels[part].to(device)
                out.append(self.net(images[part].to(device), holes[part].to(device), lab).to(images.device))
        return torch.cat(out)


CHECKPOINT_EVERY = 50  # training steps between the resumable checkpoints of train_inpainter


def partial_path(path: Path | str) -> Path:
    """Where :func:`train_inpainter` keeps the resumable checkpoint of an unfinished training whose
    finished inpainter goes to ``path``: ``<path>.partial`` (with its ``.sha256`` sidecar)."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def train_inpainter(images: torch.Tensor, labels: torch.Tensor | None, num_classes: int, config: InpainterConfig,
                    path: Path | str | None = None, device: str = "cpu", progress: bool = True,
                    masks: torch.Tensor | None = None, checkpoint_every: int = CHECKPOINT_EVERY,
                    stop_after: int | None = None) -> LearnedInpainter:
    """Train (or load from ``path`` when a checkpoint of the same configuration and data exists) the
    learned inpainter on ``images`` ``[N, C, H, W]`` in [0, 1] with random holes (and, with
    ``masks`` ``[N, H, W]`` bool, holes made from the objects); L1 loss on the holes plus a tenth of
    it on the known pixels, ``config.steps`` steps of ``config.batch_size`` images. Seeded: the same
    inputs give the same weights.

    With a ``path``, an unfinished training is resumable: every ``checkpoint_every`` steps (default
    :data:`CHECKPOINT_EVERY` = 50) the network, the optimiser and learning-rate schedule, the step
    count, the losses so far and the state of every random generator it draws from are written
    atomically (temporary file, then rename, with a SHA-256 sidecar) to ``<path>.partial``
    (:func:`partial_path`). A later call with the same configuration and data resumes from it and
    ends with weights bit-identical to an uninterrupted run (on the same machine and device), so an
    interruption costs at most ``checkpoint_every`` steps; the file is removed when the inpainter is
    saved to ``path``. A partial checkpoint of another configuration or data is not used; a damaged
    one is reported and training restarts from step 0.

    ``stop_after`` ends the training after that many steps as if it had been interrupted (the
    partial checkpoint is written; the returned inpainter is the unfinished network, its ``meta``
    says ``interrupted_after_step``); tests use it to check resumption.
    """
    check_images(images, "images")
    if masks is not None and (masks.dim() != 3 or masks.shape[0] != images.shape[0]
                              or tuple(masks.shape[1:]) != tuple(images.shape[2:])):
        raise ValueError(f"masks must be bool [N, H, W] matching images {tuple(images.shape)}, "
                         f"got {tuple(masks.shape)}")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be a positive number of training steps, got {checkpoint_every!r}")
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int)
                                   or not 1 <= stop_after <= config.steps):
        raise ValueError(f"stop_after must be None or a number of steps in [1, {config.steps}] (config.steps), "
                         f"got {stop_after!r}")
    key = config_hash({"config": asdict(config), "version": INPAINTER_VERSION, "n": int(images.shape[0]),
                       "shape": list(images.shape[1:]), "classes": num_classes, "first": float(images[:64].sum()),
                       "masks": None if masks is None else int(masks[:64].sum())})
    classes = num_classes if config.conditional else 0
    if path is not None and Path(path).exists():
        try:
            saved = load_torch(path)
            if saved.get("key") == key:
                net = InpaintingNet(images.shape[1], config.width, classes)
                net.load_state_dict(saved["state"])
                return LearnedInpainter(net.to(device), saved["meta"])
        except CorruptFileError:
            pass  # damaged checkpoint: retrain

    def fresh():
        """Step 0: the seeded initialisation, the batch generator, the optimiser and its schedule."""
        torch.manual_seed(config.seed)
        network = InpaintingNet(images.shape[1], config.width, classes).to(device)
        adam = torch.optim.Adam(network.parameters(), lr=config.lr)
        return (network, adam, torch.optim.lr_scheduler.OneCycleLR(adam, max_lr=config.lr, total_steps=config.steps),
                torch.Generator().manual_seed(config.seed))

    net, optimiser, schedule, generator = fresh()
    start, losses, elapsed = 0, [], 0.0
    partial = None if path is None else partial_path(path)
    if partial is not None and partial.exists():
        try:
            state = load_torch(partial)
            if state.get("key") == key:  # another configuration's or data's partial run is not resumed
                net.load_state_dict(state["net"])
                optimiser.load_state_dict(state["optimiser"])
                schedule.load_state_dict(state["schedule"])
                generator.set_state(state["generator"])
                torch.set_rng_state(state["global_rng"])
                start, losses, elapsed = state["step"], list(state["losses"]), state["seconds"]
        except (CorruptFileError, KeyError, RuntimeError, ValueError) as error:
            warnings.warn(f"inpainter: restarting from step 0, the partial checkpoint {partial} cannot be used "
                          f"({type(error).__name__}: {error})")
            net, optimiser, schedule, generator = fresh()
            start, losses, elapsed = 0, [], 0.0

    def save_partial(done: int) -> None:
        save_torch(partial, {"key": key, "step": done, "net": net.state_dict(), "optimiser": optimiser.state_dict(),
                             "schedule": schedule.state_dict(), "generator": generator.get_state(),
                             "global_rng": torch.get_rng_state(), "losses": losses, "seconds": elapsed})

    began = time.perf_counter()
    bar = tqdm(range(start, config.steps), desc="inpainter", disable=not progress, initial=start, total=config.steps)
    for step in bar:
        picks = torch.randint(0, images.shape[0], (config.batch_size,), generator=generator)
        batch = images[picks].to(device)
        flipped = torch.rand(1, generator=generator).item() < 0.5
        if flipped:
            batch = batch.flip(3)
        holes = training_holes(config.batch_size, *images.shape[2:], generator, config.background_share)
        if masks is not None and config.object_share > 0:
            holes = _with_object_holes(holes, masks[picks], config.object_share, flipped)
        holes = holes.to(device)
        lab = None
        if classes and labels is not None and torch.rand(1, generator=generator).item() >= config.label_dropout:
            lab = labels[picks].to(device)
        out = net(batch, holes, lab)
        error = (out - batch).abs()
        hole = holes.float()
        loss = (error * hole).sum() / hole.sum().clamp(min=1) / batch.shape[1] + 0.1 * (
            error * (1 - hole)).sum() / (1 - hole).sum().clamp(min=1) / batch.shape[1]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if step % 100 == 0:
            bar.set_postfix_str(f"L1 {np.mean(losses[-100:]):.4f}")
        done = step + 1
        stopping = stop_after is not None and done >= stop_after and done < config.steps
        if partial is not None and done < config.steps and (done % checkpoint_every == 0 or stopping):
            elapsed += time.perf_counter() - began
            began = time.perf_counter()
            save_partial(done)
        if stopping:
            return LearnedInpainter(net.eval(), {"interrupted_after_step": done})
    elapsed += time.perf_counter() - began
    meta = {"seconds": elapsed, "final_loss": float(np.mean(losses[-100:])),
            "config": asdict(config), "conditional": bool(classes)}
    net.eval()
    if path is not None:
        save_torch(path, {"key": key, "state": net.state_dict(), "meta": meta})
        partial.unlink(missing_ok=True)
        partial.with_name(partial.name + ".sha256").unlink(missing_ok=True)
    return LearnedInpainter(net, meta)


# --------------------------------------------------------------------------------------
# Inpainting quality
# --------------------------------------------------------------------------------------

def classical_inpainters(dataset_mean: torch.Tensor | None = None) -> dict:
    """The weight-free inpainters and the classical fills, by name; with ``dataset_mean`` ``[C]``
    (the training set's mean pixel) also the constant fill of that colour, ``dataset-mean``."""
    fills = {"mean-colour": ConstantFill("mean"), "blur": ConstantFill("blur", sigma=2.0)}
    if dataset_mean is not None:
        fills["dataset-mean"] = ConstantFill("colour", colour=dataset_mean, name="dataset-mean")
    return fills | {"opencv-telea": OpenCVInpainter("telea"), "opencv-ns": OpenCVInpainter("ns"),
                    "biharmonic": BiharmonicInpainter(), "road-linear": NoisyLinearImputation()}
