"""The settings of every study, one dataclass each: the single source of defaults.

The Python API takes these dataclasses, the TOML sections of :mod:`stablesal.config` default to
their values, and the command line's defaults are read from them, so a default is written once.
The module imports nothing heavy: the CLI builds its parser from it without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAIN = "main"                          # the model set of the K retrained models
# The null families, the one that isolates class evidence first: networks trained by the same recipe on permuted labels
# (class evidence is all they lack), untrained networks with batch-norm statistics re-estimated
# on training images (no gradient step), and untrained networks. Each is a model set of its own.
NULL_SETS = ("random_label", "bn_calibrated", "untrained")
NULL_NAMES = {"random_label": "random-label", "bn_calibrated": "BN-calibrated", "untrained": "untrained"}
DRAWS = ("independent", "common")      # explainer draws: one stream per model, or shared
RNG_KINDS = ("auto", "generator", "counter")  # random streams (explain.gradient.methods: generator on the CPU)
# model 0's fidelity metrics (deletion/insertion AUC, µFidelity) in the stability study: "auto"
# computes them for images up to FIDELITY_AUTO_MAX_SIDE pixels a side and leaves them out above
# (~35 forward passes per image per method × grouping: at 224 px 45 % of a study of Saliency and
# SmoothGrad, benchmarks/bench_study_224.py)
FIDELITY_CHOICES = ("auto", "on", "off")
FIDELITY_AUTO_MAX_SIDE = 64
# What differs between the models of a seed plan (models.training); [models] vary takes the first
# three (the leave-fold-out plan is the [folds] section's)
VARY_CHOICES = ("seed", "split", "both", "leave-fold-out")
MODEL_VARY = VARY_CHOICES[:3]
PROCEDURES = ("bh", "by")              # false-discovery procedures (core.multiple_testing)
SCOPES = ("image", "set")              # what one FDR procedure covers (studies.consensus.test)
SUPPRESSION_MODES = ("bernoulli", "fixed", "continuous", "global")  # explain.gradient.sampling
SUPPRESSION_UNITS = ("pixel", "patch", "segment")


@dataclass
class TrainConfig:
    """Hyperparameters shared by every retrained model (AdamW, warm-up then cosine decay).

    arch : a registered architecture (:mod:`stablesal.models.architectures`: ``small_cnn``,
        ``resnet20``, ...); model_options : its keyword options (e.g. ``{"width": 8}``).
    epochs, batch_size, lr, weight_decay : the optimisation; flip : random horizontal flips.
    """

    arch: str = "small_cnn"
    model_options: dict = field(default_factory=dict)
    epochs: int = 6
    batch_size: int = 128
    lr: float = 4e-3
    weight_decay: float = 5e-4
    flip: bool = True

    def __post_init__(self) -> None:
        self.check()

    def check(self, where: str = "") -> None:
        """Refuse values no training can take, naming the field (after ``where``, e.g. ``"[models] "``;
        default: the class name)."""
        where = where or f"{type(self).__name__}."
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{where}{name} must be a positive integer, got {value!r}")
        if not (self.lr > 0):
            raise ValueError(f"{where}lr must be positive, got {self.lr!r}")
        if not (self.weight_decay >= 0):
            raise ValueError(f"{where}weight_decay must be ≥ 0, got {self.weight_decay!r}")

    def training(self) -> "TrainConfig":
        """These hyperparameters alone, as a :class:`TrainConfig` (a subclass's other fields left out)."""
        return TrainConfig(**{name: getattr(self, name) for name in TrainConfig.__dataclass_fields__})

    def record(self) -> dict:
        """The hyperparameters as checkpoints store and hash them. The architecture is stored under
        ``"model"``, its name in checkpoints since the first release, so that those checkpoints are
        still found (same file name) and loaded."""
        values = {name: getattr(self, name) for name in TrainConfig.__dataclass_fields__}
        values["model"] = values.pop("arch")
        return values


@dataclass
class ModelSettings(TrainConfig):
    """The models of a study (the ``[models]`` TOML section): how each is trained (the fields of
    :class:`TrainConfig`) and which are trained.

    k, vary, base_seed : the seed plan of the K main models (:func:`stablesal.models.training.seed_plan`).
    control_k : the seed-only control models (model 0's data, other seeds).
    untrained_k, random_label_k, bn_calibrated_k : the three null families (0: off, else ≥ 3).
    permuted_labels : the main and control models train on permuted labels too (a negative control).
    device : where the models run.
    checkpoints, factory, factory_kwargs, train, mean, std : models the user brings
        (:mod:`stablesal.models.user_models`).
    """

    k: int = 4                       # number of retrained models
    vary: str = "both"               # seed | split | both
    base_seed: int = 0
    control_k: int = 3               # control models: model 0's split, other seeds (0, or >= 3 for intervals)
    untrained_k: int = 4             # untrained networks of the same architecture: a null (0, or >= 3)
    random_label_k: int = 4          # the null that isolates class evidence: same recipe and data, labels permuted
    bn_calibrated_k: int = 4         # untrained networks, batch-norm statistics re-estimated on training images
    permuted_labels: bool = False    # a negative control of the whole report: the main and control models train on
                                     # permuted labels too (their own label seeds), so nothing should beat the null
    device: str = "cpu"
    # models the user brings (stablesal.models.user_models): checkpoint files or glob patterns, the
    # architecture ("package.module:function" or "path/file.py:function" called with factory_kwargs,
    # or arch = "torchvision:<name>"), or a training function called per seed-plan entry
    checkpoints: list = field(default_factory=list)
    factory: str = ""
    factory_kwargs: dict = field(default_factory=dict)
    train: str = ""                  # "package.module:function"(train_images, train_labels, seed, out_path)
    mean: list = field(default_factory=list)  # input normalisation of the user's models (Normalize is prepended)
    std: list = field(default_factory=list)

    @property
    def user_models(self) -> bool:
        """Whether the models come from the user (checkpoints or a training function)."""
        return bool(self.checkpoints or self.train)

    def check(self, where: str = "") -> None:
        where = where or f"{type(self).__name__}."
        super().check(where)
        if self.vary not in MODEL_VARY:
            raise ValueError(f"{where}vary must be 'seed', 'split' or 'both', got {self.vary!r} "
                             "(the leave-fold-out models of the MeGe protocol are the [folds] section)")
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
            raise ValueError(f"{where}k must be a positive integer, got {self.k!r}")
        if self.checkpoints and self.train:
            raise ValueError(f"{where}checkpoints and train: give one of them, not both")
        if bool(self.mean) != bool(self.std) or len(self.mean) != len(self.std):
            raise ValueError(f"{where}mean and std must both be given, one value per channel; got mean="
                             f"{self.mean}, std={self.std}")
        if self.train and not (self.factory or self.arch.startswith("torchvision:")):
            raise ValueError(f"{where}train needs the architecture its checkpoints hold: factory = "
                             "'package.module:function' or arch = 'torchvision:<name>'")
        if self.permuted_labels and self.user_models:
            raise ValueError(f"{where}permuted_labels trains stablesal's own models on permuted labels; it cannot "
                             "apply to checkpoints or a training function of yours")
        for key in ("control_k", "untrained_k", "random_label_k", "bn_calibrated_k"):
            value = getattr(self, key)
            if value != 0 and value < 3:
                raise ValueError(f"{where}{key} must be 0 (off) or at least 3 (a design interval needs 3 "
                                 f"models to delete one from), got {value}")


@dataclass
class StudySettings:
    methods: list = field(default_factory=lambda: [
        "saliency", "integrated_gradients", "smoothgrad", "vargrad", "gradient_shap", "sparsified_smoothgrad",
        "suppression"])
    groupings: list = field(default_factory=lambda: ["pixel", "fastslic", "felzenszwalb", "grid"])
    n_segments: int = 64
    n_samples: int = 32              # samples per map of every random explainer: a gradient method's noise draws,
                                     # a perturbation preset's budget (RISE masks, LIME / KernelSHAP samples)
    n_steps: int = 32
    noise_level: float = 0.15
    seed: int = 0
    deletion_steps: int = 16
    # Petsiuk's insertion blur (σ = 5 px at 224 px) scales to 0.7 px at 32 px and leaves small
    # objects intact, so both curves use the image's mean colour by default.
    deletion_substrate: str = "mean"
    insertion_substrate: str = "mean"
    mu_fidelity_subsets: int = 128   # random subsets of 20 % of a 9×9 grid (Bhatt et al. use 200)
    fidelity: str = "auto"           # auto | on | off: model 0's deletion/insertion AUC and µFidelity (auto: ≤ 64 px)
    sanity: bool = True
    draws: str = "independent"       # independent | common (explainer draws shared by every model; labelled)
    rng: str = "auto"                # auto | generator | counter: random streams (auto: counter streams on CUDA)
    # model sets whose every model gets a second run of each random explainer (the test–retest
    # ceiling); () for none
    retest_sets: tuple[str, ...] = field(default=(MAIN,), metadata={"config": False})  # set by the pipeline

    def __post_init__(self) -> None:
        if self.draws not in DRAWS:
            raise ValueError(f"StudySettings.draws must be one of {DRAWS}, got {self.draws!r}")
        if self.rng not in RNG_KINDS:
            raise ValueError(f"StudySettings.rng must be one of {RNG_KINDS}, got {self.rng!r}")
        if self.fidelity not in FIDELITY_CHOICES:
            raise ValueError(f"StudySettings.fidelity must be one of {FIDELITY_CHOICES}, got {self.fidelity!r}")

    def computes_fidelity(self, image_side: int) -> bool:
        """Whether model 0's fidelity metrics are computed on images ``image_side`` pixels a side
        (the larger side): ``fidelity`` "on", or "auto" up to :data:`FIDELITY_AUTO_MAX_SIDE`."""
        return self.fidelity == "on" or (self.fidelity == "auto" and image_side <= FIDELITY_AUTO_MAX_SIDE)


@dataclass
class FactorSettings:
    segmentations: list = field(default_factory=lambda: ["grid-bilinear", "grid/gaussian", "slic/gaussian"])
    samplers: list = field(default_factory=lambda: ["random", "shap", "single", "inverse-single"])
    sample_sizes: list = field(default_factory=lambda: ["M", 200, 1000])   # "M" = the number of segments
    calculators: list = field(default_factory=lambda: ["rise", "lime-ols", "kernel-shap", "pda", "ciu"])
    maps: list = field(default_factory=lambda: ["segment", "pixel"])
    n_segments: int = 49
    replacement: str | float = 0.0
    n_images: int = 6
    srg_steps: int = 10
    srg_fill: str | float = "mean"
    deletion_steps: int = 10
    seed: int = 0


@dataclass
class RemovalSettings:
    n_images: int = 8
    lime_samples: int = 200
    mp_iterations: int = 60  # the paper: 300; the report keeps within its time budget with 60
    deletion_steps: int = 10
    inpaint_metric_images: int = 8
    robustness: bool = True
    seed: int = 0
    gradient_methods: list = field(default_factory=lambda: ["saliency", "integrated_gradients"])


@dataclass
class InpainterConfig:
    width: int = 16
    conditional: bool = True
    steps: int = 300  # batch 32; set by the report's time budget, the inpainter's quality is measured in the report
    batch_size: int = 32
    lr: float = 2e-3
    label_dropout: float = 0.5     # share of batches trained without the label: as many as with it, since
                                   # every caller but INPAINT-METRIC fills unconditionally
    background_share: float = 0.25  # share of training holes of the "background" kind (60-95 % of the image)
    object_share: float = 0.5      # share of holes from the object masks, when the data has them: half
                                   # remove the object (dilated by one pixel), half everything but the object
    seed: int = 0


@dataclass
class ConsensusSettings:
    """The consensus map and the planner (stablesal.consensus, stablesal.planner; docs/methods.md §7)."""

    methods: list = field(default_factory=lambda: ["saliency", "integrated_gradients", "smoothgrad", "vargrad",
                                                   "gradient_shap", "sparsified_smoothgrad", "suppression"])
    groupings: list = field(default_factory=lambda: ["fastslic", "pixel"])  # pixel: tested on blocks of a grid
    n_images: int = 24
    n_models: int = 0                # trained models in the consensus (0: all); the rest validate the planner
    q: float = 0.05                  # false-discovery rate
    procedure: str = "bh"            # bh (Benjamini–Hochberg) | by (Benjamini–Yekutieli, any dependence)
    scope: str = "image"             # image: FDR over each image's regions | set: over all regions of all images
    reference: str = "random_label"  # the null family the trained models are tested against (random_label |
                                     # bn_calibrated | untrained); the next one present stands in when it has no models
    n_permutations: int = 10_000     # trained-vs-reference permutation test
    calibration_studies: int = 200   # simulated studies of the false-discovery calibration
    pilot_models: int = 3            # the planner's pilot: the first models, random explainers run twice
    validation_samples: int = 8      # held-out models of random methods are also explained with this many
                                     # samples, to check the planner's 1/n extrapolation (0: off)
    target: float = 0.9              # correlation ρ of the planned mean map with the infinite-model mean map
                                     # (ρ² = 0.81 is its reliability) that the planner's sentence aims at
    planner_resamples: int = 1000    # bootstrap resamples of the pilot (and null) models: the plan's interval
    max_samples: int = 256           # the planner adds models rather than go beyond this many samples
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.q < 1.0:
            raise ValueError(f"ConsensusSettings.q (the false-discovery rate) must be in (0, 1), got {self.q!r}")
        if not 0.0 < self.target < 1.0:
            raise ValueError(f"ConsensusSettings.target (the correlation ρ of the mean map with the infinite-model mean "
                             f"map; ρ² is the reliability) must be in (0, 1), got {self.target!r}")
        if self.reference not in NULL_SETS:
            raise ValueError(f"ConsensusSettings.reference must be one of {NULL_SETS}, got {self.reference!r}")
        if self.procedure not in PROCEDURES:
            raise ValueError(f"ConsensusSettings.procedure must be 'bh' or 'by', got {self.procedure!r}")
        if self.scope not in SCOPES:
            raise ValueError(f"ConsensusSettings.scope must be 'image' or 'set', got {self.scope!r}")
        if self.pilot_models < 3:
            raise ValueError(f"ConsensusSettings.pilot_models must be at least 3, got {self.pilot_models!r}")
        if not isinstance(self.validation_samples, int) or self.validation_samples < 0:
            raise ValueError(f"ConsensusSettings.validation_samples must be 0 (off) or positive, got "
                             f"{self.validation_samples!r}")
        for name in ("n_images", "n_permutations", "calibration_studies", "max_samples", "planner_resamples"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ConsensusSettings.{name} must be a positive integer, got {value!r}")


PROXY_NAMES = ("finetune", "bootstrap_finetune", "spawn", "dropout", "swag", "laplace")  # stablesal.models.proxies


@dataclass
class ProxySettings:
    """The proxies' settings (the ``[proxy]`` TOML section's numbers).

    finetune_fraction : share of one epoch of fine-tuning per copy (finetune, bootstrap_finetune).
    finetune_lr : the fine-tuning's constant learning rate, as a share of the training's peak.
    spawn_epoch : the epoch t children are spawned at (0 ≤ t < epochs).
    laplace_images : training images the last layer's Gauss–Newton matrix is computed on (scaled to the
        whole training set).
    prior_precision : the isotropic prior precision of the Laplace approximation.
    swag_fraction : epochs of further training whose iterates SWAG summarises.
    swag_snapshots : iterates SWAG keeps (evenly spaced, ≥ 2; its low-rank part has rank at most one less).
    bn_images : training images each SWAG sample's batch-norm statistics are recomputed on.
    """

    finetune_fraction: float = 0.2
    finetune_lr: float = 0.1
    spawn_epoch: int = 4
    laplace_images: int = 2048
    prior_precision: float = 1.0
    swag_fraction: float = 1.0
    swag_snapshots: int = 20
    bn_images: int = 2048

    def __post_init__(self) -> None:
        if not 0 < self.finetune_fraction <= 10:
            raise ValueError(f"ProxySettings.finetune_fraction must be in (0, 10] epochs, got {self.finetune_fraction!r}")
        if not self.finetune_lr > 0:
            raise ValueError(f"ProxySettings.finetune_lr must be positive, got {self.finetune_lr!r}")
        if not isinstance(self.spawn_epoch, int) or self.spawn_epoch < 0:
            raise ValueError(f"ProxySettings.spawn_epoch must be an integer ≥ 0, got {self.spawn_epoch!r}")
        if not isinstance(self.laplace_images, int) or self.laplace_images < 1:
            raise ValueError(f"ProxySettings.laplace_images must be a positive integer, got {self.laplace_images!r}")
        if not self.prior_precision > 0:
            raise ValueError(f"ProxySettings.prior_precision must be positive, got {self.prior_precision!r}")
        if not 0 < self.swag_fraction <= 10:
            raise ValueError(f"ProxySettings.swag_fraction must be in (0, 10] epochs, got {self.swag_fraction!r}")
        if not isinstance(self.swag_snapshots, int) or self.swag_snapshots < 2:
            raise ValueError(f"ProxySettings.swag_snapshots must be an integer ≥ 2, got {self.swag_snapshots!r}")
        if not isinstance(self.bn_images, int) or self.bn_images < 1:
            raise ValueError(f"ProxySettings.bn_images must be a positive integer, got {self.bn_images!r}")
