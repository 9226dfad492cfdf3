import json

import pytest

from stablesal.cli import main
from tests.helpers.image_files import class_folders


def test_train_seeds_cli(tmp_path, capsys):
    code = main(["train-seeds", "--n-train", "120", "--n-test", "40", "--image-size", "16", "-k", "2",
                 "--epochs", "1", "--out", str(tmp_path), "-q"])
    assert code == 0
    out = capsys.readouterr().out
    assert "test_acc" in out and len(list(tmp_path.glob("model-*.pt"))) == 2


def test_cli_reports_bad_path_clearly(capsys, tmp_path):
    code = main(["train-seeds", "--dataset", "cifar10", "--data-root", str(tmp_path / "nowhere"), "-q"])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_explain_cli(tmp_path, capsys):
    train = tmp_path / "models"
    assert main(["train-seeds", "--n-train", "120", "--n-test", "40", "--image-size", "16", "-k", "1",
                 "--epochs", "1", "--out", str(train), "-q"]) == 0
    checkpoint = next(train.glob("model-*.pt"))
    code = main(["explain", "--n-train", "120", "--n-test", "40", "--image-size", "16", "--checkpoint",
                 str(checkpoint), "--method", "saliency", "suppression", "--grouping", "pixel", "grid",
                 "--n-samples", "3", "--images", "2", "--out", str(tmp_path / "fig"), "-q"])
    assert code == 0
    for name in ("explain_saliency.png", "explain_suppression.pdf", "maps.pt", "maps.pt.sha256", "segments_grid.png"):
        assert (tmp_path / "fig" / name).exists()


