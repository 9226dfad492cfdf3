import json

import pytest

from stablesal.cli import main


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
    code = main(["consensus", "-k", "3", "--untrained-k", "3", "--methods", "saliency", "smoothgrad", "--png",
                 "--out", str(tmp_path / "out"), *common])
    assert code == 0
    out = capsys.readouterr().out
    assert "trained vs untrained" in out and "rank-sum" in out
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
                                   for line in lines)
    assert main(["plan", "-k", "3", "--methods", "smoothgrad", "--what", "samples", "--at-models", "4",
                 *common]) == 0
    assert "4 models" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["consensus", "-k", "2"], "[models] k (-k/--models): a consensus map needs at least 3 retrained models, got 2"),
    (["plan", "-k", "2"], "the planner needs a pilot of at least 3 models, got 2"),
    (["plan", "--target", "1.0"], "target (a reliability) must be in (0, 1), got 1.0"),
    (["consensus", "--q", "0"], "[consensus] q (the false-discovery rate) must be in (0, 1), got 0.0"),
    (["plan", "--what", "samples", "--methods", "saliency", "integrated_gradients"],
     "the sample planner needs a random method"),
    (["consensus", "--methods", "smoothgard"], "did you mean 'smoothgrad'"),
])
def test_consensus_and_plan_refuse_bad_requests_before_training(argv, message, tmp_path, capsys):
    assert main([*argv, "--runs", str(tmp_path / "runs")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing was trained
