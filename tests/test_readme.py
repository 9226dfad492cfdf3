"""Every code block of README.md and of the user guide (docs/guide.md) is run, parsed or says why
not (issue #31: 3 of 7 Python blocks ran as written).

- ``python`` blocks run in order in one namespace, as one session, with a small generated dataset
  standing in for ``load_dataset("shapes")`` and a 40-step inpainter for the default 300 (the
  guide says so), in a temporary folder;
- a block preceded by ``<!-- parsed by tests: ... -->`` is parsed: each ``stablesal`` line by the
  command line's parser, a ``toml`` block by the configuration reader (every key and value checked);
- a block preceded by ``<!-- not run by tests: <reason> -->`` is skipped, and must give a reason;
- the README's headline block (``<!-- results:headline -->``) is output, generated from the
  committed results and checked against them by ``tests/report/test_markdown.py``.
"""

import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = (ROOT / "README.md", ROOT / "docs" / "guide.md")
FENCE = re.compile(r"(?:<!-- (?P<marker>[^>]*?) -->\n)?```(?P<language>\w*)\n(?P<code>.*?)```", re.S)


def readme_blocks(pages=PAGES) -> list[dict]:
    """The fenced blocks of ``pages``: language, code, the marker comment right above (or None) and
    the page's name."""
    return [dict(match.groupdict(), page=page.name) for page in pages for match in FENCE.finditer(page.read_text())]


def _commands(code: str) -> list[list[str]]:
    """The ``stablesal`` command lines of a shell block (continued lines joined), as argument lists."""
    joined = code.replace("\\\n", " ")
    return [shlex.split(line, comments=True)[1:] for line in joined.splitlines() if line.startswith("stablesal ")]


def test_every_block_is_run_parsed_or_says_why_not():
    blocks = readme_blocks()
    assert len(blocks) >= 12 and {b["page"] for b in blocks} == {"README.md", "guide.md"}
    for block in blocks:
        marker = block["marker"]
        if block["language"] == "python" and marker is None:
            continue  # run below
        assert marker is not None, f"a {block['language']} block has no marker: {block['code'][:60]!r}"
        if marker == "results:headline":  # generated from the results: tests/report/test_markdown.py
            assert block["language"] == "text"
            continue
        kind, _, reason = marker.partition(":")
        assert kind in ("not run by tests", "parsed by tests") and len(reason.strip()) > 10, marker
        if kind == "parsed by tests":
            assert block["language"] in ("bash", "toml"), marker


def test_every_command_line_in_the_readme_parses():
    from stablesal.cli import build_parser

    parser = build_parser()
    parsed = 0
    for block in readme_blocks():
        if block["language"] == "bash" and (block["marker"] or "").startswith("parsed by tests"):
            commands = _commands(block["code"])
            assert commands, block["code"][:60]
            for arguments in commands:
                parser.parse_args(arguments)  # an unknown flag or choice exits with status 2
                parsed += 1
    assert parsed >= 18


def test_every_toml_block_in_the_readme_is_a_valid_configuration(tmp_path, monkeypatch):
    """Every key and value is checked, and the checkpoints and factory it names are looked for: the
    user's files are stood in for by an empty checkpoint and a package with that factory."""
    from stablesal.pipeline.config import config_from_dict

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "resnet-seed0.pt").write_bytes(b"")
    (tmp_path / "runs" / "model.pt").write_bytes(b"")
    (tmp_path / "mypackage").mkdir()
    (tmp_path / "mypackage" / "__init__.py").write_text("")
    (tmp_path / "mypackage" / "models.py").write_text("def build(num_classes):\n    return num_classes\n")

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    blocks = [b for b in readme_blocks() if b["language"] == "toml"]
    assert {b["page"] for b in blocks} == {"README.md", "guide.md"}
    for block in blocks:
        config = config_from_dict(tomllib.loads(block["code"]))  # unknown keys and wrong types are errors
        assert config.models.checkpoints and config.data.dataset == "folder"


