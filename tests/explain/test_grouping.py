"""Tests of :mod:`stablesal.explain.grouping`.

The stationary-correlation prediction of what a projection keeps: known answers."""

import pytest
import torch

from stablesal.explain.grouping import Partition, group_attributions, lag_weights, stationary_projection_energy
from stablesal.explain.segmentation import Grid


def _energy(maps, segments):
    return Partition(segments).project(maps.unsqueeze(1))[:, 0].flatten(1).square().sum(1)


def test_lag_weights_at_zero_lag_count_segments():
    segments = Grid(rows=3, cols=5)(torch.zeros(2, 1, 15, 20))
    assert torch.allclose(lag_weights(segments)[:, 0, 0], torch.full((2,), 15.0, dtype=torch.float64))


def test_prediction_is_exact_for_stationary_products():
    """A checkerboard's lagged products depend on the lag alone, and a constant map's are constant:
    for any partition the prediction equals the projection's energy exactly."""
    generator = torch.Generator().manual_seed(0)
    segments = torch.randint(0, 6, (2, 12, 12), generator=generator)  # an arbitrary, ragged partition
    weights = lag_weights(segments)
    rows, cols = torch.meshgrid(torch.arange(12), torch.arange(12), indexing="ij")
    checkerboard = ((-1.0) ** (rows + cols)).double().expand(2, -1, -1)
    for maps in (checkerboard, torch.full((2, 12, 12), 2.0, dtype=torch.float64)):
        assert torch.allclose(stationary_projection_energy(maps, weights), _energy(maps, segments))


def test_prediction_of_white_noise_is_the_independent_pixel_factor():
    """White noise: the expected prediction is ‖x‖²·m/d; averaged over many maps it is close."""
    generator = torch.Generator().manual_seed(1)
    segments = Grid(rows=4, cols=4)(torch.zeros(400, 1, 16, 16))
    maps = torch.randn(400, 16, 16, generator=generator, dtype=torch.float64)
    predicted = stationary_projection_energy(maps, lag_weights(segments[:1]).expand(400, -1, -1))
    expected = maps.flatten(1).square().sum(1) * 16 / 256
    assert abs(predicted.mean() / expected.mean() - 1) < 0.05


def test_prediction_fails_when_variance_is_not_stationary():
    """Variance concentrated inside one cell: the projection keeps far more of it than the
    image-wide correlation predicts. The check can fail, so it is not an identity."""
    generator = torch.Generator().manual_seed(2)
    segments = Grid(rows=4, cols=4)(torch.zeros(1, 1, 16, 16))
    maps = torch.zeros(50, 16, 16, dtype=torch.float64)
    maps[:, :4, :4] = torch.randn(50, 1, 1, generator=generator, dtype=torch.float64)  # one cell moves as a block
    weights = lag_weights(segments).expand(50, -1, -1)
    exact, predicted = _energy(maps, segments.expand(50, -1, -1)), stationary_projection_energy(maps, weights)
    assert (exact / predicted).min() > 1.5  # 1.87 here: the block sits where the image-wide average says little


def test_projection_with_tiny_segments_rectangles_and_channels():
    """Single-pixel segments, a non-square image and several channels: the projection is each
    segment's mean per channel, computed here with explicit loops."""
    generator = torch.Generator().manual_seed(5)
    segments = torch.randint(0, 7, (2, 5, 9), generator=generator)
    segments[:, 0, 0] = 7  # a segment of one pixel
    maps = torch.randn(2, 3, 5, 9, generator=generator, dtype=torch.float64)
    projected = Partition(segments).project(maps)
    expected = torch.empty_like(maps)
    for b in range(2):
        for s in segments[b].unique():
            inside = segments[b] == s
            expected[b][:, inside] = maps[b][:, inside].mean(1, keepdim=True)
    assert torch.allclose(projected, expected)
    flat = Partition(segments).project(maps[:, 0])  # [B, H, W] maps too
    assert torch.allclose(flat, expected[:, 0])
    # lag weights on the same ragged partition: W(0) is the number of segments
    assert torch.allclose(lag_weights(segments)[:, 0, 0], torch.tensor([8.0, 8.0], dtype=torch.float64))
    white = torch.randn(2, 5, 9, generator=generator, dtype=torch.float64)
    energy = stationary_projection_energy(white, lag_weights(segments))
    assert energy.shape == (2,) and torch.isfinite(energy).all()


def test_grouping_is_a_projection():
    maps = torch.randn(6, 3, 10, 12)
    segments = torch.randint(0, 7, (6, 10, 12))
    segments[:, 0, 0], segments[:, 0, 1] = 0, 1
    once = group_attributions(maps, segments)
    assert torch.allclose(group_attributions(once, segments), once, atol=1e-6)  # idempotent
    assert torch.allclose(once.flatten(1).sum(1), maps.flatten(1).sum(1), atol=1e-4)  # sums kept
    for b in range(6):  # constant on each segment
        for s in segments[b].unique():
            values = once[b][:, segments[b] == s]
            assert torch.allclose(values, values[:, :1].expand_as(values))
    # self-adjoint: <P a, b> = <a, P b>
    other = torch.randn_like(maps)
    assert torch.allclose((once * other).sum(), (maps * group_attributions(other, segments)).sum(), rtol=1e-4)


