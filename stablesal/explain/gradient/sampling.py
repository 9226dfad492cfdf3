"""Samplers q(x̂ | x) for gradient integration, z = Σ_k w_k A(∇f(x̂_k), x̂_k, x) (docs/methods.md §1).

A sampler draws the samples of one image in blocks of :attr:`Sampler.block` samples from that
image's own ``torch.Generator``; the block size is fixed, so the samples - and therefore the
maps - do not depend on the chunk size used for the model passes, nor on the other images in
the batch. Add a sampler by subclassing :class:`Sampler` and implementing :meth:`Sampler.draw`.

A random sampler may also implement :meth:`Sampler.draw_rows`: any samples of any images at once,
from counter-based streams (:mod:`stablesal.counter_streams`). Sample ``k`` of an image is then a
function of the image's seed and ``k`` alone, so a whole chunk of rows is one draw - what a GPU
needs - and still independent of the chunk size and the batch. The two kinds of stream give
different (equally distributed) samples; :class:`stablesal.attribution.GradientIntegration`
chooses with ``rng``.

Noise levels are fractions of the input range ``input_range`` (default ``(0, 1)``, stablesal's
pixel convention), as in PAIR saliency and Zennit; Captum's ``stdevs`` is an absolute σ.
"""

from __future__ import annotations

import abc
import math

import torch
from captum.attr._utils.approximation_methods import approximation_parameters

from ...core.counter_streams import normal, substream, uniform
from ...core.fills import canonical, fill_images, is_random
from ...core.settings import SUPPRESSION_MODES, SUPPRESSION_UNITS


class Sampler(abc.ABC):
    """Draws ``n_samples`` samples per image, with quadrature weights ``weights()`` summing to 1."""

    block = 16  # samples per generator call; fixed so draws are independent of chunk sizes
    random = True
    budget = "n_samples"  # the constructor keyword that sets n_samples (None: the count is fixed)
    normalise_weights = True  # divide by Σ w (Monte Carlo); quadrature rules use their weights as they are
    name = "sampler"

    def __init__(self, n_samples: int):
        if not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        self.n_samples = n_samples

    def params(self) -> dict:
        return {"n": self.n_samples}

    def __str__(self) -> str:
        return f"{self.name}(" + ",".join(f"{k}={v}" for k, v in sorted(self.params().items())) + ")"

    def weights(self, device=None) -> torch.Tensor:
        """Weight of each sample in the average ``[n_samples]`` (uniform by default)."""
        return torch.full((self.n_samples,), 1.0 / self.n_samples, device=device)

    @abc.abstractmethod
    def draw(self, x: torch.Tensor, start: int, stop: int, generator: torch.Generator | None,
             baseline: torch.Tensor | None = None, segments: torch.Tensor | None = None):
        """Samples ``start..stop-1`` of image ``x`` ``[C, H, W]``.

        Returns ``(x_hat [k, C, H, W], delta [k, C, H, W] or None)``, where ``delta`` is the
        factor ``x − x'`` that path methods multiply the gradient by.
        """

    @property
    def counter_draws(self) -> bool:
        """Whether :meth:`draw_rows` is implemented for these settings: by this class or an
        ancestor that also defines the :meth:`draw` in use, so a subclass that changes only
        ``draw`` is never given its parent's counter draw."""
        def owner(name):
            return next(cls for cls in type(self).__mro__ if name in cls.__dict__)

        rows_owner = owner("draw_rows")
        return rows_owner is not Sampler and issubclass(rows_owner, owner("draw"))

    def draw_rows(self, x: torch.Tensor, sample: torch.Tensor, seeds: torch.Tensor,
                  baseline: torch.Tensor | None = None, segments: torch.Tensor | None = None):
        """Sample number ``sample[r]`` of image ``x[r]``, for every row ``r`` at once, from the
        counter stream seeded with ``seeds[r]``.

        ``x`` ``[R, C, H, W]``; ``sample``, ``seeds``: int64 ``[R]``; ``baseline``: ``[R, C, H, W]``
        (one per row) or, for GradientSHAP, the reference set ``[M, C, H, W]``; ``segments``
        ``[R, H, W]``. Returns ``(x_hat [R, C, H, W], delta [R, C, H, W] or None)``.
        """
        raise NotImplementedError(f"{type(self).__name__} has no counter-based draw")


