"""Rewrite the measured tables of the documentation's performance page from the committed
benchmark results (``benchmarks/results/*.json``), so the page cannot drift from the numbers:

    python analysis/performance_page.py [docs/performance.md]

Each table sits between ``<!-- benchmark:<name> -->`` and ``<!-- /benchmark:<name> -->`` markers
and names the file it was made from; ``tests/test_analysis.py`` checks that the committed page
equals what this script writes.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _number(value, digits: int = 2, scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return f"{value * scale:,.{digits}f}".replace(",", " ")


def _table(header: list[str], rows: list[list[str]], source: str) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + f"\n\n*From `{source}`.*"


def gradient_table(name: str = "gradient") -> str:
    """The gradient methods of one ``benchmarks/bench_gradient.py`` result: time, ratio to the floor,
    Captum at its defaults, counter streams and the grouping's overhead."""
    result = _load(name)
    rows = []
    for m in result["methods"]:
        counter = m["other_streams_s"] / m["floor_s"] if m.get("other_streams") else None
        rows.append([m["method"], f"{m['passes']:,}".replace(",", " "), _number(m["floor_s"], 3),
                     _number(m["stablesal_s"], 3), _number(m["ratio_to_floor"]), _number(counter),
                     _number(m.get("captum_s"), 3), _number(m.get("captum_over_stablesal")),
                     f"{m['grouping_overhead_pct']:+.1f} %"])
    # the partition the grouped run used: the first segmenter the benchmark timed at the run's image size
    segmenter = next((s["segmenter"].split("(")[0] for s in result.get("segmenters", []) if s["size"] == result["size"]),
                     "fastslic")
    header = ["method", "passes", "floor (s)", "stablesal (s)", "ratio to floor", "counter streams ÷ floor",
              "Captum at its defaults (s)", "Captum ÷ stablesal", f"grouped ({segmenter})"]
    return _table(header, rows, f"benchmarks/results/{name}.json") + (
        f" {result['arch']} on {result['device']}, {result['images']} images of {result['size']} px, "
        f"{result['samples']} samples or steps, {result['threads']} threads, torch {result['torch']}.")


def perturbation_table() -> str:
    runs = {name: _load(name) for name in ("perturbation_32", "perturbation_224", "perturbation_32_cuda",
                                            "perturbation_224_cuda")}
    presets = list(runs["perturbation_32"]["presets"])
    rows = []
    for preset in presets:
        row = [preset]
        for name in ("perturbation_32", "perturbation_224"):
            entry = (runs[name] or {}).get("presets", {}).get(preset, {})
            row += [str(entry.get("forwards", "–")), _number(entry.get("ratio_to_floor")),
                    _number(entry.get("captum_over_stablesal"))]
        for name in ("perturbation_32_cuda", "perturbation_224_cuda"):
            entry = (runs[name] or {}).get("presets", {}).get(preset, {})
            row.append(_number(entry.get("ratio_to_floor")))
        rows.append(row)
    header = ["preset", "passes, 32 px", "÷ floor, 32 px", "Captum ÷ stablesal, 32 px", "passes, 224 px",
              "÷ floor, 224 px", "Captum ÷ stablesal, 224 px", "÷ floor, GPU 32 px", "÷ floor, GPU 224 px"]
    gpu = (runs["perturbation_32_cuda"] or {}).get("device", "no GPU run")
    return _table(header, rows, "benchmarks/results/perturbation_{32,224}[_cuda].json") + f" GPU: {gpu}."


def metrics_table() -> str:
    result = _load("metrics")
    rows = [[name, f"{_number(m['seconds']['stablesal'], 1, 1000)} ms", f"{_number(m['seconds']['plain_torch_loop'], 1, 1000)} ms",
             f"{_number(m['seconds']['quantus'], 1, 1000)} ms", f"{_number(m['quantus_over_stablesal'], 1)}×",
             _number(m["max_abs_difference_quantus"], 1)]
            for name, m in result["models"].items()]
    header = ["model", "stablesal", "plain per-step torch loop", f"Quantus {result['quantus']} PixelFlipping",
              "Quantus ÷ stablesal", "max. abs. difference to Quantus"]
    return _table(header, rows, "benchmarks/results/metrics.json") + (
        f" {result['images']} images of {result['size']} px, {result['channels']} channel, {result['steps']} steps.")


def inpainting_table() -> str:
    result = _load("inpainting")
    sizes = list(result["sizes"])
    names = list(result["sizes"][sizes[0]]["inpainters"])
    rows = []
    for name in names:
        row = [name]
        for size in sizes:
            entry = result["sizes"][size]["inpainters"].get(name, {})
            row += [_number(entry.get("ms_per_image")), _number(entry.get("ratio_to_floor"))]
        rows.append(row)
    header = ["inpainter"] + [part for size in sizes for part in (f"{size} px, ms / image", "÷ floor")]
    return _table(header, rows, "benchmarks/results/inpainting.json") + f" OpenCV {result['opencv']}."


def page_table() -> str:
    result = _load("page")
    rows = [[row["page"], str(row["width_px"]), f"{row['bytes'] / 1e6:.2f} MB", f"{row['load_ms_median']:.0f} ms",
             f"{row['browser_call_s_median']:.2f} s", row["check"].replace(";", "; ")] for row in result["rows"]]
    header = ["page", "width (px)", "weight", "load (Navigation Timing, median)", "whole browser call (median)",
              "the page's own check"]
    return _table(header, rows, "benchmarks/results/page.json") + (
        f" {result['browser']}, headless, {result['repeats']} loads each; the page of `{result['report']}`.")


