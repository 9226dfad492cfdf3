"""The consensus map: which regions of an image a family of retrained models attributes
consistently, with the false-discovery rate controlled (docs/methods.md §7).

For one image, method and grouping, each of the K models' maps is reduced to region scores (the
mean of |a| summed over channels over each region: super-pixels, grid cells or pixel blocks), and
each model ranks the image's R regions. Two tests, two questions:

* *Agreement* (no reference): a region is consistent when its ranks across the K models are
  higher than a typical region's: the rank-sum test of
  :func:`stablesal.multiple_testing.rank_sum_p_values` (exact for any K, null: the region's rank
  is uniform under every model, the models independent). It measures agreement among the trained
  models, not learning: untrained networks agree on edges and contrast too, and it finds regions
  in their maps.
* *Learning beyond a null* (reference models: a null family of the same architecture that learned
  nothing about the classes, e.g. random-label, BN-calibrated or untrained networks): the
  two-sample permutation test "trained models rank this region higher than the reference models
  do", exact whatever structure the architecture alone puts in the maps when the K + L models are
  exchangeable under the null.

The p-values of an image's regions go through Benjamini–Hochberg (or Benjamini–Yekutieli) at level
``q`` per image (``scope="image"``), or over every region of every image when the question is
about the whole set (``scope="set"``).

Models are streamed: one model's maps are alive at a time; what is kept is the running mean of
the grey maps ``[N, H, W]`` and the region ranks ``[K, N, R]``. Random explainers draw
independently per model, and ties between region scores are broken at random from a seed
derived per model and image, so every p-value is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import io
from matplotlib.image import imsave
from tqdm.auto import tqdm

from ...explain.grouping import Partition
from ...core.intervals import interval_note
from ...metrics.similarity import grey_maps
from ...metrics.agreement import mean_ci
from ...core.multiple_testing import PROCEDURES, rank_sum_p_values, reject, two_sample_permutation_p_values
from ...core.seeding import derive, image_seeds
from ...explain.segmentation import make_segmenter
from ...core.settings import SCOPES, StudySettings  # noqa: F401  (SCOPES: re-exported)
from ..stability.run import compute_partitions, explain_groupings, explainer_seed
from ...core.storage import atomic_write_bytes

# results.json "intervals": the consensus tables' t intervals, per table
TEST_INTERVALS = interval_note("t-over-units", sampled=["test images"], fixed=["the models and their maps"],
                               columns="<name>_low / <name>_high")
CALIBRATION_INTERVALS = interval_note(
    "t-over-units", sampled=["simulated studies"], fixed=["the maps the studies are built from"],
    columns="fdr_low / fdr_high",
    caveat="pool studies draw their models from one pool and share them, so that interval is for orientation")



def region_scores(maps: torch.Tensor, segments: torch.Tensor) -> np.ndarray:
    """Mean of |a| summed over channels over each region: maps ``[N, C, H, W]`` (or ``[N, H, W]``)
    and segments ``[N, H, W]`` → ``[N, R]`` float64 with R = the largest segment id + 1; NaN for ids
    an image does not use."""
    magnitude = maps.detach().double().abs()
    magnitude = magnitude.sum(1) if maps.dim() == 4 else magnitude
    partition = Partition(segments.to(magnitude.device))
    sums = partition.segment_sums(magnitude.unsqueeze(1))[:, 0]
    counts = partition.counts.double()
    scores = (sums / counts.clamp(min=1)).cpu().numpy()
    scores[(counts == 0).cpu().numpy()] = np.nan
    return scores


def region_ranks(scores: np.ndarray, seeds: Sequence[int]) -> np.ndarray:
    """Ranks 1 … R_n of each image's present regions (1 = lowest score), ties broken at random
    with one seed per image; absent regions (NaN) stay NaN. ``[N, R]`` → ``[N, R]``."""
    ranks = np.full(scores.shape, np.nan)
    for image, seed in enumerate(seeds):
        present = np.nonzero(np.isfinite(scores[image]))[0]
        tie_break = np.random.default_rng(seed).random(present.size)
        order = np.lexsort((tie_break, scores[image, present]))
        ranks[image, present[order]] = np.arange(1, present.size + 1)
    return ranks


def object_regions(segments: torch.Tensor, masks: torch.Tensor, threshold: float = 0.5) -> np.ndarray:
    """Regions with at least ``threshold`` of their pixels inside the object mask: ``[N, R]`` bool
    (the planted ground truth of the power measurement)."""
    partition = Partition(segments)
    inside = partition.segment_sums(masks.double().reshape(segments.shape).unsqueeze(1))[:, 0]
    counts = partition.counts.double()
    return ((inside >= threshold * counts) & (counts > 0)).cpu().numpy()


def consensus_test(ranks: np.ndarray, n_regions: np.ndarray, reference_ranks: np.ndarray | None = None,
                   q: float = 0.05, procedure: str = "bh", scope: str = "image", n_permutations: int = 10_000,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """P-values and rejections ``[N, R]`` from ranks ``[K, N, R]`` (and reference ranks ``[L, N, R]``).

    Per image (``scope="image"``) the rejections control the false-discovery rate over that
    image's regions; with ``scope="set"`` over all regions of all images."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    if procedure not in PROCEDURES:
        raise ValueError(f"procedure must be one of {PROCEDURES}, got {procedure!r}")
    if ranks.shape[0] < 3:
        raise ValueError(f"a consensus test needs at least 3 models, got {ranks.shape[0]}")
    if reference_ranks is None:
        p_values = rank_sum_p_values(ranks, n_regions)
    else:
        if reference_ranks.shape[0] < 1 or reference_ranks.shape[1:] != ranks.shape[1:]:
            raise ValueError(f"reference_ranks must be [L >= 1, N, R] with N, R as ranks {ranks.shape[1:]}, got "
                             f"{reference_ranks.shape}")
        n_images, width = ranks.shape[1:]
        p_values = two_sample_permutation_p_values(ranks.reshape(ranks.shape[0], -1),
                                                   reference_ranks.reshape(reference_ranks.shape[0], -1),
                                                   n_permutations=n_permutations, seed=seed
                                                   ).reshape(n_images, width)
    if scope == "set":
        return p_values, reject(p_values, q, procedure)
    return p_values, np.stack([reject(row, q, procedure) for row in p_values]) if len(p_values) else p_values.astype(bool)


