"""Tests of :mod:`stablesal.metrics.localisation`.

Known-answer tests: each formula against an independent computation (SciPy, scikit-learn,
autograd written out, or a value derived by hand), so that a wrong constant or operator fails."""

import pytest
import torch

from stablesal.metrics import pointing_game


def test_pointing_game_counts_ties():
    """A map whose maximum is shared by pixels in and out of the object scores the share of the
    tied pixels inside; the first tied pixel is not special."""
    maps = torch.zeros(2, 1, 4, 4)
    maps[0, 0, 0, 0] = maps[0, 0, 3, 3] = 1.0     # two maxima, one inside
    maps[1, 0, 3, 3] = 1.0                          # one maximum, outside
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[:, 0, 0] = True
    assert pointing_game(maps, masks).tolist() == [0.5, 0.0]


def test_relevance_mass_by_hand():
    """Share of the positive part inside the mask, per image, with negative evidence ignored and a
    total below 1 (so no clamp or product can pass for the ratio)."""
    from stablesal.metrics import relevance_mass

    maps = torch.tensor([[[0.2, -0.5], [0.1, 0.0]], [[0.0, 0.3], [0.3, 0.0]]]).unsqueeze(1)
    masks = torch.tensor([[[True, False], [False, False]], [[False, True], [False, False]]])
    assert relevance_mass(maps, masks).tolist() == pytest.approx([0.2 / 0.3, 0.5])
    two_channels = torch.cat([maps, maps], 1)  # channels are summed first: the ratio is unchanged
    assert relevance_mass(two_channels, masks).tolist() == pytest.approx([0.2 / 0.3, 0.5])


# ------------------------------ tests the mutation run asked for (marked mutation)
# Tests written against the survivors of `make mutation` (see mutation/*.md): each checks
# a known answer or a property computed independently of the code under test (a value derived by
# hand, NumPy or SciPy), so that a changed constant, operator or argument fails. Every test is fast.


@pytest.mark.mutation
def test_localisation_metrics_read_three_dimensional_maps_as_they_are():
    """Maps [B, H, W] are the channel-summed maps themselves (not summed over rows)."""
    from stablesal.metrics import iou_top, pointing_game, relevance_mass

    maps = torch.tensor([[[4.0, 0.0, 0.0], [0.0, 1.0, -2.0]]])
    mask = torch.tensor([[[1, 0, 0], [0, 1, 0]]])
    assert relevance_mass(maps, mask).tolist() == pytest.approx([1.0])   # positive mass 5, all inside
    assert pointing_game(maps, mask).tolist() == [1.0]
    assert iou_top(maps, mask).tolist() == [1.0]                        # top-2 pixels = the mask
    other = torch.tensor([[[0, 1, 1], [1, 0, 1]]])
    assert relevance_mass(maps, other).tolist() == pytest.approx([0.0])


@pytest.mark.mutation
def test_iou_top_by_hand():
    """IoU of the mask with the map's top-|mask| pixels, per image: partial overlap, a
    one-pixel mask, and ties broken by position (a constant map's top pixels are its first)."""
    from stablesal.metrics import iou_top

    maps = torch.tensor([[[5.0, 4.0, 3.0], [2.0, 1.0, 0.0]],     # top-2 = pixels 0, 1
                         [[0.0, 0.0, 0.0], [0.0, 9.0, 0.0]]])    # top-1 = pixel 4
    masks = torch.tensor([[[0, 1, 1], [0, 0, 0]],                # {1, 2}: IoU |{1}| / |{0, 1, 2}| = 1/3
                          [[0, 0, 0], [0, 1, 0]]])               # {4}: IoU 1
    assert iou_top(maps, masks).tolist() == pytest.approx([1 / 3, 1.0])
    flat = torch.zeros(1, 5, 5)
    first = torch.zeros(1, 5, 5, dtype=torch.long)
    first[0, 0, :3] = 1
    last = torch.zeros(1, 5, 5, dtype=torch.long)
    last[0, 4, 2:] = 1
    assert iou_top(flat, first).tolist() == [1.0] and iou_top(flat, last).tolist() == [0.0]
