"""Tests of :mod:`stablesal.models.user_models`.

Models a user brings: every checkpoint format, the factory strings, torchvision names, the user's
training function, and the one-line messages for each bad input."""

import sys
import types
import warnings

import pytest
import torch
from torch import nn

from stablesal.models.user_models import (
    import_object, load_user_model, load_user_models, model_factory, output_classes, prepare, reinitialised,
    train_with_user_function,
)

from tests.helpers.user_models import _report_config, _run

FACTORY_SOURCE = '''
import torch
from torch import nn


def tiny(width=4, classes=10):
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, classes))


def train(train_images, train_labels, seed, out_path):
    from pathlib import Path

    with open(Path(out_path).parent / "calls.txt", "a") as calls:  # what the test counts
        calls.write(f"{seed} ")
    torch.manual_seed(seed)
    model = tiny()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(train_images[:64]), train_labels[:64]).backward()
        optimiser.step()
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, out_path)


def forgets(train_images, train_labels, seed, out_path):
    pass
'''


@pytest.fixture
def factory_file(tmp_path):
    path = tmp_path / "user_arch.py"
    path.write_text(FACTORY_SOURCE)
    return path


def tiny(width=4, classes=10, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, classes))


def test_import_object_from_a_module_and_a_file(factory_file):
    assert import_object("stablesal.models:build_model").__name__ == "build_model"
    assert import_object(f"{factory_file}:tiny")().__class__ is nn.Sequential
    with pytest.raises(ValueError, match="must look like 'package.module:function'"):
        import_object("stablesal.models.build_model")
    with pytest.raises(ValueError, match="module 'nosuchpackage.models' does not import"):
        import_object("nosuchpackage.models:net")
    with pytest.raises(ValueError, match="has no 'resnet'"):
        import_object("stablesal.models:resnet")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        import_object("missing/arch.py:net")


@pytest.mark.parametrize("form", ["plain", "wrapped", "model_state_dict", "dataparallel", "pickled", "torchscript"])
def test_every_checkpoint_form_loads_the_same_model(form, tmp_path):
    original = tiny(seed=3).eval()
    state = original.state_dict()
    path = tmp_path / f"{form}.pt"
    if form == "plain":
        torch.save(state, path)
    elif form == "wrapped":
        torch.save({"state_dict": state, "epoch": 9, "optimizer": {}}, path)
    elif form == "model_state_dict":
        torch.save({"model_state_dict": state}, path)
    elif form == "dataparallel":
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    elif form == "pickled":
        torch.save(original, path)
    else:
        torch.jit.script(original).save(str(path))
    model = load_user_model(path, factory=lambda: tiny(seed=99))
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(model(x), original(x), atol=1e-6)
    if form not in ("pickled", "torchscript"):  # a state dict has no mode: loaded for inference, no warning
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            prepare(model, "state dict")


def test_a_checkpoint_that_does_not_match_names_the_keys(tmp_path):
    path = tmp_path / "other.pt"
    torch.save(tiny(width=6).state_dict(), path)
    with pytest.raises(ValueError, match="shapes differ"):
        load_user_model(path, factory=lambda: tiny(width=4))
    torch.save({"0.weight": torch.zeros(4, 3, 3, 3), "head.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=r"missing keys \['0.bias', '4.bias', '4.weight'\], unexpected keys "
                                         r"\['head.weight'\]"):
        load_user_model(path, factory=tiny)
    with pytest.raises(ValueError, match="is a state dict: give the architecture"):
        load_user_model(path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="neither TorchScript nor a file torch.load can read"):
        load_user_model(tmp_path / "junk.pt", factory=tiny)
    import zipfile

    with zipfile.ZipFile(tmp_path / "broken-script.pt", "w") as archive:  # TorchScript's layout, unreadable
        archive.writestr("m/constants.pkl", b"junk")
        archive.writestr("m/code/__torch__/m.py", b"junk")
    with pytest.raises(ValueError, match="is a TorchScript archive that torch.jit.load cannot read"):
        load_user_model(tmp_path / "broken-script.pt", factory=tiny)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="holds a list"):
        load_user_model(tmp_path / "list.pt", factory=tiny)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_user_model(tmp_path / "absent.pt", factory=tiny)


