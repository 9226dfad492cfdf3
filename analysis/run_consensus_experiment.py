"""Run the consensus/planner experiment of a configuration (``experiments/consensus.toml``): train
(or load) its models, build the untrained networks, run the consensus stage and write every unit
(tests, calibration, power, planner curves and validation) with the models' accuracies to JSON.

    python analysis/run_consensus_experiment.py --config experiments/consensus.toml \\
        --out experiments/results/consensus.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from stablesal.pipeline.config import load_config  # noqa: E402
from stablesal.data import load_configured  # noqa: E402
from stablesal.pipeline.run import consensus_stage, train_model_sets  # noqa: E402
from stablesal.models.training import summary_rows  # noqa: E402
from stablesal.core.storage import atomic_write_json  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/consensus.toml")
    parser.add_argument("--out", required=True)
    parser.add_argument("--note", default="", help="a line recorded in the file (machine, threads, date)")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    dataset = load_configured(config.data)
    runs_dir = Path(config.report.runs_dir) / config.report.name
    began = time.perf_counter()
    runs, _ = train_model_sets(config, dataset, runs_dir, progress=not args.quiet)
    trained_seconds = time.perf_counter() - began
    scratch = runs_dir / "consensus-out"  # the maps (.npz) and CSV tables stay with the runs, not in git
    stage = consensus_stage(config, dataset, runs, runs_dir, scratch, progress=not args.quiet)
    seconds = time.perf_counter() - began
    atomic_write_json(args.out, {"config": config.to_dict(), "models": summary_rows(runs), **stage,
                                 "train_seconds": round(trained_seconds, 1), "seconds": round(seconds, 1),
                                 "note": args.note})
    print(f"{len(stage['units'])} units in {args.out} ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