@dataclass
class ConsensusMap:
    """The result for one method × grouping on N images.

    ``mean_map``: ``[N, H, W]`` mean of the K models' grey maps; ``segments``: ``[N, H, W]``
    regions; ``p_values`` and ``significant``: ``[N, R]`` (NaN / False for absent ids)."""

    method: str
    grouping: str
    n_models: int
    q: float
    procedure: str
    scope: str
    test: str
    mean_map: torch.Tensor
    segments: torch.Tensor
    p_values: np.ndarray
    significant: np.ndarray
    n_reference: int = 0
    extra: dict = field(default_factory=dict)

    def mask(self) -> torch.Tensor:
        """``[N, H, W]`` bool: pixels of the significant regions."""
        significant = torch.from_numpy(self.significant)
        return significant.gather(1, self.segments.flatten(1).long().cpu()).view_as(self.segments)

    def counts(self) -> list[dict]:
        """Per image: regions tested, regions significant, and the share of the image they cover."""
        area = self.mask().flatten(1).double().mean(1)
        return [{"image": i, "regions": int(np.isfinite(self.p_values[i]).sum()),
                 "significant": int(self.significant[i].sum()), "area": float(area[i])}
                for i in range(self.p_values.shape[0])]

    def summary(self, masks: torch.Tensor | None = None) -> dict:
        """One row: the design, mean counts with intervals over images, the images with any region
        found (count and share), and with object masks the power (share of object regions found)
        and the share of discoveries on the object."""
        counts = self.counts()
        row = {"method": self.method, "grouping": self.grouping, "n_models": self.n_models, "q": self.q,
               "procedure": self.procedure, "scope": self.scope, "test": self.test, "n_reference": self.n_reference,
               "n_images": len(counts)}
        for key in ("regions", "significant", "area"):
            row[key], row[f"{key}_low"], row[f"{key}_high"] = mean_ci([c[key] for c in counts])
        # under a complete null every image with a discovery is a false discovery: this share is the FDR
        row["images_with_regions"] = int(sum(1 for c in counts if c["significant"] > 0))
        row["share_with_regions"] = row["images_with_regions"] / max(len(counts), 1)
        if masks is not None:
            on_object = object_regions(self.segments, masks.to(self.segments.device))
            found = (self.significant & on_object).sum(1)
            row["object_regions"] = float(on_object.sum(1).mean())
            row["power"], row["power_low"], row["power_high"] = mean_ci(
                [f / o for f, o in zip(found, on_object.sum(1)) if o > 0])
            discoveries = self.significant.sum(1)
            row["on_object"], row["on_object_low"], row["on_object_high"] = mean_ci(
                [f / d for f, d in zip(found, discoveries) if d > 0])
        return row

    def save_masks_png(self, folder: Path | str, prefix: str = "mask") -> list[Path]:
        """One black-and-white PNG per image (white: a significant region); see :func:`write_mask_pngs`."""
        return write_mask_pngs(self.mask().numpy(), folder, prefix)

    def save(self, path: Path | str) -> None:
        """Everything in one ``.npz`` (mean map, region mask, p-values, segments), written atomically."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, mean_map=self.mean_map.cpu().numpy(), mask=self.mask().numpy(),
                            p_values=self.p_values, significant=self.significant,
                            segments=self.segments.cpu().numpy())
        atomic_write_bytes(path, buffer.getvalue())


def write_mask_pngs(masks: np.ndarray, folder: Path | str, prefix: str = "mask") -> list[Path]:
    """Region masks ``[N, H, W]`` as ``<prefix>_<i>.png``, one per image, each written atomically."""
    paths = []
    for index, mask in enumerate(np.asarray(masks)):
        buffer = io.BytesIO()
        imsave(buffer, mask.astype(np.uint8) * 255, cmap="gray", vmin=0, vmax=255, format="png")
        paths.append(Path(folder) / f"{prefix}_{index:04d}.png")
        atomic_write_bytes(paths[-1], buffer.getvalue())
    return paths


def consensus_regions(images: torch.Tensor, grouping: str, n_segments: int) -> tuple[dict, torch.Tensor]:
    """The maps' grouping for :func:`explain_groupings` and the regions tested: a super-pixel or
    grid grouping tests its own segments; ``pixel`` maps are tested on a grid of pixel blocks."""
    if grouping == "pixel":
        return {"pixel": None}, make_segmenter("grid", n_segments=n_segments)(images)
    partitions = compute_partitions(images, [grouping], n_segments)
    if grouping not in partitions:
        raise ValueError(f"grouping must be 'pixel', 'grid' or a segmenter name, got {grouping!r}")
    return {grouping: partitions[grouping]}, partitions[grouping]


def model_seed(settings: StudySettings, model_set: str, index: int, repeat: int = 0) -> int:
    """The explainer seed of model ``index`` of ``model_set`` in the consensus and pilot passes.

    The consensus tests need independent draws per model (the rank-sum null assumes the models'
    ranks independent). With independent draws these are the stability study's own seeds
    (:func:`stablesal.stability.explainer_seed`), so that the maps it kept
    (:class:`stablesal.map_store.MapStore`) are the ones the consensus would draw; with common
    draws (one stream shared by every model) the consensus keeps streams of its own."""
    if settings.draws == "independent":
        return explainer_seed(settings, model_set, index, repeat)
    return derive(settings.seed, "consensus", model_set, index, repeat)


def explain_one(method: str, model, seed: int, images: torch.Tensor, targets: torch.Tensor, groupings: dict,
                settings: StudySettings, store=None) -> torch.Tensor:
    """The maps of ``model`` under the one grouping of ``groupings``, from ``store`` when it kept
    them, else computed."""
    grouping = next(iter(groupings))
    kept = None if store is None else store.get(method, model, seed, settings, grouping, images, targets,
                                                groupings[grouping])
    if kept is not None:
        return kept.to(images.device)
    return explain_groupings(method, model, seed, images, targets, groupings, settings)[grouping]


def model_ranks(models: Sequence[torch.nn.Module], images: torch.Tensor, targets: torch.Tensor, method: str,
                groupings: dict, segments: torch.Tensor, settings: StudySettings, model_set: str,
                progress: bool = False, on_model=None, store=None) -> tuple[np.ndarray, torch.Tensor]:
    """Region ranks ``[K, N, R]`` of every model and the mean grey map ``[N, H, W]``, one model at a
    time (model k draws from :func:`model_seed`). ``on_model(k, grey)``, when given, sees each
    model's grey maps ``[N, H, W]`` before they are dropped."""
    grouping = next(iter(groupings))
    ranks, mean_map = [], None
    for index, model in enumerate(tqdm(models, desc=f"consensus {method}/{grouping}", disable=not progress)):
        seed = model_seed(settings, model_set, index)
        maps = explain_one(method, model, seed, images, targets, groupings, settings, store)
        grey = grey_maps(maps).double().cpu()
        mean_map = grey if mean_map is None else mean_map + (grey - mean_map) / (index + 1)
        ranks.append(region_ranks(region_scores(maps, segments), image_seeds(images, derive(seed, "ties"))))
        if on_model is not None:
            on_model(index, grey)
    return np.stack(ranks), mean_map.float()


