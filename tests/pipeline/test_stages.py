"""The stage pipeline (stablesal.pipeline.run.run_pipeline): one output shape whatever stages run,
model sets built once, every table written once, results.json checked against its schema, and a
new study added as one registered stage."""

import html
import json
from typing import get_type_hints

import pytest

import stablesal.pipeline.context
import stablesal.pipeline.run
import stablesal.models.model_sets
import stablesal.pipeline.stages
from stablesal.pipeline.config import config_from_dict
from stablesal.pipeline.run import run_pipeline
from stablesal.pipeline.schema import SHARED_LISTS, Results, check_results
from stablesal.pipeline.stages import STAGES, BaseStage, Stage, entry_types, ordered_stages, register_stage

TINY = {
    "data": {"n_train": 200, "n_test": 40, "size": 16},
    "models": {"k": 3, "epochs": 1, "control_k": 0, "untrained_k": 3, "bn_calibrated_k": 3, "random_label_k": 3},
    "gradient": {"methods": ["saliency", "smoothgrad"], "groupings": ["pixel", "grid"], "n_segments": 16,
                 "n_samples": 2, "n_images": 4},
    "perturbation": {"methods": ["occlusion"], "n_images": 2},
    "folds": {"enabled": False},
    "factors": {"enabled": False},
    "inpainting": {"enabled": False},
    "consensus": {"n_images": 2, "methods": ["saliency"], "groupings": ["grid"], "calibration_studies": 5,
                  "n_permutations": 99},
}


def tiny_config(tmp_path, name="tiny"):
    raw = json.loads(json.dumps(TINY))
    raw["report"] = {"name": name, "out_dir": str(tmp_path / "reports"), "runs_dir": str(tmp_path / "runs")}
    return config_from_dict(raw)


def test_every_registered_stage_follows_the_protocol():
    stages = ordered_stages()
    assert [s.name for s in stages] == ["stability", "proxy", "folds", "perturbation", "factor_study", "consensus",
                                        "inpainting", "figures"]
    for stage in stages:
        assert isinstance(stage, Stage), stage
        # a stage's absent entries are exactly its entries, of their declared types
        assert set(stage.absent) == set(stage.entry_types), stage.name
        assert all(isinstance(value, stage.entry_types[key]) for key, value in stage.absent.items()), stage.name
    keys = [key for stage in stages for key in stage.entry_types]
    # each entry belongs to one stage; the run-level keys and the shared lists to none
    assert len(keys) == len(set(keys)) and not set(keys) & (set(Results.__annotations__) | set(SHARED_LISTS))


def test_the_schema_refuses_a_missing_an_unexpected_and_a_mistyped_key():
    results = {key: kind() for key, kind in get_type_hints(Results).items()}  # 0, [], {}
    types = entry_types()
    results.update({key: stage.absent[key] for stage in ordered_stages() for key in stage.absent})
    check_results(results, types)  # a complete, well-typed file passes
    for broken, message in ((dict(results, extra=1), "unexpected 'extra'"),
                            ({k: v for k, v in results.items() if k != "seeds"}, "missing 'seeds'"),
                            (dict(results, n_images="4"), "'n_images' is str"),
                            (dict(results, consensus=[]), "'consensus' is list")):
        with pytest.raises(ValueError, match=message):
            check_results(broken, types)


def test_an_unknown_stage_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match=r"only: unknown stage\(s\) \['stabilty'\]"):
        run_pipeline(tiny_config(tmp_path), only=["stabilty"])
    assert not (tmp_path / "runs").exists() and not (tmp_path / "reports").exists()


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """The tiny configuration's whole pipeline, counting model-set builds and table writes."""
    tmp_path = tmp_path_factory.mktemp("pipeline")
    calls = {"train_seeds": 0, "untrained_models": 0, "tables": []}
    patch = pytest.MonkeyPatch()
    train, untrained = stablesal.models.model_sets.train_seeds, stablesal.models.model_sets.untrained_models
    write = stablesal.pipeline.run.write_csv

    def counted_train(*args, **kwargs):
        calls["train_seeds"] += 1
        return train(*args, **kwargs)

    def counted_untrained(*args, **kwargs):
        calls["untrained_models"] += 1
        return untrained(*args, **kwargs)

    def recorded_write(path, rows):
        calls["tables"].append(path.name)
        if not rows:
            calls.setdefault("empty", []).append(path.name)  # write_csv writes no file for no rows
        return write(path, rows)

    # counted where they are defined and everywhere they were imported, so any stage's call counts
    for module in (stablesal.models.model_sets, stablesal.pipeline.context, stablesal.pipeline.stages):
        if hasattr(module, "train_seeds"):
            patch.setattr(module, "train_seeds", counted_train)
        if hasattr(module, "untrained_models"):
            patch.setattr(module, "untrained_models", counted_untrained)
    patch.setattr(stablesal.pipeline.run, "write_csv", recorded_write)
    try:
        out = run_pipeline(tiny_config(tmp_path), progress=False)
    finally:
        patch.undo()
    return out, json.loads((out / "results.json").read_text()), calls, tmp_path