def test_grouping_never_increases_variance():
    generator = torch.Generator().manual_seed(0)
    segments = Grid(n_segments=9)(torch.rand(1, 3, 12, 12))
    for _ in range(5):
        # maps of K "models" for one image: correlated noise around a mean
        maps = torch.randn(8, 1, 12, 12, generator=generator) * torch.rand(1, 1, 12, 12, generator=generator)
        maps = maps + torch.randn(1, 1, 12, 12, generator=generator)
        grouped = group_attributions(maps, segments.expand(8, -1, -1))
        assert grouped.var(0).sum() <= maps.var(0).sum() + 1e-6


def test_sum_reduce_and_bad_shapes():
    maps = torch.ones(1, 1, 4, 4)
    segments = torch.zeros(1, 4, 4, dtype=torch.long)
    segments[:, :, 2:] = 1
    assert torch.equal(group_attributions(maps, segments, "sum"), torch.full((1, 1, 4, 4), 8.0))
    with pytest.raises(ValueError, match="do not match segments"):
        Partition(segments).project(torch.ones(1, 1, 5, 4))
    with pytest.raises(ValueError, match="reduce"):
        Partition(segments).project(maps, "max")


# ------------------------------ tests the mutation run asked for (marked mutation)
# Tests written against the survivors of `make mutation` (see mutation/*.md): each checks
# a known answer or a property computed independently of the code under test (a value derived by
# hand, NumPy or SciPy), so that a changed constant, operator or argument fails. Every test is fast.


@pytest.mark.mutation
def test_partition_checks_its_segments():
    from stablesal.explain.grouping import Partition

    with pytest.raises(ValueError, match="segments must be an integer tensor"):
        Partition(torch.zeros(4, 4, dtype=torch.long))          # no batch dimension
    with pytest.raises(ValueError, match="segments must be an integer tensor"):
        Partition(torch.zeros(1, 4, 4))                          # float ids


@pytest.mark.mutation
def test_grouping_keeps_half_precision():
    """Segment means of float16/bfloat16 maps stay in that dtype (the counts are cast to it)."""
    from stablesal.explain.grouping import group_attributions

    segments = torch.tensor([[[0, 0, 1], [0, 1, 1]]])
    values = torch.tensor([[[[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]]])
    for dtype in (torch.float16, torch.bfloat16):
        grouped = group_attributions(values.to(dtype), segments)
        assert grouped.dtype == dtype
        assert grouped.float().tolist() == [[[[2.0, 2.0, 4.0], [2.0, 4.0, 4.0]]]]


@pytest.mark.mutation
def test_grouped_wrapper_passes_its_reduction():
    from stablesal.explain.grouping import Grouped

    class Constant:
        def attribute(self, inputs, **kwargs):
            return inputs

    images = torch.tensor([[[[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]]])
    segments = torch.tensor([[[0, 0, 1], [0, 1, 1]]])
    summed = Grouped(Constant(), reduce="sum").attribute(images, segments=segments)
    assert summed.tolist() == [[[[6.0, 6.0, 12.0], [6.0, 12.0, 12.0]]]]
    assert Grouped(Constant()).attribute(images, segments=segments).tolist() == [[[[2.0, 2.0, 4.0], [2.0, 4.0, 4.0]]]]


@pytest.mark.mutation
def test_stationary_projection_energy_of_one_unbatched_map():
    """A single map [H, W] with its weights [2H, 2W]: a constant map lies in the range of the
    projection, so the predicted kept energy is all of ‖x‖² (docstring: a constant keeps everything)."""
    from stablesal.explain.grouping import lag_weights, stationary_projection_energy

    segments = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3]]])
    weights = lag_weights(segments)[0]
    constant = torch.full((3, 4), 0.5, dtype=torch.float64)
    energy = stationary_projection_energy(constant, weights)
    assert energy.shape == () and energy.item() == pytest.approx(12 * 0.25)
    batched = stationary_projection_energy(constant[None], weights[None])
    assert batched.tolist() == pytest.approx([12 * 0.25])


@pytest.mark.mutation
def test_grouped_passes_the_protocols_default_seed_zero():
    """The explainer protocol's default seed is 0: a wrapped random method called without a seed
    gives the map of seed 0, not of another seed."""
    from stablesal.explain.gradient.methods import SmoothGrad
    from stablesal.explain.grouping import Grouped

    from tests.helpers.basic_models import small_model

    model = small_model(side=8)
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    grouped = Grouped(SmoothGrad(model, n_samples=4), Grid(n_segments=4))
    default = grouped.attribute(images, target=0)
    assert torch.equal(default, grouped.attribute(images, target=0, seed=0))
    assert not torch.equal(default, grouped.attribute(images, target=0, seed=1))