def run_consensus(models: Sequence[torch.nn.Module], images: torch.Tensor, targets: torch.Tensor, method: str,
                  grouping: str = "fastslic", settings: StudySettings | None = None,
                  reference_models: Sequence[torch.nn.Module] | None = None, q: float = 0.05,
                  procedure: str = "bh", scope: str = "image", n_permutations: int = 10_000,
                  progress: bool = False) -> ConsensusMap:
    """The consensus map of ``method`` under ``grouping`` across ``models`` (K ≥ 3 independently
    retrained models) on ``images`` ``[N, C, H, W]`` for ``targets`` ``[N]``. Without reference
    models the test is the rank-sum test (agreement among the models, not learning); with
    ``reference_models`` (a null family: random-label, BN-calibrated or untrained networks) it is
    trained-vs-reference (learning beyond that null)."""
    settings = settings or StudySettings()
    if len(models) < 3:
        raise ValueError(f"models: a consensus map needs at least 3 retrained models, got {len(models)}")
    if not 0.0 < q < 1.0:
        raise ValueError(f"q (the false-discovery rate) must be in (0, 1), got {q}")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    if procedure not in PROCEDURES:
        raise ValueError(f"procedure must be one of {PROCEDURES}, got {procedure!r}")
    if reference_models is not None and len(reference_models) < 1:
        raise ValueError("reference_models: give at least one reference model, or None for the rank-sum test")
    groupings, segments = consensus_regions(images, grouping, settings.n_segments)
    ranks, mean_map = model_ranks(models, images, targets, method, groupings, segments, settings, "main", progress)
    reference = None
    if reference_models is not None:
        reference, _ = model_ranks(reference_models, images, targets, method, groupings, segments, settings,
                                   "reference", progress)
    n_regions = np.isfinite(ranks[0]).sum(1)
    p_values, significant = consensus_test(ranks, n_regions, reference, q=q, procedure=procedure, scope=scope,
                                           n_permutations=n_permutations, seed=derive(settings.seed, "permutations"))
    return ConsensusMap(method=method, grouping=grouping, n_models=len(models), q=q, procedure=procedure,
                        scope=scope, test="rank-sum" if reference is None else "trained vs reference (permutation)",
                        mean_map=mean_map, segments=segments.cpu(), p_values=p_values, significant=significant,
                        n_reference=0 if reference is None else len(reference_models))


