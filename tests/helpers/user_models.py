"""A small report on a user's models, configured and run end to end."""


def _report_config(tmp_path, models: str, data: str = "n_train = 240\nn_test = 40\nsize = 16\nseed = 3") -> "object":
    """A small report configuration (the tiny built-in data unless ``data`` says otherwise) with
    the given [models] lines."""
    from stablesal.pipeline.config import load_config

    text = f'''
[data]
{data}
[models]
{models}
untrained_k = 3
control_k = 0
k = 3
[gradient]
methods = ["saliency", "smoothgrad"]
groupings = ["pixel", "grid"]
n_samples = 2
n_segments = 16
n_images = 4
[perturbation]
methods = []
[folds]
enabled = true
[factors]
enabled = false
[inpainting]
enabled = false
[consensus]
methods = ["saliency"]
groupings = ["grid"]
n_images = 4
calibration_studies = 5
n_permutations = 99
[report]
out_dir = "{tmp_path / 'reports'}"
runs_dir = "{tmp_path / 'runs'}"
copy_figures_to = ""
copy_results_to = ""
'''
    path = tmp_path / "report.toml"
    path.write_text(text)
    return load_config(path)


def _run(config):
    import html
    import json

    from stablesal.pipeline.run import run_report

    out = run_report(config, progress=False)
    return json.loads((out / "results.json").read_text()), html.unescape((out / "index.html").read_text())
