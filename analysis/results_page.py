"""Write the documentation's results page from a committed report's ``results.json``:

    python analysis/results_page.py [experiments/results/default.json] [docs/results.md]

The page is every section of the report page in Markdown (:mod:`stablesal.report.markdown`),
figures linked from ``figures/`` (where the built-in report copies them). The README's headline
block (between ``<!-- results:headline -->`` markers) is rewritten from the same file.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stablesal.pipeline.run import terminal_summary  # noqa: E402
from stablesal.report.markdown import results_markdown  # noqa: E402

HEADLINE = re.compile(r"(<!-- results:headline -->\n)(.*?)(<!-- /results:headline -->)", re.S)


def headline_block(results: dict, top: int = 8) -> str:
    """The README's headline: the report's first rows as the terminal prints them, in a code block."""
    return "```text\n" + terminal_summary(results, top=top).rstrip() + "\n```\n"


def with_headline(readme: str, results: dict) -> str:
    """``readme`` with its headline block rewritten from ``results`` (unchanged when it has none)."""
    return HEADLINE.sub(lambda m: m.group(1) + headline_block(results) + m.group(3), readme)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default="experiments/results/default.json")
    parser.add_argument("page", nargs="?", default="docs/results.md")
    parser.add_argument("--readme", default="README.md")
    args = parser.parse_args()
    results = json.loads(Path(args.results).read_text())
    page = results_markdown(results, Path(args.results).parent, source=args.results)
    Path(args.page).write_text(page)
    readme = Path(args.readme)
    readme.write_text(with_headline(readme.read_text(), results))
    print(f"wrote {args.page} ({len(page.splitlines())} lines) and the headline of {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
