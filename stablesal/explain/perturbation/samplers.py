"""Stage 3 of a perturbation pipeline: which features each sample keeps.

A sampler draws ``Z`` ``[N, S]`` (bool, True = keep feature s in sample n) and optional
regression weights ``[N]``, from an explicit ``torch.Generator``. ``Z`` is small (N × S); the
pixel masks it implies are built chunk by chunk by the pipeline.
"""

from __future__ import annotations

import abc
import math

import torch
import itertools

from ...core.registry import Registry

SAMPLERS = Registry("perturbation sampler")  # entries are registered next to their definitions

LARGE_WEIGHT = 1e6  # the empty and full coalitions' finite stand-in for KernelSHAP's infinite weight


def shapley_kernel(sizes: torch.Tensor, count: int) -> torch.Tensor:
    """KernelSHAP weight (M − 1) / (C(M, k) k (M − k)) of coalitions of ``sizes`` out of ``count``
    features (Lundberg & Lee, NeurIPS 2017); sizes 0 and M get :data:`LARGE_WEIGHT`."""
    sizes = sizes.double()
    log_binom = torch.lgamma(torch.tensor(count + 1.0, dtype=torch.float64)) - torch.lgamma(sizes + 1) - torch.lgamma(
        count - sizes + 1)
    inner = (sizes > 0) & (sizes < count)
    weights = torch.full_like(sizes, LARGE_WEIGHT)
    k = sizes[inner]
    weights[inner] = (count - 1) / (torch.exp(log_binom[inner]) * k * (count - k))
    return weights


class PerturbationSampler(abc.ABC):
    """Base class. ``fixed_count`` samplers (single-feature) ignore the requested N."""

    name = "sampler"
    single_feature = False  # True when every sample differs from a reference in exactly one feature
    fixed_count = False
    keep_probability: float | None = None  # the expected share of features kept, when it is fixed by design

    def count(self, n_samples: int, n_features: int) -> int:
        return n_features if self.fixed_count else n_samples

    @abc.abstractmethod
    def draw(self, n_samples: int, n_features: int, generator: torch.Generator):
        """``(Z [N, S] bool, weights [N] float64 or None)``."""

    def __str__(self) -> str:
        return self.name


@SAMPLERS.register("random")
class RandomSampler(PerturbationSampler):
    """Each feature kept independently with probability ``p`` (RISE, LIME)."""

    def __init__(self, p: float = 0.5):
        if not 0 < p < 1:
            raise ValueError(f"p must be in (0, 1), got {p}")
        self.p = self.keep_probability = float(p)

    def __str__(self):
        return f"random(p={self.p:g})"

    def draw(self, n_samples, n_features, generator):
        return torch.rand(n_samples, n_features, generator=generator) < self.p, None


@SAMPLERS.register("random-p")
class ProbabilitySampler(PerturbationSampler):
    """Each sample first draws its keep probability from U(low, high), then keeps each feature
    with it: coalitions of every size, as LIME's ``num_features`` draw does."""

    def __init__(self, low: float = 0.0, high: float = 1.0):
        if not 0 <= low < high <= 1:
            raise ValueError(f"need 0 <= low < high <= 1, got low={low}, high={high}")
        self.low, self.high = float(low), float(high)
        self.keep_probability = (self.low + self.high) / 2

    def __str__(self):
        return f"random-p(U{self.low:g}..{self.high:g})"

    def draw(self, n_samples, n_features, generator):
        p = self.low + (self.high - self.low) * torch.rand(n_samples, 1, generator=generator)
        return torch.rand(n_samples, n_features, generator=generator) < p, None


@SAMPLERS.register("single")
class SingleFeature(PerturbationSampler):
    """Sample s removes feature s only (occlusion, PDA, CIU); N = S."""

    name = "single"
    single_feature = True
    fixed_count = True

    def draw(self, n_samples, n_features, generator):
        return ~torch.eye(n_features, dtype=torch.bool), None


