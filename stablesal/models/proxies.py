"""Stability without retraining: K′ variants of one trained model that stand in for K independently
retrained ones (docs/methods.md §8). Each proxy returns models in eval mode with frozen parameters,
which go through the same studies as retrained models (same nulls, same statistics).

* ``finetune``: copies of the trained model fine-tuned for a fraction of an epoch, each with its own
  data order and augmentation (AdamW at a constant learning rate);
* ``bootstrap_finetune``: the same on a bootstrap resample of the training images (Efron's
  resampling of the data a retrained model would see);
* ``spawn``: children spawned from the parent's state at epoch t, sharing its first t epochs and
  differing from then on in data order and augmentation (Frankle et al., *Linear Mode Connectivity
  and the Lottery Ticket Hypothesis*, ICML 2020): t = 0 is a retraining from the same
  initialisation, t = end one mode;
* ``dropout``: thinned networks, one fixed dropout mask per variant (MC dropout, Gal & Ghahramani
  2016, with the mask held fixed so that a variant is one function); refused where the model has no
  dropout layer;
* ``swag``: weight samples of the whole network from SWAG's Gaussian (the mean, diagonal and
  low-rank deviations of the iterates of a short further training at a constant learning rate;
  Maddox et al., NeurIPS 2019), batch-norm statistics recomputed per sample;
* ``laplace``: weight samples of the last linear layer from a Laplace approximation of its posterior
  (the generalised Gauss–Newton of the cross-entropy at the trained weights plus an isotropic prior;
  Daxberger et al., *Laplace Redux*, NeurIPS 2021), the rest of the network shared.

What a proxy costs, as a share of one training run, is in :func:`proxy_cost`; how far each proxy's
between-variant agreement is from the true cross-seed agreement is measured by
``analysis/proxy_calibration.py`` (``experiments/results/proxy.json``).
"""

from __future__ import annotations

import copy
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..core.seeding import derive
from ..core.settings import PROXY_NAMES, ProxySettings
from ..core.storage import load_torch
from ..data.datasets import ImageDataset
from .training import SeedRun, TrainConfig, checkpoint_file, train_one



def _frozen(model: nn.Module) -> nn.Module:
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def finetune_copies(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, k: int,
                    settings: ProxySettings | None = None, config: TrainConfig | None = None, seed: int = 0,
                    bootstrap: bool = False, device: str | torch.device = "cpu") -> list[nn.Module]:
    """``k`` copies of ``model``, each fine-tuned for ``settings.finetune_fraction`` of an epoch over
    ``images`` ``[N, C, H, W]`` in [0, 1] with ``labels`` ``[N]``: AdamW at ``finetune_lr`` × the
    training's learning rate (``config``), its weight decay, batch size and flips, copy i's data
    order from ``derive(seed, "finetune", i)``; with ``bootstrap`` each copy first draws its N
    images with replacement. Batch-norm statistics move with the batches, as in training."""
    settings, config = settings or ProxySettings(), config or TrainConfig()
    if k < 1:
        raise ValueError(f"k must be a positive number of copies, got {k!r}")
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"images and labels must be non-empty and of one length, got {len(images)} and {len(labels)}")
    steps = max(1, round(settings.finetune_fraction * len(images) / config.batch_size))
    copies = []
    for index in range(k):
        generator = torch.Generator().manual_seed(derive(seed, "bootstrap_finetune" if bootstrap else "finetune", index))
        torch.manual_seed(derive(seed, "finetune-global", index))  # any layer that draws from the global RNG
        pool = (torch.randint(len(images), (len(images),), generator=generator) if bootstrap
                else torch.arange(len(images)))
        variant = copy.deepcopy(model).to(device)
        _train_steps(variant, images, labels, pool, steps, settings, config, generator, device)
        copies.append(_frozen(variant))
    return copies


