"""Gradient explainers: :mod:`.sampling` (noise, paths, baselines), :mod:`.methods` (the
registered methods, ``make_method``) and :mod:`.diagnostics`."""
