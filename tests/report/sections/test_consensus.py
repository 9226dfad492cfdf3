"""The consensus and planner readings are pure functions of result rows: checked on synthetic units."""

from stablesal.report.sections.consensus import calibration_reading, planner_reading, power_reading


def _unit(method, power_rank, power_two, can_discover=True, lone=True, fdr=0.045):
    tests = [{"test": "rank-sum", "power": power_rank, "power_low": power_rank - 0.1, "power_high": power_rank + 0.1,
              "on_object": 0.4, "on_object_low": 0.3, "on_object_high": 0.5, "n_models": 10, "n_reference": 0,
              "smallest_p": 1e-12, "lone_region_threshold": 0.05 / 64, "can_discover": True,
              "can_find_lone_region": True},
             {"test": "trained vs untrained", "power": power_two, "power_low": power_two - 0.1,
              "power_high": power_two + 0.1, "on_object": 0.5, "on_object_low": 0.4, "on_object_high": 0.6,
              "n_models": 3, "n_reference": 3, "smallest_p": 0.051 if not can_discover else 0.001,
              "lone_region_threshold": 0.05 / 64, "can_discover": can_discover, "can_find_lone_region": lone,
              "models_for_lone_region": 7, "permutations_for_lone_region": 1280}]
    calibration = [{"null": "permuted", "test": "rank-sum", "q": 0.05, "fdr": fdr, "fdr_low": fdr - 0.004,
                    "fdr_high": fdr + 0.004},
                   {"null": "pool", "test": "rank-sum", "q": 0.05, "fdr": 0.97, "fdr_low": 0.96, "fdr_high": 0.98}]
    return {"method": method, "grouping": "fastslic", "tests": tests, "calibration": calibration,
            "sentence": f"{method} with fastslic: 3 models for reliability 0.9", "validation": []}


def test_power_reading_names_the_best_unit_of_each_test_and_what_the_models_can_reach():
    units = [_unit("saliency", 0.7, 0.3), _unit("smoothgrad", 0.9, 0.2, can_discover=False, lone=False)]
    text = power_reading(units)
    assert "rank-sum: the largest share of object regions found is 0.90 [0.80, 1.00] (smoothgrad/fastslic)" in text
    assert "trained vs untrained: the largest share of object regions found is 0.30 [0.20, 0.40] (saliency/fastslic)" \
        in text
    assert "it cannot find any region" in text and "about 7 of each would let it find a lone region" in text
    # without masks there is no power, but what the models can reach is still said
    for unit in units:
        for row in unit["tests"]:
            del row["power"]
    text = power_reading(units)
    assert not text.startswith("Power") and text.startswith("What these models can find")


def test_calibration_reading_states_ranges_and_the_untrained_share():
    text = calibration_reading([_unit("a", 0.5, 0.5, fdr=0.041), _unit("b", 0.5, 0.5, fdr=0.052)])
    assert "observed FDR 0.041–0.052 over 2 method × grouping units" in text
    assert "largest upper 95 % end 0.056, b/fastslic" in text and "2 of 2 have the upper end within q + 0.02" in text
    assert "finds regions in a share 0.97–0.97 of images" in text


def test_planner_reading_without_held_out_models_says_the_predictions_are_unchecked():
    assert "not checked here" in planner_reading([_unit("a", 0.5, 0.5)])
    unit = _unit("a", 0.5, 0.5)
    unit["validation"] = [{"method": "a", "grouping": "fastslic", "models": 4, "samples": 8, "pilot_samples": 32,
                           "predicted": 0.80, "observed": 0.86, "error": -0.06, "held_out": 16}]
    text = planner_reading([unit])
    assert "0 of 1 predictions are within ±0.05" in text and "largest error is -0.060" in text
    assert "1 of them are at another sample count than the pilot's" in text
