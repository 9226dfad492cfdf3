"""What the proxies of stablesal.models.proxies cost, as a share of one training run, measured.

One training run of ``small_cnn`` (``--epochs`` passes over ``--images`` 32-px images, AdamW, batch
128) is timed as its epoch written directly (the floor) times the epoch count. Each proxy makes
``--k`` variants of one model and is timed in the same process: ``finetune`` and
``bootstrap_finetune`` (``--fraction`` of an epoch each; their floor is the same number of AdamW
steps written directly), ``swag`` (``--swag-fraction`` of an epoch of iterates, then k samples with
their batch-norm statistics recomputed on 2 048 images; its floor is its AdamW steps written
directly plus k forward passes over those images), ``laplace`` (one forward pass over the Gauss–Newton images, the posterior's
Cholesky factor and k samples). ``spawn`` is training by construction, (t + k (E − t)) / E of a run,
and is not timed here. No installable peer makes explanation-level proxies; laplace-torch's
last-layer Laplace is the nearest and is not a dependency, so it is not run.

    python benchmarks/bench_proxies.py [--images 5000] [--epochs 8] [--k 8] [--fraction 0.2] [--repeats 3]
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

from stablesal.core.settings import ProxySettings, TrainConfig  # noqa: E402
from stablesal.models import build_model  # noqa: E402
from stablesal.models.proxies import finetune_copies, laplace_variants, proxy_cost, swag_variants  # noqa: E402


def _steps_seconds(model, images, labels, steps: int, batch: int) -> float:
    """``steps`` AdamW steps written directly (the floor)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4)
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        chunk = slice((step * batch) % len(images), (step * batch) % len(images) + batch)
        loss = F.cross_entropy(model(images[chunk]), labels[chunk])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--swag-fraction", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/proxies.json")
    args = parser.parse_args(argv)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(args.images, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 10, (args.images,), generator=generator)
    config = TrainConfig(epochs=args.epochs)
    settings = ProxySettings(finetune_fraction=args.fraction, laplace_images=2048, swag_fraction=args.swag_fraction,
                             bn_images=2048)
    torch.manual_seed(0)
    model = build_model("small_cnn", 3, 10, [0.5] * 3, [0.25] * 3)
    steps_per_epoch = -(-args.images // config.batch_size)
    _steps_seconds(model, images, labels, 5, config.batch_size)  # warm-up
    epoch = statistics.median(_steps_seconds(model, images, labels, steps_per_epoch, config.batch_size)
                              for _ in range(args.repeats))
    run = epoch * args.epochs
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    finetune_steps = max(1, round(args.fraction * args.images / config.batch_size))
    floor = statistics.median(_steps_seconds(build_model("small_cnn", 3, 10, [0.5] * 3, [0.25] * 3), images, labels,
                                             finetune_steps * args.k, config.batch_size) for _ in range(args.repeats))
    swag_steps = max(settings.swag_snapshots, round(args.swag_fraction * args.images / config.batch_size))

    def swag_floor() -> float:
        seconds = _steps_seconds(build_model("small_cnn", 3, 10, [0.5] * 3, [0.25] * 3), images, labels, swag_steps,
                                 config.batch_size)
        start = time.perf_counter()
        with torch.no_grad():
            for _ in range(args.k):
                for first in range(0, settings.bn_images, 256):
                    model(images[first:first + 256])
        return seconds + time.perf_counter() - start

    floors = {"finetune": floor, "bootstrap_finetune": floor,
              "swag": statistics.median(swag_floor() for _ in range(args.repeats))}
    rows = []
    for name, make in (("finetune", lambda: finetune_copies(model, images, labels, args.k, settings, config)),
                       ("bootstrap_finetune", lambda: finetune_copies(model, images, labels, args.k, settings, config,
                                                                      bootstrap=True)),
                       ("swag", lambda: swag_variants(model, images, labels, args.k, settings, config)),
                       ("laplace", lambda: laplace_variants(model, images, args.k, settings))):
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            make()
            seconds.append(time.perf_counter() - start)
        measured = statistics.median(seconds)
        rows.append({"proxy": name, "k": args.k, "seconds": measured, "share_of_one_run": measured / run,
                     "computed_share": proxy_cost(name, args.k, settings, args.epochs, args.images),
                     "vs_floor": measured / floors[name] if name in floors else None})
    result = {"machine": platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "images": args.images, "epochs": args.epochs, "epoch_seconds": epoch, "run_seconds": run,
              "finetune_floor_seconds": floor, "rows": rows}
    print(f"one run: {run:.1f} s ({args.epochs} epochs of {epoch:.2f} s, the floor written directly)")
    for row in rows:
        print(f"{row['proxy']:>20}: {row['seconds']:.2f} s = {row['share_of_one_run']:.3f} of a run (computed "
              f"{row['computed_share']:.3f})" + (f", {row['vs_floor']:.2f}x its steps written directly"
                                                   if row["vs_floor"] else ""))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