def test_prepare_sets_eval_with_a_warning_and_prepends_normalisation():
    model = nn.Sequential(tiny(), nn.Dropout(0.5))
    model.train()
    with pytest.warns(UserWarning, match="was in training mode; set to eval mode"):
        prepared = prepare(model, "my model", mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3])
    assert not prepared.training and not any(p.requires_grad for p in prepared.parameters())
    x = torch.rand(3, 3, 8, 8)
    expected = model((x - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1))
    assert torch.allclose(prepared(x), expected, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare(tiny().eval(), "quiet")  # already in eval mode: no warning
    with pytest.raises(ValueError, match="one value per channel"):
        prepare(tiny().eval(), "bad", mean=[0.5, 0.5], std=[0.2])


def test_models_with_different_numbers_of_classes_are_refused():
    with pytest.raises(ValueError, match=r"different numbers of classes: \{'a.pt': 10, 'b.pt': 5\}"):
        output_classes([tiny().eval(), tiny(classes=5).eval()], ["a.pt", "b.pt"], (3, 8, 8))
    assert output_classes([tiny().eval()], ["a"], (3, 8, 8)) == 10


def test_factory_strings_with_keyword_arguments(factory_file):
    build = model_factory(f"{factory_file}:tiny", {"width": 6, "classes": 3})
    assert build()[0].out_channels == 6 and build()[-1].out_features == 3
    with pytest.raises(ValueError, match="does not take factory_kwargs"):
        model_factory(f"{factory_file}:tiny", {"depth": 3})
    assert model_factory() is None


def test_torchvision_names_build_without_weights(monkeypatch):
    calls = []
    fake = types.ModuleType("torchvision")
    fake.models = types.SimpleNamespace(
        list_models=lambda: ["resnet18", "resnet50", "mobilenet_v3_small"],
        get_model=lambda name, weights, num_classes: calls.append((name, weights, num_classes)) or tiny(classes=num_classes))
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    build = model_factory(arch="torchvision:resnet18", num_classes=7)
    assert build()[-1].out_features == 7 and calls == [("resnet18", None, 7)]  # weights=None: never downloads
    with pytest.raises(ValueError, match="did you mean 'resnet50'"):
        model_factory(arch="torchvision:resnet05", num_classes=7)


def test_user_training_function_runs_once_per_plan_entry_and_resumes(factory_file, tmp_shapes):
    from stablesal.models.training import seed_plan

    plan = seed_plan(3, "both", 0, len(tmp_shapes.train_labels))
    build = model_factory(f"{factory_file}:tiny")
    first = train_with_user_function(tmp_shapes, f"{factory_file}:train", plan, factory_file.parent / "runs", build,
                                     progress=False)
    assert [meta["seed"] for _, meta in first] == [0, 1, 2] and [m["split"] for _, m in first] == [0, 1, 2]
    assert first[0][1]["train_size"] == len(tmp_shapes.train_labels) // 3
    calls = factory_file.parent / "runs" / "calls.txt"
    assert calls.read_text().split() == ["0", "1", "2"]
    again = train_with_user_function(tmp_shapes, f"{factory_file}:train", plan, factory_file.parent / "runs", build,
                                     progress=False)
    assert calls.read_text().split() == ["0", "1", "2"]  # finished checkpoints are loaded, not retrained
    x = tmp_shapes.test_images[:4]
    assert torch.equal(again[1][0](x), first[1][0](x))
    with pytest.raises(ValueError, match="returned without writing a checkpoint"):
        train_with_user_function(tmp_shapes, f"{factory_file}:forgets", plan[:1], factory_file.parent / "other", build,
                                 progress=False)


def test_reinitialised_copies_are_untrained_networks_of_the_same_architecture():
    trained = prepare(tiny(seed=1).eval(), "m", mean=[0.5] * 3, std=[0.25] * 3)
    a, b = reinitialised(trained, 5), reinitialised(trained, 5)
    other = reinitialised(trained, 6)
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(a(x), b(x)) and not torch.allclose(a(x), other(x)) and not torch.allclose(a(x), trained(x))
    assert torch.equal(a[0].mean, trained[0].mean)  # the normalisation is kept
    assert reinitialised(torch.jit.script(tiny().eval()), 0) is None


def test_load_user_models_needs_files():
    with pytest.raises(ValueError, match="give at least one checkpoint"):
        load_user_models([])


@pytest.fixture
def tmp_shapes(tiny_shapes):
    return tiny_shapes


def test_report_on_checkpoints_and_a_factory(factory_file, tmp_path):
    """(a) K checkpoint files of different forms with a factory from a file."""
    paths = []
    for seed, form in enumerate(["plain", "wrapped", "dataparallel"]):
        state = tiny(seed=seed).state_dict()
        state = {"plain": state, "wrapped": {"state_dict": state},
                 "dataparallel": {f"module.{k}": v for k, v in state.items()}}[form]
        paths.append(tmp_path / f"ckpt-{seed}.pt")
        torch.save(state, paths[-1])
    config = _report_config(tmp_path, f'checkpoints = ["{tmp_path}/ckpt-*.pt"]\nfactory = "{factory_file}:tiny"\n'
                                      'mean = [0.5, 0.5, 0.5]\nstd = [0.25, 0.25, 0.25]')
    results, page = _run(config)
    main = [m for m in results["models"] if m["set"] == "main"]
    assert len(main) == 3 and all(0 <= m["test_acc"] <= 1 for m in main)
    assert "3 models from the user's checkpoints" in page and "MeGe and ReCo (fold protocol): left out" in page
    assert {r["model_set"] for r in results["stability_summary"]} == {"main", "untrained"}
    assert results["consensus"]["units"][0]["n_untrained"] == 3


def test_report_on_a_torchvision_name_and_checkpoints(monkeypatch, tmp_path):
    """(b) arch = "torchvision:<name>": the architecture comes from torchvision (a stand-in module
    here, with torchvision's get_model signature, since PyPI's torchvision does not import beside
    the CPU build of torch; tests/models/test_torchvision.py runs the real one under make test-torchvision)."""
    fake = types.ModuleType("torchvision")
    fake.models = types.SimpleNamespace(list_models=lambda: ["resnet18"],
                                        get_model=lambda name, weights, num_classes: tiny(classes=num_classes))
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    for seed in range(3):
        torch.save(tiny(seed=seed).state_dict(), tmp_path / f"tv-{seed}.pt")
    config = _report_config(tmp_path, f'checkpoints = ["{tmp_path}/tv-*.pt"]\narch = "torchvision:resnet18"')
    results, page = _run(config)
    assert len([m for m in results["models"] if m["set"] == "main"]) == 3 and "Consensus maps" in page


def test_report_on_models_from_the_users_training_function(factory_file, tmp_path):
    """(c) the user's training function, driven by stablesal's seed plan (k = 3, vary = both)."""
    config = _report_config(tmp_path, f'train = "{factory_file}:train"\nfactory = "{factory_file}:tiny"\n'
                                      'vary = "both"')
    results, page = _run(config)
    main = [m for m in results["models"] if m["set"] == "main"]
    assert [m["seed"] for m in main] == [0, 1, 2] and [m["split"] for m in main] == [0, 1, 2]
    assert "trained by the user's function" in page
    assert (tmp_path / "runs" / "default" / "user-models" / "calls.txt").read_text().split() == ["0", "1", "2"]
    # the fold plan of the MeGe protocol runs through the same function: model i without fold i
    folds = [m for m in results["models"] if m["set"] == "fold"]
    assert sorted(m["held_out_fold"] for m in folds) == [0, 1, 2, 3]
    assert (tmp_path / "runs" / "default" / "user-fold-models" / "calls.txt").read_text().split() == ["0", "1", "2", "3"]
    assert "MeGe and ReCo (Fel et al. fold protocol)" in page and results["mege_folds"]["rows"]


@pytest.mark.parametrize("models, message", [
    ('checkpoints = ["nowhere/*.pt"]\nfactory = "x.py:f"', "[models] checkpoints: 'nowhere/*.pt' matches no file"),
    ('train = "nosuchpackage.trainer:fit"\nfactory = "stablesal.models:SmallCNN"',
     "[models] train 'nosuchpackage.trainer:fit': module 'nosuchpackage.trainer' does not import"),
    ('train = "pkg:fn"', "train needs the architecture"),
    ('checkpoints = ["a.pt"]\ntrain = "pkg:fn"', "[models] checkpoints and train: give one of them, not both"),
    ('checkpoints = ["a.pt"]\nmean = [0.5]', "mean and std must both be given"),
])
def test_bad_model_configurations_get_one_line(models, message, tmp_path, capsys):
    from stablesal.cli import main

    config = tmp_path / "bad.toml"
    config.write_text(f"[models]\n{models}\n")
    assert main(["report", "--config", str(config), "--runs", str(tmp_path / "runs"), "-q"]) == 2
    assert message in capsys.readouterr().err


def test_report_on_an_unlabelled_folder_explains_the_predicted_class(factory_file, tmp_path):
    """A plain folder of photographs of mixed sizes and modes, no labels, the user's checkpoints:
    every map explains model 0's predicted class; no accuracy, no localisation, no inpainting."""
    import numpy as np
    from skimage.io import imsave

    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(6):
        shape = [(20, 24, 3), (18, 18), (24, 20, 4)][i % 3]
        imsave(folder / f"{i}.png", (rng.random(shape) * 255).astype(np.uint8), check_contrast=False)
    (folder / "broken.png").write_bytes(b"not an image")
    for seed in range(3):
        torch.save(tiny(seed=seed).state_dict(), tmp_path / f"m{seed}.pt")
    config = _report_config(tmp_path, f'checkpoints = ["{tmp_path}/m*.pt"]\nfactory = "{factory_file}:tiny"',
                            data=f'dataset = "unlabelled"\nroot = "{folder}"\nsize = 16')
    with pytest.warns(UserWarning, match="skipped 1 of 7 files"):
        results, page = _run(config)
    assert "labels: model 0's predictions" in results["dataset"]["name"]
    assert "The test images have no labels" in page and "object masks" in page and "Left out" in page


def test_consensus_and_plan_commands_on_user_checkpoints(factory_file, tmp_path, capsys):
    from stablesal.cli import main

    for seed in range(3):
        torch.save(tiny(seed=seed).state_dict(), tmp_path / f"c{seed}.pt")
    config = tmp_path / "user.toml"
    config.write_text(f'[data]\nn_train = 240\nn_test = 40\nsize = 16\nseed = 3\n'
                      f'[models]\ncheckpoints = ["{tmp_path}/c*.pt"]\nfactory = "{factory_file}:tiny"\n'
                      '[gradient]\nn_samples = 2\nn_segments = 16\n'
                      '[consensus]\ncalibration_studies = 5\nn_permutations = 99\n')
    common = ["--config", str(config), "--groupings", "grid", "--n-images", "4", "--runs", str(tmp_path / "runs"), "-q"]
    assert main(["consensus", "-k", "3", "--untrained-k", "3", "--methods", "saliency", "--out",
                 str(tmp_path / "out"), *common]) == 0
    assert "trained vs untrained" in capsys.readouterr().out
    assert main(["plan", "-k", "3", "--methods", "smoothgrad", *common]) == 0
    out = capsys.readouterr().out
    assert "smoothgrad with grid" in out and ("pilot models" in out or "out of reach" in out or "no plan, because" in out)


def test_seeded_reinitialisations_leave_the_global_generator_alone():
    """randomised_copy, reinitialised and the untrained networks draw from their own seed and do not
    move torch's global generator (a caller's later draws are unaffected)."""
    from torch import nn

    from stablesal.metrics import randomised_copy
    from stablesal.models.user_models import reinitialised

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)).eval()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = randomised_copy(model, seed=5)
    again = reinitialised(model, 6)
    assert torch.equal(torch.rand(3), expected)
    assert torch.equal(first[0].weight, randomised_copy(model, seed=5)[0].weight)
    assert not torch.equal(again[0].weight, model[0].weight)


