"""The factor study: :mod:`.run` (perturbation factors × levels) and :mod:`.effects` (their effects)."""