# --------------------------------------------------------------------------------------
# Calibration: the observed false-discovery rate under nulls where no region is consistent
# --------------------------------------------------------------------------------------

def permuted_ranks(ranks: np.ndarray, seed: int) -> np.ndarray:
    """Each model's ranks ``[K, N, R]`` shuffled independently across the present regions of each
    image: the null in which no region is consistent, with every map's own distribution kept.
    Absent regions (NaN) stay where they are."""
    rng = np.random.default_rng(seed)
    absent = np.isnan(ranks)
    keys = np.where(absent, np.inf, rng.random(ranks.shape))
    shuffled = np.take_along_axis(ranks, np.argsort(keys, axis=2), axis=2)  # present values in random order, NaN last
    positions = np.argsort(absent, axis=2, kind="stable")                    # present positions first, in order
    out = np.empty_like(ranks)
    np.put_along_axis(out, positions, shuffled, axis=2)
    return out


def false_discovery_proportions(significant: np.ndarray, null_regions: np.ndarray | None = None,
                                scope: str = "image") -> np.ndarray:
    """False-discovery proportion per family: per image (``scope="image"``, ``[N]``) or one value
    for the set. With every region null (``null_regions=None``) it is 1 for a family with any
    discovery and 0 otherwise."""
    null = np.ones(significant.shape, dtype=bool) if null_regions is None else null_regions
    if scope == "set":
        significant, null = significant.reshape(1, -1), null.reshape(1, -1)
    found = significant.sum(1)
    false = (significant & null).sum(1)
    return np.where(found > 0, false / np.maximum(found, 1), 0.0)


