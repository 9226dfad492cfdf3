"""Bad input anywhere in the public API and the CLI gets a clear error that names the argument:
wrong shapes and dtypes, NaN/inf, empty batches, targets out of range, models in training mode or
without parameters, one-segment partitions, bad configuration files, missing paths. Nothing
crashes from deep inside torch, nothing leaves a partial file."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from stablesal.explain.gradient.methods import make_method
from stablesal.cli import main
from stablesal.pipeline.config import load_config
from stablesal.explain.grouping import Partition
from stablesal.explain.inpainting import ConstantFill
from stablesal.metrics import deletion_insertion, output_drops, random_cell_subsets, saliency_metric, srg
from stablesal.explain.perturbation import Perturbation
from stablesal.explain.segmentation import check_segments

ERRORS = (ValueError, TypeError)


def tiny_model():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 5)).eval()
    return model


EXPLAINERS = {
    "saliency": lambda m: make_method("saliency", m),
    "smoothgrad": lambda m: make_method("smoothgrad", m, n_samples=2),
    "rise": lambda m: Perturbation(m, segmenter="grid", n_segments=4, n_samples=4),
}


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.lists(st.integers(0, 6), min_size=0, max_size=6), method=st.sampled_from(sorted(EXPLAINERS)))
def test_any_wrong_shape_is_named(shape, method):
    explainer = EXPLAINERS[method](tiny_model())
    message = "inputs|images|channels|empty|shape|single feature|single segment"
    if len(shape) == 4 and min(shape) > 0 and shape[1] == 3:
        # a batch the model can take (even 1×1 pixels): it either works or says clearly why not
        try:
            out = explainer.attribute(torch.rand(tuple(shape)), target=0)
        except ERRORS as error:
            assert any(word in str(error) for word in message.split("|")), error
        else:
            assert out.shape == tuple(shape)
        return
    with pytest.raises(ERRORS, match=message):
        explainer.attribute(torch.rand(tuple(shape)), target=0)


@pytest.mark.parametrize("method", sorted(EXPLAINERS))
@pytest.mark.parametrize("case", ["int dtype", "nan", "inf", "empty", "target high", "target negative",
                                  "target float", "target count", "train mode"])
def test_bad_values_are_named(method, case):
    model = tiny_model()
    images, target = torch.rand(2, 3, 8, 8), [0, 1]
    expected = "inputs"
    if case == "int dtype":
        images = (images * 255).to(torch.uint8)
    elif case == "nan":
        images[0, 0, 0, 0] = float("nan")
    elif case == "inf":
        images[1, 2, 3, 3] = float("inf")
    elif case == "empty":
        images = images[:0]
    elif case == "target high":
        target, expected = [0, 5], "target"
    elif case == "target negative":
        target, expected = [-1, 0], "target"
    elif case == "target float":
        target, expected = torch.tensor([0.0, 1.0]), "target"
    elif case == "target count":
        target, expected = [0, 1, 2], "target"
    elif case == "train mode":
        model.train()
        expected = "training mode"
    with pytest.raises(ERRORS, match=expected):
        EXPLAINERS[method](model).attribute(images, target=target)


def test_models_without_parameters_work():
    """A parameter-free model (a fixed function) is valid input, not an error from model_device."""
    model = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, 3)).eval()
    model[2].weight.requires_grad_(False)
    fixed = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()  # 3 'classes' = channel means
    images = torch.rand(2, 3, 8, 8)
    assert make_method("saliency", fixed).attribute(images, target=[0, 2]).shape == images.shape
    assert Perturbation(fixed, segmenter="grid", n_segments=4, n_samples=8).attribute(images, target=1).shape == \
        images.shape
    assert make_method("integrated_gradients", model, n_steps=2).attribute(images, target=0).shape == images.shape


def test_one_segment_partitions_and_wrong_segment_shapes_are_refused():
    images = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="single segment"):
        check_segments(torch.zeros(2, 8, 8, dtype=torch.long), images)
    with pytest.raises(ValueError, match="segments has shape"):
        check_segments(torch.zeros(2, 4, 4, dtype=torch.long), images)
    with pytest.raises(TypeError, match="integer"):
        check_segments(torch.zeros(2, 8, 8), images)
    with pytest.raises(ERRORS):
        Partition(torch.zeros(2, 8, 8))


def test_metrics_name_bad_arguments():
    model, images = tiny_model(), torch.rand(2, 3, 8, 8)
    maps, target = torch.rand(2, 1, 8, 8), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="mode"):
        deletion_insertion(model, images, maps, target, mode="sideways")
    with pytest.raises(ValueError, match="substrate"):
        deletion_insertion(model, images, maps, target, substrate="purple")
    with pytest.raises(ValueError, match="fill"):
        srg(model, images, maps, target, fill="purple")
    with pytest.raises(ValueError, match="holes has shape"):
        ConstantFill()(images, torch.zeros(2, 1, 4, 4, dtype=torch.bool))


METRICS = {
    "deletion": lambda model, images, maps, target: deletion_insertion(model, images, maps, target, steps=2),
    "srg": lambda model, images, maps, target: srg(model, images, maps, target, steps=2),
    "saliency_metric": lambda model, images, maps, target: saliency_metric(model, images, maps, target),
    "output_drops": lambda model, images, maps, target: output_drops(
        model, images, target, random_cell_subsets(8, 8, n_subsets=2, grid=2, fraction=0.5)),
}


@pytest.mark.parametrize("metric", sorted(METRICS))
@pytest.mark.parametrize("change, error, message", [
    ({"images": torch.full((2, 3, 8, 8), float("nan"))}, ValueError, "images contains 384 NaN"),
    ({"images": torch.rand(3, 8, 8)}, ValueError, r"images must have shape \[B, C, H, W\]"),
    ({"target": torch.tensor([5, 1])}, ValueError, r"target out of range: got values in \[1, 5\], expected 0 <= target < 5"),
    ({"target": torch.tensor([-1, 1])}, ValueError, "target out of range"),
    ({"target": torch.tensor([0, 1, 2])}, ValueError, r"one class index per image \(2\)"),
])
def test_metrics_check_their_inputs_before_any_pass(metric, change, error, message):
    """The model-running metrics name the argument (NaN images, a [3, H, W] image, targets outside
    the model's classes) instead of returning NaN or failing deep inside torch."""
    arguments = {"model": tiny_model(), "images": torch.rand(2, 3, 8, 8), "maps": torch.rand(2, 8, 8),
                 "target": torch.tensor([0, 1])} | change
    if metric == "output_drops" and "maps" in change:
        pytest.skip("output_drops reads no maps")
    with pytest.raises(error, match=message):
        METRICS[metric](**arguments)


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_metrics_put_a_training_model_in_eval_mode_and_say_so(metric):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Dropout(0.9), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 5)).train()
    images, maps, target = torch.rand(2, 3, 8, 8), torch.rand(2, 8, 8), torch.tensor([0, 1])
    with pytest.warns(UserWarning, match="model was in training mode; stablesal set it to eval mode"):
        first = METRICS[metric](model, images, maps, target)
    assert not model.training
    again = METRICS[metric](model, images, maps, target)  # dropout off: the scores repeat exactly
    first, again = (first[1], again[1]) if isinstance(first, tuple) else (first, again)
    first, again = (first["srg"], again["srg"]) if isinstance(first, dict) else (first, again)
    assert torch.equal(first, again)