def test_model_sets_are_built_once_and_every_table_written_once(full_run):
    out, results, calls, _ = full_run
    # stability, perturbation, consensus and figures all use the main and untrained models
    assert results["stages"] == ["stability", "perturbation", "consensus", "figures"]
    assert calls["train_seeds"] == 1 and calls["untrained_models"] == 1
    # every CSV in the folder was written by the pipeline, once
    assert len(calls["tables"]) == len(set(calls["tables"])) and calls["tables"]
    assert {path.name for path in out.glob("*.csv")} == set(calls["tables"]) - set(calls.get("empty", []))
    # the stability stage kept the consensus images' maps for the consensus stage
    assert list((out.parents[1] / "runs" / "tiny" / "maps").rglob("*.pt"))
    # the summary table is the gradient rows then the perturbation rows, as in results.json
    summary = (out / "stability_summary.csv").read_text().splitlines()
    assert len(summary) == 1 + len(results["stability_summary"])
    methods = [row["method"] for row in results["stability_summary"]]
    assert methods.index("occlusion") > max(i for i, m in enumerate(methods) if m == "smoothgrad")
    # the stages that did not run leave their entries at the absent values; the schema holds
    assert results["mege_folds"] is None and results["factor_study"] is None and results["inpainting"] is None
    check_results(results, entry_types())
    assert set(results["timings_s"]) == {"data", "training", *results["stages"], "total"}
    assert (out / "index.html").exists()


def test_a_command_that_runs_one_stage_writes_the_same_shape(full_run):
    """`stablesal consensus` runs only the consensus stage: the same keys as the whole report, the
    other stages' entries absent, and a page without the stability sections. Its numbers equal the
    whole run's, although there the stability stage handed over its maps (the map store) and here,
    in a fresh runs folder, the consensus explains every image itself."""
    out, whole, _, tmp_path = full_run
    config = tiny_config(tmp_path, "consensus-only")
    part_dir = run_pipeline(config, only=["consensus"], out=tmp_path / "consensus-only", progress=False)
    part = json.loads((part_dir / "results.json").read_text())
    assert set(part) == set(whole) and part["stages"] == ["consensus"]
    assert part["stability_summary"] == [] and part["figures"] == {}
    units = lambda r: [{k: v for k, v in u.items() if "second" not in k} for u in r["consensus"]["units"]]  # noqa: E731
    assert units(part) == units(whole)
    page = (part_dir / "index.html").read_text()
    assert "Consensus maps: regions beyond the null, and agreement" in page and "Headline" not in page
    assert "Headline" in (out / "index.html").read_text()


def test_a_run_trains_only_the_model_sets_its_stages_use(tmp_path):
    """The control models belong to the stages that read them: the consensus alone trains none of
    them, the stability stage then trains them beside the main models it reuses."""
    raw = json.loads(json.dumps(TINY))
    raw["models"].update(control_k=3, random_label_k=0, bn_calibrated_k=0)
    raw["consensus"]["reference"] = "untrained"
    raw["report"] = {"name": "sets", "out_dir": str(tmp_path / "reports"), "runs_dir": str(tmp_path / "runs")}
    config = config_from_dict(raw)
    checkpoints = tmp_path / "runs" / "sets" / "models"
    part = json.loads((run_pipeline(config, only=["consensus"], progress=False, render=False)
                       / "results.json").read_text())
    assert {row["set"] for row in part["models"]} == {"main"} and len(list(checkpoints.glob("model-*.pt"))) == 3
    whole = json.loads((run_pipeline(config, only=["stability"], progress=False, render=False)
                        / "results.json").read_text())
    assert [row["set"] for row in whole["models"]] == ["main"] * 3 + ["control"] * 3
    assert len(list(checkpoints.glob("model-*.pt"))) == 6
    assert whole["models"][:3] == part["models"]  # the same main models, reused from their checkpoints


