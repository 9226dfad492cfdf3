"""The perturbation pipeline (SEG-SMOOTH, docs/methods.md §4): segmenter → mask smoothing → sampler →
replacement → batched model outputs → attribution calculation → per-segment or per-pixel map.

:class:`Perturbation` follows Captum's conventions (``attribute(inputs, target=...)`` returns a
tensor shaped like ``inputs``). Each stage is a small object with a canonical string, and
``str(pipeline)`` joins them into the id used in result tables, e.g.
``grid-bilinear(7x7)|shift|random(p=0.5)|n=4000|constant(imagenet)|rise|pixel``.

Cost: N + 2 forward passes per image (the samples, the full and the all-removed image), under
``torch.inference_mode``; pixel masks are built chunk by chunk from ``Z`` ``[N, S]`` so memory does
not grow with N; all tensors stay on the model's device. One set of model passes serves any
number of calculators and both map types (:meth:`Perturbation.attribute_all`).
"""

from __future__ import annotations

import torch
from captum.attr import PerturbationAttribution

from ...core.chunking import measure_forward_chunk
from ...core.seeding import image_seeds
from ...core.checks import check_eval_model, check_images, check_targets, forward_checked, model_device
from .calculators import Calculator, Observations, RiseScore, make_calculator
from .features import Features, FeatureSegmenter, RandomShift, Smoothing, make_feature_segmenter, make_smoothing
from .replacement import make_replacement
from .samplers import PerturbationSampler, make_sampler

MAPS = ("pixel", "segment")
OUTPUTS = ("probability", "logit")
def keep_masks(features: Features, z: torch.Tensor, offsets: torch.Tensor | None) -> torch.Tensor:
    """Keep masks ``[n, H, W]`` for rows ``z`` ``[n, S]`` (float) of one image's features."""
    height, width = features.weights.shape[-2:]
    if features.overlapping:
        covered = (1 - z) @ features.weights.flatten(1)
        return (covered <= 0).to(z.dtype).view(-1, height, width)
    if features.hard:  # one segment per pixel: each pixel takes its segment's z (O(n·H·W), not O(n·S·H·W))
        return z[:, features.labels.flatten()].view(-1, height, width)
    if offsets is None:
        return (z @ features.weights.flatten(1)).view(-1, height, width)
    canvas = features.canvas
    big = (z @ canvas.flatten(1)).view(-1, *canvas.shape[-2:])
    rows = offsets[:, :1] + torch.arange(height, device=z.device)   # [n, H]
    cols = offsets[:, 1:] + torch.arange(width, device=z.device)    # [n, W]
    picks = torch.arange(z.shape[0], device=z.device)
    return big[picks[:, None, None], rows[:, :, None], cols[:, None, :]]


def mean_weights(features: Features, offsets: torch.Tensor | None) -> torch.Tensor:
    """Per-pixel weights ``[S, H, W]`` of each feature, normalised to sum to one where covered; with
    the random shift, averaged over the samples' offsets."""
    weights = features.weights
    if offsets is not None:
        height, width = weights.shape[-2:]
        unique, counts = torch.unique(offsets, dim=0, return_counts=True)
        weights = torch.zeros_like(weights)
        for (top, left), count in zip(unique.tolist(), counts.tolist()):
            weights += count * features.canvas[:, top:top + height, left:left + width]
    return weights / weights.sum(0, keepdim=True).clamp(min=1e-12)


