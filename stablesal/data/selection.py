"""Which test images are explained: a seeded, class-balanced order of the test split.

Every study explains a run of consecutive test images from the front of an order (the stability,
perturbation and consensus studies the first ``n``, the removal study the run after the
stability study's) or from its back (the factor study's last ``n``, so that it explains other
images). A
test split is often ordered by class (a class-folder dataset lists class 0 first), so "the first
``n``" would be one class. :func:`stratified_order` reorders the split so that both ends are
balanced: any first ``n`` and any last ``n`` images (up to about half the split), and any run of
consecutive images inside the front half, hold every class equally often, up to one image, as long
as a class has images left in that half. The pipeline and the
``explain``/``perturb`` commands apply it to the dataset before any study runs (``[data]
selection``), so every study draws from the same order.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .datasets import ImageDataset

# How the images to explain are chosen: "stratified" (the seeded, class-balanced order of
# :func:`stratified_order`) or "first" (the split's own order, as the dataset lists it)
SELECTIONS = ("stratified", "first")


def _round_robin(groups: list[np.ndarray]) -> list[int]:
    """One item of each group in turn (groups in their order), skipping a group once it is empty."""
    order: list[int] = []
    for position in range(max((len(group) for group in groups), default=0)):
        order.extend(int(group[position]) for group in groups if position < len(group))
    return order


def stratified_order(labels: torch.Tensor | np.ndarray, seed: int) -> torch.Tensor:
    """A permutation ``[N]`` of the indices of ``labels`` ``[N]`` whose every prefix of length up to
    ``N // 2`` and every suffix of length up to ``Σ_c ⌊N_c / 2⌋`` is class-balanced (``N_c``: the
    images of class c).

    Each class's images are shuffled with ``seed`` and cut in two halves (the first half takes the
    odd one); the order the classes are dealt in is seeded too (with fewer images than classes, the
    classes explained are a random choice, not the first ones). The first halves are dealt in
    turn, class after class (the front of the order), then
    the second halves likewise, written backwards (the back of the order): so the first ``n`` and
    the last ``n`` images hold ``⌊n / C⌋`` or ``⌈n / C⌉`` images of each of the ``C`` classes while
    every class has images left in that half. Unlabelled images (label −1) count as one class.
    """
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one label per image [N], got shape {labels.shape}")
    rng = np.random.default_rng(seed)
    members = [rng.permutation(np.flatnonzero(labels == label)) for label in np.unique(labels)]
    members = [members[i] for i in rng.permutation(len(members))]  # which class is dealt first: seeded too
    fronts = [group[: (len(group) + 1) // 2] for group in members]
    backs = [group[(len(group) + 1) // 2:] for group in members]
    return torch.tensor(_round_robin(fronts) + _round_robin(backs)[::-1], dtype=torch.long)


def with_test_order(dataset: ImageDataset, order: torch.Tensor) -> ImageDataset:
    """``dataset`` with its test images, labels and masks permuted by ``order`` ``[N_test]``
    (the training split, class names and normalisation are unchanged); ``test_positions`` says where
    each image was in the split as loaded."""
    if sorted(order.tolist()) != list(range(len(dataset.test_labels))):
        raise ValueError(f"order must be a permutation of the {len(dataset.test_labels)} test images")
    masks = dataset.test_masks
    positions = (torch.arange(len(order)) if dataset.test_positions is None else dataset.test_positions)[order]
    return dataclasses.replace(dataset, test_images=dataset.test_images[order], test_labels=dataset.test_labels[order],
                               test_masks=None if masks is None else masks[order], mean=dataset.mean, std=dataset.std,
                               test_positions=positions)


def test_positions(dataset: ImageDataset, start: int, stop: int) -> list[int]:
    """Where test images ``start:stop`` (of the current order) were in the split as loaded."""
    stop = min(stop, len(dataset.test_labels))
    if dataset.test_positions is None:
        return list(range(start, stop))
    return dataset.test_positions[start:stop].tolist()


def ordered_for_explaining(dataset: ImageDataset, selection: str = "stratified", seed: int = 0) -> ImageDataset:
    """``dataset`` with its test split in the order studies take images from: the stratified order
    of its labels (``selection="stratified"``, seeded) or its own order (``"first"``). An unlabelled
    dataset is returned as it is: its classes are known once a model has labelled it."""
    if selection not in SELECTIONS:
        raise ValueError(f"[data] selection must be one of {SELECTIONS}, got {selection!r}")
    if selection == "first" or not dataset.labelled:
        return dataset
    return with_test_order(dataset, stratified_order(dataset.test_labels, seed))


def class_counts(labels: torch.Tensor, class_names: list[str]) -> dict[str, int]:
    """How many of ``labels`` ``[n]`` fall in each class, by class name (classes with none left out;
    a label without a name is called ``class <label>``)."""
    values, counts = np.unique(np.asarray(labels.cpu()), return_counts=True)
    return {(class_names[v] if 0 <= v < len(class_names) else f"class {v}"): int(c) for v, c in zip(values, counts)}
