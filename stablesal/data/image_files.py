"""Images and masks from the user's files: folders (with or without one sub-folder per class),
NumPy ``.npz`` arrays, and object masks from a folder of files with matching names.

Every image becomes float32 ``[C, size, size]`` in [0, 1] the way torchvision's ``Resize(size)``
then ``CenterCrop(size)`` make it: the shorter side scaled to ``size`` (anti-aliased), the centre
cropped. Grey images get three channels, alpha is dropped, 16-bit images are divided by 65 535.
A file that cannot be read is skipped and counted, with one warning naming the first few; a
folder with no readable image is an error.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from skimage.transform import resize
from skimage.io import imread
from tqdm.auto import tqdm

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def to_unit_range(array: np.ndarray) -> np.ndarray:
    """Pixel values in [0, 1] as float32, by the array's bit depth (8-bit: /255, 16-bit: /65 535,
    bool: 0/1, floats: clipped)."""
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    return np.clip(array.astype(np.float32), 0.0, 1.0)


def resize_centre_crop(image: np.ndarray, size: int, order: int = 1) -> np.ndarray:
    """``[H, W, C]`` → ``[size, size, C]``: shorter side to ``size``, then the centre crop
    (torchvision's ``Resize(size)`` + ``CenterCrop(size)``); ``order=0`` for masks."""
    height, width = image.shape[:2]
    scale = size / min(height, width)
    new_height, new_width = max(size, int(round(height * scale))), max(size, int(round(width * scale)))
    if (new_height, new_width) != (height, width):
        image = resize(image, (new_height, new_width) + image.shape[2:], order=order, anti_aliasing=order > 0,
                       preserve_range=True)
    top, left = (new_height - size) // 2, (new_width - size) // 2
    return image[top:top + size, left:left + size]


def read_image(path: Path, size: int, channels: int = 3) -> np.ndarray:
    """One image file as float32 ``[channels, size, size]`` in [0, 1]."""
    array = np.asarray(imread(path))
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[2] not in (1, 3, 4):
        array = array.transpose(1, 2, 0)  # a channels-first TIFF
    image = to_unit_range(array)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] in (2, 4):  # grey + alpha, RGBA: the alpha channel is dropped
        image = image[..., :-1]
    if channels == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif channels == 1 and image.shape[2] == 3:
        image = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)[:, None]
    return resize_centre_crop(image, size).transpose(2, 0, 1).astype(np.float32)


def read_images(paths: list[Path], size: int, channels: int = 3, what: str = "images") -> tuple[np.ndarray, list[int]]:
    """Every readable file of ``paths``: ``([N, C, size, size], indices kept)``; unreadable files are
    skipped with one warning that counts them."""
    images, kept, failed = [], [], []
    # a bar for folders large enough to take a while (it shows the time left)
    for index, path in enumerate(tqdm(paths, desc=f"reading {what}", disable=len(paths) < 500, leave=False)):
        try:
            images.append(read_image(path, size, channels))
            kept.append(index)
        except Exception as error:  # a corrupt or unsupported file: skipped, counted, reported
            failed.append(f"{path.name} ({type(error).__name__})")
    if failed:
        warnings.warn(f"{what}: skipped {len(failed)} of {len(paths)} files that could not be read as images: "
                      + ", ".join(failed[:5]) + (" …" if len(failed) > 5 else ""))
    if not images:
        raise ValueError(f"{what}: none of the {len(paths)} files could be read as an image")
    return np.stack(images), kept


def image_files(folder: Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_masks(mask_folder: Path, image_paths: list[Path], size: int, root: Path) -> np.ndarray | None:
    """Object masks ``[N, size, size]`` bool for ``image_paths`` from files with the same relative
    path (any image suffix) under ``mask_folder``; None, with one warning naming how many are
    missing, when any image has none (localisation is then left out rather than biased to the
    images that have masks)."""
    masks, missing = [], []
    for path in image_paths:
        relative = path.relative_to(root).with_suffix("")
        candidates = [mask_folder / relative.with_suffix(suffix) for suffix in sorted(IMAGE_SUFFIXES)]
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            missing.append(str(relative))
            continue
        array = np.asarray(imread(found))
        array = array[..., 0] if array.ndim == 3 else array
        masks.append(resize_centre_crop((array > 0).astype(np.float32)[..., None], size, order=0)[..., 0] > 0.5)
    if missing:
        warnings.warn(f"masks: {len(missing)} of {len(image_paths)} images have no mask in {mask_folder} (first: "
                      f"{', '.join(missing[:3])}); localisation is left out")
        return None
    return np.stack(masks)


def npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a ``.npz`` file with images as float32 ``[N, C, H, W]`` in [0, 1]: keys
    ``images`` (``[N, H, W]``, ``[N, H, W, C]`` or ``[N, C, H, W]``), optional ``labels`` ``[N]`` and
    ``masks`` ``[N, H, W]``, or the same with ``train_``/``test_`` prefixes."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"[data] root: {path} does not exist")
    try:
        stored = dict(np.load(path, allow_pickle=False))
    except Exception as error:
        raise ValueError(f"[data] root: {path} is not a readable .npz file ({type(error).__name__}: {error})") from None
    out = {}
    for key, array in stored.items():
        if key.endswith("images"):
            images = to_unit_range(np.asarray(array))
            if images.ndim == 3:
                images = images[:, None]
            elif images.ndim == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
                images = images.transpose(0, 3, 1, 2)
            if images.ndim != 4:
                raise ValueError(f"{path}: {key} must be [N, H, W], [N, H, W, C] or [N, C, H, W], got {array.shape}")
            out[key] = np.ascontiguousarray(images)
        elif key.endswith("labels"):
            out[key] = np.asarray(array).astype(np.int64)
        elif key.endswith("masks"):
            out[key] = np.asarray(array).astype(bool)
    if not any(key.endswith("images") for key in out):
        raise ValueError(f"{path}: expected an 'images' array (or 'train_images' and 'test_images'), found "
                         f"{sorted(stored)}")
    for prefix in ("", "train_", "test_"):
        images = out.get(f"{prefix}images")
        for other in ("labels", "masks"):
            value = out.get(f"{prefix}{other}")
            if images is not None and value is not None and len(value) != len(images):
                raise ValueError(f"{path}: {prefix}{other} has {len(value)} entries for {len(images)} images")
    return out


def as_tensor(array: np.ndarray | None) -> torch.Tensor | None:
    return None if array is None else torch.from_numpy(np.ascontiguousarray(array))