class Perturbation(PerturbationAttribution):
    """One perturbation explanation method assembled from stages.

    Parameters
    ----------
    forward_func : model in eval mode (or callable) mapping ``[N, C, H, W]`` in [0, 1] to logits.
    segmenter : ``"grid"``, ``"grid-bilinear"``, ``"patches"``, a segmenter name of
        :mod:`stablesal.segmentation` (``"fastslic"``, ``"slic"``, ``"quickshift"``, ...) or a
        :class:`~stablesal.perturbation.features.FeatureSegmenter`.
    smoothing : ``"none"``, ``"gaussian"`` (σ = ``sigma`` px, ``"auto"`` = 70/√M at 224 px) or ``"shift"``.
    sampler : ``"random"``, ``"random-p"``, ``"single"``, ``"inverse-single"``, ``"shap"``,
        ``"unique-random"`` or a sampler object.
    replacement : a number (constant fill), ``"imagenet"``, ``"image-mean"``, ``"image-median"``,
        ``"blur"``, ``"noise"``, ``"segment-mean"`` or a Replacement (``OtherImages``, ``Inpaint``).
    calculator : ``"rise"``, ``"lime-ols"``, ``"lime-ridge"``, ``"kernel-shap"``, ``"pda"``, ``"ciu"``.
    n_samples : N (single-feature samplers use one sample per feature instead).
    map : ``"pixel"`` (segment scores spread by the smoothed masks) or ``"segment"`` (hard masks).
    output : ``"probability"`` (softmax of the target, the default of docs/methods.md §4) or ``"logit"``.
    chunk_size : samples per model call; ``"auto"`` measures the fastest.
    """

    def __init__(self, forward_func, segmenter: str | FeatureSegmenter = "grid-bilinear",
                 smoothing: str | Smoothing = "none", sampler: str | PerturbationSampler = "random",
                 replacement=0.0, calculator: str | Calculator = "rise", n_samples: int = 1000,
                 map: str = "pixel", n_segments: int = 49, sigma: float | str = "auto",
                 output: str = "probability", chunk_size: int | str = "auto", segmenter_options: dict | None = None,
                 sampler_options: dict | None = None):
        super().__init__(check_eval_model(forward_func, "forward_func"))
        self.segmenter = segmenter if isinstance(segmenter, FeatureSegmenter) else make_feature_segmenter(
            segmenter, n_segments=n_segments, **(segmenter_options or {}))
        self.smoothing = make_smoothing(smoothing, sigma)
        self.sampler = make_sampler(sampler, **(sampler_options or {}))
        self.replacement = make_replacement(replacement)
        self.calculator = make_calculator(calculator)
        if not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        if map not in MAPS:
            raise ValueError(f"map must be one of {MAPS}, got {map!r}")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if chunk_size != "auto" and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size must be a positive integer or 'auto', got {chunk_size!r}")
        self.calculator.check(self.sampler)
        self.n_samples, self.map, self.output, self.chunk_size = n_samples, map, output, chunk_size

    @property
    def random(self) -> bool:
        """True when the map depends on the seed: sampled coalitions, random mask shifts or a
        randomly drawn fill (a single-feature sampler with a fixed fill is deterministic)."""
        return (not self.sampler.fixed_count or isinstance(self.smoothing, RandomShift)
                or self.replacement.random)

    @property
    def budget(self) -> str | None:
        """``"n_samples"`` when the sampler draws that many samples; None when it takes one sample
        per feature (occlusion, CIU, the sliding patch, single-feature PDA): then ``n_samples``
        sets nothing."""
        return None if self.sampler.fixed_count else "n_samples"

    @property
    def needs_baselines(self) -> bool:
        """False: removed features are filled by the replacement given at construction."""
        return False

    def __str__(self) -> str:
        count = "n=S" if self.sampler.fixed_count else f"n={self.n_samples}"
        return "|".join([str(self.segmenter), str(self.smoothing), str(self.sampler), count,
                         str(self.replacement), str(self.calculator), self.map])

    def attribute(self, inputs: torch.Tensor, target=None, seed: int | torch.Generator = 0) -> torch.Tensor:
        """Attributions ``[B, C, H, W]`` (the same value in every channel), seeded per image."""
        return self.attribute_all(inputs, target, seed=seed)[(str(self.calculator), self.map)]

    def attribute_all(self, inputs: torch.Tensor, target=None, seed: int | torch.Generator = 0,
                      calculators=None, maps=None) -> dict[tuple[str, str], torch.Tensor]:
        """Maps for several calculators and map types from one set of model passes:
        ``{(str(calculator), map): [B, C, H, W]}``."""
        calculators = [self.calculator] if calculators is None else [make_calculator(c) for c in calculators]
        maps = [self.map] if maps is None else list(maps)
        for calculator in calculators:
            calculator.check(self.sampler)
        for kind in maps:
            if kind not in MAPS:
                raise ValueError(f"map must be one of {MAPS}, got {kind!r}")
        check_images(inputs, "inputs")
        device = model_device(self.forward_func)
        inputs = inputs.to(device)
        with torch.inference_mode():
            logits = forward_checked(self.forward_func, inputs)
        target = check_targets(target, inputs.shape[0], logits.shape[1]).to(device)
        chunk = self.chunk_size if self.chunk_size != "auto" else measure_forward_chunk(
            self.forward_func, inputs.shape[1:], device, inputs.dtype)
        seeds = image_seeds(inputs, seed)
        need_rise_sum = "pixel" in maps and any(isinstance(c, RiseScore) for c in calculators)
        out = {(str(c), kind): torch.empty_like(inputs) for c in calculators for kind in maps}
        for index in range(inputs.shape[0]):
            generator = torch.Generator().manual_seed(seeds[index])
            features, obs, rise_sum, offsets = self.observe(inputs[index], int(target[index]), generator, chunk,
                                                            need_rise_sum=need_rise_sum)
            weights = None
            for calculator in calculators:
                scores = calculator(obs).to(inputs.dtype).to(device)
                for kind in maps:
                    if kind == "segment":
                        values = scores[features.labels]
                    elif isinstance(calculator, RiseScore):
                        values = (rise_sum / calculator.scale(obs)).to(inputs.dtype)
                    else:
                        weights = mean_weights(features, offsets) if weights is None else weights
                        values = torch.einsum("s,shw->hw", scores, weights)
                    out[(str(calculator), kind)][index] = values.unsqueeze(0)
        return out

    def _features(self, image: torch.Tensor) -> Features:
        features = self.smoothing(self.segmenter(image))
        if tuple(features.weights.shape[-2:]) != tuple(image.shape[-2:]) or tuple(
                features.labels.shape) != tuple(image.shape[-2:]):
            raise ValueError(f"segmenter {self.segmenter} returned masks of size "
                             f"{tuple(features.weights.shape[-2:])} for an image of size {tuple(image.shape[-2:])}")
        if features.count < 2:
            raise ValueError(f"segmenter {self.segmenter} produced a single feature; perturbation needs at least two")
        return features

    @torch.inference_mode()
    def observe(self, image: torch.Tensor, target: int, generator: torch.Generator, chunk: int,
                need_rise_sum: bool = True):
        """Run the model on every sample of one image ``[C, H, W]``: returns its features, the
        :class:`Observations`, Σ_n Y_n m_n(x) ``[H, W]`` (RISE's sum) and the shift offsets."""
        features = self._features(image)
        count = features.count
        n_samples = self.sampler.count(self.n_samples, count)
        z, weights = self.sampler.draw(n_samples, count, generator)
        offsets = None
        if isinstance(self.smoothing, RandomShift):
            offsets = torch.randint(0, features.shift, (n_samples, 2), generator=generator).to(image.device)
        reference = self.replacement.reference(image, features.labels, generator)
        choices = self.replacement.draw(n_samples + 2, generator)
        rows = torch.cat([z, torch.ones(1, count, dtype=torch.bool), torch.zeros(1, count, dtype=torch.bool)])
        rows = rows.to(image.device, image.dtype)
        outputs = torch.empty(rows.shape[0], dtype=torch.float64, device=image.device)
        rise_sum = torch.zeros(image.shape[-2:], dtype=torch.float64, device=image.device) if need_rise_sum else None
        for start in range(0, rows.shape[0], chunk):
            stop = min(start + chunk, rows.shape[0])
            part_offsets = None
            if offsets is not None:
                part_offsets = torch.cat([offsets, torch.full((2, 2), features.cell // 2, device=image.device,
                                                              dtype=offsets.dtype)])[start:stop]
            masks = keep_masks(features, rows[start:stop], part_offsets).unsqueeze(1)
            fill = reference
            if self.replacement.per_sample:
                fill = self.replacement.fill(image, masks, reference,
                                             None if choices is None else choices[start:stop])
            samples = torch.addcmul(fill, masks, image - fill)
            logits = self.forward_func(samples)
            scores = torch.softmax(logits.float(), 1)[:, target] if self.output == "probability" else logits[:, target]
            outputs[start:stop] = scores.double()
            real = max(0, min(stop, n_samples) - start)
            if real and rise_sum is not None:
                # in float64: a float32 product's rounding would depend on the chunk size, which is
                # chosen by timing, and make the same RISE map differ from run to run (~1e-6)
                rise_sum += (scores[:real].double() @ masks[:real, 0].flatten(1).double()).view_as(rise_sum)
        obs = Observations(z=z.double(), y=outputs[:n_samples].cpu(), y_full=float(outputs[n_samples]),
                           y_empty=float(outputs[n_samples + 1]), weights=weights,
                           single_feature=self.sampler.single_feature,
                           inverse=self.sampler.name == "inverse-single",
                           keep_probability=self.sampler.keep_probability)
        return features, obs, rise_sum, offsets