@SAMPLERS.register("inverse-single")
class InverseSingleFeature(PerturbationSampler):
    """Sample s keeps feature s only; N = S."""

    name = "inverse-single"
    single_feature = True
    fixed_count = True

    def draw(self, n_samples, n_features, generator):
        return torch.eye(n_features, dtype=torch.bool), None


@SAMPLERS.register("shap")
class ShapSampler(PerturbationSampler):
    """KernelSHAP's coalition sampling (as the shap package): coalition sizes are taken in the
    order 0, M, 1, M−1, 2, ...; every coalition of a size pair is enumerated while the budget
    allows; the rest of the budget is drawn at random from the remaining sizes in proportion to
    their total kernel weight. Rows carry Shapley-kernel weights (enumerated rows their exact
    weight, random rows an equal share of the remaining sizes' weight)."""

    name = "shap"

    def draw(self, n_samples, n_features, generator):
        m = n_features
        rows, weights = [], []
        budget = n_samples
        order = []
        for k in range(0, m // 2 + 1):
            order.append((k, m - k) if k != m - k else (k,))
        remaining_sizes = []
        for pair in order:
            total = sum(math.comb(m, k) for k in pair)
            if total <= budget and not remaining_sizes:
                for k in pair:
                    chosen = torch.tensor(list(_subsets(m, k)), dtype=torch.long).view(math.comb(m, k), k)
                    block = torch.zeros(chosen.shape[0], m, dtype=torch.bool)
                    block.scatter_(1, chosen, True)
                    rows.extend(block)
                    weights.extend([float(shapley_kernel(torch.tensor([k]), m)[0])] * block.shape[0])
                budget -= total
            else:
                remaining_sizes.extend(pair)
        if budget > 0 and remaining_sizes:
            sizes = torch.tensor(remaining_sizes)
            mass = torch.stack([shapley_kernel(torch.tensor([k]), m)[0] * math.comb(m, k) for k in remaining_sizes])
            picks = sizes[torch.multinomial(mass.float(), budget, replacement=True, generator=generator)]
            share = float(mass.sum()) / budget
            # a uniformly random subset of size k: the k features with the smallest random keys
            ranks = torch.rand(budget, m, generator=generator).argsort(1).argsort(1)
            rows.extend(ranks < picks.unsqueeze(1))
            weights.extend([share] * budget)
        if not rows:
            raise ValueError("the SHAP sampler needs at least one sample")
        return torch.stack(rows), torch.tensor(weights, dtype=torch.float64)


def _subsets(m: int, k: int):
    return itertools.combinations(range(m), k)


@SAMPLERS.register("unique-random")
class UniqueRandom(PerturbationSampler):
    """Random coalitions with keep probability ``p`` and no repeated row (and neither the empty
    nor the full one): every model pass brings new information."""

    def __init__(self, p: float = 0.5):
        if not 0 < p < 1:
            raise ValueError(f"p must be in (0, 1), got {p}")
        self.p = self.keep_probability = float(p)

    def __str__(self):
        return f"unique-random(p={self.p:g})"

    def draw(self, n_samples, n_features, generator):
        available = 2 ** n_features - 2 if n_features < 62 else float("inf")
        if n_samples > available:
            raise ValueError(f"unique-random cannot draw {n_samples} distinct samples of {n_features} features "
                             f"(at most {available})")
        seen, rows = set(), []
        while len(rows) < n_samples:
            batch = torch.rand(max(64, 2 * (n_samples - len(rows))), n_features, generator=generator) < self.p
            for row in batch:
                key = row.numpy().tobytes()
                count = int(row.sum())
                if key in seen or count in (0, n_features):
                    continue
                seen.add(key)
                rows.append(row)
                if len(rows) == n_samples:
                    break
        return torch.stack(rows), None




def make_sampler(name: str | PerturbationSampler, **options) -> PerturbationSampler:
    if isinstance(name, PerturbationSampler):
        return name
    return SAMPLERS.lookup(name)(**options)
