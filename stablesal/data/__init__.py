"""Datasets (:mod:`.datasets`), the image and mask files they read (:mod:`.image_files`) and the
order studies take test images in (:mod:`.selection`).

The names of the former module ``stablesal.data`` (now :mod:`stablesal.data.datasets`) are
re-exported here, so ``from stablesal.data import load_dataset`` keeps working."""

from .datasets import (
    DATASETS, SHAPE_CLASSES, TEXTURE_NAMES, ImageDataset, render_shapes, render_backgrounds, default_cache_dir,
    shapes_dataset, lfw_dataset, cifar10_dataset, image_folder_dataset, unlabelled_folder_dataset, npz_dataset,
    load_dataset, load_configured,
)
from .selection import SELECTIONS, class_counts, ordered_for_explaining, stratified_order, with_test_order
