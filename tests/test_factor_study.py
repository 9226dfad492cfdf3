"""SRG and the factor-study analysis on analytic cases."""

import torch
from torch import nn

from stablesal.factor_study import FactorSettings, units
from stablesal.metrics import srg


class RegionDetector(nn.Module):
    """Class 0's logit is the brightness of the top-left quadrant."""

    def forward(self, x):
        score = 20 * (x[:, :, :4, :4].mean((1, 2, 3)) - 0.5)
        return torch.stack([score, -score], 1)


def test_srg_rewards_the_true_region_and_is_antisymmetric():
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.3
    images[:, :, :4, :4] = 0.9
    truth = torch.zeros(3, 1, 8, 8)
    truth[:, :, :4, :4] = 1
    truth += 1e-3 * torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))  # distinct values: no ties
    target = torch.zeros(3, dtype=torch.long)
    good = srg(RegionDetector(), images, truth, target)
    reverse = srg(RegionDetector(), images, -truth, target)
    random = srg(RegionDetector(), images, torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(2)), target)
    assert (good["srg"] > 0.3).all() and (good["srg"] > random["srg"]).all()
    assert torch.allclose(reverse["srg"], -good["srg"], atol=1e-6)
    assert torch.allclose(good["lif"], reverse["mif"], atol=1e-6)


def test_single_feature_samplers_only_take_n_equal_m():
    settings = FactorSettings(segmentations=["grid"], samplers=["random", "single", "inverse-single"],
                              sample_sizes=["M", 100, 400])
    assert units(settings) == [("grid", "random", "M"), ("grid", "random", 100), ("grid", "random", 400),
                               ("grid", "single", "M"), ("grid", "inverse-single", "M")]
