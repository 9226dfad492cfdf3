"""The model sets of a study, built once per run and shared by every stage: the K main models
(trained by stablesal's seed plan, or the user's: checkpoints or a training function), the
seed-only control models, the three null families (random-label, BN-calibrated and untrained
networks), and the fold models' user variant.

Each function takes the settings it reads: the ``[models]`` section
(:class:`~stablesal.core.settings.ModelSettings`) and the data, never the whole configuration.
"""

from __future__ import annotations

import dataclasses
import glob
from pathlib import Path

import torch

from ..core.executor import SERIAL, Executor
from ..core.seeding import derive
from ..core.settings import ModelSettings
from ..core.storage import config_hash
from ..data.datasets import ImageDataset
from .architectures import build_model
from .training import (
    SeedRun, TrainConfig, accuracy, checkpoint_file, random_label_plan, seed_plan, train_one, train_runs, train_seeds,
    training_indices,
)
from .nulls import BN_CALIBRATION_IMAGES, calibrate_batch_norm, has_batch_norm
from .user_models import (
    load_user_model, model_factory, output_classes, prepare, reinitialised, train_with_user_function,
)


def train_config_from(models: ModelSettings) -> TrainConfig:
    """The training's hyperparameters of a ``[models]`` section (its :class:`TrainConfig` fields)."""
    return models.training()


def checkpoint_paths(patterns: list[str]) -> list[Path]:
    """The files of ``[models] checkpoints``: paths or glob patterns, sorted within each pattern."""
    paths = []
    for pattern in patterns:
        matched = sorted(Path(p) for p in glob.glob(str(Path(pattern).expanduser())))
        if not matched:
            missing = "matches no file" if glob.has_magic(pattern) else "does not exist"
            raise FileNotFoundError(f"[models] checkpoints: {pattern!r} {missing}")
        paths += matched
    return paths


def main_model_count(models: ModelSettings) -> int:
    """How many main models a ``[models]`` section gives, known before any is loaded or trained: the
    checkpoint files its patterns match, else ``k`` (stablesal's seed plan, or the user's training
    function run on it)."""
    return len(checkpoint_paths(models.checkpoints)) if models.checkpoints else models.k


def check_model_index(models: ModelSettings, index: int, name: str = "index") -> None:
    """Refuse an ``index`` that is not one of the main models of a ``[models]`` section, naming
    ``name`` (the argument or flag) and the models there are."""
    count = main_model_count(models)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        given = (f"{count} checkpoint file{'s' if count != 1 else ''} ({', '.join(models.checkpoints)})"
                 if models.checkpoints else f"k = {count} models")
        raise ValueError(f"{name} must be a model of [models] (0 to {count - 1}: {given}), got {index!r}")


def user_model_runs(models: ModelSettings, dataset: ImageDataset, runs_dir: Path, progress: bool = True,
                    index: int | None = None) -> list:
    """The user's models as runs: checkpoint files loaded (TorchScript, pickled modules, state
    dicts into the factory's architecture, or stablesal's own ``train-seeds`` checkpoints), or trained
    by the user's function on stablesal's seed plan; each in eval mode with frozen parameters and,
    with [models] mean/std, Normalize in front. Accuracies are measured on the data when it has
    labels. ``index``: only that model (checkpoint file or seed-plan entry), as a one-run list."""
    if index is not None:
        check_model_index(models, index)
    chosen = slice(None) if index is None else slice(index, index + 1)
    factory = model_factory(models.factory, models.factory_kwargs, models.arch, dataset.num_classes)
    if models.checkpoints:
        loaded = []
        for path in checkpoint_paths(models.checkpoints)[chosen]:
            digest = config_hash({"file": str(path.resolve()), "bytes": path.stat().st_size,
                                  "modified": path.stat().st_mtime_ns})
            loaded.append((load_user_model(path, factory), {"checkpoint": str(path), "config_hash": digest,
                                                            "seed": None, "split": None, "train_size": None,
                                                            "train_seconds": None}))
    else:
        plan = seed_plan(models.k, models.vary, models.base_seed, len(dataset.train_labels))[chosen]
        loaded = train_with_user_function(dataset, models.train, plan, runs_dir / "user-models", factory, progress)
    runs = []
    labelled = bool((dataset.test_labels >= 0).all())
    for number, (model, meta) in enumerate(loaded, start=index or 0):
        model = prepare(model, meta.get("checkpoint", f"model {number}"), models.mean, models.std).to(models.device)
        test = accuracy(model, dataset.test_images, dataset.test_labels) if labelled else float("nan")
        train = (accuracy(model, dataset.train_images, dataset.train_labels)
                 if len(dataset.train_labels) and labelled else float("nan"))
        runs.append(SeedRun(number, model, {"index": number, **meta, "test_accuracy": test, "train_accuracy": train}))
    classes = output_classes([run.model for run in runs], [run.meta.get("checkpoint", f"model {run.index}")
                                                           for run in runs], dataset.image_shape)
    if labelled and classes != dataset.num_classes:
        raise ValueError(f"the models output {classes} classes but the data has {dataset.num_classes} "
                         f"({dataset.class_names[:6]}…)")
    return runs


