"""The registries: one mechanism, metadata that matches what each entry does, and tests generated
from them (a newly registered explainer, preset, segmenter, fill, metric or dataset is covered by
registering it)."""

import inspect

import pytest
import torch
from torch import nn

from stablesal.explain.gradient.methods import METHODS, make_method
from stablesal.data import DATASETS
from stablesal.core.fills import FILLS
from stablesal.metrics import METRICS, MetricInfo
from stablesal.models import MODEL_FACTORIES, build_model, register_model
from stablesal.explain.perturbation.calculators import CALCULATORS
from stablesal.explain.perturbation.presets import PRESETS, make_preset
from stablesal.explain.perturbation.replacement import REPLACEMENTS, make_replacement
from stablesal.explain.perturbation.samplers import SAMPLERS
from stablesal.core.registry import Registry, check_name
from stablesal.explain.gradient.sampling import StraightLinePath
from stablesal.explain.segmentation import SEGMENTERS, make_segmenter


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, 3)).eval()


def test_register_lookup_info_and_unregister():
    things = Registry("thing")

    @things.register("alpha", colour="red")
    def alpha():
        return 1

    things.register("beta", lambda: 2, colour="blue")
    assert list(things) == ["alpha", "beta"] and len(things) == 2 and "alpha" in things
    assert things["alpha"] is alpha and things.lookup("beta")() == 2
    assert things.info("alpha") == {"colour": "red"} and things.info("beta", "colour") == "blue"
    assert things.info("beta", "size", 7) == 7 and things.names(colour="blue") == ["beta"]
    things.info("alpha")["colour"] = "green"  # a copy: the registry's metadata does not change
    assert things.info("alpha", "colour") == "red"
    with pytest.raises(ValueError, match="thing 'alpha' is registered twice"):
        things.register("alpha", lambda: 3)
    with pytest.raises(ValueError, match="unknown thing 'alpah'; did you mean 'alpha'"):
        things.lookup("alpah")
    with pytest.raises(ValueError, match=r"--thing: unknown thing 'zzz' \(expected one of \['alpha', 'beta'\]\)"):
        things.check("zzz", "--thing")
    with pytest.raises(ValueError, match="non-empty string"):
        things.register("", lambda: 0)
    things.unregister("alpha")
    assert list(things) == ["beta"]
    with pytest.raises(ValueError, match="unknown thing"):
        things.unregister("alpha")


def test_check_name_suggests_the_closest():
    check_name("[gradient] methods", "smoothgrad", ["smoothgrad", "vargrad"])
    with pytest.raises(ValueError, match="did you mean 'vargrad'"):
        check_name("[gradient] methods", "vargard", ["smoothgrad", "vargrad"])


def test_every_name_table_is_a_registry():
    for registry in (METHODS, PRESETS, SEGMENTERS, REPLACEMENTS, SAMPLERS, CALCULATORS, METRICS, MODEL_FACTORIES,
                     DATASETS):
        assert isinstance(registry, Registry) and len(registry) >= 2


def test_register_model_replaces_an_entry_of_the_same_name():
    register_model("registry_test_net", lambda in_channels, num_classes: nn.Linear(in_channels, num_classes))
    register_model("registry_test_net", lambda in_channels, num_classes: nn.Linear(in_channels, num_classes + 1))
    try:
        assert build_model("registry_test_net", 2, 3, [0.5, 0.5], [0.5, 0.5])[1].out_features == 4
    finally:
        MODEL_FACTORIES.unregister("registry_test_net")


@pytest.mark.parametrize("name", list(METHODS))
def test_gradient_method_metadata_matches_the_method(name):
    method = make_method(name, small_model())
    info = METHODS.info(name)
    assert info["family"] == "gradient" and info["grouping"] == "inside samples"
    assert info["random"] is method.sampler.random
    if info["budget"] == "n_samples":
        assert make_method(name, small_model(), n_samples=3).sampler.n_samples == 3
    elif info["budget"] == "n_steps":
        assert isinstance(method.sampler, StraightLinePath)
        assert make_method(name, small_model(), n_steps=5).sampler.n_samples == 5
    else:
        assert info["budget"] is None and method.sampler.n_samples == 1


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_metadata_matches_the_preset(name):
    info = PRESETS.info(name)
    pipeline = make_preset(name, small_model())
    assert info["family"] == "perturbation" and info["grouping"] == "after"
    assert info["random"] is pipeline.random
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    if info["budget"] == "n_samples":  # the budget sets the number of samples drawn
        assert make_preset(name, small_model(), n_samples=37).n_samples == 37
    else:  # one sample per feature: a budget, if the function takes one, must not be what sets the passes
        assert info["budget"] is None and not pipeline.random
        if "n_samples" in inspect.signature(PRESETS[name]).parameters:
            with_budget = make_preset(name, small_model(), n_samples=37)
            assert torch.equal(with_budget.attribute(x, target=[0], seed=1), pipeline.attribute(x, target=[0], seed=1))


@pytest.mark.parametrize("name", list(SEGMENTERS))
def test_segmenter_metadata_matches_its_signature(name):
    takes_count = "n_segments" in inspect.signature(SEGMENTERS[name]).parameters
    assert SEGMENTERS.info(name, "takes_count", True) is takes_count
    labels = make_segmenter(name, n_segments=9)(torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0)))
    assert labels.shape == (2, 24, 24) and labels.dtype == torch.int64 and int(labels.min()) == 0


@pytest.mark.parametrize("name", sorted(set(REPLACEMENTS) | set(FILLS)))  # the pipeline takes every fill
def test_every_fill_gives_an_image_of_the_input_shape(name):
    image = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(64).view(8, 8) // 16
    fill = make_replacement(name)
    reference = fill.reference(image, labels, torch.Generator().manual_seed(1))
    assert reference.shape == image.shape and torch.isfinite(reference).all()


@pytest.mark.parametrize("name", list(METRICS))
def test_metric_metadata_is_complete(name):
    info = METRICS.info(name, "info")
    assert isinstance(info, MetricInfo) and info.name == name
    assert info.kind in ("pairwise", "models", "fidelity", "localisation")
    assert info.arrow == ("↑" if info.higher_is_better else "↓")
    if info.low is not None:
        assert info.low < info.high
    if info.kind == "pairwise":  # the direction is what the metric does: a map agrees best with itself
        a = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
        b = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
        same, other = METRICS[name](a, a), METRICS[name](a, b)
        assert bool((same > other).all()) is info.higher_is_better
        assert bool((same < other).all()) is not info.higher_is_better


@pytest.mark.parametrize("name", list(DATASETS))
def test_dataset_metadata_matches_its_loader(name):
    first = next(iter(inspect.signature(DATASETS[name]).parameters))
    assert DATASETS.info(name, "needs_root") is (first in ("root", "path"))
