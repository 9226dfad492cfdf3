"""Calibrate the proxies of stablesal.models.proxies against real retraining and write one JSON file
(``experiments/results/proxy.json``), the evidence ``stablesal estimate`` rests on.

The configuration's K main models (seeds only) are the truth; its random-label models the null;
each proxy in ``[proxy] names`` makes K′ variants of main model 0. All of them go through the same
stability study (``[gradient]``) on the same test images, and
:func:`stablesal.studies.proxies.calibration.calibration_rows` compares each proxy with the truth per
method × grouping. The cost of each proxy is measured (seconds, beside one training run's) and
computed as a share of one run (:func:`stablesal.models.proxies.proxy_cost`).

    python analysis/proxy_calibration.py --config experiments/proxy.toml --out experiments/results/proxy.json

``--set section.key=value`` changes one key over the file (as on the command line). ``[proxy]
spawn_epochs = [t1, t2, ...]`` replaces the one spawn set by the spawn-time curve: one set
``spawn@t`` of ``spawn_k`` children per epoch t (t = 0: retraining from the parent's
initialisation; t near the end: one mode), each calibrated and costed like any proxy.

The commit recorded is the one checked out when the run starts, with ``dirty`` when tracked code or
configurations differed from it then (the code that computed the numbers is then that commit plus
those changes).
"""

from __future__ import annotations

import argparse
import subprocess
from dataclasses import asdict
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stablesal.cli import parse_set  # noqa: E402
from stablesal.core.storage import atomic_write_json  # noqa: E402
from stablesal.data.datasets import load_configured  # noqa: E402
from stablesal.data.selection import ordered_for_explaining  # noqa: E402
from stablesal.models.proxies import make_variants, proxy_cost, spawn_children  # noqa: E402
from stablesal.models.training import seed_plan, training_indices, training_labels  # noqa: E402
from stablesal.pipeline.config import load_config  # noqa: E402
from stablesal.pipeline.context import Context  # noqa: E402
from stablesal.models.model_sets import train_config_from  # noqa: E402
from stablesal.pipeline.stages import gradient_settings  # noqa: E402
from stablesal.studies.proxies.calibration import AGREEMENT_TOLERANCE, RANK_TARGET, calibration_rows  # noqa: E402
from stablesal.studies.stability.run import run_study  # noqa: E402


