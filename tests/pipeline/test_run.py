"""Tests of :mod:`stablesal.pipeline.run`: the quick report end to end (the session's
``quick_report`` fixture): every file and figure it writes, how results.json names its intervals,
and a rerun that reuses the trained models and study units."""

import html
import json
import math

import pytest

from stablesal.cli import main


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
        # the quick report's reference is the random-label null (3 networks on permuted labels)
        assert results["consensus"]["reference"] == "random_label"
        assert [row["test"] for row in unit["tests"]] == ["rank-sum", "trained vs random_label"]
        assert all(0 <= row["fdr"] <= 1 for row in unit["calibration"])
        # 3 trained vs 3 random-label networks: 20 relabellings, all enumerated (999 >= 20): p >= 1/20 = q,
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

    from stablesal.core.intervals import INTERVAL_KINDS

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


def test_report_rerun_reuses_work(quick_report, tmp_path):
    runs = quick_report.parent.parent / "runs" / "quick"
    stamps = {p: p.stat().st_mtime_ns for p in runs.rglob("*") if p.is_file()}
    code = main(["report", "--quick", "-q", "--out", str(quick_report.parent), "--runs", str(runs.parent)])
    assert code == 0
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # models and study units reused
    assert {p for p in runs.rglob("*") if p.is_file()} == set(stamps)  # and none recomputed under a new name


# A user's own file, quick-sized: it names neither copy key
USER_TOML = '''
[data]
n_train = 200
n_test = 40
size = 16
[models]
k = 3
epochs = 1
control_k = 0
untrained_k = 0
[gradient]
methods = ["saliency"]
groupings = ["pixel"]
n_images = 4
[perturbation]
methods = []
[folds]
enabled = false
[factors]
enabled = false
[inpainting]
enabled = false
[consensus]
enabled = false
[report]                # no name: the run is "default", as a user's first file has it
out_dir = "out"
runs_dir = "cache"
'''


def test_a_report_on_a_users_file_writes_only_under_its_own_folders(tmp_path, monkeypatch):
    """Issue #31: a report on a user's TOML wrote figures/ and experiments/results/ into the user's
    working directory. Only the built-in run copies there; a user who asks for copies gets them."""
    (tmp_path / "mine.toml").write_text(USER_TOML)
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--config", "mine.toml", "-q"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "mine.toml", "out"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["default"]
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["default"]
    assert (tmp_path / "out" / "default" / "index.html").exists()
    # the copies are the configuration's to ask for (the re-run reuses every model and unit)
    assert main(["report", "--config", "mine.toml", "-q", "--set", 'report.copy_figures_to="figs"',
                 "--set", 'report.copy_results_to="kept"']) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "figs", "kept", "mine.toml", "out"]
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["default.json"]
    assert {p.name for p in (tmp_path / "figs").iterdir()} == {
        p.name for p in (tmp_path / "out" / "default" / "figures").glob("*.p*")}


def test_the_terminal_names_the_pages_first_method_with_its_first_columns(tmp_path):
    """Issue #31: the terminal ranked by SSIM and named another winner than the page. On the committed
    experiments/results/default.json (json only, no model) the terminal's rows are the page's
    headline rows, in its order and with its first columns as the page prints them."""
    import re

    import stablesal.report.sections.stability  # noqa: F401  (registers the headline section)
    from stablesal.pipeline.run import TERMINAL_COLUMNS, terminal_summary
    from stablesal.report.html import SECTIONS

    from tests.helpers.report_results import load_default_results, page_text

    results = load_default_results()
    headline = SECTIONS["headline"](results, tmp_path)
    page = page_text(headline)
    first_on_page = re.search(r"<tr><td>1</td><td>([^<]+)</td><td>([^<]+)</td>", page).groups()
    lines = terminal_summary(results).splitlines()
    header, rows = lines[0].split(), [line.split() for line in lines[2:]]
    first = results["ranking"]["rows"][0]  # the ranking the file holds: the excess over the random-label null
    assert (rows[0][1], rows[0][2]) == first_on_page == (first["method"], first["grouping"])
    table = headline.tables[0][0]
    assert len(rows) == 8 and [(r[1], r[2]) for r in rows] == [(r["method"], r["grouping"]) for r in table[:8]]
    columns = list(table[0])[:TERMINAL_COLUMNS]
    assert " ".join(header) == " ".join(columns)
    assert lines[2].split("  ")[-1].strip() == table[0][columns[-1]]  # a cell as the page prints it
    assert len(terminal_summary(results, top=None).splitlines()) == 2 + len(table)


TWO_OR_THREE = '''
[data]
n_train = 200
n_test = 40
size = 16
[models]
vary = "seed"
epochs = 1
control_k = 0
untrained_k = 0
[gradient]
methods = ["saliency"]
groupings = ["pixel"]
n_images = 4
'''
FEW_MODELS = ("warning: 2 models: the between-model intervals need at least 3 (each is a delete-one-model "
              "jackknife); the report shows point estimates without intervals")


