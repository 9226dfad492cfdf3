"""Inpainting vs constant fill (GEN-REMOVE and INPAINT-METRIC, docs/methods.md §5) on one model.

1. Inpainting quality of every inpainter: PSNR / SSIM on held-out images with random holes, and
   the keep-prediction rate when the background is removed and filled.
2. SP, LIME and MP with their classical fill next to SP-G, LIME-G and MP-G (learned inpainter),
   plus gradient methods and a random map, scored by the evaluation suite: deletion AUC with the
   mean colour and with the inpainter as substrate, insertion AUC, SRG, localisation (relevance
   mass, pointing game, IoU), the Dabkowski–Gal saliency metric, µFidelity; Kendall τ between the
   rankings the metrics give.
3. Robustness to hyperparameters: SSIM / Spearman between maps of the same method under different
   settings (patch size, number of segments, seed, blur radius), against random maps.
4. INPAINT-METRIC (class-conditional) and its class-agnostic variant for the methods cheap enough
   to re-explain every edited image (saliency, IG, occlusion, random).
"""

from __future__ import annotations

import itertools
import time

import torch
from tqdm.auto import tqdm

from ...explain.controls import CONTROLS, RANDOM_MAP
from ...explain.gradient.methods import make_method
from .fill_quality import inpainting_quality
from ...explain.inpainting import SampledBackground, classical_inpainters
from ...explain.perturbation.meaningful import MeaningfulPerturbation
from ...metrics.fidelity import deletion_insertion, inpaint_metric, mu_fidelity, output_drops, random_cell_subsets, srg
from ...metrics.similarity import grey_maps, spearman, ssim
from ...metrics.localisation import iou_top, pointing_game, relevance_mass, saliency_metric
from ...metrics.agreement import kendall_tau_matrix, mean_ci
from ...metrics.registry import metric_info
from ...explain.perturbation.features import SlidingPatches
from ...explain.perturbation.pipeline import Perturbation
from ...explain.perturbation.presets import gen_lime, occlusion, sliding_patch
from ...explain.perturbation.replacement import Inpaint
from ...core.seeding import derive
from ...core.settings import RemovalSettings

# the study's columns and the registered metric each one holds; directions come from the metric's
# metadata (stablesal.metrics.METRICS)
COLUMN_METRICS = {"deletion_auc_mean": "deletion_auc", "deletion_auc_inpaint": "deletion_auc",
                  "insertion_auc": "insertion_auc", "srg": "srg", "relevance_mass": "relevance_mass",
                  "pointing_game": "pointing_game", "iou": "iou", "saliency_metric": "saliency_metric",
                  "mu_fidelity": "mu_fidelity", "inpaint_metric": "inpaint_metric",
                  "inpaint_metric_agnostic": "inpaint_metric"}
HIGHER_IS_BETTER = {column: metric_info(metric).higher_is_better for column, metric in COLUMN_METRICS.items()}


