"""What the stages of one run share: the configuration, the data, the model sets (built once, on
first use) and the maps one stage keeps for another.

A stage reads what it needs from the :class:`Context` and returns its result; it never builds a
model set itself, so the main, control and untrained models are trained, loaded or initialised
once per run whatever the stages that use them.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.executor import SERIAL, Executor, check_executor
from ..data.datasets import ImageDataset
from ..data.selection import class_counts, ordered_for_explaining, test_positions
from ..models.training import summary_rows
from ..studies.stability.map_store import MapStore
from .config import StudyConfig
from ..core.settings import MAIN, NULL_SETS
from ..models.model_sets import (
    bn_calibrated_models, random_label_runs, train_model_sets, untrained_models, with_predicted_labels,
)


@dataclass
class Context:
    """One run's shared state. ``stages``: the names of the stages this run will run (a stage that
    keeps maps for a later one asks whether that one runs); ``results``: each finished stage's
    result, by stage name; ``warnings``: what :meth:`warn` said, for ``results.json`` and the page;
    ``explained``: the runs of test images the stages took (:meth:`test_images`), with their classes;
    ``uses``: the model sets the stages that run read (their ``uses``): the control models and a
    null family are trained or built only when a stage uses them (default: every set).

    ``dataset``'s test split is in the order studies take images from (``[data] selection``,
    :func:`~stablesal.data.selection.ordered_for_explaining`); an unlabelled split is put in that
    order once model 0 has labelled it."""

    config: StudyConfig
    dataset: ImageDataset
    runs_dir: Path                   # checkpoints and cached units of this run (<runs>/<name>)
    out: Path                        # the results folder: results.json, the tables, figures/
    progress: bool = True
    executor: Executor = SERIAL        # where independent units run (serial: here, one after another)
    stages: tuple[str, ...] = ()
    results: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    explained: list = field(default_factory=list)
    uses: frozenset = frozenset((MAIN, "control") + NULL_SETS)

    def __post_init__(self) -> None:
        check_executor(self.executor)

    def warn(self, message: str) -> None:
        """Say ``message`` now, on one line of stderr (``warning: <message>``), and keep it: the run
        records it in ``results.json["warnings"]`` and the page shows it at the top."""
        print(f"warning: {message}", file=sys.stderr, flush=True)
        self.warnings.append(message)

    @property
    def device(self) -> str:
        return self.config.models.device

    @functools.cached_property
    def trained(self) -> tuple[list, list]:
        """``(main runs, control runs)``: the K main models and the seed-only control models,
        trained, resumed or loaded once (:func:`~stablesal.models.model_sets.train_model_sets`);
        no control model when no stage uses them. Unlabelled test images are labelled here with main
        model 0's predictions."""
        models = self.config.models
        if "control" not in self.uses:
            models = dataclasses.replace(models, control_k=0)
        runs, control = train_model_sets(models, self.dataset, self.runs_dir, self.progress, self.executor)
        if not self.dataset.labelled:
            data = self.config.data
            self.dataset = ordered_for_explaining(with_predicted_labels(self.dataset, runs[0].model),
                                                  data.selection, data.selection_seed)
        return runs, control

    @property
    def runs(self) -> list:
        return self.trained[0]

    @property
    def control_runs(self) -> list:
        return self.trained[1]

    def model_rows(self) -> list[dict]:
        """One row per main, control and random-label model (seed, split, accuracies, training time)."""
        random_label = self.random_label[0] if "random_label" in self.uses else []
        return ([dict(row, set="main") for row in summary_rows(self.runs)]
                + [dict(row, set="control") for row in summary_rows(self.control_runs)]
                + [dict(row, set="random_label") for row in summary_rows(random_label)])

    @functools.cached_property
    def untrained(self) -> tuple[list, dict]:
        """``(models, identity)`` of the untrained-network null (none when ``[models] untrained_k`` is 0)."""
        if not self.config.models.untrained_k:
            return [], {}
        template = self.runs[0].model  # first: loading the models may relabel the dataset
        return untrained_models(self.config.models, self.dataset, template)

    @functools.cached_property
    def random_label(self) -> tuple[list, dict]:
        """``(runs, identity)`` of the random-label null
        (:func:`~stablesal.models.model_sets.random_label_runs`; none when ``random_label_k`` is 0)."""
        self.trained  # first: the main models (and the labels of unlabelled data)
        return random_label_runs(self.config.models, self.dataset, self.runs_dir, self.progress, self.executor)

    @functools.cached_property
    def bn_calibrated(self) -> tuple[list, dict]:
        """``(models, identity)`` of the BN-calibrated null
        (:func:`~stablesal.models.model_sets.bn_calibrated_models`)."""
        if not self.config.models.bn_calibrated_k:
            return [], {}
        untrained = self.untrained[0] if self.config.models.untrained_k else None  # reused: calibrated copies
        return bn_calibrated_models(self.config.models, self.dataset, self.runs[0].model, untrained)

    def null_set(self, name: str) -> tuple[list, dict]:
        """``(models, identity)`` of the null family ``name`` (one of :data:`~stablesal.core.settings.NULL_SETS`)."""
        if name == "random_label":
            runs, identity = self.random_label
            return [run.model for run in runs], identity
        if name == "bn_calibrated":
            return self.bn_calibrated
        if name == "untrained":
            return self.untrained
        raise ValueError(f"null set must be one of {NULL_SETS}, got {name!r}")

    def null_unavailable(self) -> dict[str, str]:
        """Why each null family asked for (``*_k`` > 0) has no models: ``{set: reason}``."""
        models = self.config.models
        asked = {"random_label": models.random_label_k, "bn_calibrated": models.bn_calibrated_k,
                 "untrained": models.untrained_k}
        out = {}
        for name in NULL_SETS:
            if asked[name]:
                built, identity = self.null_set(name)
                if not built:
                    out[name] = identity.get("unavailable", "no models")
        return out

    @functools.cached_property
    def model_sets(self) -> tuple[dict, dict, dict]:
        """``(model_sets, varies, identity)`` for :func:`stablesal.studies.stability.run.run_study`:
        main, control (seed only) and every null family that has models (random-label,
        BN-calibrated, untrained), what differs inside each, and the cache identity."""
        runs, control_runs = self.trained
        sets = {"main": [r.model for r in runs]}
        varies = {"main": self.config.models.vary}
        identity = {"main": [r.meta["config_hash"] for r in runs], "data": self.config.data.__dict__}
        if control_runs:
            sets["control"] = [r.model for r in control_runs]
            varies["control"] = "seed"
            identity["control"] = [r.meta["config_hash"] for r in control_runs]
        null_varies = {"random_label": self.config.models.vary, "bn_calibrated": "init", "untrained": "init"}
        for name in (name for name in NULL_SETS if name in self.uses):
            built, null_identity = self.null_set(name)
            if built:
                sets[name], varies[name], identity[name] = built, null_varies[name], null_identity
        return sets, varies, identity

    @functools.cached_property
    def map_store(self) -> MapStore | None:
        """Where the stability stage keeps the maps the consensus stage will read (None unless the
        consensus runs in this run on images the stability stage explains): the consensus images
        are the first test images of the stability stage, explained with the same settings and
        seeds, so no model pass runs twice."""
        section = self.config.consensus
        if "consensus" not in self.stages or len(self.runs) < 3 or section.n_images > self.config.gradient.n_images:
            return None
        return MapStore(self.runs_dir / "maps", section.n_images, section.groupings, section.methods,
                        sets=(MAIN, self.consensus_reference[0]))

    @functools.cached_property
    def consensus_reference(self) -> tuple[str, list, dict]:
        """``(set name, models, identity)`` of the null family the consensus tests the trained models
        against: ``[consensus] reference``, or, when that family has no models (a warning says so),
        the first of :data:`~stablesal.core.settings.NULL_SETS` that has; ``("", [], {})`` when none has."""
        wanted = self.config.consensus.reference
        for name in (wanted,) + tuple(n for n in NULL_SETS if n != wanted):
            models, identity = self.null_set(name)
            if models:
                if name != wanted:
                    self.warn(f"[consensus] reference {wanted!r} has no models; the consensus tests against the "
                              f"{name} networks instead")
                return name, models, identity
        return "", [], {}

    def test_images(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Test images ``start:stop`` (of the selection order) and their labels on the device, and their
        object masks (or None); the run and its classes are kept in :attr:`explained`."""
        dataset = self.dataset
        chosen = {"first": start, "stop": min(stop, len(dataset.test_labels)),
                  "classes": class_counts(dataset.test_labels[start:stop], dataset.class_names),
                  "positions": test_positions(dataset, start, stop)}
        if chosen not in self.explained:
            self.explained.append(chosen)
        images = dataset.test_images[start:stop].to(self.device)
        labels = dataset.test_labels[start:stop].to(self.device)
        return images, labels, None if dataset.test_masks is None else dataset.test_masks[start:stop]
