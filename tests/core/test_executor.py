"""Tests of :mod:`stablesal.core.executor`.

Units of work give the same results in this process, in a process pool and on a real Dask
LocalCluster; an interrupted run (kill -9) resumes, recomputes nothing finished and ends with the
same numbers."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from stablesal.core.executor import DaskExecutor, ProcessExecutor, SerialExecutor, make_executor
from stablesal.models.training import train_seeds
from stablesal.studies.stability.run import StudySettings, run_study


def _square(x):
    return x * x


def _without_timings(value):
    """Drop every timing field (they differ run to run) from nested results."""
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if "second" not in k and k not in ("threads", "timings_s")}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def test_executors_keep_item_order_and_report_each_result():
    seen = []
    with SerialExecutor(threads=1) as serial:
        assert serial.map(_square, [3, 1, 2], on_result=lambda i, r: seen.append((i, r)), progress=False) == [9, 1, 4]
    assert sorted(seen) == [(0, 9), (1, 1), (2, 4)]
    with pytest.raises(ValueError, match="workers"):
        SerialExecutor(workers=0)
    assert isinstance(make_executor(), SerialExecutor)


def _threads(_):
    return torch.get_num_threads()


def test_serial_executor_keeps_the_process_thread_count_unless_given_one(capsys):
    before = torch.get_num_threads()
    assert SerialExecutor().map(_threads, [0, 1], progress=False) == [before, before]
    assert SerialExecutor(threads=1).map(_threads, [0], progress=False) == [1]
    assert torch.get_num_threads() == before  # restored after the unit
    with pytest.raises(ValueError, match="workers must be 1"):
        SerialExecutor(workers=2)
    SerialExecutor().map(_square, [7], desc="units", describe=lambda item: f"item-{item}")
    assert "item-7" in capsys.readouterr().err  # the bar names the unit it runs


def test_process_pool_matches_serial():
    with ProcessExecutor(workers=2, threads=1) as pool:
        assert pool.map(_square, list(range(5)), progress=False) == [0, 1, 4, 9, 16]
        assert pool.map(_threads, [0], progress=False) == [1]  # a pool unit runs with the threads it was given


@pytest.fixture(scope="module")
def dask_executor():
    executor = DaskExecutor(workers=2, threads=1)
    yield executor
    executor.close()


def test_dask_training_is_bit_identical_to_local(tiny_shapes, tiny_config, tmp_path, dask_executor):
    local = train_seeds(tiny_shapes, k=2, vary="both", config=tiny_config, out_dir=tmp_path / "local",
                        progress=False, executor=SerialExecutor(threads=1))
    remote = train_seeds(tiny_shapes, k=2, vary="both", config=tiny_config, out_dir=tmp_path / "dask",
                         progress=False, executor=dask_executor)
    for a, b in zip(local, remote):
        assert a.meta["config_hash"] == b.meta["config_hash"]
        assert a.meta["test_accuracy"] == b.meta["test_accuracy"]
        for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
            assert torch.equal(x, y), name
    assert len(list((tmp_path / "dask").glob("model-*.pt"))) == 2


def test_dask_study_matches_local(tiny_shapes, tiny_config, tmp_path, dask_executor):
    runs = train_seeds(tiny_shapes, k=2, vary="seed", config=tiny_config, out_dir=tmp_path / "models", progress=False)
    images, labels = tiny_shapes.test_images[:4], tiny_shapes.test_labels[:4]
    settings = StudySettings(methods=["saliency", "smoothgrad"], groupings=["pixel", "grid"], n_segments=9,
                             n_samples=2, mu_fidelity_subsets=8, sanity=False)
    model_sets = {"main": [r.model for r in runs]}
    with SerialExecutor(threads=1) as serial:
        local = run_study(model_sets, images, labels, None, settings, cache_dir=tmp_path / "a", progress=False,
                          executor=serial)
    remote = run_study(model_sets, images, labels, None, settings, cache_dir=tmp_path / "b", progress=False,
                       executor=dask_executor)
    assert _without_timings(local) == _without_timings(remote)
    assert len(list((tmp_path / "b").glob("*.json"))) == 3  # two methods and the random control


def test_dask_factor_study_matches_local(tiny_shapes, tiny_config, tmp_path, dask_executor):
    from stablesal.studies.factors.run import FactorSettings, run_factor_study

    model = train_seeds(tiny_shapes, k=1, vary="seed", config=tiny_config, out_dir=tmp_path / "m", progress=False)[0].model
    settings = FactorSettings(segmentations=["grid-bilinear", "grid/gaussian"], samplers=["random", "single"],
                              sample_sizes=["M", 12], calculators=["rise", "pda", "ciu"], n_segments=9, n_images=3)
    images, labels = tiny_shapes.test_images[:3], tiny_shapes.test_labels[:3]
    with SerialExecutor(threads=1) as serial:
        local = run_factor_study(model, images, labels, settings, cache_dir=tmp_path / "a", progress=False,
                                 executor=serial)
    remote = run_factor_study(model, images, labels, settings, cache_dir=tmp_path / "b", progress=False,
                              executor=dask_executor)
    assert _without_timings(local) == _without_timings(remote)


TINY_CONFIG = """
[data]
n_train = 400
n_test = 60
size = 16
[models]
epochs = 2
batch_size = 64
[gradient]
methods = ["saliency", "integrated_gradients", "smoothgrad", "suppression"]
groupings = ["pixel", "grid"]
n_segments = 9
n_samples = 4
n_steps = 4
n_images = 8
"""


def _stability(tmp_path: Path, name: str) -> list[str]:
    return [sys.executable, "-m", "stablesal.cli", "stability", "--config", str(tmp_path / "tiny.toml"), "-k", "2",
            "--control-k", "3", "--untrained-k", "3", "--runs", str(tmp_path / name), "--out", str(tmp_path / f"{name}-out"), "-q"]


def test_kill_9_mid_run_resumes_without_recomputing(tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY_CONFIG)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    # reference: an uninterrupted run (the timeouts only catch a hang: they are not a speed test)
    subprocess.run(_stability(tmp_path, "whole"), check=True, env=env, capture_output=True, timeout=1800)
    # the same run, killed with SIGKILL once the first stability units are on disk
    process = subprocess.Popen(_stability(tmp_path, "killed"), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    units = tmp_path / "killed" / "stability" / "stability"
    # no deadline (a slow machine is not a failure): the same command just ran to its end, so the
    # loop ends either with units on disk or with the run over (then the assert below says so)
    while len(list(units.glob("*.json"))) < 2 and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be interrupted"
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = {p: p.stat().st_mtime_ns for p in units.glob("*.json")}
    assert finished and not (tmp_path / "killed-out" / "results.json").exists()
    for path in finished:  # every file under a final name is complete (temporary name, then rename)
        json.loads(path.read_text())
    subprocess.run(_stability(tmp_path, "killed"), check=True, env=env, capture_output=True, timeout=1800)
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in finished.items())  # nothing finished was redone
    whole = json.loads((tmp_path / "whole-out" / "results.json").read_text())
    resumed = json.loads((tmp_path / "killed-out" / "results.json").read_text())
    whole["config"]["report"] = resumed["config"]["report"] = None  # the runs folders differ by name
    assert _without_timings(whole) == _without_timings(resumed)


def test_corrupt_cached_unit_is_detected_and_redone(tiny_shapes, tiny_config, tmp_path):
    runs = train_seeds(tiny_shapes, k=2, vary="seed", config=tiny_config, out_dir=tmp_path / "models", progress=False)
    images, labels = tiny_shapes.test_images[:3], tiny_shapes.test_labels[:3]
    settings = StudySettings(methods=["saliency"], groupings=["pixel"], mu_fidelity_subsets=8, sanity=False)
    model_sets = {"main": [r.model for r in runs]}
    first = run_study(model_sets, images, labels, None, settings, cache_dir=tmp_path / "cache", progress=False)
    unit = next(p for p in (tmp_path / "cache").glob("*saliency*.json"))
    unit.write_text("[]")  # valid JSON, wrong content: only the checksum can tell
    again = run_study(model_sets, images, labels, None, settings, cache_dir=tmp_path / "cache", progress=False)
    assert _without_timings(again) == _without_timings(first)
    assert json.loads(unit.read_text()) != []  # recomputed and rewritten


def test_an_executor_that_is_not_one_is_refused_before_any_work(tiny_shapes, tmp_path):
    """None no longer means "here" (SERIAL does): every entry that takes an executor names it."""
    with pytest.raises(TypeError, match="executor must be a stablesal.core.executor.Executor"):
        train_seeds(tiny_shapes, k=1, out_dir=tmp_path, progress=False, executor=None)
    with pytest.raises(TypeError, match="got None"):
        run_study({"main": [torch.nn.Identity()] * 2}, torch.zeros(1, 1, 4, 4), torch.zeros(1, dtype=torch.long),
                  None, StudySettings(), executor=None)
    assert not list(tmp_path.iterdir())
