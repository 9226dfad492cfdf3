"""Tests of :mod:`stablesal.explain.gradient.sampling`.

Counter-based draws (``rng="counter"``): the samplers' distributions, one draw per chunk, a
row's sample a function of its seed and index alone, and the expectations the methods estimate."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from stablesal.core.counter_streams import as_seeds
from stablesal.core.seeding import image_seeds
from stablesal.explain.gradient.methods import SmoothGrad
from stablesal.explain.gradient.sampling import BaselineDistribution, GaussianNoise, Suppression, UniformNoise
from stablesal.explain.grouping import group_attributions

from tests.helpers.basic_models import nonlinear_model, tiny_cnn
from tests.helpers.streams import MASK, ROWS, SAMPLE, SEED, X, reference_splitmix64, rows_of


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
    from stablesal.explain.gradient.methods import GradientIntegration

    assert GradientIntegration(tiny_cnn(), Clipped(4)).stream_kind("cuda") == "generator"
    with pytest.raises(ValueError, match="has no counter-based draw"):
        GradientIntegration(tiny_cnn(), Clipped(4), rng="counter")


def test_keep_values_are_compared_in_double_precision():
    """A keep rate of 1 keeps everything, whatever the image's precision (a half-precision uniform
    rounds up to 1 often enough to drop pixels)."""
    x = torch.rand(64, 3, 32, 32).add(0.1).to(torch.bfloat16)
    kept = Suppression(64, mode="fixed", keep_rate=1.0).draw_rows(x, *rows_of(64))[0]
    assert torch.equal(kept, x)


def test_suppression_samples_only_erase():
    x = torch.rand(3, 16, 16) + 0.1
    generator = torch.Generator().manual_seed(0)
    for sampler in (Suppression(8), Suppression(8, unit="patch", patch_size=4), Suppression(8, mode="continuous"),
                    Suppression(8, mode="fixed", keep_rate=0.3), Suppression(8, mode="global")):
        samples, _ = sampler.draw(x, 0, 8, generator)
        ratio = samples / x
        assert ((ratio >= 0) & (ratio <= 1 + 1e-6)).all(), str(sampler)  # never adds information
        assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio)), str(sampler)  # shared across channels
    segments = torch.arange(16).view(4, 4).repeat_interleave(4, 0).repeat_interleave(4, 1)
    samples, _ = Suppression(4, unit="segment").draw(x, 0, 4, generator, segments=segments)
    kept = (samples[:, 0] > 0).float()
    assert torch.equal(group_attributions(kept[:, None], segments.expand(4, -1, -1))[:, 0], kept)


# ------------------------------ known answers: each formula against an independent computation
# Known-answer tests: each formula against an independent computation (SciPy, scikit-learn,
# autograd written out, or a value derived by hand), so that a wrong constant or operator fails.


@pytest.fixture
def images():
    return torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))


def test_smoothgrad_noise_has_the_stated_sigma():
    """σ = noise_level × input range, measured on the drawn noise (a σ ×10 mistake fails)."""
    x = torch.zeros(3, 16, 16)
    drawn, _ = GaussianNoise(n_samples=400, noise_level=0.15).draw(x, 0, 400, torch.Generator().manual_seed(0))
    assert drawn.std().item() == pytest.approx(0.15, rel=0.02)
    wider, _ = GaussianNoise(400, 0.15, input_range=(-1.0, 1.0)).draw(x, 0, 400, torch.Generator().manual_seed(0))
    assert wider.std().item() == pytest.approx(0.30, rel=0.02)


def test_smoothgrad_on_a_nonlinear_model_is_the_mean_gradient_of_its_own_draws(images):
    """SmoothGrad = mean over samples of ∇f(x + σε), recomputed with plain autograd on the same
    draws (each image's generator from its seed, noise in blocks of 16 samples)."""
    model, sigma, count = nonlinear_model(), 0.15, 20
    target = torch.tensor([0, 1, 2])
    ours = SmoothGrad(model, n_samples=count, noise_level=sigma).attribute(images, target=target, seed=5)
    for index, seed in enumerate(image_seeds(images, 5)):
        generator = torch.Generator().manual_seed(seed)
        noise = torch.cat([torch.randn((min(16, count - start), 3, 8, 8), generator=generator)
                           for start in range(0, count, 16)])
        samples = (images[index] + sigma * noise).requires_grad_(True)
        model(samples)[:, target[index]].sum().backward()
        assert torch.allclose(ours[index], samples.grad.mean(0), atol=1e-6)


def test_suppression_keep_rate_is_uniform():
    """Bernoulli suppression draws a keep rate π ~ U(0, 1) per sample: the kept share of 4096
    pixels follows U(0, 1) (Kolmogorov–Smirnov), and a fixed-rate sampler does not."""
    from scipy import stats

    x = torch.ones(1, 64, 64)
    drawn, _ = Suppression(n_samples=600).draw(x, 0, 600, torch.Generator().manual_seed(1))
    kept = drawn.flatten(1).mean(1).numpy()
    assert stats.kstest(kept, "uniform").pvalue > 0.01
    fixed, _ = Suppression(n_samples=600, mode="fixed", keep_rate=0.5).draw(x, 0, 600, torch.Generator().manual_seed(1))
    assert stats.kstest(fixed.flatten(1).mean(1).numpy(), "uniform").pvalue < 1e-6
    assert set(np.unique(drawn.numpy())) <= {0.0, 1.0}  # erased to the black fill, never blended


def test_suppression_modes_by_distribution():
    """Global: one scale per sample shared by every pixel; continuous: per-pixel uniform values;
    fixed: the stated keep rate."""
    x = torch.ones(1, 32, 32)
    generator = torch.Generator().manual_seed(14)
    scaled, _ = Suppression(n_samples=200, mode="global").draw(x, 0, 200, generator)
    per_sample = scaled.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample))
    assert 0.4 < per_sample[:, 0].mean() < 0.6 and per_sample.min() >= 0 and per_sample.max() <= 1
    continuous, _ = Suppression(n_samples=50, mode="continuous").draw(x, 0, 50, generator)
    assert continuous.flatten(1).std(1).min() > 0.2  # varies inside each sample, not binary
    assert ((continuous > 0) & (continuous < 1)).float().mean() > 0.99
    fixed, _ = Suppression(n_samples=200, mode="fixed", keep_rate=0.25).draw(x, 0, 200, generator)
    assert fixed.mean().item() == pytest.approx(0.25, abs=0.01)


