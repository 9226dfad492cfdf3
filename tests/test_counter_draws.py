"""Counter-based draws (``rng="counter"``): the samplers' distributions, one draw per chunk, a
row's sample a function of its seed and index alone, and the expectations the methods estimate."""

import numpy as np
import pytest
import torch
from scipy import stats

from stablesal.attribution import SmoothGrad, SmoothGradSquared, SuppressionGrad, make_method
from stablesal.counter_streams import as_seeds
from stablesal.sampling import BaselineDistribution, GaussianNoise, Identity, Suppression, UniformNoise

from test_attribution import Quadratic, tiny_cnn


def rows_of(count: int, seed: int = 9):
    """``count`` consecutive samples of one image's stream: (sample index, seeds) ``[count]``."""
    return torch.arange(count), as_seeds([seed] * count)


def test_gaussian_and_uniform_noise_have_their_distributions():
    x = torch.rand(1, 3, 6, 6).expand(400, -1, -1, -1)
    sample, seeds = rows_of(400)
    noise = (GaussianNoise(400, noise_level=0.2).draw_rows(x, sample, seeds)[0] - x).flatten().numpy()
    assert stats.kstest(noise, "norm", args=(0, 0.2)).pvalue > 1e-3
    assert stats.kstest(noise, "norm", args=(0, 0.25)).pvalue < 1e-6  # the test can tell σ apart
    shift = (UniformNoise(400, noise_level=0.1).draw_rows(x, sample, seeds)[0] - x).flatten().numpy()
    assert stats.kstest(shift, "uniform", args=(-0.1, 0.2)).pvalue > 1e-3


def test_suppression_masks_have_their_distributions():
    x = torch.rand(1, 3, 16, 16).add(0.1).expand(600, -1, -1, -1)
    sample, seeds = rows_of(600)
    kept = Suppression(600).draw_rows(x, sample, seeds)[0][:, 0] > 0  # bernoulli: π ~ U(0, 1), m ~ Bernoulli(π)
    fractions = kept.flatten(1).float().mean(1).numpy()
    assert stats.kstest(fractions, "uniform").pvalue > 1e-3  # 256 pixels: the fraction follows π closely
    fixed = Suppression(600, mode="fixed", keep_rate=0.3).draw_rows(x, sample, seeds)[0][:, 0] > 0
    assert abs(float(fixed.float().mean()) - 0.3) < 0.01
    scaled = Suppression(600, mode="global").draw_rows(x, sample, seeds)[0] / x
    assert torch.allclose(scaled, scaled[:, :1, :1, :1].expand_as(scaled), atol=1e-6)  # one factor per sample
    assert stats.kstest(scaled[:, 0, 0, 0].numpy(), "uniform").pvalue > 1e-3
    continuous = Suppression(600, mode="continuous").draw_rows(x, sample, seeds)[0] / x
    assert stats.kstest(continuous[:, 0].flatten().numpy(), "uniform").pvalue > 1e-3
    patches = Suppression(600, unit="patch", patch_size=4).draw_rows(x, sample, seeds)[0][:, 0] > 0
    blocks = patches.view(600, 4, 4, 4, 4)
    assert torch.equal(blocks, blocks[:, :, :1, :, :1].expand_as(blocks))  # constant inside each patch
    for sampler in (Suppression(8), Suppression(8, unit="patch"), Suppression(8, mode="continuous")):
        ratio = sampler.draw_rows(x[:8], *rows_of(8))[0] / x[:8]
        assert ((ratio >= 0) & (ratio <= 1 + 1e-6)).all() and torch.allclose(ratio, ratio[:, :1].expand_as(ratio))


def test_segment_suppression_keeps_whole_segments_of_each_rows_own_partition():
    x = torch.rand(2, 3, 8, 8) + 0.1
    quarters = torch.arange(4).view(2, 2).repeat_interleave(4, 0).repeat_interleave(4, 1)
    halves = (torch.arange(8) >= 4).long().view(1, 8).expand(8, 8)
    segments = torch.stack([quarters, halves])
    out, _ = Suppression(4, unit="segment", mode="continuous").draw_rows(x, torch.tensor([0, 0]), as_seeds([1, 2]),
                                                                          segments=segments)
    factor = out[:, 0] / x[:, 0]
    for row, labels in enumerate(segments):
        for label in labels.unique():
            values = factor[row][labels == label]
            assert torch.allclose(values, values[:1].expand_as(values), atol=1e-6)
    distinct = [factor[row].round(decimals=4).unique().numel() for row in range(2)]
    assert distinct == [4, 2]  # one keep value per segment of the row's own partition


