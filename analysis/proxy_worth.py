"""How many retrained models each proxy's variants are worth for the mean map, per method ×
grouping, on the models of a proxy calibration (:mod:`stablesal.studies.proxies.worth`); one JSON
file per calibration.

It reads the calibration's configuration and reuses its checkpoints (the K_true retrained models;
spawned children are cached too), makes the other proxies' variants again with the same seeds, and
explains the same test images with the same explainer seeds as the stability study. Beside the
proxies, the rows of ``parent``: model 0 itself explained ``[proxy] k`` times with as many explainer
seeds, the worth that averaging a random explainer's draws gives without any variant.

    python analysis/proxy_worth.py --config experiments/proxy_lfw_small_cnn.toml \
        --out experiments/results/proxy_worth_lfw_small_cnn.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from proxy_calibration import _commit, build_variants, calibration_context, truth_config  # noqa: E402

from stablesal.core.storage import atomic_write_json  # noqa: E402
from stablesal.pipeline.stages import gradient_settings  # noqa: E402
from stablesal.studies.proxies.worth import flat_maps, mean_map_worth  # noqa: E402
from stablesal.studies.stability.run import compute_partitions, explain_groupings, explainer_seed, study_groupings  # noqa: E402


PARENT = "parent"  # the worth rows of model 0 explained k times (no variant): explainer draws alone


def set_maps(models: list, model_set: str, images, labels, partitions: dict, settings, methods: list[str]) -> dict:
    """``{(method, grouping): [K, n, d] float64}``: every model's maps, seeded as the study seeds them."""
    out: dict = {}
    groupings = {"pixel": None, **partitions}
    for method in methods:
        for index, model in enumerate(models):
            maps = explain_groupings(method, model, explainer_seed(settings, model_set, index), images, labels,
                                     groupings, settings)
            for grouping, grouped in maps.items():
                out.setdefault((method, grouping), []).append(flat_maps(grouped.detach().cpu()))
    return {key: torch.stack(value) for key, value in out.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    config = truth_config(args.config, args.set)
    if config.models.k < 4:
        raise SystemExit("[models] k must be at least 4: half the retrained models are the reference, half the pool")
    began, commit, progress = time.perf_counter(), _commit(), not args.quiet
    dataset, runs_dir, ctx = calibration_context(config, progress)
    truth = ctx.runs
    variants, refused, costs = build_variants(config, dataset, truth, runs_dir, progress)
    images, labels, _ = ctx.test_images(0, min(config.gradient.n_images, len(dataset.test_labels)))
    settings = gradient_settings(config.gradient)
    partitions = compute_partitions(images, settings.groupings, settings.n_segments)
    groupings = study_groupings(settings.groupings, partitions)
    truth_maps = set_maps([run.model for run in truth], "truth", images, labels, partitions, settings, settings.methods)
    rows = []
    # the control: the parent itself explained K′ times with K′ explainer seeds of its own. A random
    # explainer's mean over K′ draws is smoother than one draw whatever the models, so a proxy is
    # worth something beyond its parent only where it beats this row.
    parent = {PARENT: [truth[0].model] * config.proxy.k}
    costs[PARENT] = {"cost_share": 0.0}
    for name, models in {**parent, **variants}.items():
        proxy_maps = set_maps(models, name, images, labels, partitions, settings, settings.methods)
        for method in settings.methods:
            for grouping in groupings:
                row = mean_map_worth(truth_maps[(method, grouping)], proxy_maps[(method, grouping)],
                                     resamples=args.resamples, seed=config.proxy.seed)
                rows.append({"proxy": name, "method": method, "grouping": grouping, **row,
                             "cost_share": costs[name]["cost_share"]})
    result = {"commit": commit, "config": config.to_dict(), "dataset": dataset.describe(),
              "architecture": config.models.arch, "k_truth": len(truth), "refused": refused,
              "measure": "Pearson r per image between a mean map and the reference half's mean map",
              "interval": "95 % percentile bootstrap over images; the models held fixed",
              "rows": rows, "seconds": time.perf_counter() - began}
    atomic_write_json(Path(args.out), result)
    print(f"wrote {args.out}: {len(rows)} rows, {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
