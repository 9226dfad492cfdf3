"""How many retrained models and explainer samples a reliable mean map needs (docs/methods.md §7.3).

Model of a map (each model's grey map, centred over its pixels so that an offset is no signal):
``g_{k,r}(x) = μ(x) + m_k(x) + s_{k,r}(x)``, with μ the mean over infinitely many models, m_k the
deviation of retrained model k (variance σ²_m(x)), and s_{k,r} the Monte Carlo noise of explainer
run r on model k (variance σ²_s(x), which falls as 1 / n with n samples). The mean of K′ models
explained with n samples each then correlates with μ, over the pixels of an image, as

    ρ(K′, n) = sqrt( V_μ / (V_μ + (E_m + E_s · n₀ / n) / K′) ),

the Spearman–Brown formula of classical test theory (Spearman 1910; Brown 1910) with the two
noise sources kept apart; V_μ is the spatial variance of μ, E_m and E_s are σ²_m and σ²_s(n₀)
averaged over pixels. A pilot of K ≥ 3 models with two explainer runs each (one for
deterministic methods, where E_s = 0) estimates the three terms per image:

* E_s from the repeats: the mean over models and pixels of (g_{k,1} − g_{k,2})² / 2;
* E_m + E_s from the unbiased variance across models of the first runs, minus E_s;
* V_μ from the spatial variance of the pilot mean, minus its noise (E_m + E_s) / K.

The prediction is averaged over images. It is validated against held-out models: two disjoint
groups of K′ models give mean maps whose correlation estimates ρ(K′, n₀)², so the observed
reliability is its square root (:func:`observed_reliability`).

Accumulation is streamed: per image, running sums ``[N, H, W]`` over models; no map of a past
model is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ...metrics.similarity import grey_maps
from ...core.seeding import derive
from ...core.settings import StudySettings
from ..stability.run import explain_groupings, method_is_random

MAX_MODELS = 10_000
MAX_SAMPLES = 1_000_000


def centred(grey: torch.Tensor) -> torch.Tensor:
    """Grey maps ``[N, H, W]`` minus each map's mean over pixels (float64)."""
    grey = grey.double()
    return grey - grey.flatten(1).mean(1).view(-1, 1, 1)


@dataclass
class PilotAccumulator:
    """Running sums over pilot models for one method × grouping (all ``[N, H, W]`` float64)."""

    n_models: int = 0
    mean: torch.Tensor | None = None        # running mean of the first runs
    m2: torch.Tensor | None = None          # running sum of squared deviations (Welford)
    repeat_sq: torch.Tensor | None = None   # sum over models of (g1 − g2)² / 2
    repeats: int = 0

    def add(self, first: torch.Tensor, second: torch.Tensor | None = None) -> None:
        """One model's centred maps: its first run and, for random explainers, a second run."""
        first = centred(first)
        self.n_models += 1
        if self.mean is None:
            self.mean, self.m2 = first.clone(), torch.zeros_like(first)
            self.repeat_sq = torch.zeros_like(first)
        else:
            delta = first - self.mean
            self.mean += delta / self.n_models
            self.m2 += delta * (first - self.mean)
        if second is not None:
            self.repeat_sq += (first - centred(second)).square() / 2
            self.repeats += 1

    def components(self) -> dict:
        """Per image ``[N]``: V_μ, E_m and E_s (the variance terms of the module docstring)."""
        if self.n_models < 3:
            raise ValueError(f"a pilot needs at least 3 models, got {self.n_models}")
        between = (self.m2 / (self.n_models - 1)).flatten(1).mean(1)           # E_m + E_s
        explainer = (self.repeat_sq / max(self.repeats, 1)).flatten(1).mean(1) if self.repeats else torch.zeros_like(between)
        spatial = self.mean.square().flatten(1).mean(1) - between / self.n_models
        return {"V_mu": spatial.clamp(min=0).numpy(), "E_m": (between - explainer).clamp(min=0).numpy(),
                "E_s": explainer.numpy()}


def predicted_reliability(components: dict, n_models: int | np.ndarray, n_samples: float | None = None,
                          pilot_samples: float | None = None) -> float:
    """ρ(K′, n) averaged over images (NaN-free: an image with no signal counts as 0)."""
    scale = 1.0 if n_samples is None or pilot_samples is None else pilot_samples / n_samples
    noise = components["E_m"] + components["E_s"] * scale
    signal = components["V_mu"]
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.sqrt(np.where(signal > 0, signal / (signal + noise / n_models), 0.0))
    return float(np.mean(rho))