def test_straight_line_path_with_a_baseline():
    """IG's samples x' + α(x − x') on Captum's Gauss–Legendre nodes (50 by default), and the factor
    x − x'."""
    from captum.attr._utils.approximation_methods import approximation_parameters

    from stablesal.explain.gradient.sampling import StraightLinePath

    path = StraightLinePath()
    _, alphas = approximation_parameters("gausslegendre")
    assert path.n_samples == 50 and path.method == "gausslegendre"
    assert torch.allclose(path._alphas, torch.tensor(alphas(50), dtype=torch.float64))
    x, baseline = torch.rand(2, 3, 3), torch.rand(2, 3, 3)
    samples, delta = path.draw(x, 4, 7, None, baseline=baseline)
    expected = baseline + path._alphas[4:7].view(-1, 1, 1, 1).float() * (x - baseline)
    assert torch.allclose(samples, expected) and torch.allclose(delta, (x - baseline).expand(3, -1, -1, -1))
    batch, batch_delta = path.draw_batch(x[None], 4, 7, baseline[None])
    assert torch.allclose(batch[0], expected) and torch.allclose(batch_delta[0], delta)
    zero, _ = path.draw(x, 0, 2, None)
    assert torch.allclose(zero, path._alphas[:2].view(-1, 1, 1, 1).float() * x)


