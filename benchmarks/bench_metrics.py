"""Deletion curve: stablesal vs Quantus' PixelFlipping vs a plain batched torch loop.

Same model, images, maps and steps for the three: every step removes the next 1/steps of the
pixels (all channels of a pixel) in order of decreasing attribution and sets them to 0. The script
checks that the curves agree, then times the three, for models of increasing cost:

- ``linear`` and ``mlp`` (one hidden layer of 128): the forward pass is nearly free, so the time is
  the metric's own overhead (Quantus' per-step NumPy copies, checks and model wrapper);
- ``small_cnn``: stablesal's CIFAR-style CNN, where the model's passes dominate and every correct
  implementation approaches the same floor.

Quantus (pip package ``quantus``) is a benchmark-only dependency (``pip install -e .[bench]``).

    python benchmarks/bench_metrics.py [--images 16] [--size 32] [--steps 32] [--channels 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_gradient import best_time  # noqa: E402  (benchmarks/ is on the path when run as a script)
from stablesal.metrics import deletion_insertion  # noqa: E402
from stablesal.models import build_model  # noqa: E402


@torch.inference_mode()
def plain_loop(model, images, maps, target, steps):
    """The floor: one batched forward per step, pixels ranked once."""
    batch, _, height, width = images.shape
    order = maps.flatten(1).argsort(dim=1, descending=True)
    current = images.clone().flatten(2)
    per_step = height * width // steps
    curves = []
    for step in range(steps):
        idx = order[:, step * per_step:(step + 1) * per_step]
        current.scatter_(2, idx.unsqueeze(1).expand(-1, images.shape[1], -1), 0.0)
        curves.append(torch.softmax(model(current.view_as(images)), 1).gather(1, target.view(-1, 1))[:, 0])
    return torch.stack(curves, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=32)
    # one channel by default: Quantus asserts that features_in_step divides H·W but then counts C·H·W
    # features, so with C = 3 and a power-of-two side no step size removes whole pixels
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=["linear", "mlp", "small_cnn"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/metrics.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    import quantus

    generator = torch.Generator().manual_seed(0)
    shape = (args.channels, args.size, args.size)
    images = torch.rand(args.images, *shape, generator=generator)
    maps = torch.rand(args.images, 1, args.size, args.size, generator=generator)  # distinct values: no ties
    # Quantus ranks every channel value on its own: give it the map repeated over channels, so the
    # C equal values of a pixel sort next to each other and a step of C·H·W/steps values removes
    # exactly the pixels of a step of stablesal
    maps_quantus = maps.expand(-1, args.channels, -1, -1).contiguous().numpy()
    metric = quantus.PixelFlipping(features_in_step=args.channels * args.size * args.size // args.steps,
                                   perturb_baseline=0.0, normalise=False, abs=False, disable_warnings=True,
                                   display_progressbar=False)
    results = {"machine": platform.machine(), "threads": torch.get_num_threads(), "images": args.images,
               "size": args.size, "channels": args.channels, "steps": args.steps, "quantus": quantus.__version__,
               "models": {}}
    failed = False
    for name in args.models:
        model = make_model(name, shape)
        with torch.inference_mode():
            target = model(images).argmax(1)

        def run_quantus():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return np.asarray(metric(model=model, x_batch=images.numpy(), y_batch=target.numpy(),
                                         a_batch=maps_quantus, device="cpu", softmax=True))

        def run_stablesal():
            return deletion_insertion(model, images, maps, target, steps=args.steps, substrate=0.0)

        curves, _ = run_stablesal()
        difference_quantus = float(np.abs(run_quantus() - curves[:, 1:].numpy()).max())
        difference_floor = float((plain_loop(model, images, maps, target, args.steps) - curves[:, 1:]).abs().max())
        timings = {"stablesal": best_time(run_stablesal, args.repeats),
                   "plain_torch_loop": best_time(lambda: plain_loop(model, images, maps, target, args.steps),
                                                 args.repeats),
                   "quantus": best_time(run_quantus, args.repeats)}
        row = {"max_abs_difference_quantus": difference_quantus, "max_abs_difference_plain": difference_floor,
               "seconds": timings, "quantus_over_stablesal": timings["quantus"] / timings["stablesal"],
               "quantus_over_plain": timings["quantus"] / timings["plain_torch_loop"],
               "stablesal_over_plain": timings["stablesal"] / timings["plain_torch_loop"]}
        results["models"][name] = row
        print(f"{name:>9}: |stablesal − Quantus| ≤ {difference_quantus:.1e}, |stablesal − plain| ≤ {difference_floor:.1e}; "
              f"stablesal {timings['stablesal'] * 1000:.1f} ms, plain loop {timings['plain_torch_loop'] * 1000:.1f} ms, "
              f"Quantus {timings['quantus'] * 1000:.1f} ms = {row['quantus_over_stablesal']:.1f}x stablesal, "
              f"{row['quantus_over_plain']:.1f}x the plain loop")
        if difference_quantus > 1e-5 or difference_floor > 1e-5:
            print(f"{name}: curves disagree", file=sys.stderr)
            failed = True
    print(f"{args.images} images, {args.channels}x{args.size}x{args.size}, {args.steps} steps, "
          f"{torch.get_num_threads()} threads")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    return 1 if failed else 0


def make_model(name: str, shape) -> torch.nn.Module:
    """A frozen, seeded model in eval mode: ``linear``, ``mlp`` or a registered stablesal architecture."""
    torch.manual_seed(0)
    features = shape[0] * shape[1] * shape[2]
    if name == "linear":
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(features, 10))
    elif name == "mlp":
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(features, 128), torch.nn.ReLU(),
                                    torch.nn.Linear(128, 10))
    else:
        model = build_model(name, shape[0], 10, [0.5] * shape[0], [0.25] * shape[0])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


if __name__ == "__main__":
    raise SystemExit(main())
