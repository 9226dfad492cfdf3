"""Models: :mod:`.architectures` (the registered model factories), :mod:`.training` (retrained
seeds), :mod:`.nulls` (random-label and BN-calibrated networks, the null families) and
:mod:`.user_models` (a user's own models).

The names of the former module ``stablesal.models`` (now :mod:`stablesal.models.architectures`)
are re-exported here."""

from .architectures import (
    Normalize, SmallCNN, ResNetCIFAR, ModelFactory, MODEL_FACTORIES, register_model, build_model,
)
