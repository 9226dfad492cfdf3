"""Retraining seeds: K models that differ only in training randomness.

``vary`` chooses what differs between the K models, everything else being equal:

* ``"seed"``  - same training data; weight initialisation, data order and augmentation differ;
* ``"split"`` - K disjoint parts of the training set, same seed;
* ``"both"``  - disjoint parts and different seeds (the protocol of Gong et al., *A Super-pixel-based
  Approach to the Stable Interpretation of Neural Networks*, BMVC 2024);
* ``"leave-fold-out"`` - K folds; model i trains on every fold but fold i, with seed
  ``base_seed + i`` (the MeGe/ReCo protocol of Fel et al., WACV 2022; docs/methods.md §3.6).

Training is deterministic on the CPU: all randomness of epoch ``e`` of seed ``s`` comes from a
generator seeded with ``(s, e)``, so a run resumed from the end of an epoch produces weights
bit-identical to an uninterrupted one. Checkpoints are written atomically with a checksum; a
re-run skips finished seeds, resumes an interrupted one, and retrains a corrupt one.
"""

from __future__ import annotations

import functools

import platform
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn
import torch.nn.functional as F
import math
from tqdm.auto import tqdm

from ..data.datasets import ImageDataset
from .architectures import build_model
from ..core.executor import SERIAL, Executor, check_executor
from ..core.seeding import derive
from ..core.settings import VARY_CHOICES, TrainConfig  # noqa: F401  (VARY_CHOICES: re-exported)
from ..core.storage import CorruptFileError, config_hash, load_torch, save_torch

# Keys of the training streams under a run's seed. Integers (not names) because checkpoints made
# before derive() existed are cached under these streams; derive(seed, 7) is what they used.
SPLIT_ORDER, GLOBAL_RNG, INITIALISATION = 7, 1, 0xC0FFEE
# The seed of the one split of the training set into parts (data splits and folds): every plan and
# the fold study's samples read the same parts.
PARTS_SEED = 0
# Training accuracy is measured on a seeded random sample of a run's training images (a folder's
# images may come sorted by class): ±0.01 at 95 % for an accuracy near 0.95, for a fifth of the
# forward passes of 10 000 images
TRAIN_ACCURACY_IMAGES, TRAIN_ACCURACY_SEED = 2000, 0



@dataclass
class SeedRun:
    """One trained model of a seed study and its metadata."""

    index: int
    model: nn.Module
    meta: dict

    @property
    def test_accuracy(self) -> float:
        return self.meta["test_accuracy"]