def test_two_models_are_warned_about_before_training_in_results_and_on_the_page(tmp_path, capsys, monkeypatch):
    """Issue #31: K = 2 was accepted silently, although no between-model statistic has an interval
    with 2 models. One line on stderr before the models are trained, the same sentence in
    results.json["warnings"] and at the top of the page; with K = 3 none."""
    import stablesal.pipeline.context

    (tmp_path / "c.toml").write_text(TWO_OR_THREE)
    train, said_before_training = stablesal.pipeline.context.train_model_sets, []

    def watched(*args, **kwargs):
        said_before_training.append(capsys.readouterr().err)
        return train(*args, **kwargs)

    monkeypatch.setattr(stablesal.pipeline.context, "train_model_sets", watched)
    common = ["--config", str(tmp_path / "c.toml"), "--runs", str(tmp_path / "runs"), "-q"]
    assert main(["stability", "-k", "2", "--out", str(tmp_path / "two"), *common]) == 0
    assert said_before_training[0].splitlines().count(FEW_MODELS) == 1
    assert FEW_MODELS not in capsys.readouterr().err  # said once
    results = json.loads((tmp_path / "two" / "results.json").read_text())
    assert results["warnings"] == [FEW_MODELS.removeprefix("warning: ")]
    page = html.unescape((tmp_path / "two" / "index.html").read_text())
    assert page.index("<h2>Warnings</h2>") < page.index("<h2>Setup</h2>") < page.index("<h2>Headline")
    assert f"Warning: {results['warnings'][0]}." in page
    row = next(r for r in results["stability_summary"] if r["model_set"] == "main" and r["method"] == "saliency")
    assert math.isfinite(row["spearman"]) and math.isnan(row["spearman_ci_low"])  # as the warning says

    assert main(["stability", "-k", "3", "--out", str(tmp_path / "three"), *common]) == 0
    assert "warning:" not in said_before_training[1] + capsys.readouterr().err
    results = json.loads((tmp_path / "three" / "results.json").read_text())
    assert results["warnings"] == [] and "<h2>Warnings</h2>" not in (tmp_path / "three" / "index.html").read_text()


def test_the_warning_counts_the_checkpoints_matched(tmp_path):
    from stablesal.pipeline.config import ModelsSection
    from stablesal.pipeline.run import few_models_warning, main_model_count

    for name in ("a-0.pt", "a-1.pt", "b.pt"):
        (tmp_path / name).write_bytes(b"")
    assert main_model_count(ModelsSection(checkpoints=[f"{tmp_path}/a-*.pt"], k=4)) == 2
    assert main_model_count(ModelsSection(checkpoints=[f"{tmp_path}/a-*.pt", f"{tmp_path}/b.pt"], k=1)) == 3
    assert main_model_count(ModelsSection(k=2)) == 2 and main_model_count(ModelsSection(train="m:f", factory="m:net", k=5)) == 5
    assert few_models_warning(1).startswith("1 model: the between-model intervals need at least 3")


def test_every_class_of_a_class_ordered_folder_is_explained_and_setup_lists_them(tmp_path):
    """Issue #31: a class-folder test split lists class 0 first, and the studies took the first
    images, so every map explained one class. With the default selection the stability stage's 3
    images are one per class, results.json records them and Setup lists them; ``first`` (the old
    behaviour, now asked for by name) takes the folder's order."""
    from tests.helpers.image_files import class_folders

    images = class_folders(tmp_path / "images", per_class=10)
    toml = (f'[data]\ndataset = "folder"\nroot = "{images}"\nsize = 16\n'
            + USER_TOML.split("[models]", 1)[1].join(["[models]", ""]).replace("n_images = 4", "n_images = 3"))
    (tmp_path / "c.toml").write_text(toml)
    common = ["--config", str(tmp_path / "c.toml"), "--runs", str(tmp_path / "runs"), "-q"]
    assert main(["stability", "--out", str(tmp_path / "balanced"), *common]) == 0
    results = json.loads((tmp_path / "balanced" / "results.json").read_text())
    explained = results["dataset"]["explained"]
    positions = explained["runs"][0].pop("positions")  # where they were in the class-ordered split
    assert explained == {"selection": "stratified", "seed": 0, "runs": [
        {"first": 0, "stop": 3, "classes": {"blue": 1, "green": 1, "red": 1}}]}
    assert sorted(position // 2 for position in positions) == [0, 1, 2]  # the split is [0, 0, 1, 1, 2, 2]
    units = set((tmp_path / "runs").rglob("main-saliency-*.json"))
    page = html.unescape((tmp_path / "balanced" / "index.html").read_text())
    assert ("The studies explain runs of a class-balanced order of the test images (seeded with 0); "
            "images 1–3: blue 1, green 1, red 1.") in page
    assert main(["stability", "--out", str(tmp_path / "first"), *common, "--set", 'data.selection="first"']) == 0
    results = json.loads((tmp_path / "first" / "results.json").read_text())
    assert results["dataset"]["explained"]["runs"] == [{"first": 0, "stop": 3, "classes": {"blue": 2, "green": 1},
                                                        "positions": [0, 1, 2]}]
    assert units and set((tmp_path / "runs").rglob("main-saliency-*.json")) > units  # other images: not the cached units
    assert "No image of red is explained." in html.unescape((tmp_path / "first" / "index.html").read_text())
