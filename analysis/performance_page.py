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


GRADIENT_RESULTS = ("gradient", "gradient_224_torchvision_resnet18_cpu", "gradient_224_resnet18_cpu",
                    "gradient_cuda_h100_small_cnn", "gradient_cuda_h100_resnet20")
TABLES = {"page": page_table, **{name: (lambda name=name: gradient_table(name)) for name in GRADIENT_RESULTS},
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
