"""Known answers for two pairwise similarity metrics on maps that are *not* identical (the other
tests compare a map with itself or with its mirror image, where the top-k fraction and the
normalisation of the L2 distance make no difference). Each expected value is derived by hand and
checked against a plain NumPy computation."""

import math

import numpy as np
import pytest
import torch

from stablesal.metrics import normalised_l2, pairwise_similarity, topk_intersection


def numpy_topk_overlap(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """|top-k(a) ∩ top-k(b)| / k with sets of pixel indices (the maps here have no ties)."""
    top_a = set(np.argsort(-a, kind="stable")[:k].tolist())
    top_b = set(np.argsort(-b, kind="stable")[:k].tolist())
    return len(top_a & top_b) / k


def two_maps_top2_shared_top10_not():
    """20 pixels. a ranks pixel 19 highest, then 18, …, 0. b keeps pixels 19 and 18 on top but puts
    pixels 0 … 7 next: the top 10 % (k = 2) of a and b are both {18, 19}, while the top 50 %
    (k = 10) are {10, …, 19} and {18, 19, 0, …, 7}, which share only {18, 19}: 2 / 10."""
    a = np.arange(20, dtype=float)
    b = np.zeros(20)
    b[19], b[18] = 100.0, 99.0
    b[:8] = 50.0 - np.arange(8)          # 50, 49, …, 43: ranks 3 … 10 of b
    b[8:18] = np.arange(10, dtype=float)  # 0 … 9: the bottom ten of b
    return a, b


def test_topk_intersection_uses_the_top_ten_percent_by_default():
    a, b = two_maps_top2_shared_top10_not()
    assert numpy_topk_overlap(a, b, 2) == 1.0 and numpy_topk_overlap(a, b, 10) == pytest.approx(0.2)
    maps_a = torch.from_numpy(a).view(1, 4, 5)
    maps_b = torch.from_numpy(b).view(1, 4, 5)
    assert topk_intersection(maps_a, maps_b).item() == 1.0               # k = round(0.1 · 20) = 2
    assert topk_intersection(maps_a, maps_b, fraction=0.5).item() == pytest.approx(0.2)  # k = 10
    assert pairwise_similarity(maps_a, maps_b, ["topk_intersection"])["topk_intersection"].item() == 1.0
    # k = round(0.25 · 20) = 5: a's top five {15, …, 19}, b's {18, 19, 0, 1, 2}: 2 / 5
    assert topk_intersection(maps_a, maps_b, fraction=0.25).item() == pytest.approx(numpy_topk_overlap(a, b, 5))
    assert numpy_topk_overlap(a, b, 5) == pytest.approx(0.4)


def test_topk_intersection_per_image_on_random_maps_against_numpy():
    rng = np.random.default_rng(7)
    a, b = rng.random((6, 10, 10)), rng.random((6, 10, 10))
    b[:3] = a[:3] + 0.3 * rng.random((3, 10, 10))  # related pairs: partial overlaps
    scores = topk_intersection(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    expected = [numpy_topk_overlap(a[i].ravel(), b[i].ravel(), 10) for i in range(6)]
    np.testing.assert_allclose(scores, expected, rtol=0, atol=0)
    assert len(set(expected)) > 1  # the images differ, so a per-image mix-up would show
    # a tiny fraction still keeps one pixel: k = max(1, round(0.001 · 100)) = 1
    single = topk_intersection(torch.from_numpy(a), torch.from_numpy(b), fraction=0.001).numpy()
    np.testing.assert_array_equal(single, [float(a[i].argmax() == b[i].argmax()) for i in range(6)])


def test_normalised_l2_by_hand_on_different_maps():
    # a = (3, 4) → (0.6, 0.8); b = (0, 10) → (0, 1): distance sqrt(0.36 + 0.04) = sqrt(0.4)
    a = torch.tensor([[3.0, 4.0]])
    b = torch.tensor([[0.0, 10.0]])
    assert normalised_l2(a, b).item() == pytest.approx(math.sqrt(0.4), rel=1e-12)
    # norms below 1 are scaled up too: (0.03, 0.04) and (0, 0.1) give the same unit vectors
    small = normalised_l2(torch.tensor([[0.03, 0.04]]), torch.tensor([[0.0, 0.1]]))
    assert small.item() == pytest.approx(math.sqrt(0.4), rel=1e-12)
    # scale never matters: a map against 7 times itself is at distance 0, against −1 times itself at 2
    assert normalised_l2(a, 7 * a).item() == pytest.approx(0.0, abs=1e-15)
    assert normalised_l2(a, -0.5 * a).item() == pytest.approx(2.0, rel=1e-12)
    # orthogonal unit vectors: sqrt(2)
    assert normalised_l2(torch.tensor([[5.0, 0.0]]), torch.tensor([[0.0, 0.2]])).item() == pytest.approx(math.sqrt(2))
    # an all-zero map stays the zero vector (its norm is clamped, not divided by 0): distance 1
    assert normalised_l2(torch.zeros(1, 2), b).item() == pytest.approx(1.0)


def test_normalised_l2_per_image_against_numpy():
    rng = np.random.default_rng(11)
    a = rng.normal(size=(5, 6, 7)) * np.array([0.01, 0.5, 1.0, 3.0, 40.0]).reshape(5, 1, 1)
    b = rng.normal(size=(5, 6, 7)) * np.array([2.0, 0.02, 7.0, 1.0, 0.3]).reshape(5, 1, 1)
    expected = [np.linalg.norm(x.ravel() / np.linalg.norm(x) - y.ravel() / np.linalg.norm(y)) for x, y in zip(a, b)]
    got = normalised_l2(torch.from_numpy(a).float(), torch.from_numpy(b).float()).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got.dtype == np.float64
