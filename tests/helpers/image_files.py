"""Image files written for the data tests."""

import warnings

import numpy as np
from skimage.io import imsave


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # low-contrast warnings of skimage
        imsave(path, array, check_contrast=False)
    return path


def class_folders(root, per_class=5, side=16):
    """A folder dataset under ``root``: class folders red, green, blue of ``per_class`` small PNGs
    each (each class its own colour ramp, seeded); returns ``root``."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, side)[None, :, None]
    for index, name in enumerate(["red", "green", "blue"]):
        for i in range(per_class):
            image = 0.3 * rng.random((side, side, 3))
            image[..., index] += 0.7 * ramp[..., 0]
            save(root / name / f"{i}.png", (image.clip(0, 1) * 255).astype(np.uint8))
    return root
