"""Fidelity of saliency maps: deletion and insertion (Petsiuk et al., BMVC 2018), µFidelity
(Bhatt et al., IJCAI 2020), LIF/MIF/SRG, INPAINT-METRIC and the randomisation sanity check.
"""

from __future__ import annotations

import functools

import torch
import copy
from scipy.stats import rankdata

from ..core.checks import check_model_inputs
from ..core.fills import canonical, fill_images
from .registry import register_metric
from .similarity import flat_scores, spearman
from ..core.chunking import measure_forward_chunk


# --------------------------------------------------------------------------------------
# Fidelity: deletion and insertion (Petsiuk, Das & Saenko, BMVC 2018)
# --------------------------------------------------------------------------------------

def removed_probabilities(model, images: torch.Tensor, fill: torch.Tensor, target: torch.Tensor, n_masks: int,
                          removed, rows: int) -> torch.Tensor:
    """The one removal engine under deletion/insertion, SRG's LIF/MIF and µFidelity: the target's
    softmax probability ``[B, n_masks]`` of each image with the pixels of each removal mask
    replaced by ``fill`` ``[B, C, H, W]``.

    ``removed(block, masks)`` gives the bool masks ``[b, m, 1, H, W]`` (True = removed) of the
    images ``block`` (a slice) and the masks ``masks`` (a slice). Each model call takes up to
    ``rows`` (image, mask) pairs: several masks of a block of images when the batch is small, so
    that a cheap model is not dominated by per-call overhead, and never the whole
    ``[B·M, C, H, W]`` stack in memory."""
    batch = images.shape[0]
    out = torch.empty(batch, n_masks, device=images.device)
    images_per_call = min(batch, rows)
    masks_per_call = max(1, rows // images_per_call)
    for first in range(0, batch, images_per_call):
        block = slice(first, first + images_per_call)
        block_images, block_fill, block_target = images[block, None], fill[block, None], target[block].view(-1, 1, 1)
        for start in range(0, n_masks, masks_per_call):
            masks = slice(start, min(n_masks, start + masks_per_call))
            current = torch.where(removed(block, masks), block_fill, block_images)  # [b, m, C, H, W]
            logits = model(current.flatten(0, 1)).view(current.shape[0], current.shape[1], -1)
            out[block, masks] = torch.softmax(logits.float(), 2).gather(
                2, block_target.expand(-1, current.shape[1], 1))[..., 0]
    return out


def _ranks(scores: torch.Tensor, descending: bool, stable: bool = False) -> torch.Tensor:
    """Each pixel's rank ``[B, H·W]`` in the order of removal (0 = removed first)."""
    order = scores.flatten(1).argsort(dim=1, descending=descending, stable=stable)
    return torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))


def _top_pixels(rank: torch.Tensor, counts: torch.Tensor, height: int, width: int, keep_top: bool):
    """``removed(block, masks)`` for masks that remove the first ``counts[m]`` pixels of ``rank``
    (or, with ``keep_top``, all but them)."""
    def removed(block, masks):
        top = (rank[block, None, :] < counts[masks].view(1, -1, 1)).view(rank[block].shape[0], -1, 1, height, width)
        return ~top if keep_top else top
    return removed