def explained_run(models: ModelSettings, dataset: ImageDataset, runs_dir: Path, index: int = 0,
                  progress: bool = True):
    """Main model ``index`` of a configuration, alone (what ``stablesal explain`` and ``perturb``
    explain): the user's checkpoint file or seed-plan entry (:func:`user_model_runs`), or, when
    ``[models]`` names none, stablesal's model of that seed-plan entry, trained (or reused: the
    report's model ``index`` of the same configuration and data is the same file) under
    ``runs_dir/models``. Returns a :class:`~stablesal.models.training.SeedRun`."""
    check_model_index(models, index)
    if models.user_models:
        return user_model_runs(models, dataset, runs_dir, progress, index=index)[0]
    if not dataset.labelled or not len(dataset.train_labels):
        raise ValueError(f"[data] {dataset.name} has no labelled training images, so stablesal cannot train a model on "
                         "it: give your own ([models] checkpoints or --checkpoint)")
    run = seed_plan(models.k, models.vary, models.base_seed, len(dataset.train_labels))[index]
    return train_one(dataset, run, train_config_from(models), runs_dir / "models", models.device, progress=progress)


def default_model_file(models: ModelSettings, dataset: ImageDataset, runs_dir: Path, index: int = 0) -> Path:
    """Where :func:`explained_run` keeps stablesal's model ``index`` when ``[models]`` names none."""
    run = seed_plan(models.k, models.vary, models.base_seed, len(dataset.train_labels))[index]
    return checkpoint_file(dataset, run, train_config_from(models), runs_dir / "models")


