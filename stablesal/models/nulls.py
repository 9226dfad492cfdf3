"""What the null families need from the models layer: batch-norm statistics re-estimated on
training images with no weight moved (the BN-calibrated null), and random-label networks trained
by stablesal's recipe (:func:`train_random_label`, the API's way to the strictest null; the labels
themselves are permuted by :func:`stablesal.models.training.training_labels`). docs/methods.md §3.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from ..data.datasets import ImageDataset
from .training import SeedRun, TrainConfig, random_label_plan, seed_plan, train_one


# Training images that re-estimate a BN-calibrated network's batch-norm statistics: main model 0's
# data, in order, 128 images a batch (the main models' batch size).
BN_CALIBRATION_IMAGES = 2048


def has_batch_norm(model: torch.nn.Module) -> bool:
    """Whether ``model`` holds a batch-norm layer with running statistics."""
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats
               for m in model.modules())


@torch.no_grad()
def calibrate_batch_norm(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 128) -> torch.nn.Module:
    """A copy of ``model`` whose batch-norm running statistics are the exact averages over
    ``images`` (``momentum=None``: a cumulative mean over batches) and nothing else changed: no
    gradient step, no weight moved. In eval mode with frozen parameters."""
    calibrated = copy.deepcopy(model)
    layers = [m for m in calibrated.modules()
              if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
    calibrated.eval()  # dropout and the like stay off: only the batch-norm layers see the batches as in training
    for layer in layers:
        layer.train()
    device = next((p.device for p in calibrated.parameters()), torch.device("cpu"))
    for chunk in images.split(batch_size):
        calibrated(chunk.to(device))
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum
    calibrated.eval()
    for parameter in calibrated.parameters():
        parameter.requires_grad_(False)
    return calibrated


def train_random_label(dataset: ImageDataset, k: int = 4, vary: str = "both", config: TrainConfig | None = None,
                       out_dir: Path | str | None = None, base_seed: int = 0, first_index: int = 100,
                       device: str | torch.device = "cpu", progress: bool = True) -> list[SeedRun]:
    """``k`` random-label networks: the first ``k`` entries of the seed plan that
    :func:`~stablesal.models.training.train_seeds` would train (same seeds, same data parts, same
    ``config``), each on its training labels permuted with its own label seed
    (:func:`~stablesal.models.training.random_label_plan`; Adebayo et al., NeurIPS 2018). Numbered
    from ``first_index`` so their checkpoints sit beside the main models' in ``out_dir``. Pass them
    as the ``"random_label"`` model set of :func:`stablesal.studies.stability.run.run_study`."""
    config = config or TrainConfig()
    plan = random_label_plan(seed_plan(k, vary, base_seed, len(dataset.train_labels)), base_seed, first_index)
    return [train_one(dataset, run, config, out_dir, device, progress=progress) for run in plan]
