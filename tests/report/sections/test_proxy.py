"""The "Without retraining" section: its reading counts what its rows say, by hand-built rows."""

from stablesal.report.sections.proxy import estimate_reading, without_retraining


def _row(method, predicted, measured, half=0.1, measured_half=0.2):
    return {"method": method, "grouping": "pixel", "proxy": "laplace", "k_variants": 8,
            "proxy_agreement": predicted + 0.1, "proxy_agreement_ci_low": predicted, "proxy_agreement_ci_high": predicted + 0.2,
            "predicted_cross_seed_agreement": predicted, "predicted_cross_seed_agreement_ci_low": predicted - half,
            "predicted_cross_seed_agreement_ci_high": predicted + half, "measured": measured,
            "measured_ci_low": measured - measured_half, "measured_ci_high": measured + measured_half, "measured_k": 4,
            "error": predicted - measured,
            "measured_inside": predicted - half <= measured <= predicted + half}


def test_the_reading_counts_the_units_inside_and_the_errors():
    rows = [_row("saliency", 0.5, 0.45), _row("smoothgrad", 0.6, 0.3), {"method": "vargrad", "grouping": "pixel",
                                                                         "proxy": "laplace", "refused": "not calibrated"}]
    reading = estimate_reading({"rows": rows, "evidence": "a calibration", "measured_set": "main",
                                "measured_varies": "seed"})
    assert "inside the estimate's interval in 1 of 2 method × grouping × proxy rows" in reading
    assert "over-estimates the measurement, by 0.17 on average (largest 0.30)" in reading
    assert "±0.10 for the estimate, ±0.20 for the measurement" in reading
    assert "the 4 main models." in reading and "1 units are not calibrated" in reading
    control = estimate_reading({"rows": rows, "evidence": "e", "measured_set": "control", "measured_varies": "seed"})
    assert "the 4 control models (model 0's data split, other seeds" in control
    both = estimate_reading({"rows": rows, "evidence": "e", "measured_set": "main", "measured_varies": "both"})
    assert "the 4 main models (they vary both; the calibration's truth varies only the seed)" in both
    mixed = estimate_reading({"rows": [_row("saliency", 0.5, 0.55), _row("smoothgrad", 0.6, 0.3)], "evidence": "e"})
    assert "errs in both directions on the measurement" in mixed and "in 1 of 2 method × grouping × proxy rows" in mixed


def test_without_a_measured_unit_or_with_a_refusal_the_section_says_why(tmp_path):
    nothing = estimate_reading({"rows": [{"method": "m", "grouping": "g", "proxy": "p", "refused": "x"}], "evidence": ""})
    assert nothing.startswith("An estimate needs a calibrated method × grouping") and "1 units not calibrated" in nothing
    section = without_retraining({"proxy_estimate": {"refused": "[data] images of 3 × 16 px: no.", "rows": []}},
                                 tmp_path)
    assert section.reading == "Left out: [data] images of 3 × 16 px: no." and not section.figures
    assert without_retraining({"proxy_estimate": None}, tmp_path) is None
