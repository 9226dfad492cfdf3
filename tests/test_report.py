"""The quick report end to end, and its page in a real headless browser."""

import html
import json
import math
import re
import shutil
import subprocess

import pytest

from stablesal.cli import main


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    code = main(["report", "--quick", "-q", "--out", str(root / "reports"), "--runs", str(root / "runs")])
    assert code == 0
    return root / "reports" / "quick"


def test_quick_report_writes_everything(quick_report):
    for name in ("index.html", "results.json", "models.csv", "stability_summary.csv", "stability_pairs.csv",
                 "variance_reduction.csv"):
        assert (quick_report / name).stat().st_size > 0, name
    results = json.loads((quick_report / "results.json").read_text())
    assert {"config", "environment", "models", "stability_summary", "variance_reduction"} <= set(results)
    assert [m["set"] for m in results["models"]].count("main") == 3
    assert sorted(m["held_out_fold"] for m in results["models"] if m["set"] == "fold") == [0, 1, 2]
    fold_rows = results["mege_folds"]["rows"]
    assert {(r["method"], r["grouping"]) for r in fold_rows} == {
        (r["method"], r["grouping"]) for r in results["stability_summary"] if r["model_set"] == "main"
        and r["family"] != "perturbation"}
    assert all(0 < r["mege"] <= 1 for r in fold_rows if r["n_same"])
    # the fold models ran the test–retest repeat: random explainers have a measured ceiling,
    # deterministic ones the exact 1. The ceiling is measured on the samples a fold model gets right,
    # which is a reading of the training (the quick fold models end near 30 %, and one machine's
    # rounding can move that): it is NaN only if no model is right anywhere, so it must exist
    # wherever a pair counted in S= or S≠ (a model was right there); its interval is NaN when deleting
    # one sample or model leaves none, and otherwise brackets it. Distances lie in [0, 1]: MeGe in [0.5, 1].
    for row in fold_rows:
        if row["method"] in ("smoothgrad", "suppression", "random"):
            ceiling, low, high = row["mege_retest"], row["mege_retest_ci_low"], row["mege_retest_ci_high"]
            if row["n_same"] + row["n_different"] > 0 or not math.isnan(ceiling):
                assert 0.5 <= ceiling < 1, row
            assert (math.isnan(low) and math.isnan(high)) or low <= ceiling <= high, row
        else:
            assert row["mege_retest"] == 1.0
    designs = results["factor_study"]["analysis"]["designs"]
    assert set(designs) == {"main", "single_feature"}
    for design in designs.values():
        eta = [e["eta2_srg"] for e in design["effects"]]
        assert sum(eta) == pytest.approx(1.0)   # main effects + interactions on a balanced design
    for figure in ("stability_main", "variance_reduction", "stability_fidelity", "timing", "dataset_examples"):
        assert (quick_report / "figures" / f"{figure}.png").exists() and (quick_report / "figures" / f"{figure}.pdf").exists()
    page = (quick_report / "index.html").read_text()
    assert "http://" not in page and "https://" not in page  # self-contained
    for title in ("Setup", "Headline", "Cross-seed stability", "Variance reduction", "Sanity", "MeGe and ReCo",
                  "Single-feature samplers", "Consensus maps", "Planner"):
        assert title in page
    # the consensus stage: both tests per unit, calibrated under the permuted null, figures drawn
    units = results["consensus"]["units"]
    assert {(u["method"], u["grouping"]) for u in units} == {("saliency", "fastslic"), ("smoothgrad", "fastslic")}
    for unit in units:
        assert [row["test"] for row in unit["tests"]] == ["rank-sum", "trained vs untrained"]
        assert all(0 <= row["fdr"] <= 1 for row in unit["calibration"])
        # 3 trained vs 3 untrained networks: 20 relabellings, all enumerated (999 >= 20): p >= 1/20 = q,
        # so a lone region (p <= q/R) is out of reach; the page says so
        two_sample = unit["tests"][1]
        assert two_sample["smallest_p"] == pytest.approx(1 / 20) and not two_sample["can_find_lone_region"]
    assert "a lone consistent region needs p ≤ q/R" in html.unescape(page)
    assert (quick_report / "figures" / "planner_reliability.png").exists()


def _interval_tables(value, path="") -> set[str]:
    """Dotted paths (list indices dropped) of every table in ``value`` whose rows hold interval bounds."""
    found = set()
    if isinstance(value, dict):
        if any(isinstance(k, str) and (k.endswith("_low") or k == "ci_low" or k.endswith("_ci95")) for k in value):
            found.add(path)
        for key, item in value.items():
            found |= _interval_tables(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for item in value:
            found |= _interval_tables(item, path)
    return found


def test_results_name_how_every_interval_was_computed(quick_report):
    """A reader of results.json alone finds, for every table with intervals, the interval's kind,
    level and what it treats as sampled; and the seeds and library versions that made the numbers."""
    import captum
    import numpy

    from stablesal.intervals import INTERVAL_KINDS

    results = json.loads((quick_report / "results.json").read_text())
    notes = results["intervals"]
    tables = _interval_tables({k: v for k, v in results.items() if k != "intervals"})
    assert {"stability_summary", "variance_reduction", "consensus.units.tests",
            "factor_study.analysis.designs.main.effects", "inpainting.quality"} <= tables
    for table in tables:
        covering = [name for name in notes if table == name or table.startswith(name + ".")]
        assert covering, f"{table} has intervals but results.json does not say how they were computed"
    for name, note in notes.items():
        assert note["method"] == INTERVAL_KINDS[note["kind"]], name
        assert 0 < note["level"] < 1 and note["sampled"], name
    assert notes["stability_summary"]["kind"] == "design-jackknife"
    assert notes["factor_study.analysis"]["n_boot"] == results["factor_study"]["analysis"]["designs"]["main"]["n_boot"]
    assert results["seeds"]["gradient.seed"] == results["config"]["gradient"]["seed"]
    assert results["seeds"]["models.base_seed"] == results["config"]["models"]["base_seed"]
    libraries = results["environment"]["libraries"]
    assert libraries["captum"] == captum.__version__ and libraries["numpy"] == numpy.__version__
    assert len(results["environment"]["code_version"]) == 16


def test_an_interval_note_names_a_known_kind():
    from stablesal.intervals import CONFIDENCE, interval_note

    note = interval_note("t-over-units", sampled=["test images"])
    assert note["level"] == CONFIDENCE and note["fixed"] == []
    with pytest.raises(ValueError, match="kind must be one of"):
        interval_note("bootstrap-t", sampled=["models"])


def _without_images(page: str) -> str:
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "IMAGE", page)


