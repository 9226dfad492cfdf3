"""Models a user brings: checkpoints with a factory, whole pickled models, TorchScript files,
checkpoints stablesal's ``train-seeds`` wrote, torchvision architectures by name, and the user's
own training function.

Every loaded model is put in eval mode (with a warning when it arrived in training mode), its
parameters frozen, and, when the configuration gives the input normalisation, wrapped as
``nn.Sequential(Normalize(mean, std), model)`` so that it takes images in [0, 1] like every model
stablesal trains (segmentation, suppression and fills work in pixel space).

Errors name what was given and what was expected, in one line: a factory string that does not
import, a checkpoint whose keys do not match the factory's model (missing and unexpected keys
listed), a file that is neither a state dict, a pickled module nor TorchScript.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
import difflib
import copy
import os
import time
from tqdm.auto import tqdm

from .architectures import MODEL_FACTORIES, Normalize, build_model
from ..core.storage import has_checksum, load_checked
from .training import training_indices, training_labels
from ..core.storage import config_hash

TORCHVISION_PREFIX = "torchvision:"


def import_object(spec: str, what: str = "factory") -> Callable:
    """``"package.module:name"`` or ``"path/to/file.py:name"`` → the object it names."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"{what} must look like 'package.module:function' or 'path/to/file.py:function', "
                         f"got {spec!r}")
    module_name, _, attribute = spec.rpartition(":")
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.exists():
            raise FileNotFoundError(f"{what} {spec!r}: file {path} does not exist")
        module_spec = importlib.util.spec_from_file_location(f"stablesal_user_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as error:  # the user's file: report its error in one line
            raise ValueError(f"{what} {spec!r}: importing {path} failed: {type(error).__name__}: {error}") from None
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ValueError(f"{what} {spec!r}: module {module_name!r} does not import ({error})") from None
    if not hasattr(module, attribute):
        public = sorted(name for name in dir(module) if not name.startswith("_"))
        raise ValueError(f"{what} {spec!r}: {module_name} has no {attribute!r} (it has {public[:12]})")
    return getattr(module, attribute)


def torchvision_factory(name: str, num_classes: int) -> Callable[[], nn.Module]:
    """A factory for torchvision's architecture ``name`` with ``num_classes`` outputs and no
    weights (stablesal never downloads; load the user's checkpoint into it)."""
    try:
        import torchvision
    except ImportError:
        raise ValueError(f"architecture 'torchvision:{name}' needs torchvision (pip install stablesal[torchvision])"
                         ) from None
    available = torchvision.models.list_models()
    if name not in available:
        close = difflib.get_close_matches(name, available, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown torchvision architecture {name!r}{hint}")
    return lambda: torchvision.models.get_model(name, weights=None, num_classes=num_classes)


def strip_prefix(state_dict: dict, prefix: str = "module.") -> dict:
    """Keys without DataParallel's ``module.`` prefix (only when every key carries it)."""
    if state_dict and all(key.startswith(prefix) for key in state_dict):
        return {key[len(prefix):]: value for key, value in state_dict.items()}
    return state_dict


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip holding ``constants.pkl`` and ``code/``; ``torch.save`` writes neither."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def _read(path: Path) -> Any:
    """A TorchScript archive, or whatever ``torch.load`` reads (a state dict, a dict holding one,
    a whole pickled module). A file with stablesal's checksum sidecar (``<name>.sha256``) is
    verified first (:class:`~stablesal.core.storage.CorruptFileError` when it does not match); a
    file without one (any checkpoint made elsewhere) is read as it is."""
    if has_checksum(path):
        load_checked(path)
    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():  # torch 2.x marks TorchScript deprecated; users still ship it
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", FutureWarning)
                return torch.jit.load(str(path), map_location="cpu")
        except Exception as error:
            raise ValueError(f"checkpoint {path} is a TorchScript archive that torch.jit.load cannot read "
                             f"({type(error).__name__}: {error})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise ValueError(f"checkpoint {path} is neither TorchScript nor a file torch.load can read "
                         f"({type(error).__name__}: {error})") from None


def is_stablesal_checkpoint(loaded: Any) -> bool:
    """Whether ``loaded`` (a checkpoint's content) is one stablesal's ``train_seeds`` wrote: its state
    dict and metadata naming the registered architecture and its options."""
    config = loaded.get("meta", {}).get("config") if isinstance(loaded, dict) else None
    return (isinstance(loaded.get("state_dict"), dict) and isinstance(config, dict) and "model" in config
            and "model_options" in config)


def _stablesal_model(loaded: dict, path: Path) -> nn.Module:
    """The registered architecture a ``train_seeds`` checkpoint names, rebuilt: input channels from
    its :class:`Normalize` statistics, classes from its last weight matrix, and the weights (the
    statistics among them) loaded strictly."""
    config, state = loaded["meta"]["config"], loaded["state_dict"]
    name = config["model"]
    if name not in MODEL_FACTORIES:
        raise ValueError(f"checkpoint {path} was trained by stablesal as architecture {name!r}, which is not "
                         f"registered here (registered: {list(MODEL_FACTORIES)}; stablesal.models.register_model "
                         "adds one, or give [models] factory)")
    mean = state.get("0.mean")
    matrices = [value for key, value in state.items() if key.endswith("weight") and value.dim() == 2]
    if not isinstance(mean, torch.Tensor) or mean.dim() != 4 or not matrices:
        raise ValueError(f"checkpoint {path} names stablesal's architecture {name!r} but its weights have no "
                         "Normalize statistics ('0.mean') or no output layer")
    channels = int(mean.shape[1])
    model = build_model(name, channels, int(matrices[-1].shape[0]), [0.0] * channels, [1.0] * channels,
                        **config["model_options"])
    return _load_state(model, state, path, f"stablesal's {name!r}")


def load_user_model(path: Path | str, factory: Callable[[], nn.Module] | None = None) -> nn.Module:
    """One checkpoint as a module: TorchScript and pickled modules as they are; a state dict (or a
    dict holding one under ``state_dict`` / ``model_state_dict`` / ``model``) loaded strictly into
    ``factory()``, with a ``module.`` prefix removed; without a factory, a checkpoint stablesal's
    ``train_seeds`` wrote is loaded into the registered architecture it names. Every error says
    what the file holds and what is missing, in one line."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    loaded = _read(path)
    if isinstance(loaded, nn.Module):
        return loaded
    if not isinstance(loaded, dict):
        raise ValueError(f"checkpoint {path} holds a {type(loaded).__name__}; expected a state dict, a dict with "
                         "'state_dict', a pickled nn.Module or a TorchScript file")
    if factory is None and is_stablesal_checkpoint(loaded):
        return _stablesal_model(loaded, path)
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    if factory is None:
        raise ValueError(f"checkpoint {path} is a state dict: give the architecture ([models] factory = "
                         "'package.module:function' or arch = 'torchvision:<name>')")
    return _load_state(factory(), loaded, path, "the factory's")


def _load_state(model: nn.Module, loaded: dict, path: Path, whose: str) -> nn.Module:
    """``loaded``'s tensors (a ``module.`` prefix removed) loaded strictly into ``model``; keys or
    shapes that do not match are named. Returns the model in eval mode."""
    state = strip_prefix({k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)})
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"checkpoint {path} does not match {whose} model: missing keys {missing[:8]}"
                         f"{' …' if len(missing) > 8 else ''}, unexpected keys {unexpected[:8]}"
                         f"{' …' if len(unexpected) > 8 else ''}")
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        raise ValueError(f"checkpoint {path} does not match {whose} model: shapes differ for {wrong[:4]}")
    model.load_state_dict(state)
    # a state dict has no train/eval mode: the factory's fresh module is in training mode by
    # default, which is not the user's doing, so no warning is due
    return model.eval()


def prepare(model: nn.Module, name: str, mean: Sequence[float] | None = None,
            std: Sequence[float] | None = None) -> nn.Module:
    """Eval mode (warning when the model arrived in training mode), frozen parameters, and
    :class:`Normalize` in front when ``mean``/``std`` are given."""
    if model.training:
        warnings.warn(f"{name} was in training mode; set to eval mode (dropout off, batch-norm running statistics)")
    if mean and std:
        if len(mean) != len(std):
            raise ValueError(f"normalisation mean {list(mean)} and std {list(std)} must have one value per channel")
        model = nn.Sequential(Normalize(mean, std), model)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def output_classes(models: Sequence[nn.Module], names: Sequence[str], image_shape: Sequence[int]) -> int:
    """The number of classes every model outputs (one forward pass each); refuses models that
    disagree, naming them."""
    counts = {}
    with torch.inference_mode():
        for model, name in zip(models, names):
            output = model(torch.zeros(1, *image_shape))
            if output.dim() != 2:
                raise ValueError(f"{name} returns an output of shape {tuple(output.shape)}; expected [batch, classes]")
            counts[name] = int(output.shape[1])
    if len(set(counts.values())) > 1:
        raise ValueError(f"the models output different numbers of classes: {counts}")
    return next(iter(counts.values()))


def model_factory(factory: str = "", factory_kwargs: dict | None = None, arch: str = "",
                  num_classes: int | None = None) -> Callable[[], nn.Module] | None:
    """The architecture a configuration names: a factory string (called with ``factory_kwargs``)
    or ``arch = "torchvision:<name>"``; None when neither is given."""
    if factory:
        function = import_object(factory, "[models] factory")
        kwargs = dict(factory_kwargs or {})
        try:
            inspect.signature(function).bind(**kwargs)
        except TypeError as error:
            raise ValueError(f"[models] factory {factory!r} does not take factory_kwargs {kwargs}: {error}") from None
        return lambda: function(**kwargs)
    if arch.startswith(TORCHVISION_PREFIX):
        if num_classes is None:
            raise ValueError(f"arch {arch!r} needs the number of classes (from the data or [models] num_classes)")
        return torchvision_factory(arch[len(TORCHVISION_PREFIX):], num_classes)
    return None


def load_user_models(paths: Sequence[Path | str], factory: Callable[[], nn.Module] | None = None,
                     mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> list[nn.Module]:
    """Every checkpoint of ``paths`` as a prepared model (see :func:`load_user_model` and :func:`prepare`)."""
    if not paths:
        raise ValueError("[models] checkpoints: give at least one checkpoint file")
    return [prepare(load_user_model(path, factory), f"checkpoint {path}", mean, std) for path in paths]


def reinitialised(model: nn.Module, seed: int) -> nn.Module | None:
    """A copy of ``model`` with every layer's ``reset_parameters`` called under ``seed``: an
    untrained network of the same architecture when no factory is known (None for TorchScript,
    whose layers cannot be re-initialised)."""
    if isinstance(model, torch.jit.ScriptModule):
        return None
    fresh = copy.deepcopy(model)
    reset = 0
    with torch.random.fork_rng(devices=[]):  # seeded, without moving the caller's global generator
        torch.manual_seed(seed)
        for module in fresh.modules():
            if hasattr(module, "reset_parameters") and not isinstance(module, Normalize):
                module.reset_parameters()
                reset += 1
    for module in fresh.modules():  # batch-norm running statistics back to their defaults
        if hasattr(module, "reset_running_stats"):
            module.reset_running_stats()
    return fresh if reset else None


def train_with_user_function(dataset, train: str, plan: Sequence[dict], out_dir: Path | str,
                            factory: Callable[[], nn.Module] | None = None, progress: bool = True) -> list[tuple]:
    """Train one model per entry of a seed plan (:func:`stablesal.seeds.seed_plan`) with the user's
    function ``train(train_images=…, train_labels=…, seed=…, out_path=…)``, which writes a
    checkpoint to ``out_path``. A finished checkpoint (named by the run, the function and the data)
    is loaded, not retrained; the function writes to a temporary name that is renamed only when it
    returns, so an interrupted run never leaves a file that looks finished. Returns
    ``[(model, meta)]`` (models not yet prepared)."""
    function = import_object(train, "[models] train")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for run in tqdm(plan, desc="user training", disable=not progress):
        digest = config_hash({"run": run, "train": train, "dataset": dataset.describe()})
        path = out_dir / f"user-model-{run['index']:02d}-{digest}.pt"
        indices = training_indices(run, len(dataset.train_labels))
        seconds = None
        if not path.exists():
            temporary = path.with_name(f".{path.name}.partial")
            began = time.perf_counter()
            function(train_images=dataset.train_images[indices],
                     train_labels=training_labels(run, dataset.train_labels[indices]),
                     seed=run["seed"], out_path=temporary)
            seconds = time.perf_counter() - began
            if not temporary.exists():
                raise ValueError(f"[models] train {train!r} returned without writing a checkpoint to out_path "
                                 f"({temporary})")
            os.replace(temporary, path)
        meta = {**run, "config_hash": digest, "checkpoint": str(path), "train_size": int(len(indices)),
                "train_seconds": seconds}
        results.append((load_user_model(path, factory), meta))
    return results
