"""Compare stability reports: load several ``results.json`` files (e.g. the built-in dataset vs
CIFAR-10, or two architectures), draw the comparison figure and print Markdown tables.

    python analysis/compare.py reports/default/results.json [reports/cifar10/results.json ...]
        [--out figures/comparison] [--paper]

``--paper`` adds the SUPERPIXEL paper's CIFAR-10 numbers (SSIM %, pixel → super-pixel, from the
authors' review-stage material) as one more "report" to set ours beside.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stablesal.report.figures import plt, save_figure  # noqa: E402

# SSIM (%) between maps of two CIFAR-10 models trained on disjoint data (Gong et al., BMVC 2024)
PAPER_SSIM = {
    "saliency": (31.2, 51.7), "integrated_gradients": (40.4, 55.0),
    "smoothgrad": (39.7, 72.1), "sparsified_smoothgrad": (54.8, 60.5),
}


def load(paths: list[str]) -> dict[str, dict]:
    reports = {}
    for path in paths:
        results = json.loads(Path(path).read_text())
        name = results["config"]["report"]["name"]
        reports[name] = results
    return reports


def pixel_vs_grouped(results: dict, grouping: str = "fastslic", model_set: str = "main") -> dict[str, tuple]:
    """method → (pixel SSIM, grouped SSIM, pixel Spearman, grouped Spearman)."""
    rows = {(r["method"], r["grouping"]): r for r in results["stability_summary"] if r["model_set"] == model_set}
    out = {}
    for (method, group), row in rows.items():
        if group == "pixel" and (method, grouping) in rows:
            other = rows[(method, grouping)]
            out[method] = (row["ssim"], other["ssim"], row["spearman"], other["spearman"])
    return out


def markdown_table(reports: dict[str, dict], grouping: str, paper: bool) -> str:
    lines = ["| method | " + " | ".join(f"{n}: SSIM pixel → {grouping}" for n in reports)
             + (" | paper (CIFAR-10): SSIM pixel → super-pixel" if paper else "")
             + " | " + " | ".join(f"{n}: Spearman pixel → {grouping}" for n in reports) + " |"]
    lines.append("|" + "---|" * (1 + 2 * len(reports) + paper))
    tables = {name: pixel_vs_grouped(results, grouping) for name, results in reports.items()}
    methods = list(dict.fromkeys(m for table in tables.values() for m in table))
    for method in methods:
        cells = [f"{100 * t[method][0]:.1f} → {100 * t[method][1]:.1f}" if method in t else "" for t in tables.values()]
        if paper:
            cells.append("{:.1f} → {:.1f}".format(*PAPER_SSIM[method]) if method in PAPER_SSIM else "")
        cells += [f"{t[method][2]:.2f} → {t[method][3]:.2f}" if method in t else "" for t in tables.values()]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_figure(reports: dict[str, dict], grouping: str, paper: bool, path_stem) -> Path:
    series = {name: pixel_vs_grouped(results, grouping) for name, results in reports.items()}
    if paper:
        series["paper (CIFAR-10)"] = {m: (a / 100, b / 100, float("nan"), float("nan")) for m, (a, b) in PAPER_SSIM.items()}
    methods = list(dict.fromkeys(m for table in series.values() for m in table))
    fig, axis = plt.subplots(figsize=(1.0 + 1.1 * len(methods), 3.0))
    width = 0.8 / max(len(series), 1)
    for index, (name, table) in enumerate(series.items()):
        x = [i + (index - (len(series) - 1) / 2) * width for i in range(len(methods))]
        pixel = [table.get(m, (float("nan"),) * 4)[0] for m in methods]
        grouped = [table.get(m, (float("nan"),) * 4)[1] for m in methods]
        axis.bar(x, grouped, width, alpha=0.45, color=plt.cm.tab10.colors[index % 10])
        axis.bar(x, pixel, width * 0.5, label=name, color=plt.cm.tab10.colors[index % 10])
    axis.set_xticks(range(len(methods)), methods, rotation=30, ha="right", fontsize=7)
    axis.set_ylabel(f"cross-seed SSIM (narrow: pixel, wide: {grouping})")
    axis.legend(fontsize=7, frameon=False)
    return save_figure(fig, path_stem)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="results.json files of stablesal reports")
    parser.add_argument("--grouping", default="fastslic")
    parser.add_argument("--paper", action="store_true", help="add the SUPERPIXEL paper's CIFAR-10 numbers")
    parser.add_argument("--out", default="figures/comparison")
    args = parser.parse_args()
    reports = load(args.results)
    print(markdown_table(reports, args.grouping, args.paper))
    print(f"figure: {comparison_figure(reports, args.grouping, args.paper, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
