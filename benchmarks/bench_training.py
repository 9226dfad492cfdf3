"""Training step time of the default architecture: channels-last vs the usual memory layout.

``stablesal.models.training.train_one`` trains in channels-last layout; this prints the time of one AdamW
step (batch 128, 32-px images, ``small_cnn``) in both layouts, the median of several timed runs
after a warm-up, and their ratio. The floor is the usual (contiguous) layout written directly.

    python benchmarks/bench_training.py [--steps 40] [--repeats 3] [--batch 128] [--size 32]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stablesal.models import build_model  # noqa: E402


def step_ms(channels_last: bool, steps: int, batch: int, size: int) -> float:
    torch.manual_seed(0)
    model = build_model("small_cnn", 3, 10, [0.5] * 3, [0.25] * 3)
    images, labels = torch.rand(batch, 3, size, size), torch.randint(0, 10, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-3)

    def one_step():
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(5):  # warm-up
        one_step()
    began = time.perf_counter()
    for _ in range(steps):
        one_step()
    return 1000 * (time.perf_counter() - began) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--out", default="benchmarks/results/training.json")
    args = parser.parse_args()
    times = {layout: statistics.median(step_ms(layout == "channels_last", args.steps, args.batch, args.size)
                                       for _ in range(args.repeats))
             for layout in ("contiguous", "channels_last")}
    ratio = times["channels_last"] / times["contiguous"]
    print(f"small_cnn, batch {args.batch}, {args.size} px, {torch.get_num_threads()} threads: "
          f"contiguous {times['contiguous']:.1f} ms/step (floor), channels-last {times['channels_last']:.1f} "
          f"ms/step, {ratio:.2f}x the floor")
    result = {"machine": platform.machine(), "processor": platform.processor(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "batch": args.batch, "size": args.size, "ms_per_step": times,
              "ratio_to_floor": ratio}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
