"""Chunk sizes chosen by measurement, and frozen parameter gradients.

Model passes over many (image, sample) rows run in chunks. The chunk size is the one with the
best measured throughput on this model, input shape and device (timed once per process and
cached), so memory stays bounded and no size is tuned by hand for one machine. While maps are
computed the parameters' ``requires_grad`` is off: the backward pass then skips weight gradients.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch


@contextmanager
def frozen_parameters(model):
    """Turn off parameter gradients for the duration (the backward pass then skips weight
    gradients), restoring each parameter's flag afterwards."""
    params = [p for p in model.parameters()] if isinstance(model, torch.nn.Module) else []
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


_CHUNK_CACHE: dict[tuple, int] = {}


def _architecture_key(model, shape, device, score) -> tuple:
    if isinstance(model, torch.nn.Module):
        signature = tuple((type(m).__name__) for m in model.modules()) + tuple(
            tuple(p.shape) for p in model.parameters())
    else:
        signature = (id(model),)
    return signature, tuple(shape), str(device), score


def measure_chunk_size(forward, sample_shape, device, max_elements: int = 1 << 22, candidates=None,
                       backward: bool = True, dtype=torch.float32) -> int:
    """Rows per forward/backward pass (forward only with ``backward=False``, under inference
    mode) with the best measured throughput.

    Candidates double from 16 while a chunk's input stays under ``max_elements`` values
    (16 MiB of float32), and the search stops once throughput falls 15 % below the best.
    """
    numel = 1
    for size in sample_shape:
        numel *= size
    cap = max(1, max_elements // numel)
    candidates = candidates or [c for c in (16, 32, 64, 128, 256, 512, 1024) if c <= cap] or [cap]
    # One pass with the largest chunk first: CPU allocators (glibc's dynamic mmap threshold) and
    # oneDNN warm up on it, and without this the first candidates measure cold and look slow.
    _time_pass(forward, (candidates[-1], *sample_shape), device, dtype, backward)
    best, best_rate = candidates[0], 0.0
    for rows in candidates:
        timings = [_time_pass(forward, (rows, *sample_shape), device, dtype, backward) for _ in range(2)]
        rate = rows / min(timings)
        if rate > best_rate:
            best, best_rate = rows, rate
        elif rate < 0.85 * best_rate:
            break
    return best


def _time_pass(forward, shape, device, dtype, backward: bool) -> float:
    """Seconds for one forward (and backward) pass of a random batch of ``shape``."""
    x = torch.rand(shape, device=device, dtype=dtype, requires_grad=backward)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    began = time.perf_counter()
    if backward:
        torch.autograd.grad(forward(x)[:, 0].sum(), x)
    else:
        with torch.inference_mode():
            forward(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - began


_FORWARD_CHUNK_CACHE: dict[tuple, int] = {}


def measure_forward_chunk(forward, sample_shape, device, dtype=torch.float32) -> int:
    """Rows per forward pass with the best measured throughput (inference mode; the search of
    :func:`measure_chunk_size` from 32 rows), cached per model
    architecture, input shape, device and dtype."""
    key = (tuple(type(m).__name__ for m in forward.modules()) if isinstance(forward, torch.nn.Module) else id(forward),
           tuple(sample_shape), str(device), dtype)
    if key not in _FORWARD_CHUNK_CACHE:
        numel = 1
        for size in sample_shape:
            numel *= size
        candidates = [c for c in (32, 64, 128, 256, 512, 1024) if c * numel <= 1 << 23] or [max(1, (1 << 23) // numel)]
        _FORWARD_CHUNK_CACHE[key] = measure_chunk_size(forward, sample_shape, device, candidates=candidates, backward=False,
                                               dtype=dtype)
    return _FORWARD_CHUNK_CACHE[key]


def gradient_chunk(model, forward, sample_shape, device, score: str) -> int:
    """Rows per forward/backward pass of ``forward`` (a wrapper of ``model`` that returns the
    score ``score``), measured once per model architecture, input shape, device and score."""
    key = _architecture_key(model, sample_shape, device, score)
    if key not in _CHUNK_CACHE:
        _CHUNK_CACHE[key] = measure_chunk_size(forward, sample_shape, device)
    return _CHUNK_CACHE[key]
