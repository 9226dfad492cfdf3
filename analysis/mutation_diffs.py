"""Print what each unexplained surviving mutant changed: the lines of the mutated function that
differ from the original, read from mutmut 3's ``mutants/`` tree (a triage aid for
``mutation/equivalent.md``).

    python analysis/mutation_diffs.py [--mutants mutants] [--module stablesal.studies.folds.run]
"""

from __future__ import annotations

import argparse
import ast
import difflib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutation_report import load_equivalent, load_exit_codes  # noqa: E402


def function_sources(path: Path) -> dict[str, str]:
    """Every top-level and class-level function of a mutated file, by name."""
    text = path.read_text()
    tree = ast.parse(text)
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[node.name] = ast.get_source_segment(text, node)
    return out


def changed_lines(original: str, mutant: str) -> list[str]:
    diff = difflib.unified_diff(original.splitlines()[1:], mutant.splitlines()[1:], lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", default="mutants")
    parser.add_argument("--equivalent", default="mutation")
    parser.add_argument("--module", default=None, help="only mutants of this module (dotted name)")
    args = parser.parse_args(argv)
    root = Path(args.mutants)
    codes = load_exit_codes(root)
    listed = load_equivalent(Path(args.equivalent))
    survivors = sorted(k for k, c in codes.items() if c == 0 and k not in listed
                       and (args.module is None or k.startswith(args.module + ".")))
    cache: dict[str, dict[str, str]] = {}
    for key in survivors:
        module, _, mangled = key.rpartition(".")
        if module not in cache:
            cache[module] = function_sources(root / (module.replace(".", "/") + ".py"))
        name = mangled.rsplit("__mutmut_", 1)[0]
        original = cache[module].get(f"{name}__mutmut_orig")
        mutant = cache[module].get(mangled)
        print(f"== {key}")
        if original is None or mutant is None:
            print("   (function not found)")
            continue
        for line in changed_lines(original, mutant):
            print("   " + line.strip()[:200])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
