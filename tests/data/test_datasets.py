"""Tests of :mod:`stablesal.data.datasets`."""

import pickle

import numpy as np
import pytest
import torch

from stablesal.core.storage import load_checked
from stablesal.data import (
    SHAPE_CLASSES, cifar10_dataset, image_folder_dataset, lfw_dataset, load_dataset, npz_dataset,
    render_backgrounds, render_shapes, shapes_dataset, unlabelled_folder_dataset,
)

from tests.helpers.image_files import save


def test_shapes_are_deterministic_and_seed_dependent():
    a = render_shapes(20, size=16, seed=5)
    b = render_shapes(20, size=16, seed=5)
    c = render_shapes(20, size=16, seed=6)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_shapes_content(tiny_shapes):
    ds = tiny_shapes
    assert ds.train_images.shape == (240, 3, 16, 16) and ds.test_images.shape == (60, 3, 16, 16)
    assert ds.train_images.dtype == torch.float32
    assert 0 <= ds.train_images.min() and ds.train_images.max() <= 1
    assert ds.num_classes == len(SHAPE_CLASSES) == 10
    assert set(ds.train_labels.tolist()) == set(range(10))
    # every image has an object that covers part of it, and the mask is where the object is
    coverage = ds.train_masks.float().mean(dim=(1, 2))
    assert (coverage > 0.01).all() and (coverage < 0.6).all()
    # train and test come from independent streams
    assert not torch.equal(ds.train_images[:60], ds.test_images)
    assert len(ds.mean) == 3 and all(s > 0 for s in ds.std)


def test_backgrounds_are_seeded_and_look_like_the_shapes_backgrounds():
    a, b = render_backgrounds(64, size=16, seed=3), render_backgrounds(64, size=16, seed=3)
    assert a.shape == (64, 3, 16, 16) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(a, render_backgrounds(64, size=16, seed=4))
    images, _, masks = render_shapes(64, size=16, seed=3)
    outside = np.stack([images[i][:, ~masks[i]].mean(1) for i in range(64)]).mean(0)
    assert np.abs(a.reshape(64, 3, -1).mean((0, 2)) - outside).max() < 20  # same colour statistics (0-255)
    # a background has no object: its colour varies far less than that of an image with one
    assert a.reshape(64, 3, -1).std(2).mean() < images.reshape(64, 3, -1).std(2).mean()


def test_mask_marks_the_object():
    # objects contrast with the background: pixels inside the mask differ from the border colour
    images, labels, masks = render_shapes(30, size=32, seed=1, clutter=0.0)
    x = images.astype(np.float32) / 255
    inside = np.array([x[i][:, masks[i]].mean(1) for i in range(30)])
    outside = np.array([x[i][:, ~masks[i]].mean(1) for i in range(30)])
    assert np.abs(inside - outside).sum(1).mean() > 0.3


def test_shapes_cache_roundtrip_and_corruption(tmp_path):
    first = shapes_dataset(n_train=20, n_test=10, size=16, seed=2, cache_dir=tmp_path)
    files = list(tmp_path.glob("shapes-*.npz"))
    assert len(files) == 1
    load_checked(files[0])  # checksum is valid
    again = shapes_dataset(n_train=20, n_test=10, size=16, seed=2, cache_dir=tmp_path)
    assert torch.equal(first.train_images, again.train_images)
    files[0].write_bytes(files[0].read_bytes()[:100])  # truncate: must be detected and regenerated
    regenerated = shapes_dataset(n_train=20, n_test=10, size=16, seed=2, cache_dir=tmp_path)
    assert torch.equal(first.train_images, regenerated.train_images)
    load_checked(files[0])


def test_shapes_bad_arguments():
    with pytest.raises(ValueError, match="n_train"):
        shapes_dataset(n_train=0, cache_dir=False)
    with pytest.raises(ValueError, match="size"):
        shapes_dataset(n_train=2, n_test=2, size=4, cache_dir=False)


def test_lfw_subset():
    ds = lfw_dataset(seed=0)
    assert ds.train_images.shape[1:] == (1, 25, 25)
    assert len(ds.train_labels) + len(ds.test_labels) == 200
    assert ds.test_labels.sum() == 25 and len(ds.test_labels) == 50  # stratified
    assert ds.class_names == ["non-face", "face"]


def _write_cifar_batch(path, n, seed):
    rng = np.random.default_rng(seed)
    batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, n).tolist()}
    with open(path, "wb") as handle:
        pickle.dump(batch, handle)
    return batch


