"""Stage 7 of a perturbation pipeline: from samples and model outputs to one score per feature.

Every calculator takes an :class:`Observations` record (``Z`` ``[N, S]`` with 1 = kept, outputs
``Y`` ``[N]``, the unperturbed output ``y_full`` and the all-removed output ``y_empty``) and returns
scores ``[S]`` (float64). Formulas follow docs/methods.md §4 (SEG-SMOOTH).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch

from ...core.registry import Registry
from .samplers import LARGE_WEIGHT, shapley_kernel

CALCULATORS = Registry("attribution calculator")  # entries are registered next to their definitions


@dataclass
class Observations:
    z: torch.Tensor            # [N, S] float64, 1 = feature kept
    y: torch.Tensor            # [N] float64 model outputs of the samples
    y_full: float              # output of the unperturbed image (all features kept)
    y_empty: float             # output with every feature removed
    weights: torch.Tensor | None = None   # [N] sampler weights (KernelSHAP), or None
    single_feature: bool = False
    inverse: bool = False      # single-feature samples that keep (not remove) one feature
    keep_probability: float | None = None  # the sampler's keep probability p, when fixed by design


class Calculator(abc.ABC):
    name = "calculator"
    needs_single_feature = False

    def check(self, sampler) -> None:
        if self.needs_single_feature and not getattr(sampler, "single_feature", False):
            raise ValueError(f"the {self.name} calculator needs single-feature samples "
                             f"(sampler 'single' or 'inverse-single'), got sampler {sampler}")

    @abc.abstractmethod
    def __call__(self, obs: Observations) -> torch.Tensor:
        """Scores ``[S]`` (float64), one per feature."""

    def __str__(self) -> str:
        return self.name


RISE_NORMALISERS = ("p", "mean")


@CALCULATORS.register("rise")
class RiseScore(Calculator):
    """RISE (Petsiuk, Das & Saenko, BMVC 2018; docs/methods.md §4): ``a_s = Σ_n z_ns Y_n / (N p)``.

    ``normalise="p"`` (default, the published formula and the authors' code) divides by N times
    the sampler's keep probability p; a sampler without a fixed p falls back to the observed keep
    rate. ``normalise="mean"`` always divides by N times the observed mean of Z (stablesal's
    earlier choice; it differs from the published map by the factor p / mean(Z), a few per cent
    for a few hundred masks). Dividing by a constant rather than each feature's own count makes
    the per-pixel map ``Σ_s a_s w_s(x) = Σ_n Y_n m_n(x) / (N p)``: RISE's saliency formula."""

    name = "rise"

    def __init__(self, normalise: str = "p"):
        if normalise not in RISE_NORMALISERS:
            raise ValueError(f"normalise must be one of {RISE_NORMALISERS}, got {normalise!r}")
        self.normalise = normalise

    def __str__(self):
        return "rise" if self.normalise == "p" else f"rise(normalise={self.normalise})"

    def scale(self, obs) -> float:
        """N p (or N mean(Z)): what the sum Σ_n Y_n z_n is divided by."""
        if self.normalise == "p" and obs.keep_probability is not None:
            return obs.z.shape[0] * obs.keep_probability
        return obs.z.shape[0] * float(obs.z.mean().clamp(min=1e-12))

    def __call__(self, obs):
        return obs.z.T @ obs.y / self.scale(obs)


def _with_reference(obs: Observations):
    """Design ``[Z; 1]`` and outputs ``[Y; y_full]``: LIME's first sample is the image itself."""
    z = torch.cat([obs.z, torch.ones(1, obs.z.shape[1], dtype=obs.z.dtype)])
    y = torch.cat([obs.y, torch.tensor([obs.y_full], dtype=obs.y.dtype)])
    return z, y


def _weighted_least_squares(z, y, weights, ridge: float = 0.0) -> torch.Tensor:
    """Coefficients (without intercept) of ``y ≈ z b + c`` minimising Σ w (y − z b − c)² + ridge |b|²
    (the intercept is not penalised, as in scikit-learn's Ridge)."""
    w = weights / weights.sum()
    z_mean, y_mean = w @ z, w @ y
    zc, yc = z - z_mean, y - y_mean
    root = w.sqrt().unsqueeze(1)
    if ridge > 0:
        gram = (zc * w.unsqueeze(1)).T @ zc * weights.sum() + ridge * torch.eye(z.shape[1], dtype=z.dtype)
        return torch.linalg.solve(gram, (zc * w.unsqueeze(1)).T @ yc * weights.sum())
    return torch.linalg.lstsq(root * zc, root[:, 0] * yc, driver="gelsd").solution


@CALCULATORS.register("lime-ols")
class LimeOLS(Calculator):
    """LIME's surrogate fitted by ordinary least squares of Y on [Z, 1] (minimum-norm solution
    when under-determined)."""

    name = "lime-ols"

    def __call__(self, obs):
        z, y = _with_reference(obs)
        return _weighted_least_squares(z, y, torch.ones_like(y))


@CALCULATORS.register("lime-ridge")
class LimeKernelRidge(Calculator):
    """LIME as the ``lime`` package fits it (Ribeiro et al., KDD 2016): ridge (α = 1) weighted by
    the exponential kernel sqrt(exp(−d² / width²)) on the cosine distance d between each sample
    and the full image, width 0.25."""

    def __init__(self, kernel_width: float = 0.25, alpha: float = 1.0):
        self.kernel_width, self.alpha = float(kernel_width), float(alpha)

    def __str__(self):
        return f"lime-ridge(width={self.kernel_width:g},alpha={self.alpha:g})"

    def __call__(self, obs):
        z, y = _with_reference(obs)
        norms = z.norm(dim=1).clamp(min=1e-12)
        cosine = z.sum(1) / (norms * z.shape[1] ** 0.5)
        distance = 1 - cosine
        kernel = torch.sqrt(torch.exp(-distance.square() / self.kernel_width ** 2))
        return _weighted_least_squares(z, y, kernel, ridge=self.alpha)


@CALCULATORS.register("kernel-shap")
class KernelShap(Calculator):
    """KernelSHAP (Lundberg & Lee, NeurIPS 2017): weighted least squares with the Shapley kernel;
    the empty and full coalitions are always included with a large finite weight. Rows from the
    SHAP sampler keep the sampler's weights; other samplers' rows get the kernel of their size."""

    name = "kernel-shap"

    def __call__(self, obs):
        count = obs.z.shape[1]
        weights = obs.weights if obs.weights is not None else shapley_kernel(obs.z.sum(1), count)
        z = torch.cat([obs.z, torch.ones(1, count, dtype=obs.z.dtype), torch.zeros(1, count, dtype=obs.z.dtype)])
        y = torch.cat([obs.y, torch.tensor([obs.y_full, obs.y_empty], dtype=obs.y.dtype)])
        w = torch.cat([weights.to(obs.y.dtype), torch.tensor([LARGE_WEIGHT, LARGE_WEIGHT], dtype=obs.y.dtype)])
        return _weighted_least_squares(z, y, w)


@CALCULATORS.register("pda")
class PredictionDifference(Calculator):
    """PDA (Zintgraf et al., ICLR 2017): ``y(x) − mean(Y_n | feature s removed in sample n)``; with
    random samplers this is the multi-segment variant. Features never removed score 0."""

    name = "pda"

    def __call__(self, obs):
        removed = 1 - obs.z
        counts = removed.sum(0)
        mean_removed = (removed.T @ obs.y) / counts.clamp(min=1)
        return torch.where(counts > 0, obs.y_full - mean_removed, torch.zeros_like(mean_removed))


@CALCULATORS.register("ciu")
class ContextualImportance(Calculator):
    """CIU (Främling, 2020) from single-feature samples: contextual importance CI_s = (Cmax − Cmin)
    over the reference and the sample that changes s, divided by the output range (1 for
    probabilities); contextual utility CU_s = (y_present − Cmin) / (Cmax − Cmin) where y_present
    is the output with s present; score = CI × CU. With samples that remove s the reference is
    the full image; with inverse samples (keep only s) it is the empty image. Reconstruction:
    SEG-SMOOTH does not spell out how CI and CU combine into one map; their product is used."""

    name = "ciu"
    needs_single_feature = True

    def __init__(self, output_range: float = 1.0):
        self.output_range = float(output_range)

    def __call__(self, obs):
        count = obs.z.shape[1]
        if obs.z.shape[0] != count:
            raise ValueError("CIU needs exactly one single-feature sample per feature")
        changed = obs.z.argmin(1) if not obs.inverse else obs.z.argmax(1)  # the feature each sample changes
        values = torch.empty(count, dtype=obs.y.dtype)
        values[changed] = obs.y
        reference = torch.full_like(values, obs.y_empty if obs.inverse else obs.y_full)
        present = values if obs.inverse else reference
        low, high = torch.minimum(values, reference), torch.maximum(values, reference)
        spread = high - low
        importance = spread / self.output_range
        utility = torch.where(spread > 0, (present - low) / spread.clamp(min=1e-12), torch.full_like(spread, 0.5))
        return importance * utility




def make_calculator(name, **options) -> Calculator:
    if isinstance(name, Calculator):
        return name
    return CALCULATORS.lookup(name)(**options)
