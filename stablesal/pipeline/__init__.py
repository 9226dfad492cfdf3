"""The pipeline: :mod:`.config` (the TOML configuration) and :mod:`.run` (``stablesal report``:
stages, model sets, ``results.json``)."""
