"""The stationary-correlation prediction of what a projection keeps: known answers."""

import torch

from stablesal.grouping import Partition, lag_weights, stationary_projection_energy
from stablesal.segmentation import Grid


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
