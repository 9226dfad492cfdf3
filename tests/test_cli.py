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