def test_a_train_seeds_checkpoint_loads_without_a_factory(tiny_shapes, tmp_path):
    """stablesal's own checkpoint names its registered architecture: it loads without a factory, with
    or without its checksum sidecar (verified when present); an architecture not registered here
    is named."""
    from stablesal.core.settings import TrainConfig
    from stablesal.core.storage import CorruptFileError
    from stablesal.models.training import train_seeds

    run = train_seeds(tiny_shapes, k=1, vary="seed", progress=False, out_dir=tmp_path,
                      config=TrainConfig(epochs=1, batch_size=64, model_options={"width": 4}))[0]
    path = next(tmp_path.glob("model-*.pt"))
    x = tiny_shapes.test_images[:4]
    assert torch.equal(load_user_model(path)(x), run.model(x))
    path.with_name(path.name + ".sha256").write_text("0" * 64 + "\n")
    with pytest.raises(CorruptFileError, match="is corrupt: SHA-256"):
        load_user_model(path)
    path.with_name(path.name + ".sha256").unlink()
    assert torch.equal(load_user_model(path)(x), run.model(x))  # copied without its sidecar: read as it is
    saved = torch.load(path, weights_only=False)
    saved["meta"]["config"]["model"] = "my_net"
    torch.save(saved, path)
    with pytest.raises(ValueError, match="trained by stablesal as architecture 'my_net', which is not registered"):
        load_user_model(path)
