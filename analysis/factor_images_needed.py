"""How many images the factor study needs before its η² intervals resolve the orderings: re-analyse
the first n images of a factor-study run for growing n and print, per design, which orderings of
the factors are resolved (95 % bootstrap interval of the η² difference excludes 0).

    python analysis/factor_images_needed.py reports/factor-study/results.json [--sizes 4 8 16 32 48]

The JSON is the ``results.json`` that ``stablesal factor-study`` (or a report) writes: its
``factor_study.rows`` hold the per-image scores (a file of the earlier shape, with ``rows`` at the
top, is read too). Subsets are the
first n images of the run (the images are a fixed random draw of the test set, so the first n
are a random subset too).
"""

from __future__ import annotations

import argparse
import json

from stablesal.studies.factors.effects import analyse, resolved_orderings


def subset(rows: list[dict], count: int) -> list[dict]:
    """The rows with every per-image list cut to its first ``count`` images."""
    return [{k: (v[:count] if isinstance(v, list) else v) for k, v in row.items()} for row in rows]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16, 32, 48, 64])
    parser.add_argument("--n-boot", type=int, default=2000)
    args = parser.parse_args(argv)
    results = json.load(open(args.path))
    rows = results["factor_study"]["rows"] if "factor_study" in results else results["rows"]
    available = len(rows[0]["srg"])
    print(f"{available} images in the run\n")
    print("| images | design | resolved orderings (SRG) | not resolved |")
    print("|---|---|---|---|")
    for count in [n for n in args.sizes if n <= available]:
        analysis = analyse(subset(rows, count), n_boot=args.n_boot)
        for name, design in analysis["designs"].items():
            resolved, unresolved = resolved_orderings(design["orderings"])
            print(f"| {count} | {name} | " + (", ".join(f"{o['larger']} > {o['smaller']}" for o in resolved) or "–")
                  + " | " + (", ".join(f"{o['larger']} vs {o['smaller']}" for o in unresolved) or "–") + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
