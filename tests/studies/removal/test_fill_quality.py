"""Tests of :mod:`stablesal.studies.removal.fill_quality`.

Inpainters keep known pixels and fill holes plausibly; the evaluation metrics behave on analytic cases."""

import pytest
import torch
from torch import nn

from stablesal.explain.inpainting import CallableInpainter, ConstantFill, classical_inpainters
from stablesal.studies.removal.fill_quality import inpainting_quality, wilson_half_width


class LooksAtTheCentre(nn.Module):
    """Classifies by the mean colour of the central square, where the test objects are."""

    def forward(self, x):
        return x[:, :, 5:11, 5:11].mean((2, 3)) * 10


def test_inpainting_quality_on_a_model_that_ignores_the_background():
    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(6, 16, 16, dtype=torch.bool)
    masks[:, 5:11, 5:11] = True
    labels = LooksAtTheCentre()(images).argmax(1)
    inpainters = {**classical_inpainters(), "identity": CallableInpainter(lambda x, h: x)}
    rows = {r["inpainter"]: r for r in inpainting_quality(inpainters, LooksAtTheCentre(), images, labels, masks)}
    for row in rows.values():  # whatever fills the background, the prediction stays
        assert row["keep_prediction"] == row["keep_prediction_ring"] == row["keep_prediction_correct"] == 1.0
        assert row["keep_prediction_ci95"] == pytest.approx(wilson_half_width(6, 6))
        assert row["n_images"] == 6
    assert rows["identity"]["psnr_db"] > 90 and rows["identity"]["ssim"] > 0.999
    assert rows["mean-colour"]["psnr_db"] < rows["identity"]["psnr_db"]


class LooksAtTheCorner(nn.Module):
    """Classifies by the mean colour of the top-left corner, which the background fills replace."""

    def forward(self, x):
        return x[:, :, :4, :4].mean((2, 3)) * 10


def test_keep_rate_over_several_models_is_the_mean_of_each_models_rate():
    images = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(8, 16, 16, dtype=torch.bool)
    masks[:, 5:11, 5:11] = True
    labels = torch.zeros(8, dtype=torch.long)
    fills = {"mean-colour": ConstantFill("mean"), "black": ConstantFill("zero")}
    joint = inpainting_quality(fills, LooksAtTheCentre(), images, labels, masks, other_models=[LooksAtTheCorner()])
    centre = inpainting_quality(fills, LooksAtTheCentre(), images, labels, masks)
    corner = inpainting_quality(fills, LooksAtTheCorner(), images, labels, masks)
    for both, a, b in zip(joint, centre, corner):
        assert both["n_models"] == 2
        assert both["keep_prediction"] == a["keep_prediction"]  # the first model's own numbers are unchanged
        assert both["keep_prediction_models_mean"] == pytest.approx((a["keep_prediction"] + b["keep_prediction"]) / 2)
        assert both["keep_prediction_models_min"] == min(a["keep_prediction"], b["keep_prediction"])
    assert joint[0]["keep_prediction_models_min"] < 1.0  # the corner model does see the fill


@pytest.mark.parametrize("successes,trials", [(0, 10), (3, 10), (50, 100), (1020, 1024)])
def test_wilson_interval_matches_scipy(successes, trials):
    from scipy.stats import binomtest

    interval = binomtest(successes, trials).proportion_ci(method="wilson")
    assert wilson_half_width(successes, trials) == pytest.approx((interval.high - interval.low) / 2, rel=1e-9)
