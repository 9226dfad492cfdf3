import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))

import compare  # noqa: E402


def _results(name, ssim_pixel, ssim_grouped):
    rows = []
    for grouping, value in (("pixel", ssim_pixel), ("fastslic", ssim_grouped)):
        rows.append({"model_set": "main", "method": "saliency", "grouping": grouping, "ssim": value, "spearman": 0.5})
    return {"config": {"report": {"name": name}}, "stability_summary": rows}


def test_compare_several_reports(tmp_path):
    paths = []
    for name, a, b in (("shapes", 0.1, 0.3), ("cifar", 0.2, 0.25)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(_results(name, a, b)))
        paths.append(str(path))
    reports = compare.load(paths)
    table = compare.markdown_table(reports, "fastslic", paper=True)
    assert "10.0 → 30.0" in table and "20.0 → 25.0" in table and "31.2 → 51.7" in table
    figure = compare.comparison_figure(reports, "fastslic", True, tmp_path / "cmp")
    assert figure.exists() and figure.with_suffix(".pdf").exists()


def test_compare_results_finds_a_changed_number_and_ignores_timings(tmp_path, capsys):
    """analysis/compare_results.py, the check that a refactor changed no number: a difference of
    2e-6 in a result fails at 1e-6, a NaN equals a NaN, and wall-clock fields never count."""
    import compare_results

    before = {"rows": [{"spearman": 0.5, "spearman_ci_low": float("nan"), "explain_seconds_per_model": 1.0}],
              "timings_s": {"total": 3.0}, "models": [{"seconds": 4.0, "seed": 0}]}
    after = json.loads(json.dumps(before))
    after["rows"][0]["explain_seconds_per_model"] = 9.0
    after["timings_s"]["total"], after["models"][0]["seconds"] = 30.0, 40.0
    paths = [tmp_path / "before.json", tmp_path / "after.json"]
    for path, results in zip(paths, (before, after)):
        path.write_text(json.dumps(results))
    assert compare_results.main([str(p) for p in paths]) == 0
    assert "3 numeric leaves compared, 0 differences" in capsys.readouterr().out
    after["rows"][0]["spearman"] = 0.5 + 2e-6
    paths[1].write_text(json.dumps(after))
    assert compare_results.main([str(p) for p in paths]) == 1
    assert "/rows[0]/spearman: 0.5 != 0.500002" in capsys.readouterr().out


# the analysis scripts on a real report (the session's quick report)

def test_report_tables_print_every_section_of_a_real_report(quick_report, capsys):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))
    import report_tables

    assert report_tables.main([str(quick_report / "results.json")]) == 0
    printed = capsys.readouterr().out
    assert "not in this report" not in printed
    results = json.loads((quick_report / "results.json").read_text())
    for section in report_tables.SECTIONS:
        assert f"### {section}" in printed
    quality = results["inpainting"]["quality"]
    assert {"mean-colour", "dataset-mean", "fresh-background"} <= {q["inpainter"] for q in quality}
    for row in quality:  # every fill is a row, with its keep rate and interval
        assert f"| {row['inpainter']} |" in printed
        assert f"{row['keep_prediction']:.2f} ± {row['keep_prediction_ci95']:.2f}" in printed


def test_the_performance_pages_tables_are_the_committed_benchmark_results(tmp_path, monkeypatch):
    """docs/performance.md's measured tables are what analysis/performance_page.py makes of
    benchmarks/results/*.json; a changed number in a result file changes the page."""
    import shutil

    import performance_page

    page = (Path(__file__).resolve().parents[1] / "docs" / "performance.md").read_text()
    assert page.count("<!-- benchmark:") == len(performance_page.TABLES) == 17
    assert performance_page.with_tables(page) == page, "run python analysis/performance_page.py"
    copied = tmp_path / "results"
    shutil.copytree(performance_page.RESULTS, copied)
    gradient = json.loads((copied / "gradient.json").read_text())
    gradient["methods"][0]["ratio_to_floor"] = 9.87
    (copied / "gradient.json").write_text(json.dumps(gradient))
    monkeypatch.setattr(performance_page, "RESULTS", copied)
    changed = performance_page.with_tables(page)
    assert "| 9.87 |" in changed and "| 9.87 |" not in page


