"""How good a fill is: reconstruction of held-out pixels (PSNR, SSIM) and whether the classifier
keeps its prediction when the background is removed and filled (docs/methods.md §5).

This judges the fills of :mod:`stablesal.inpainting` with the metrics of :mod:`stablesal.metrics`,
so it sits above both.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from ...explain.inpainting import random_holes
from ...core.intervals import interval_note
from ...metrics.similarity import ssim as ssim_metric


def psnr(a: torch.Tensor, b: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """PSNR (dB, peak 1) of ``a`` against ``b`` inside ``region`` ``[n, 1, H, W]``, per image."""
    squared = ((a - b) ** 2 * region).flatten(1).sum(1) / (region.flatten(1).sum(1) * a.shape[1]).clamp(min=1)
    return 10 * torch.log10(1 / squared.clamp(min=1e-10))


# results.json "intervals": the background-removal rate's Wilson interval (model 0's predictions)
QUALITY_INTERVALS = interval_note("wilson", sampled=["test images"], fixed=["model 0", "the fill"],
                                  columns="keep_prediction_ci95 (half-width)")


def wilson_half_width(successes: int, trials: int, z: float = 1.959963984540054) -> float:
    """Half-width of the 95 % (``z``: the normal 97.5 % quantile) Wilson score interval (Wilson, 1927)
    of a rate ``successes / trials``."""
    if trials == 0:
        return float("nan")
    rate = successes / trials
    return z * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)


@torch.inference_mode()
def inpainting_quality(inpainters: dict, model, images: torch.Tensor, labels: torch.Tensor,
                       object_masks: torch.Tensor | None, seed: int = 0, other_models=()) -> list[dict]:
    """For each inpainter (learned ones unconditional, so that no fill is told the class):

    - ``psnr_db``, ``ssim``: reconstruction of held-out images with random holes (25-50 % of the
      image; SSIM on grey images);
    - ``keep_prediction``: how often the classifier's prediction stays the same when the
      background (everything outside the object mask ``[n, H, W]``) is removed and filled; with no
      masks, a random half of the image (a blob, rectangle or segments);
    - ``keep_prediction_ring``: the same with a one-pixel ring of true background kept around the
      object, which hands boundary-propagating fills (Telea, ROAD, biharmonic) the background
      colour;
    - ``keep_prediction_correct`` and ``keep_prediction_wrong``: ``keep_prediction`` on the images
      the model classifies correctly and on the others (a wrong prediction often rests on the
      background itself, so it survives only fills that know the background);
    - ``keep_prediction_ci95``: half-width of the 95 % Wilson interval of ``keep_prediction``;
    - with ``other_models`` (e.g. the other retrained seeds): ``keep_prediction_models_mean``,
      ``_min`` and ``_max`` of ``keep_prediction`` over ``model`` and them, and ``n_models``; each
      fill is computed once and classified by every model;
    - ``ms_per_image``: the fill's time.

    Higher is better for all but time. Note that ``mean-colour`` and ``blur`` are computed from the
    whole image, removed pixels included, so they know the background's colour.
    """
    generator = torch.Generator().manual_seed(seed)
    side = images.shape[2:]
    holes = random_holes(images.shape[0], *side, generator, coverage=(0.25, 0.5))
    if object_masks is not None:
        objects = object_masks.bool().unsqueeze(1).to(images.device)
        backgrounds = {"keep_prediction": ~objects,
                       "keep_prediction_ring": ~(F.max_pool2d(objects.float(), 3, stride=1, padding=1) > 0)}
    else:
        backgrounds = {"keep_prediction": random_holes(images.shape[0], *side, generator, coverage=(0.5, 0.5))}
    holes = holes.to(images.device)
    predicted = model(images).argmax(1)
    correct = predicted.eq(labels.to(predicted.device))
    others = [(other, other(images).argmax(1)) for other in other_models]
    rows = []
    for name, inpainter in inpainters.items():
        began = time.perf_counter()
        filled = inpainter(images, holes)
        row = {"inpainter": name, "ms_per_image": 1000 * (time.perf_counter() - began) / images.shape[0],
               "psnr_db": float(psnr(filled, images, holes.float()).mean()),
               "ssim": float(ssim_metric(filled.mean(1), images.mean(1)).mean())}
        for key, background in backgrounds.items():
            background_filled = inpainter(images, background)
            kept = model(background_filled).argmax(1).eq(predicted)
            row[key] = float(kept.float().mean())
            if key == "keep_prediction":
                row["keep_prediction_ci95"] = wilson_half_width(int(kept.sum()), kept.numel())
                for subset, chosen in (("correct", correct), ("wrong", ~correct)):
                    row[f"keep_prediction_{subset}"] = float(kept[chosen].float().mean()) if chosen.any() else float("nan")
                if others:
                    rates = [row[key]] + [float(other(background_filled).argmax(1).eq(own).float().mean())
                                          for other, own in others]
                    row.update(keep_prediction_models_mean=float(np.mean(rates)), keep_prediction_models_min=min(rates),
                               keep_prediction_models_max=max(rates), n_models=len(rates))
        row["n_images"] = int(images.shape[0])
        rows.append(row)
    return rows