def _commit() -> str | None:
    """HEAD, with " dirty" appended when tracked code or configurations (``stablesal/``,
    ``analysis/``, ``experiments/*.toml``) differ from it; None outside a git checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=root).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "stablesal",
                                  "analysis", "experiments/*.toml"], capture_output=True, text=True, check=True,
                                 cwd=root).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head} dirty" if changed else head


def proxy_runs(names: list[str], spawn_epochs: list[int]) -> list[tuple[str, str, dict]]:
    """``(set name, proxy, settings changes)`` per variant set: ``spawn`` becomes one ``spawn@t``
    per epoch of ``spawn_epochs`` (the spawn-time curve) when that list is not empty."""
    out = []
    for name in names:
        if name == "spawn" and spawn_epochs:
            out += [(f"spawn@{epoch}", "spawn", {"spawn_epoch": epoch}) for epoch in spawn_epochs]
        else:
            out.append((name, name, {}))
    return out


def best_proxies(rows: list[dict], max_cost: float) -> list[dict]:
    """Per proxy at most ``max_cost`` of a training run: how many method × grouping units meet each
    target, and its mean |difference| and mean rank correlation (the closest proxy first)."""
    out = []
    for proxy in dict.fromkeys(row["proxy"] for row in rows):
        mine = [row for row in rows if row["proxy"] == proxy]
        if mine[0]["cost_share"] > max_cost:
            continue
        out.append({"proxy": proxy, "cost_share": mine[0]["cost_share"], "units": len(mine),
                    "within_tolerance": sum(row["within_tolerance"] for row in mine),
                    "rank_target_met": sum(row["rank_target_met"] for row in mine),
                    "both_targets": sum(row["within_tolerance"] and row["rank_target_met"] for row in mine),
                    "mean_abs_difference": sum(abs(row["difference"]) for row in mine) / len(mine),
                    "mean_rank_correlation": sum(row["rank_correlation"] for row in mine) / len(mine)})
    return sorted(out, key=lambda row: (-row["both_targets"], row["mean_abs_difference"]))


def truth_config(path: str, settings: list[str]):
    """The configuration at ``path`` with ``--set section.key=value`` ``settings`` over it, refused
    (one line) unless its main models differ only in their seed, as the truth must."""
    overrides: dict = {}
    for section, key, value in map(parse_set, settings):
        overrides.setdefault(section, {})[key] = value
    config = load_config(path, overrides)
    if config.models.vary != "seed":
        raise SystemExit("[models] vary must be 'seed': the truth is models that differ only in their seed")
    return config


def calibration_context(config, progress: bool = True) -> tuple:
    """``(dataset, runs folder, Context)`` of a calibration: its data in explaining order and the
    context whose models (the truth, the random-label null) are trained once and cached there."""
    dataset = ordered_for_explaining(load_configured(config.data), config.data.selection, config.data.selection_seed)
    runs_dir = Path(config.report.runs_dir) / config.report.name
    return dataset, runs_dir, Context(config, dataset, runs_dir, Path(config.report.out_dir) / config.report.name,
                                      progress)


def build_variants(config, dataset, truth: list, runs_dir: Path, progress: bool = True) -> tuple[dict, dict, dict]:
    """Every proxy set of ``[proxy]`` (:func:`proxy_runs`) made from truth model 0: ``({set name:
    models}, {set name: why refused}, {set name: cost})``, each cost in seconds, as a share of one
    training run's seconds (the truth's mean) and as the share :func:`proxy_cost` computes."""
    train_config = train_config_from(config.models)
    parent_run = seed_plan(config.models.k, "seed", config.models.base_seed, len(dataset.train_labels))[0]
    indices = training_indices(parent_run, len(dataset.train_labels))
    train_images = dataset.train_images[indices]
    train_labels = training_labels(parent_run, dataset.train_labels[indices])
    proxy = config.proxy
    variants, refused, costs = {}, {}, {}
    one_run = sum(run.meta["train_seconds"] for run in truth) / len(truth)
    for name, kind, changes in proxy_runs(proxy.names, proxy.spawn_epochs):
        settings = proxy.settings(**changes)
        k = proxy.spawn_k if kind == "spawn" else proxy.k
        start = time.perf_counter()
        try:
            variants[name] = make_variants(
                kind, truth[0].model, k, images=train_images, labels=train_labels, settings=settings,
                config=train_config, seed=proxy.seed,
                spawn=lambda epoch, count: spawn_children(dataset, parent_run, train_config, epoch, count,
                                                          runs_dir / "spawn", progress=progress, seed=proxy.seed))
        except ValueError as error:
            refused[name] = str(error)
            continue
        seconds = time.perf_counter() - start
        costs[name] = {"seconds": seconds, "seconds_share": seconds / one_run,
                       "cost_share": proxy_cost(kind, k, settings, train_config.epochs, len(indices)), "k": k,
                       **({"spawn_epoch": settings.spawn_epoch} if kind == "spawn" else {})}
    return variants, refused, costs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/proxy.toml")
    parser.add_argument("--out", default="experiments/results/proxy.json")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    config = truth_config(args.config, args.set)
    began = time.perf_counter()
    commit = _commit()
    progress = not args.quiet
    dataset, runs_dir, ctx = calibration_context(config, progress)
    truth = ctx.runs
    null_runs, _ = ctx.random_label
    if len(null_runs) < 3:
        raise SystemExit("[models] random_label_k must be at least 3: the calibration is measured beyond that null")
    variants, refused, costs = build_variants(config, dataset, truth, runs_dir, progress)
    proxy = config.proxy
    one_run = sum(run.meta["train_seconds"] for run in truth) / len(truth)
    sets = {"truth": [run.model for run in truth], "random_label": [run.model for run in null_runs], **variants}
    images, labels, masks = ctx.test_images(0, min(config.gradient.n_images, len(dataset.test_labels)))
    study = gradient_settings(config.gradient)
    units = run_study(sets, images, labels, masks, study, cache_dir=runs_dir / "stability", progress=progress,
                      identity={"models": {name: len(models) for name, models in sets.items()},
                                "truth": [run.meta["config_hash"] for run in truth], "proxy": asdict(proxy)},
                      include_random=False)
    rows = calibration_rows(units, list(variants))
    for row in rows:
        row.update(costs[row["proxy"]])
    result = {
        "commit": commit, "config": config.to_dict(), "dataset": dataset.describe(),
        "architecture": config.models.arch, "image_side": int(images.shape[-1]), "channels": int(images.shape[1]),
        "k_truth": len(truth), "k_null": len(null_runs), "null": "random_label",
        "truth_accuracy": [run.meta["test_accuracy"] for run in truth],
        "one_training_run_seconds": one_run, "targets": {"agreement_tolerance": AGREEMENT_TOLERANCE,
                                                         "rank_correlation": RANK_TARGET, "max_cost_share": 0.2},
        "proxies": costs, "refused": refused, "rows": rows,
        "closest_within_cost": best_proxies(rows, 0.2), "closest_any_cost": best_proxies(rows, float("inf")),
        "seconds": time.perf_counter() - began,
    }
    atomic_write_json(Path(args.out), result)
    print(f"wrote {args.out}: {len(rows)} rows, {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