@torch.inference_mode()
def deletion_insertion(model, images: torch.Tensor, maps: torch.Tensor, target: torch.Tensor, steps: int = 16,
                       mode: str = "deletion", substrate: str | float = 0.0, batch_size: int | str = "auto",
                       normalise: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Probability curves as pixels are removed (deletion) or revealed (insertion) in order of
    decreasing attribution, and their areas.

    Parameters
    ----------
    images, maps : ``[B, C, H, W]`` (maps may have one channel or ``[B, H, W]``); pixels are ranked
        by the channel-summed |map| of each image.
    steps : number of equal fractions (curve has ``steps + 1`` points from 0 to 1).
    mode : ``"deletion"`` (start from the image, replace top pixels with the substrate; lower AUC
        is better) or ``"insertion"`` (start from the substrate, insert top pixels; higher is better).
    substrate : a fill of :mod:`stablesal.fills` (a number, ``"mean"``: each image's mean colour,
        ``"blur"``: σ = 5 px at 224 px scaled to the image side, Petsiuk's insertion substrate, ...),
        or an inpainter ``(images, holes) → images`` (:mod:`stablesal.inpainting`): deletion then fills
        the removed pixels from the kept ones at every step (GEN-REMOVE); insertion starts from the
        mean colour and inpaints the not-yet-inserted pixels.
    batch_size : rows (image × step pairs) per model call, or ``"auto"``: the measured fastest
        chunk for this model and image shape (cached per process).
    normalise : rescale each curve to (p_t − p_T)/(p_0 − p_T) before the area.

    Returns
    -------
    curves ``[B, steps + 1]`` of the target's softmax probability; AUC ``[B]`` by the trapezoid rule
    on fractions in [0, 1] (raw, or normalised when ``normalise``).
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    target = check_model_inputs(model, images, target, maps)
    batch, channels, height, width = images.shape
    rank = _ranks(maps.abs().sum(1) if maps.dim() == 4 else maps.abs(), descending=True)
    rows = _rows_per_call(model, images, batch_size)
    if callable(substrate):  # an inpainter: fill exactly the removed pixels of each step from the rest
        return _inpainted_curves(model, images, rank, target, steps, mode, substrate, rows, normalise)
    fill = fill_images(canonical(substrate, "substrate"), images, generator=torch.Generator().manual_seed(0))
    counts = torch.tensor([int(round(f * height * width)) for f in torch.linspace(0, 1, steps + 1).tolist()],
                          device=images.device)
    # deletion removes the top pixels; insertion shows them and removes the rest
    removed = _top_pixels(rank, counts, height, width, keep_top=mode == "insertion")
    curves = removed_probabilities(model, images, fill, target, steps + 1, removed, rows)
    if normalise:
        curves = _normalise_curve(curves)
    auc = torch.trapezoid(curves, dx=1.0 / steps, dim=1)
    return curves, auc


def _rows_per_call(model, images: torch.Tensor, batch_size: int | str) -> int:
    """Rows per model call: ``batch_size``, or with ``"auto"`` the measured best of
    :func:`stablesal.chunking.measure_forward_chunk`."""
    if batch_size == "auto":
        return measure_forward_chunk(model, images.shape[1:], images.device, images.dtype)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int or 'auto', got {batch_size!r}")
    return batch_size


def _inpainted_curves(model, images, rank, target, steps, mode, inpainter, batch_size, normalise):
    batch, channels, height, width = images.shape
    counts = [int(round(f * height * width)) for f in torch.linspace(0, 1, steps + 1).tolist()]
    mean = images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    curves = torch.empty(batch, steps + 1, device=images.device)
    for step, count in enumerate(counts):
        shown = rank >= count if mode == "deletion" else rank < count
        holes = (~shown).view(batch, 1, height, width)
        if bool(holes.all()):
            filled = mean
        elif not bool(holes.any()):
            filled = images
        else:
            filled = inpainter(images, holes)
        probabilities = []
        for start in range(0, batch, batch_size):
            logits = model(filled[start:start + batch_size])
            probabilities.append(torch.softmax(logits, 1).gather(1, target[start:start + batch_size].view(-1, 1))[:, 0])
        curves[:, step] = torch.cat(probabilities)
    if normalise:
        curves = _normalise_curve(curves)
    return curves, torch.trapezoid(curves, dx=1.0 / steps, dim=1)


register_metric("deletion_auc", higher_is_better=False, low=0.0, high=1.0, description="area under the deletion curve",
                function=deletion_insertion)
register_metric("insertion_auc", higher_is_better=True, low=0.0, high=1.0,
                description="area under the insertion curve",
                function=functools.partial(deletion_insertion, mode="insertion"))


def randomised_copy(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """A copy of ``model`` with every learnable layer re-initialised (Adebayo et al., 2018, the
    'full randomisation' variant of the model-randomisation sanity check)."""
    clone = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):  # seeded, without moving the caller's global generator
        torch.manual_seed(seed)
        for module in clone.modules():
            if hasattr(module, "reset_parameters") and any(True for _ in module.parameters(recurse=False)):
                module.reset_parameters()
    for parameter in clone.parameters():
        parameter.requires_grad_(False)
    return clone.eval()


# --------------------------------------------------------------------------------------
# µFidelity (Bhatt, Weller & Moura, IJCAI 2020)
# --------------------------------------------------------------------------------------

def random_cell_subsets(height: int, width: int, n_subsets: int = 200, grid: int = 9, fraction: float = 0.2,
                        seed: int = 0) -> torch.Tensor:
    """Boolean pixel masks ``[n_subsets, H, W]``: each removes a random ``fraction`` of the cells of
    a ``grid × grid`` partition of the image (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    cells = grid * grid
    take = max(1, int(round(fraction * cells)))
    chosen = torch.zeros(n_subsets, cells, dtype=torch.bool)
    for row in range(n_subsets):
        chosen[row, torch.randperm(cells, generator=generator)[:take]] = True
    rows = torch.minimum(torch.arange(height) * grid // height, torch.tensor(grid - 1))
    cols = torch.minimum(torch.arange(width) * grid // width, torch.tensor(grid - 1))
    cell_of_pixel = rows[:, None] * grid + cols[None, :]
    return chosen[:, cell_of_pixel]


@torch.inference_mode()
def output_drops(model, images: torch.Tensor, target: torch.Tensor, subsets: torch.Tensor,
                 substrate: str | float = "mean", batch_size: int = 512) -> torch.Tensor:
    """p_y(x) − p_y(x with subset removed) for every image and subset ``[B, S]``. They do not
    depend on the explanation, so one call serves every method and grouping."""
    target = check_model_inputs(model, images, target)
    fill = fill_images(canonical(substrate, "substrate"), images, generator=torch.Generator().manual_seed(0))
    subsets = subsets.to(images.device)
    full = torch.softmax(model(images).float(), 1).gather(1, target.view(-1, 1))[:, 0]

    def removed(block, masks):  # the same subsets for every image
        shown = subsets[masks]
        return shown.view(1, *shown.shape[:1], 1, *shown.shape[1:]).expand(images[block].shape[0], -1, -1, -1, -1)

    return full[:, None] - removed_probabilities(model, images, fill, target, subsets.shape[0], removed, batch_size)


MU_FIDELITY_CORRELATIONS = ("pearson", "spearman")


def mu_fidelity(maps: torch.Tensor, subsets: torch.Tensor, drops: torch.Tensor,
                correlation: str = "pearson") -> torch.Tensor:
    """µFidelity (Bhatt, Weller & Moura, IJCAI 2020; docs/methods.md §5) per image ``[B]``:
    the correlation, over random subsets S, between the attribution removed (the channel-summed
    map summed over S) and the output drop f(x) − f(x with S replaced) it causes (``drops`` from
    :func:`output_drops`). Pearson's correlation, as in the paper and Quantus's
    ``FaithfulnessCorrelation``; ``correlation="spearman"`` ranks both first. Higher is better."""
    if correlation not in MU_FIDELITY_CORRELATIONS:
        raise ValueError(f"correlation must be one of {MU_FIDELITY_CORRELATIONS}, got {correlation!r}")
    summed = (maps.sum(1) if maps.dim() == 4 else maps).flatten(1).double()
    removed = summed @ subsets.flatten(1).to(summed.device).double().T  # [B, S]
    drops = drops.double()
    if correlation == "spearman":
        removed = torch.from_numpy(rankdata(removed.cpu().numpy(), axis=1)).to(summed.device)
        drops = torch.from_numpy(rankdata(drops.cpu().numpy(), axis=1)).to(summed.device)
    a = removed - removed.mean(1, keepdim=True)
    b = drops - drops.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp(min=1e-30)


register_metric("mu_fidelity", higher_is_better=True, low=-1.0, high=1.0,
                description="correlation of removed attribution with output drop", function=mu_fidelity)


# --------------------------------------------------------------------------------------
# LIF / MIF / SRG (SEG-SMOOTH, docs/methods.md §4)
# --------------------------------------------------------------------------------------

@torch.inference_mode()
def removal_curves(model, images: torch.Tensor, maps: torch.Tensor, target: torch.Tensor, steps: int = 10,
                   most_relevant_first: bool = True, fill: str | float = "mean", batch_size: int = 512) -> torch.Tensor:
    """Target probability ``[B, steps]`` as pixels are deleted cumulatively, at the fractions
    ``linspace(0, 1, steps)`` of the pixels, most (MIF) or least (LIF) relevant first by the
    channel-summed map (ties broken by position). ``fill``: a fill of :mod:`stablesal.fills`:
    ``"mean"`` (each image's mean colour, as SEG-SMOOTH specify), a constant (their released code
    effectively used 0.5), ``"blur"``, ..."""
    fill = canonical(fill, "fill")
    target = check_model_inputs(model, images, target, maps)
    batch, channels, height, width = images.shape
    rank = _ranks(maps.sum(1) if maps.dim() == 4 else maps, descending=most_relevant_first, stable=True)
    substrate = fill_images(fill, images, generator=torch.Generator().manual_seed(0))
    counts = torch.tensor([int(round(f * height * width)) for f in torch.linspace(0, 1, steps).tolist()],
                          device=images.device)
    return removed_probabilities(model, images, substrate, target, steps,
                                 _top_pixels(rank, counts, height, width, keep_top=False), batch_size)


def _normalise_curve(curves: torch.Tensor) -> torch.Tensor:
    first, last = curves[:, :1], curves[:, -1:]
    return (curves - last) / (first - last).abs().clamp(min=1e-6) * torch.sign(first - last)


def srg(model, images: torch.Tensor, maps: torch.Tensor, target: torch.Tensor, steps: int = 10,
        fill: str | float = "mean", normalise: bool = False) -> dict[str, torch.Tensor]:
    """LIF, MIF and SRG = LIF − MIF per image (higher SRG is better; SEG-SMOOTH). Each score is the
    mean target probability over the ``steps`` deletion points; ``normalise`` rescales each curve
    to (y_t − y_T)/(y_0 − y_T) first (their normalised variant)."""
    lif = removal_curves(model, images, maps, target, steps, most_relevant_first=False, fill=fill)
    mif = removal_curves(model, images, maps, target, steps, most_relevant_first=True, fill=fill)
    if normalise:
        lif, mif = _normalise_curve(lif), _normalise_curve(mif)
    return {"lif": lif.mean(1), "mif": mif.mean(1), "srg": lif.mean(1) - mif.mean(1)}


register_metric("srg", higher_is_better=True, low=-1.0, high=1.0,
                description="least- minus most-relevant-first deletion score (SEG-SMOOTH)", function=srg)



# --------------------------------------------------------------------------------------
# INPAINT-METRIC (reconstruction from docs/methods.md §5)
# --------------------------------------------------------------------------------------

def _top_region(maps: torch.Tensor, fraction: float, factor: int) -> torch.Tensor:
    """Boolean ``[B, 1, H, W]``: the top ``fraction`` of pixels of the map smoothed by ``factor``×
    down- and up-sampling (area then bilinear)."""
    scores = flat_scores(maps).view(maps.shape[0], 1, *maps.shape[-2:]).float()
    height, width = scores.shape[-2:]
    small = torch.nn.functional.adaptive_avg_pool2d(scores, (max(1, height // factor), max(1, width // factor)))
    smooth = torch.nn.functional.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)
    smooth = smooth + 1e-9 * scores  # break the plateaus of the upsampled map by the raw map
    count = max(1, int(round(fraction * height * width)))
    order = smooth.flatten(1).argsort(dim=1, descending=True, stable=True)
    region = torch.zeros_like(smooth.flatten(1), dtype=torch.bool)
    region.scatter_(1, order[:, :count], True)
    return region.view_as(smooth)


@torch.no_grad()
def inpaint_metric(model, explain, images: torch.Tensor, target: torch.Tensor, inpainter,
                   fractions=tuple(i / 10 for i in range(1, 11)), smoothing_factor: int | None = None,
                   class_conditional: bool = True) -> dict[str, torch.Tensor]:
    """The INPAINT-METRIC curve of an explanation method (lower area is better).

    For each fraction s, the top-s region of the smoothed map of the explained class c is inpainted
    toward the runner-up class c₂ (a class-conditional inpainter receives c₂; class-agnostic:
    no label), and the image is re-classified. A success (the prediction leaves c) counts with
    weight ω_s = |T_s(new map of the new class) ∩ (T_s(old map of c) ∪ T_s(old map of c₂))| /
    |T_s(new map)|: the new decision must rest on the region the explanation pointed to. The
    curve is 1 − success·ω; its area over s is the score.

    Reconstruction: the released code uses Stable Diffusion with a text prompt and 3 samples; here
    the learned class-conditional inpainter (deterministic, one sample) stands in for it, and the
    exact success weighting is this function's reading of the paper.

    ``explain(images, target) → maps``; ``smoothing_factor`` defaults to side/14 (16 at 224 px).
    """
    target = check_model_inputs(model, images, target)
    batch, _, height, width = images.shape
    factor = smoothing_factor or max(1, round(height / 14))
    with torch.inference_mode():
        logits = model(images)
    runner_up = logits.topk(2, dim=1).indices[:, 1]
    old_c = explain(images, target)
    old_2 = explain(images, runner_up)
    curve = torch.empty(batch, len(fractions), device=images.device)
    for step, fraction in enumerate(fractions):
        region = _top_region(old_c, fraction, factor)
        labels = runner_up if class_conditional else None
        edited = inpainter(images, region, labels) if class_conditional else inpainter(images, region)
        with torch.inference_mode():
            new_class = model(edited).argmax(1)
        success = new_class.ne(target)
        new_map = explain(edited, new_class)
        new_region = _top_region(new_map, fraction, factor)
        old_union = region | _top_region(old_2, fraction, factor)
        overlap = (new_region & old_union).flatten(1).sum(1).float() / new_region.flatten(1).sum(1).clamp(min=1)
        curve[:, step] = 1 - success.float() * overlap
    area = torch.trapezoid(curve, torch.tensor(fractions, device=images.device), dim=1) / (fractions[-1] - fractions[0])
    return {"curve": curve, "area": area}


register_metric("inpaint_metric", higher_is_better=False, low=0.0, high=1.0,
                description="area of 1 − weighted success of inpainting", function=inpaint_metric)