def segmenter_table(name: str = "gradient") -> str:
    """Segmentation time per image of the partitions a gradient benchmark timed."""
    result = _load(name)
    rows = [[s["segmenter"], str(s["size"]), _number(s["ms_per_image"])] for s in result["segmenters"]]
    return _table(["segmenter", "image side (px)", "ms per image"], rows, f"benchmarks/results/{name}.json")


def whole_runs_table() -> str:
    result = _load("whole_runs")
    report = json.loads((ROOT / "experiments" / "results" / "default.json").read_text())
    timings = report["timings_s"]
    rows = [[f"`{run['command']}`", f"{run['wall_s'] // 60:.0f} min {run['wall_s'] % 60:.0f} s",
             f"{run['inside_report_s']:.0f} s"] for run in result["runs"]]
    stages = [[stage, f"{seconds:.0f} s", f"{100 * seconds / timings['total']:.0f} %"]
              for stage, seconds in sorted(timings.items(), key=lambda item: -item[1]) if stage != "total"]
    return (_table(["command", "wall clock, fresh clone", "inside the report"], rows,
                   "benchmarks/results/whole_runs.json") + " " + result["what"] + ".\n\n"
            + _table(["stage of `make report`", "seconds", "share of the report"], stages,
                     "experiments/results/default.json, timings_s"))


def study_224_table() -> str:
    result = _load("study_224")
    rows = [[run["fidelity"], f"{run['seconds']:.0f} s",
             ", ".join(f"{m} {s:.1f} s" for m, s in run["explain_seconds_per_model"].items())] for run in result["runs"]]
    return _table(["[gradient] fidelity", "whole study", "explaining, per model"], rows,
                  "benchmarks/results/study_224.json") + (
        f" {result['models']}, {result['images']} images, {', '.join(result['methods'])} × "
        f"{', '.join(result['groupings'])}, {result['torch_threads']} threads.")


def training_table() -> str:
    result = _load("training")
    rows = [[layout, f"{ms:.1f} ms"] for layout, ms in result["ms_per_step"].items()]
    return _table(["memory format", "per training step"], rows, "benchmarks/results/training.json") + (
        f" Batch {result['batch']} of {result['size']} px, {result['threads']} threads; channels-last ÷ contiguous "
        f"{result['ratio_to_floor']:.2f}.")


def memory_table() -> str:
    rows = [[m["arch"], str(m["images"]), str(m["samples"]), str(m["threads"]), f"{m['rss_before_mib']} MiB",
             f"{m['peak_rss_mib']} MiB"] for m in _load("memory_224")]
    return _table(["model (224 px)", "images", "SmoothGrad samples", "threads", "before explaining", "peak"], rows,
                  "benchmarks/results/memory_224.json")


def consensus_table() -> str:
    r = _load("consensus")
    rows = [["stablesal (permutation p-values and Benjamini–Hochberg)", f"{r['stablesal_s']:.2f} s", "1"],
            ["floor (the same relabellings as one matrix product)", f"{r['floor_s']:.2f} s",
             f"{r['floor_s'] / r['stablesal_s']:.2f}"],
            ["SciPy permutation_test (scaled from a tenth)", f"{r['scipy_s_scaled']:.1f} s",
             f"{r['scipy_s_scaled'] / r['stablesal_s']:.0f}"],
            ["exact rank-sum test", f"{r['rank_sum_exact_s']:.3f} s", f"{r['rank_sum_exact_s'] / r['stablesal_s']:.3f}"]]
    return _table(["implementation", "time", "÷ stablesal"], rows, "benchmarks/results/consensus.json") + (
        f" {r['images']} images × {r['regions']} regions, {r['models']} vs {r['reference_models']} models, "
        f"{r['permutations']:,} permutations; largest p-value difference to SciPy "
        f"{r['max_abs_difference_to_scipy']:.3f} (both are Monte Carlo).".replace("0,0", "0 0"))


def executor_table() -> str:
    r = _load("executor")
    rows = [[name, f"{r['training_s'][name]:.1f} s", f"{r['overhead_ms_per_unit'][name]:.2f} ms"]
            for name in r["training_s"]]
    return _table(["executor", f"training {r['seeds']} seeds × {r['epochs']} epochs", "overhead per small unit"], rows,
                  "benchmarks/results/executor.json") + f" {r['n_train']} training images, {r['cores']} cores."


GRADIENT_RESULTS = ("gradient", "gradient_224_torchvision_resnet18_cpu", "gradient_224_resnet18_cpu",
                    "gradient_cuda_h100_small_cnn", "gradient_cuda_h100_resnet20")
TABLES = {"whole_runs": whole_runs_table, "study_224": study_224_table, "training": training_table,
          "memory_224": memory_table, "consensus": consensus_table, "executor": executor_table,
          "segmenters": segmenter_table, "segmenters_224": lambda: segmenter_table("gradient_224_torchvision_resnet18_cpu"),
          "page": page_table, **{name: (lambda name=name: gradient_table(name)) for name in GRADIENT_RESULTS},
          "perturbation": perturbation_table, "metrics": metrics_table, "inpainting": inpainting_table}
BLOCK = re.compile(r"(<!-- benchmark:(\w+) -->\n)(.*?)(\n<!-- /benchmark:\2 -->)", re.S)


def with_tables(page: str) -> str:
    """``page`` with every marked table rewritten from the benchmark results."""
    return BLOCK.sub(lambda m: m.group(1) + TABLES[m.group(2)]() + m.group(4), page)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", nargs="?", default=str(ROOT / "docs" / "performance.md"))
    page = Path(parser.parse_args().page)
    page.write_text(with_tables(page.read_text()))
    print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