def with_predicted_labels(dataset: ImageDataset, model) -> ImageDataset:
    """Unlabelled test images labelled with ``model``'s predicted class (the class every map then
    explains); classes named ``class i`` when the data named none."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))  # the images stay on the CPU
    with torch.inference_mode():
        outputs = torch.cat([model(chunk.to(device)).cpu() for chunk in dataset.test_images.split(256)])
    names = dataset.class_names or [f"class {i}" for i in range(outputs.shape[1])]
    return dataclasses.replace(dataset, test_labels=outputs.argmax(1).cpu(), class_names=names,
                               name=f"{dataset.name} (labels: model 0's predictions)")


def user_fold_runs(models: ModelSettings, k: int, subset: ImageDataset, runs_dir: Path, progress: bool = True) -> list:
    """The ``k`` fold models of the MeGe protocol (``[folds] k``) trained by the user's function:
    model i on every fold of ``subset`` but fold i, seed ``base_seed + i``; prepared like the main models."""
    factory = model_factory(models.factory, models.factory_kwargs, models.arch, subset.num_classes)
    plan = seed_plan(k, "leave-fold-out", models.base_seed, len(subset.train_labels))
    runs = []
    for index, (model, meta) in enumerate(train_with_user_function(subset, models.train, plan,
                                                                   runs_dir / "user-fold-models", factory, progress)):
        model = prepare(model, f"fold model {index}", models.mean, models.std).to(models.device)
        runs.append(SeedRun(index, model, {**meta, "index": index,
                                           "test_accuracy": accuracy(model, subset.test_images, subset.test_labels),
                                           "train_accuracy": float("nan")}))
    return runs


def train_model_sets(models: ModelSettings, dataset: ImageDataset, runs_dir: Path, progress: bool = True,
                     executor: Executor = SERIAL):
    """The K main models and the control models, trained or loaded. Models the user brings
    ([models] checkpoints or train) are the main set, with no control set.

    The control set is the seed-only arm of the variance decomposition: ``control_k`` models on
    main model 0's data (its split, or all the data when the main models vary only in seed) with
    seeds ``base_seed + k + i``, none of them a main model, so the two sets share no model.

    ``[models] permuted_labels``: every main and control model trains on its training labels
    permuted with its own label seed (``derive(base_seed, "permuted-main", index)``, never a
    random-label null's): the whole report as a negative control, where no agreement should be
    credited beyond the random-label null."""
    if models.user_models:
        return user_model_runs(models, dataset, runs_dir, progress), []
    if not dataset.labelled or not len(dataset.train_labels):
        raise ValueError(f"[data] {dataset.name} has no labelled training images, so stablesal cannot train models on "
                         "it: give your own ([models] checkpoints)")
    train_config = train_config_from(models)
    split = None if models.vary == "seed" else 0
    control_plan = [{"index": models.k + i, "seed": models.base_seed + models.k + i, "split": split,
                     "splits": 1 if split is None else models.k} for i in range(models.control_k)]
    if models.permuted_labels:  # the negative control: every model of both sets on its own permuted labels
        plan = seed_plan(models.k, models.vary, models.base_seed, len(dataset.train_labels)) + control_plan
        plan = [dict(run, label_seed=derive(models.base_seed, "permuted-main", run["index"])) for run in plan]
        trained = train_plan(dataset, plan, models, runs_dir, progress, executor, "permuted-label models")
        return trained[:models.k], trained[models.k:]
    runs = train_seeds(dataset, k=models.k, vary=models.vary, config=train_config, out_dir=runs_dir / "models",
                       base_seed=models.base_seed, device=models.device, progress=progress, executor=executor)
    return runs, train_plan(dataset, control_plan, models, runs_dir, progress, executor, "control seeds")


def train_plan(dataset: ImageDataset, plan: list[dict], models: ModelSettings, runs_dir: Path, progress: bool, executor: Executor,
               desc: str) -> list:
    """stablesal's training of every entry of ``plan`` (under ``runs_dir/models``, reused when finished),
    one unit of ``executor`` each; models on ``[models] device``."""
    return train_runs(dataset, plan, train_config_from(models), runs_dir / "models", models.device, progress,
                      executor, desc)


def untrained_models(models: ModelSettings, dataset: ImageDataset, template=None) -> tuple[list, dict]:
    """The untrained-network null: ``untrained_k`` networks of the main architecture, each with its
    own initialisation seed ``derive(base_seed, "untrained", i)``, never trained; eval mode,
    frozen parameters. Returns the models and their identity (for the study cache). For models
    the user brings: the factory's architecture, or else copies of ``template`` (main model 0)
    with every layer re-initialised; none for TorchScript without a factory."""
    seeds = [derive(models.base_seed, "untrained", i) for i in range(models.untrained_k)]
    if models.user_models:
        return _user_untrained(models, dataset, template, seeds)
    built = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):  # seeded, without moving the caller's global generator
            torch.manual_seed(seed)
            model = build_model(models.arch, dataset.image_shape[0], dataset.num_classes, dataset.mean, dataset.std,
                                **models.model_options)
        model.eval().to(models.device)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        built.append(model)
    options = {"model_options": models.model_options} if models.model_options else {}  # none: the identity as before
    return built, {"arch": models.arch, **options, "seeds": seeds}


def _user_untrained(models: ModelSettings, dataset: ImageDataset, template, seeds: list[int]) -> tuple[list, dict]:
    factory = model_factory(models.factory, models.factory_kwargs, models.arch, dataset.num_classes)
    built = []
    for seed in seeds:
        if factory is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                network = factory()
            model = prepare(network.eval(), "untrained network", models.mean, models.std)
        else:
            model = None if template is None else reinitialised(template, seed)
            if model is None:
                return [], {"unavailable": "no factory and the model cannot be re-initialised (TorchScript)"}
            model = prepare(model.eval(), "untrained network")
        built.append(model.to(models.device))
    return built, {"arch": models.factory or models.arch or "re-initialised copies of model 0", "seeds": seeds}


def random_label_runs(models: ModelSettings, dataset: ImageDataset, runs_dir: Path, progress: bool = True,
                      executor: Executor = SERIAL) -> tuple[list, dict]:
    """The random-label null: ``random_label_k`` models trained exactly as the main models are
    (the first ``random_label_k`` entries of the main seed plan: the same seeds and the same parts
    of the data, extended when it asks for more models than there are main ones), each on its
    training labels permuted with its own ``label_seed``
    (:func:`~stablesal.models.training.training_labels`; Adebayo et al., NeurIPS 2018). What they
    share beyond the untrained networks is what training on these images gives without any link
    from image to class. With the user's training function, that function trains them; with
    checkpoints alone there is no recipe to repeat and the set is empty. Returns ``(runs, identity)``
    (``identity`` says why when the set is empty)."""
    if not models.random_label_k:
        return [], {}
    if models.checkpoints:
        return [], {"unavailable": "checkpoints alone give no training recipe to repeat on permuted labels "
                                   "([models] train runs it)"}
    if not dataset.labelled or not len(dataset.train_labels):
        return [], {"unavailable": f"[data] {dataset.name} has no labelled training images to permute"}
    k = max(models.k, models.random_label_k)
    base = seed_plan(k, models.vary, models.base_seed, len(dataset.train_labels))[:models.random_label_k]
    first = models.k + (0 if models.user_models else models.control_k)
    plan = random_label_plan(base, models.base_seed, first)
    if models.train:
        factory = model_factory(models.factory, models.factory_kwargs, models.arch, dataset.num_classes)
        runs = []
        for (model, meta), run in zip(train_with_user_function(dataset, models.train, plan,
                                                               runs_dir / "user-random-label-models", factory,
                                                               progress), plan):
            model = prepare(model, f"random-label model {run['index']}", models.mean, models.std).to(models.device)
            runs.append(SeedRun(run["index"], model, {
                **meta, "test_accuracy": accuracy(model, dataset.test_images, dataset.test_labels),
                "train_accuracy": float("nan")}))
    else:
        runs = train_plan(dataset, plan, models, runs_dir, progress, executor, "random-label models")
    return runs, {"label_seeds": [run["label_seed"] for run in plan], "models": [r.meta["config_hash"] for r in runs]}


def bn_calibrated_models(models: ModelSettings, dataset: ImageDataset, template=None,
                         untrained: list | None = None) -> tuple[list, dict]:
    """The BN-calibrated null: ``bn_calibrated_k`` untrained networks (the initialisations of
    :func:`untrained_models`: ``derive(base_seed, "untrained", i)``) with their batch-norm
    statistics re-estimated on :data:`BN_CALIBRATION_IMAGES` training images
    (:func:`calibrate_batch_norm`). It separates what the data's statistics alone put into the maps
    from what learning does. Empty, with the reason in the identity, for an architecture without
    batch norm (it would be the untrained set again) or data without training images."""
    if not models.bn_calibrated_k:
        return [], {}
    if not len(dataset.train_labels):
        return [], {"unavailable": f"[data] {dataset.name} has no training images to calibrate on"}
    count = dataclasses.replace(models, untrained_k=models.bn_calibrated_k)
    if untrained is not None and len(untrained) >= models.bn_calibrated_k:  # the same initialisations, built once
        networks = list(untrained[:models.bn_calibrated_k])
        identity = {"arch": models.factory or models.arch, "seeds": [derive(models.base_seed, "untrained", i)
                                                                     for i in range(models.bn_calibrated_k)]}
    else:
        networks, identity = untrained_models(count, dataset, template)
    if not networks:
        return [], identity
    if not has_batch_norm(networks[0]):
        return [], {"unavailable": "the architecture has no batch-norm layer: the set would be the untrained one"}
    run = seed_plan(models.k, models.vary, models.base_seed, len(dataset.train_labels))[0]
    indices = training_indices(run, len(dataset.train_labels))[:BN_CALIBRATION_IMAGES]
    images = dataset.train_images[indices]
    return ([calibrate_batch_norm(network, images) for network in networks],
            {**identity, "calibration_images": int(len(indices))})