def test_the_python_blocks_run_in_order(tmp_path, monkeypatch, tiny_shapes):
    import functools

    import stablesal.data
    import stablesal.explain.inpainting
    from stablesal.core.settings import InpainterConfig

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(stablesal.data, "load_dataset", lambda name="shapes", **options: tiny_shapes)
    # the guide says so: 40 steps stand in for the default 300 (about 40 s on two cores)
    monkeypatch.setattr(stablesal.explain.inpainting, "InpainterConfig", functools.partial(InpainterConfig, steps=40))
    namespace: dict = {"__name__": "readme"}
    blocks = [b for b in readme_blocks() if b["language"] == "python" and b["marker"] is None]
    assert len(blocks) >= 6 and {b["page"] for b in blocks} == {"guide.md"}  # the guide's API session
    for number, block in enumerate(blocks):
        try:
            exec(compile(block["code"], f"{block['page']} python block {number + 1}", "exec"), namespace)
        except Exception as error:  # name the block that failed
            pytest.fail(f"{block['page']} python block {number + 1} failed: {error!r}\n{block['code']}")
    assert namespace["row"]["method"] in ("saliency", "smoothgrad", "suppression")
    assert namespace["result"].mask().shape[-2:] == tiny_shapes.test_images.shape[-2:]


def test_the_readmes_reading_of_the_nulls_is_the_committed_results():
    """Every number of the README's paragraph on the null families, recomputed from
    experiments/results/default.json: the counts above each null (Holm), the random-label networks'
    accuracy, the first row's null and the rank correlation of the rankings under two nulls."""
    import json

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    results = json.loads((root / "experiments/results/default.json").read_text())
    ranking = results["ranking"]
    rows, alpha = ranking["rows"], ranking["alpha"]

    def above(null):
        return sum(1 for r in rows if r[f"above_{null}_holm"] <= alpha and r[f"above_{null}"] > 0)

    assert above("random_label") == 0 and f"the {len(rows)} rows" in readme
    assert f"Above the untrained null {above('untrained')} of {len(rows)}" in readme
    assert f"above the BN-calibrated null {above('bn_calibrated')}" in readme
    accuracy = [m["test_acc"] for m in results["models"] if m["set"] == "random_label"]
    assert f"{100 * min(accuracy):.1f}–{100 * max(accuracy):.1f} %" in readme
    first = next(r for r in results["stability_summary"] if r["model_set"] == "main"
                 and (r["method"], r["grouping"]) == (rows[0]["method"], rows[0]["grouping"]))
    null = (f"{first['spearman_random_label']:.2f} [{first['spearman_random_label_ci_low']:.2f}, "
            f"{first['spearman_random_label_ci_high']:.2f}]").replace("-", "−")
    assert null in readme
    pair = next(e for e in results["null_rank_agreement"] if (e["null"], e["other"]) == ("random_label", "untrained"))
    correlation = (f"{pair['rank_correlation']:.2f} [{pair['rank_correlation_ci_low']:.2f}, "
                   f"{pair['rank_correlation_ci_high']:.2f}]").replace("-", "−")
    assert correlation in readme
    from stablesal.core.intervals import COVERAGE_BY_K
    good = [v for name, v in COVERAGE_BY_K[4].items() if name != "bad-seed"]
    assert f"covered\n{min(good):.2f}–{max(good):.2f}" in readme or f"{min(good):.2f}–{max(good):.2f} of simulated" in readme
    assert f"but {COVERAGE_BY_K[4]['bad-seed']:.2f} when 15 % of seeds train badly" in readme


def test_the_readmes_negative_control_is_the_committed_experiment():
    import json

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    check = json.loads((root / "experiments/results/null_check.json").read_text())
    assert f"none of the {check['rows']} headline intervals" in readme and not check["intervals_excluding_0"]
    pooled = check["consensus_pooled"]
    assert (f"{pooled['images_with_regions']} of {pooled['image_units']}\nimage × method × grouping cases "
            f"({100 * pooled['share']:.1f} % [{100 * pooled['wilson_low']:.1f}, {100 * pooled['wilson_high']:.1f}], Wilson"
            in readme)
    worst = max(u["images_with_regions"] for u in check["consensus"])
    assert f"at most {worst} of {check['consensus'][0]['n_images']} images in one unit" in readme