def test_baseline_distribution_draws_count_and_validation():
    from stablesal.explain.gradient.sampling import BaselineDistribution

    references = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)])
    sampler = BaselineDistribution(n_samples=8)
    samples, delta = sampler.draw(torch.full((1, 4, 4), 0.5), 5, 9, torch.Generator().manual_seed(1),
                                  baseline=references)
    assert samples.shape[0] == delta.shape[0] == 4
    # each sample lies on the segment from its reference to x
    chosen = torch.where(delta.flatten(1)[:, :1] > 0, 0.0, 1.0)  # delta = x − x' is +0.5 or −0.5
    assert torch.allclose(delta.abs(), torch.full_like(delta, 0.5))
    alpha = (samples.flatten(1)[:, 0] - chosen[:, 0]) / delta.flatten(1)[:, 0]
    assert ((alpha >= 0) & (alpha <= 1)).all()
    for bad in (None, torch.zeros(1, 4, 4)):
        with pytest.raises(ValueError, match="needs baselines"):
            sampler.draw(torch.zeros(1, 4, 4), 0, 2, torch.Generator(), baseline=bad)


def test_suppression_units_fill_and_counts():
    """Patch units are constant on square patches, segment units on segments, samples count
    stop − start, and erased pixels take the fill value."""
    x = torch.rand(2, 10, 10, generator=torch.Generator().manual_seed(15))
    patches, _ = Suppression(n_samples=20, unit="patch", patch_size=4, fill=0.3).draw(
        x, 5, 9, torch.Generator().manual_seed(2))
    assert patches.shape == (4, 2, 10, 10)
    kept = torch.isclose(patches, x.expand_as(patches))
    assert (kept | torch.isclose(patches, torch.tensor(0.3))).all()
    grid = kept[:, 0, :8, :8].reshape(4, 2, 4, 2, 4)
    assert torch.equal(grid, grid[:, :, :1, :, :1].expand_as(grid))        # 4 × 4 patches
    segments = torch.arange(10).repeat(10, 1) // 5                          # two vertical halves
    sampler = Suppression(n_samples=8, unit="segment")
    first, _ = sampler.draw(x, 0, 8, torch.Generator().manual_seed(3), segments=segments)
    again, _ = sampler.draw(x, 0, 8, torch.Generator().manual_seed(3), segments=segments)
    assert torch.equal(first, again)  # drawn from the given generator
    halves = (first[:, 0] != 0).view(8, 10, 2, 5)
    assert torch.equal(halves, halves[:, :, :, :1].expand_as(halves))


def test_gradient_shap_noise_and_its_message():
    from stablesal.explain.gradient.sampling import BaselineDistribution

    references = torch.zeros(1, 1, 4, 4)
    x = torch.ones(1, 4, 4)
    clean, _ = BaselineDistribution(n_samples=4).draw(x, 0, 4, torch.Generator().manual_seed(0), baseline=references)
    assert torch.allclose(clean, clean.flatten(1)[:, :1].view(4, 1, 1, 1).expand_as(clean))  # on the path: α·x
    noisy, _ = BaselineDistribution(n_samples=4, noise_level=0.5).draw(x, 0, 4, torch.Generator().manual_seed(0),
                                                                     baseline=references)
    assert (noisy - clean).std().item() == pytest.approx(0.5, rel=0.35)
    with pytest.raises(ValueError, match="GradientSHAP needs baselines"):
        BaselineDistribution().draw(x, 0, 1, torch.Generator(), baseline=None)


# ------------------------------ tests the mutation run asked for (marked mutation)
# Tests written against the survivors of `make mutation` (see mutation/*.md): each checks
# a known answer or a property computed independently of the code under test (a value derived by
# hand, NumPy or SciPy), so that a changed constant, operator or argument fails. Every test is fast.


