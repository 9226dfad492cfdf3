"""Compare two reports' ``results.json``: every numeric leaf equal within a tolerance.

    python analysis/compare_results.py BEFORE/results.json AFTER/results.json [--tolerance 1e-6]

Leaves under ``timings_s``, ``environment`` and ``figures`` (file lists), wall-clock times (keys
naming seconds or ``ms_per_*``) and path-like strings are ignored; other strings, booleans and the structure (keys, list lengths) must match. Prints the
number of numeric leaves compared and every difference; exit status 1 on any difference."""

from __future__ import annotations

import argparse
import json
import math
import sys

IGNORED_KEYS = {"timings_s", "environment", "figures"}


def is_timing(key: str) -> bool:
    """Wall-clock measurements (``seconds``, ``explain_seconds_per_model``, ``ms_per_image``, ...):
    they differ between any two runs and are no result."""
    return "seconds" in key or key.startswith("ms_per_")


def walk(a, b, path: str, out: dict) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key in IGNORED_KEYS or is_timing(str(key)):
                continue
            if key not in a or key not in b:
                out["differences"].append(f"{path}/{key}: only in {'after' if key not in a else 'before'}")
                continue
            walk(a[key], b[key], f"{path}/{key}", out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out["differences"].append(f"{path}: lengths {len(a)} != {len(b)}")
            return
        for index, (x, y) in enumerate(zip(a, b)):
            walk(x, y, f"{path}[{index}]", out)
    elif isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str) or a is None or b is None:
        if a != b and not (isinstance(a, str) and isinstance(b, str) and ("/" in a or "/" in b)):
            out["differences"].append(f"{path}: {a!r} != {b!r}")
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)):
        out["numeric"] += 1
        if math.isnan(a) and math.isnan(b):
            return
        if not abs(a - b) <= out["tolerance"]:
            out["differences"].append(f"{path}: {a!r} != {b!r}")
    else:
        out["differences"].append(f"{path}: {type(a).__name__} vs {type(b).__name__}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--tolerance", type=float, default=1e-6)
    args = parser.parse_args(argv)
    with open(args.before) as f, open(args.after) as g:
        before, after = json.load(f), json.load(g)
    out = {"numeric": 0, "differences": [], "tolerance": args.tolerance}
    walk(before, after, "", out)
    for line in out["differences"]:
        print(line)
    print(f"{out['numeric']} numeric leaves compared, {len(out['differences'])} differences "
          f"(tolerance {args.tolerance:g})")
    return 1 if out["differences"] else 0


if __name__ == "__main__":
    sys.exit(main())