@dataclass
class Plan:
    """A pilot's predictions for one method × grouping."""

    method: str
    grouping: str
    random: bool
    pilot_models: int
    pilot_samples: int | None
    components: dict = field(repr=False)

    def reliability(self, n_models: int, n_samples: int | None = None) -> float:
        if n_samples is not None and not self.random:
            raise ValueError(f"{self.method} is deterministic: its maps have no sample count to plan")
        return predicted_reliability(self.components, n_models, n_samples, self.pilot_samples)

    def models_needed(self, target: float, n_samples: int | None = None) -> int | None:
        """The fewest models whose mean map reaches ``target`` (None: not within MAX_MODELS)."""
        check_target(target)
        return smallest_reaching(lambda k: self.reliability(k, n_samples) >= target, MAX_MODELS)

    def samples_needed(self, target: float, n_models: int) -> int | None:
        """The fewest explainer samples with which ``n_models`` reach ``target`` (None: not even
        with MAX_SAMPLES, because model-to-model variation alone keeps the mean below it)."""
        check_target(target)
        if not self.random:
            raise ValueError(f"{self.method} is deterministic: the sample planner needs a random method "
                             f"(smoothgrad, vargrad, gradient_shap, ...)")
        return smallest_reaching(lambda n: self.reliability(n_models, n) >= target, MAX_SAMPLES)

    def recommendation(self, target: float, max_samples: int = 256) -> dict:
        """The fewest models that reach ``target`` with at most ``max_samples`` samples, and the
        fewest samples those models need (models cost a training run each, samples one pass)."""
        check_target(target)
        if not self.random:
            models = self.models_needed(target)
            return {"method": self.method, "grouping": self.grouping, "target": target, "models": models,
                    "samples": None}
        models = self.models_needed(target, max_samples)
        samples = None if models is None else self.samples_needed(target, models)
        return {"method": self.method, "grouping": self.grouping, "target": target, "models": models,
                "samples": samples}

    def sentence(self, target: float, max_samples: int = 256) -> str:
        """What to do, in one line a user can act on."""
        plan = self.recommendation(target, max_samples)
        where = f"{self.method} with {self.grouping}"
        if plan["models"] is None:
            return (f"{where}: reliability {target:g} is out of reach (more than {MAX_MODELS} models"
                    + (f" at {max_samples} samples)" if self.random else ")"))
        samples = f" and {plan['samples']} samples" if plan["samples"] is not None else ""
        models = f"{plan['models']} model" + ("" if plan["models"] == 1 else "s")
        return (f"{where}: {models}{samples} for reliability {target:g} "
                f"(predicted from {self.pilot_models} pilot models)")


def smallest_reaching(reaches, largest: int) -> int | None:
    """The smallest count in 1 … ``largest`` for which ``reaches(count)`` holds, by bisection (ρ grows
    with both the number of models and of samples); None when even ``largest`` does not."""
    if not reaches(largest):
        return None
    low, high = 1, largest
    while low < high:
        middle = (low + high) // 2
        if reaches(middle):
            high = middle
        else:
            low = middle + 1
    return low


def check_target(target: float) -> None:
    if not (isinstance(target, (int, float)) and 0.0 < target < 1.0):
        raise ValueError(f"target reliability must be in (0, 1), got {target!r}: a mean of finitely many models "
                         "never correlates perfectly with the mean over all models")


def pilot(models: Sequence[torch.nn.Module], images: torch.Tensor, targets: torch.Tensor, method: str,
          groupings: dict, settings: StudySettings, progress: bool = False) -> Plan:
    """A :class:`Plan` from pilot ``models`` (K ≥ 3): every model explained once, random methods
    twice with independent draws (``derive(settings.seed, "pilot", k, repeat)``)."""
    if len(models) < 3:
        raise ValueError(f"models: a pilot needs at least 3 models, got {len(models)}")
    grouping = next(iter(groupings))
    random = method_is_random(method, models[0])
    accumulator = PilotAccumulator()
    for index, model in enumerate(tqdm(models, desc=f"pilot {method}/{grouping}", disable=not progress)):
        runs = [grey_maps(explain_groupings(method, model, derive(settings.seed, "pilot", index, repeat), images,
                                            targets, groupings, settings)[grouping]).cpu()
                for repeat in range(2 if random else 1)]
        accumulator.add(runs[0], runs[1] if random else None)
    samples = settings.n_samples if random else None
    return Plan(method=method, grouping=grouping, random=random, pilot_models=len(models),
                pilot_samples=samples, components=accumulator.components())


def observed_reliability(group_means: Sequence[torch.Tensor]) -> float:
    """Reliability observed from the mean maps ``[N, H, W]`` of disjoint groups of K′ models each:
    the square root of the correlation between two groups' mean maps (clipped at 0), averaged over
    images and over every pair of groups."""
    values = []
    for a in range(len(group_means)):
        for b in range(a + 1, len(group_means)):
            x, y = centred(group_means[a]).flatten(1), centred(group_means[b]).flatten(1)
            correlation = (x * y).sum(1) / (x.norm(dim=1) * y.norm(dim=1)).clamp(min=1e-300)
            values.append(correlation.clamp(min=0).sqrt())
    if not values:
        raise ValueError("observed_reliability needs at least two groups of models")
    return float(torch.stack(values).mean())


def reliability_curve(plan: Plan, models: Sequence[int] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32),
                      samples: Sequence[int] | None = None) -> list[dict]:
    """Predicted ρ for each K′ (and each sample count, for random methods)."""
    samples = list(samples) if samples is not None and plan.random else [plan.pilot_samples]
    return [{"method": plan.method, "grouping": plan.grouping, "models": k, "samples": n,
             "reliability": plan.reliability(k, n if plan.random else None)} for k in models for n in samples]


def held_out_reliability(maps: torch.Tensor, n_models: int, n_draws: int = 20, seed: int = 0) -> float:
    """Observed reliability of K′-model mean maps from held-out models' grey maps ``[P, N, H, W]``
    (P ≥ 2 K′): ``n_draws`` random draws of two disjoint groups of ``n_models``, each scored by
    :func:`observed_reliability`, averaged."""
    if maps.shape[0] < 2 * n_models:
        raise ValueError(f"held-out reliability at K′ = {n_models} needs at least {2 * n_models} models, got "
                         f"{maps.shape[0]}")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_draws):
        order = torch.from_numpy(rng.permutation(maps.shape[0]))
        values.append(observed_reliability([maps[order[:n_models]].double().mean(0),
                                            maps[order[n_models:2 * n_models]].double().mean(0)]))
    return float(np.mean(values))
