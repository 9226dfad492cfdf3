"""Tests of :mod:`stablesal.core.settings`."""

import pytest

from stablesal.models.training import TrainConfig


def test_config_validation():
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
