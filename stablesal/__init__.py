"""stablesal: how far can you trust the saliency maps of a PyTorch image classifier?

The package's folders are its layers; a module imports only from its own folder's layer or below:
``core`` < ``data``, ``explain``, ``metrics`` < ``models`` < ``studies`` < ``report`` <
``pipeline`` < ``cli``. The names a user needs are found here (imported on first use, so
``import stablesal`` stays cheap):

    import stablesal
    method = stablesal.make_method("integrated_gradients")
    rows = stablesal.run_study(models, images, targets, stablesal.StudySettings())
"""

from .core.version import __version__

# public name -> the module that defines it
_API = {
    **dict.fromkeys(['Explainer'], "explain.protocol"),
    **dict.fromkeys(['CONTROLS', 'RandomMap'], "explain.controls"),
    **dict.fromkeys(['METHODS', 'make_method'], "explain.gradient.methods"),
    **dict.fromkeys(['Perturbation', 'rise', 'lime', 'kernel_shap', 'occlusion', 'pda', 'ciu', 'RISE', 'LIME',
                     'KernelSHAP', 'Occlusion', 'PDA', 'CIU', 'PRESETS', 'make_preset'], "explain.perturbation"),
    **dict.fromkeys(['MeaningfulPerturbation'], "explain.perturbation.meaningful"),
    **dict.fromkeys(['SEGMENTERS', 'make_segmenter'], "explain.segmentation"),
    **dict.fromkeys(['METRICS', 'metric_info', 'grey_maps', 'pairwise_similarity', 'deletion_insertion', 'mu_fidelity', 'srg', 'mege', 'reco'], "metrics"),
    **dict.fromkeys(['load_dataset', 'load_configured'], "data.datasets"),
    **dict.fromkeys(['MODEL_FACTORIES', 'build_model'], "models.architectures"),
    **dict.fromkeys(['train_seeds', 'load_checkpoint'], "models.training"),
    **dict.fromkeys(['load_user_model', 'load_user_models', 'model_factory'], "models.user_models"),
    **dict.fromkeys(['StudySettings', 'TrainConfig', 'ModelSettings', 'FactorSettings', 'RemovalSettings', 'InpainterConfig', 'ConsensusSettings'], "core.settings"),
    **dict.fromkeys(['run_study'], "studies.stability.run"),
    **dict.fromkeys(['consensus_test'], "studies.consensus.test"),
    **dict.fromkeys(['run_consensus_stage'], "studies.consensus.run"),
    **dict.fromkeys(['run_factor_study'], "studies.factors.run"),
    **dict.fromkeys(['run_removal_study'], "studies.removal.run"),
    **dict.fromkeys(['StudyConfig', 'read_toml', 'config_from_dict'], "pipeline.config"),
    **dict.fromkeys(['run_report'], "pipeline.run"),
    **dict.fromkeys(['render_report'], "report.render"),
}

# Modules moved when the folders became the layers: old module (stablesal.<old>) -> its new home.
# The old paths keep working for one release: importing one (``import stablesal.seeds``,
# ``from stablesal.perturbation.samplers import SAMPLERS``) returns the moved module itself, with
# a DeprecationWarning, through the finder below, so no alias file clutters the package;
# stablesal.data, .models, .metrics and .report became packages that re-export their old names.
_MOVED = {
    "attribution": "explain.gradient.methods",
    "checks": "core.checks",
    "chunking": "core.chunking",
    "config": "pipeline.config",
    "consensus": "studies.consensus.test",
    "consensus_sections": "report.sections.consensus",
    "consensus_study": "studies.consensus.run",
    "counter_streams": "core.counter_streams",
    "diagnostics": "explain.gradient.diagnostics",
    "executor": "core.executor",
    "factor_effects": "studies.factors.effects",
    "factor_study": "studies.factors.run",
    "figures": "report.figures",
    "fill_quality": "studies.removal.fill_quality",
    "fills": "core.fills",
    "fold_study": "studies.folds.run",
    "grouping": "explain.grouping",
    "html": "report.html",
    "image_files": "data.image_files",
    "imaging": "core.imaging",
    "inpainting": "explain.inpainting",
    "intervals": "core.intervals",
    "map_store": "studies.stability.map_store",
    "meaningful": "explain.perturbation.meaningful",
    "multiple_testing": "core.multiple_testing",
    "perturbation": "explain.perturbation",
    "planner": "studies.consensus.planner",
    "registry": "core.registry",
    "removal_study": "studies.removal.run",
    "report_sections": "report.sections.common",
    "sampling": "explain.gradient.sampling",
    "seeding": "core.seeding",
    "seeds": "models.training",
    "segmentation": "explain.segmentation",
    "settings": "core.settings",
    "stability": "studies.stability.run",
    "stability_sections": "report.sections.stability",
    "stability_statistics": "studies.stability.statistics",
    "storage": "core.storage",
    "tables": "core.tables",
    "user_models": "models.user_models",
}

__all__ = ["__version__", *_API]


class _MovedModuleFinder:
    """Imports ``stablesal.<old>[.<sub>]`` as the module it moved to (one object under two names,
    so ``isinstance`` checks and registries see one module). A meta-path finder, PEP 451."""

    @staticmethod
    def new_name(fullname: str) -> str | None:
        head, _, tail = fullname.removeprefix(f"{__name__}.").partition(".")
        if not fullname.startswith(f"{__name__}.") or head not in _MOVED:
            return None
        return ".".join([__name__, _MOVED[head]] + ([tail] if tail else []))

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if cls.new_name(fullname) is None:
            return None
        import importlib.util

        return importlib.util.spec_from_loader(fullname, cls)

    @classmethod
    def create_module(cls, spec):
        import importlib
        import warnings

        new = cls.new_name(spec.name)
        warnings.warn(f"{spec.name} moved to {new}; the old path is kept for one release", DeprecationWarning,
                      stacklevel=2)
        return importlib.import_module(new)

    @staticmethod
    def exec_module(module):
        # the moved module ran when it was imported under its new name; the import system has just
        # set its __spec__ to the old name's, which would misdirect reloads and resource lookups
        module.__spec__ = _path_spec(module.__name__)


import sys as _sys


def _path_spec(name: str):
    """The module spec of ``name`` from the path finders (not the moved-module finder)."""
    import importlib.machinery

    parent = _sys.modules[name.rpartition(".")[0]]
    return importlib.machinery.PathFinder.find_spec(name, getattr(parent, "__path__", None))

if not any(isinstance(finder, type) and finder.__name__ == "_MovedModuleFinder" for finder in _sys.meta_path):
    _sys.meta_path.insert(0, _MovedModuleFinder)  # before the path finder, which would load a moved
    # package's submodule a second time under the old name


def __getattr__(name):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
