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
    **dict.fromkeys(['METHODS', 'make_method'], "explain.gradient.methods"),
    **dict.fromkeys(['Perturbation', 'RISE', 'LIME', 'KernelSHAP', 'Occlusion', 'PDA', 'CIU', 'PRESETS', 'make_preset'], "explain.perturbation"),
    **dict.fromkeys(['MeaningfulPerturbation'], "explain.perturbation.meaningful"),
    **dict.fromkeys(['SEGMENTERS', 'make_segmenter'], "explain.segmentation"),
    **dict.fromkeys(['METRICS', 'metric_info', 'grey_maps', 'pairwise_similarity', 'deletion_insertion', 'mu_fidelity', 'srg', 'mege', 'reco'], "metrics"),
    **dict.fromkeys(['load_dataset', 'load_configured'], "data.datasets"),
    **dict.fromkeys(['MODEL_FACTORIES', 'build_model'], "models.architectures"),
    **dict.fromkeys(['train_seeds', 'load_checkpoint'], "models.training"),
    **dict.fromkeys(['load_user_model', 'load_user_models', 'model_factory'], "models.user_models"),
    **dict.fromkeys(['StudySettings', 'TrainConfig', 'FactorSettings', 'RemovalSettings', 'InpainterConfig', 'ConsensusSettings'], "core.settings"),
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
# Each old path is a one-line alias module kept for one release (tests/test_architecture.py
# exempts exactly these from the layer order); stablesal.data, .models, .metrics and .report
# became packages that re-export their old names.
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


def __getattr__(name):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
