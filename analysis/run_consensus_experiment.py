"""Run the consensus/planner experiment of a configuration (``experiments/consensus.toml``): the
pipeline's consensus stage (``stablesal consensus``: models trained or loaded, untrained networks,
results folder ``<[report] out_dir>/<[report] name>`` with results.json, tables, maps and page),
then every unit (tests, calibration, power, planner curves and validation) with the models'
accuracies written to one JSON file for the repository.

    python analysis/run_consensus_experiment.py --config experiments/consensus.toml \\
        --out experiments/results/consensus.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import json  # noqa: E402

from stablesal.core.storage import atomic_write_json  # noqa: E402
from stablesal.pipeline.config import load_config  # noqa: E402
from stablesal.pipeline.run import run_pipeline  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/consensus.toml")
    parser.add_argument("--out", required=True)
    parser.add_argument("--note", default="", help="a line recorded in the file (machine, threads, date)")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    config.models.control_k = 0  # the consensus uses the main models and the untrained networks only
    began = time.perf_counter()
    folder = run_pipeline(config, only=["consensus"], progress=not args.quiet)
    seconds = time.perf_counter() - began
    results = json.loads((folder / "results.json").read_text())
    stage = results["consensus"]
    atomic_write_json(args.out, {"config": results["config"], "models": results["models"], **stage,
                                 "train_seconds": round(results["timings_s"].get("training", 0.0), 1),
                                 "seconds": round(seconds, 1), "note": args.note})
    print(f"{len(stage['units'])} units in {args.out} ({seconds:.0f} s); the results folder is {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