def test_cifar10_loader(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    batches = [_write_cifar_batch(root / f"data_batch_{i}", 4, i) for i in range(1, 6)]
    test = _write_cifar_batch(root / "test_batch", 3, 9)
    with open(root / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, handle)
    ds = cifar10_dataset(tmp_path)  # the parent folder works too
    assert ds.train_images.shape == (20, 3, 32, 32) and ds.test_images.shape == (3, 3, 32, 32)
    first = batches[0][b"data"][0].reshape(3, 32, 32) / 255
    assert np.allclose(ds.train_images[0].numpy(), first)
    assert ds.test_labels.tolist() == test[b"labels"]
    assert ds.class_names[3] == "c3"


def test_cifar10_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cifar10_dataset(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="data_batch"):
        cifar10_dataset(tmp_path)
    (tmp_path / "data_batch_1").write_bytes(b"not a pickle")
    (tmp_path / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a CIFAR-10"):
        cifar10_dataset(tmp_path)
    with open(tmp_path / "data_batch_1", "wb") as handle:
        pickle.dump({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, handle)
    with pytest.raises(ValueError, match="3072"):
        cifar10_dataset(tmp_path)


def test_image_folder(tmp_path):
    from skimage.io import imsave

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            imsave(tmp_path / cls / f"{i}.png", rng.integers(0, 256, (20, 24, 3), dtype=np.uint8), check_contrast=False)
    imsave(tmp_path / "dog" / "grey.png", rng.integers(0, 256, (20, 24), dtype=np.uint8), check_contrast=False)
    ds = image_folder_dataset(tmp_path, size=16, test_fraction=0.2, seed=1)
    assert ds.train_images.shape[1:] == (3, 16, 16)
    assert len(ds.train_labels) + len(ds.test_labels) == 11
    assert ds.class_names == ["cat", "dog"] and set(ds.test_labels.tolist()) == {0, 1}


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder root"):
        image_folder_dataset(tmp_path / "missing")
    (tmp_path / "only").mkdir()
    with pytest.raises(ValueError, match="one sub-folder per class"):
        image_folder_dataset(tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "only" / "broken.png").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="skipped 1 of 1 files"), pytest.raises(ValueError, match="none of the 1 files could be read"):
        image_folder_dataset(tmp_path)


def test_load_dataset_dispatch():
    with pytest.raises(ValueError, match="needs root"):
        load_dataset("cifar10")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet")


def _folder(tmp_path, masks=True, missing_mask=False):
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        for i in range(5):
            image = (rng.random((12, 16, 3)) * 255).astype(np.uint8)
            save(tmp_path / "images" / label / f"{i}.jpg", image)
            if masks and not (missing_mask and label == "dog" and i == 4):
                mask = np.zeros((12, 16), np.uint8)
                mask[:, :8] = 255
                save(tmp_path / "masks" / label / f"{i}.png", mask)
    return tmp_path / "images", tmp_path / "masks"


def test_image_folder_with_masks_by_matching_names(tmp_path):
    root, masks = _folder(tmp_path)
    data = image_folder_dataset(root, size=8, test_fraction=0.4, seed=1, masks=masks)
    assert data.class_names == ["cat", "dog"] and len(data.train_labels) + len(data.test_labels) == 10
    assert data.test_images.shape[1:] == (3, 8, 8)
    # the mask's left half (8 of 16 columns) becomes the centre crop's left 4 of 8 columns... after
    # scaling 12 → 8 rows and 16 → 11 columns and cropping 8: columns 0..4 are object
    assert data.test_masks.shape[1:] == (8, 8) and data.test_masks[:, :, :4].all() and not data.test_masks[:, :, 6:].any()


def test_missing_masks_leave_localisation_out_with_one_warning(tmp_path):
    root, masks = _folder(tmp_path, missing_mask=True)
    with pytest.warns(UserWarning, match=r"masks: 1 of 10 images have no mask .*dog/4.*localisation is left out"):
        data = image_folder_dataset(root, size=8, masks=masks)
    assert data.test_masks is None and data.train_masks is None


def test_unlabelled_folder_has_test_images_only(tmp_path):
    for i in range(3):
        save(tmp_path / "plain" / f"{i}.png", np.full((10, 10, 3), 40 * i, np.uint8))
    data = unlabelled_folder_dataset(tmp_path / "plain", size=8)
    assert len(data.train_images) == 0 and data.test_labels.tolist() == [-1, -1, -1] and not data.labelled
    assert len(data.mean) == 3  # statistics from the test images
    with pytest.raises(ValueError, match="has no image files"):
        unlabelled_folder_dataset(tmp_path, size=8)


def test_npz_archives(tmp_path):
    rng = np.random.default_rng(2)
    images = (rng.random((20, 6, 7, 3)) * 255).astype(np.uint8)  # NHWC uint8
    labels = np.repeat([0, 1], 10)
    masks = rng.random((20, 6, 7)) > 0.5
    np.savez(tmp_path / "data.npz", images=images, labels=labels, masks=masks)
    data = npz_dataset(tmp_path / "data.npz", test_fraction=0.3, seed=0)
    assert data.test_images.shape[1:] == (3, 6, 7) and data.class_names == ["class 0", "class 1"]
    assert len(data.test_labels) == 6 and data.test_masks.shape == (6, 6, 7)
    assert float(data.train_images.max()) == pytest.approx(images.max() / 255.0)
    np.savez(tmp_path / "plain.npz", images=images[..., 0])
    unlabelled = load_dataset("npz", root=tmp_path / "plain.npz")
    assert unlabelled.test_images.shape == (20, 1, 6, 7) and not unlabelled.labelled
    np.savez(tmp_path / "short.npz", images=images, labels=labels[:5])
    with pytest.raises(ValueError, match="labels has 5 entries for 20 images"):
        npz_dataset(tmp_path / "short.npz")
    np.savez(tmp_path / "none.npz", pictures=images)
    with pytest.raises(ValueError, match=r"expected an 'images' array .* found \['pictures'\]"):
        npz_dataset(tmp_path / "none.npz")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        npz_dataset(tmp_path / "absent.npz")


def test_training_on_unlabelled_data_is_refused(tmp_path, capsys):
    from stablesal.cli import main

    for i in range(3):
        save(tmp_path / "plain" / f"{i}.png", np.full((10, 10, 3), 40 * i, np.uint8))
    config = tmp_path / "c.toml"
    config.write_text(f'[data]\ndataset = "unlabelled"\nroot = "{tmp_path / "plain"}"\nsize = 8\n')
    assert main(["report", "--config", str(config), "--runs", str(tmp_path / "runs"), "--out",
                 str(tmp_path / "out"), "-q"]) == 2
    assert "has no labelled training images, so stablesal cannot train models on it" in capsys.readouterr().err
