"""Tests of :mod:`stablesal.metrics.registry`."""

import pytest
import torch


@pytest.mark.mutation
def test_metric_metadata_is_attached():
    from stablesal.metrics import METRICS, mege, normalised_l2, pairwise_metrics, reco, spearman, ssim

    assert ssim.info.name == "ssim" and ssim.info.higher_is_better and (ssim.info.low, ssim.info.high) == (-1.0, 1.0)
    assert spearman.info.name == "spearman" and normalised_l2.info.higher_is_better is False
    assert mege.info.name == "mege" and reco.info.name == "reco"
    assert pairwise_metrics() == ("ssim", "spearman", "normalised_l2", "topk_intersection")
    assert all(METRICS[name].info.name == name for name in pairwise_metrics())
    assert METRICS.info("insertion_auc", "info").higher_is_better and not METRICS.info("deletion_auc", "info").higher_is_better


@pytest.mark.mutation
def test_a_registered_pairwise_metric_joins_the_stability_study_and_says_its_direction():
    from stablesal.metrics import METRICS, MetricInfo, metric_info, pairwise_similarity, register_metric

    def metric(a, b):
        return (a - b).abs().flatten(1).mean(1)

    assert register_metric("mean_abs_difference_for_test", higher_is_better=False, low=0.0, high=1.0,
                           description="a metric", kind="pairwise")(metric) is metric
    try:
        assert metric.info == MetricInfo("mean_abs_difference_for_test", False, 0.0, 1.0, "a metric", "pairwise")
        assert metric_info("mean_abs_difference_for_test").arrow == "↓" and metric_info("ssim").arrow == "↑"
        a, b = torch.zeros(2, 16, 16), torch.ones(2, 16, 16)
        assert torch.equal(pairwise_similarity(a, b)["mean_abs_difference_for_test"], torch.ones(2))
    finally:
        METRICS.unregister("mean_abs_difference_for_test")


@pytest.mark.mutation
def test_register_metric_direct_form_default_kind_and_first_info_kept():
    from stablesal.metrics import METRICS, metric_info, register_metric, srg

    assert METRICS["srg"] is srg and metric_info("srg").kind == "fidelity"  # registered with function=

    def distance(a, b):
        return (a - b).abs().flatten(1).sum(1)

    try:
        assert register_metric("distance_for_test", higher_is_better=False, low=0.0, high=None, description="d",
                               function=distance) is distance
        assert METRICS["distance_for_test"] is distance and distance.info.kind == "fidelity"
        register_metric("distance_again_for_test", higher_is_better=True, low=0.0, high=None, description="d",
                        kind="pairwise", function=distance)
        assert distance.info.name == "distance_for_test"  # the function keeps its first registration's info
        assert metric_info("distance_again_for_test").name == "distance_again_for_test"
    finally:
        for name in ("distance_for_test", "distance_again_for_test"):
            if name in METRICS:
                METRICS.unregister(name)


def test_a_metric_is_registered_with_keywords_only():
    """A positional True, 0.0, 1.0 says nothing to a reader: every property is a keyword."""
    from stablesal.metrics import METRICS, register_metric

    with pytest.raises(TypeError):
        register_metric("positional_for_test", True, 0.0, 1.0, "d")
    assert "positional_for_test" not in METRICS
