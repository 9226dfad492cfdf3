"""The user's image files: bit depths, modes, resize + centre crop, corrupt files, masks by name,
NumPy archives and unlabelled folders, each with a known answer or the message it must give."""

import warnings

import numpy as np
import pytest
from skimage.io import imsave

from stablesal.data import image_folder_dataset, load_dataset, npz_dataset, unlabelled_folder_dataset
from stablesal.image_files import read_image, read_images, resize_centre_crop, to_unit_range


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # low-contrast warnings of skimage
        imsave(path, array, check_contrast=False)
    return path


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
