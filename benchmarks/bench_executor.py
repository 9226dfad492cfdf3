"""Executors: wall time of the seed-training stage with 1 vs 2 workers (local processes and a Dask
LocalCluster), and the overhead per unit of the process and Dask paths for small units.

With 2 workers each unit gets cores / 2 torch threads, so on a 2-core machine the comparison is
2 units × 1 thread against 1 unit × 2 threads: the gain is what intra-op threading leaves unused.

    python benchmarks/bench_executor.py [--seeds 4] [--n-train 4000] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stablesal.data import load_dataset  # noqa: E402
from stablesal.core.executor import DaskExecutor, ProcessExecutor, SerialExecutor, _cores  # noqa: E402
from stablesal.models.training import TrainConfig, train_seeds  # noqa: E402


def _small_unit(x):
    return sum(i * i for i in range(x))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--units", type=int, default=40, help="small units for the overhead measurement")
    parser.add_argument("--out", default="benchmarks/results/executor.json")
    args = parser.parse_args()
    dataset = load_dataset("shapes", n_train=args.n_train, n_test=200, size=32, seed=0)
    config = TrainConfig(epochs=args.epochs)
    results = {"machine": platform.machine(), "cores": _cores(), "torch": torch.__version__, "seeds": args.seeds,
               "n_train": args.n_train, "epochs": args.epochs, "training_s": {}, "overhead_ms_per_unit": {}}
    makers = {"serial (1 worker)": lambda: SerialExecutor(),
              "processes (2 workers)": lambda: ProcessExecutor(workers=2),
              "dask LocalCluster (2 workers)": lambda: DaskExecutor(workers=2)}
    for name, make in makers.items():
        executor = make()
        try:
            executor.map(_small_unit, [10] * 4, progress=False)  # start-up excluded: workers warm
            with tempfile.TemporaryDirectory() as folder:
                began = time.perf_counter()
                train_seeds(dataset, k=args.seeds, vary="both", config=config, out_dir=folder, progress=False,
                            executor=executor)
                results["training_s"][name] = time.perf_counter() - began
            began = time.perf_counter()
            executor.map(_small_unit, [10] * args.units, progress=False)
            results["overhead_ms_per_unit"][name] = 1000 * (time.perf_counter() - began) / args.units
        finally:
            executor.close()
        print(f"{name:<32} training {results['training_s'][name]:7.1f} s   "
              f"overhead {results['overhead_ms_per_unit'][name]:7.2f} ms per small unit")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