class Identity(Sampler):
    """The input itself, once: plain gradients (Simonyan et al., 2014)."""

    random = False
    budget = None  # always one sample
    name = "identity"

    def __init__(self):
        super().__init__(1)

    def params(self):
        return {}

    def draw(self, x, start, stop, generator, baseline=None, segments=None):
        return x.unsqueeze(0).expand(stop - start, *x.shape), x.unsqueeze(0).expand(stop - start, *x.shape)

    def draw_batch(self, inputs, start, stop, baselines):
        """All images at once (deterministic samplers only): ``[B, k, C, H, W]`` samples and deltas."""
        expanded = inputs.unsqueeze(1).expand(-1, stop - start, *inputs.shape[1:])
        return expanded, expanded


class StraightLinePath(Sampler):
    """x̂ = x' + α (x − x') on a quadrature grid (Integrated Gradients, Sundararajan et al., 2017).

    Uses Captum's quadrature rules (``method``: gausslegendre, riemann_trapezoid,
    riemann_left/right/middle), so the nodes and weights are exactly Captum's.
    """

    random = False
    budget = "n_steps"
    normalise_weights = False  # Captum's quadrature weights as they are, so results equal Captum's
    name = "path"

    def __init__(self, n_steps: int = 50, method: str = "gausslegendre"):
        super().__init__(n_steps)

        step_sizes, alphas = approximation_parameters(method)
        self.method = method
        self._alphas = torch.tensor(alphas(n_steps), dtype=torch.float64)
        self._weights = torch.tensor(step_sizes(n_steps), dtype=torch.float64)

    def params(self):
        return {"n": self.n_samples, "rule": self.method}

    def weights(self, device=None):
        return self._weights.float().to(device)

    def draw(self, x, start, stop, generator, baseline=None, segments=None):
        base = torch.zeros_like(x) if baseline is None else baseline
        alphas = self._alphas[start:stop].to(x.device, x.dtype).view(-1, 1, 1, 1)
        delta = x - base
        return base + alphas * delta, delta.unsqueeze(0).expand(stop - start, *x.shape)

    def draw_batch(self, inputs, start, stop, baselines):
        alphas = self._alphas[start:stop].to(inputs.device, inputs.dtype).view(1, -1, 1, 1, 1)
        delta = (inputs - baselines).unsqueeze(1)
        return baselines.unsqueeze(1) + alphas * delta, delta.expand(-1, stop - start, *inputs.shape[1:])


class GaussianNoise(Sampler):
    """x̂ = x + ε, ε ~ N(0, σ²), σ = ``noise_level`` × (input range) (SmoothGrad, Smilkov et al., 2017)."""

    name = "gaussian"

    def __init__(self, n_samples: int = 50, noise_level: float = 0.15, input_range=(0.0, 1.0)):
        super().__init__(n_samples)
        if noise_level < 0:
            raise ValueError(f"noise_level must be >= 0 (a fraction of the input range), got {noise_level}")
        self.noise_level, self.input_range = float(noise_level), tuple(input_range)

    def params(self):
        return {"n": self.n_samples, "sigma": self.noise_level}

    def draw(self, x, start, stop, generator, baseline=None, segments=None):
        sigma = self.noise_level * (self.input_range[1] - self.input_range[0])
        noise = torch.randn((stop - start, *x.shape), generator=generator, device=x.device, dtype=x.dtype)
        return x + sigma * noise, None

    def draw_rows(self, x, sample, seeds, baseline=None, segments=None):
        sigma = self.noise_level * (self.input_range[1] - self.input_range[0])
        values = x[0].numel()
        return x + sigma * normal(substream(seeds, 0), sample * values, values, x.dtype).view_as(x), None


class UniformNoise(GaussianNoise):
    """x̂ = x + ε, ε ~ U(−a, a), a = ``noise_level`` × (input range)."""

    name = "uniform"

    def draw(self, x, start, stop, generator, baseline=None, segments=None):
        half = self.noise_level * (self.input_range[1] - self.input_range[0])
        noise = torch.rand((stop - start, *x.shape), generator=generator, device=x.device, dtype=x.dtype)
        return x + half * (2 * noise - 1), None

    def draw_rows(self, x, sample, seeds, baseline=None, segments=None):
        half = self.noise_level * (self.input_range[1] - self.input_range[0])
        values = x[0].numel()
        return x + half * (2 * uniform(substream(seeds, 0), sample * values, values, x.dtype).view_as(x) - 1), None




