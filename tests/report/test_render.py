"""Tests of :mod:`stablesal.report.render`: the page rebuilt from a report folder alone, and the
quick report's page in a real headless browser."""

import re
import shutil
import subprocess

import pytest

from stablesal.cli import main

from tests.helpers.chromium import FLAGS, _chromium


def _without_images(page: str) -> str:
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "IMAGE", page)


def test_render_rebuilds_the_page_from_the_results_folder_alone(quick_report, tmp_path):
    """A copy of the report folder, with no model, cache or dataset anywhere near it, renders the
    same page: every reading, table and caption, and as many figures."""
    copy = tmp_path / "copy"
    shutil.copytree(quick_report, copy)
    original = (copy / "index.html").read_text()
    (copy / "index.html").unlink()
    for figure in ("stability_main", "timing", "factor_effects"):  # figures drawn from rows are redrawn
        (copy / "figures" / f"{figure}.png").unlink()
    assert main(["render", str(copy)]) == 0
    rebuilt = (copy / "index.html").read_text()
    assert _without_images(rebuilt) == _without_images(original)
    assert rebuilt.count("data:image/png;base64,") == original.count("data:image/png;base64,") > 10
    assert (copy / "figures" / "stability_main.png").exists()


def test_render_of_a_folder_without_results_names_it(tmp_path, capsys):
    assert main(["render", str(tmp_path)]) == 2
    assert "results.json does not exist" in capsys.readouterr().err


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (make installs it where apt-get works)")
def test_page_renders_in_chromium(quick_report, tmp_path):
    url = (quick_report / "index.html").resolve().as_uri()
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([_chromium(), *FLAGS, *profile, "--window-size=1280,900", "--virtual-time-budget=5000",
                          "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    check = re.search(r'data-check="([^"]*)"', dom)
    assert check is not None, "the page's load handler did not run"
    assert check.group(1) == "images-broken=0;overflow=false"
    shot = tmp_path / "page.png"
    subprocess.run([_chromium(), *FLAGS, *profile, "--window-size=1280,2400", f"--screenshot={shot}", url],
                   capture_output=True, timeout=120)
    assert shot.stat().st_size > 20_000
    pdf = tmp_path / "page.pdf"
    subprocess.run([_chromium(), *FLAGS, *profile, f"--print-to-pdf={pdf}", "--no-pdf-header-footer", url],
                   capture_output=True, timeout=120)
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 50_000