def _signed(value: float) -> str:
    return f"{value:+.2f}".replace("-", "−")


def test_the_readmes_replication_numbers_are_the_committed_comparison():
    import json

    root = Path(__file__).resolve().parents[1]
    readme = " ".join((root / "README.md").read_text().split())
    replication = json.loads((root / "experiments/results/replication.json").read_text())
    first, second, comparison = replication["first"], replication["second"], replication["comparison"]
    assert (f"0 of {first['rows']} rows on shapes and {len(second['above']['random_label'])} of {second['rows']} "
            "on photographs") in readme and not first["above"]["random_label"]
    (resolved,) = second["above"]["random_label"]
    assert f"+{resolved['excess']:.2f} [{resolved['ci_low']:.2f}, {resolved['ci_high']:.2f}]" in readme
    assert (f"the verdicts agree on {comparison['verdicts_agree']} of the {comparison['shared_rows']} rows"
            in readme)
    assert comparison["grouping"]["resolved_first"] == comparison["grouping"]["resolved_second"] == 0
    assert f"correlate at ρ = {comparison['ranking_rank_correlation']:.2f}".replace("-", "−") in readme
    assert set(second["main_test_accuracy"]) == {1.0} and "100 % test accuracy" in readme


def test_the_readmes_digits_replication_is_the_committed_comparison():
    import json
    import sys

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "analysis"))
    from replication import grouping_verdicts

    readme = " ".join((root / "README.md").read_text().split())
    replication = json.loads((root / "experiments/results/replication_digits.json").read_text())
    first, second, comparison = replication["first"], replication["second"], replication["comparison"]
    accuracy = second["main_test_accuracy"]
    assert f"{100 * min(accuracy):.1f}–{100 * max(accuracy):.1f} % test accuracy" in readme
    assert (f"{len(second['above']['random_label'])} of {second['rows']} rows (2 lie above the BN-calibrated null, "
            f"{len(second['above']['untrained'])} above untrained networks)") in readme
    assert len(second["above"]["bn_calibrated"]) == 2 and not first["above"]["random_label"]
    assert f"the verdicts agree on all {comparison['verdicts_agree']} shared rows" in readme
    assert comparison["verdicts_agree"] == comparison["shared_rows"]
    assert f"correlate at ρ = {comparison['ranking_rank_correlation']:.2f}" in readme
    grouping = comparison["grouping"]
    assert grouping["resolved_first"] == 0 and grouping["same_resolved_sign"] == 0
    assert f"{grouping['resolved_second']} of the {grouping['shared']} grouping contrasts are resolved" in readme
    digits = json.loads((root / "experiments/results/digits.json").read_text())
    verdicts = grouping_verdicts(digits)
    assert sorted(unit for unit, sign in verdicts.items() if sign) == [
        ("integrated_gradients", "fastslic"), ("integrated_gradients", "grid@fastslic"),
        ("suppression", "fastslic"), ("suppression", "grid@fastslic")]
    assert all(sign <= 0 for sign in verdicts.values())
    rows = {(r["method"], r["grouping"]): r for r in digits["grouping_contrasts"]}
    ig = [-rows[("integrated_gradients", g)]["spearman_difference"] for g in ("fastslic", "grid@fastslic")]
    assert f"Integrated Gradients' by {min(ig):.2f}–{max(ig):.2f}" in readme
    for grouping_name in ("fastslic", "grid@fastslic"):
        row = rows[("suppression", grouping_name)]
        assert (f"{_signed(row['spearman_difference'])} [{_signed(row['spearman_difference_ci_low'])}, "
                f"{_signed(row['spearman_difference_ci_high'])}]") in readme


def cheap_rows(transfer):
    return [r for r in transfer["rows"] if r["cost_share"] is not None and r["cost_share"] <= 0.2]


