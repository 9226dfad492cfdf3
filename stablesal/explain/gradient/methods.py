"""Gradient attribution methods, built on Captum's ``GradientAttribution`` and its call conventions.

One engine, :class:`GradientIntegration`, computes every method as

    z = Σ_k w_k · A( P( L(∇_x̂ f(x̂_k, y), x̂_k, x) ) )

with a sampler (x̂_k, w_k) from :mod:`stablesal.sampling`, a linear factor L (the gradient,
gradient × (x − x'), or gradient × x̂), an optional super-pixel projection P applied inside
each sample before any nonlinearity (:mod:`stablesal.grouping`), a per-sample nonlinearity A
(none, abs, square, top-k), and a weighted mean - or a variance computed with Welford/Chan
updates (VarGrad). The score f is the logit (default), the log-softmax (= negative
cross-entropy) or the probability of the target class.

Differences from Captum, all deliberate: every random method takes ``seed`` (an int or a
``torch.Generator``) and each image draws from its own stream derived from the seed and the
image's content, so maps are bit-identical run to run and do not depend on the batch they were
computed in or on the chunk size; model passes are chunked over (image, sample) rows at a
chunk size chosen by measurement, with parameter gradients frozen, so memory stays bounded.

Streams (``rng``): ``"generator"`` draws each image's samples from its own ``torch.Generator``
in fixed blocks (fastest on the CPU); ``"counter"`` computes any samples of any images from
counter-based streams (:mod:`stablesal.counter_streams`), a whole chunk of rows per draw, which
removes the per-image kernel launches that dominate on a GPU with small models. ``"auto"``
(default) takes ``"counter"`` on CUDA devices where the sampler has a counter draw. The two give
different samples from the same distribution, so a map depends on the stream kind as it does on
the seed.
"""

from __future__ import annotations

from typing import Any

import torch
from captum.attr import GradientAttribution

from ...core.checks import check_eval_model, check_images, check_targets, model_device
from ...core.chunking import frozen_parameters, gradient_chunk
from ..grouping import REDUCTIONS, Partition
from ...core.counter_streams import as_seeds
from .sampling import BaselineDistribution, GaussianNoise, Identity, Sampler, StraightLinePath, Suppression
from ...core.fills import canonical, fill_images
from ...core.seeding import image_seeds
from ...core.settings import RNG_KINDS
from ...core.registry import Registry
from ..segmentation import check_segments, make_segmenter

SCORES = ("logit", "log_softmax", "probability")
LINEAR_FACTORS = ("grad", "grad_x_delta", "grad_x_sample")
NONLINEARITIES = ("none", "abs", "square", "topk")
AGGREGATES = ("mean", "var")


def _select_score(output: torch.Tensor, target: torch.Tensor, score: str) -> torch.Tensor:
    if output.dim() != 2:
        raise ValueError(f"the model must return logits of shape [batch, classes], got {tuple(output.shape)}")
    if score == "log_softmax":
        output = torch.log_softmax(output, dim=1)
    elif score == "probability":
        output = torch.softmax(output, dim=1)
    return output.gather(1, target.view(-1, 1)).squeeze(1)


def _expand_args(additional, rows: torch.Tensor, batch: int):
    """Index tensors with a batch dimension by ``rows``; pass everything else through."""
    if additional is None:
        return ()
    if not isinstance(additional, tuple):
        additional = (additional,)
    return tuple(a[rows] if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == batch else a
                 for a in additional)