def permutation_calibration(ranks: np.ndarray, n_studies: int = 200, q: float = 0.05, procedure: str = "bh",
                            scope: str = "image", seed: int = 0) -> dict:
    """The observed false-discovery rate of the rank-sum consensus test over ``n_studies``
    simulated studies, each built from the real ranks ``[K, N, R]`` with every model's map permuted
    independently across regions. Studies are independent given the maps, so the interval is a t
    interval over studies of their mean false-discovery proportion."""
    n_regions = np.isfinite(ranks[0]).sum(1)
    per_study = []
    for study in range(n_studies):
        null = permuted_ranks(ranks, derive(seed, "calibration", study))
        _, significant = consensus_test(null, n_regions, q=q, procedure=procedure, scope=scope)
        per_study.append(float(false_discovery_proportions(significant, scope=scope).mean()))
    fdr, low, high = mean_ci(per_study)
    return {"null": "permuted", "n_studies": n_studies, "q": q, "procedure": procedure, "scope": scope,
            "n_models": int(ranks.shape[0]), "n_images": int(ranks.shape[1]), "fdr": fdr, "fdr_low": low,
            "fdr_high": high}


def subset_calibration(pool_ranks: np.ndarray, n_models: int, n_reference: int = 0, n_studies: int = 200,
                       q: float = 0.05, procedure: str = "bh", scope: str = "image", seed: int = 0,
                       n_permutations: int = 1000) -> dict:
    """The observed discovery rate on a pool of null models (e.g. random-label or untrained
    networks, whose maps no training on the classes made consistent): each study draws ``n_models`` of the pool's ``[P, N, R]`` ranks
    at random, and with ``n_reference`` > 0 as many more, disjoint from them, as the reference of
    the two-sample test. Every discovery is false under this null only if the architecture alone
    makes no region consistent; the rank-sum test's rate here measures how far it does. Studies
    share models, so the t interval over studies is for orientation; the pool size is stated."""
    if n_models + n_reference > pool_ranks.shape[0]:
        raise ValueError(f"the pool holds {pool_ranks.shape[0]} models, fewer than n_models + n_reference = "
                         f"{n_models + n_reference}")
    n_regions = np.isfinite(pool_ranks[0]).sum(1)
    rng = np.random.default_rng(derive(seed, "subsets"))
    per_study = []
    for study in range(n_studies):
        chosen = rng.choice(pool_ranks.shape[0], size=n_models + n_reference, replace=False)
        reference = pool_ranks[chosen[n_models:]] if n_reference else None
        _, significant = consensus_test(pool_ranks[chosen[:n_models]], n_regions, reference, q=q,
                                        procedure=procedure, scope=scope, n_permutations=n_permutations,
                                        seed=derive(seed, "permutations", study))
        per_study.append(float(false_discovery_proportions(significant, scope=scope).mean()))
    fdr, low, high = mean_ci(per_study)
    return {"null": "pool", "pool": int(pool_ranks.shape[0]), "n_studies": n_studies, "q": q, "procedure": procedure,
            "scope": scope, "n_models": n_models, "n_reference": n_reference, "n_images": int(pool_ranks.shape[1]),
            "fdr": fdr, "fdr_low": low, "fdr_high": high,
            "test": "rank-sum" if not n_reference else "trained vs reference (permutation)"}
