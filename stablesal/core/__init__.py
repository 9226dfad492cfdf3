"""The bottom layer: generic helpers every other layer may use (registries, settings, input
checks, seeds and counter-based random streams, storage, executors, chunking, imaging, fills,
tables, intervals, multiple testing). Nothing here imports from another stablesal folder."""
