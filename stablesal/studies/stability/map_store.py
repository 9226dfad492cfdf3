"""Maps computed by one stage and read by a later one, so that no model pass runs twice.

The stability study explains every main and reference-null model on the first test images with the
same methods, groupings, settings and explainer seeds that the consensus stage needs; it puts
the maps of the first ``n_images`` images of the groupings the consensus tests into a
:class:`MapStore`, and the consensus reads them back instead of explaining again (maps are
batch-independent, so image i's map is the same in a batch of 48 and of 24).

An entry is keyed by the content of what determines the map: the method, the model (class and
state), the explainer seed, the settings that shape the explainer (samples, steps, noise level,
perturbation budget), the grouping's segments, the images and targets, and the hash of the code
that computes maps. A key that differs in any of these misses, and the caller computes the map
itself. GradientSHAP draws its references from the first images of the batch, so its maps are
kept only when those images are among the kept ones. Files are written atomically.
"""

from __future__ import annotations

import hashlib
import os
import weakref
from pathlib import Path

import torch

from ...core.settings import MAIN, StudySettings
from ...explain.explainers import describe, explainer_names
from .run import SHAP_REFERENCE_IMAGES, code_version

_WEIGHT_DIGESTS: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[int, str]]" = weakref.WeakKeyDictionary()


def tensor_digest(*tensors: torch.Tensor) -> str:
    """A content hash of tensors (values, shapes and dtypes)."""
    digest = hashlib.blake2b(digest_size=16)
    for tensor in tensors:
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
        digest.update(f"{tuple(tensor.shape)}{tensor.dtype}".encode())
    return digest.hexdigest()


def weights_digest(model: torch.nn.Module) -> str:
    """A content hash of a model's state (cached per model object while its version counters hold)."""
    state = list(model.state_dict().values())
    version = sum(t._version for t in state)  # in-place updates bump it: a changed model is rehashed
    cached = _WEIGHT_DIGESTS.get(model)
    if cached is None or cached[0] != version:
        cached = (version, tensor_digest(*state))
        _WEIGHT_DIGESTS[model] = cached
    return cached[1]


class MapStore:
    """Maps of the first ``n_images`` images under ``groupings``, on disk under ``folder``."""

    def __init__(self, folder: Path | str, n_images: int, groupings, methods=None, sets=(MAIN, "untrained")):
        if not isinstance(n_images, int) or n_images < 1:
            raise ValueError(f"n_images must be a positive integer, got {n_images!r}")
        self.folder, self.n_images = Path(folder), n_images
        self.sets = tuple(sets)  # the model sets whose maps a later stage reads (the stability study keeps those)
        self.groupings = tuple(groupings)
        self.methods = None if methods is None else tuple(methods)

    def wants(self, method: str, grouping: str) -> bool:
        if self.n_images < SHAP_REFERENCE_IMAGES and method in explainer_names() and describe(method).needs_baselines:
            return False  # its references come from the batch's first images: a smaller batch draws others
        return grouping in self.groupings and (self.methods is None or method in self.methods)

    def _path(self, method: str, model, seed: int, settings: StudySettings, grouping: str, images: torch.Tensor,
              targets: torch.Tensor, segments: torch.Tensor | None) -> Path:
        count = min(self.n_images, images.shape[0])
        shaping = (settings.n_samples, settings.n_steps, settings.noise_level, settings.rng, images.device.type)  # rng="auto" draws other streams on other devices
        parts = [method, grouping, str(seed), repr(shaping), type(model).__qualname__, weights_digest(model),
                 tensor_digest(images[:count], targets[:count]), code_version()]
        if segments is not None:
            parts.append(tensor_digest(segments[:count]))
        key = hashlib.blake2b("|".join(parts).encode(), digest_size=16).hexdigest()
        return self.folder / f"{method}-{grouping}-{key}.pt"

    def put(self, method: str, model, seed: int, settings: StudySettings, grouping: str, images: torch.Tensor,
            targets: torch.Tensor, segments: torch.Tensor | None, maps: torch.Tensor) -> None:
        """Keep ``maps`` ``[B, C, H, W]`` of ``images`` for ``targets`` (their first ``n_images``)."""
        if not self.wants(method, grouping):
            return
        path = self._path(method, model, seed, settings, grouping, images, targets, segments)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(maps[:self.n_images].detach().cpu().clone(), temporary)
        os.replace(temporary, path)

    def get(self, method: str, model, seed: int, settings: StudySettings, grouping: str, images: torch.Tensor,
            targets: torch.Tensor, segments: torch.Tensor | None) -> torch.Tensor | None:
        """The kept maps of ``images`` for ``targets`` (all of them, so at most ``n_images``), or None."""
        if not self.wants(method, grouping) or images.shape[0] > self.n_images:
            return None
        path = self._path(method, model, seed, settings, grouping, images, targets, segments)
        if not path.exists():
            return None
        try:
            maps = torch.load(path, weights_only=True)
        except Exception:  # a damaged file is a miss: the caller computes the maps itself
            return None
        return maps if maps.shape[0] == images.shape[0] else None
