"""The real torchvision, where it is installed: architectures by name without downloads, a whole
report on torchvision checkpoints, and the gradient methods against Captum on a real ResNet.

torchvision from PyPI does not import beside the CPU build of torch that ``make test`` installs, so
these tests run in their own environment: ``make test-torchvision`` (torch 2.14.1 + torchvision
0.29.1), which ``.ci/run`` calls after ``make test``. There ``STABLESAL_REQUIRE_TORCHVISION=1``
makes a failed import an error instead of a skip, so the step cannot pass by skipping.
"""

import os
import urllib.request

import pytest
import torch

if os.environ.get("STABLESAL_REQUIRE_TORCHVISION") == "1":
    import torchvision  # noqa: F401  (an error here fails the run: the environment is broken)
else:
    torchvision = pytest.importorskip("torchvision", reason="torchvision is optional; make test-torchvision runs it")

from stablesal.models.user_models import load_user_model, model_factory  # noqa: E402


@pytest.fixture
def no_downloads(monkeypatch):
    """Any attempt to fetch weights fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args[:1]}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.mark.parametrize("name, head", [("resnet18", "fc"), ("resnet50", "fc"), ("mobilenet_v3_small", "classifier"),
                                        ("vit_b_16", "heads")])
def test_architectures_by_name_are_torchvisions_own_and_download_nothing(name, head, no_downloads):
    model = model_factory(arch=f"torchvision:{name}", num_classes=7)()
    assert type(model) is type(torchvision.models.get_model(name, weights=None, num_classes=7))
    last = [m for m in getattr(model, head).modules() if isinstance(m, torch.nn.Linear)][-1]
    assert last.out_features == 7
    with pytest.raises(ValueError, match="did you mean 'resnet50'"):
        model_factory(arch="torchvision:resnet05", num_classes=7)


def test_a_checkpoint_of_another_torchvision_architecture_names_its_keys(tmp_path, no_downloads):
    torch.save(torchvision.models.resnet18(weights=None, num_classes=3).state_dict(), tmp_path / "r18.pt")
    with pytest.raises(ValueError) as error:
        load_user_model(tmp_path / "r18.pt", model_factory(arch="torchvision:resnet34", num_classes=3))
    message = str(error.value)
    assert "does not match the factory's model" in message and "missing keys ['layer1.2." in message


def test_report_on_torchvision_resnet18_checkpoints(tmp_path, no_downloads):
    """(b) of issue 16 with the real library: three ResNet-18 checkpoints (one saved from
    DataParallel, one wrapped in a training dict) and arch = "torchvision:resnet18"."""
    from tests.helpers.user_models import _report_config, _run

    from stablesal.data import SHAPE_CLASSES

    for seed in range(3):
        torch.manual_seed(seed)
        state = torchvision.models.resnet18(weights=None, num_classes=len(SHAPE_CLASSES)).state_dict()
        state = [state, {f"module.{k}": v for k, v in state.items()}, {"state_dict": state, "epoch": 1}][seed]
        torch.save(state, tmp_path / f"tv-{seed}.pt")
    config = _report_config(tmp_path, f'checkpoints = ["{tmp_path}/tv-*.pt"]\narch = "torchvision:resnet18"\n'
                                      'mean = [0.485, 0.456, 0.406]\nstd = [0.229, 0.224, 0.225]')
    results, page = _run(config)
    main = [m for m in results["models"] if m["set"] == "main"]
    assert len(main) == 3 and "3 models from the user's checkpoints" in page and "Consensus maps" in page
    # checkpoints alone give no recipe for the random-label null; ResNet-18 has batch norm, so the
    # BN-calibrated null is there beside the untrained one
    assert {r["model_set"] for r in results["stability_summary"]} == {"main", "bn_calibrated", "untrained"}
    assert "random_label" in results["nulls_unavailable"]


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients"])
def test_gradient_methods_equal_captum_on_a_real_resnet(method):
    """A real, nonlinear torchvision network (in-place ReLUs, batch norm in eval mode, residual
    sums): stablesal's deterministic methods against Captum's own."""
    import captum.attr

    from stablesal.explain.gradient.methods import IntegratedGradients, Saliency

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    for module in model.modules():  # non-trivial batch-norm statistics, so eval mode matters
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    images = torch.rand(2, 3, 64, 64)
    target = torch.tensor([1, 3])
    if method == "saliency":
        ours = Saliency(model, abs=False).attribute(images, target=target)
        theirs = captum.attr.Saliency(model).attribute(images, target=target, abs=False)
    else:
        ours = IntegratedGradients(model, n_steps=50).attribute(images, target=target)
        theirs = captum.attr.IntegratedGradients(model).attribute(images, target=target, n_steps=50)
    assert ours.abs().sum() > 0
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6 * float(theirs.abs().max()))
