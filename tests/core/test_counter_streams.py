"""Tests of :mod:`stablesal.core.counter_streams`.

Counter-based streams against SplitMix64's published outputs and a by-hand Python version."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from stablesal.core.counter_streams import as_seeds, mix64, normal, substream, uniform, words
from stablesal.explain.gradient.sampling import Identity

from tests.helpers.streams import MASK, ROWS, X, reference_splitmix64


def unsigned(tensor: torch.Tensor) -> list[list[int]]:
    return [[int(v) & MASK for v in row] for row in tensor]


def test_the_published_outputs_of_seed_1234567():
    # the first five outputs of SplitMix64 seeded with 1234567 (Rosetta Code, "Pseudo-random numbers/Splitmix64")
    got = unsigned(words(as_seeds([1234567]), torch.zeros(1, dtype=torch.int64), 5))[0]
    assert got == [6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431,
                   16408922859458223821]


def test_any_seed_and_offset_equal_the_reference():
    seeds = [0, 1, 2**63 + 12345, MASK, 987654321987654321]
    offsets = [0, 7, 3, 1000, 2**40]
    got = unsigned(words(as_seeds(seeds), torch.tensor(offsets), 6))
    assert got == [reference_splitmix64(s, 6, skip=o) for s, o in zip(seeds, offsets)]
    assert (int(mix64(torch.tensor([0]))[0]) & MASK) == 0  # the finaliser fixes 0


def test_words_do_not_depend_on_how_they_are_grouped():
    seeds = as_seeds([11, 22, 33])
    whole = words(seeds, torch.tensor([0, 5, 9]), 12)
    parts = torch.cat([words(seeds, torch.tensor([0, 5, 9]) + start, 4) for start in (0, 4, 8)], dim=1)
    assert torch.equal(whole, parts)
    one_row = words(seeds[1:2], torch.tensor([5]), 12)
    assert torch.equal(one_row[0], whole[1])


def test_uniforms_are_the_top_bits_and_uniform():
    seeds, offsets = as_seeds([2024]), torch.tensor([0])
    u = uniform(seeds, offsets, 20_000, dtype=torch.float64)[0]
    expected = [((w >> 11) + 0.5) / 2**53 for w in reference_splitmix64(2024, 5)]
    assert u[:5].tolist() == pytest.approx(expected, rel=1e-15)
    assert 0 < float(u.min()) and float(u.max()) <= 1
    assert stats.kstest(u.numpy(), "uniform").pvalue > 1e-3


def test_normals_are_box_muller_of_the_two_halves():
    seeds, offsets = as_seeds([77]), torch.tensor([3])
    z = normal(seeds, offsets, 20_000, dtype=torch.float64)[0]
    by_hand = []
    for w in reference_splitmix64(77, 4, skip=3):
        u1, u2 = ((w >> 32) + 0.5) / 2**32, ((w & 0xFFFFFFFF) + 0.5) / 2**32
        by_hand.append(math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2))
    assert z[:4].tolist() == pytest.approx(by_hand, rel=1e-12)
    assert stats.kstest(z.numpy(), "norm").pvalue > 1e-3
    assert normal(seeds, offsets, 8).dtype == torch.float32


def test_substreams_are_different_streams():
    seeds = as_seeds([5, 6])
    a, b = substream(seeds, 0), substream(seeds, 1)
    assert not torch.equal(a, b) and not torch.equal(a, seeds)
    ua = uniform(a, torch.zeros(2, dtype=torch.int64), 5000, torch.float64).numpy()
    ub = uniform(b, torch.zeros(2, dtype=torch.int64), 5000, torch.float64).numpy()
    assert abs(np.corrcoef(ua[0], ub[0])[0, 1]) < 0.05 and abs(np.corrcoef(ua[0], ua[1])[0, 1]) < 0.05


def test_seeds_are_taken_mod_two_to_the_64():
    assert torch.equal(as_seeds([2**64 + 3, -1]), torch.tensor([3, -1]))
    with pytest.raises(TypeError, match="int64"):
        as_seeds(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="count must be >= 0"):
        words(as_seeds([1]), torch.tensor([0]), -1)


# ------------------------------ tests the mutation run asked for (marked mutation)
# The counter-based draws against a by-hand Python version of the documented stream layout
# (docs/methods.md §1): sub-stream t of seed s is seeded with mix64(s + (t + 1)·C); sample k of a
# quantity with m values per sample reads words k·m … k·m + m − 1 of its sub-stream. Written for
# the mutants of `make mutation` that the distribution tests could not see (a swapped sub-stream,
# a sign of symmetric noise, the input range, a dtype).


@pytest.mark.mutation
def test_stream_edges():
    assert torch.equal(as_seeds([2**63]), torch.tensor([-(2**63)]))  # 2⁶³ is the first negative bit pattern
    assert words(as_seeds([1, 2]), torch.tensor([0, 0]), 0).shape == (2, 0)
    with pytest.raises(NotImplementedError, match="^Identity has no counter-based draw$"):
        Identity().draw_rows(X, *ROWS)
