"""The counter-based draws against a by-hand Python version of the documented stream layout
(docs/methods.md §1): sub-stream t of seed s is seeded with mix64(s + (t + 1)·C); sample k of a
quantity with m values per sample reads words k·m … k·m + m − 1 of its sub-stream. Written for
the mutants of `make mutation` that the distribution tests could not see (a swapped sub-stream,
a sign of symmetric noise, the input range, a dtype)."""

import math

import pytest
import torch

from stablesal.counter_streams import as_seeds, words
from stablesal.sampling import BaselineDistribution, GaussianNoise, Identity, Suppression, UniformNoise

from test_counter_streams import MASK, reference_splitmix64

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


SEED, SAMPLE = 31337, 3
X = torch.rand(1, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
VALUES = X[0].numel()
ROWS = (torch.tensor([SAMPLE]), as_seeds([SEED]))


def expected(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).view_as(X)


def test_gaussian_and_uniform_noise_follow_the_layout_and_the_input_range():
    noise = expected(ref_normal(sub(SEED, 0), SAMPLE * VALUES, VALUES))
    drawn, _ = GaussianNoise(8, noise_level=0.1, input_range=(0.5, 2.5)).draw_rows(X, *ROWS)
    torch.testing.assert_close(drawn, X + 0.2 * noise, rtol=0, atol=1e-12)  # σ = 0.1 × (2.5 − 0.5)
    shift = expected(ref_uniform(sub(SEED, 0), SAMPLE * VALUES, VALUES))
    drawn, _ = UniformNoise(8, noise_level=0.1, input_range=(0.5, 2.5)).draw_rows(X, *ROWS)
    torch.testing.assert_close(drawn, X + 0.2 * (2 * shift - 1), rtol=0, atol=1e-12)
    assert GaussianNoise(8).draw_rows(X.float(), *ROWS)[0].dtype == torch.float32
    assert UniformNoise(8).draw_rows(X.float(), *ROWS)[0].dtype == torch.float32


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


def test_segment_mean_fill_reads_the_rows_segments():
    segments = torch.tensor([[0, 0, 1], [0, 1, 1], [1, 1, 1]]).unsqueeze(0)
    drawn, _ = Suppression(8, mode="fixed", keep_rate=0.0, unit="segment", fill="segment-mean").draw_rows(
        X, *ROWS, segments=segments)
    for label in (0, 1):
        inside = segments[0] == label
        means = X[0][:, inside].mean(1, keepdim=True)
        torch.testing.assert_close(drawn[0][:, inside], means.expand(-1, int(inside.sum())))


def test_suppression_generator_draw_keeps_its_documented_order():
    """Generator streams: per block, the keep values [count, units] first, then the keep rates."""
    segments = torch.tensor([[0, 0, 1], [0, 1, 1], [1, 1, 1]])
    drawn, _ = Suppression(4, unit="segment").draw(X[0], 0, 4, torch.Generator().manual_seed(5), segments=segments)
    by_hand = torch.Generator().manual_seed(5)
    keep, rate = torch.rand((4, 2), generator=by_hand), torch.rand((4, 1), generator=by_hand)
    mask = (keep < rate).double()[:, segments.reshape(-1)].view(4, 1, 3, 3)
    torch.testing.assert_close(drawn, mask * X[0], rtol=0, atol=0)


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


def test_stream_edges():
    assert torch.equal(as_seeds([2**63]), torch.tensor([-(2**63)]))  # 2⁶³ is the first negative bit pattern
    assert words(as_seeds([1, 2]), torch.tensor([0, 0]), 0).shape == (2, 0)
    with pytest.raises(NotImplementedError, match="^Identity has no counter-based draw$"):
        Identity().draw_rows(X, *ROWS)