@pytest.mark.mutation
def test_sampler_counts_names_and_defaults():
    from stablesal.explain.gradient.sampling import BaselineDistribution, GaussianNoise, Identity, Suppression

    for bad in (0, -3, 2.5, "8"):
        with pytest.raises(ValueError, match="n_samples must be a positive integer"):
            GaussianNoise(n_samples=bad)
    assert str(GaussianNoise(8, 0.2)) == "gaussian(n=8,sigma=0.2)"
    assert str(Suppression(4, unit="patch", patch_size=2)) == "suppression(fill=0.0,mode=bernoulli,n=4,patch=2,unit=patch)"
    assert (GaussianNoise().n_samples, GaussianNoise().noise_level) == (50, 0.15)
    assert BaselineDistribution().n_samples == 50
    assert Identity().n_samples == 1 and Identity().weights().tolist() == [1.0]


@pytest.mark.mutation
def test_identity_draws_any_range_of_samples():
    from stablesal.explain.gradient.sampling import Identity

    x = torch.arange(6.0).view(1, 2, 3)
    samples, delta = Identity().draw(x, 2, 5, None)
    assert samples.shape == (3, 1, 2, 3) and delta.shape == (3, 1, 2, 3)
    assert torch.equal(samples, x.expand(3, 1, 2, 3)) and torch.equal(delta, samples)
    inputs = torch.stack([x, x + 1])
    batch, batch_delta = Identity().draw_batch(inputs, 2, 5, None)
    assert batch.shape == (2, 3, 1, 2, 3) and torch.equal(batch[1, 2], x + 1) and torch.equal(batch_delta, batch)


@pytest.mark.mutation
def test_suppression_messages():
    from stablesal.explain.gradient.sampling import Suppression

    with pytest.raises(ValueError, match="mode must be one of"):
        Suppression(mode="erase")
    with pytest.raises(ValueError, match="unit must be 'pixel', 'patch' or 'segment'"):
        Suppression(unit="row")
    with pytest.raises(ValueError, match=r"keep_rate must be in \[0, 1\]"):
        Suppression(keep_rate=1.5)


@pytest.mark.mutation
def test_suppression_keeps_a_unit_only_strictly_below_the_rate():
    """Fixed rate π: a pixel is kept when its uniform u < π (P = π exactly); a pixel whose u
    equals π is erased. π is set to one of the uniforms the sampler draws."""
    from stablesal.explain.gradient.sampling import Suppression

    uniforms = torch.rand((2, 12), generator=torch.Generator().manual_seed(4))
    rate = uniforms[0, 5].item()
    drawn, _ = Suppression(2, mode="fixed", keep_rate=rate).draw(torch.ones(1, 3, 4), 0, 2,
                                                                 torch.Generator().manual_seed(4))
    assert torch.equal(drawn.view(2, 12), (uniforms < rate).float()) and drawn.view(2, 12)[0, 5] == 0