def test_the_readmes_proxy_tables_are_the_committed_calibrations():
    """The README's calibration and transfer tables, as analysis/proxy_tables.py prints them from the
    committed result files, and the sentences that read them."""
    import json
    import sys

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "analysis"))
    import proxy_tables

    readme = (root / "README.md").read_text()
    assert proxy_tables.calibration_table() in readme
    assert proxy_tables.transfer_table() in readme
    flat = " ".join(readme.split())
    transfer = json.loads((root / "experiments/results/proxy_transfer.json").read_text())
    cheap = [r for r in transfer["summary"] if r["cost_share"] is not None and r["cost_share"] <= 0.2]
    best = min(cheap, key=lambda r: r["mean_abs_error"])
    assert (f"the closest is `{best['proxy']}` held out on {best['held_out']}: mean abs(error) "
            f"{best['mean_abs_error']:.2f}") in flat
    assert f"misses ±0.05 by {best['mean_abs_error'] - 0.05:.2f}" in flat
    rows = [r for r in transfer["rows"] if (r["proxy"], r["held_out"]) == (best["proxy"], best["held_out"])]
    both = [r for r in rows if r["within_tolerance"] and r["rank_correlation"] >= 0.7]
    assert f"both targets met by the point estimates in {len(both)} of {len(rows)} units" in flat
    def cell(proxy, held_out, method, grouping):
        row = next(r for r in transfer["rows"] if (r["proxy"], r["held_out"], r["method"], r["grouping"]) ==
                   (proxy, held_out, method, grouping))
        return (f"error {_signed(row['error'])} [{_signed(row['error_ci_low'])}, {row['error_ci_high']:.2f}]",
                f"rank correlation {row['rank_correlation']:.2f} [{row['rank_correlation_ci_low']:.2f}, "
                f"{row['rank_correlation_ci_high']:.2f}]")

    for error, rank in (cell("laplace", "lfw/resnet20", "integrated_gradients", "pixel"),
                        cell("laplace", "shapes/small_cnn", "integrated_gradients", "fastslic")):
        assert error in flat and rank in flat
    met = [r for r in cheap_rows(transfer) if r["within_tolerance"] and r["rank_correlation"] >= 0.7]
    assert (f"of the {len(met)} units where a proxy within 20 % of a run meets both targets by its point estimates, "
            f"the rank correlation's interval reaches below 0.7 in all but "
            f"{['none', 'one', 'two'][sum(r['rank_correlation_ci_low'] >= 0.7 for r in met)]}") in flat
    resnet = json.loads((root / "experiments/results/proxy_lfw_resnet20.json").read_text())
    unresolved = sum(r["truth_beyond_null_ci_low"] <= 0 for r in resnet["rows"] if r["proxy"] == "laplace")
    assert f"not resolved above random-label ones in {unresolved} of 8 units" in flat
    digits = json.loads((root / "experiments/results/proxy_digits.json").read_text())
    ig = [r for r in digits["rows"] if r["proxy"] == "laplace" and r["method"] == "integrated_gradients"]
    low = min(min(r["truth_agreement"], r["null_agreement"]) for r in ig)
    high = max(max(r["truth_agreement"], r["null_agreement"]) for r in ig)
    assert f"Integrated Gradients agrees at {low:.2f}–{high:.2f} between retrained models" in flat
    assert not any(r["truth_beyond_null_ci_low"] > 0 for r in digits["rows"] if r["proxy"] == "laplace")
    import statistics
    early, late, worth, spawned_above = [], [], [], []
    for arch in ("small_cnn", "resnet20"):
        closest = {r["proxy"]: r for r in json.loads(
            (root / f"experiments/results/proxy_lfw_{arch}.json").read_text())["closest_any_cost"]}
        early += [closest[f"spawn@{t}"]["mean_abs_difference"] for t in (0, 10)]
        late += [closest[f"spawn@{t}"]["mean_abs_difference"] for t in (20, 30, 35)]
        rows = json.loads((root / f"experiments/results/proxy_worth_lfw_{arch}.json").read_text())["rows"]
        worth += [statistics.median(r["worth"] for r in rows if r["proxy"] == f"spawn@{t}") for t in (0, 10)]
        parent = {(r["method"], r["grouping"]): r["worth"] for r in rows if r["proxy"] == "parent"}
        spawned_above += [sum(r["worth_ci_low"] > parent[(r["method"], r["grouping"])] for r in rows
                              if r["proxy"] == f"spawn@{t}") for t in (0, 10)]
    medians = []
    for calibration_file, worth_file in proxy_tables.SETTINGS.values():
        calibration = json.loads((root / "experiments/results" / calibration_file).read_text())
        rows = json.loads((root / "experiments/results" / worth_file).read_text())["rows"]
        medians += [statistics.median(r["worth"] for r in rows if r["proxy"] == name)
                    for name, cost in calibration["proxies"].items() if cost["cost_share"] <= 0.2]
    for calibration_file, _ in proxy_tables.SETTINGS.values():
        calibration = json.loads((root / "experiments/results" / calibration_file).read_text())
        assert all(r["difference"] > 0 for r in calibration["rows"] if r["cost_share"] <= 0.2)
    assert "In every unit the variants of every proxy within 20 % of a run agree more than retrained" in flat
    assert f"costs at most 20 % of a training run are worth at most {max(medians):.1f} retrained models" in flat
    timed = {"finetune": [], "swag": []}
    for calibration_file, _ in proxy_tables.SETTINGS.values():
        proxies = json.loads((root / "experiments/results" / calibration_file).read_text())["proxies"]
        timed["finetune"] += [proxies[name]["seconds_share"] for name in ("finetune", "bootstrap_finetune")]
        timed["swag"].append(proxies["swag"]["seconds_share"])
    assert (f"the fine-tuned copies took {min(timed['finetune']):.2f}–{max(timed['finetune']):.2f} of a training "
            f"run's seconds") in flat
    assert f"and SWAG {min(timed['swag']):.2f}–{max(timed['swag']):.2f}." in flat
    parents, above = [], []
    for calibration_file, worth_file in proxy_tables.SETTINGS.values():
        calibration = json.loads((root / "experiments/results" / calibration_file).read_text())
        rows = json.loads((root / "experiments/results" / worth_file).read_text())["rows"]
        parent = {(r["method"], r["grouping"]): r["worth"] for r in rows if r["proxy"] == "parent"}
        parents.append(statistics.median(parent.values()))
        above += [sum(r["worth_ci_low"] > parent[(r["method"], r["grouping"])] for r in rows if r["proxy"] == name)
                  for name, cost in calibration["proxies"].items() if cost["cost_share"] <= 0.2]
    assert f"against {min(parents):.1f}–{max(parents):.1f} for the parent itself explained 8 times" in flat
    assert f"lies wholly above the parent's worth in at most {max(above)} of the 8 units of any setting" in flat
    assert f"come within {min(early):.2f}–{max(early):.2f} of the truth" in flat
    assert f"worth {min(worth):.1f}–{max(worth):.1f} retrained models (medians" in flat
    assert f"above the parent's worth in {min(spawned_above)}–{max(spawned_above)} of 8 units" in flat
    assert f"later are {min(late):.2f}–{max(late):.2f} off" in flat
    for calibration_file, worth_file in proxy_tables.SETTINGS.values():
        calibration = json.loads((root / "experiments/results" / calibration_file).read_text())
        assert calibration["k_truth"] == 32 and calibration["k_null"] == 4 and "dropout" in calibration["refused"]
        assert calibration["config"]["proxy"]["k"] == 8 and calibration["config"]["proxy"]["spawn_k"] == 4
        worth = json.loads((root / "experiments/results" / worth_file).read_text())
        assert {r["k_reference"] for r in worth["rows"]} == {16}
    assert ("32 models that differ only in their seed are the truth (model 0, the variants' parent, among them), "
            "8 variants of model 0 per proxy (4 children per spawn epoch)") in flat
    assert "4 random-label models are the null" in flat and "comes as close to the mean map of 16 other" in flat


