"""The removal study: :mod:`.run` (fidelity under removal fills) and :mod:`.fill_quality`."""
