"""Score a `make mutation` run: read mutmut's per-mutant exit codes (``mutants/**/*.meta``) and the
committed lists of equivalent mutants (``mutation/*.md``), print the kill rate over the
non-equivalent mutants and every survivor nobody has explained.

    python analysis/mutation_report.py [--mutants mutants] [--equivalent mutation]
        [--target 0.9]

Exit status 1 when the kill rate is below the target or a survivor is not listed as equivalent.
Exit codes as mutmut 3 reads them: 1 and 3 killed (a test failed), 36 and the SIGXCPU codes a
timeout (counted as killed), 37 caught by the type check, 0 survived, 5 and 33 no test reaches the
mutant (counted apart), None not run.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

KILLED = {1, 3, 36, 37, -24, 24, 152, 255}
NO_TESTS = {5, 33}


def load_exit_codes(mutants: Path) -> dict[str, int | None]:
    codes: dict[str, int | None] = {}
    for meta in sorted(mutants.rglob("*.meta")):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    return codes


def load_equivalent(path: Path) -> dict[str, str]:
    """``mutant key → reason`` from the lines ``- `key`: reason`` of the Markdown file, or of every
    Markdown file of a folder."""
    pattern = re.compile(r"^- `([^`]+)`: (.+)$")
    files = sorted(path.glob("*.md")) if path.is_dir() else [path] if path.exists() else []
    out = {}
    for file in files:
        for line in file.read_text().splitlines():
            match = pattern.match(line.strip())
            if match:
                out[match.group(1)] = match.group(2)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", default="mutants")
    parser.add_argument("--equivalent", default="mutation", help="a Markdown file or a folder of them")
    parser.add_argument("--target", type=float, default=0.9)
    args = parser.parse_args(argv)
    codes = load_exit_codes(Path(args.mutants))
    if not codes:
        print(f"no mutmut results under {args.mutants}; run `make mutation` first")
        return 1
    equivalent = load_equivalent(Path(args.equivalent))
    not_run = [k for k, c in codes.items() if c is None]
    no_tests = [k for k, c in codes.items() if c in NO_TESTS]
    survived = [k for k, c in codes.items() if c == 0]
    killed = [k for k, c in codes.items() if c in KILLED]
    suspicious = [k for k, c in codes.items() if c is not None and c != 0 and c not in KILLED | NO_TESTS]
    justified = [k for k in survived if k in equivalent]
    unexplained = [k for k in survived + suspicious if k not in equivalent]
    scored = len(killed) + len(unexplained)
    rate = len(killed) / scored if scored else float("nan")
    print(f"mutants: {len(codes)}; killed {len(killed)}; survived {len(survived)} "
          f"({len(justified)} listed as equivalent, {len(unexplained)} not); no test reaches {len(no_tests)}; "
          f"not run {len(not_run)}")
    print(f"kill rate over non-equivalent mutants: {rate:.1%} (target {args.target:.0%})")
    stale = sorted(set(equivalent) - set(codes))
    if stale:
        print(f"{len(stale)} listed equivalent mutants no longer exist (the code changed): " + ", ".join(stale[:10]))
    for key in unexplained:
        print(f"  survived: {key}")
    return 0 if rate >= args.target and not unexplained and not not_run else 1


if __name__ == "__main__":
    raise SystemExit(main())