def _methods(model, inpainter, settings: RemovalSettings, side: int) -> dict:
    """Name → explain(images, target, seed) for the methods compared."""
    sp, sp_g = sliding_patch(model), sliding_patch(model, inpainter=inpainter)
    lime, lime_g = (gen_lime(model, n_samples=settings.lime_samples),
                    gen_lime(model, inpainter=inpainter, n_samples=settings.lime_samples))
    mp = MeaningfulPerturbation(model, iterations=settings.mp_iterations)
    mp_g = MeaningfulPerturbation(model, inpainter=inpainter, iterations=settings.mp_iterations)
    methods = {
        "SP": lambda x, t, s: sp.attribute(x, t, seed=s), "SP-G": lambda x, t, s: sp_g.attribute(x, t, seed=s),
        "LIME": lambda x, t, s: lime.attribute(x, t, seed=s), "LIME-G": lambda x, t, s: lime_g.attribute(x, t, seed=s),
        "MP": lambda x, t, s: mp.attribute(x, t, seed=s), "MP-G": lambda x, t, s: mp_g.attribute(x, t, seed=s),
    }
    for name in settings.gradient_methods:
        method = make_method(name, model, n_steps=16, n_samples=16)
        methods[name] = lambda x, t, s, m=method: m.attribute(x, target=t, seed=s)
    occluder = occlusion(model, size=max(2, side // 4), stride=max(1, side // 8))
    methods["occlusion"] = lambda x, t, s: occluder.attribute(x, t, seed=s)
    # the random-map control, drawn per image from the image's content: an edited image gets a new
    # random map (a fixed map would 'explain' every edit perfectly under INPAINT-METRIC)
    random_map = CONTROLS[RANDOM_MAP](model)
    methods[RANDOM_MAP] = lambda x, t, s: random_map.attribute(x, t, seed=s)
    return methods


def _variants(model, inpainter, settings: RemovalSettings) -> dict:
    """Hyperparameter settings per method family for the robustness check (each a maps function)."""
    side_scales = {"small": (19, 3), "default": (29, 3), "large": (41, 3)}
    out = {}
    for label, fill in (("SP", None), ("SP-G", inpainter)):
        variants = {}
        for size, stride in side_scales.values():
            pipeline = Perturbation(model, segmenter=SlidingPatches(None, None, scale_from=(size, stride)),
                                    sampler="single", calculator="pda", map="pixel",
                                    replacement=Inpaint(fill) if fill is not None else "image-mean")
            variants[f"patch {size}/224"] = lambda x, t, p=pipeline: p.attribute(x, t, seed=0)
        out[label] = variants
    for label, fill in (("LIME", None), ("LIME-G", inpainter)):
        variants = {}
        for segments, seed in ((30, 0), (50, 0), (70, 0), (50, 1)):  # segment count, and the seed at 50
            pipeline = gen_lime(model, inpainter=fill, n_samples=settings.lime_samples, n_segments=segments)
            variants[f"{segments} segments, seed {seed}"] = lambda x, t, p=pipeline, s=seed: p.attribute(x, t, seed=s)
        out[label] = variants
    for label, fill in (("MP", None), ("MP-G", inpainter)):
        variants = {}
        for blur, seed in ((1.0, 0), (2.0, 0), (1.0, 1)):  # blur radius, and the jitter seed at σ = 1
            method = MeaningfulPerturbation(model, inpainter=fill, iterations=settings.mp_iterations, blur_sigma=blur)
            variants[f"blur {blur:g}, seed {seed}"] = lambda x, t, m=method, s=seed: m.attribute(x, t, seed=s)
        out[label] = variants
    return out


def run_removal_study(model, inpainter, images: torch.Tensor, labels: torch.Tensor, masks,
                      settings: RemovalSettings, progress: bool = True, dataset_mean: torch.Tensor | None = None,
                      backgrounds: torch.Tensor | None = None, other_models=()) -> dict:
    """SP/LIME/MP against SP-G/LIME-G/MP-G and the metrics on ``images`` ``[N, C, H, W]``, after the
    inpainting quality of every fill: the classical ones (with ``dataset_mean`` ``[C]`` also the
    training set's mean pixel), ``inpainter``, and with ``backgrounds`` ``[M, C, H, W]`` the
    :class:`SampledBackground` control; ``other_models`` (the other retrained seeds) also judge
    the keep-prediction rate."""
    inpainters = {**classical_inpainters(dataset_mean), str(inpainter): inpainter}
    if backgrounds is not None:
        inpainters["fresh-background"] = SampledBackground(backgrounds.to(images.device))
    quality = inpainting_quality(inpainters, model, images, labels, masks, seed=settings.seed,
                                 other_models=other_models)
    count = min(settings.n_images, images.shape[0])
    x, y = images[:count], labels[:count]
    object_masks = None if masks is None else masks[:count]
    subsets = random_cell_subsets(x.shape[2], x.shape[3], 128, seed=settings.seed)
    drops = output_drops(model, x, y, subsets)
    methods = _methods(model, inpainter, settings, side=int(x.shape[-1]))
    rows, maps_by_method = [], {}
    for name, explain in tqdm(methods.items(), desc="removal methods", disable=not progress):
        began = time.perf_counter()
        maps = explain(x, y, settings.seed)
        seconds = (time.perf_counter() - began) / count
        maps_by_method[name] = maps.detach()
        _, del_mean = deletion_insertion(model, x, maps, y, steps=settings.deletion_steps, substrate="mean")
        _, del_inpaint = deletion_insertion(model, x, maps, y, steps=settings.deletion_steps, substrate=inpainter)
        _, insertion = deletion_insertion(model, x, maps, y, steps=settings.deletion_steps, mode="insertion",
                                          substrate="mean")
        row = {"method": name, "fill": "inpaint" if name.endswith("-G") else "classical",
               "deletion_auc_mean": float(del_mean.mean()), "deletion_auc_inpaint": float(del_inpaint.mean()),
               "insertion_auc": float(insertion.mean()), "srg": float(srg(model, x, maps, y)["srg"].mean()),
               "saliency_metric": float(saliency_metric(model, x, maps, y).mean()),
               "mu_fidelity": float(mu_fidelity(maps, subsets, drops).mean()), "seconds_per_image": seconds}
        if object_masks is not None:
            row["relevance_mass"] = float(relevance_mass(maps, object_masks).mean())
            row["pointing_game"] = float(pointing_game(maps, object_masks).mean())
            row["iou"] = float(iou_top(maps, object_masks).mean())
        rows.append(row)

    # INPAINT-METRIC on the methods cheap enough to re-explain every edited image
    cheap = [m for m in ("saliency", "integrated_gradients", "occlusion", RANDOM_MAP) if m in methods]
    few = min(settings.inpaint_metric_images, count)
    conditional = getattr(getattr(inpainter, "net", None), "num_classes", 0) > 0
    for row in rows:
        if row["method"] not in cheap:
            continue
        explain = methods[row["method"]]

        def explain_fn(images_, target_, e=explain):
            return e(images_, target_, settings.seed)

        if conditional:
            row["inpaint_metric"] = float(inpaint_metric(model, explain_fn, x[:few], y[:few], inpainter,
                                                         class_conditional=True)["area"].mean())
        row["inpaint_metric_agnostic"] = float(inpaint_metric(model, explain_fn, x[:few], y[:few], inpainter,
                                                              class_conditional=False)["area"].mean())

    scores = {metric: {r["method"]: r[metric] for r in rows if metric in r} for metric in HIGHER_IS_BETTER}
    scores = {k: v for k, v in scores.items() if len(v) >= 3}
    agreement = kendall_tau_matrix(scores, HIGHER_IS_BETTER)

    robustness = []
    if settings.robustness:
        few_images, few_labels = x[:min(4, count)], y[:min(4, count)]
        random_floor = _pairwise([grey_maps(torch.rand(few_images.shape, generator=torch.Generator().manual_seed(
            derive(settings.seed, "robustness-random-floor", i)))) for i in range(3)])
        for label, variants in tqdm(_variants(model, inpainter, settings).items(), desc="robustness",
                                    disable=not progress):
            greys = [grey_maps(fn(few_images, few_labels)) for fn in variants.values()]
            pair = _pairwise(greys)
            robustness.append({"method": label, "settings": len(variants), **pair,
                               "random_ssim": random_floor["ssim"], "random_spearman": random_floor["spearman"]})
    return {"quality": quality, "rows": rows, "agreement": agreement, "robustness": robustness,
            "maps": {k: v[:4].cpu() for k, v in maps_by_method.items()}, "images": x[:4].cpu(),
            "masks": None if object_masks is None else object_masks[:4].cpu()}


def _pairwise(greys: list[torch.Tensor]) -> dict:
    ssims, spearmans = [], []
    for a, b in itertools.combinations(greys, 2):
        ssims.extend(ssim(a, b).tolist())
        spearmans.extend(spearman(a, b).tolist())
    return {"ssim": mean_ci(ssims)[0], "spearman": mean_ci(spearmans)[0]}