def test_render_rebuilds_the_page_from_the_results_folder_alone(quick_report, tmp_path):
    """A copy of the report folder, with no model, cache or dataset anywhere near it, renders the
    same page: every reading, table and caption, and as many figures."""
    copy = tmp_path / "copy"
    shutil.copytree(quick_report, copy)
    original = (copy / "index.html").read_text()
    (copy / "index.html").unlink()
    for figure in ("stability_main", "timing", "factor_effects"):  # figures drawn from rows are redrawn
        (copy / "figures" / f"{figure}.png").unlink()
    assert main(["render", str(copy)]) == 0
    rebuilt = (copy / "index.html").read_text()
    assert _without_images(rebuilt) == _without_images(original)
    assert rebuilt.count("data:image/png;base64,") == original.count("data:image/png;base64,") > 10
    assert (copy / "figures" / "stability_main.png").exists()


def test_a_registered_section_joins_the_page_in_its_place(quick_report, tmp_path):
    """Adding a section is one registered builder: it is placed by its order, from results alone."""
    from stablesal.html import SECTIONS, Section, report_section
    from stablesal.report_sections import report_sections

    results = json.loads((quick_report / "results.json").read_text())
    copy = tmp_path / "copy"  # sections draw figures into the report folder: work on a copy
    shutil.copytree(quick_report, copy)

    @report_section("accuracy for test", order=15)  # between Setup (10) and Left out / Headline
    def accuracy(results, out):
        rows = [r for r in results["models"] if r["set"] == "main"]
        return Section("Accuracy", f"mean test accuracy {sum(r['test_acc'] for r in rows) / len(rows):.3f}")

    try:
        titles = [section.title for section in report_sections(results, copy)]
    finally:
        SECTIONS.unregister("accuracy for test")
    assert titles[:2] == ["Setup", "Accuracy"] and titles.count("Accuracy") == 1
    assert "Accuracy" not in [section.title for section in report_sections(results, copy)]


def test_sections_of_results_without_row_families_read_the_same(quick_report, tmp_path):
    """A results.json written before rows carried their ``family`` renders the same sections: the
    random-map control is then found by its registered name."""
    from stablesal.report_sections import report_sections

    def without_family(value):
        if isinstance(value, dict):
            return {k: without_family(v) for k, v in value.items() if k != "family"}
        return [without_family(v) for v in value] if isinstance(value, list) else value

    results = json.loads((quick_report / "results.json").read_text())
    old = without_family(results)
    assert '"family"' in json.dumps(results) and '"family"' not in json.dumps(old)
    copy = tmp_path / "copy"  # sections draw figures into the report folder: work on a copy
    shutil.copytree(quick_report, copy)
    now, before = report_sections(results, copy), report_sections(old, copy)
    assert [(s.title, s.reading, s.tables) for s in before] == [(s.title, s.reading, s.tables) for s in now]
    assert any("random map" in s.reading for s in now)  # the control was found and read


def test_render_of_a_folder_without_results_names_it(tmp_path, capsys):
    assert main(["render", str(tmp_path)]) == 2
    assert "results.json does not exist" in capsys.readouterr().err


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


def test_report_rerun_reuses_work(quick_report, tmp_path):
    runs = quick_report.parent.parent / "runs" / "quick"
    stamps = {p: p.stat().st_mtime_ns for p in runs.rglob("*") if p.is_file()}
    code = main(["report", "--quick", "-q", "--out", str(quick_report.parent), "--runs", str(runs.parent)])
    assert code == 0
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # models and study units reused


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (make installs it where apt-get works)")
def test_page_renders_in_chromium(quick_report, tmp_path):
    url = (quick_report / "index.html").resolve().as_uri()
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([_chromium(), *FLAGS, *profile, "--window-size=1280,900", "--virtual-time-budget=5000",
                          "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    check = re.search(r'data-check="([^"]*)"', dom)
    assert check is not None, "the page's load handler did not run"
    assert check.group(1) == "images-broken=0;overflow=false"
    shot = tmp_path / "page.png"
    subprocess.run([_chromium(), *FLAGS, *profile, "--window-size=1280,2400", f"--screenshot={shot}", url],
                   capture_output=True, timeout=120)
    assert shot.stat().st_size > 20_000
    pdf = tmp_path / "page.pdf"
    subprocess.run([_chromium(), *FLAGS, *profile, f"--print-to-pdf={pdf}", "--no-pdf-header-footer", url],
                   capture_output=True, timeout=120)
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 50_000