class Suppression(Sampler):
    """Samples made by erasing parts of the image, adding no information (Luo, McDermott &
    O'Riordan, *Sampling Matters in Explanations*, arXiv 2506.19442).

    **Reconstruction** (docs/methods.md §1; the paper's exact operator is not available): per sample
    draw a keep-rate π ~ U(0, 1), then a keep mask m ~ Bernoulli(π) per unit (pixel, square
    patch, or segment), shared across channels; x̂ = m ⊙ x + (1 − m) ⊙ fill in pixel space
    (``fill``: any fill of :mod:`stablesal.fills`; 0 = black, the default). Averaging over
    π ~ U(0, 1) makes the samples those of Owen's multilinear
    extension, the link to Shapley values the paper claims.

    Modes: ``"bernoulli"`` (default), ``"fixed"`` (π = ``keep_rate``), ``"continuous"``
    (x̂ = u ⊙ x, u ~ U(0, 1) per unit), ``"global"`` (x̂ = a·x, a ~ U(0, 1): IG's path with a
    black baseline sampled at random; a control, not the method).
    ``unit``: ``"pixel"``, ``"patch"`` (squares of ``patch_size``) or ``"segment"`` (needs segments).
    """

    name = "suppression"

    def __init__(self, n_samples: int = 50, mode: str = "bernoulli", unit: str = "pixel", patch_size: int = 4,
                 keep_rate: float = 0.5, fill: float | str = 0.0):
        super().__init__(n_samples)
        if mode not in SUPPRESSION_MODES:
            raise ValueError(f"mode must be one of {SUPPRESSION_MODES}, got {mode!r}")
        if unit not in SUPPRESSION_UNITS:
            raise ValueError(f"unit must be 'pixel', 'patch' or 'segment', got {unit!r}")
        if not 0 <= keep_rate <= 1:
            raise ValueError(f"keep_rate must be in [0, 1], got {keep_rate}")
        self.mode, self.unit, self.patch_size = mode, unit, int(patch_size)
        self.keep_rate, self.fill = float(keep_rate), canonical(fill, "fill")

    def params(self):
        params = {"n": self.n_samples, "mode": self.mode, "unit": self.unit, "fill": self.fill}
        if self.unit == "patch":
            params["patch"] = self.patch_size
        if self.mode == "fixed":
            params["keep"] = self.keep_rate
        return params

    def _unit_values(self, count: int, units: int, generator, device) -> torch.Tensor:
        """Keep values in [0, 1] per sample and unit: ``[count, units]``."""
        if self.mode == "global":
            return torch.rand((count, 1), generator=generator, device=device).expand(count, units)
        uniform_values = torch.rand((count, units), generator=generator, device=device)
        if self.mode == "continuous":
            return uniform_values
        if self.mode == "fixed":
            rate = torch.full((count, 1), self.keep_rate, device=device)
        else:
            rate = torch.rand((count, 1), generator=generator, device=device)
        return (uniform_values < rate).float()

    def _unit_values_rows(self, units, sample, seeds) -> torch.Tensor:
        """The same from counter streams: ``[R, max units]`` for sample ``sample[r]`` of row ``r``;
        ``units`` an int or, for segments, ``[R]`` (each image's own count fixes its stream layout).
        Drawn and compared in float64: in a half-precision draw a uniform can round up to the rate."""
        width = int(units.max()) if isinstance(units, torch.Tensor) else units
        if self.mode == "global":
            return uniform(substream(seeds, 1), sample, 1, torch.float64).expand(-1, width)
        uniform_values = uniform(substream(seeds, 0), sample * units, width, torch.float64)
        if self.mode == "continuous":
            return uniform_values
        if self.mode == "fixed":
            rate = torch.full_like(uniform_values[:, :1], self.keep_rate)
        else:
            rate = uniform(substream(seeds, 1), sample, 1, torch.float64)
        return (uniform_values < rate).to(torch.float64)

    def _units(self, height: int, width: int, segments):
        """Units per image: an int, or ``[R]`` for segments ``[R, H, W]``."""
        if self.unit == "pixel":
            return height * width
        if self.unit == "patch":
            return math.ceil(height / self.patch_size) * math.ceil(width / self.patch_size)
        if segments is None:
            raise ValueError("Suppression(unit='segment') needs segments: pass segments= or a grouping segmenter")
        if segments.dim() == 2:
            return int(segments.max()) + 1
        return segments.flatten(1).amax(1) + 1

    def _masks(self, values: torch.Tensor, height: int, width: int, segments) -> torch.Tensor:
        """Per-unit keep values ``[n, units]`` as pixel masks ``[n, 1, H, W]``; ``segments`` is one
        partition ``[H, W]`` for all n, or one per row ``[n, H, W]``."""
        count = values.shape[0]
        if self.unit == "pixel":
            return values.view(count, 1, height, width)
        if self.unit == "patch":
            rows, cols = math.ceil(height / self.patch_size), math.ceil(width / self.patch_size)
            mask = values.view(count, 1, rows, cols)
            mask = mask.repeat_interleave(self.patch_size, 2).repeat_interleave(self.patch_size, 3)
            return mask[:, :, :height, :width]
        if segments.dim() == 2:
            return values[:, segments.reshape(-1)].view(count, 1, height, width)
        return values.gather(1, segments.reshape(count, -1)).view(count, 1, height, width)

    def draw(self, x, start, stop, generator, baseline=None, segments=None):
        count, (_, height, width) = stop - start, x.shape
        values = self._unit_values(count, self._units(height, width, segments), generator, x.device)
        mask = self._masks(values, height, width, segments).to(x.dtype)
        if isinstance(self.fill, float):  # a constant: no fill image needed
            return mask * x + (1 - mask) * self.fill, None
        fill = fill_images(self.fill, x.unsqueeze(0), None if segments is None else segments.unsqueeze(0), generator)
        return mask * x + (1 - mask) * fill, None

    @property
    def counter_draws(self) -> bool:
        return super().counter_draws and not is_random(self.fill)  # a random fill draws from a generator

    def draw_rows(self, x, sample, seeds, baseline=None, segments=None):
        if not self.counter_draws:
            raise NotImplementedError(f"Suppression with the random fill {self.fill!r} has no counter-based draw")
        height, width = x.shape[-2:]
        values = self._unit_values_rows(self._units(height, width, segments), sample, seeds)
        mask = self._masks(values, height, width, segments).to(x.dtype)
        fill = self.fill if isinstance(self.fill, float) else fill_images(self.fill, x, segments, None)
        return mask * x + (1 - mask) * fill, None


