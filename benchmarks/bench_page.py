"""The report page in a real browser: its weight, and how long headless Chromium takes to load it
at a desktop (1280 px) and a phone (390 px) width, from the page's own Navigation Timing entry
(``loadEventEnd``, read just after the load event and written to ``data-load-ms`` by the page's
load check) and as the wall-clock time
of the whole browser call. The page is the quick report's unless ``--report`` names a folder.

There is no peer to compare with: Captum retired its interactive explorer (Insights) in 0.9, and
Quantus has no page. The floor is an empty page with the same content policy.

    python benchmarks/bench_page.py [--report reports/quick] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stablesal.report.html import render_page  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
WIDTHS = (1280, 390)


def load(browser: str, page: Path, width: int, profile: Path) -> tuple[float, float, str]:
    """(load ms from the page, wall seconds of the browser call, the page's self-check)."""
    start = time.perf_counter()
    dom = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},900",
                          "--dump-dom", page.resolve().as_uri()], capture_output=True, text=True, timeout=300).stdout
    wall = time.perf_counter() - start
    found = re.search(r'data-load-ms="(-?\d+)"', dom)
    check = re.search(r'data-check="([^"]*)"', dom)
    return float(found.group(1)) if found else float("nan"), wall, check.group(1) if check else "no check"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", default="", help="a report folder (default: a fresh `stablesal report --quick`)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "page.json"))
    args = parser.parse_args(argv)
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        print("no chromium: nothing measured", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        report = Path(args.report) if args.report else None
        if report is None:
            subprocess.run([sys.executable, "-m", "stablesal.cli", "report", "--quick", "-q", "--out",
                            str(scratch / "reports"), "--runs", str(scratch / "runs")], check=True)
            report = scratch / "reports" / "quick"
        page = report / "index.html"
        floor = scratch / "floor.html"
        floor.write_text(render_page("floor", "", []))
        rows = []
        for width in WIDTHS:
            for name, target in (("report page", page), ("empty page (floor)", floor)):
                runs = [load(browser, target, width, scratch / "profile") for _ in range(args.repeats)]
                rows.append({"page": name, "width_px": width, "bytes": target.stat().st_size,
                             "load_ms_median": statistics.median(r[0] for r in runs),
                             "browser_call_s_median": round(statistics.median(r[1] for r in runs), 3),
                             "check": runs[0][2]})
                print(rows[-1])
    version = subprocess.run([browser, "--version"], capture_output=True, text=True).stdout.strip()
    result = {"machine": platform.machine(), "browser": version, "repeats": args.repeats,
              "report": "stablesal report --quick" if not args.report else args.report, "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
