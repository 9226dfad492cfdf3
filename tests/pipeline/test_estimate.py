"""``stablesal estimate`` on a user's own checkpoint (a tiny model): the prediction is the variants'
agreement moved by the calibration's offset, its interval both intervals in quadrature; what the
calibration does not cover is refused in one line, before any model is loaded."""

import json
import math

import pytest
import torch

from stablesal.cli import main
from tests.helpers.image_files import class_folders

ARCH = '''
from torch import nn


def net(width=4, classes=3):
    """Conv 3x3, ReLU, global average pool, then a linear head (the Laplace proxy needs one)."""
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, classes))
'''


def _calibration(path, side=16, proxies=("finetune", "laplace")):
    rows = [{"proxy": proxy, "method": "saliency", "grouping": "pixel", "difference": 0.1,
             "difference_ci_low": 0.04, "difference_ci_high": 0.16, "rank_correlation": 0.8}
            for proxy in proxies]
    path.write_text(json.dumps({"commit": "0123456789abcdef", "dataset": {"name": "shapes"}, "image_side": side,
                                "channels": 3, "architecture": "small_cnn", "k_truth": 19, "k_null": 4,
                                "null": "random_label", "rows": rows, "refused": {"dropout": "no dropout layers"}}))
    return path


@pytest.fixture
def project(tmp_path):
    (tmp_path / "arch.py").write_text(ARCH)
    import importlib.util

    spec = importlib.util.spec_from_file_location("estimate_arch", tmp_path / "arch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    torch.save(module.net().state_dict(), tmp_path / "model.pt")
    root = class_folders(tmp_path / "images", per_class=6)
    _calibration(tmp_path / "proxy.json")

    def config(names='["finetune", "laplace"]', calibration=tmp_path / "proxy.json", size=16):
        text = f'''
[data]
dataset = "folder"
root = "{root}"
size = {size}
[models]
checkpoints = ["{tmp_path / 'model.pt'}"]
factory = "{tmp_path / 'arch.py'}:net"
[gradient]
methods = ["saliency", "smoothgrad"]
groupings = ["pixel"]
n_samples = 2
n_images = 4
[proxy]
names = {names}
k = 3
calibration = "{calibration}"
[report]
runs_dir = "{tmp_path / 'runs'}"
out_dir = "{tmp_path / 'reports'}"
'''
        path = tmp_path / "estimate.toml"
        path.write_text(text)
        return str(path)

    return tmp_path, config


def test_estimate_on_a_users_checkpoint_carries_the_calibration_interval(project, capsys):
    tmp_path, config = project
    assert main(["estimate", "--config", config(), "-q", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("ESTIMATE (not a measurement)") and "commit 0123456789" in printed
    result = json.loads((tmp_path / "out" / "estimate.json").read_text())
    assert result["kind"] == "estimate" and (tmp_path / "out" / "estimate.csv").exists()
    rows = {(row["proxy"], row["method"]): row for row in result["rows"]}
    assert set(rows) == {(p, m) for p in ("finetune", "laplace") for m in ("saliency", "smoothgrad")}
    for proxy in ("finetune", "laplace"):
        row = rows[(proxy, "saliency")]
        assert -1 <= row["proxy_agreement"] <= 1 and row["k_variants"] == 3 and row["n_images"] == 3  # the folder's test split
        assert row["predicted_cross_seed_agreement"] == pytest.approx(row["proxy_agreement"] - 0.1)
        half = math.hypot((row["proxy_agreement_ci_high"] - row["proxy_agreement_ci_low"]) / 2, 0.06)
        assert row["predicted_cross_seed_agreement_ci_low"] == pytest.approx(
            max(-1, row["predicted_cross_seed_agreement"] - half))
        assert row["predicted_cross_seed_agreement_ci_high"] == pytest.approx(
            min(1, row["predicted_cross_seed_agreement"] + half))
        assert "proxy.json (commit 0123456789" in row["evidence"]
        assert rows[(proxy, "smoothgrad")]["refused"] == f"smoothgrad × pixel is not calibrated for {proxy}"
        assert "predicted_cross_seed_agreement" not in rows[(proxy, "smoothgrad")]
    assert not (tmp_path / "runs" / "estimate" / "models").exists()  # the user's checkpoint: nothing trained


@pytest.mark.parametrize("case, expected", [
    ("uncalibrated", "[proxy] names: 'spawn' is not calibrated (calibrated: ['finetune', 'laplace'])"),
    ("refused", "[proxy] names: 'dropout' is not calibrated (the calibration refused it: no dropout layers)"),
    ("size", "[data] images of 3 × 24 px: the calibration covers 3 × 16 px only"),
    ("missing", "[proxy] calibration: no calibration file at"),
    ("unknown", "[proxy] names must be a non-empty list of"),
])
def test_estimate_refuses_in_one_line_before_loading_anything(project, capsys, case, expected):
    tmp_path, config = project
    path = {"uncalibrated": lambda: config('["spawn"]'), "refused": lambda: config('["dropout"]'),
            "size": lambda: config(size=24), "missing": lambda: config(calibration=tmp_path / "none.json"),
            "unknown": lambda: config('["ensemble"]')}[case]()
    assert main(["estimate", "--config", path, "-q", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


def test_the_shipped_calibration_is_the_committed_experiment():
    """``[proxy] calibration = ""`` reads the file stablesal ships, which must be
    experiments/results/proxy.json byte for byte (the evidence the estimate names)."""
    from pathlib import Path

    from stablesal.studies.proxies.estimate import SHIPPED_CALIBRATION, evidence, load_calibration

    root = Path(__file__).resolve().parents[2]
    assert SHIPPED_CALIBRATION.read_bytes() == (root / "experiments/results/proxy.json").read_bytes()
    calibration = load_calibration("")
    assert calibration["rows"] and calibration["image_side"] == 32 and calibration["channels"] == 3
    assert evidence(calibration, "").startswith("stablesal's shipped calibration, experiments/results/proxy.json (commit ")


def test_the_shipped_transfer_is_the_committed_experiment():
    from pathlib import Path

    from stablesal.studies.proxies.estimate import SHIPPED_TRANSFER

    root = Path(__file__).resolve().parents[2]
    assert SHIPPED_TRANSFER.read_bytes() == (root / "experiments/results/proxy_transfer.json").read_bytes()


def test_the_transfer_spread_widens_the_interval_by_hand():
    """Held-out errors 0.1 and −0.2 give an RMS of √0.025; the half-width adds 1.96 × that to the
    variants' and the offset's half-widths in quadrature (6 images, 3 variants); another proxy's
    errors do not enter, and without a transfer file the term is absent."""
    import numpy as np

    from stablesal.studies.proxies.estimate import estimate_rows, transfer_spread

    transfer = {"rows": [{"proxy": "laplace", "method": "saliency", "grouping": "pixel", "error": 0.1},
                         {"proxy": "laplace", "method": "saliency", "grouping": "pixel", "error": -0.2},
                         {"proxy": "finetune", "method": "saliency", "grouping": "pixel", "error": 0.9}]}
    assert transfer_spread(transfer, "laplace", "saliency", "pixel") == pytest.approx(math.sqrt(0.025))
    assert transfer_spread(transfer, "laplace", "smoothgrad", "pixel") is None
    rows = [{"image": i, "model_a": 0, "model_b": b, "spearman": 0.5 + 0.1 * i + 0.01 * b, "degenerate": False}
            for i in range(6) for b in (1, 2)] + [
           {"image": i, "model_a": 1, "model_b": 2, "spearman": 0.55 + 0.1 * i, "degenerate": False} for i in range(6)]
    units = [{"model_set": "laplace", "method": "saliency", "grouping": "pixel", "n_images": 6, "n_models": 3,
              "rows": rows}]
    calibration = {"rows": [{"proxy": "laplace", "method": "saliency", "grouping": "pixel", "difference": 0.1,
                             "difference_ci_low": 0.0, "difference_ci_high": 0.2, "rank_correlation": 0.8}]}
    plain, = estimate_rows(units, calibration, "laplace")
    wide, = estimate_rows(units, calibration, "laplace", transfer=transfer)
    variants = (plain["proxy_agreement_ci_high"] - plain["proxy_agreement_ci_low"]) / 2
    expected = math.sqrt(variants ** 2 + 0.1 ** 2 + (1.959963984540054 * math.sqrt(0.025)) ** 2)
    assert wide["predicted_cross_seed_agreement"] == pytest.approx(plain["predicted_cross_seed_agreement"])
    assert wide["predicted_cross_seed_agreement_ci_high"] == pytest.approx(
        min(1.0, wide["predicted_cross_seed_agreement"] + expected))
    assert wide["transfer_rms_error"] == pytest.approx(math.sqrt(0.025)) and plain["transfer_rms_error"] is None
    assert np.isfinite(variants)


def test_other_proxy_settings_than_the_calibrations_are_refused(project, capsys):
    tmp_path, config = project
    calibration = json.loads((tmp_path / "proxy.json").read_text())
    calibration["config"] = {"proxy": {"k": 8, "finetune_fraction": 0.2, "finetune_lr": 0.1, "laplace_images": 2048,
                                       "prior_precision": 1.0}}
    (tmp_path / "proxy.json").write_text(json.dumps(calibration))
    assert main(["estimate", "--config", config(), "-q", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("[proxy] k = 3: the calibration of 'finetune' was made with k = 8; an estimate with other "
                        "variants would apply an offset measured for those") and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