def test_the_readmes_check_of_the_estimate_on_the_default_models_is_the_committed_run():
    """The README's paragraph on the estimate beside the default report's retrained models,
    recomputed from experiments/results/proxy_in_report.json."""
    import json

    root = Path(__file__).resolve().parents[1]
    readme = " ".join((root / "README.md").read_text().split())
    result = json.loads((root / "experiments/results/proxy_in_report.json").read_text())
    estimate = result["proxy_estimate"]
    rows = [r for r in estimate["rows"] if "measured" in r]
    assert estimate["measured_set"] == "control" and estimate["measured_varies"] == "seed"
    assert {r["measured_k"] for r in rows} == {3} and "the report's three control models" in readme

    def errors(proxy):
        return [abs(r["error"]) for r in rows if r["proxy"] == proxy]

    finetune, laplace = errors("finetune"), errors("laplace")
    assert (f"Fine-tuned copies' corrected estimate is off by {sum(finetune) / len(finetune):.3f} on average (largest "
            f"{max(finetune):.3f}, {sum(e <= 0.05 for e in finetune)} of {len(finetune)} method × grouping units within "
            "±0.05)") in readme
    assert (f"Laplace's by {sum(laplace) / len(laplace):.3f} (largest {max(laplace):.3f}, "
            f"{sum(e <= 0.05 for e in laplace)} of {len(laplace)})") in readme
    assert (f"inside the estimate's interval in {sum(r['measured_inside'] for r in rows)} of the {len(rows)} method × "
            "grouping × proxy rows") in readme
    half = [r["predicted_half_width"] for r in rows]
    measured = [(r["measured_ci_high"] - r["measured_ci_low"]) / 2 for r in rows]
    assert f"(half-widths {min(half):.2f}–{max(half):.2f} before clipping" in readme
    assert f"has its own ({min(measured):.2f}–{max(measured):.2f})" in readme


