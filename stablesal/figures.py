"""Figures for papers: each function takes result data (no computation) and writes PNG and PDF."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 110})


def save_figure(fig, path_stem: Path | str) -> Path:
    """Write ``<stem>.png`` and ``<stem>.pdf`` atomically; returns the PNG path."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".png", ".pdf"):
        final = stem.with_suffix(suffix)
        tmp = final.with_name(f".{final.name}.tmp{suffix}")
        fig.savefig(tmp, bbox_inches="tight", dpi=150)
        os.replace(tmp, final)
    plt.close(fig)
    return stem.with_suffix(".png")


def _rgb(image) -> np.ndarray:
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 3 and array.shape[0] in (1, 3):
        array = array.transpose(1, 2, 0)
    return np.clip(array.squeeze(), 0, 1)


def plot_dataset_examples(images, labels, masks, class_names, path_stem) -> Path:
    """One example per class: the image and (when known) its ground-truth mask."""
    classes = sorted(set(int(c) for c in labels))
    rows = 2 if masks is not None else 1
    fig, axes = plt.subplots(rows, len(classes), figsize=(1.1 * len(classes), 1.2 * rows), squeeze=False)
    for column, cls in enumerate(classes):
        index = int(np.flatnonzero(np.asarray(labels) == cls)[0])
        axes[0, column].imshow(_rgb(images[index]), cmap="gray", vmin=0, vmax=1)
        axes[0, column].set_title(class_names[cls], fontsize=8)
        if masks is not None:
            axes[1, column].imshow(np.asarray(masks[index]), cmap="gray")
    for axis in axes.flat:
        axis.set_axis_off()
    return save_figure(fig, path_stem)
