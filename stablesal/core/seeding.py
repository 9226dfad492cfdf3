"""One seed derivation for the whole package.

Every random choice in stablesal takes an explicit seed; when one seed has to give rise to
several independent streams (the K models' explainer draws, a test–retest repeat, the untrained
null's initialisations, each image's generator) the stream's seed is ``derive(seed, *keys)``,
where the keys name the stream. Reading the keys at a call site shows the study's independence
structure: two streams share draws exactly when their keys are equal.
"""

from __future__ import annotations

import hashlib

import torch

_MASK64 = (1 << 64) - 1


def mix(*values: int) -> int:
    """A 63-bit seed from several integers (a splitmix64-style mixer), so that (seed, epoch),
    (seed, model) ... pairs never collide in practice."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state ^ (int(value) + 0x9E3779B97F4A7C15 + (state << 6) + (state >> 2))) & _MASK64
        state = (state * 0xBF58476D1CE4E5B9) & _MASK64
        state ^= state >> 31
    return state & ((1 << 63) - 1)


def _key_int(key) -> int:
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise TypeError(f"derive() keys must be int or str, got {type(key).__name__} {key!r}")
    if isinstance(key, int):
        return key
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def derive(seed: int, *keys: int | str) -> int:
    """The seed of the stream named by ``keys`` under ``seed`` (63-bit, deterministic).

    ``derive(seed)`` with no keys is ``seed`` itself, so code that takes a plain seed and code
    that derives one agree when nothing is derived.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    if not keys:
        return seed
    return mix(seed, *(_key_int(key) for key in keys))


def image_seeds(images: torch.Tensor, seed: int | torch.Generator) -> list[int]:
    """One 63-bit seed per image from ``seed`` and the image's bytes: independent of batch and position."""
    if isinstance(seed, torch.Generator):
        seed = int(torch.randint(0, 2**62, (1,), generator=seed).item())
    if not isinstance(seed, int):
        raise TypeError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}")
    pixels = images.detach().to("cpu", torch.float32).contiguous().numpy()
    return [mix(seed, int.from_bytes(hashlib.blake2b(p.tobytes(), digest_size=8).digest(), "little")) for p in pixels]
