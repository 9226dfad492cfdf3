"""Image files written for the data tests."""

import warnings

from skimage.io import imsave


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # low-contrast warnings of skimage
        imsave(path, array, check_contrast=False)
    return path
