"""The stability study: :mod:`.run` (units of model set × method), :mod:`.statistics` (summaries,
contrasts, intervals) and :mod:`.map_store` (maps kept for the consensus)."""
