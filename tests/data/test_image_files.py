"""Tests of :mod:`stablesal.data.image_files`.

The user's image files: bit depths, modes, resize + centre crop, corrupt files, masks by name,
NumPy archives and unlabelled folders, each with a known answer or the message it must give."""

import numpy as np
import pytest

from stablesal.data.image_files import read_image, read_images, resize_centre_crop, to_unit_range

from tests.helpers.image_files import save


def test_bit_depths_and_modes(tmp_path):
    grey = np.full((8, 8), 128, np.uint8)
    image = read_image(save(tmp_path / "grey.png", grey), 8)
    assert image.shape == (3, 8, 8) and np.allclose(image, 128 / 255)
    deep = np.full((8, 8), 65535 // 4, np.uint16)
    assert np.allclose(read_image(save(tmp_path / "deep.png", deep), 8), (65535 // 4) / 65535)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 17
    image = read_image(save(tmp_path / "rgba.png", rgba), 8)
    assert image.shape == (3, 8, 8) and np.allclose(image[0], 1) and np.allclose(image[1:], 0)
    assert np.allclose(read_image(tmp_path / "rgba.png", 8, channels=1), 0.299)
    assert to_unit_range(np.array([True, False])).tolist() == [1.0, 0.0]
    assert to_unit_range(np.array([-0.5, 2.0])).tolist() == [0.0, 1.0]


def test_resize_then_centre_crop_as_torchvision_does():
    # 20 × 40, left half black and right half white: the shorter side goes to 10 (40 → 20 wide),
    # then the centre 10 columns are kept: 5 from each half
    image = np.zeros((20, 40, 1), np.float32)
    image[:, 20:] = 1.0
    out = resize_centre_crop(image, 10)
    assert out.shape == (10, 10, 1)
    assert np.allclose(out[:, :4], 0, atol=0.02) and np.allclose(out[:, 6:], 1, atol=0.02)
    tall = resize_centre_crop(np.arange(30 * 10, dtype=np.float32).reshape(30, 10, 1), 10)
    # no scaling (shorter side already 10): rows 10..19 of the original
    assert np.array_equal(tall[..., 0], np.arange(100, 200, dtype=np.float32).reshape(10, 10))


def test_corrupt_files_are_skipped_and_counted(tmp_path):
    good = save(tmp_path / "a.png", np.zeros((6, 6, 3), np.uint8))
    bad = tmp_path / "b.png"
    bad.write_bytes(b"\x89PNG broken")
    with pytest.warns(UserWarning, match=r"skipped 1 of 2 files that could not be read as images: b.png"):
        images, kept = read_images([good, bad], 6)
    assert images.shape == (1, 3, 6, 6) and kept == [0]
    with pytest.raises(ValueError, match="none of the 1 files could be read"):
        read_images([bad], 6)