@pytest.mark.parametrize("metric", ["deletion", "srg", "saliency_metric"])
def test_metrics_check_map_shapes(metric):
    with pytest.raises(ValueError, match=r"maps must have shape .* matching the images \(2, 3, 8, 8\), got \(2, 5, 5\)"):
        METRICS[metric](tiny_model(), torch.rand(2, 3, 8, 8), torch.rand(2, 5, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="maps contains 1 NaN"):
        maps = torch.rand(2, 8, 8)
        maps[0, 0, 0] = float("nan")
        METRICS[metric](tiny_model(), torch.rand(2, 3, 8, 8), maps, torch.tensor([0, 1]))


def test_negative_target_without_a_known_class_count_is_named():
    from stablesal.core.checks import check_targets

    with pytest.raises(ValueError, match="expected class indices >= 0"):
        check_targets(torch.tensor([-1]), 1, None)


@pytest.mark.parametrize("text, message", [
    ("[data]\nn_trian = 5\n", "unknown key 'n_trian'"),
    ("[dta]\n", "unknown configuration section"),
    ("[models]\nk = 'four'\n", "k must be of type int"),
    ("[models]\nk = true\n", "k must be of type int"),
    ("[gradient]\nmethods = 'saliency'\n", "methods must be of type list"),
    ("[factors]\nenabled = 1\n", "enabled must be of type bool"),
    ("[models\nk = 4\n", "not valid TOML"),
    ("[models]\nvary = 'leave-fold-out'\n", "leave-fold-out models of the MeGe protocol are the \\[folds\\]"),
    ("[folds]\nk = 2\n", "\\[folds\\] k must be at least 3"),
    ("[folds]\npool = 20\nper_fold = 8\n", "pool at least k \\* per_fold"),
    ("[gradient]\nmethods = ['smoothgrd']\n", "\\[gradient\\] methods: unknown name 'smoothgrd'; did you mean 'smoothgrad'"),
    ("[gradient]\ngroupings = ['pixel', 'fastslick']\n", "did you mean 'fastslic'"),
    ("[perturbation]\nmethods = ['lime', 'kernelshap']\n", "did you mean 'kernel_shap'"),
    ("[models]\narch = 'resnet2'\n", "\\[models\\] arch: unknown name 'resnet2'; did you mean 'resnet20'"),
    ("[data]\ndataset = 'cifar'\n", "did you mean 'cifar10'"),
    ("[factors]\nsegmentations = ['slic/gausian']\n", "smoothing after '/'.*did you mean 'gaussian'"),
    ("[factors]\nsamplers = ['shapp']\n", "did you mean 'shap'"),
    ("[factors]\ncalculators = ['lime_ols']\n", "did you mean 'lime-ols'"),
    ("[factors]\nmaps = ['segments']\n", "did you mean 'segment'"),
    ("[factors]\nsample_sizes = ['M', 0]\n", "'M' or a positive integer, got 0"),
    ("[factors]\nreplacement = 'blurr'\n", "did you mean 'blur'"),
    ("[gradient]\nmethods = ['zzz']\n", "unknown name 'zzz' \\(expected one of"),
])
def test_bad_configuration_files_are_named(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ERRORS, match=message):
        load_config(path)


@pytest.mark.parametrize("argv, message", [
    (["report", "--config", "/nonexistent/config.toml"], "does not exist"),
    (["factor-study", "--config", "/nonexistent/config.toml"], "does not exist"),
    (["train-seeds", "--dataset", "folder", "--data-root", "/nonexistent/images"], "does not exist"),
    (["explain", "--checkpoint", "/nonexistent/model.pt"], "does not exist"),
])
def test_cli_bad_paths_give_one_line_and_write_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    code = main([*argv, "--out", str(out), "-q"]) if argv[0] != "report" else main([*argv, "--out", str(out), "-q"])
    assert code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0]
    assert not out.exists() or not any(out.rglob("*"))


