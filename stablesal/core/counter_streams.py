"""Counter-based random streams: any word of any image's stream, for a whole chunk at once.

A random sampler's draws must not depend on the batch or the chunk an image lands in, so each
image has its own stream. With ``torch.Generator`` that means one generator per image and one
draw per block of samples: on a GPU, a handful of kernel launches per image and block. Here the
stream is SplitMix64 (Steele, Lea & Flood, *Fast splittable pseudorandom number generators*,
OOPSLA 2014): word ``n`` of the stream seeded with ``s`` is ``mix64(s + (n + 1)·γ)``, a pure
function of ``(s, n)``. Any rows of any streams are therefore computed together, with the same
dozen elementwise kernels whatever their number; the words do not depend on how rows are grouped.

The arithmetic is in int64 with wrap-around (the low 64 bits of the unsigned result) and logical
shifts made from arithmetic ones by masking, so CPU and CUDA compute the same bits. On the CPU the
eager integer kernels cost more than ``torch.randn`` (a sampled method 2-14 % slower at 32 px,
``benchmarks/results/gradient.json``), so the CPU keeps the per-image generators; see
:class:`stablesal.attribution.GradientIntegration` (``rng``).
"""

from __future__ import annotations

import math

import torch

GOLDEN_GAMMA = 0x9E3779B97F4A7C15  # SplitMix64's increment: 2⁶⁴ / φ, odd
_MIX_1 = 0xBF58476D1CE4E5B9  # Stafford's "variant 13" finaliser constants, as in SplitMix64
_MIX_2 = 0x94D049BB133111EB
_SUBSTREAM = 0xD1B54A32D192ED03  # spreads sub-stream tags over the seed space (an odd constant)


def _signed(value: int) -> int:
    """An unsigned 64-bit constant as the int64 with the same bits."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _shift_right(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns (torch's ``>>`` is arithmetic)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def mix64(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's output function on int64 bit patterns (any shape)."""
    z = z ^ _shift_right(z, 30)
    z = z * _signed(_MIX_1)
    z = z ^ _shift_right(z, 27)
    z = z * _signed(_MIX_2)
    return z ^ _shift_right(z, 31)


def as_seeds(seeds, device=None) -> torch.Tensor:
    """Python ints (any size, taken mod 2⁶⁴) or an int64 tensor as an int64 tensor ``[R]``."""
    if isinstance(seeds, torch.Tensor):
        if seeds.dtype != torch.int64:
            raise TypeError(f"seeds must be an int64 tensor, got {seeds.dtype}")
        return seeds.to(device)
    return torch.tensor([_signed(int(s)) for s in seeds], dtype=torch.int64, device=device)


def substream(seeds: torch.Tensor, tag: int) -> torch.Tensor:
    """Seeds of an independent stream ``tag`` (a small int) for each seed ``[R]``: one stream per
    quantity a sampler draws, so that each can be indexed by sample without a shared layout."""
    return mix64(seeds + _signed((tag + 1) * _SUBSTREAM))


def words(seeds: torch.Tensor, offsets: torch.Tensor, count: int) -> torch.Tensor:
    """Words ``offsets[r] .. offsets[r] + count − 1`` of the stream seeded with ``seeds[r]``:
    int64 bit patterns ``[R, count]``. ``seeds``, ``offsets``: int64 ``[R]`` on one device."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    index = offsets.view(-1, 1) + torch.arange(1, count + 1, device=offsets.device, dtype=torch.int64)
    return mix64(seeds.view(-1, 1) + index * _signed(GOLDEN_GAMMA))


def _unit_interval(bits: torch.Tensor, width: int, dtype: torch.dtype) -> torch.Tensor:
    """``width``-bit unsigned integers (int64) as (bits + ½) / 2^width, computed in float64."""
    return (bits.to(torch.float64) + 0.5).mul_(2.0 ** -width).to(dtype)


def uniform(seeds: torch.Tensor, offsets: torch.Tensor, count: int, dtype=torch.float32) -> torch.Tensor:
    """U(0, 1) from the top 53 bits of each word: ``[R, count]``, in (0, 1] after rounding to
    ``dtype`` (1 where rounding reaches it; 0 never in float32 or float64, but possible in float16)."""
    return _unit_interval(_shift_right(words(seeds, offsets, count), 11), 53, dtype)


def normal(seeds: torch.Tensor, offsets: torch.Tensor, count: int, dtype=torch.float32) -> torch.Tensor:
    """N(0, 1) by Box–Muller, one word per value (its two 32-bit halves are the two uniforms):
    ``[R, count]``. The smallest uniform, 2⁻³³, bounds |z| by 6.8."""
    word = words(seeds, offsets, count)
    u1 = _unit_interval(_shift_right(word, 32), 32, torch.float64)
    u2 = _unit_interval(word & 0xFFFFFFFF, 32, torch.float64)
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)).to(dtype)