class BaselineDistribution(Sampler):
    """Expected Gradients / GradientSHAP (Erion et al., 2021; Lundberg & Lee, 2017): per sample
    a baseline x' drawn from ``baselines`` ``[M, C, H, W]`` and α ~ U(0, 1); x̂ = x' + α (x − x')
    (+ optional Gaussian noise), multiplied by δ = x − x'."""

    name = "baseline_distribution"

    def __init__(self, n_samples: int = 50, noise_level: float = 0.0, input_range=(0.0, 1.0)):
        super().__init__(n_samples)
        self.noise_level, self.input_range = float(noise_level), tuple(input_range)

    def params(self):
        return {"n": self.n_samples, "sigma": self.noise_level}

    def draw(self, x, start, stop, generator, baseline=None, segments=None):
        if baseline is None or baseline.dim() != 4:
            raise ValueError("GradientSHAP needs baselines=<tensor [M, C, H, W]> (a set of reference images)")
        count = stop - start
        pick = torch.randint(0, baseline.shape[0], (count,), generator=generator, device=x.device)
        alpha = torch.rand((count, 1, 1, 1), generator=generator, device=x.device, dtype=x.dtype)
        chosen = baseline[pick]
        delta = x.unsqueeze(0) - chosen
        x_hat = chosen + alpha * delta
        if self.noise_level > 0:
            sigma = self.noise_level * (self.input_range[1] - self.input_range[0])
            x_hat = x_hat + sigma * torch.randn(x_hat.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x_hat, delta

    def draw_rows(self, x, sample, seeds, baseline=None, segments=None):
        if baseline is None or baseline.dim() != 4:
            raise ValueError("GradientSHAP needs baselines=<tensor [M, C, H, W]> (a set of reference images)")
        references = baseline.shape[0]
        pick = (uniform(substream(seeds, 0), sample, 1, torch.float64)[:, 0] * references).long()
        chosen = baseline[pick.clamp(max=references - 1)]  # u ≤ 1: the clamp only guards u = 1
        alpha = uniform(substream(seeds, 1), sample, 1, x.dtype).view(-1, 1, 1, 1)
        delta = x - chosen
        x_hat = chosen + alpha * delta
        if self.noise_level > 0:
            sigma = self.noise_level * (self.input_range[1] - self.input_range[0])
            values = x[0].numel()
            x_hat = x_hat + sigma * normal(substream(seeds, 2), sample * values, values, x.dtype).view_as(x)
        return x_hat, delta