@pytest.mark.mutation
def test_gradient_shap_samples_from_the_generator_stream():
    """x̂ = x' + α (x − x') (+ σε), recomputed from the image's generator in the documented order
    (baseline index, α, then the noise), in the images' dtype, over two consecutive blocks; with
    σ = 0 no noise is drawn, so the second block starts where the first one's α ended."""
    from stablesal.explain.gradient.sampling import BaselineDistribution

    x = torch.rand(2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    references = torch.rand(5, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for sigma in (0.0, 0.2):
        sampler = BaselineDistribution(n_samples=6, noise_level=sigma, input_range=(-1.0, 1.0))
        generator, replay = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
        for start, stop in ((0, 4), (4, 6)):
            samples, delta = sampler.draw(x, start, stop, generator, baseline=references)
            count = stop - start
            pick = torch.randint(0, 5, (count,), generator=replay)
            alpha = torch.rand((count, 1, 1, 1), generator=replay, dtype=torch.float64)
            chosen = references[pick]
            expected = chosen + alpha * (x - chosen)
            if sigma > 0:
                expected = expected + 2 * sigma * torch.randn(expected.shape, generator=replay, dtype=torch.float64)
            assert samples.dtype == torch.float64
            assert torch.allclose(samples, expected, rtol=0, atol=1e-12)
            assert torch.allclose(delta, x - chosen, rtol=0, atol=0)


@pytest.mark.mutation
def test_gradient_shap_noise_is_a_fraction_of_the_input_range():
    """σ = noise_level × (high − low): 0.5 of the range (−1, 1) is σ = 1."""
    from stablesal.explain.gradient.sampling import BaselineDistribution

    x = torch.zeros(1, 32, 32)
    references = torch.zeros(1, 1, 32, 32)
    noisy, _ = BaselineDistribution(n_samples=16, noise_level=0.5, input_range=(-1.0, 1.0)).draw(
        x, 0, 16, torch.Generator().manual_seed(3), baseline=references)
    assert noisy.std().item() == pytest.approx(1.0, rel=0.05)


@pytest.mark.mutation
def test_gradient_shap_message_is_exact():
    from stablesal.explain.gradient.sampling import BaselineDistribution

    with pytest.raises(ValueError, match=r"^GradientSHAP needs baselines=<tensor \[M, C, H, W\]> \(a set of reference images\)$"):
        BaselineDistribution().draw(torch.zeros(1, 2, 2), 0, 1, torch.Generator(), baseline=None)


@pytest.mark.mutation
def test_noise_samplers_draw_in_the_images_dtype():
    """SmoothGrad's Gaussian (and uniform) noise is drawn in the images' dtype: float64 images get
    the generator's float64 normals, recomputed here from the same seed."""
    from stablesal.explain.gradient.sampling import GaussianNoise, UniformNoise

    x = torch.rand(2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    samples, _ = GaussianNoise(4, 0.1).draw(x, 0, 4, torch.Generator().manual_seed(2))
    noise = torch.randn((4, 2, 3, 3), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert samples.dtype == torch.float64 and torch.allclose(samples, x + 0.1 * noise, rtol=0, atol=1e-15)
    samples, _ = UniformNoise(4, 0.1).draw(x, 0, 4, torch.Generator().manual_seed(2))
    uniform = torch.rand((4, 2, 3, 3), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert samples.dtype == torch.float64 and torch.allclose(samples, x + 0.1 * (2 * uniform - 1), rtol=0, atol=1e-15)


@pytest.mark.mutation
def test_suppression_keeps_the_images_dtype():
    """x̂ = m ⊙ x + (1 − m) ⊙ fill in the images' dtype: half-precision images stay half, float64
    images get the fill in float64 (continuous mode: m ~ U(0, 1) per pixel)."""
    from stablesal.explain.gradient.sampling import Suppression

    x = torch.rand(1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    drawn, _ = Suppression(3, mode="continuous", fill=0.3).draw(x, 0, 3, torch.Generator().manual_seed(6))
    mask = torch.rand((3, 16), generator=torch.Generator().manual_seed(6)).double().view(3, 1, 4, 4)
    assert drawn.dtype == torch.float64
    assert torch.allclose(drawn, mask * x + (1 - mask) * 0.3, rtol=0, atol=1e-15)
    half, _ = Suppression(3).draw(x.half(), 0, 3, torch.Generator().manual_seed(6))
    assert half.dtype == torch.float16


@pytest.mark.mutation
def test_uniform_noise_half_width_and_ranges():
    """ε ~ U(−a, a) with a = noise_level × (high − low): 0.25 of the range (−1, 1) is a = 0.5;
    samples start..stop−1 are stop − start samples."""
    from stablesal.explain.gradient.sampling import UniformNoise

    x = torch.zeros(1, 8, 8)
    samples, _ = UniformNoise(8, 0.25, input_range=(-1.0, 1.0)).draw(x, 2, 6, torch.Generator().manual_seed(1))
    uniform = torch.rand((4, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    assert samples.shape == (4, 1, 8, 8)
    assert torch.allclose(samples, 0.5 * (2 * uniform - 1), rtol=0, atol=1e-7)


@pytest.mark.mutation
def test_suppression_names_its_fixed_rate():
    from stablesal.explain.gradient.sampling import Suppression

    assert str(Suppression(4, mode="fixed", keep_rate=0.3)) == "suppression(fill=0.0,keep=0.3,mode=fixed,n=4,unit=pixel)"
    assert "keep" not in str(Suppression(4))


@pytest.mark.mutation
def test_suppression_names_a_bad_fill():
    from stablesal.explain.gradient.sampling import Suppression

    with pytest.raises(ValueError, match="^fill: unknown fill 'nosie'"):
        Suppression(4, fill="nosie")


# ------------------------------ tests the mutation run asked for (marked mutation)
# The counter-based draws against a by-hand Python version of the documented stream layout
# (docs/methods.md §1): sub-stream t of seed s is seeded with mix64(s + (t + 1)·C); sample k of a
# quantity with m values per sample reads words k·m … k·m + m − 1 of its sub-stream. Written for
# the mutants of `make mutation` that the distribution tests could not see (a swapped sub-stream,
# a sign of symmetric noise, the input range, a dtype).


SUBSTREAM = 0xD1B54A32D192ED03


def mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def sub(seed: int, tag: int) -> int:
    return mix((seed + (tag + 1) * SUBSTREAM) & MASK)


def ref_uniform(seed: int, skip: int, count: int) -> list[float]:
    return [((w >> 11) + 0.5) / 2**53 for w in reference_splitmix64(seed, count, skip)]


def ref_normal(seed: int, skip: int, count: int) -> list[float]:
    out = []
    for w in reference_splitmix64(seed, count, skip):
        u1, u2 = ((w >> 32) + 0.5) / 2**32, ((w & 0xFFFFFFFF) + 0.5) / 2**32
        out.append(math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2))
    return out


VALUES = X[0].numel()


def expected(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).view_as(X)


@pytest.mark.mutation
def test_gaussian_and_uniform_noise_follow_the_layout_and_the_input_range():
    noise = expected(ref_normal(sub(SEED, 0), SAMPLE * VALUES, VALUES))
    drawn, _ = GaussianNoise(8, noise_level=0.1, input_range=(0.5, 2.5)).draw_rows(X, *ROWS)
    torch.testing.assert_close(drawn, X + 0.2 * noise, rtol=0, atol=1e-12)  # σ = 0.1 × (2.5 − 0.5)
    shift = expected(ref_uniform(sub(SEED, 0), SAMPLE * VALUES, VALUES))
    drawn, _ = UniformNoise(8, noise_level=0.1, input_range=(0.5, 2.5)).draw_rows(X, *ROWS)
    torch.testing.assert_close(drawn, X + 0.2 * (2 * shift - 1), rtol=0, atol=1e-12)
    assert GaussianNoise(8).draw_rows(X.float(), *ROWS)[0].dtype == torch.float32
    assert UniformNoise(8).draw_rows(X.float(), *ROWS)[0].dtype == torch.float32


@pytest.mark.mutation
def test_suppression_masks_follow_the_layout():
    units = 9
    keep = ref_uniform(sub(SEED, 0), SAMPLE * units, units)
    rate = ref_uniform(sub(SEED, 1), SAMPLE, 1)[0]
    mask = torch.tensor([u < rate for u in keep], dtype=torch.float64).view(1, 1, 3, 3)
    drawn, _ = Suppression(8, fill=0.5).draw_rows(X, *ROWS)
    torch.testing.assert_close(drawn, mask * X + (1 - mask) * 0.5, rtol=0, atol=0)  # erased pixels are the fill
    scale = ref_uniform(sub(SEED, 1), SAMPLE, 1)[0]
    torch.testing.assert_close(Suppression(8, mode="global").draw_rows(X, *ROWS)[0], scale * X, rtol=0, atol=1e-15)
    # segments: the image's own count (here 2) sets the stride of its keep values
    segments = torch.tensor([[0, 0, 1], [0, 1, 1], [1, 1, 1]]).unsqueeze(0)
    keep = ref_uniform(sub(SEED, 0), SAMPLE * 2, 2)
    mask = torch.tensor([keep[s] < rate for s in segments.flatten().tolist()], dtype=torch.float64).view(1, 1, 3, 3)
    drawn, _ = Suppression(8, unit="segment").draw_rows(X, *ROWS, segments=segments)
    torch.testing.assert_close(drawn, mask * X, rtol=0, atol=0)
    # continuous keep values are the uniforms themselves, in double precision
    factor = torch.tensor([keep[s] for s in segments.flatten().tolist()], dtype=torch.float64).view(1, 1, 3, 3)
    drawn, _ = Suppression(8, unit="segment", mode="continuous").draw_rows(X, *ROWS, segments=segments)
    torch.testing.assert_close(drawn, factor * X, rtol=0, atol=1e-15)
    factor = torch.tensor(ref_uniform(sub(SEED, 0), SAMPLE * units, units), dtype=torch.float64).view(1, 1, 3, 3)
    drawn, _ = Suppression(8, mode="continuous").draw_rows(X, *ROWS)
    torch.testing.assert_close(drawn, factor * X, rtol=0, atol=1e-15)


@pytest.mark.mutation
def test_segment_mean_fill_reads_the_rows_segments():
    segments = torch.tensor([[0, 0, 1], [0, 1, 1], [1, 1, 1]]).unsqueeze(0)
    drawn, _ = Suppression(8, mode="fixed", keep_rate=0.0, unit="segment", fill="segment-mean").draw_rows(
        X, *ROWS, segments=segments)
    for label in (0, 1):
        inside = segments[0] == label
        means = X[0][:, inside].mean(1, keepdim=True)
        torch.testing.assert_close(drawn[0][:, inside], means.expand(-1, int(inside.sum())))


@pytest.mark.mutation
def test_suppression_generator_draw_keeps_its_documented_order():
    """Generator streams: per block, the keep values [count, units] first, then the keep rates."""
    segments = torch.tensor([[0, 0, 1], [0, 1, 1], [1, 1, 1]])
    drawn, _ = Suppression(4, unit="segment").draw(X[0], 0, 4, torch.Generator().manual_seed(5), segments=segments)
    by_hand = torch.Generator().manual_seed(5)
    keep, rate = torch.rand((4, 2), generator=by_hand), torch.rand((4, 1), generator=by_hand)
    mask = (keep < rate).double()[:, segments.reshape(-1)].view(4, 1, 3, 3)
    torch.testing.assert_close(drawn, mask * X[0], rtol=0, atol=0)


@pytest.mark.mutation
def test_gradient_shap_rows_follow_the_layout():
    references = torch.rand(5, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    pick = int(ref_uniform(sub(SEED, 0), SAMPLE, 1)[0] * 5)
    alpha = ref_uniform(sub(SEED, 1), SAMPLE, 1)[0]
    noise = expected(ref_normal(sub(SEED, 2), SAMPLE * VALUES, VALUES))
    chosen = references[pick:pick + 1]
    x_hat, delta = BaselineDistribution(8, noise_level=0.1, input_range=(0.5, 2.5)).draw_rows(
        X, *ROWS, baseline=references)
    torch.testing.assert_close(delta, X - chosen, rtol=0, atol=0)
    torch.testing.assert_close(x_hat, chosen + alpha * (X - chosen) + 0.2 * noise, rtol=0, atol=1e-12)
    plain, _ = BaselineDistribution(8).draw_rows(X, *ROWS, baseline=references)
    torch.testing.assert_close(plain, chosen + alpha * (X - chosen), rtol=0, atol=1e-15)
    assert BaselineDistribution(8, noise_level=0.1).draw_rows(X.float(), *ROWS, baseline=references.float())[0].dtype \
        == torch.float32
    with pytest.raises(ValueError, match=r"^GradientSHAP needs baselines=<tensor \[M, C, H, W\]> \(a set of reference "
                                         r"images\)$"):
        BaselineDistribution(8).draw_rows(X, *ROWS)
