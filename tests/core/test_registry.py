"""The registries: one mechanism, metadata that matches what each entry does, and tests generated
from them (a newly registered explainer, preset, segmenter, fill, metric or dataset is covered by
registering it)."""

import inspect

import pytest
import torch
from torch import nn

from stablesal.explain.gradient.methods import METHODS, make_method
from stablesal.explain.explainers import describe, explainer_names, explainer_registry, family
from stablesal.explain.protocol import Explainer
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


# ----------------------------------------------------------------------------- the mechanism

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


# ----------------------------------------------------------------------------- generated from the registries

def _explainer(name, model):
    """Explainer ``name`` around ``model`` with a small budget where it has one (its own ``budget``)."""
    budget = describe(name).budget
    if name in METHODS:
        return make_method(name, model, **({budget: 3} if budget else {}))
    return explainer_registry(name).lookup(name)(model, **({budget: 24} if budget else {}))


def _maps(explainer, seed, **kwargs):
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    return explainer.attribute(x, target=[0, 2], seed=seed, **kwargs)


@pytest.mark.parametrize("name", explainer_names())
def test_every_registered_explainer_satisfies_the_protocol_and_keeps_only_its_family(name):
    explainer = describe(name)
    assert isinstance(explainer, Explainer)
    assert family(name) in ("gradient", "perturbation", "control")
    assert set(explainer_registry(name).info(name)) <= {"family", "label"}  # nothing the object computes


@pytest.mark.parametrize("name", explainer_names())
def test_random_is_true_exactly_when_two_seeds_give_different_maps(name):
    explainer = _explainer(name, small_model())  # nonlinear (ReLU): sampled inputs change the gradients
    kwargs = {"baselines": torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))} \
        if explainer.needs_baselines else {}
    first, again, other = _maps(explainer, 1, **kwargs), _maps(explainer, 1, **kwargs), _maps(explainer, 2, **kwargs)
    assert torch.equal(first, again)
    assert explainer.random is not torch.equal(first, other)


@pytest.mark.parametrize("name", explainer_names())
def test_needs_baselines_is_true_exactly_when_attribute_refuses_to_run_without(name):
    explainer = _explainer(name, small_model())
    if explainer.needs_baselines:
        with pytest.raises(ValueError, match="baselines"):
            _maps(explainer, 1)
        references = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
        other = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(3))
        assert not torch.equal(_maps(explainer, 1, baselines=references), _maps(explainer, 1, baselines=other))
    else:
        assert _maps(explainer, 1).shape == (2, 3, 16, 16)


@pytest.mark.parametrize("name", list(METHODS))
def test_a_gradient_methods_budget_sets_its_number_of_samples(name):
    method = make_method(name, small_model())
    if method.budget is None:
        assert method.sampler.n_samples == 1
    else:
        assert method.budget in ("n_samples", "n_steps")
        assert (method.budget == "n_steps") is isinstance(method.sampler, StraightLinePath)
        assert make_method(name, small_model(), **{method.budget: 5}).sampler.n_samples == 5


@pytest.mark.parametrize("name", list(PRESETS))
def test_a_presets_budget_sets_its_number_of_samples(name):
    pipeline = make_preset(name, small_model())
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    if pipeline.budget == "n_samples":  # the budget sets the number of samples drawn
        assert make_preset(name, small_model(), n_samples=37).n_samples == 37
    else:  # one sample per feature: a budget, if the function takes one, must not be what sets the passes
        assert pipeline.budget is None and not pipeline.random
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
    """needs_root: the loader's first parameter is a path it cannot do without (digits takes one it may)."""
    first = next(iter(inspect.signature(DATASETS[name]).parameters.values()))
    assert DATASETS.info(name, "needs_root") is (first.name in ("root", "path") and first.default is first.empty)