def test_stability_cli(tmp_path, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text('[data]\nn_train = 200\nn_test = 40\nsize = 16\n[models]\nepochs = 1\n'
                      '[gradient]\nn_samples = 2\nn_steps = 2\nn_segments = 16\n')
    code = main(["stability", "--config", str(config), "-k", "2", "--control-k", "0", "--methods", "saliency",
                 "--groupings", "pixel", "grid", "--n-images", "4", "--runs", str(tmp_path / "runs"),
                 "--out", str(tmp_path / "out"), "-q"])
    assert code == 0
    out = capsys.readouterr().out
    assert "saliency" in out and (tmp_path / "out" / "stability_summary.csv").exists()
    # the report's shape: results.json, the tables, the figures (drawn from the rows) and the page
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["stages"] == ["stability", "figures"] and results["consensus"] is None
    assert {r["method"] for r in results["stability_summary"]} == {"saliency", "random"}
    assert (tmp_path / "out" / "figures" / "variance_reduction.png").exists()
    assert (tmp_path / "out" / "figures" / "stability_main.png").exists() and (tmp_path / "out" / "index.html").exists()


def test_perturb_cli_presets_and_custom(tmp_path, capsys):
    train = tmp_path / "models"
    assert main(["train-seeds", "--n-train", "120", "--n-test", "40", "--image-size", "16", "-k", "1",
                 "--epochs", "1", "--out", str(train), "-q"]) == 0
    checkpoint = str(next(train.glob("model-*.pt")))
    common = ["--n-train", "120", "--n-test", "40", "--image-size", "16", "--checkpoint", checkpoint, "--images", "2",
              "-q"]
    assert main(["perturb", *common, "--preset", "rise", "occlusion", "--n-samples", "50",
                 "--out", str(tmp_path / "a")]) == 0
    assert main(["perturb", *common, "--segmenter", "grid", "--smoothing", "gaussian", "--sampler", "shap",
                 "--calculator", "kernel-shap", "--replacement", "image-mean", "--n-samples", "40",
                 "--n-segments", "9", "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "grid(cols=3,rows=3)|gaussian(sigma=auto)|shap|n=40|image-mean|kernel-shap|pixel" in out
    for folder, name in (("a", "perturb_rise.png"), ("a", "perturb_occlusion.pdf"), ("b", "perturb_custom.png")):
        assert (tmp_path / folder / name).exists()
    # a calculator that needs single-feature samples, with a random sampler: one clear line, exit 2
    assert main(["perturb", *common, "--sampler", "random", "--calculator", "ciu", "--out", str(tmp_path / "c")]) == 2
    assert "single-feature" in capsys.readouterr().err


def test_factor_study_cli(tmp_path, capsys):
    config = tmp_path / "factors.toml"
    config.write_text('[data]\nn_train = 200\nn_test = 40\nsize = 16\n[models]\nepochs = 1\n'
                      '[factors]\nsegmentations = ["grid-bilinear", "grid/gaussian"]\nsamplers = ["random", "single"]\n'
                      'sample_sizes = ["M", 20]\ncalculators = ["rise", "pda", "ciu"]\nn_segments = 9\nn_images = 3\n')
    args = ["factor-study", "--config", str(config), "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
            "--name", "f", "-q"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "eta2_srg" in out and "segmentation" in out
    # the report's shape: results.json (its schema), the stage's tables, the figures and the page
    for name in ("factor_configurations.csv", "factor_effects.csv", "figures/factor_effects.png",
                 "figures/factor_levels.pdf", "results.json", "index.html"):
        assert (tmp_path / "out" / "f" / name).exists()
    results = json.loads((tmp_path / "out" / "f" / "results.json").read_text())
    assert results["stages"] == ["factor_study"] and results["factor_study"]["configurations"]
    assert results["stability_summary"] == [] and results["consensus"] is None
    assert [row["set"] for row in results["models"]] == ["main"]  # one model: main model 0 of a one-seed plan
    # 2 segmentations × (random at M and 20 with rise, pda; single with rise, pda, ciu) × 2 maps
    import csv
    rows = list(csv.DictReader(open(tmp_path / "out" / "f" / "factor_configurations.csv")))
    assert len(rows) == 2 * (2 * 2 + 3) * 2
    cached = sorted((tmp_path / "runs" / "f" / "factors").glob("*.json"))
    assert len(cached) == 2 * 3
    before = [p.stat().st_mtime_ns for p in cached]
    assert main(args) == 0  # a re-run reuses every cached unit
    assert [p.stat().st_mtime_ns for p in cached] == before


TINY = ('[data]\nn_train = 200\nn_test = 40\nsize = 16\n[models]\nepochs = 1\n'
        '[gradient]\nn_samples = 2\nn_steps = 2\nn_segments = 16\n'
        '[consensus]\ncalibration_studies = 5\nn_permutations = 99\n')


def test_consensus_and_plan_cli(tmp_path, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    common = ["--config", str(config), "--groupings", "grid", "--n-images", "4", "--runs", str(tmp_path / "runs"), "-q"]
    code = main(["consensus", "-k", "3", "--random-label-k", "3", "--methods", "saliency", "smoothgrad", "--png",
                 "--out", str(tmp_path / "out"), *common])
    assert code == 0
    out = capsys.readouterr().out
    assert "trained vs random_label" in out and "rank-sum" in out
    assert (tmp_path / "out" / "results.json").exists() and (tmp_path / "out" / "consensus_tests.csv").exists()
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["stages"] == ["consensus"] and len(results["consensus"]["units"]) == 2
    assert (tmp_path / "out" / "figures" / "consensus_smoothgrad_grid.png").exists()
    assert (tmp_path / "out" / "index.html").exists()
    assert len(list((tmp_path / "out" / "consensus").glob("*.npz"))) == 6
    assert len(list((tmp_path / "out" / "consensus").glob("*/mask_*.png"))) == 4 * 4  # 2 methods × 2 tests
    # the planner reuses the same three checkpoints
    assert main(["plan", "-k", "3", "--methods", "smoothgrad", "saliency", *common]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all("(predicted from 3 pilot models)" in line or "out of reach" in line
                                   or ": no plan, because the mean map's shared component is not above" in line
                                   for line in lines)
    assert main(["plan", "-k", "3", "--methods", "smoothgrad", "--what", "samples", "--at-models", "4",
                 *common]) == 0
    assert "4 models" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["consensus", "-k", "2"], "[models] k (-k/--models): a consensus map needs at least 3 retrained models, got 2"),
    (["plan", "-k", "2"], "the planner needs a pilot of at least 3 models, got 2"),
    (["plan", "--target", "1.0"], "target (the correlation ρ of the mean map with the infinite-model mean map; ρ² is the reliability) "
                                      "must be in (0, 1), got 1.0"),
    (["consensus", "--q", "0"], "[consensus] q (the false-discovery rate) must be in (0, 1), got 0.0"),
    (["plan", "--what", "samples", "--methods", "saliency", "integrated_gradients"],
     "the sample planner needs a random method"),
    (["consensus", "--methods", "smoothgard"], "did you mean 'smoothgrad'"),
])
def test_consensus_and_plan_refuse_bad_requests_before_training(argv, message, tmp_path, capsys):
    assert main([*argv, "--runs", str(tmp_path / "runs")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing was trained


# --- explain and perturb on the user's data and models (issue #31) ----------------------------------

ARCH = '''
from torch import nn


def net(width=4, classes=3):
    """A 2-layer CNN: conv 3x3, ReLU, conv 3x3, global average pool (the class scores)."""
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, classes, 3, padding=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def fit(train_images, train_labels, seed, out_path):
    import torch

    with open(out_path.parent / "calls.txt", "a") as calls:
        calls.write(f"{seed} ")
    torch.manual_seed(seed)
    torch.save(net().state_dict(), out_path)
'''
FORMS = ["plain", "wrapped", "dataparallel", "pickled", "torchscript", "train-seeds"]


@pytest.fixture
def user_files(tmp_path):
    """The user's project: a factory module, a class-folder dataset and the data section of a TOML file."""
    (tmp_path / "arch.py").write_text(ARCH)
    data = class_folders(tmp_path / "images")
    return tmp_path, f'[data]\ndataset = "folder"\nroot = "{data}"\nsize = 16\n'


def _checkpoint(form: str, tmp_path, data_toml: str, seed: int = 0):
    """A checkpoint of ``form`` in tmp_path and the model it holds (eval mode, taking [0, 1] images)."""
    import importlib.util

    import torch

    path = tmp_path / f"model-{form}-{seed}.pt"
    if form == "train-seeds":
        from stablesal.core.settings import TrainConfig
        from stablesal.data.datasets import load_configured
        from stablesal.models.training import train_seeds
        from stablesal.pipeline.config import config_from_dict, read_toml

        (tmp_path / "data.toml").write_text(data_toml)
        dataset = load_configured(config_from_dict(read_toml(tmp_path / "data.toml")).data)
        run = train_seeds(dataset, k=1, vary="seed", config=TrainConfig(epochs=1, batch_size=8,
                                                                          model_options={"width": 4}),
                          out_dir=tmp_path / "seeds", base_seed=seed, progress=False)[0]
        written = next((tmp_path / "seeds").glob("model-*.pt"))
        written.rename(path)
        written.with_name(written.name + ".sha256").rename(path.with_name(path.name + ".sha256"))
        return path, run.model
    spec = importlib.util.spec_from_file_location("user_arch", tmp_path / "arch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(seed)
    network = module.net().eval()
    state = network.state_dict()
    if form == "plain":
        torch.save(state, path)
    elif form == "wrapped":
        torch.save({"model_state_dict": state, "epoch": 3}, path)
    elif form == "dataparallel":
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    elif form == "pickled":
        torch.save(network, path)
    else:
        torch.jit.script(network).save(str(path))
    return path, network


@pytest.mark.parametrize("form", FORMS)
def test_explain_and_perturb_explain_the_users_checkpoint_from_the_toml(form, user_files, capsys):
    """Issue #31: explain and perturb had no --config and trained their own small CNN. From the
    user's TOML they explain the user's model (the maps equal the method run on that model), on the
    user's data, and train nothing."""
    import torch

    from stablesal.data.datasets import load_configured
    from stablesal.data.selection import stratified_order
    from stablesal.explain.gradient.methods import make_method
    from stablesal.explain.perturbation import make_preset
    from stablesal.models.user_models import prepare
    from stablesal.pipeline.config import load_config

    tmp_path, data = user_files
    path, network = _checkpoint(form, tmp_path, data)
    normalise = form != "train-seeds"  # stablesal's models carry their own Normalize
    models = f'checkpoints = ["{path}"]\n' + (f'factory = "{tmp_path / "arch.py"}:net"\n'
                                              'mean = [0.5, 0.5, 0.5]\nstd = [0.25, 0.25, 0.25]\n'
                                              if normalise else "")
    (tmp_path / "mine.toml").write_text(f'{data}[models]\n{models}[report]\nruns_dir = "{tmp_path / "runs"}"\n')
    common = ["--config", str(tmp_path / "mine.toml"), "--images", "2", "-q"]
    assert main(["explain", *common, "--method", "saliency", "--grouping", "pixel", "--out", str(tmp_path / "e")]) == 0
    assert main(["perturb", *common, "--preset", "occlusion", "--out", str(tmp_path / "p")]) == 0
    assert "no model given" not in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing trained

    config = load_config(tmp_path / "mine.toml")
    dataset = load_configured(config.data)
    model = prepare(network.eval(), "expected", *(([0.5] * 3, [0.25] * 3) if normalise else ()))
    # the images a report explains: the first two of the class-balanced order, traced to the split
    positions = stratified_order(dataset.test_labels, config.data.selection_seed)[:2]
    images, labels = dataset.test_images[positions], dataset.test_labels[positions]
    assert labels[0] != labels[1]  # two classes, not the folder's first class twice
    saved = torch.load(tmp_path / "e" / "maps.pt", weights_only=False)
    assert saved["checkpoint"] == str(path) and saved["model_index"] == 0
    assert saved["test_positions"] == positions.tolist()
    expected = make_method("saliency", model).attribute(images, target=labels, seed=0)
    assert torch.allclose(saved["maps"]["saliency/pixel"], expected, atol=1e-6)
    saved = torch.load(tmp_path / "p" / "perturbation_maps.pt", weights_only=False)
    assert saved["checkpoint"] == str(path) and saved["test_positions"] == positions.tolist()
    expected = make_preset("occlusion", model).attribute(images, target=labels, seed=0)
    assert torch.allclose(saved["maps"]["occlusion"]["maps"], expected, atol=1e-6)


def test_model_index_picks_a_model_of_the_file_and_is_checked(user_files, capsys):
    """--model-index picks checkpoint i (or the i-th model of the user's training function, the only
    one it trains); an index out of range is one line naming the flag, before any data is read."""
    import torch

    tmp_path, data = user_files
    paths = [_checkpoint("plain", tmp_path, data, seed=seed)[0] for seed in range(3)]
    factory = f'factory = "{tmp_path / "arch.py"}:net"\n'
    (tmp_path / "three.toml").write_text(f'{data}[models]\ncheckpoints = ["{tmp_path}/model-plain-*.pt"]\n{factory}')
    common = ["--config", str(tmp_path / "three.toml"), "--method", "saliency", "--grouping", "pixel", "--images", "2",
              "-q"]
    assert main(["explain", *common, "--model-index", "2", "--out", str(tmp_path / "e")]) == 0
    assert torch.load(tmp_path / "e" / "maps.pt", weights_only=False)["checkpoint"] == str(paths[2])
    assert main(["explain", *common, "--model-index", "3", "--out", str(tmp_path / "bad")]) == 2
    assert ("--model-index must be a model of [models] (0 to 2: 3 checkpoint files (" in capsys.readouterr().err)
    assert not (tmp_path / "bad").exists()
    (tmp_path / "fit.toml").write_text(f'{data}[models]\ntrain = "{tmp_path / "arch.py"}:fit"\n{factory}k = 3\n'
                                       f'vary = "seed"\n[report]\nruns_dir = "{tmp_path / "runs"}"\n')
    assert main(["perturb", "--config", str(tmp_path / "fit.toml"), "--model-index", "1", "--preset", "occlusion",
                 "--images", "2", "--out", str(tmp_path / "p"), "-q"]) == 0
    assert (tmp_path / "runs" / "default" / "user-models" / "calls.txt").read_text().split() == ["1"]


def test_without_a_model_explain_trains_the_default_once_and_says_so(tmp_path, capsys):
    """Nothing names a model: the default small_cnn of the seed plan's model 0 is trained (the file
    the report of the same configuration trains), with one line saying so; a re-run reuses it."""
    common = ["--n-train", "120", "--n-test", "20", "--image-size", "16", "--set", "models.epochs=1", "--method",
              "saliency", "--grouping", "pixel", "--images", "2", "--runs", str(tmp_path / "runs"), "-q"]
    assert main(["explain", *common, "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert ("explain: no model given (--checkpoint or [models] checkpoints): training the default small_cnn on "
            "shapes") in err.splitlines()
    trained = list((tmp_path / "runs" / "default" / "models").glob("model-00-*.pt"))
    assert len(trained) == 1
    stamp = trained[0].stat().st_mtime_ns
    assert main(["explain", *common, "--out", str(tmp_path / "b")]) == 0
    assert (f"explain: no model given (--checkpoint or [models] checkpoints): the default small_cnn on shapes, "
            f"trained before ({trained[0]})") in capsys.readouterr().err
    assert trained[0].stat().st_mtime_ns == stamp


@pytest.mark.parametrize("form", FORMS)
def test_checkpoint_flag_loads_every_form_the_report_loads(form, user_files, capsys):
    """Issue #31: --checkpoint refused a complete checkpoint as 'not written completely'. Without a
    configuration file it loads every form the report loads; a state dict needs its architecture
    (--set models.factory=...), and says so."""
    tmp_path, data = user_files
    path, _ = _checkpoint(form, tmp_path, data)
    if form == "train-seeds":  # a train-seeds checkpoint copied without its checksum sidecar
        path.with_name(path.name + ".sha256").unlink()
    common = ["explain", "--dataset", "folder", "--data-root", str(tmp_path / "images"), "--image-size", "16",
              "--checkpoint", str(path), "--method", "saliency", "--grouping", "pixel", "--images", "2",
              "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "-q"]
    code = main(common)
    err = capsys.readouterr().err
    assert "not written completely" not in err and "no model given" not in err
    if form in ("plain", "wrapped", "dataparallel"):
        assert code == 2
        assert f"checkpoint {path} is a state dict: give the architecture ([models] factory" in err
        assert main([*common, "--set", f'models.factory="{tmp_path / "arch.py"}:net"']) == 0
    else:
        assert code == 0, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("damage, message", [
    ("flipped byte", "is corrupt: SHA-256"),
    ("junk", "is neither TorchScript nor a file torch.load can read"),
    ("list", "holds a list; expected a state dict"),
    ("missing", "[models] checkpoints: '{path}' does not exist (given as --checkpoint)"),
    ("other architecture", "does not match the factory's model: shapes differ"),
])
def test_a_bad_checkpoint_is_one_line_saying_what_is_wrong(damage, message, user_files, capsys):
    import torch

    tmp_path, data = user_files
    path, _ = _checkpoint("train-seeds" if damage == "flipped byte" else "plain", tmp_path, data)
    if damage == "flipped byte":  # its sidecar records the checksum of the file as written
        content = bytearray(path.read_bytes())
        content[len(content) // 2] ^= 0xFF
        path.write_bytes(bytes(content))
    elif damage == "junk":
        path.write_bytes(b"not a checkpoint")
    elif damage == "list":
        torch.save([1, 2], path)
    elif damage == "missing":
        path.unlink()
    elif damage == "other architecture":
        torch.save({f"0.{k}": v for k, v in torch.nn.Conv2d(3, 8, 3, padding=1).state_dict().items()}
                   | {"2.weight": torch.zeros(3, 8, 3, 3), "2.bias": torch.zeros(3)}, path)
    (tmp_path / "mine.toml").write_text(f'{data}[models]\nfactory = "{tmp_path / "arch.py"}:net"\n')
    assert main(["explain", "--config", str(tmp_path / "mine.toml"), "--checkpoint", str(path), "--images", "2",
                 "--method", "saliency", "--grouping", "pixel", "--out", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(path=path) in err and "not written completely" not in err
    assert not (tmp_path / "out").exists()
