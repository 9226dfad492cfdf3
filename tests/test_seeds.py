import pytest
import torch

from stablesal.seeds import TrainConfig, load_checkpoint, seed_plan, split_indices, train_one, train_seeds
from stablesal.storage import CorruptFileError


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


def test_config_validation():
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)


def test_derive_names_independent_streams():
    from stablesal.seeding import derive, mix

    assert derive(7) == 7
    seeds = {derive(0, "explainer", s, k) for s in ("main", "control") for k in range(50)}
    assert len(seeds) == 100 and all(0 <= s < 2 ** 63 for s in seeds)
    assert derive(0, "explainer", "main", 1) == derive(0, "explainer", "main", 1)
    assert derive(0, 1, 2) == mix(0, 1, 2) != mix(0, 2, 1)
    with pytest.raises(TypeError, match="keys must be int or str"):
        derive(0, 1.5)
    with pytest.raises(TypeError, match="seed must be an int"):
        derive("0", 1)


def test_seed_derivation_is_pinned():
    """Seeds feed every checkpoint's identity and every explainer's draws: a change of the mixer
    or of the key hashing silently changes every trained model and map, so the values are part
    of the reproducibility contract (splitmix64-style mixer, blake2b-64 of string keys)."""
    from stablesal.seeding import derive, mix

    assert mix(0) == 8127835874485395264
    assert mix(1, 2) == 3130487852706516645
    assert mix(2 ** 40, 7) == 5432011476005168799
    assert derive(5, "explainer", "main", 3, 0) == 5386510745725516956
    assert derive(0, "x") == 3451306006763173435
    with pytest.raises(TypeError, match="got float 1.5"):
        derive(0, 1.5)
    with pytest.raises(TypeError, match="got str '0'"):
        derive("0", 1)


def test_image_seeds_depend_on_the_pixels_not_their_dtype_batch_or_generator_form():
    """An image's seed comes from its values (float64 and float32 copies of the same values agree,
    position in the batch does not matter); a torch.Generator stands for the int it draws first,
    uniformly from [0, 2^62)."""
    from stablesal.seeding import derive, image_seeds

    images = torch.randint(0, 256, (3, 3, 4, 4), generator=torch.Generator().manual_seed(0)).float() / 256
    seeds = image_seeds(images, 5)
    assert len(set(seeds)) == 3 and all(0 <= s < 2**63 for s in seeds)
    assert image_seeds(images.double(), 5) == seeds
    assert image_seeds(images.flip(0), 5) == seeds[::-1]
    assert image_seeds(images, 6) != seeds
    drawn = int(torch.randint(0, 2**62, (1,), generator=torch.Generator().manual_seed(9)).item())
    assert image_seeds(images, torch.Generator().manual_seed(9)) == image_seeds(images, drawn)
    assert drawn > 2**40   # a draw from the full range, not a small one
    with pytest.raises(TypeError, match="seed must be an int or a torch.Generator"):
        image_seeds(images, 1.5)
    assert derive(5) == 5


def test_seeded_reinitialisations_leave_the_global_generator_alone():
    """randomised_copy, reinitialised and the untrained networks draw from their own seed and do not
    move torch's global generator (a caller's later draws are unaffected)."""
    from torch import nn

    from stablesal.metrics import randomised_copy
    from stablesal.user_models import reinitialised

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)).eval()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = randomised_copy(model, seed=5)
    again = reinitialised(model, 6)
    assert torch.equal(torch.rand(3), expected)
    assert torch.equal(first[0].weight, randomised_copy(model, seed=5)[0].weight)
    assert not torch.equal(again[0].weight, model[0].weight)
