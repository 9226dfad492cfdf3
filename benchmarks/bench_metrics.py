"""Deletion curve: stablesal vs Quantus' PixelFlipping vs a plain batched torch loop.

Same model (a small CNN on one-channel images), images, maps and steps: every step removes the
next 1/steps of the pixels in order of decreasing attribution and sets them to 0 (Quantus' "black" baseline).
The script checks that the curves agree, then times the three. Quantus (pip package
``quantus``) is a benchmark-only dependency (``pip install -e .[bench]``).

    python benchmarks/bench_metrics.py [--images 16] [--size 32] [--steps 32]
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
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/metrics.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    import quantus

    # one channel: Quantus flattens attributions broadcast over channels, so with C = 1 a step of
    # Quantus removes exactly the pixels of a step of stablesal
    model = build_model("small_cnn", 1, 10, [0.5], [0.25]).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(args.images, 1, args.size, args.size, generator=generator)
    maps = torch.rand(args.images, 1, args.size, args.size, generator=generator)  # distinct values: no ties
    with torch.inference_mode():
        target = model(images).argmax(1)

    curves, _ = deletion_insertion(model, images, maps, target, steps=args.steps, substrate=0.0)
    metric = quantus.PixelFlipping(features_in_step=args.size * args.size // args.steps, perturb_baseline="black",
                                   normalise=False, abs=False, disable_warnings=True, display_progressbar=False)

    def run_quantus():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(metric(model=model, x_batch=images.numpy(), y_batch=target.numpy(),
                                     a_batch=maps.numpy(), device="cpu", softmax=True))

    theirs = run_quantus()
    floor = plain_loop(model, images, maps, target, args.steps)
    difference_quantus = float(np.abs(theirs - curves[:, 1:].numpy()).max())
    difference_floor = float((floor - curves[:, 1:]).abs().max())
    print(f"max |stablesal − Quantus| = {difference_quantus:.2e}, max |stablesal − plain loop| = {difference_floor:.2e}")
    if difference_quantus > 1e-4:
        print("curves disagree", file=sys.stderr)
        return 1
    timings = {
        "stablesal": best_time(lambda: deletion_insertion(model, images, maps, target, steps=args.steps, substrate=0.0),
                             args.repeats),
        "plain_torch_loop": best_time(lambda: plain_loop(model, images, maps, target, args.steps), args.repeats),
        "quantus": best_time(run_quantus, args.repeats),
    }
    result = {"machine": platform.machine(), "threads": torch.get_num_threads(), "images": args.images,
              "size": args.size, "steps": args.steps, "max_abs_difference_quantus": difference_quantus,
              "seconds": timings, "quantus_over_stablesal": timings["quantus"] / timings["stablesal"],
              "quantus_over_plain": timings["quantus"] / timings["plain_torch_loop"],
              "stablesal_over_plain": timings["stablesal"] / timings["plain_torch_loop"], "quantus": quantus.__version__}
    print(f"{args.images} images {args.size}x{args.size}, {args.steps} steps: stablesal {timings['stablesal'] * 1000:.1f} ms, "
          f"plain torch loop {timings['plain_torch_loop'] * 1000:.1f} ms, Quantus {timings['quantus'] * 1000:.1f} ms "
          f"({result['quantus_over_stablesal']:.1f}x stablesal, {result['quantus_over_plain']:.1f}x the plain loop)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
