"""The package version (``stablesal.__version__``), kept in the bottom layer so that every layer
may record it."""

__version__ = "0.1.0"
