"""Tests of :mod:`stablesal.data.selection`: the class-balanced order studies take test images in."""

import numpy as np
import pytest
import torch

from stablesal.data import (
    ImageDataset, class_counts, image_folder_dataset, ordered_for_explaining, stratified_order, with_test_order,
)

from tests.helpers.image_files import class_folders


def _balanced(part: np.ndarray, halves: list[int]) -> bool:
    """Whether no class of ``part`` has more than one image more than another, unless the other has
    used up its half (``halves[c]``: class c's images in that half of the order)."""
    counts = [(part == c).sum() for c in range(len(halves))]
    return all(counts[a] + 1 >= counts[b] or counts[a] == halves[a] for a in range(len(halves))
               for b in range(len(halves)))


@pytest.mark.parametrize("sizes", [(5, 5, 5), (7, 3, 12), (1, 9), (4, 4, 4, 4, 1)])
def test_every_prefix_and_suffix_up_to_half_is_class_balanced(sizes):
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(sizes)])  # ordered by class, as a folder is
    order = stratified_order(torch.from_numpy(labels), seed=3).numpy()
    assert sorted(order) == list(range(len(labels)))
    in_order = labels[order]
    fronts = [(n + 1) // 2 for n in sizes]  # each class's first half: the front of the order
    backs = [n // 2 for n in sizes]
    assert sum(backs) <= len(labels) // 2 <= sum(fronts)
    for n in range(1, len(labels) // 2 + 1):
        assert _balanced(in_order[:n], fronts), (n, in_order[:n])
    for n in range(1, sum(backs) + 1):
        assert _balanced(in_order[len(labels) - n:], backs), (n, in_order[-n:])
    if min(sizes) > 2:  # the class order itself is not (the check can fail)
        assert not _balanced(np.sort(labels)[:len(labels) // 2], fronts)


def test_the_order_by_hand():
    # classes 0 (indices 0-3) and 1 (4-5); the shuffles decide only which class is dealt first:
    # class 0 first: fronts 0, 1, 0, backs 0, 1, 0 written backwards; class 1 first: 1, 0, 0 and 0, 0, 1
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    seen = {tuple(labels[stratified_order(labels, seed)].tolist()) for seed in range(20)}
    assert seen == {(0, 1, 0, 0, 1, 0), (1, 0, 0, 0, 0, 1)}
    order = stratified_order(labels, seed=0).tolist()
    assert set(order[:3]) | set(order[3:]) == set(range(6))


def test_the_seed_shuffles_the_images_and_the_order_classes_are_dealt_in():
    labels = torch.arange(40) % 4
    a, b, c = (stratified_order(labels, seed) for seed in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    firsts = {tuple(labels[stratified_order(labels, seed)][:4].tolist()) for seed in range(20)}
    assert len(firsts) > 1 and all(sorted(first) == [0, 1, 2, 3] for first in firsts)  # one of each, seeded order
    one_each = {int(labels[stratified_order(labels, seed)][0]) for seed in range(20)}
    assert one_each == {0, 1, 2, 3}  # with fewer images than classes, which class is explained varies


def test_reordering_keeps_images_labels_and_masks_together():
    images = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 1, 2, 2).contiguous()
    masks = images[:, 0] > 2
    dataset = ImageDataset("t", images[:0], torch.zeros(0, dtype=torch.long), images, torch.tensor([0, 0, 0, 1, 1, 1]),
                           ["a", "b"], train_masks=masks[:0], test_masks=masks, mean=(0.5,), std=(1.0,))
    order = torch.tensor([5, 0, 4, 1, 3, 2])
    moved = with_test_order(dataset, order)
    assert moved.test_images[:, 0, 0, 0].tolist() == [5, 0, 4, 1, 3, 2]
    assert moved.test_labels.tolist() == [1, 0, 1, 0, 1, 0] and moved.test_masks[:, 0, 0].tolist() == [
        True, False, True, False, True, False]
    assert moved.mean == (0.5,) and moved.train_images is dataset.train_images
    with pytest.raises(ValueError, match="permutation of the 6 test images"):
        with_test_order(dataset, torch.tensor([0, 0, 1, 2, 3, 4]))
    assert ordered_for_explaining(dataset, "first") is dataset
    with pytest.raises(ValueError, match=r"\[data\] selection must be one of \('stratified', 'first'\), got 'random'"):
        ordered_for_explaining(dataset, "random")
    unlabelled = with_test_order(dataset, torch.arange(6))
    unlabelled.test_labels = torch.full((6,), -1)
    assert ordered_for_explaining(unlabelled) is unlabelled  # its classes are known once a model labels it


def test_a_class_ordered_folder_is_explained_class_by_class(tmp_path):
    """Issue #31: a class-folder test split lists class 0 first, so the first images were all one class."""
    dataset = image_folder_dataset(class_folders(tmp_path / "images", per_class=10), size=16)
    assert dataset.test_labels.tolist() == [0, 0, 1, 1, 2, 2]  # the defect's premise
    first = ordered_for_explaining(dataset, "stratified", seed=0)
    assert class_counts(first.test_labels[:3], first.class_names) == {"blue": 1, "green": 1, "red": 1}
    assert class_counts(first.test_labels[-3:], first.class_names) == {"blue": 1, "green": 1, "red": 1}
    assert class_counts(dataset.test_labels[:3], dataset.class_names) == {"blue": 2, "green": 1}
    assert class_counts(torch.tensor([0, 7]), ["a"]) == {"a": 1, "class 7": 1}