def test_the_consensus_pages_random_label_numbers_are_the_committed_experiment():
    """docs/consensus.md's paragraph on the random-label reference, recomputed from
    experiments/results/consensus_random_label.json."""
    import json

    root = Path(__file__).resolve().parents[1]
    page = " ".join((root / "docs/consensus.md").read_text().split())
    result = json.loads((root / "experiments/results/consensus_random_label.json").read_text())
    units = result["units"]
    accuracy = [m["test_acc"] for m in result["models"] if m["set"] == "random_label"]
    assert f"(test accuracy {100 * min(accuracy):.1f}–{100 * max(accuracy):.1f} %)" in page
    trained = [m["test_acc"] for m in result["models"] if m["set"] == "main"]
    assert f"test accuracy {100 * min(trained):.1f}–{100 * max(trained):.1f} %)," in page and len(trained) == 19
    assert result["n_images"] == 24 and "24 test images" in page
    two = [t for u in units for t in u["tests"] if t["test"] != "rank-sum"]
    pool = [c for u in units for c in u["calibration"] if c["null"] == "pool"]
    two_pool = [c for c in pool if c["test"] != "rank-sum"]
    assert (f"observed FDR is {min(c['fdr'] for c in two_pool):.3f}–{max(c['fdr'] for c in two_pool):.3f} over the "
            f"14 units (upper ends ≤ {max(c['fdr_high'] for c in two_pool):.3f})") in page
    permuted = [c for u in units for c in u["calibration"] if c["null"] == "permuted" and c["test"] != "rank-sum"]
    assert (f"{min(c['fdr'] for c in permuted):.3f}–{max(c['fdr'] for c in permuted):.3f} (upper ends ≤ "
            f"{max(c['fdr_high'] for c in permuted):.3f})") in page
    rank_sum = [c["fdr"] for c in pool if c["test"] == "rank-sum"]
    assert f"finds regions in {100 * min(rank_sum):.0f}–{100 * max(rank_sum):.0f} % of the images" in page
    best = max(two, key=lambda t: t["power"])
    assert (f"trained vs random-label: {min(t['power'] for t in two):.2f}–{best['power']:.2f} (best: SmoothGrad on "
            f"pixel blocks, {best['power']:.2f} [{best['power_low']:.2f}, {best['power_high']:.2f}])") in page
    assert best["method"] == "smoothgrad" and best["grouping"] == "pixel"
    assert f"on the object lie {min(t['on_object'] for t in two):.2f}–{max(t['on_object'] for t in two):.2f}" in page
    assert "so its power is not compared with that run's 0.21–0.63 unit by unit here" in page
