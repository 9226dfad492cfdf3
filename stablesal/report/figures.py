"""Figures for papers: each function takes result data (no computation) and writes PNG and PDF."""

from __future__ import annotations

import contextlib
import contextvars
import csv
import io
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import mark_boundaries
from skimage.segmentation import find_boundaries

from ..explain.explainers import is_control, label as explainer_label
from ..studies.removal.run import HIGHER_IS_BETTER
from ..core.settings import NULL_NAMES, NULL_SETS
from ..core.storage import atomic_write_text
from ..core.tables import csv_text

plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 110})

_WRITING = contextvars.ContextVar("stablesal_figures_writing", default=True)


@contextlib.contextmanager
def links_only():
    """Inside it, :func:`save_figure` writes no file and returns the path it would have written: for
    a page that links figures drawn before, elsewhere (the documentation's results page links the
    repository's ``figures/``, which the built-in run wrote)."""
    token = _WRITING.set(False)
    try:
        yield
    finally:
        _WRITING.reset(token)


def save_figure(fig, path_stem: Path | str, data: list[dict] | None = None) -> Path:
    """Write ``<stem>.png`` and ``<stem>.pdf`` atomically, and ``<stem>.csv`` with ``data``, the
    numbers the figure draws (one dict per row), so a reader can re-plot or check them (the report
    page links it under the figure); returns the PNG path. Inside :func:`links_only`: writes
    nothing, returns the path."""
    stem = Path(path_stem)
    if not _WRITING.get():
        plt.close(fig)
        return stem.with_suffix(".png")
    stem.parent.mkdir(parents=True, exist_ok=True)
    if data:
        atomic_write_text(stem.with_suffix(".csv"), csv_text(data))
    for suffix in (".png", ".pdf"):
        final = stem.with_suffix(suffix)
        tmp = final.with_name(f".{final.name}.tmp{suffix}")
        # no creation date in the PDF: a re-run that draws the same figure writes the same bytes
        fig.savefig(tmp, bbox_inches="tight", dpi=150, metadata={"CreationDate": None} if suffix == ".pdf" else None)
        os.replace(tmp, final)
    plt.close(fig)
    return stem.with_suffix(".png")


def map_rows(maps: dict, digits: int = 4) -> list[dict]:
    """Grey maps as CSV rows: one row per map and image row, ``map`` (its label) and ``y``, then the
    values ``x0 … x{W-1}`` (rounded to ``digits``); ``maps``: label → array ``[H, W]``."""
    rows = []
    for label, grey in maps.items():
        grey = np.asarray(grey, dtype=np.float64)
        for y, line in enumerate(grey):
            rows.append({"map": label, "y": y, **{f"x{x}": round(float(v), digits) for x, v in enumerate(line)}})
    return rows


