"""Tests of :mod:`stablesal.studies.factors.run`.

SRG and the factor-study analysis on analytic cases."""

from stablesal.studies.factors.run import FactorSettings, units


def test_single_feature_samplers_only_take_n_equal_m():
    settings = FactorSettings(segmentations=["grid"], samplers=["random", "single", "inverse-single"],
                              sample_sizes=["M", 100, 400])
    assert units(settings) == [("grid", "random", "M"), ("grid", "random", 100), ("grid", "random", 400),
                               ("grid", "single", "M"), ("grid", "inverse-single", "M")]