def split_indices(n: int, k: int, seed: int = 0) -> list[torch.Tensor]:
    """K disjoint, near-equal parts of ``range(n)`` in a seeded random order."""
    if k < 1 or k > n:
        raise ValueError(f"k must be between 1 and the number of training images ({n}), got {k}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(derive(seed, SPLIT_ORDER)))
    return [part.sort().values for part in order.tensor_split(k)]


def training_indices(run: dict, n_train: int) -> torch.Tensor:
    """The training images of one entry of :func:`seed_plan`: all, its split, or all folds but the
    one it holds out (folds and splits are the same seeded partition, :func:`split_indices`)."""
    if run.get("held_out_fold") is not None:
        held_out = split_indices(n_train, run["folds"], seed=PARTS_SEED)[run["held_out_fold"]]
        keep = torch.ones(n_train, dtype=torch.bool)
        keep[held_out] = False
        return keep.nonzero()[:, 0]
    if run["split"] is not None:
        return split_indices(n_train, run["splits"], seed=PARTS_SEED)[run["split"]]
    return torch.arange(n_train)


# The stream that permutes a random-label run's training labels, under its ``label_seed``.
LABEL_PERMUTATION = "labels"


def training_labels(run: dict, labels: torch.Tensor) -> torch.Tensor:
    """The labels a seed-plan entry trains on: ``labels`` as given, or, when the entry has a
    ``label_seed`` (a random-label null model), the same labels permuted across its images with a
    generator seeded by ``derive(label_seed, "labels")``. A permutation keeps every class's count,
    so the model sees the same images and label frequencies but no link between them: the data
    randomisation test of Adebayo et al., *Sanity Checks for Saliency Maps*, NeurIPS 2018."""
    if run.get("label_seed") is None:
        return labels
    generator = torch.Generator().manual_seed(derive(run["label_seed"], LABEL_PERMUTATION))
    return labels[torch.randperm(len(labels), generator=generator)]


def random_label_plan(plan: Sequence[dict], base_seed: int, first_index: int) -> list[dict]:
    """The random-label null of a seed plan: one entry per entry of ``plan`` (the same seed, the
    same part of the data, the same recipe), numbered from ``first_index``, with its own
    ``label_seed = derive(base_seed, "random-label", i)``."""
    return [dict(run, index=first_index + i, label_seed=derive(base_seed, "random-label", i))
            for i, run in enumerate(plan)]


@torch.inference_mode()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` (switched to eval mode) on ``images`` in [0, 1]."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(images[start:start + batch_size].to(device))
        correct += (logits.argmax(1).cpu() == labels[start:start + batch_size]).sum().item()
    model.train(was_training)
    return correct / max(len(images), 1)


def _train_epoch(model, optimizer, scheduler, images, labels, config: TrainConfig, seed: int, epoch: int, device):
    generator = torch.Generator().manual_seed(derive(seed, epoch))
    torch.manual_seed(derive(seed, epoch, GLOBAL_RNG))  # any layer that draws from the global RNG
    model.train()
    order = torch.randperm(len(images), generator=generator)
    total_loss, total_correct, seen = 0.0, 0, 0
    for start in range(0, len(order), config.batch_size):
        batch = order[start:start + config.batch_size]
        x, y = images[batch], labels[batch]
        if config.flip:
            flip = torch.rand(len(batch), generator=generator) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        x, y = x.to(device).contiguous(memory_format=torch.channels_last), y.to(device)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total_loss += loss.item() * len(batch)
        total_correct += (logits.argmax(1) == y).sum().item()
        seen += len(batch)
    return total_loss / seen, total_correct / seen


def epoch_seed(run: dict, epoch: int) -> int:
    """The seed of epoch ``epoch``'s data order and augmentation: the run's own, or, for a child
    spawned at epoch t (a run with ``spawn_epoch`` t and ``child_seed``; Frankle et al., ICML 2020),
    the child's from epoch t on. The initialisation always comes from ``seed``, so children share
    their parent's first t epochs exactly."""
    if run.get("spawn_epoch") is not None and epoch >= run["spawn_epoch"]:
        return run["child_seed"]
    return run["seed"]


def _make_training(model, config: TrainConfig, steps_per_epoch: int):
    """AdamW with a linear warm-up over the first 20 % of steps, then cosine decay to zero."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    total = config.epochs * steps_per_epoch
    warmup = max(1, int(0.2 * total))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def seed_plan(k: int, vary: str, base_seed: int, n_train: int) -> list[dict]:
    """What each of the K runs gets: its seed and the training indices' part (or all; for
    ``leave-fold-out`` every fold but ``held_out_fold``)."""
    if vary not in VARY_CHOICES:
        raise ValueError(f"vary must be one of {VARY_CHOICES}, got {vary!r}")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if vary == "leave-fold-out":
        if k < 2:
            raise ValueError(f"k must be at least 2 for vary='leave-fold-out', got {k}")
        return [{"index": i, "seed": base_seed + i, "split": None, "splits": 1, "held_out_fold": i, "folds": k}
                for i in range(k)]
    plan = []
    for i in range(k):
        plan.append({
            "index": i,
            "seed": base_seed + i if vary in ("seed", "both") else base_seed,
            "split": i if vary in ("split", "both") else None,
            "splits": k if vary in ("split", "both") else 1,
        })
    return plan


def _run_digest(dataset: ImageDataset, run: dict, config: TrainConfig,
                model_factory: Callable[[], nn.Module] | None = None) -> str:
    """The hash of everything one seed-plan entry's weights depend on (its checkpoint's name)."""
    return config_hash({
        "run": run, "config": config.record(), "dataset": dataset.describe(),
        "custom_model": getattr(model_factory, "__qualname__", None),
        "memory_format": "channels_last",  # the training layout changes the weights' floating-point path
    })


def checkpoint_file(dataset: ImageDataset, run: dict, config: TrainConfig, out_dir: Path | str,
                    model_factory: Callable[[], nn.Module] | None = None) -> Path:
    """The finished checkpoint :func:`train_one` writes (and reuses) for ``run`` in ``out_dir``."""
    return Path(out_dir) / f"model-{run['index']:02d}-{_run_digest(dataset, run, config, model_factory)}.pt"


def train_one(
    dataset: ImageDataset,
    run: dict,
    config: TrainConfig,
    out_dir: Path | None = None,
    device: str | torch.device = "cpu",
    model_factory: Callable[[], nn.Module] | None = None,
    progress: bool = True,
    stop_after_epoch: int | None = None,
) -> SeedRun:
    """Train (or resume, or load) the model of one entry of :func:`seed_plan`.

    ``stop_after_epoch`` ends the run after that many epochs as if it had been interrupted
    (the partial checkpoint is kept); tests use it to check resumption.
    """
    digest = _run_digest(dataset, run, config, model_factory)
    final = partial = None
    if out_dir is not None:
        final = checkpoint_file(dataset, run, config, out_dir, model_factory)
        partial = final.with_name(f"{final.stem}.partial.pt")

    def new_model() -> nn.Module:
        torch.manual_seed(derive(run["seed"], INITIALISATION))
        if model_factory is not None:
            return model_factory()
        return build_model(
            config.arch, dataset.image_shape[0], dataset.num_classes, dataset.mean, dataset.std, **config.model_options
        )

    if final is not None and final.exists():
        try:
            saved = load_torch(final)
            model = new_model()
            model.load_state_dict(saved["state_dict"])
            model.eval().to(device)
            return SeedRun(run["index"], model, saved["meta"])
        except CorruptFileError as error:
            warnings.warn(f"retraining: {error}")

    indices = training_indices(run, len(dataset.train_labels))
    images, labels = dataset.train_images[indices], training_labels(run, dataset.train_labels[indices])

    # channels-last convolutions: 0.83x the step time on this CPU (small_cnn, batch 128;
    # benchmarks/bench_training.py); the trained model is handed back in the usual layout
    model = new_model().to(device).to(memory_format=torch.channels_last)
    steps = (len(indices) + config.batch_size - 1) // config.batch_size
    optimizer, scheduler = _make_training(model, config, steps)
    start_epoch, history, elapsed = 0, [], 0.0
    if partial is not None and partial.exists():
        try:
            state = load_torch(partial)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start_epoch, history, elapsed = state["epoch"], state["history"], state["elapsed"]
        except CorruptFileError as error:
            warnings.warn(f"restarting seed from scratch: {error}")

    bar = tqdm(range(start_epoch, config.epochs), desc=f"model {run['index']} (seed {run['seed']})",
               disable=not progress, leave=False, initial=start_epoch, total=config.epochs)
    for epoch in bar:
        began = time.perf_counter()
        loss, train_acc = _train_epoch(model, optimizer, scheduler, images, labels, config, epoch_seed(run, epoch),
                                       epoch, device)
        elapsed += time.perf_counter() - began
        history.append({"epoch": epoch + 1, "loss": loss, "train_accuracy": train_acc})
        bar.set_postfix(loss=f"{loss:.3f}", acc=f"{train_acc:.3f}")
        if partial is not None and epoch + 1 < config.epochs:
            save_torch(partial, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "history": history, "elapsed": elapsed,
            })
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < config.epochs:
            model = model.to(memory_format=torch.contiguous_format).eval()
            return SeedRun(run["index"], model, {"interrupted_after_epoch": epoch + 1})
    model = model.to(memory_format=torch.contiguous_format).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    sample = torch.randperm(len(images), generator=torch.Generator().manual_seed(TRAIN_ACCURACY_SEED))
    sample = sample[:TRAIN_ACCURACY_IMAGES]
    meta = {
        **run,
        "config_hash": digest,
        "config": config.record(),
        "train_size": len(indices),
        "train_accuracy": accuracy(model, images[sample], labels[sample]),
        "test_accuracy": accuracy(model, dataset.test_images, dataset.test_labels),
        "train_seconds": elapsed,
        "history": history,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
    }
    if final is not None:
        save_torch(final, {"state_dict": model.state_dict(), "meta": meta})
        if partial.exists():
            partial.unlink()
            partial.with_name(partial.name + ".sha256").unlink(missing_ok=True)
    return SeedRun(run["index"], model, meta)


def train_seeds(
    dataset: ImageDataset,
    k: int = 4,
    vary: str = "both",
    config: TrainConfig | None = None,
    out_dir: Path | str | None = None,
    base_seed: int = 0,
    device: str | torch.device = "cpu",
    model_factory: Callable[[], nn.Module] | None = None,
    progress: bool = True,
    executor: Executor = SERIAL,
) -> list[SeedRun]:
    """Train K models that differ only in ``vary`` (see the module docstring).

    Parameters
    ----------
    dataset : the training and test data.
    k : number of models.
    vary : ``"seed"``, ``"split"``, ``"both"`` or ``"leave-fold-out"``.
    config : shared hyperparameters.
    out_dir : folder for checkpoints; finished models there are loaded, not retrained.
    base_seed : model i gets seed ``base_seed + i`` when seeds vary.
    model_factory : a zero-argument callable returning a fresh ``nn.Module`` (taking [0, 1]
        images) instead of a registered architecture.
    executor : the :class:`~stablesal.core.executor.Executor` that runs one unit per seed: here, one
        after another (the default), or in parallel on a process pool or Dask cluster.

    Returns
    -------
    list of :class:`SeedRun`, models in eval mode with frozen parameters.
    """
    config = config or TrainConfig()
    plan = seed_plan(k, vary, base_seed, len(dataset.train_labels))
    return train_runs(dataset, plan, config, out_dir, device, progress, executor, "seeds", model_factory)


def train_runs(dataset: ImageDataset, plan: list[dict], config: TrainConfig, out_dir: Path | str | None,
               device: str | torch.device, progress: bool, executor: Executor, desc: str,
               model_factory: Callable[[], nn.Module] | None = None) -> list[SeedRun]:
    """:func:`train_one` for every entry of ``plan``, one unit of ``executor`` each, models on
    ``device``. Units that run in this process draw their own epoch bars; elsewhere one bar
    (``desc``) counts the finished models."""
    check_executor(executor)
    unit = functools.partial(train_unit, config=config, out_dir=out_dir, device=str(device),
                             model_factory=model_factory, progress=progress and executor.in_process)
    runs = executor.map(unit, plan, desc=desc, progress=progress and not executor.in_process, shared=(dataset,))
    for run in runs:
        run.model.to(device)
    return runs


def train_unit(dataset, run, *, config, out_dir, device, model_factory, progress: bool = False) -> SeedRun:
    """One seed's training as a unit of work for an executor (module level, so it pickles)."""
    return train_one(dataset, run, config, out_dir, device, model_factory, progress=progress)


def load_checkpoint(path: Path | str, model: nn.Module | None = None, dataset: ImageDataset | None = None) -> SeedRun:
    """Load a checkpoint written by :func:`train_seeds`.

    Either pass the ``model`` to fill, or a ``dataset`` from which the registered architecture
    recorded in the checkpoint is rebuilt. A file with its checksum sidecar is verified (a corrupt or
    truncated one raises :class:`stablesal.storage.CorruptFileError`); one copied without the
    sidecar is read as it is. Any checkpoint form a user brings (TorchScript, pickled modules, state
    dicts with a factory): :func:`stablesal.models.user_models.load_user_model`.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    saved = load_torch(path, require_checksum=False)
    if not isinstance(saved, dict) or "state_dict" not in saved or "meta" not in saved:
        raise CorruptFileError(f"{path} is not a stablesal checkpoint (expected keys 'state_dict' and 'meta')")
    meta = saved["meta"]
    if model is None:
        if dataset is None:
            raise ValueError("load_checkpoint needs model=<nn.Module> or dataset=<ImageDataset> to rebuild it")
        config = meta["config"]
        model = build_model(config["model"], dataset.image_shape[0], dataset.num_classes, dataset.mean,
                            dataset.std, **config["model_options"])
    model.load_state_dict(saved["state_dict"])
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return SeedRun(meta.get("index", 0), model, meta)


def summary_rows(runs: Sequence[SeedRun]) -> list[dict]:
    """One row per model for the summary table (index, seed, split, sizes, accuracies, seconds)."""
    return [
        {
            "model": run.index, "seed": run.meta["seed"], "split": run.meta["split"],
            "train_size": run.meta["train_size"], "train_acc": run.meta["train_accuracy"],
            "test_acc": run.meta["test_accuracy"], "seconds": run.meta["train_seconds"],
        }
        for run in runs
    ]