def model_frames(numbers: Path, largest: int = 128) -> list[bytes]:
    """One PNG per model of an example-map figure, from the figure's CSV (rows ``map = "model k"``,
    ``y``, ``x0 …``; see :func:`~stablesal.report.figures.map_rows`), on one colour scale so that
    models compare; images wider than ``largest`` pixels are subsampled for the page."""
    maps: dict[str, list[list[float]]] = {}
    with open(numbers, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["map"].startswith("model "):
                maps.setdefault(row["map"], []).append([float(v) for k, v in row.items() if k.startswith("x")])
    arrays = [np.asarray(maps[name]) for name in sorted(maps, key=lambda name: int(name.split()[1]))]
    if not arrays:
        return []
    step = max(1, -(-max(arrays[0].shape) // largest))
    top = max(float(a.max()) for a in arrays) or 1.0
    frames = []
    for array in arrays:
        buffer = io.BytesIO()
        plt.imsave(buffer, array[::step, ::step], cmap="magma", vmin=0, vmax=top, format="png")
        frames.append(buffer.getvalue())
    return frames


def _pick(rows: list[dict], keys) -> list[dict]:
    """The columns ``keys`` of each row that has them (a figure's CSV holds what it draws)."""
    return [{key: row[key] for key in keys if key in row} for row in rows]


def _rgb(image) -> np.ndarray:
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 3 and array.shape[0] in (1, 3):
        array = array.transpose(1, 2, 0)
    return np.clip(array.squeeze(), 0, 1)


def plot_dataset_examples(images, labels, masks, class_names, path_stem) -> Path:
    """One example per class (the first 10 classes): the image and (when known) its ground-truth mask."""
    classes = sorted(set(int(c) for c in labels))[:10]
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
    shown = [{"column": column, "class": class_names[cls], "label": cls,
              "test_image_index": int(np.flatnonzero(np.asarray(labels) == cls)[0])} for column, cls in enumerate(classes)]
    return save_figure(fig, path_stem, data=shown)


def _short(name: str) -> str:
    """The explainer's registered label (stablesal.explain.explainers), else its name."""
    return explainer_label(name)


def plot_stability_bars(summary: list[dict], path_stem, metrics=("spearman", "ssim"), model_set: str = "main") -> Path:
    """Cross-seed similarity per method, one bar per grouping, with 95 % design intervals (layout
    of the SUPERPIXEL paper's pixel vs super-pixel figure); black ticks: the first null family
    present (random-label networks when they ran, else BN-calibrated, else untrained) of the same
    method and grouping."""
    rows = [r for r in summary if r["model_set"] == model_set]
    null = next((n for n in NULL_SETS if any(f"spearman_{n}" in r for r in rows)), None)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    groupings = list(dict.fromkeys(r["grouping"] for r in rows))
    fig, axes = plt.subplots(len(metrics), 1, figsize=(max(6.0, 0.9 * len(methods) + 2), 2.6 * len(metrics)),
                             squeeze=False)
    width = 0.8 / len(groupings)
    colours = plt.cm.tab10.colors
    for axis, metric in zip(axes[:, 0], metrics):
        for g, grouping in enumerate(groupings):
            values, errors, nulls = [], [[], []], []
            for method in methods:
                row = next((r for r in rows if r["method"] == method and r["grouping"] == grouping), None)
                mean = row[metric] if row else np.nan
                values.append(mean)
                errors[0].append(mean - row[f"{metric}_ci_low"] if row else 0)
                errors[1].append(row[f"{metric}_ci_high"] - mean if row else 0)
                nulls.append(row.get(f"{metric}_{null}", np.nan) if row and null else np.nan)
            positions = np.arange(len(methods)) + (g - (len(groupings) - 1) / 2) * width
            axis.bar(positions, values, width, yerr=np.nan_to_num(errors), capsize=2, label=grouping,
                     color=colours[g % 10])
            axis.scatter(positions, nulls, marker="_", color="black", s=60, zorder=3,
                         label=f"{NULL_NAMES[null]} null" if g == 0 and null else None)
        last = axis is axes[-1, 0]
        axis.set_xticks(np.arange(len(methods)), [_short(m) for m in methods] if last else [], rotation=30,
                        ha="right")
        axis.set_ylabel(f"{metric} between models")
        axis.axhline(0, color="black", linewidth=0.5)
    axes[0, 0].legend(fontsize=7, frameon=False, ncol=min(6, len(groupings) + 1), loc="lower center",
                      bbox_to_anchor=(0.5, 1.0))
    fig.suptitle(f"Cross-seed similarity ({model_set} models), 95 % intervals over images and models", fontsize=9)
    keys = ["model_set", "method", "grouping"] + [f"{m}{s}" for m in metrics for s in ("", "_ci_low", "_ci_high",
                                                                                            f"_{null}" if null else "")]
    return save_figure(fig, path_stem, data=_pick(rows, dict.fromkeys(keys)))


def plot_variance_reduction(rows: list[dict], path_stem) -> Path:
    """Left: measured variance reduction tr(Σ)/tr(PΣ) (filled) and the reduction predicted from the
    maps' spatial correlation (hollow) against mean segment size, with the independent-pixel line
    d/m. Right: the price, bias ||μ − Pμ||²/||μ||², against the noise-to-signal gain of the
    grouped method as computed (below 1: grouping made it worse)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.4))
    partitions = list(dict.fromkeys(r["partition"] for r in rows))
    markers = "osD^v<>"
    for p, partition in enumerate(partitions):
        part = [r for r in rows if r["partition"] == partition]
        colour = plt.cm.tab10.colors[p % 10]
        sizes = [r["mean_segment_size"] for r in part]
        left.scatter(sizes, [r["measured"] for r in part], marker=markers[p % 7], color=colour, label=partition, s=22)
        left.scatter(sizes, [r["predicted"] for r in part], marker=markers[p % 7], facecolors="none",
                     edgecolors=colour, s=22)
        for r in part:
            left.annotate(_short(r["method"]), (r["mean_segment_size"], r["measured"]), fontsize=6, xytext=(3, 2),
                          textcoords="offset points")
        if any("nsr_gain" in r for r in part):
            right.scatter([r["bias"] for r in part], [r.get("nsr_gain", np.nan) for r in part],
                          marker=markers[p % 7], color=colour, label=partition, s=22)
            for r in part:
                right.annotate(_short(r["method"]), (r["bias"], r.get("nsr_gain", np.nan)), fontsize=6,
                               xytext=(3, 2), textcoords="offset points")
    sizes = [r["mean_segment_size"] for r in rows if np.isfinite(r["mean_segment_size"])] or [1]
    line = np.linspace(1, max(sizes) * 1.1, 10)
    left.plot(line, line, "k--", linewidth=0.8, label="d/m (independent pixels)")
    left.axhline(1, color="grey", linewidth=0.5)
    left.set_xlabel("mean segment size d/m (pixels)")
    left.set_ylabel("tr(Σ) / tr(PΣ)  (hollow: predicted)")
    left.legend(fontsize=6, frameon=False)
    right.axhline(1, color="grey", linewidth=0.5)
    right.set_xlabel("bias ||μ − Pμ||² / ||μ||²")
    right.set_ylabel("noise-to-signal gain of the grouped method")
    fig.suptitle("Variance reduction: measured, predicted from correlation, and its price", fontsize=9)
    return save_figure(fig, path_stem, data=_pick(rows, ("method", "partition", "mean_segment_size", "measured",
                                                         "predicted", "bias", "nsr_gain")))


def plot_variance_decomposition(summary: list[dict], path_stem) -> Path:
    """Share of the across-model map variance due to the explainer's own draws, the optimiser
    seed and the data split, per method × grouping (main models), with 95 % intervals."""
    rows = [r for r in summary if r["model_set"] == "main" and "share_explainer" in r]
    components = [c for c in ("explainer", "seed", "split", "models") if any(f"share_{c}" in r for r in rows)]
    colours = {"explainer": "#999999", "seed": "#4a78c2", "split": "#e07b39", "models": "#6a9f58"}
    fig, axis = plt.subplots(figsize=(6.4, 0.22 * len(rows) + 1.0))
    labels = [f"{_short(r['method'])} / {r['grouping']}" for r in rows]
    left = np.zeros(len(rows))
    for component in components:
        values = np.array([max(0.0, r.get(f"share_{component}", 0.0)) if np.isfinite(r.get(f"share_{component}",
                           np.nan)) else 0.0 for r in rows])
        axis.barh(range(len(rows)), values, left=left, color=colours[component], label=component)
        left += values
    axis.set_yticks(range(len(rows)), labels, fontsize=6)
    axis.invert_yaxis()
    axis.set_xlabel("share of the across-model variance (negative estimates drawn as 0)")
    axis.legend(fontsize=7, frameon=False, ncol=len(components), loc="lower right")
    keys = ["method", "grouping"] + [f"share_{c}{s}" for c in components for s in ("", "_ci_low", "_ci_high")]
    return save_figure(fig, path_stem, data=_pick(rows, keys))


def plot_stability_fidelity(summary: list[dict], path_stem, model_set: str = "main") -> Path:
    """Cross-seed Spearman above the first null family present against deletion AUC (lower =
    more faithful), per method × grouping."""
    rows = [r for r in summary if r["model_set"] == model_set]
    null = next((n for n in NULL_SETS if rows and all(f"spearman_above_{n}" in r for r in rows)), "untrained")
    key = f"spearman_above_{null}"
    rows = [r for r in rows if key in r]
    fig, axis = plt.subplots(figsize=(4.8, 3.4))
    groupings = list(dict.fromkeys(r["grouping"] for r in rows))
    for g, grouping in enumerate(groupings):
        part = [r for r in rows if r["grouping"] == grouping]
        axis.scatter([r["deletion_auc"] for r in part], [r[key] for r in part], label=grouping,
                     s=24, color=plt.cm.tab10.colors[g % 10])
        for r in part:
            axis.annotate(_short(r["method"]), (r["deletion_auc"], r[key]), fontsize=6,
                          xytext=(3, 2), textcoords="offset points")
    axis.axhline(0, color="grey", linewidth=0.5)
    axis.set_xlabel("deletion AUC of model 0 (lower = more faithful)")
    axis.set_ylabel(f"cross-seed Spearman above {NULL_NAMES[null]} null")
    axis.legend(fontsize=7, frameon=False)
    return save_figure(fig, path_stem, data=_pick(rows, ("method", "grouping", "deletion_auc", key)))


def plot_model_maps(image, mask, maps: list, path_stem, title: str = "") -> Path:
    """One image: the image, its ground-truth mask, each model's grey map, their mean and std."""
    maps = [np.asarray(m, dtype=np.float32) for m in maps]
    stack = np.stack(maps)
    panels = [("image", _rgb(image), None)]
    if mask is not None:
        panels.append(("object mask", np.asarray(mask, np.float32), "gray"))
    panels += [(f"model {k}", m, "magma") for k, m in enumerate(maps)]
    panels += [("mean", stack.mean(0), "magma"), ("std across models", stack.std(0), "viridis")]
    fig, axes = plt.subplots(1, len(panels), figsize=(1.25 * len(panels), 1.5), squeeze=False)
    for axis, (label, data, cmap) in zip(axes[0], panels):
        axis.imshow(data, cmap=cmap, vmin=0 if cmap else None)
        axis.set_title(label, fontsize=7)
        axis.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=8, y=1.05)
    drawn = {f"model {k}": m for k, m in enumerate(maps)}
    drawn.update({"mean": stack.mean(0), "std across models": stack.std(0)})
    if mask is not None:
        drawn["object mask"] = np.asarray(mask, np.float32)
    return save_figure(fig, path_stem, data=map_rows(drawn))


def plot_timing(summary: list[dict], path_stem, model_set: str = "main") -> Path:
    """Seconds per model to explain the study's images, per method and grouping."""
    rows = [r for r in summary if r["model_set"] == model_set and not is_control(r)]
    labels = [f"{_short(r['method'])} / {r['grouping']}" for r in rows]
    fig, axis = plt.subplots(figsize=(5.0, 0.18 * len(rows) + 0.8))
    axis.barh(range(len(rows)), [r["explain_seconds_per_model"] for r in rows], color="#4a78c2")
    axis.set_yticks(range(len(rows)), labels, fontsize=6)
    axis.invert_yaxis()
    axis.set_xlabel("seconds per model (all study images)")
    return save_figure(fig, path_stem, data=_pick(rows, ("method", "grouping", "explain_seconds_per_model")))


def plot_explanations(images, masks, maps: dict, path_stem, class_names=None, labels=None) -> Path:
    """Rows = images; columns = image, ground-truth mask (when known), then one grey map per entry
    of ``maps`` (label → ``[B, H, W]``)."""
    count = len(images)
    columns = 1 + (masks is not None) + len(maps)
    fig, axes = plt.subplots(count, columns, figsize=(1.3 * columns, 1.35 * count + 0.3), squeeze=False)
    for row in range(count):
        panels = [("image", _rgb(images[row]), None)]
        if masks is not None:
            panels.append(("object mask", np.asarray(masks[row], np.float32), "gray"))
        panels += [(label, np.asarray(grey[row], np.float32), "magma") for label, grey in maps.items()]
        for column, (label, data, cmap) in enumerate(panels):
            axis = axes[row, column]
            axis.imshow(data, cmap=cmap, vmin=0 if cmap else None)
            axis.set_axis_off()
            if row == 0:
                axis.set_title(label, fontsize=6)
        if class_names is not None and labels is not None:
            axes[row, 0].text(-2, 16, class_names[int(labels[row])], fontsize=6, rotation=90, va="center", ha="right")
    data = [dict(row, image=index) for index in range(count)
            for row in map_rows({label: grey[index] for label, grey in maps.items()})]
    return save_figure(fig, path_stem, data=data)


def plot_sampling_confidence(rows: list[dict], path_stem) -> Path:
    """Probability of the explained class and predictive entropy on noisy vs suppressed samples."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.2, 2.6))
    for name in dict.fromkeys(r["sampler"] for r in rows):
        part = [r for r in rows if r["sampler"] == name]
        strengths = [r["strength"] for r in part]
        left.plot(strengths, [r["probability"] for r in part], marker="o", label=name)
        right.plot(strengths, [r["entropy"] for r in part], marker="o", label=name)
    left.set_xlabel("strength (σ / input range, or 1 − keep rate)")
    left.set_ylabel("p(explained class)")
    right.set_xlabel("strength")
    right.set_ylabel("predictive entropy (nats)")
    left.legend(fontsize=7, frameon=False)
    return save_figure(fig, path_stem, data=_pick(rows, ("sampler", "strength", "probability", "entropy")))


def plot_factor_effects(effects: list[dict], path_stem, metrics=("srg", "deletion_auc", "insertion_auc")) -> Path:
    """Perturbation factor study: η² of each factor's main effect (and the interactions' share), one
    bar group per factor, with the interval when the rows carry ``eta2_<metric>_ci_low/high``."""
    factors = [e["factor"] for e in effects]
    fig, axis = plt.subplots(figsize=(5.6, 2.4))
    width = 0.8 / len(metrics)
    for index, metric in enumerate(metrics):
        values = np.asarray([e[f"eta2_{metric}"] for e in effects])
        error = None
        if all(f"eta2_{metric}_ci_low" in e for e in effects):
            low = np.asarray([e[f"eta2_{metric}_ci_low"] for e in effects])
            high = np.asarray([e[f"eta2_{metric}_ci_high"] for e in effects])
            error = np.vstack([np.clip(values - low, 0, None), np.clip(high - values, 0, None)])
        axis.bar(np.arange(len(factors)) + (index - (len(metrics) - 1) / 2) * width, values, width,
                 yerr=error, error_kw={"linewidth": 0.7}, label=metric.replace("_", " "))
    axis.set_xticks(np.arange(len(factors)), [f.replace("_", " ") for f in factors])
    axis.set_ylabel("η² (share of variance)")
    axis.legend(frameon=False, fontsize=7)
    keys = ["factor"] + [f"eta2_{m}{s}" for m in metrics for s in ("", "_ci_low", "_ci_high")]
    return save_figure(fig, path_stem, data=_pick(effects, keys))


def plot_factor_levels(configurations: list[dict], path_stem, metric: str = "srg",
                       factors=("segmentation", "sampler", "n_samples", "calculator", "map")) -> Path:
    """Perturbation factor study: every configuration's score, grouped by the level of each factor
    (points) with the level mean (bar)."""
    fig, axes = plt.subplots(1, len(factors), figsize=(2.0 * len(factors), 2.6), sharey=True)
    for axis, factor in zip(axes, factors):
        levels = sorted({c[factor] for c in configurations}, key=lambda v: (len(str(v)), str(v)))
        for position, level in enumerate(levels):
            values = [c[metric] for c in configurations if c[factor] == level]
            axis.bar(position, np.mean(values), color="#c6dbef", width=0.7)
            jitter = np.linspace(-0.2, 0.2, len(values)) if len(values) > 1 else [0.0]
            axis.scatter(position + np.asarray(jitter), values, s=5, color="#08519c")
        axis.set_xticks(range(len(levels)), [str(level) for level in levels], rotation=60, ha="right", fontsize=7)
        axis.set_title(factor.replace("_", " "), fontsize=8)
    axes[0].set_ylabel(metric.upper() if metric == "srg" else metric)
    return save_figure(fig, path_stem, data=_pick(configurations, (*factors, metric)))


def plot_inpainting_quality(rows: list[dict], path_stem) -> Path:
    """Inpainters side by side: PSNR of held-out holes, and how often the prediction survives when
    the background is filled (exactly the background, with its 95 % interval when the rows have
    ``keep_prediction_ci95``, and with a one-pixel ring of it kept)."""
    names = [r["inpainter"] for r in rows]
    panels = [("psnr_db", "PSNR in holes (dB) ↑", "#6baed6"),
              ("keep_prediction", "prediction kept,\nbackground filled ↑", "#74c476")]
    if all("keep_prediction_ring" in r for r in rows):
        panels.append(("keep_prediction_ring", "prediction kept, 1-px\nring of background known ↑", "#a1d99b"))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels) + 1.2, 2.4))
    for index, (axis, (key, label, colour)) in enumerate(zip(axes, panels)):
        error = None
        if key == "keep_prediction" and all("keep_prediction_ci95" in r for r in rows):
            error = [r["keep_prediction_ci95"] for r in rows]
        axis.barh(names, [r[key] for r in rows], color=colour, xerr=error, error_kw={"linewidth": 0.8})
        axis.set_xlabel(label, fontsize=8)
        if key != "psnr_db":
            axis.set_xlim(0, 1)
        if index:
            axis.set_yticklabels([])
    keys = ["inpainter"] + [key for key, _, _ in panels] + ["keep_prediction_ci95"]
    return save_figure(fig, path_stem, data=_pick(rows, keys))


def plot_removal_maps(images, masks, maps: dict, path_stem) -> Path:
    """Rows: images; columns: the image (with its object outline) and each method's map."""
    names = list(maps)
    count = images.shape[0]
    fig, axes = plt.subplots(count, len(names) + 1, figsize=(1.05 * (len(names) + 1), 1.1 * count), squeeze=False)
    for row in range(count):
        axes[row, 0].imshow(_rgb(images[row]))
        if masks is not None:
            axes[row, 0].contour(np.asarray(masks[row], dtype=float), levels=[0.5], colors="yellow", linewidths=0.6)
        for column, name in enumerate(names, 1):
            grey = np.asarray(maps[name][row].float().abs().sum(0))
            axes[row, column].imshow(grey, cmap="magma")
            if row == 0:
                axes[row, column].set_title(name, fontsize=7)
    for axis in axes.flat:
        axis.set_axis_off()
    data = [dict(line, image=row) for row in range(count)
            for line in map_rows({name: maps[name][row].float().abs().sum(0) for name in names})]
    return save_figure(fig, path_stem, data=data)


def plot_removal_pairs(rows: list[dict], path_stem, metrics=("deletion_auc_mean", "deletion_auc_inpaint",
                                                               "relevance_mass", "iou")) -> Path:
    """Classical fill vs inpainting for SP, LIME and MP on each metric (random map as a dashed line)."""
    by_name = {r["method"]: r for r in rows}
    control = next((r for r in rows if is_control(r)), None)  # the random map
    pairs = [p for p in ("SP", "LIME", "MP") if p in by_name and f"{p}-G" in by_name]
    metrics = [m for m in metrics if all(m in by_name[p] for p in pairs)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.6 * len(metrics), 2.5), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        x = np.arange(len(pairs))
        axis.bar(x - 0.2, [by_name[p][metric] for p in pairs], 0.4, label="classical fill", color="#bdbdbd")
        axis.bar(x + 0.2, [by_name[f"{p}-G"][metric] for p in pairs], 0.4, label="inpainting", color="#3182bd")
        if control is not None and metric in control:
            axis.axhline(control[metric], color="k", linestyle="--", linewidth=0.8)
        axis.set_xticks(x, pairs)
        arrow = "↑" if HIGHER_IS_BETTER[metric] else "↓"  # the metric's registered direction
        axis.set_title(f"{metric.replace('_', ' ')} {arrow}", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles + [plt.Line2D([], [], color="k", linestyle="--", linewidth=0.8)], labels + ["random map"],
               loc="upper center", ncol=3, frameon=False, fontsize=8, bbox_to_anchor=(0.5, 1.08))
    fig.tight_layout()
    data = [{"method": name, **{m: by_name[name][m] for m in metrics}} for p in pairs for name in (p, f"{p}-G")]
    if control is not None:
        data.append({"method": control["method"], **{m: control[m] for m in metrics if m in control}})
    return save_figure(fig, path_stem, data=data)


def plot_boundaries(images, segments, path_stem, titles=None):
    """Figure of segment boundaries drawn over each image (PNG and PDF); ``images`` ``[B, C, H, W]``
    in [0, 1] and ``segments`` ``[B, H, W]`` integer labels (tensors)."""
    count = images.shape[0]
    fig, axes = plt.subplots(1, count, figsize=(1.6 * count, 1.8), squeeze=False)
    for index in range(count):
        image = images[index].detach().cpu().float().clamp(0, 1).numpy().transpose(1, 2, 0)
        if image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        labels = segments[index].cpu().numpy()
        zoom = max(1, 128 // image.shape[0])  # draw boundaries on an enlarged copy so they stay thin
        image = image.repeat(zoom, 0).repeat(zoom, 1)
        labels = labels.repeat(zoom, 0).repeat(zoom, 1)
        axes[0, index].imshow(mark_boundaries(image, labels, color=(1, 1, 0), mode="inner"))
        axes[0, index].set_title(titles[index] if titles else f"{int(segments[index].max()) + 1} segments", fontsize=7)
        axes[0, index].set_axis_off()
    data = [dict(row, image=index) for index in range(count)
            for row in map_rows({"segment": segments[index].cpu().numpy()}, digits=0)]
    return save_figure(fig, path_stem, data=data)


def plot_consensus(unit: dict, maps_dir, path_stem, max_models: int = 6, overlay: bool = True) -> Path:
    """Consensus overlays beside the single-model maps, one row per example image: the image, up to
    ``max_models`` models' grey maps, then the K-model mean map with the significant regions of each
    test outlined (read from the unit's ``.npz`` files in ``maps_dir``); ``overlay=False`` draws the
    same figure without the outlines (the page's toggle switches between the two)."""
    maps_dir = Path(maps_dir)
    models = np.load(maps_dir / f"consensus-{unit['method']}-{unit['grouping']}-models.npz")
    tests = [(row["test"], np.load(maps_dir / row["file"])) for row in unit["tests"] if "file" in row]
    single, images = models["maps"], models["images"]
    rows = single.shape[1]
    shown = min(max_models, single.shape[0])
    columns = 1 + shown + len(tests)
    fig, axes = plt.subplots(rows, columns, figsize=(1.15 * columns, 1.2 * rows + 0.3), squeeze=False)
    for row in range(rows):
        axes[row, 0].imshow(_rgb(images[row]))
        for k in range(shown):
            axes[row, 1 + k].imshow(single[k, row], cmap="magma", vmin=0, vmax=1)
        for column, (name, saved) in enumerate(tests, start=1 + shown):
            axes[row, column].imshow(saved["mean_map"][row], cmap="magma", vmin=0, vmax=1)
            if overlay:
                outline = find_boundaries(saved["mask"][row], mode="inner")
                drawn = np.zeros(outline.shape + (4,), dtype=np.float32)
                drawn[outline] = (0.2, 1.0, 0.4, 1.0)
                axes[row, column].imshow(drawn)
        for axis in axes[row]:
            axis.set_axis_off()
    titles = ["image"] + [f"model {k}" for k in range(shown)] + [f"mean, {name}" for name, _ in tests]
    for axis, title in zip(axes[0], titles):
        axis.set_title(title, fontsize=6)
    fig.suptitle(f"{unit['method']} / {unit['grouping']}: {unit['n_models']} models, regions found at "
                 f"FDR {unit['tests'][0]['q']:g}" + (" outlined" if overlay else " (outlines hidden)"), fontsize=7)
    data = [dict(line, image=row) for row in range(rows)
            for line in map_rows({**{f"model {k}": single[k, row] for k in range(shown)},
                                  **{f"mean, {name}": saved["mean_map"][row] for name, saved in tests},
                                  **{f"region found, {name}": saved["mask"][row] for name, saved in tests}})]
    return save_figure(fig, path_stem, data=data)


def plot_reliability(units: list[dict], path_stem) -> Path:
    """Predicted reliability of the K′-model mean map against K′ (at the pilot's sample count), one
    line per method × grouping, with the reliability observed on held-out models as points."""
    fig, axis = plt.subplots(figsize=(4.8, 3.0))
    for index, unit in enumerate(units):
        colour = plt.cm.tab10(index % 10)
        samples = unit["curve"][0]["samples"] if unit["curve"] else None
        curve = [row for row in unit["curve"] if row["samples"] == samples]
        label = f"{_short(unit['method'])}/{unit['grouping']}"
        axis.plot([r["models"] for r in curve], [r["reliability"] for r in curve], color=colour, lw=1, label=label)
        observed = unit.get("validation", [])
        axis.scatter([r["models"] for r in observed], [r["observed"] for r in observed], color=colour, s=14, zorder=3)
    axis.set_xscale("log", base=2)
    axis.set_xlabel("models in the mean map K′")
    axis.set_ylabel("reliability (corr. with the ∞-model mean)")
    axis.set_ylim(0, 1.02)
    axis.legend(fontsize=5, ncol=2, frameon=False)
    axis.set_title("lines: predicted from the pilot; points: held-out models", fontsize=7)
    data = [{"method": unit["method"], "grouping": unit["grouping"], "kind": kind, "models": r["models"],
             "value": r["reliability" if kind == "predicted" else "observed"]}
            for unit in units
            for kind, part in (("predicted", [r for r in unit["curve"] if unit["curve"] and
                                              r["samples"] == unit["curve"][0]["samples"]]),
                               ("observed on held-out models", unit.get("validation", [])))
            for r in part]
    return save_figure(fig, path_stem, data=data)


def plot_estimate_vs_measured(rows: list[dict], path_stem) -> Path:
    """The estimate without retraining (x) against the cross-seed agreement measured on retrained
    models (y), per method × grouping and proxy, with both 95 % intervals and the diagonal."""
    fig, axis = plt.subplots(figsize=(4.2, 3.8))
    proxies = list(dict.fromkeys(r["proxy"] for r in rows))
    for index, proxy in enumerate(proxies):
        part = [r for r in rows if r["proxy"] == proxy]
        x = np.array([r["predicted_cross_seed_agreement"] for r in part])
        y = np.array([r["measured"] for r in part])
        xerr = np.vstack([x - [r["predicted_cross_seed_agreement_ci_low"] for r in part],
                          [r["predicted_cross_seed_agreement_ci_high"] for r in part] - x])
        yerr = np.vstack([y - [r["measured_ci_low"] for r in part], [r["measured_ci_high"] for r in part] - y])
        axis.errorbar(x, y, xerr=np.clip(xerr, 0, None), yerr=np.clip(yerr, 0, None), fmt="o", markersize=3,
                      linewidth=0.7, color=plt.cm.tab10.colors[index % 10], label=proxy)
    low = min(min(r["predicted_cross_seed_agreement_ci_low"], r["measured_ci_low"]) for r in rows)
    high = max(max(r["predicted_cross_seed_agreement_ci_high"], r["measured_ci_high"]) for r in rows)
    axis.plot([low, high], [low, high], "k--", linewidth=0.7)
    axis.set_xlabel("estimated cross-seed Spearman (one model)")
    axis.set_ylabel("measured cross-seed Spearman (retrained)")
    axis.legend(fontsize=7, frameon=False)
    keys = ("method", "grouping", "proxy", "predicted_cross_seed_agreement", "predicted_cross_seed_agreement_ci_low",
            "predicted_cross_seed_agreement_ci_high", "measured", "measured_ci_low", "measured_ci_high")
    return save_figure(fig, path_stem, data=_pick(rows, keys))