def _topk_binary(values: torch.Tensor, fraction: float, tie_keys: torch.Tensor | None = None) -> torch.Tensor:
    """1 on the top ``fraction`` of |values| of each sample ``[rows, ...]``, 0 elsewhere.

    Ties (a zero gradient over much of the image, a grouped map's constant segments) are broken by
    ``tie_keys`` (same shape: larger first) when given, else by position. By position, two models
    whose gradients are all zero pick the same first pixels and their maps agree perfectly;
    Sparsified SmoothGrad passes the sample's seeded noise, so ties fall at random, per sample."""
    flat = values.abs().flatten(1)
    k = max(1, int(round(fraction * flat.shape[1])))
    out = torch.zeros_like(flat)
    if tie_keys is None or k == flat.shape[1]:
        out.scatter_(1, flat.topk(k, dim=1).indices, 1.0)
        return out.view_as(values)
    # every value above the k-th largest is in; of the values equal to it, those with the largest
    # keys fill the remaining places (a partial selection, not a full sort of every row)
    threshold = flat.topk(k, dim=1).values[:, -1:]
    above = flat > threshold
    places = k - above.sum(dim=1, keepdim=True)
    tied = flat == threshold
    keys = torch.where(tied, tie_keys.reshape(flat.shape).to(flat.dtype), float("-inf"))
    most = int(places.max())
    chosen = keys.topk(most, dim=1).indices  # a row's first `places` of these are tied pixels
    out.scatter_(1, chosen, (torch.arange(most, device=out.device).unsqueeze(0) < places).to(out.dtype))
    out[above] = 1.0  # after the scatter, whose zeros may land on these
    return out.view_as(values)


def resolve_baseline(inputs: torch.Tensor, baselines) -> torch.Tensor | None:
    """Per-image baselines ``[B, C, H, W]`` for path methods: None → zeros (black); a fill of
    :mod:`stablesal.fills` (a number, ``"black"``, ``"mean"``, ``"blur"``, ...; the blurred baseline
    keeps its own σ = 1/8 of the image side, Sturmfels, Lundberg & Lee 2020, so that it removes
    the image's detail); a tensor → broadcast to the inputs' shape."""
    if baselines is None:
        return torch.zeros_like(inputs)
    if isinstance(baselines, (int, float, str)):
        fill = canonical(baselines, "baselines")
        sigma = inputs.shape[-1] / 8 if fill == "blur" else None
        return fill_images(fill, inputs.detach(), generator=torch.Generator().manual_seed(0), sigma=sigma)
    baselines = torch.as_tensor(baselines, dtype=inputs.dtype, device=inputs.device)
    try:
        return torch.broadcast_to(baselines, inputs.shape)
    except RuntimeError as error:
        raise ValueError(
            f"baselines of shape {tuple(baselines.shape)} cannot be broadcast to the inputs' shape {tuple(inputs.shape)}"
        ) from error