def test_adding_a_study_is_one_registered_stage(tmp_path):
    """A new study: its code (here a function of the data) plus one stage class registered in the
    pipeline; its entries, table, timing and a section on the page follow with no other change."""
    from stablesal.report.html import SECTIONS, Section, report_section

    @register_stage(order=65)
    class MeanBrightness(BaseStage):
        name, section, uses = "brightness", "data", ()
        entry_types = {"brightness": (dict, type(None))}
        absent = {"brightness": None}

        def run(self, ctx):
            images = ctx.dataset.test_images
            return {"rows": [{"label": int(c), "mean": float(images[ctx.dataset.test_labels == c].mean())}
                             for c in ctx.dataset.test_labels.unique()]}

        def tables(self, result):
            return {"brightness.csv": result["rows"]}

        def entries(self, result):
            return {"brightness": result}

    @report_section("brightness", order=200, stage="brightness")
    def brightness_section(results, out):
        return Section("Brightness", f"{len(results['brightness']['rows'])} classes.")

    try:
        out = run_pipeline(tiny_config(tmp_path, "new-study"), only=["brightness"], progress=False)
        results = json.loads((out / "results.json").read_text())
        assert results["stages"] == ["brightness"] and "training" not in results["timings_s"]
        assert len(results["brightness"]["rows"]) == len(results["dataset"]["classes"])
        assert (out / "brightness.csv").read_text().count("\n") == 1 + len(results["brightness"]["rows"])
        assert "Brightness" in (out / "index.html").read_text()
    finally:
        STAGES.unregister("brightness")
        SECTIONS.unregister("brightness")
    assert "brightness" not in entry_types()


