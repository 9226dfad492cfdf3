"""Tests of :mod:`stablesal.explain.perturbation.presets`.

Properties of the perturbation pipeline (docs/methods.md §4) on small analytic models."""

import math

import pytest
import torch
import torch.nn.functional as F

from stablesal.core.seeding import image_seeds
from stablesal.explain.perturbation import Occlusion, RISE, make_preset
from stablesal.explain.perturbation.presets import PRESETS, budget_options, takes_budget

from tests.helpers.basic_models import small_model


def test_rise_pixel_map_equals_rise_formula_with_the_clamped_options():
    """The non-default options: PyTorch's edge-clamping upsampling and division by N·mean(Z)
    (the published variant is tested in tests/explain/perturbation/test_calculators.py)."""
    from stablesal.explain.perturbation.calculators import RiseScore
    from stablesal.explain.perturbation.features import BilinearGrid

    model, side = small_model(), 16
    x = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(1))
    n, grid, p = 300, 4, 0.5
    ours = RISE(model, n_samples=n, grid=grid, p=p, chunk_size=64, segmenter=BilinearGrid(grid, edge="clamp"),
                calculator=RiseScore(normalise="mean")).attribute(x, target=[1, 2], seed=7)
    cell = math.ceil(side / grid)
    for index, seed in enumerate(image_seeds(x, 7)):
        # RISE's own construction, written out: binary grids → bilinear upsampling → random crop
        generator = torch.Generator().manual_seed(seed)
        z = torch.rand(n, grid * grid, generator=generator) < p
        offsets = torch.randint(0, cell, (n, 2), generator=generator)
        up = F.interpolate(z.float().view(n, 1, grid, grid), size=((grid + 1) * cell,) * 2, mode="bilinear",
                           align_corners=False)
        masks = torch.stack([up[k, 0, dy:dy + side, dx:dx + side] for k, (dy, dx) in enumerate(offsets.tolist())])
        fill = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
        blended = fill + masks.unsqueeze(1) * (x[index] - fill)
        scores = torch.softmax(model(blended), 1)[:, [1, 2][index]]
        expected = (scores.view(-1, 1, 1) * masks).sum(0) / (n * z.float().mean())
        for channel in range(3):
            assert torch.allclose(ours[index, channel], expected, atol=1e-5)


@pytest.mark.parametrize("preset", sorted(PRESETS))   # every registered preset
def test_seeded_runs_are_bit_identical_and_batch_independent(preset):
    model = small_model(seed=4)
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    options = budget_options(preset, 64)
    pipeline = make_preset(preset, model, chunk_size=32, **options)
    first = pipeline.attribute(x, target=[0, 1, 2], seed=11)
    again = pipeline.attribute(x, target=[0, 1, 2], seed=11)
    assert torch.equal(first, again)
    one_by_one = torch.cat([pipeline.attribute(x[i:i + 1], target=[i], seed=11) for i in range(3)])
    assert torch.equal(first, one_by_one)
    other_chunk = make_preset(preset, model, chunk_size=7, **options).attribute(x, target=[0, 1, 2], seed=11)
    assert torch.allclose(first, other_chunk, atol=1e-6)
    assert first.shape == x.shape and torch.isfinite(first).all()
    if pipeline.random:  # the registry's own flag: a random preset's maps move with the seed
        assert not torch.equal(first, pipeline.attribute(x, target=[0, 1, 2], seed=12))


def test_one_budget_name_for_every_preset():
    """Presets that draw samples take ``n_samples`` (RISE's ``n_masks`` is a deprecated alias);
    the single-feature ones take none and their sample count is the feature count."""
    assert {name for name in PRESETS if takes_budget(name)} == {"rise", "lime", "kernel_shap"}  # PDA: one per feature
    model = small_model(seed=4)
    for name in ("rise", "lime", "kernel_shap"):
        assert make_preset(name, model, **budget_options(name, 37)).n_samples == 37
    with pytest.warns(DeprecationWarning, match="n_samples"):
        assert RISE(model, n_masks=21).n_samples == 21


def test_occlusion_matches_captum():
    from captum.attr import Occlusion as CaptumOcclusion

    model = small_model(seed=8)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(9))
    ours = Occlusion(model, size=6, stride=4).attribute(x, target=[1, 3])

    def probability(inputs):
        return torch.softmax(model(inputs), 1)

    theirs = CaptumOcclusion(probability).attribute(x, target=[1, 3], sliding_window_shapes=(3, 6, 6),
                                                    strides=(3, 4, 4), baselines=0.0)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_preset_factories_are_snake_case_with_the_papers_names_as_aliases():
    import stablesal
    from stablesal.explain import perturbation
    from stablesal.explain.perturbation import presets

    for snake, camel in (("rise", "RISE"), ("lime", "LIME"), ("kernel_shap", "KernelSHAP"), ("occlusion", "Occlusion"),
                         ("pda", "PDA"), ("ciu", "CIU"), ("sliding_patch", "SlidingPatch"), ("gen_lime", "GenLIME")):
        assert getattr(presets, snake) is getattr(presets, camel), snake
        assert getattr(presets, snake).__name__ == snake
        if snake in presets.PRESETS:
            assert presets.PRESETS[snake] is getattr(presets, snake)
    assert perturbation.rise is stablesal.rise is stablesal.RISE