class GradientIntegration(GradientAttribution):
    """The engine behind every gradient method (see the module docstring).

    Parameters
    ----------
    forward_func : model or callable mapping images ``[N, C, H, W]`` in [0, 1] to logits ``[N, classes]``.
    sampler : a :class:`stablesal.sampling.Sampler`.
    linear : ``"grad"``, ``"grad_x_delta"`` (× (x − x'), IG/GradientSHAP) or ``"grad_x_sample"`` (× x̂).
    nonlinearity : ``"none"``, ``"abs"``, ``"square"`` or ``"topk"`` (binary top-``topk`` fraction).
    aggregate : ``"mean"`` (weighted by the sampler's weights) or ``"var"`` (VarGrad).
    score : ``"logit"``, ``"log_softmax"`` or ``"probability"`` of the target class.
    grouping : None or ``"pixel"`` (pixel maps), a segmenter name (``"fastslic"``, ``"grid"``, ...),
        a :class:`stablesal.segmentation.Segmenter`, or ``"segments"`` (group over the ``segments``
        passed to :meth:`attribute`); grouping is applied inside each sample.
    reduce : ``"mean"`` (projection) or ``"sum"`` broadcast of segment values.
    n_segments : target segment count when ``grouping`` is a name.
    internal_batch_size : rows per model pass; None measures the fastest.
    rng : ``"auto"`` (counter streams on CUDA, generators elsewhere), ``"generator"`` or ``"counter"``
        (see the module docstring); only random samplers read it.
    """

    method_name = "gradient_integration"

    def __init__(self, forward_func, sampler: Sampler, linear: str = "grad", nonlinearity: str = "none",
                 aggregate: str = "mean", score: str = "logit", grouping=None, reduce: str = "mean",
                 n_segments: int = 64, topk: float = 0.1, internal_batch_size: int | None = None,
                 rng: str = "auto"):
        super().__init__(forward_func)
        for name, value, choices in (("linear", linear, LINEAR_FACTORS), ("nonlinearity", nonlinearity, NONLINEARITIES),
                                     ("aggregate", aggregate, AGGREGATES), ("score", score, SCORES),
                                     ("reduce", reduce, REDUCTIONS), ("rng", rng, RNG_KINDS)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        if not isinstance(sampler, Sampler):
            raise TypeError(f"sampler must be a stablesal.sampling.Sampler, got {type(sampler).__name__}")
        if not 0 < topk <= 1:
            raise ValueError(f"topk must be a fraction in (0, 1], got {topk}")
        if rng == "counter" and sampler.random and not sampler.counter_draws:
            raise ValueError(f"rng='counter': the sampler {sampler} has no counter-based draw; use rng='generator'")
        self.rng = rng
        self.sampler, self.linear, self.nonlinearity, self.aggregate = sampler, linear, nonlinearity, aggregate
        self.score, self.reduce, self.topk = score, reduce, topk
        if isinstance(grouping, str) and grouping != "segments":
            grouping = None if grouping == "pixel" else make_segmenter(grouping, n_segments=n_segments)
        if grouping is not None and grouping != "segments" and not callable(grouping):
            raise TypeError("grouping must be None, a segmenter name or a callable images → segments")
        self.grouping = grouping
        self.internal_batch_size = internal_batch_size
        self.forward_calls = 0  # counts model passes (tests use it to prove the batching)

    def __str__(self) -> str:
        group = "pixel" if self.grouping is None else str(self.grouping)
        return (f"{self.method_name}[{self.sampler}|{self.linear}|{self.nonlinearity}|{self.aggregate}|"
                f"{self.score}|{group}|{self.reduce}]")

    @property
    def random(self) -> bool:
        """Whether the maps depend on the seed: the sampler draws (noise, path positions,
        references, suppression masks)."""
        return self.sampler.random

    @property
    def budget(self) -> str | None:
        """The keyword that sets the number of samples (model passes) per image: ``"n_samples"``
        for random samplers, ``"n_steps"`` for the straight-line path (IG), None for one pass."""
        return self.sampler.budget

    @property
    def needs_baselines(self) -> bool:
        """Whether :meth:`attribute` needs ``baselines``: GradientSHAP draws its references from
        them (a set of images ``[M, C, H, W]``) and raises without them."""
        return isinstance(self.sampler, BaselineDistribution)

    def stream_kind(self, device) -> str:
        """The streams a call on ``device`` draws from: ``"generator"``, ``"counter"``, or
        ``"none"`` for a deterministic sampler."""
        if not self.sampler.random:
            return "none"
        if self.rng == "auto":  # CUDA only: MPS has no float64, which the counter draws convert through
            on_cuda = torch.device(device).type == "cuda"
            return "counter" if self.sampler.counter_draws and on_cuda else "generator"
        return self.rng

    def _chunk_size(self, sample_shape, device, forward) -> int:
        if self.internal_batch_size:
            return int(self.internal_batch_size)
        return gradient_chunk(self.forward_func, forward, sample_shape, device, self.score)

    def attribute(self, inputs: torch.Tensor, target=None, baselines=None, additional_forward_args: Any = None,
                  seed: int | torch.Generator = 0, segments: torch.Tensor | None = None,
                  internal_batch_size: int | None = None, return_convergence_delta: bool = False):
        """Attributions of the shape of ``inputs`` ``[B, C, H, W]`` for class ``target``.

        ``baselines``: for path methods the reference x' (None/'black', a number or a tensor
        broadcastable to the inputs); for GradientSHAP a set of references ``[M, C, H, W]``.
        ``segments``: a partition ``[B, H, W]`` used for grouping (and segment suppression)
        instead of computing one with ``grouping``. ``seed``: int or ``torch.Generator``.
        ``return_convergence_delta``: also return Σ attributions − (f(x) − f(x')) per image
        (path samplers only), like Captum's IG.
        """
        inputs = check_images(inputs, "inputs")
        if segments is not None:
            segments = check_segments(segments, inputs)
        elif self.grouping == "segments":
            raise ValueError("grouping='segments' needs segments=<LongTensor [B, H, W]> in attribute()")
        elif self.grouping is not None or getattr(self.sampler, "unit", None) == "segment":
            segmenter = self.grouping or make_segmenter("fastslic")
            segments = segmenter(inputs.detach())
        grouped = {"map": segments if self.grouping is not None else None}
        results, per_image_baseline, forward, target = self._integrate(
            inputs, target, baselines, additional_forward_args, seed, grouped, segments, internal_batch_size)
        result = results["map"]
        if not return_convergence_delta:
            return result
        if not isinstance(self.sampler, StraightLinePath):
            raise ValueError("return_convergence_delta is defined for path methods (Integrated Gradients) only")
        batch = inputs.shape[0]
        with torch.no_grad():
            args = _expand_args(additional_forward_args, torch.arange(batch), batch)
            end = _select_score(forward(inputs.detach(), args), target, self.score)
            start = _select_score(forward(per_image_baseline, args), target, self.score)
        return result, result.flatten(1).sum(1) - (end - start)

    def attribute_groupings(self, inputs: torch.Tensor, target=None, groupings: dict | None = None, baselines=None,
                            additional_forward_args: Any = None, seed: int | torch.Generator = 0,
                            internal_batch_size: int | None = None) -> dict[str, torch.Tensor]:
        """The method under several groupings from one set of model passes.

        ``groupings`` maps a name to a partition ``[B, H, W]`` or to None (pixel map). The samples
        and gradients are shared, so this costs the passes of one call plus one projection per
        grouping; each output equals ``attribute(..., segments=that partition)`` of a method built
        with ``grouping="segments"`` (or ``grouping=None`` for None).
        """
        inputs = check_images(inputs, "inputs")
        groupings = {name: None if seg is None else check_segments(seg, inputs, f"groupings[{name!r}]")
                     for name, seg in (groupings or {"pixel": None}).items()}
        sampler_segments = None
        if getattr(self.sampler, "unit", None) == "segment":
            sampler_segments = next((seg for seg in groupings.values() if seg is not None), None)
            if sampler_segments is None:
                sampler_segments = make_segmenter("fastslic")(inputs.detach())
        results, _, _, _ = self._integrate(inputs, target, baselines, additional_forward_args, seed, groupings,
                                           sampler_segments, internal_batch_size)
        return results

    def _integrate(self, inputs, target, baselines, additional_forward_args, seed, groupings: dict,
                   sampler_segments, internal_batch_size):
        """Run the sampler and the model passes once; aggregate under every grouping of ``groupings``."""
        model = check_eval_model(self.forward_func, "forward_func")
        batch = inputs.shape[0]
        target = check_targets(target, batch, None).to(inputs.device)
        if internal_batch_size is not None and (not isinstance(internal_batch_size, int) or internal_batch_size < 1):
            raise ValueError(f"internal_batch_size must be a positive integer, got {internal_batch_size!r}")
        device = inputs.device
        if isinstance(model, torch.nn.Module) and model_device(model) != device:
            raise ValueError(f"inputs are on {device} but the model is on {model_device(model)}; move one of them")
        partitions = {name: None if seg is None else Partition(seg) for name, seg in groupings.items()}

        if self.needs_baselines:
            if baselines is None:
                raise ValueError("baselines is required for GradientSHAP: a tensor [M, C, H, W] of reference images")
            reference = torch.as_tensor(baselines, dtype=inputs.dtype, device=device)
            if reference.dim() == 3:
                reference = reference.unsqueeze(0)
            if reference.dim() != 4 or reference.shape[1:] != inputs.shape[1:]:
                raise ValueError(f"baselines must have shape [M, {', '.join(map(str, inputs.shape[1:]))}], "
                                 f"got {tuple(reference.shape)}")
            per_image_baseline = None
        else:
            reference = None
            per_image_baseline = resolve_baseline(inputs, baselines)

        forward = (lambda x, args=(): model(x, *args))
        n_samples = self.sampler.n_samples
        weights = self.sampler.weights(device)
        seeds = image_seeds(inputs, seed) if self.sampler.random else [0] * batch
        try:
            chunk = internal_batch_size or self._chunk_size(inputs.shape[1:], device, forward)
        except RuntimeError as error:  # the model cannot take inputs of this shape: say so, not torch
            raise ValueError(f"the model cannot run on inputs of shape {tuple(inputs.shape)} (check channels and "
                             f"image size): {str(error).splitlines()[0]}") from error
        aggregates = {name: _Aggregate(inputs, self.aggregate) for name in partitions}
        checked_classes: list[int] = []

        def run(rows, x_hat, delta, row_weight):
            x_hat = x_hat.detach().requires_grad_(True)
            with torch.enable_grad():
                try:
                    output = forward(x_hat, _expand_args(additional_forward_args, rows, batch))
                except RuntimeError as error:
                    if checked_classes:
                        raise
                    raise ValueError(f"the model cannot run on inputs of shape {tuple(inputs.shape)} (check channels "
                                     f"and image size): {str(error).splitlines()[0]}") from error
                self.forward_calls += 1
                if not checked_classes:  # once per call: a per-chunk check would sync the GPU every pass
                    check_targets(target.cpu(), batch, output.shape[1])
                    checked_classes.append(output.shape[1])
                score = _select_score(output, target[rows], self.score)
                grad, = torch.autograd.grad(score.sum(), x_hat)
            if self.linear == "grad_x_delta":
                linear = grad * delta
            elif self.linear == "grad_x_sample":
                linear = grad * x_hat.detach()
            else:
                linear = grad
            # top-k ties at random: the sample's own seeded noise (x̂ − x summed over channels) orders
            # tied pixels, independently per sample and per model, whatever the chunking
            tie_keys = ((x_hat.detach() - inputs[rows].detach()).sum(1, keepdim=True).expand_as(linear)
                        if self.nonlinearity == "topk" else None)
            for name, partition in partitions.items():
                values = linear if partition is None else partition.select(rows).project(linear, self.reduce)
                if self.nonlinearity == "abs":
                    values = values.abs()
                elif self.nonlinearity == "square":
                    values = values.square()
                elif self.nonlinearity == "topk":
                    values = _topk_binary(values, self.topk, tie_keys=tie_keys)
                aggregates[name].add(rows, values, row_weight)

        pending: list[tuple] = []
        pending_rows = 0

        def flush(final: bool):
            nonlocal pending, pending_rows
            while pending_rows >= chunk or (final and pending_rows > 0):
                rows = torch.cat([p[0] for p in pending])
                x_hat = torch.cat([p[1] for p in pending])
                delta = torch.cat([p[2] for p in pending]) if pending[0][2] is not None else None
                row_weight = torch.cat([p[3] for p in pending])
                take = min(chunk, len(rows))
                run(rows[:take], x_hat[:take], None if delta is None else delta[:take], row_weight[:take])
                rest = len(rows) - take
                pending = [] if rest == 0 else [(rows[take:], x_hat[take:],
                                                 None if delta is None else delta[take:], row_weight[take:])]
                pending_rows = rest

        def batch_blocks():
            """Deterministic samplers: one draw for all images per block of samples."""
            block = max(1, min(n_samples, chunk // batch))
            for start in range(0, n_samples, block):
                stop = min(n_samples, start + block)
                x_hat, delta = self.sampler.draw_batch(inputs.detach(), start, stop, per_image_baseline)
                rows = torch.arange(batch, device=device).repeat_interleave(stop - start)
                yield (rows, x_hat.reshape(-1, *inputs.shape[1:]), delta.reshape(-1, *inputs.shape[1:]),
                       weights[start:stop].to(inputs.dtype).repeat(batch))

        def image_blocks():
            """Every image from its own generator, in fixed blocks of samples."""
            for image in range(batch):
                generator = None
                if self.sampler.random:
                    generator = torch.Generator(device=device)
                    generator.manual_seed(seeds[image])
                x = inputs[image].detach()
                base = reference if reference is not None else per_image_baseline[image]
                image_segments = None if sampler_segments is None else sampler_segments[image]
                for start in range(0, n_samples, self.sampler.block):
                    stop = min(n_samples, start + self.sampler.block)
                    x_hat, delta = self.sampler.draw(x, start, stop, generator, baseline=base, segments=image_segments)
                    if self.linear == "grad_x_delta" and delta is None:
                        delta = (x - (base if base is not None and base.dim() == 3 else 0)).expand_as(x_hat)
                    rows = torch.full((stop - start,), image, dtype=torch.long, device=device)
                    yield rows, x_hat, delta, weights[start:stop].to(inputs.dtype)

        def counter_chunks():
            """Random samplers from counter streams: a whole chunk of (image, sample) rows per draw."""
            row_seeds = as_seeds(seeds, device)
            segments_here = None if sampler_segments is None else sampler_segments.to(device)
            total = batch * n_samples
            for start in range(0, total, chunk):
                flat = torch.arange(start, min(total, start + chunk), device=device)
                rows, sample = flat // n_samples, flat % n_samples
                x = inputs.detach()[rows]
                base = reference if reference is not None else per_image_baseline[rows]
                row_segments = None if segments_here is None else segments_here[rows]
                x_hat, delta = self.sampler.draw_rows(x, sample, row_seeds[rows], baseline=base, segments=row_segments)
                if self.linear == "grad_x_delta" and delta is None:
                    delta = x - (per_image_baseline[rows] if per_image_baseline is not None else 0)
                yield rows, x_hat, delta, weights[sample].to(inputs.dtype)

        vectorised = hasattr(self.sampler, "draw_batch") and not self.sampler.random and sampler_segments is None
        if vectorised:
            pieces = batch_blocks()
        elif self.stream_kind(device) == "counter":
            pieces = counter_chunks()
        else:
            pieces = image_blocks()
        with frozen_parameters(model):
            for piece in pieces:
                pending.append(piece)
                pending_rows += len(piece[0])
                flush(final=False)
            flush(final=True)

        results = {name: agg.result(self.sampler.normalise_weights) for name, agg in aggregates.items()}
        return results, per_image_baseline, forward, target

    def has_convergence_delta(self) -> bool:
        return isinstance(self.sampler, StraightLinePath)


class _Aggregate:
    """Running weighted mean, or per-image Welford variance, of per-sample maps."""

    def __init__(self, inputs: torch.Tensor, kind: str):
        self.kind = kind
        batch = inputs.shape[0]
        if kind == "mean":
            self.total = torch.zeros_like(inputs)
            self.weight_sum = torch.zeros(batch, device=inputs.device, dtype=inputs.dtype)
        else:
            self.count = torch.zeros(batch, device=inputs.device, dtype=inputs.dtype)
            self.mean = torch.zeros_like(inputs)
            self.m2 = torch.zeros_like(inputs)

    def add(self, rows: torch.Tensor, values: torch.Tensor, row_weight: torch.Tensor) -> None:
        if self.kind == "mean":
            self.total.index_add_(0, rows, values * row_weight.view(-1, 1, 1, 1))
            self.weight_sum.index_add_(0, rows, row_weight)
        else:
            _welford_merge(rows, values, self.count, self.mean, self.m2)

    def result(self, normalise: bool) -> torch.Tensor:
        if self.kind == "var":
            return self.m2 / self.count.clamp(min=1).view(-1, 1, 1, 1)
        if normalise:
            return self.total / self.weight_sum.clamp(min=torch.finfo(self.total.dtype).tiny).view(-1, 1, 1, 1)
        return self.total


def _welford_merge(rows, values, count, mean, m2) -> None:
    """Merge a chunk's per-image (count, mean, M2) into the running ones (Chan et al., 1979)."""
    chunk_count = torch.zeros_like(count).index_add_(0, rows, torch.ones_like(rows, dtype=count.dtype))
    chunk_sum = torch.zeros_like(mean).index_add_(0, rows, values)
    present = chunk_count > 0
    chunk_mean = chunk_sum / chunk_count.clamp(min=1).view(-1, 1, 1, 1)
    chunk_m2 = torch.zeros_like(m2).index_add_(0, rows, (values - chunk_mean[rows]).square())
    merged = count + chunk_count
    diff = chunk_mean - mean
    share = torch.where(present, chunk_count / merged.clamp(min=1), torch.zeros_like(count)).view(-1, 1, 1, 1)
    mean += diff * share
    m2 += chunk_m2 + diff.square() * (count * share.view(-1)).view(-1, 1, 1, 1)
    count.copy_(merged)


# --------------------------------------------------------------------------------------
# Named methods: Captum's names and arguments, plus seed and grouping
# --------------------------------------------------------------------------------------

# Every gradient method, registered next to its definition with what cannot be computed from it:
# its ``family`` and, where figures shorten its name, a ``label``. What can (``random``,
# ``budget``, ``needs_baselines``; grouping inside samples, through ``attribute_groupings``) is
# read from the method itself (stablesal.explain.protocol).
METHODS = Registry("gradient method")

@METHODS.register("saliency", family="gradient", label="Saliency")
class Saliency(GradientIntegration):
    """|∇f| (``abs=True``, Captum's default) or ∇f (Simonyan, Vedaldi & Zisserman, 2014)."""

    method_name = "saliency"

    def __init__(self, forward_func, abs: bool = True, **options):
        super().__init__(forward_func, Identity(), nonlinearity="abs" if abs else "none", **options)


@METHODS.register("input_x_gradient", family="gradient")
class InputXGradient(GradientIntegration):
    """x ⊙ ∇f (Shrikumar et al., 2016)."""

    method_name = "input_x_gradient"

    def __init__(self, forward_func, **options):
        super().__init__(forward_func, Identity(), linear="grad_x_delta", **options)


@METHODS.register("integrated_gradients", family="gradient", label="IG")
class IntegratedGradients(GradientIntegration):
    """(x − x') ⊙ ∫₀¹ ∇f(x' + α(x − x')) dα by quadrature (Sundararajan, Taly & Yan, 2017).
    Grouped IG keeps completeness: the projection preserves each segment's sum."""

    method_name = "integrated_gradients"

    def __init__(self, forward_func, n_steps: int = 50, method: str = "gausslegendre", **options):
        super().__init__(forward_func, StraightLinePath(n_steps, method), linear="grad_x_delta", **options)


@METHODS.register("smoothgrad", family="gradient", label="SmoothGrad")
class SmoothGrad(GradientIntegration):
    """Mean gradient over Gaussian-noised inputs (Smilkov et al., 2017); σ = ``noise_level`` × input range."""

    method_name = "smoothgrad"

    def __init__(self, forward_func, n_samples: int = 50, noise_level: float = 0.15, **options):
        super().__init__(forward_func, GaussianNoise(n_samples, noise_level), **options)


@METHODS.register("smoothgrad_sq", family="gradient", label="SmoothGrad²")
class SmoothGradSquared(GradientIntegration):
    """Mean squared gradient over noised inputs (SmoothGrad², Hooker et al., 2019)."""

    method_name = "smoothgrad_sq"

    def __init__(self, forward_func, n_samples: int = 50, noise_level: float = 0.15, **options):
        super().__init__(forward_func, GaussianNoise(n_samples, noise_level), nonlinearity="square", **options)


@METHODS.register("vargrad", family="gradient", label="VarGrad")
class VarGrad(GradientIntegration):
    """Variance of the gradient over noised inputs (Adebayo et al., 2018), by Welford/Chan updates."""

    method_name = "vargrad"

    def __init__(self, forward_func, n_samples: int = 50, noise_level: float = 0.15, **options):
        super().__init__(forward_func, GaussianNoise(n_samples, noise_level), aggregate="var", **options)


@METHODS.register("sparsified_smoothgrad", family="gradient", label="Sparse SG")
class SparsifiedSmoothGrad(GradientIntegration):
    """SmoothGrad over binarised top-k gradients: each noisy sample's top ``topk`` fraction of
    |∇f| is set to 1, the rest to 0 (Levine, Singla & Feizi, *Certifiably Robust Interpretation
    in Deep Learning*, 2019)."""

    method_name = "sparsified_smoothgrad"

    def __init__(self, forward_func, n_samples: int = 50, noise_level: float = 0.15, topk: float = 0.1, **options):
        super().__init__(forward_func, GaussianNoise(n_samples, noise_level), nonlinearity="topk", topk=topk, **options)


@METHODS.register("gradient_shap", family="gradient", label="GradSHAP")
class GradientShap(GradientIntegration):
    """Expected Gradients / GradientSHAP: (x − x') ⊙ ∇f(x' + α(x − x')), x' from ``baselines``,
    α ~ U(0, 1) (Erion et al., 2021; Lundberg & Lee, 2017). ``noise_level`` adds Gaussian noise
    like Captum's ``stdevs`` (default 0, as in Captum), here as a fraction of the input range."""

    method_name = "gradient_shap"

    def __init__(self, forward_func, n_samples: int = 50, noise_level: float = 0.0, **options):
        super().__init__(forward_func, BaselineDistribution(n_samples, noise_level), linear="grad_x_delta", **options)


@METHODS.register("suppression", family="gradient", label="Suppression")
class SuppressionGrad(GradientIntegration):
    """Mean |∇f| over suppressed samples (Luo, McDermott & O'Riordan, 2025; reconstruction, see
    :class:`stablesal.sampling.Suppression`). ``aggregate_input=True`` uses g ⊙ x̂ instead of |g|."""

    method_name = "suppression"

    def __init__(self, forward_func, n_samples: int = 50, mode: str = "bernoulli", unit: str = "pixel",
                 patch_size: int = 4, keep_rate: float = 0.5, fill: float = 0.0, aggregate_input: bool = False,
                 **options):
        sampler = Suppression(n_samples, mode=mode, unit=unit, patch_size=patch_size, keep_rate=keep_rate, fill=fill)
        if aggregate_input:
            super().__init__(forward_func, sampler, linear="grad_x_sample", **options)
        else:
            super().__init__(forward_func, sampler, nonlinearity="abs", **options)


METHODS.register("gradient", lambda model, **o: Saliency(model, abs=False, **o), family="gradient")
METHODS.register("suppression_continuous", lambda model, **o: SuppressionGrad(model, mode="continuous", **o),
                 family="gradient")
METHODS.register("suppression_patch", lambda model, **o: SuppressionGrad(model, unit="patch", **o),
                 family="gradient")
METHODS.register("suppression_global", lambda model, **o: SuppressionGrad(model, mode="global", **o),
                 family="gradient")

def make_method(name: str, model, grouping=None, n_samples: int | None = None, n_steps: int | None = None,
                noise_level: float | None = None, **options) -> GradientIntegration:
    """A method by name (an unknown name is a ``ValueError`` with the closest one). ``"s-<name>"`` is the grouped variant (fast-slic unless ``grouping`` says
    otherwise), e.g. ``make_method("s-smoothgrad", model)``. The study-wide settings go to the
    methods that read them, as the method itself says (its ``budget``, no hand-kept list):
    ``n_samples`` to every method whose budget is ``n_samples`` (the random samplers), ``n_steps``
    to the one whose budget is ``n_steps`` (IG's straight-line path), ``noise_level`` to Gaussian
    noise (the SmoothGrad family)."""
    if name.startswith("s-"):
        name, grouping = name[2:], grouping or "fastslic"
    method = METHODS.lookup(name)(model, grouping=grouping, **options)
    settings = {}
    budget = {"n_samples": n_samples, "n_steps": n_steps}.get(method.budget)
    if budget is not None:
        settings[method.budget] = budget
    if noise_level is not None and isinstance(method.sampler, GaussianNoise):
        settings["noise_level"] = noise_level
    return METHODS[name](model, grouping=grouping, **options, **settings) if settings else method
