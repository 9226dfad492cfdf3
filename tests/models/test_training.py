"""Tests of :mod:`stablesal.models.training`."""

import pytest
import torch

from stablesal.core.storage import CorruptFileError
from stablesal.models.training import (
    TrainConfig, load_checkpoint, seed_plan, split_indices, train_one, train_seeds, training_indices,
)


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values() if p.is_floating_point()])


def test_training_is_bit_identical(tiny_shapes, tiny_config):
    a = train_seeds(tiny_shapes, k=1, vary="seed", config=tiny_config, progress=False)[0]
    b = train_seeds(tiny_shapes, k=1, vary="seed", config=tiny_config, progress=False)[0]
    assert torch.equal(_weights(a.model), _weights(b.model))
    c = train_seeds(tiny_shapes, k=1, vary="seed", config=tiny_config, base_seed=1, progress=False)[0]
    assert not torch.equal(_weights(a.model), _weights(c.model))
    assert not a.model.training and not any(p.requires_grad for p in a.model.parameters())


def test_plan_and_splits():
    plan = seed_plan(3, "both", 10, 100)
    assert [r["seed"] for r in plan] == [10, 11, 12] and [r["split"] for r in plan] == [0, 1, 2]
    assert {r["seed"] for r in seed_plan(3, "split", 10, 100)} == {10}
    assert {r["split"] for r in seed_plan(3, "seed", 10, 100)} == {None}
    parts = split_indices(100, 3)
    joined = torch.cat(parts)
    assert len(joined) == 100 and len(set(joined.tolist())) == 100  # disjoint and complete
    with pytest.raises(ValueError, match="vary"):
        seed_plan(2, "colour", 0, 10)
    with pytest.raises(ValueError, match="k must"):
        split_indices(5, 6)


def test_resume_after_interruption_equals_uninterrupted(tiny_shapes, tmp_path):
    config = TrainConfig(epochs=3, batch_size=64, model_options={"width": 4})
    run = seed_plan(1, "seed", 0, 0)[0]
    reference = train_one(tiny_shapes, run, config, out_dir=None, progress=False)
    stopped = train_one(tiny_shapes, run, config, out_dir=tmp_path, progress=False, stop_after_epoch=1)
    assert stopped.meta == {"interrupted_after_epoch": 1}
    assert len(list(tmp_path.glob("*.partial.pt"))) == 1
    resumed = train_one(tiny_shapes, run, config, out_dir=tmp_path, progress=False)
    assert torch.equal(_weights(reference.model), _weights(resumed.model))
    assert not list(tmp_path.glob("*.partial.pt"))  # the partial checkpoint is cleaned up
    assert [h["epoch"] for h in resumed.meta["history"]] == [1, 2, 3]


def test_rerun_skips_finished_and_retrains_corrupt(tiny_shapes, tiny_config, tmp_path):
    runs = train_seeds(tiny_shapes, k=2, vary="both", config=tiny_config, out_dir=tmp_path, progress=False)
    assert {r.meta["split"] for r in runs} == {0, 1} and all(r.meta["train_size"] == 120 for r in runs)
    files = sorted(tmp_path.glob("model-*.pt"))
    assert len(files) == 2
    stamps = [f.stat().st_mtime_ns for f in files]
    again = train_seeds(tiny_shapes, k=2, vary="both", config=tiny_config, out_dir=tmp_path, progress=False)
    assert [f.stat().st_mtime_ns for f in files] == stamps  # loaded, not retrained
    assert torch.equal(_weights(runs[1].model), _weights(again[1].model))
    files[0].write_bytes(files[0].read_bytes()[:-50])  # truncate
    with pytest.warns(UserWarning, match="retraining"):
        redone = train_seeds(tiny_shapes, k=2, vary="both", config=tiny_config, out_dir=tmp_path, progress=False)
    assert torch.equal(_weights(runs[0].model), _weights(redone[0].model))


def test_load_checkpoint_and_errors(tiny_shapes, tiny_config, tmp_path):
    run = train_seeds(tiny_shapes, k=1, vary="seed", config=tiny_config, out_dir=tmp_path, progress=False)[0]
    path = next(tmp_path.glob("model-*.pt"))
    loaded = load_checkpoint(path, dataset=tiny_shapes)
    assert torch.equal(_weights(loaded.model), _weights(run.model))
    assert loaded.meta["test_accuracy"] == run.meta["test_accuracy"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt", dataset=tiny_shapes)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="corrupt"):
        load_checkpoint(path, dataset=tiny_shapes)


def test_custom_model_factory(tiny_shapes, tiny_config):
    from stablesal.models import Normalize

    factory = lambda: torch.nn.Sequential(Normalize(tiny_shapes.mean, tiny_shapes.std), torch.nn.Flatten(),  # noqa
                                          torch.nn.Linear(3 * 16 * 16, 10))
    run = train_seeds(tiny_shapes, k=1, vary="seed", config=tiny_config, model_factory=factory, progress=False)[0]
    assert isinstance(run.model[1], torch.nn.Flatten) and 0 <= run.test_accuracy <= 1


def test_leave_fold_out_plan_holds_out_one_fold_each():
    plan = seed_plan(4, "leave-fold-out", base_seed=10, n_train=103)
    assert [run["held_out_fold"] for run in plan] == [0, 1, 2, 3]
    assert [run["seed"] for run in plan] == [10, 11, 12, 13]
    folds = split_indices(103, 4, seed=0)
    for run in plan:
        kept = set(training_indices(run, 103).tolist())
        held = set(folds[run["held_out_fold"]].tolist())
        assert kept.isdisjoint(held) and len(kept) + len(held) == 103
    with pytest.raises(ValueError, match="at least 2"):
        seed_plan(1, "leave-fold-out", 0, 10)
    # the other plans are unchanged: no held-out fold, their split or everything
    assert training_indices(seed_plan(2, "seed", 0, 10)[1], 10).tolist() == list(range(10))
    assert torch.equal(training_indices(seed_plan(2, "split", 0, 10)[1], 10), split_indices(10, 2, seed=0)[1])


def test_leave_fold_out_training_records_the_fold(tiny_shapes, tiny_config):
    runs = train_seeds(tiny_shapes, k=3, vary="leave-fold-out", config=tiny_config, progress=False)
    sizes = [len(part) for part in split_indices(len(tiny_shapes.train_labels), 3, seed=0)]
    assert [run.meta["held_out_fold"] for run in runs] == [0, 1, 2]
    assert [run.meta["train_size"] for run in runs] == [len(tiny_shapes.train_labels) - s for s in sizes]


def test_checkpoints_keep_storing_the_architecture_under_model():
    """TrainConfig's field is ``arch``; checkpoints store and hash it as ``"model"``, the key of every
    checkpoint written before the rename, so their names (hashes of this record) do not change."""
    from stablesal.core.settings import ModelSettings

    stored = {"model": "small_cnn", "model_options": {}, "epochs": 6, "batch_size": 128, "lr": 0.004,
              "weight_decay": 0.0005, "flip": True}
    assert TrainConfig().record() == stored
    assert ModelSettings(k=7, control_k=0).record() == stored  # the [models] section trains the same models
