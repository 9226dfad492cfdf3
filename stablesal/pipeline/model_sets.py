"""Moved to :mod:`stablesal.models.model_sets` (the builders read only the ``[models]`` settings,
so they belong to the models layer); this path re-exports it for one release."""

from ..models.model_sets import (  # noqa: F401
    bn_calibrated_models, check_model_index, checkpoint_paths, default_model_file, explained_run, main_model_count,
    random_label_runs, train_config_from, train_model_sets, train_plan, untrained_models, user_fold_runs,
    user_model_runs, with_predicted_labels,
)
