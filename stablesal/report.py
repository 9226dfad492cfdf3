"""``stablesal report``: one configuration in, one stability report out (``reports/<name>/``).

Stages: data → K retrained models → (gradient methods × groupings → cross-seed stability,
fidelity and sanity) → ``results.json``, CSV tables, figures (PNG + PDF) and ``index.html``.
Each stage caches its output under ``runs/<name>/`` keyed by a hash of the configuration it
depends on, so a re-run reuses finished work and an interrupted run resumes.
"""

from __future__ import annotations

import csv
import io
import platform
import shutil
import time
from pathlib import Path

import torch

from . import __version__
from .config import StudyConfig
from .data import ImageDataset, load_dataset
from .figures import plot_dataset_examples
from .html import Section, render_page
from .seeds import TrainConfig, summary_rows, train_seeds
from .storage import atomic_write_json, atomic_write_text

QUICK_OVERRIDES = {
    "data": {"n_train": 2000, "n_test": 400},
    "models": {"k": 4, "epochs": 4, "vary": "seed"},
    "gradient": {"n_images": 12, "n_samples": 8, "n_steps": 8,
                 "methods": ["saliency", "integrated_gradients", "smoothgrad", "suppression"],
                 "groupings": ["pixel", "fastslic", "grid"]},
}


def apply_quick(config: StudyConfig) -> StudyConfig:
    """Shrink a configuration so that the whole report runs in about a minute (used by tests)."""
    for section, values in QUICK_OVERRIDES.items():
        for key, value in values.items():
            setattr(getattr(config, section), key, value)
    if config.report.name == "default":
        config.report.name = "quick"
    return config


def write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _load_data(config: StudyConfig) -> ImageDataset:
    data = config.data
    if data.dataset == "shapes":
        return load_dataset("shapes", n_train=data.n_train, n_test=data.n_test, size=data.size, seed=data.seed)
    if data.dataset == "lfw":
        return load_dataset("lfw", seed=data.seed)
    if data.dataset == "folder":
        return load_dataset("folder", root=data.root or None, size=data.size, seed=data.seed)
    return load_dataset(data.dataset, root=data.root or None)


def _environment() -> dict:
    return {
        "stablesal": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
    }


def run_report(config: StudyConfig, progress: bool = True) -> Path:
    """Run every stage that the configuration asks for and write the report folder; returns it."""
    began = time.perf_counter()
    out = Path(config.report.out_dir) / config.report.name
    runs_dir = Path(config.report.runs_dir) / config.report.name
    figures_dir = out / "figures"
    timings: dict[str, float] = {}

    start = time.perf_counter()
    dataset = _load_data(config)
    timings["data"] = time.perf_counter() - start

    start = time.perf_counter()
    models = config.models
    train_config = TrainConfig(model=models.arch, epochs=models.epochs, batch_size=models.batch_size, lr=models.lr)
    runs = train_seeds(dataset, k=models.k, vary=models.vary, config=train_config, out_dir=runs_dir / "models",
                       base_seed=models.base_seed, device=models.device, progress=progress)
    timings["training"] = time.perf_counter() - start
    model_rows = summary_rows(runs)

    sections = []
    example = plot_dataset_examples(dataset.test_images, dataset.test_labels, dataset.test_masks,
                                    dataset.class_names, figures_dir / "dataset_examples")
    accuracies = [row["test_acc"] for row in model_rows]
    sections.append(Section(
        title="Setup",
        reading=(
            f"{dataset.name}: {len(dataset.train_labels)} training and {len(dataset.test_labels)} test images of "
            f"shape {tuple(dataset.image_shape)}, {dataset.num_classes} classes. {len(runs)} {models.arch} models "
            f"differ in {models.vary!r} (seed = weight initialisation, data order and augmentation; split = disjoint "
            f"training data). Test accuracy ranges from {min(accuracies):.1%} to {max(accuracies):.1%} "
            f"(mean {sum(accuracies) / len(accuracies):.1%}); training took {timings['training']:.0f} s in total."
        ),
        figures=[(example, "One test image per class and its ground-truth object mask.")],
        tables=[(model_rows, "Retrained models: seed, data split, training-set size, accuracy and training time (s).")],
    ))

    timings["total"] = time.perf_counter() - began
    results = {
        "config": config.to_dict(), "environment": _environment(), "dataset": dataset.describe(),
        "models": model_rows, "timings_s": timings,
    }
    atomic_write_json(out / "results.json", results)
    write_csv(out / "models.csv", model_rows)
    page = render_page(
        f"stablesal stability report: {config.report.name}",
        f"stablesal {__version__} · torch {torch.__version__} · {platform.machine()} · "
        f"{torch.get_num_threads()} threads · {timings['total']:.0f} s",
        sections,
    )
    atomic_write_text(out / "index.html", page)
    if config.report.name == "default" and config.report.copy_figures_to:
        target = Path(config.report.copy_figures_to)
        target.mkdir(parents=True, exist_ok=True)
        for figure in figures_dir.glob("*.p*"):
            shutil.copy2(figure, target / figure.name)
    return out
