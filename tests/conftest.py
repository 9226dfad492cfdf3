"""Shared fixtures: tiny generated datasets and small models, all seeded, and the quick report.

Shared helpers that are not fixtures (tiny models, synthetic maps, reference implementations) live
in ``tests/helpers/``; no test module imports another test module."""

import os
import tempfile

import pytest
import torch

os.environ.setdefault("STABLESAL_CACHE", tempfile.mkdtemp(prefix="stablesal-test-cache-"))
# mutation testing forks test processes: one thread each (a forked OpenMP pool can hang)
torch.set_num_threads(int(os.environ.get("STABLESAL_TEST_THREADS", "2")))


@pytest.fixture(scope="session")
def tiny_shapes():
    from stablesal.data import shapes_dataset

    return shapes_dataset(n_train=240, n_test=60, size=16, seed=3, cache_dir=False)


@pytest.fixture(scope="session")
def tiny_config():
    from stablesal.core.settings import TrainConfig

    return TrainConfig(epochs=2, batch_size=64, model_options={"width": 4})


@pytest.fixture(scope="session")
def quick_report(tmp_path_factory):
    """``stablesal report --quick`` run once for the session: the report folder (results.json,
    index.html, figures, CSV files) that the pipeline, render, section and analysis tests read."""
    from stablesal.cli import main

    root = tmp_path_factory.mktemp("report")
    code = main(["report", "--quick", "-q", "--out", str(root / "reports"), "--runs", str(root / "runs")])
    assert code == 0
    return root / "reports" / "quick"