def test_the_fold_script_runs_the_pipeline_and_needs_no_scratch_folder(tmp_path):
    """analysis/run_fold_stage.py runs only the fold stage (no main model is trained): its JSON
    holds the stage's rows and the fold models, and the pipeline's results folder holds the rest."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "analysis" / "run_fold_stage.py"
    spec = importlib.util.spec_from_file_location("run_fold_stage", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    raw = json.loads(json.dumps(TINY))
    raw["folds"] = {"enabled": True, "k": 3, "pool": 120, "per_fold": 2}
    raw["gradient"]["methods"] = ["saliency"]
    raw["report"] = {"name": "folds-tiny", "out_dir": str(tmp_path / "reports"), "runs_dir": str(tmp_path / "runs")}
    toml = tmp_path / "folds.toml"
    toml.write_text("\n".join(f"[{section}]\n" + "\n".join(f"{key} = {json.dumps(value)}" for key, value in keys.items())
                              for section, keys in raw.items()))  # JSON values are TOML values here
    out = tmp_path / "mege_folds.json"
    assert module.main(["--config", str(toml), "--out", str(out), "-q"]) == 0
    written = json.loads(out.read_text())
    assert written["fold_models"] == 3 and {row["method"] for row in written["rows"]} >= {"saliency"}
    assert written["n_samples"] == 3 * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folds.toml", "mege_folds.json", "reports", "runs"]
    folder = tmp_path / "reports" / "folds-tiny-folds"
    results = json.loads((folder / "results.json").read_text())
    assert results["stages"] == ["folds"] and "training" not in results["timings_s"]
    assert (folder / "mege_folds.csv").exists() and (folder / "index.html").exists()
    assert not (tmp_path / "runs" / "folds-tiny" / "models").exists()  # no main model was trained


def test_a_stage_asked_for_by_name_that_cannot_run_is_refused_before_any_training(tmp_path):
    config = tiny_config(tmp_path, "two-models")
    config.models.k = 2
    with pytest.raises(ValueError, match=r"only: the consensus stage does not run .*fewer than 3 main models"):
        run_pipeline(config, only=["consensus"], progress=False)
    config.factors.enabled = False
    with pytest.raises(ValueError, match=r"only: the factor_study stage does not run .*\[factors\] enabled"):
        run_pipeline(config, only=["factor_study"], progress=False)
    assert not (tmp_path / "runs").exists()  # refused before any model was trained


def test_a_stage_may_write_only_its_own_entries(tmp_path):
    @register_stage(order=66)
    class Trespasser(BaseStage):
        name, section, uses = "trespasser", "data", ()
        entry_types = {"trespasser": (dict, type(None))}
        absent = {"trespasser": None}

        def run(self, ctx):
            return {}

        def entries(self, result):
            return {"trespasser": {}, "consensus": {"units": []}}  # another stage's entry

    try:
        with pytest.raises(ValueError, match=r"stage trespasser writes results.json\['consensus'\], which is not"):
            run_pipeline(tiny_config(tmp_path, "trespass"), only=["trespasser"], progress=False)
    finally:
        STAGES.unregister("trespasser")


def _calibration(path, side):
    rows = [{"proxy": "laplace", "method": method, "grouping": "pixel", "difference": 0.1,
             "difference_ci_low": 0.05, "difference_ci_high": 0.15, "rank_correlation": 0.8}
            for method in ("saliency", "smoothgrad")]
    path.write_text(json.dumps({"commit": "0123456789abcdef", "dataset": {"name": "shapes"}, "image_side": side,
                                "channels": 3, "architecture": "small_cnn", "k_truth": 19, "k_null": 4,
                                "null": "random_label", "rows": rows, "refused": {}}))
    return str(path)


def _proxy_report(tmp_path, side):
    """The stability and proxy stages of the tiny study, with a calibration made for ``side`` px."""
    raw = json.loads(json.dumps(TINY))
    raw["report"] = {"name": "proxy", "out_dir": str(tmp_path / "reports"), "runs_dir": str(tmp_path / "runs")}
    raw["models"].update({"untrained_k": 0, "bn_calibrated_k": 0, "random_label_k": 0})
    raw["proxy"] = {"names": ["laplace"], "k": 3, "in_report": True,
                    "calibration": _calibration(tmp_path / "calibration.json", side)}
    return run_pipeline(config_from_dict(raw), only=["stability", "proxy"], progress=False)


def test_the_estimate_runs_beside_the_retrained_study_and_is_set_against_it(tmp_path):
    """``[proxy] in_report``: the proxy stage varies main model 0, predicts the cross-seed agreement
    from a calibration, and sets each prediction beside the stability study's measurement of the
    same unit; units the calibration does not cover say so; the page shows both."""
    out = _proxy_report(tmp_path, side=16)
    results = json.loads((out / "results.json").read_text())
    estimate = results["proxy_estimate"]
    assert estimate["refused"] is None and "calibration.json (commit 0123456789" in estimate["evidence"]
    # no control models here: the main set (seeds and splits vary) is the measurement, and says so
    assert estimate["measured_set"] == "main" and estimate["measured_varies"] == "both"
    measured = {(r["method"], r["grouping"]): r for r in results["stability_summary"] if r["model_set"] == "main"}
    compared = [r for r in estimate["rows"] if "measured" in r]
    assert {(r["method"], r["grouping"]) for r in compared} == {("saliency", "pixel"), ("smoothgrad", "pixel")}
    for row in compared:
        truth = measured[(row["method"], row["grouping"])]
        assert row["measured"] == truth["spearman"] and row["measured_k"] == 3 and row["k_variants"] == 3
        assert row["error"] == pytest.approx(row["predicted_cross_seed_agreement"] - truth["spearman"])
        assert row["predicted_cross_seed_agreement"] == pytest.approx(row["proxy_agreement"] - 0.1)
        assert row["measured_inside"] == (row["predicted_cross_seed_agreement_ci_low"] <= truth["spearman"]
                                          <= row["predicted_cross_seed_agreement_ci_high"])
    refused = [r for r in estimate["rows"] if "refused" in r]
    assert {(r["method"], r["grouping"]) for r in refused} == {("saliency", "grid"), ("smoothgrad", "grid")}
    assert (out / "proxy_estimate.csv").is_file() and (out / "figures" / "proxy_estimate.csv").is_file()
    page = (out / "index.html").read_text()
    assert "Without retraining: an estimate from one model" in page and "measured cross-seed" in page


def test_an_estimate_the_calibration_does_not_cover_is_a_reason_on_the_page(tmp_path):
    out = _proxy_report(tmp_path, side=32)
    estimate = json.loads((out / "results.json").read_text())["proxy_estimate"]
    assert estimate["rows"] == [] and "covers 3 × 32 px only" in estimate["refused"]
    assert "Left out: [data] images of 3 × 16 px: the calibration covers 3 × 32 px only" in html.unescape(
        (out / "index.html").read_text())