def test_gradient_shap_draws_references_uniformly_and_alpha_uniformly():
    x = torch.rand(1, 3, 4, 4).expand(3000, -1, -1, -1)
    references = torch.rand(5, 3, 4, 4)
    x_hat, delta = BaselineDistribution(3000).draw_rows(x, *rows_of(3000), baseline=references)
    chosen = x - delta
    pick = torch.cdist(chosen.flatten(1), references.flatten(1)).argmin(1)
    assert torch.allclose(chosen, references[pick])
    counts = np.bincount(pick.numpy(), minlength=5)
    assert stats.chisquare(counts).pvalue > 1e-3
    alpha = ((x_hat - chosen) / delta)[:, 0, 0, 0].numpy()
    assert stats.kstest(alpha, "uniform").pvalue > 1e-3
    with pytest.raises(ValueError, match="GradientSHAP needs baselines"):
        BaselineDistribution(4).draw_rows(x[:2], *rows_of(2))


def test_a_rows_sample_depends_on_its_seed_and_index_alone():
    x = torch.rand(3, 3, 8, 8)
    sample, seeds = torch.tensor([4, 0, 7]), as_seeds([5, 6, 5])
    # rows with partitions of 2, 4 and 16 segments: each row's stream layout follows its own count
    segments = torch.stack([(torch.arange(8) >= 4).long().view(1, 8).expand(8, 8),
                            torch.arange(4).view(2, 2).repeat_interleave(4, 0).repeat_interleave(4, 1),
                            torch.arange(16).view(4, 4).repeat_interleave(2, 0).repeat_interleave(2, 1)])
    references = torch.rand(4, 3, 8, 8)
    for sampler, extra in ((GaussianNoise(8), {}), (UniformNoise(8), {}), (Suppression(8), {}),
                           (Suppression(8, unit="patch"), {}), (Suppression(8, fill="blur"), {}),
                           (Suppression(8, unit="segment"), {"segments": segments}),
                           (Suppression(8, unit="segment", mode="continuous"), {"segments": segments}),
                           (BaselineDistribution(8, noise_level=0.1), {"baseline": references})):
        together = sampler.draw_rows(x, sample, seeds, **extra)[0]
        for row in range(3):
            alone_extra = {k: v[row:row + 1] if k == "segments" else v for k, v in extra.items()}
            alone = sampler.draw_rows(x[row:row + 1], sample[row:row + 1], seeds[row:row + 1], **alone_extra)[0]
            assert torch.equal(alone[0], together[row]), str(sampler)
        last_extra = {k: v[2:] if k == "segments" else v for k, v in extra.items()}  # 16 segments: ties unlikely
        other = sampler.draw_rows(x[2:], torch.tensor([5]), seeds[2:], **last_extra)[0][0]
        assert not torch.equal(together[2], other), str(sampler)  # another sample index, another sample


def test_a_sampler_that_changes_only_draw_does_not_inherit_a_counter_draw():
    class Clipped(GaussianNoise):
        def draw(self, x, start, stop, generator, baseline=None, segments=None):
            return super().draw(x, start, stop, generator)[0].clamp(0, 1), None

    class ClippedRows(Clipped):
        def draw_rows(self, x, sample, seeds, baseline=None, segments=None):
            return GaussianNoise.draw_rows(self, x, sample, seeds)[0].clamp(0, 1), None

    assert GaussianNoise(4).counter_draws and not Clipped(4).counter_draws and ClippedRows(4).counter_draws
    from stablesal.attribution import GradientIntegration

    assert GradientIntegration(tiny_cnn(), Clipped(4)).stream_kind("cuda") == "generator"
    with pytest.raises(ValueError, match="has no counter-based draw"):
        GradientIntegration(tiny_cnn(), Clipped(4), rng="counter")


