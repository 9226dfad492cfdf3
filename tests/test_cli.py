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
    assert (tmp_path / "out" / "variance_reduction.png").exists()