@pytest.mark.parametrize("argv, message", [
    (["stability", "--methods", "saliency", "smoothgrd"], "did you mean 'smoothgrad'"),
    (["stability", "--groupings", "fastslick"], "did you mean 'fastslic'"),
    (["explain", "--method", "integrated_gradient"], "--method: unknown name 'integrated_gradient'"),
    (["explain", "--grouping", "felzenswalb"], "did you mean 'felzenszwalb'"),
    (["perturb", "--preset", "rice"], "--preset: unknown name 'rice'; did you mean 'rise'"),
    (["perturb", "--sampler", "randm"], "did you mean 'random'"),
])
def test_cli_names_are_checked_before_any_training(tmp_path, capsys, argv, message):
    """A typo in a method or grouping name ends the command at once: nothing is trained."""
    runs, out = tmp_path / "runs", tmp_path / "out"
    code = main([*argv, "--runs", str(runs), "--out", str(out), "-q"])
    assert code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0]
    assert not runs.exists() and not out.exists()


def test_corrupt_checkpoint_is_refused_by_name(tmp_path, capsys):
    bad = tmp_path / "model-00-abc.pt"
    bad.write_bytes(b"not a checkpoint")
    code = main(["explain", "--checkpoint", str(bad), "--out", str(tmp_path / "out"), "-q"])
    assert code == 2
    assert "model-00-abc.pt" in capsys.readouterr().err
