"""A reference SplitMix64 in plain Python and the rows of counter-based draws that the sampler tests
compare with it."""

import torch

from stablesal.core.counter_streams import as_seeds


def rows_of(count: int, seed: int = 9):
    """``count`` consecutive samples of one image's stream: (sample index, seeds) ``[count]``."""
    return torch.arange(count), as_seeds([seed] * count)


MASK = (1 << 64) - 1


def reference_splitmix64(seed: int, count: int, skip: int = 0) -> list[int]:
    """Vigna's C reference (splitmix64.c) with Python integers: state += γ; mix the state. The
    first ``skip`` outputs are jumped over by advancing the state ``skip`` increments at once."""
    state, out = (seed + skip * 0x9E3779B97F4A7C15) & MASK, []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        out.append(z ^ (z >> 31))
    return out


SEED, SAMPLE = 31337, 3


X = torch.rand(1, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


ROWS = (torch.tensor([SAMPLE]), as_seeds([SEED]))
