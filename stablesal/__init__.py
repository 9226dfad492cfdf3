"""stablesal: how far can you trust the saliency maps of a PyTorch image classifier?

The pipeline, one module a stage: ``data`` → ``models`` / ``seeds`` → ``segmentation`` →
``attribution`` (with ``sampling`` and ``grouping``) → ``metrics`` → ``stability`` → ``report``.
"""

__version__ = "0.1.0"
