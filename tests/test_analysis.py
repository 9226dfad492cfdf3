import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))

import compare  # noqa: E402


def _results(name, ssim_pixel, ssim_grouped):
    rows = []
    for grouping, value in (("pixel", ssim_pixel), ("fastslic", ssim_grouped)):
        rows.append({"model_set": "main", "method": "saliency", "grouping": grouping, "ssim": value, "spearman": 0.5})
    return {"config": {"report": {"name": name}}, "stability_summary": rows}


def test_compare_several_reports(tmp_path):
    paths = []
    for name, a, b in (("shapes", 0.1, 0.3), ("cifar", 0.2, 0.25)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(_results(name, a, b)))
        paths.append(str(path))
    reports = compare.load(paths)
    table = compare.markdown_table(reports, "fastslic", paper=True)
    assert "10.0 → 30.0" in table and "20.0 → 25.0" in table and "31.2 → 51.7" in table
    figure = compare.comparison_figure(reports, "fastslic", True, tmp_path / "cmp")
    assert figure.exists() and figure.with_suffix(".pdf").exists()
