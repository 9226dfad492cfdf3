"""The fold study (:mod:`.run`): MeGe/ReCo across models trained on disjoint folds."""
