"""Localisation of saliency maps against object masks (IoU of the top pixels, pointing game,
relevance mass) and the Dabkowski–Gal saliency metric.
"""

from __future__ import annotations

import torch

from ..core.checks import check_model_inputs
from .registry import register_metric
from .similarity import flat_scores


# --------------------------------------------------------------------------------------
# Localisation, the Dabkowski–Gal saliency metric, agreement between metrics
# --------------------------------------------------------------------------------------

def iou_top(maps: torch.Tensor, object_masks: torch.Tensor) -> torch.Tensor:
    """IoU ``[B]`` between each object mask and the map thresholded at its top-|mask| pixels (the
    threshold that makes both regions the same size; higher is better)."""
    scores = flat_scores(maps)
    truth = object_masks.flatten(1).bool().to(scores.device)
    sizes = truth.sum(1).clamp(min=1)
    order = scores.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    predicted = rank < sizes.unsqueeze(1)
    return (predicted & truth).sum(1).float() / (predicted | truth).sum(1).float().clamp(min=1)


register_metric("iou", higher_is_better=True, low=0.0, high=1.0,
                description="IoU of the top-|mask| pixels with the object mask", kind="localisation", function=iou_top)


def pointing_game(maps: torch.Tensor, object_masks: torch.Tensor) -> torch.Tensor:
    """Whether the maximum of the channel-summed map falls inside the object mask (Zhang et al.,
    ECCV 2016) ``[B]``. When several pixels share the maximum, the share of them that lies inside
    (a constant map scores the object's area): no tied pixel is preferred by its position."""
    scores = flat_scores(maps)
    inside = object_masks.flatten(1).bool().to(scores.device)
    top = scores >= scores.max(1, keepdim=True).values
    return (top & inside).sum(1).float() / top.sum(1).float()


register_metric("pointing_game", higher_is_better=True, low=0.0, high=1.0, description="map maximum inside the object",
                kind="localisation", function=pointing_game)


def relevance_mass(maps: torch.Tensor, object_masks: torch.Tensor) -> torch.Tensor:
    """Share of the positive part of the channel-summed map that lies inside the object mask
    (relevance mass accuracy, Arras, Osman & Samek, *Information Fusion* 2022) ``[B]``. For maps that
    are magnitudes (Saliency, VarGrad) the positive part is the whole map; for signed maps (IG,
    SmoothGrad, LIME) negative evidence does not count. The one definition every table uses."""
    scores = flat_scores(maps).clamp(min=0)
    inside = object_masks.flatten(1).float().to(scores.device)
    return (scores * inside).sum(1) / scores.sum(1).clamp(min=1e-30)


register_metric("relevance_mass", higher_is_better=True, low=0.0, high=1.0,
                description="positive attribution inside the object", kind="localisation", function=relevance_mass)


@torch.inference_mode()
def saliency_metric(model, images: torch.Tensor, maps: torch.Tensor, target: torch.Tensor,
                    fraction: float = 0.2) -> torch.Tensor:
    """Dabkowski & Gal (NeurIPS 2017): log(max(a, 0.05)) − log(p) where a is the area fraction of the
    tight box around the top ``fraction`` of pixels and p the target's probability on the image
    cropped to that box and resized back to full size. Lower is better."""
    target = check_model_inputs(model, images, target, maps)
    batch, _, height, width = images.shape
    scores = flat_scores(maps).view(batch, height, width)
    threshold = scores.flatten(1).quantile(1 - fraction, dim=1).view(-1, 1, 1)
    crops, areas = [], []
    for index in range(batch):
        ys, xs = torch.nonzero(scores[index] >= threshold[index], as_tuple=True)
        top, bottom, left, right = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        areas.append((bottom - top) * (right - left) / (height * width))
        crop = images[index:index + 1, :, top:bottom, left:right]
        crops.append(torch.nn.functional.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False))
    probability = torch.softmax(model(torch.cat(crops)), 1).gather(1, target.view(-1, 1))[:, 0]
    area = torch.tensor(areas, device=images.device)
    return torch.log(area.clamp(min=0.05)) - torch.log(probability.clamp(min=1e-12))


register_metric("saliency_metric", higher_is_better=False, low=None, high=None,
                description="Dabkowski–Gal: small box, confident crop", function=saliency_metric)
