"""Super-pixel grouping of attributions (Gong, Zhang, Dou & Farnia, *A Super-pixel-based Approach
to the Stable Interpretation of Neural Networks*, BMVC 2024; the formula is a reconstruction,
see docs/methods.md §2).

Each segment G_j gets one shared value. With ``reduce="mean"`` (default) every pixel receives
its segment's mean: the orthogonal projection P onto maps that are constant on segments, so
grouping is idempotent, preserves the map's total (grouped IG keeps completeness) and never
increases the variance of a set of maps (tr(PΣ) ≤ tr(Σ)). With ``reduce="sum"`` every pixel
receives the segment sum, the gradient of a shared additive shift of the segment.
Channels are grouped separately over the same spatial partition.

Grouping is a scatter-add and a gather on the attributions' device, batched over images.
"""

from __future__ import annotations

import functools
import inspect

import torch
from .segmentation import check_segments

REDUCTIONS = ("mean", "sum")


class Partition:
    """Integer segment ids ``[B, H, W]`` prepared for repeated projections of ``[B, ..., H, W]`` maps."""

    def __init__(self, segments: torch.Tensor):
        if segments.dim() != 3 or segments.is_floating_point():
            raise ValueError(f"segments must be an integer tensor [B, H, W], got {segments.dtype} {tuple(segments.shape)}")
        self.segments = segments.long()
        batch = segments.shape[0]
        self.flat = self.segments.reshape(batch, 1, -1)  # [B, 1, HW]
        self.num_segments = int(self.segments.max()) + 1
        counts = torch.zeros(batch, self.num_segments, device=segments.device)
        counts.scatter_add_(1, self.flat[:, 0], torch.ones_like(self.flat[:, 0], dtype=counts.dtype))
        self.counts = counts  # pixels per segment [B, M]

    def __len__(self) -> int:
        return self.segments.shape[0]

    def select(self, rows: torch.Tensor) -> "Partition":
        """The partition of images ``rows`` (e.g. the image of each sample in a chunk)."""
        picked = Partition.__new__(Partition)
        picked.segments = self.segments[rows]
        picked.flat = self.flat[rows]
        picked.num_segments = self.num_segments
        picked.counts = self.counts[rows]
        return picked

    def segment_sums(self, values: torch.Tensor) -> torch.Tensor:
        """Sum of ``values`` ``[B, ..., H, W]`` over each segment: ``[B, K, M]`` with K the flattened middle dims."""
        batch = values.shape[0]
        flat = values.reshape(batch, -1, values.shape[-2] * values.shape[-1])
        index = self.flat.expand(-1, flat.shape[1], -1)
        sums = torch.zeros(batch, flat.shape[1], self.num_segments, device=values.device, dtype=values.dtype)
        return sums.scatter_add_(2, index, flat)

    def broadcast(self, per_segment: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """Pixel maps of ``shape`` from per-segment values ``[B, K, M]``."""
        index = self.flat.expand(-1, per_segment.shape[1], -1)
        return per_segment.gather(2, index).reshape(shape)

    def project(self, values: torch.Tensor, reduce: str = "mean") -> torch.Tensor:
        """Group ``values`` ``[B, ..., H, W]``: each pixel gets its segment's mean (or sum)."""
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
        if values.shape[0] != self.segments.shape[0] or values.shape[-2:] != self.segments.shape[-2:]:
            raise ValueError(
                f"attributions of shape {tuple(values.shape)} do not match segments of shape "
                f"{tuple(self.segments.shape)} (batch and spatial size must agree)"
            )
        sums = self.segment_sums(values)
        if reduce == "mean":
            sums = sums / self.counts.clamp(min=1).unsqueeze(1).to(sums.dtype)
        return self.broadcast(sums, values.shape)


def group_attributions(attributions: torch.Tensor, segments: torch.Tensor, reduce: str = "mean") -> torch.Tensor:
    """Group maps ``[B, C, H, W]`` (or ``[B, ..., H, W]``) over ``segments`` ``[B, H, W]``."""
    return Partition(segments.to(attributions.device)).project(attributions, reduce)


class Grouped:
    """Group the output of any attribution method (a stablesal method or any Captum ``Attribution``).

    Grouping after the method is exact for methods linear in the gradient (Saliency without
    abs, IG, GradientSHAP, SmoothGrad); for methods with a nonlinearity per sample (abs, square,
    top-k, variance) use stablesal's own methods with ``grouping=...`` which group inside each
    sample, before the nonlinearity.

    A :class:`~stablesal.explain.protocol.Explainer`: its ``random``, ``budget`` and
    ``needs_baselines`` are those of the wrapped method. A wrapped object that does not state them
    (a Captum ``Attribution``) takes no seed from here, so its map cannot depend on it (``random``
    False: Captum's own random methods draw from torch's global generator, which is not seeded
    here), has no budget, and needs baselines when its ``attribute`` requires a ``baselines``
    argument (Captum's ``GradientShap``).

    Parameters
    ----------
    method : object with ``attribute(inputs, target=..., **kwargs)``.
    segmenter : callable images → segments ``[B, H, W]`` (see :mod:`stablesal.segmentation`),
        used when ``attribute`` gets no ``segments``.
    reduce : ``"mean"`` (projection) or ``"sum"``.
    """

    def __init__(self, method, segmenter=None, reduce: str = "mean"):
        self.method, self.segmenter, self.reduce = method, segmenter, reduce

    @property
    def random(self) -> bool:
        return bool(getattr(self.method, "random", False))

    @property
    def budget(self) -> str | None:
        return getattr(self.method, "budget", None)

    @property
    def needs_baselines(self) -> bool:
        if hasattr(self.method, "needs_baselines"):
            return bool(self.method.needs_baselines)
        parameter = _parameters(self.method.attribute).get("baselines")
        return parameter is not None and parameter.default is inspect.Parameter.empty

    def attribute(self, inputs: torch.Tensor, target=None, *, seed: int | torch.Generator = 0,
                  segments: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """The wrapped method's map ``[B, C, H, W]`` grouped over ``segments`` (or the segmenter's);
        ``target`` and ``kwargs`` go to the method, and ``seed`` too when its ``attribute`` takes
        one (a Captum method takes none: its map does not depend on the seed, see ``random``)."""
        if segments is None:
            if self.segmenter is None:
                raise ValueError("Grouped.attribute needs segments=... or a segmenter at construction")
            segments = self.segmenter(inputs.detach())
        segments = check_segments(segments, inputs)
        if target is not None:
            kwargs["target"] = target
        if "seed" in _parameters(self.method.attribute):
            kwargs["seed"] = seed
        return group_attributions(self.method.attribute(inputs, **kwargs), segments, self.reduce)


def _parameters(function) -> dict:
    """The named parameters of ``function`` (a ``**kwargs`` catch-all is not a name)."""
    return {name: parameter for name, parameter in inspect.signature(function).parameters.items()
            if parameter.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)}


# --------------------------------------------------------------------------------------
# A falsifiable prediction of how much a projection reduces variance
# --------------------------------------------------------------------------------------

def _autocorrelation(maps: torch.Tensor) -> torch.Tensor:
    """Linear (not circular) autocorrelation Σ_p x(p) x(p + δ) of ``maps`` ``[..., H, W]`` for
    every lag δ, as ``[..., 2H, 2W]`` arrays in FFT order (zero padding makes it linear)."""
    height, width = maps.shape[-2:]
    spectrum = torch.fft.rfft2(maps.double(), s=(2 * height, 2 * width))
    return torch.fft.irfft2(spectrum.abs().square(), s=(2 * height, 2 * width))


@functools.lru_cache(maxsize=8)
def _pair_counts(height: int, width: int) -> torch.Tensor:
    """N(δ): the number of pixel pairs at each lag δ of an H × W image (the same for every map of
    that size, so computed once per size)."""
    return _autocorrelation(torch.ones(height, width, dtype=torch.float64)).round()


def lag_weights(segments: torch.Tensor) -> torch.Tensor:
    """W(δ) = Σ_s A_s(δ) / n_s for each image of ``segments`` ``[B, H, W]``: A_s(δ) counts the
    pixel pairs (p, p + δ) inside segment s of n_s pixels. ``[B, 2H, 2W]`` in FFT lag order.

    For any map x, ‖P x‖² = Σ_s (1/n_s) Σ_{p,q∈s} x_p x_q; replacing x_p x_q by the image-wide
    average lagged product at lag q − p gives Σ_δ C(δ) W(δ) (see
    :func:`stationary_projection_energy`)."""
    out = []
    for labels in segments.long():
        one_hot = torch.nn.functional.one_hot(labels, int(labels.max()) + 1).permute(2, 0, 1).double()
        sizes = one_hot.flatten(1).sum(1).clamp(min=1)
        out.append((_autocorrelation(one_hot) / sizes.view(-1, 1, 1)).sum(0))
    return torch.stack(out)


def stationary_projection_energy(maps: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The energy ‖P x‖² that the projection onto segments would keep of ``maps`` ``[B, H, W]``
    *if* their lagged products were stationary: Σ_δ [C(δ)/N(δ)] · W(δ), with C the map's
    autocorrelation, N(δ) the number of pixel pairs at lag δ and W from :func:`lag_weights`.

    Applied to the difference of two models' maps, it predicts the variance that grouping keeps
    from the spatial correlation of the differences alone (a white difference gives
    ‖x‖²·m/d, the independent-pixel factor; a constant one keeps everything). The prediction is
    exact when the correlation is the same everywhere in the image and fails, measurably, when
    it is not (for instance, variance concentrated on object edges that super-pixels follow)."""
    height, width = maps.shape[-2:]
    pairs = _pair_counts(height, width).to(maps.device)
    lagged = _autocorrelation(maps) / pairs.clamp(min=1)
    lagged = torch.where(pairs > 0.5, lagged, torch.zeros_like(lagged))
    return (lagged * weights.to(lagged)).flatten(-2).sum(-1)