def _train_steps(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, pool: torch.Tensor, steps: int,
                 settings: ProxySettings, config: TrainConfig, generator: torch.Generator,
                 device: str | torch.device, after_step: Callable[[int], None] | None = None) -> None:
    """``steps`` AdamW steps on ``model`` (in place) at ``finetune_lr`` × the training's rate, over
    batches of ``pool`` (indices into ``images``) in an order drawn from ``generator`` (reshuffled
    for every further pass), flips as in training; ``after_step(step)`` runs after each step."""
    order = pool[torch.randperm(len(pool), generator=generator)]
    while len(order) < steps * config.batch_size:  # more than one epoch: further passes, reshuffled
        order = torch.cat([order, pool[torch.randperm(len(pool), generator=generator)]])
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.finetune_lr * config.lr,
                                  weight_decay=config.weight_decay)
    model.train()
    for step in range(steps):
        batch = order[step * config.batch_size:(step + 1) * config.batch_size]
        x, y = images[batch], labels[batch]
        if config.flip:
            flip = torch.rand(len(batch), generator=generator) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        loss = F.cross_entropy(model(x.to(device)), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step(step)


def spawn_children(dataset: ImageDataset, run: dict, config: TrainConfig, epoch: int, k: int,
                   out_dir: Path | str, device: str | torch.device = "cpu",
                   model_factory: Callable[[], nn.Module] | None = None, progress: bool = True,
                   seed: int = 0) -> list[SeedRun]:
    """``k`` children of the seed-plan entry ``run`` spawned at ``epoch`` t: the parent is trained
    to the end of epoch t once (its state kept under ``out_dir``), then each child resumes from
    that state with its own data order and augmentation (``child_seed`` = ``derive(seed, "spawn",
    parent seed, t, i)``) to the last epoch. t = 0 starts every child from the parent's
    initialisation. Children are cached like any trained model."""
    if not isinstance(epoch, int) or not 0 <= epoch < config.epochs:
        raise ValueError(f"spawn epoch must be an integer in [0, {config.epochs}) (at the last epoch every child is "
                         f"the parent: use finetune), got {epoch!r}")
    if k < 1:
        raise ValueError(f"k must be a positive number of children, got {k!r}")
    out_dir = Path(out_dir)
    parent = {**run, "spawn_parent": True, "spawn_epoch": epoch}
    state = None
    if epoch > 0:
        # the parent's prefix: a run of its own (another name), interrupted after epoch t keeps its state
        final = checkpoint_file(dataset, parent, config, out_dir, model_factory)
        state = final.with_name(f"{final.stem}.partial.pt")
        if not (state.exists() and load_torch(state)["epoch"] == epoch):  # (resuming it would train past t)
            train_one(dataset, parent, config, out_dir, device, model_factory, progress, stop_after_epoch=epoch)
        if not state.exists():
            raise RuntimeError(f"the parent's state after epoch {epoch} was not kept at {state}")
    children = []
    for index in range(k):
        child = {**run, "index": run["index"], "spawn_epoch": epoch, "spawn_child": index,
                 "child_seed": derive(seed, "spawn", run["seed"], epoch, index)}
        final = checkpoint_file(dataset, child, config, out_dir, model_factory)
        partial = final.with_name(f"{final.stem}.partial.pt")
        if state is not None and not final.exists() and not partial.exists():
            shutil.copyfile(state, partial)  # the child resumes where the parent stopped
            sidecar = state.with_name(state.name + ".sha256")
            if sidecar.exists():
                shutil.copyfile(sidecar, partial.with_name(partial.name + ".sha256"))
        children.append(train_one(dataset, child, config, out_dir, device, model_factory, progress))
    return children


class _FixedDropout(nn.Module):
    """A dropout layer whose mask is drawn once per input shape from its own generator and then
    kept: the network it sits in is one fixed thinned network (eval or train mode alike)."""

    def __init__(self, p: float, channelwise: bool, generator: torch.Generator):
        super().__init__()
        self.p, self.channelwise, self.generator = p, channelwise, generator
        self.masks: dict[tuple, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = tuple(x.shape[1:2]) + (1,) * (x.dim() - 2) if self.channelwise else tuple(x.shape[1:])
        if shape not in self.masks:
            keep = torch.rand(shape, generator=self.generator) >= self.p
            self.masks[shape] = keep.to(x.dtype) / (1 - self.p)
        return x * self.masks[shape].to(x.device)


DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def dropout_variants(model: nn.Module, k: int, seed: int = 0) -> list[nn.Module]:
    """``k`` thinned copies of ``model``: each dropout layer replaced by one fixed mask drawn from
    ``derive(seed, "dropout", i)`` (channel masks for Dropout1d/2d/3d, element masks for Dropout).
    A model without a dropout layer is refused: it has nothing to thin."""
    if not any(isinstance(m, DROPOUT_TYPES) and m.p > 0 for m in model.modules()):
        raise ValueError("proxy 'dropout' needs a model with dropout layers (p > 0); this one has none: "
                         "choose finetune, bootstrap_finetune, spawn, swag or laplace")
    variants = []
    for index in range(k):
        generator = torch.Generator().manual_seed(derive(seed, "dropout", index))
        variant = copy.deepcopy(model)
        for parent in list(variant.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, DROPOUT_TYPES) and child.p > 0:
                    setattr(parent, name, _FixedDropout(child.p, not isinstance(child, nn.Dropout), generator))
        variants.append(_frozen(variant))
    return variants


def last_linear(model: nn.Module) -> nn.Linear:
    """The model's last ``nn.Linear`` module (its classification head), in registration order."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("proxy 'laplace' needs a model whose last layer is an nn.Linear head; this one has none")
    return linears[-1]


@torch.no_grad()
def head_features(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features [N, D], probabilities [N, classes])``: the inputs of the model's last linear
    layer and the model's softmax outputs on ``images``, float64."""
    head = last_linear(model)
    features = []
    hook = head.register_forward_hook(lambda module, inputs, output: features.append(inputs[0].detach().double()))
    try:
        probabilities = torch.cat([F.softmax(model(chunk).double(), 1) for chunk in images.split(batch_size)])
    finally:
        hook.remove()
    return torch.cat(features).flatten(1), probabilities


def laplace_posterior(features: torch.Tensor, probabilities: torch.Tensor, prior_precision: float,
                      scale: float = 1.0) -> torch.Tensor:
    """The precision matrix ``[(D+1)·C, (D+1)·C]`` of the last layer's Laplace posterior: the
    generalised Gauss–Newton of the summed cross-entropy, Σ_n (φ_n φ_nᵀ) ⊗ (diag p_n − p_n p_nᵀ)
    with φ_n = (features, 1), times ``scale`` (the training set's size over the images used), plus
    ``prior_precision`` · I. Parameters are ordered (feature, class): weight[c, d] at d·C + c, the
    bias of class c at D·C + c."""
    phi = torch.cat([features, torch.ones(len(features), 1, dtype=features.dtype)], 1)
    curvature = torch.diag_embed(probabilities) - probabilities.unsqueeze(2) * probabilities.unsqueeze(1)
    ggn = torch.einsum("ni,nj,nab->iajb", phi, phi, curvature).reshape(phi.shape[1] * probabilities.shape[1], -1)
    return scale * ggn + prior_precision * torch.eye(ggn.shape[0], dtype=ggn.dtype)


def _subset(n_images: int, count: int, seed: int, purpose: str) -> torch.Tensor:
    if count >= n_images:
        return torch.arange(n_images)
    generator = torch.Generator().manual_seed(derive(seed, purpose))
    return torch.randperm(n_images, generator=generator)[:count].sort().values


def laplace_subset(n_images: int, count: int, seed: int = 0) -> torch.Tensor:
    """``[min(count, n_images)]`` sorted indices drawn without replacement from ``derive(seed,
    "laplace-subset")``; every index when ``count ≥ n_images``."""
    return _subset(n_images, count, seed, "laplace-subset")


def laplace_variants(model: nn.Module, images: torch.Tensor, k: int, settings: ProxySettings | None = None,
                     n_train: int | None = None, seed: int = 0) -> list[nn.Module]:
    """``k`` copies of ``model`` whose last linear layer is drawn from its Laplace posterior
    (:func:`laplace_posterior` on ``settings.laplace_images`` of ``images`` drawn without
    replacement from ``derive(seed, "laplace-subset")``, all of them when there are no more, scaled
    to ``n_train`` images, default ``len(images)``): θ = θ̂ + L⁻ᵀ z, L the Cholesky factor of the
    precision, z ~ N(0, I) from ``derive(seed, "laplace", i)``. A random subset, not the first
    images: a training set stored sorted by class would otherwise fit the curvature on a few
    classes."""
    settings = settings or ProxySettings()
    head = last_linear(model)
    used = images[laplace_subset(len(images), settings.laplace_images, seed)]
    features, probabilities = head_features(model, used)
    classes, width = head.weight.shape
    precision = laplace_posterior(features, probabilities, settings.prior_precision,
                                  scale=(n_train or len(images)) / len(used))
    cholesky = torch.linalg.cholesky(precision)
    weight = head.weight.detach().double()
    bias = head.bias.detach().double() if head.bias is not None else torch.zeros(classes, dtype=torch.float64)
    mean = torch.cat([weight.T.reshape(-1), bias])  # (feature, class) order, as laplace_posterior
    variants = []
    for index in range(k):
        z = torch.randn(len(mean), generator=torch.Generator().manual_seed(derive(seed, "laplace", index)),
                        dtype=torch.float64)
        sample = mean + torch.linalg.solve_triangular(cholesky.T, z.unsqueeze(1), upper=True).squeeze(1)
        variant = copy.deepcopy(model)
        variant_head = last_linear(variant)
        variant_head.weight.data = sample[:width * classes].reshape(width, classes).T.to(head.weight.dtype).contiguous()
        if variant_head.bias is not None:
            variant_head.bias.data = sample[width * classes:].to(head.bias.dtype)
        variants.append(_frozen(variant))
    return variants


@dataclass
class SwagMoments:
    """The SWAG summary of a run's iterates (flat parameter vectors of length P): ``mean`` θ̄ and
    ``sq_mean`` the running means of θ and θ², ``deviations`` ``[P, R]`` the last R iterates minus
    the running mean at the time each was taken (Maddox et al. 2019, Algorithm 1)."""
    mean: torch.Tensor
    sq_mean: torch.Tensor
    deviations: torch.Tensor

    @property
    def diagonal(self) -> torch.Tensor:
        """Σ_diag = θ²̄ − θ̄², clamped at 0 (rounding can make it slightly negative)."""
        return (self.sq_mean - self.mean.square()).clamp_min(0.0)

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        """θ̄ + (1/√2) Σ_diag^{1/2} z₁ + (1/√(2(R − 1))) D z₂, z₁ ~ N(0, I_P), z₂ ~ N(0, I_R): a draw
        from N(θ̄, ½ (Σ_diag + D Dᵀ/(R − 1))), the SWAG posterior."""
        rank = self.deviations.shape[1]
        z1 = torch.randn(len(self.mean), generator=generator, dtype=self.mean.dtype)
        z2 = torch.randn(rank, generator=generator, dtype=self.mean.dtype)
        return (self.mean + self.diagonal.sqrt() * z1 / math.sqrt(2)
                + self.deviations @ z2 / math.sqrt(2 * (rank - 1)))


def swag_moments(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                 settings: ProxySettings | None = None, config: TrainConfig | None = None, seed: int = 0,
                 device: str | torch.device = "cpu") -> SwagMoments:
    """Continue training a copy of ``model`` for ``settings.swag_fraction`` of an epoch over
    ``images`` ``[N, C, H, W]`` / ``labels`` ``[N]`` (:func:`_train_steps`: AdamW at the constant
    ``finetune_lr`` × the training's rate; data order from ``derive(seed, "swag")``) and summarise
    ``settings.swag_snapshots`` iterates taken at evenly spaced steps (the last step's included),
    keeping every snapshot's deviation (R = S columns; the first is 0, so the rank is at most
    S − 1). At least S steps are taken, so that every snapshot is another iterate. Parameters only
    (P of them): the moments in float64, the deviations gathered in float32 and returned in float64
    (16 P + 8 P R bytes held, 4 P R more while they are stacked). Batch-norm statistics are
    recomputed for each sample (:func:`recompute_batch_norm`)."""
    settings, config = settings or ProxySettings(), config or TrainConfig()
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"images and labels must be non-empty and of one length, got {len(images)} and {len(labels)}")
    steps = max(settings.swag_snapshots, round(settings.swag_fraction * len(images) / config.batch_size))
    taken = {(index + 1) * steps // settings.swag_snapshots - 1 for index in range(settings.swag_snapshots)}
    work = copy.deepcopy(model).to(device)
    count, mean, sq_mean, deviations = 0, None, None, []

    def snapshot(step: int) -> None:
        nonlocal count, mean, sq_mean
        if step not in taken:
            return
        theta = torch.nn.utils.parameters_to_vector(work.parameters()).detach().double().cpu()
        count += 1
        mean = theta.clone() if mean is None else mean + (theta - mean) / count
        sq_mean = theta.square() if sq_mean is None else sq_mean + (theta.square() - sq_mean) / count
        deviations.append((theta - mean).float())  # float32 while gathering: S of them are SWAG's memory

    torch.manual_seed(derive(seed, "swag-global"))  # any layer that draws from the global RNG
    generator = torch.Generator().manual_seed(derive(seed, "swag"))
    _train_steps(work, images, labels, torch.arange(len(images)), steps, settings, config, generator, device, snapshot)
    return SwagMoments(mean, sq_mean, torch.stack(deviations, 1).double())


def recompute_batch_norm(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> nn.Module:
    """Reset every batch-norm layer's running statistics and recompute them as the plain average
    over ``images`` (momentum None: a cumulative mean of the batch statistics, the batches of equal
    size but the last), the step SWAG needs after a weight sample (Maddox et al. 2019). A model
    without batch norm is returned unchanged."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    was_training = model.training
    model.train()
    device = next(model.parameters()).device
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            model(images[start:start + batch_size].to(device))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.train(was_training)
    return model


def swag_variants(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, k: int,
                  settings: ProxySettings | None = None, config: TrainConfig | None = None, seed: int = 0,
                  device: str | torch.device = "cpu") -> list[nn.Module]:
    """``k`` weight samples of the SWAG posterior around ``model`` (:func:`swag_moments`;
    :meth:`SwagMoments.sample` with ``derive(seed, "swag-sample", i)``), each with its batch-norm
    statistics recomputed on ``settings.bn_images`` training images drawn at random
    (``derive(seed, "swag-bn")``). Maddox et al., *A Simple Baseline for Bayesian Uncertainty in
    Deep Learning*, NeurIPS 2019; their SGD iterates are here those of the fine-tuning optimiser."""
    settings = settings or ProxySettings()
    moments = swag_moments(model, images, labels, settings, config, seed, device)
    bn_images = images[_subset(len(images), settings.bn_images, seed, "swag-bn")]
    variants = []
    for index in range(k):
        variant = copy.deepcopy(model).to(device)
        sample = moments.sample(torch.Generator().manual_seed(derive(seed, "swag-sample", index)))
        reference = next(variant.parameters())
        torch.nn.utils.vector_to_parameters(sample.to(reference.dtype).to(reference.device), variant.parameters())
        variants.append(_frozen(recompute_batch_norm(variant, bn_images)))
    return variants


def proxy_cost(name: str, k: int, settings: ProxySettings, epochs: int, n_train: int) -> float:
    """The training a proxy of ``k`` variants costs, as a share of one training run (``epochs``
    passes over ``n_train`` images): fine-tuning ``k × finetune_fraction`` epochs; spawning the
    parent's t epochs once and ``epochs − t`` per child; the Laplace matrix one forward pass over
    ``laplace_images`` images, counted as a third of a training step each (a step is about three
    forward passes); SWAG its ``swag_fraction`` epoch of training plus, per sample, one forward pass
    over ``bn_images`` (the batch-norm statistics); dropout none."""
    if name in ("finetune", "bootstrap_finetune"):
        return k * settings.finetune_fraction / epochs
    if name == "spawn":
        return (settings.spawn_epoch + k * (epochs - settings.spawn_epoch)) / epochs
    if name == "laplace":
        return min(settings.laplace_images, n_train) / 3 / (epochs * n_train)
    if name == "swag":
        return (settings.swag_fraction + k * min(settings.bn_images, n_train) / 3 / n_train) / epochs
    if name == "dropout":
        return 0.0
    raise ValueError(f"unknown proxy {name!r}; the proxies are {list(PROXY_NAMES)}")


def make_variants(name: str, model: nn.Module, k: int, *, images: torch.Tensor | None = None,
                  labels: torch.Tensor | None = None, settings: ProxySettings | None = None,
                  config: TrainConfig | None = None, seed: int = 0, device: str | torch.device = "cpu",
                  spawn: Callable[[int, int], list] | None = None) -> list[nn.Module]:
    """``k`` variants of ``model`` by the proxy ``name`` (one of :data:`PROXY_NAMES`). The training
    proxies need the training ``images`` and ``labels``; ``spawn`` needs a function
    ``(epoch, k) → runs`` that can resume the model's training (stablesal's, or the user's)."""
    if name not in PROXY_NAMES:
        raise ValueError(f"proxy must be one of {list(PROXY_NAMES)}, got {name!r}")
    if not isinstance(k, int) or k < 2:
        raise ValueError(f"k must be an integer ≥ 2 (variants to compare), got {k!r}")
    settings = settings or ProxySettings()
    if name in ("finetune", "bootstrap_finetune", "swag", "laplace") and (images is None or (name != "laplace" and labels is None)):
        raise ValueError(f"proxy {name!r} needs the training images" + ("" if name == "laplace" else " and labels"))
    if name in ("finetune", "bootstrap_finetune"):
        return finetune_copies(model, images, labels, k, settings, config, seed, name == "bootstrap_finetune", device)
    if name == "dropout":
        return dropout_variants(model, k, seed)
    if name == "swag":
        return swag_variants(model, images, labels, k, settings, config, seed, device)
    if name == "laplace":
        return laplace_variants(model, images, k, settings, seed=seed)
    if spawn is None:
        raise ValueError("proxy 'spawn' needs the training that can resume at an epoch (stablesal's own training, or "
                         "a training function of yours that takes a start state); a checkpoint alone cannot spawn")
    return [run.model for run in spawn(settings.spawn_epoch, k)]


__all__ = ["PROXY_NAMES", "ProxySettings", "finetune_copies", "spawn_children", "dropout_variants",
           "laplace_variants", "laplace_posterior", "laplace_subset", "SwagMoments", "swag_moments", "swag_variants",
           "recompute_batch_norm", "head_features", "last_linear", "proxy_cost",
           "make_variants"]
