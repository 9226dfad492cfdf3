"""Tests of :mod:`stablesal.explain.perturbation.meaningful`.

Inpainters keep known pixels and fill holes plausibly; the evaluation metrics behave on analytic cases."""

import torch

from stablesal.explain.inpainting import OpenCVInpainter
from stablesal.explain.perturbation.meaningful import MeaningfulPerturbation

from tests.helpers.basic_models import Quadrant


def test_meaningful_perturbation_finds_the_evidence_and_mp_g_runs():
    """The evidence must be removable and the class not saturated, or the optimisation has nothing
    to find: with a +0.7 quadrant (softmax ≈ 1) and the default 1-pixel blur (which leaves a bright
    quadrant bright) inside and outside differed by 3e-6 of 5e-3, a sign that rounding can flip.
    Here (score ≈ 3, blur σ = 4 px) the quadrant's saliency exceeds the other's by 0.72–0.82 per
    image over 3 image draws × 3 jitter seeds; the test asks for 0.5 on each image."""
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.2
    images[:, :, :8, :8] += 0.3
    explainer = MeaningfulPerturbation(Quadrant().eval(), iterations=60, mask_side=4, blur_sigma=4.0)
    saliency = explainer.attribute(images, target=0)
    inside, outside = saliency[:, 0, :8, :8].mean((1, 2)), saliency[:, 0, 8:, 8:].mean((1, 2))
    assert (inside - outside > 0.5).all(), (inside, outside)
    seeded = MeaningfulPerturbation(Quadrant().eval(), iterations=60, mask_side=4, blur_sigma=4.0).attribute(
        images, target=0)
    assert torch.equal(saliency, seeded)
    mp_g = MeaningfulPerturbation(Quadrant().eval(), inpainter=OpenCVInpainter("telea"), iterations=10,
                                  mask_side=4).attribute(images, target=0)
    assert mp_g.shape == images.shape and torch.isfinite(mp_g).all()


def test_meaningful_perturbation_is_an_explainer_random_exactly_through_its_jitter():
    from torch import nn

    from stablesal.explain.protocol import Explainer

    calls = []

    class Counted(nn.Module):
        def forward(self, x):
            calls.append(len(x))
            return nn.functional.softplus(Quadrant()(x))  # nonlinear in the image

    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    jittered = MeaningfulPerturbation(Counted().eval(), iterations=3, mask_side=4)
    assert isinstance(jittered, Explainer) and not jittered.needs_baselines
    assert jittered.budget == "iterations" and getattr(jittered, jittered.budget) == 3
    first = jittered.attribute(images, target=0, seed=1)
    assert len(calls) == 1 + 3  # the class count, then one pass per iteration: the budget
    assert jittered.random and not torch.equal(first, jittered.attribute(images, target=0, seed=2))
    still = MeaningfulPerturbation(Counted().eval(), iterations=3, mask_side=4, jitter=0)
    assert not still.random and torch.equal(still.attribute(images, target=0, seed=1),
                                            still.attribute(images, target=0, seed=2))