def test_keep_values_are_compared_in_double_precision():
    """A keep rate of 1 keeps everything, whatever the image's precision (a half-precision uniform
    rounds up to 1 often enough to drop pixels)."""
    x = torch.rand(64, 3, 32, 32).add(0.1).to(torch.bfloat16)
    kept = Suppression(64, mode="fixed", keep_rate=1.0).draw_rows(x, *rows_of(64))[0]
    assert torch.equal(kept, x)


def test_segment_suppression_with_other_segment_counts_per_image_is_chunk_and_batch_independent():
    from stablesal.segmentation import Grid

    images = torch.rand(4, 3, 8, 8)
    segments = torch.cat([Grid(n_segments=4)(images[:2]), Grid(n_segments=16)(images[2:])])
    maps = {}
    for chunk in (3, 5, 64):
        method = SuppressionGrad(tiny_cnn(), n_samples=6, unit="segment", grouping="segments",
                                 internal_batch_size=chunk, rng="counter")
        maps[chunk] = method.attribute(images, target=0, segments=segments, seed=2)
    assert torch.allclose(maps[3], maps[64], atol=1e-6) and torch.allclose(maps[5], maps[64], atol=1e-6)
    alone = SuppressionGrad(tiny_cnn(), n_samples=6, unit="segment", grouping="segments", rng="counter").attribute(
        images[2:3], target=0, segments=segments[2:3], seed=2)
    assert torch.allclose(alone[0], maps[64][2], atol=1e-6)


def test_one_draw_per_chunk_of_rows(monkeypatch):
    images = torch.rand(5, 3, 8, 8)
    method = SmoothGrad(tiny_cnn(), n_samples=6, internal_batch_size=8, rng="counter")
    calls = []
    original = method.sampler.draw_rows
    monkeypatch.setattr(method.sampler, "draw_rows", lambda *a, **k: calls.append(len(a[1])) or original(*a, **k))
    method.attribute(images, target=0)
    assert calls == [8, 8, 8, 6] and method.forward_calls == 4  # 30 rows, chunks of 8, one draw each


def test_auto_takes_counter_streams_off_the_cpu_where_the_sampler_has_them():
    model = tiny_cnn()
    assert SmoothGrad(model).stream_kind("cpu") == "generator"
    assert SmoothGrad(model).stream_kind("cuda") == "counter"
    assert SmoothGrad(model).stream_kind("mps") == "generator"  # no float64 there
    assert make_method("saliency", model).stream_kind("cuda") == "none"
    noisy_fill = SuppressionGrad(model, fill="noise")
    assert noisy_fill.stream_kind("cuda") == "generator" and not noisy_fill.sampler.counter_draws
    with pytest.raises(ValueError, match="rng='counter': the sampler .* has no counter-based draw"):
        SuppressionGrad(model, fill="noise", rng="counter")
    with pytest.raises(ValueError, match="rng must be one of"):
        SmoothGrad(model, rng="philox")
    with pytest.raises(NotImplementedError, match="no counter-based draw"):
        Identity().draw_rows(torch.rand(1, 3, 4, 4), *rows_of(1))


@pytest.mark.parametrize("rng", ["generator", "counter"])
def test_smoothgrad_estimates_its_expectation_on_a_quadratic(rng):
    """For logit = Σ a ⊙ x²: E[∇] = 2a ⊙ x and E[∇²] = 4a² ⊙ (x² + σ²) exactly, so the noise
    must be centred with the stated σ; 4 000 samples put the estimate within a few standard errors."""
    torch.manual_seed(0)
    model = Quadratic(shape=(1, 2, 2), classes=1).eval()
    x = torch.rand(1, 1, 2, 2)
    a, sigma, n = model.a.detach()[0], 0.3, 4000
    mean = SmoothGrad(model, n_samples=n, noise_level=sigma, rng=rng).attribute(x, target=0, seed=1)[0]
    standard_error = 2 * a.abs() * sigma / n ** 0.5
    assert ((mean - 2 * a * x[0]).abs() < 4 * standard_error).all()
    square = SmoothGradSquared(model, n_samples=n, noise_level=sigma, rng=rng).attribute(x, target=0, seed=1)[0]
    expected = 4 * a.square() * (x[0].square() + sigma ** 2)
    spread = 4 * a.square() * (4 * x[0].square() * sigma ** 2 + 2 * sigma ** 4).sqrt() / n ** 0.5  # sd of (2a(x+ε))²
    assert ((square - expected).abs() < 4 * spread).all()