def test_the_spawn_time_curve_is_one_set_per_epoch_and_its_section_refuses_repeats():
    import pytest
    from proxy_calibration import proxy_runs

    from stablesal.pipeline.config import ProxySection

    assert proxy_runs(["finetune", "spawn", "laplace"], []) == [
        ("finetune", "finetune", {}), ("spawn", "spawn", {}), ("laplace", "laplace", {})]
    assert proxy_runs(["spawn", "laplace"], [0, 3]) == [
        ("spawn@0", "spawn", {"spawn_epoch": 0}), ("spawn@3", "spawn", {"spawn_epoch": 3}), ("laplace", "laplace", {})]
    section = ProxySection(names=["spawn"], spawn_epochs=[0, 2])
    section.validate()
    assert section.settings(spawn_epoch=2).spawn_epoch == 2 and section.settings().spawn_epoch == section.spawn_epoch
    for bad in ([1, 1], [-1], [1.5], 3):
        with pytest.raises(ValueError, match=r"^\[proxy\] spawn_epoch"):
            ProxySection(names=["spawn"], spawn_epochs=bad).validate()
    for key, value in (("finetune_fraction", -1.0), ("swag_snapshots", 1), ("swag_fraction", 0.0), ("bn_images", 0)):
        section = ProxySection(names=["swag"])
        setattr(section, key, value)  # as the TOML loader sets a key, after construction
        with pytest.raises(ValueError, match=rf"^\[proxy\] {key} must be"):
            section.validate()


TINY_PROXY_CONFIG = """
[data]
dataset = "shapes"
n_train = 240
n_test = 40
size = 16
seed = 0
[models]
k = 4
vary = "seed"
arch = "small_cnn"
epochs = 2
batch_size = 32
control_k = 0
untrained_k = 0
random_label_k = 3
bn_calibrated_k = 0
[gradient]
methods = ["saliency"]
groupings = ["pixel", "fastslic"]
n_segments = 16
n_images = 6
fidelity = "off"
sanity = false
[proxy]
names = ["finetune", "swag", "spawn"]
k = 3
spawn_k = 2
spawn_epochs = [0, 1]
finetune_fraction = 0.5
swag_fraction = 1.0
swag_snapshots = 4
bn_images = 64
[report]
name = "tiny"
runs_dir = "{runs}"
out_dir = "{reports}"
"""


def test_a_calibration_and_its_worth_run_on_tiny_models_and_reuse_the_checkpoints(tmp_path):
    """analysis/proxy_calibration.py then analysis/proxy_worth.py on 4 tiny models: one row per proxy
    set × grouping in each, the spawn-time curve as spawn@0 and spawn@1 with their costs by hand,
    worth inside [1, the pool's size], and the second script trains nothing new."""
    import proxy_calibration
    import proxy_worth

    config = tmp_path / "tiny.toml"
    config.write_text(TINY_PROXY_CONFIG.format(runs=tmp_path / "runs", reports=tmp_path / "reports"))
    assert proxy_calibration.main(["--config", str(config), "--out", str(tmp_path / "cal.json"), "-q"]) == 0
    calibration = json.loads((tmp_path / "cal.json").read_text())
    sets = ["finetune", "swag", "spawn@0", "spawn@1"]
    assert sorted({(r["proxy"], r["grouping"]) for r in calibration["rows"]}) == sorted(
        (s, g) for s in sets for g in ("pixel", "fastslic"))
    assert calibration["proxies"]["spawn@0"]["cost_share"] == (0 + 2 * 2) / 2
    assert calibration["proxies"]["spawn@1"]["cost_share"] == (1 + 2 * 1) / 2
    assert calibration["proxies"]["swag"]["cost_share"] == (1.0 + 3 * 64 / 3 / 240) / 2
    models = sorted((tmp_path / "runs" / "tiny").rglob("*.pt"))
    assert proxy_worth.main(["--config", str(config), "--out", str(tmp_path / "worth.json"), "-q",
                             "--resamples", "20"]) == 0
    assert sorted((tmp_path / "runs" / "tiny").rglob("*.pt")) == models
    worth = json.loads((tmp_path / "worth.json").read_text())
    assert len(worth["rows"]) == 10 and worth["k_truth"] == 4
    assert {(r["proxy"], r["k_proxy"]) for r in worth["rows"] if r["proxy"] == "parent"} == {("parent", 3)}
    for row in worth["rows"]:
        assert row["k_pool"] == 2 and row["k_reference"] == 2 and len(row["truth_r"]) == 2
        # worth lies in [1, the pool's size]; a percentile interval need not contain its estimate
        assert 1 <= row["worth"] <= 2 and 1 <= row["worth_ci_low"] <= row["worth_ci_high"] <= 2
        assert row["side"] in ("within", "below", "above") and -1 <= row["proxy_r"] <= 1
