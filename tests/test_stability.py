import json

import pytest

from stablesal.stability import StudySettings, compute_partitions, run_study, summarise, variance_reduction_rows


@pytest.fixture(scope="module")
def three_models(tiny_shapes):
    from stablesal.seeds import TrainConfig, train_seeds

    runs = train_seeds(tiny_shapes, k=3, vary="seed", config=TrainConfig(epochs=1, model_options={"width": 4}),
                       progress=False)
    return [r.model for r in runs]


def test_study_units_cache_and_resume(tiny_shapes, three_models, tmp_path):
    images, labels, masks = tiny_shapes.test_images[:6], tiny_shapes.test_labels[:6], tiny_shapes.test_masks[:6]
    settings = StudySettings(methods=["saliency", "smoothgrad"], groupings=["pixel", "fastslic", "grid"],
                             n_samples=3, n_steps=3, n_segments=16)
    first = run_study({"main": three_models}, images, labels, masks, settings, cache_dir=tmp_path, progress=False)
    assert len(first) == 3 * 3  # (2 methods + random control) × 3 groupings
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 3
    # an interrupted run: one unit missing; the re-run recomputes only that one, identically
    stamps = {f: f.stat().st_mtime_ns for f in files}
    files[0].unlink()
    again = run_study({"main": three_models}, images, labels, masks, settings, cache_dir=tmp_path, progress=False)
    assert sum(1 for f in files[1:] if f.stat().st_mtime_ns != stamps[f]) == 0
    strip = lambda results: [{k: v for k, v in r.items() if k not in ("seconds", "explain_seconds_per_model")}  # noqa
                             for r in results]
    assert json.dumps(strip(first), sort_keys=True) == json.dumps(strip(again), sort_keys=True)
    # one row per image × model pair
    pixel = next(r for r in first if r["method"] == "saliency" and r["grouping"] == "pixel")
    assert len(pixel["rows"]) == 6 * 3


def test_projection_never_increases_variance(tiny_shapes, three_models):
    images, labels = tiny_shapes.test_images[:6], tiny_shapes.test_labels[:6]
    settings = StudySettings(methods=["saliency", "integrated_gradients"], groupings=["pixel", "grid", "slic"],
                             n_steps=3, n_segments=16, sanity=False)
    results = run_study({"main": three_models}, images, labels, None, settings, progress=False)
    rows = variance_reduction_rows(results)
    assert rows and all(r["projection_variance_reduction"] >= 1 - 1e-9 for r in rows)
    random_rows = [r for r in rows if r["method"] == "random"]
    # i.i.d. random maps: the reduction factor is the mean segment size (within sampling noise)
    for r in random_rows:
        assert 0.5 * r["mean_segment_size"] < r["projection_variance_reduction"] < 2 * r["mean_segment_size"]
    summary = summarise(results)
    assert {"ssim", "ssim_ci_low", "spearman", "deletion_auc"} <= set(summary[0])


def test_grid_control_matches_superpixel_count(tiny_shapes):
    partitions = compute_partitions(tiny_shapes.test_images[:4], ["pixel", "fastslic", "grid"], 16)
    superpixels = (partitions["fastslic"].flatten(1).max(1).values + 1).float().mean()
    cells = partitions["grid"].max() + 1
    assert abs(cells - superpixels) <= 0.35 * superpixels
