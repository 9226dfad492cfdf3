"""Tests of :mod:`stablesal.explain.gradient.methods`.

Properties of the gradient engine on small analytic models and a tiny CNN."""

import captum.attr as ca
import numpy as np
import pytest
import torch
from torch import nn

from stablesal.explain.gradient.methods import (
    GradientShap, IntegratedGradients, METHODS, Saliency, SmoothGrad, SmoothGradSquared, SparsifiedSmoothGrad,
    SuppressionGrad, VarGrad, make_method,
)
from stablesal.explain.gradient.sampling import GaussianNoise, Identity
from stablesal.explain.explainers import describe
from stablesal.explain.grouping import group_attributions
from stablesal.explain.segmentation import Grid
from stablesal.metrics.similarity import spearman

from tests.helpers.basic_models import Quadratic, tiny_cnn
from tests.helpers.streams import rows_of

torch.manual_seed(0)


class Linear(nn.Module):
    """logits = W · flatten(x): the gradient is W[target], whatever the input."""

    def __init__(self, shape=(3, 8, 8), classes=4):
        super().__init__()
        self.fc = nn.Linear(int(torch.tensor(shape).prod()), classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


@pytest.fixture
def images():
    return torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def test_saliency_equals_captum(images):
    model = tiny_cnn()
    ours = Saliency(model).attribute(images, target=2)
    theirs = ca.Saliency(model).attribute(images, target=2)
    assert torch.allclose(ours, theirs, atol=1e-7)
    signed = Saliency(model, abs=False).attribute(images, target=[0, 1, 2, 3, 4])
    assert torch.allclose(signed, ca.Saliency(model).attribute(images, target=[0, 1, 2, 3, 4], abs=False), atol=1e-7)


def test_integrated_gradients_equals_captum(images):
    model = tiny_cnn()
    baseline = torch.rand(1, 3, 8, 8)
    for rule in ("gausslegendre", "riemann_trapezoid"):
        ours, delta = IntegratedGradients(model, n_steps=20, method=rule).attribute(
            images, target=1, baselines=baseline, return_convergence_delta=True)
        theirs, their_delta = ca.IntegratedGradients(model).attribute(
            images, target=1, baselines=baseline, n_steps=20, method=rule, return_convergence_delta=True)
        assert torch.allclose(ours, theirs, atol=1e-6)
        assert torch.allclose(delta, their_delta, atol=1e-5)


def test_integrated_gradients_analytic_and_complete():
    model = Quadratic().eval()
    x = torch.rand(4, 3, 8, 8)
    ig, delta = IntegratedGradients(model, n_steps=8).attribute(x, target=1, return_convergence_delta=True)
    # the integrand 2 a α x² is linear in α: Gauss-Legendre is exact
    assert torch.allclose(ig, model.a[1].detach() * x.square(), atol=1e-5)
    assert delta.abs().max() < 1e-4


def test_grouped_ig_keeps_completeness(images):
    model = tiny_cnn()
    method = IntegratedGradients(model, n_steps=16, grouping=Grid(n_segments=4))
    grouped, delta = method.attribute(images, target=3, return_convergence_delta=True)
    plain = IntegratedGradients(model, n_steps=16).attribute(images, target=3)
    assert torch.allclose(grouped.flatten(1).sum(1), plain.flatten(1).sum(1), atol=1e-5)
    assert delta.abs().max() < 1e-2  # the quadrature error of the plain method, unchanged by grouping


def test_smoothgrad_zero_noise_one_sample_is_the_gradient(images):
    model = tiny_cnn()
    smooth = SmoothGrad(model, n_samples=1, noise_level=0.0).attribute(images, target=0, seed=3)
    assert torch.equal(smooth, Saliency(model, abs=False).attribute(images, target=0))


def test_linear_model_expectations_agree_with_captum(images):
    model = Linear().eval()
    weight = model.fc.weight[2].detach().view(3, 8, 8)
    smooth = SmoothGrad(model, n_samples=7, noise_level=0.3).attribute(images, target=2, seed=0)
    theirs = ca.NoiseTunnel(ca.Saliency(model)).attribute(images, target=2, nt_samples=7, stdevs=0.3, abs=False)
    assert torch.allclose(smooth, theirs, atol=1e-6) and torch.allclose(smooth[0], weight, atol=1e-6)
    assert VarGrad(model, n_samples=9).attribute(images, target=2).abs().max() < 1e-10
    references = torch.rand(6, 3, 8, 8)
    shap = GradientShap(model, n_samples=11).attribute(images[:1], target=2, baselines=references[:1], seed=0)
    their_shap = ca.GradientShap(model).attribute(images[:1], target=2, baselines=references[:1], n_samples=11)
    assert torch.allclose(shap, their_shap, atol=1e-6)
    assert torch.allclose(shap, weight * (images[:1] - references[:1]), atol=1e-6)


def test_vargrad_matches_two_pass_variance(images):
    model = tiny_cnn()
    method = VarGrad(model, n_samples=37, noise_level=0.2, internal_batch_size=10)
    ours = method.attribute(images[:2], target=1, seed=5)
    # recompute the same samples directly and take the variance in two passes
    sampler = GaussianNoise(37, 0.2)
    from stablesal.core.seeding import image_seeds

    seeds = image_seeds(images[:2], 5)
    for i in range(2):
        gen = torch.Generator().manual_seed(seeds[i])
        xs = torch.cat([sampler.draw(images[i], s, min(37, s + 16), gen)[0] for s in range(0, 37, 16)])
        xs.requires_grad_(True)
        grad, = torch.autograd.grad(model(xs)[:, 1].sum(), xs)
        assert torch.allclose(ours[i], grad.var(0, unbiased=False), atol=1e-9, rtol=1e-4)


STREAMS = [(name, rng) for name in sorted(METHODS) for rng in (("generator", "counter") if describe(name).random
                                                                 else ("auto",))]


@pytest.mark.parametrize("name, rng", STREAMS)
def test_batched_equals_per_image_and_seeded_runs_identical(name, rng, images):
    model = tiny_cnn()
    random = make_method(name, model).random  # the method's own property, so a new method is covered as registered
    options = {"n_samples": 6, "rng": rng} if random else {}
    method = make_method(name, model, internal_batch_size=7, **options)
    kwargs = {"baselines": torch.rand(3, 3, 8, 8)} if method.needs_baselines else {}
    batched = method.attribute(images, target=[0, 1, 2, 3, 4], seed=11, **kwargs)
    again = method.attribute(images, target=[0, 1, 2, 3, 4], seed=11, **kwargs)
    assert torch.equal(batched, again)  # bit-identical
    assert batched.shape == images.shape and torch.isfinite(batched).all()
    for i in (0, 3):
        single = method.attribute(images[i:i + 1], target=i, seed=11, **kwargs)
        assert torch.allclose(single[0], batched[i], atol=1e-6), name
    other_chunks = make_method(name, model, internal_batch_size=4, **options).attribute(
        images, target=[0, 1, 2, 3, 4], seed=11, **kwargs)
    assert torch.allclose(other_chunks, batched, atol=1e-6)
    if random:
        assert not torch.equal(batched, method.attribute(images, target=[0, 1, 2, 3, 4], seed=12, **kwargs))


def test_generator_seed(images):
    model = tiny_cnn()
    method = SmoothGrad(model, n_samples=4)
    a = method.attribute(images, target=0, seed=torch.Generator().manual_seed(4))
    b = method.attribute(images, target=0, seed=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)


def test_call_counts_prove_batching(images):
    model = tiny_cnn()
    method = SmoothGrad(model, n_samples=10, internal_batch_size=16)
    method.attribute(images, target=0)
    assert method.forward_calls == 4  # ceil(5 images × 10 samples / 16)
    ig = IntegratedGradients(model, n_steps=50, internal_batch_size=250)
    ig.attribute(images, target=0)
    assert ig.forward_calls == 1


def test_parameters_frozen_during_and_restored(images):
    model = tiny_cnn()
    seen = []
    model[0].register_forward_hook(lambda m, i, o: seen.append(m.weight.requires_grad))
    Saliency(model).attribute(images, target=0)
    assert seen == [False] and all(p.requires_grad for p in model.parameters())


def test_grouped_nonlinear_methods_group_inside_samples(images):
    model = tiny_cnn()
    grid = Grid(n_segments=4)
    grouped = SparsifiedSmoothGrad(model, n_samples=5, topk=0.25, grouping=grid).attribute(images, target=0)
    segments = grid(images)
    assert torch.allclose(group_attributions(grouped, segments), grouped, atol=1e-6)
    # grouping before |.| differs from grouping after it
    before = Saliency(model, grouping=grid).attribute(images, target=0)
    after = group_attributions(Saliency(model).attribute(images, target=0), segments)
    assert (before <= after + 1e-7).all() and not torch.allclose(before, after)


def test_grouped_names_and_captum_wrapper(images):
    from stablesal.explain.grouping import Grouped

    model = tiny_cnn()
    method = make_method("s-saliency", model, grouping="grid", n_segments=4)
    assert "grid" in str(method)
    wrapped = Grouped(ca.IntegratedGradients(model), Grid(n_segments=4)).attribute(images, target=1, n_steps=10)
    ours = IntegratedGradients(model, n_steps=10, grouping=Grid(n_segments=4)).attribute(images, target=1)
    assert torch.allclose(wrapped, ours, atol=1e-6)


def test_grouped_is_an_explainer_with_the_wrapped_methods_properties(images):
    from stablesal.explain.grouping import Grouped
    from stablesal.explain.protocol import Explainer

    model, grid = tiny_cnn(), Grid(n_segments=4)
    ours = Grouped(SmoothGrad(model, n_samples=4), grid)
    assert isinstance(ours, Explainer) and (ours.random, ours.budget, ours.needs_baselines) == (True, "n_samples", False)
    assert torch.equal(ours.attribute(images, 1, seed=3), group_attributions(
        SmoothGrad(model, n_samples=4).attribute(images, target=1, seed=3), grid(images)))  # the seed reaches it
    assert not torch.equal(ours.attribute(images, 1, seed=3), ours.attribute(images, 1, seed=4))
    assert Grouped(GradientShap(model), grid).needs_baselines
    # a Captum method states nothing: no seed reaches it, and it needs baselines when its signature requires them
    captum_shap, captum_saliency = Grouped(ca.GradientShap(model), grid), Grouped(ca.Saliency(model), grid)
    assert (captum_shap.random, captum_shap.budget, captum_shap.needs_baselines) == (False, None, True)
    assert not captum_saliency.needs_baselines
    assert torch.equal(captum_saliency.attribute(images, 1, seed=5), captum_saliency.attribute(images, target=1))


def test_suppression_method_runs_with_segments(images):
    model = tiny_cnn()
    out = SuppressionGrad(model, n_samples=6, unit="segment", grouping=Grid(n_segments=4)).attribute(images, target=0)
    assert (out >= 0).all() and out.shape == images.shape


def test_bad_inputs_are_named(images):
    model = tiny_cnn()
    method = Saliency(model)
    with pytest.raises(ValueError, match="inputs must have shape"):
        method.attribute(images[0], target=0)
    with pytest.raises(TypeError, match="floating-point"):
        method.attribute(images.long(), target=0)
    bad = images.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        method.attribute(bad, target=0)
    with pytest.raises(ValueError, match="target out of range"):
        method.attribute(images, target=9)
    with pytest.raises(ValueError, match="one class index per image"):
        method.attribute(images, target=[1, 2])
    with pytest.raises(ValueError, match="target is required"):
        method.attribute(images)
    model.train()
    with pytest.raises(ValueError, match="training mode"):
        method.attribute(images, target=0)
    model.eval()
    with pytest.raises(ValueError, match="baselines is required"):
        GradientShap(model).attribute(images, target=0)
    with pytest.raises(ValueError, match="unknown gradient method 'gradcam'"):
        make_method("gradcam", model)
    with pytest.raises(ValueError, match="single segment"):
        Saliency(model, grouping="segments").attribute(images, target=0, segments=torch.zeros(5, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="expected \\(5, 8, 8\\)"):
        Saliency(model, grouping="segments").attribute(images, target=0, segments=torch.zeros(5, 4, 4, dtype=torch.long))


@pytest.mark.parametrize("name, rng", [("saliency", "auto"), ("integrated_gradients", "auto"), ("vargrad", "generator"),
                                       ("sparsified_smoothgrad", "generator"), ("suppression", "generator"),
                                       ("vargrad", "counter"), ("suppression", "counter")])
def test_one_pass_many_groupings_equals_separate_calls(name, rng, images):
    model = tiny_cnn()
    grid4, grid16 = Grid(n_segments=4)(images), Grid(n_segments=16)(images)
    options = {"n_samples": 5, "rng": rng} if name not in ("saliency", "integrated_gradients") else {}
    shared = make_method(name, model, grouping="segments", internal_batch_size=6, **options)
    together = shared.attribute_groupings(images, target=1, groupings={"pixel": None, "g4": grid4, "g16": grid16})
    assert shared.forward_calls == len(images) * shared.sampler.n_samples // 6 + (
        (len(images) * shared.sampler.n_samples) % 6 > 0)
    pixel = make_method(name, model, internal_batch_size=6, **options).attribute(images, target=1)
    assert torch.allclose(together["pixel"], pixel, atol=1e-6)
    for key, segments in (("g4", grid4), ("g16", grid16)):
        alone = make_method(name, model, grouping="segments", internal_batch_size=6, **options).attribute(
            images, target=1, segments=segments)
        assert torch.allclose(together[key], alone, atol=1e-6)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_study_settings_reach_exactly_the_methods_whose_sampler_reads_them(name):
    """``n_samples`` reaches every random sampler, ``n_steps`` the IG path, ``noise_level`` the
    Gaussian noise; the others keep their defaults (nothing is read from a hand-kept list)."""
    from stablesal.explain.gradient.sampling import GaussianNoise, StraightLinePath

    default = make_method(name, tiny_cnn()).sampler
    sampler = make_method(name, tiny_cnn(), n_samples=3, n_steps=5, noise_level=0.4).sampler
    assert sampler.n_samples == (3 if default.random else 5 if isinstance(default, StraightLinePath)
                                 else default.n_samples)
    if isinstance(default, GaussianNoise):
        assert sampler.noise_level == 0.4
    assert type(sampler) is type(default)


def test_a_newly_registered_random_method_takes_the_sample_budget():
    METHODS.register("vargrad_copy_for_test", lambda model, **options: VarGrad(model, **options), family="gradient")
    try:  # nothing declared but the family: random and budget are the method's own
        assert make_method("vargrad_copy_for_test", tiny_cnn(), n_samples=7).sampler.n_samples == 7
    finally:
        METHODS.unregister("vargrad_copy_for_test")


def test_segment_suppression_with_other_segment_counts_per_image_is_chunk_and_batch_independent():
    from stablesal.explain.segmentation import Grid

    images = torch.rand(4, 3, 8, 8)
    segments = torch.cat([Grid(n_segments=4)(images[:2]), Grid(n_segments=16)(images[2:])])
    maps = {}
    for chunk in (3, 5, 64):
        method = SuppressionGrad(tiny_cnn(), n_samples=6, unit="segment", grouping="segments",
                                 internal_batch_size=chunk, rng="counter")
        maps[chunk] = method.attribute(images, target=0, segments=segments, seed=2)
    assert torch.allclose(maps[3], maps[64], atol=1e-6) and torch.allclose(maps[5], maps[64], atol=1e-6)
    alone = SuppressionGrad(tiny_cnn(), n_samples=6, unit="segment", grouping="segments", rng="counter").attribute(
        images[2:3], target=0, segments=segments[2:3], seed=2)
    assert torch.allclose(alone[0], maps[64][2], atol=1e-6)


def test_one_draw_per_chunk_of_rows(monkeypatch):
    images = torch.rand(5, 3, 8, 8)
    method = SmoothGrad(tiny_cnn(), n_samples=6, internal_batch_size=8, rng="counter")
    calls = []
    original = method.sampler.draw_rows
    monkeypatch.setattr(method.sampler, "draw_rows", lambda *a, **k: calls.append(len(a[1])) or original(*a, **k))
    method.attribute(images, target=0)
    assert calls == [8, 8, 8, 6] and method.forward_calls == 4  # 30 rows, chunks of 8, one draw each


def test_auto_takes_counter_streams_off_the_cpu_where_the_sampler_has_them():
    model = tiny_cnn()
    assert SmoothGrad(model).stream_kind("cpu") == "generator"
    assert SmoothGrad(model).stream_kind("cuda") == "counter"
    assert SmoothGrad(model).stream_kind("mps") == "generator"  # no float64 there
    assert make_method("saliency", model).stream_kind("cuda") == "none"
    noisy_fill = SuppressionGrad(model, fill="noise")
    assert noisy_fill.stream_kind("cuda") == "generator" and not noisy_fill.sampler.counter_draws
    with pytest.raises(ValueError, match="rng='counter': the sampler .* has no counter-based draw"):
        SuppressionGrad(model, fill="noise", rng="counter")
    with pytest.raises(ValueError, match="rng must be one of"):
        SmoothGrad(model, rng="philox")
    with pytest.raises(NotImplementedError, match="no counter-based draw"):
        Identity().draw_rows(torch.rand(1, 3, 4, 4), *rows_of(1))


@pytest.mark.parametrize("rng", ["generator", "counter"])
def test_smoothgrad_estimates_its_expectation_on_a_quadratic(rng):
    """For logit = Σ a ⊙ x²: E[∇] = 2a ⊙ x and E[∇²] = 4a² ⊙ (x² + σ²) exactly, so the noise
    must be centred with the stated σ; 4 000 samples put the estimate within a few standard errors."""
    torch.manual_seed(0)
    model = Quadratic(shape=(1, 2, 2), classes=1).eval()
    x = torch.rand(1, 1, 2, 2)
    a, sigma, n = model.a.detach()[0], 0.3, 4000
    mean = SmoothGrad(model, n_samples=n, noise_level=sigma, rng=rng).attribute(x, target=0, seed=1)[0]
    standard_error = 2 * a.abs() * sigma / n ** 0.5
    assert ((mean - 2 * a * x[0]).abs() < 4 * standard_error).all()
    square = SmoothGradSquared(model, n_samples=n, noise_level=sigma, rng=rng).attribute(x, target=0, seed=1)[0]
    expected = 4 * a.square() * (x[0].square() + sigma ** 2)
    spread = 4 * a.square() * (4 * x[0].square() * sigma ** 2 + 2 * sigma ** 4).sqrt() / n ** 0.5  # sd of (2a(x+ε))²
    assert ((square - expected).abs() < 4 * spread).all()


# ------------------------------ known answers: each formula against an independent computation
# Known-answer tests: each formula against an independent computation (SciPy, scikit-learn,
# autograd written out, or a value derived by hand), so that a wrong constant or operator fails.


def test_sparsified_smoothgrad_keeps_the_top_k_of_each_sample():
    """A linear model with zero noise: every sample's gradient is W, so the map is the indicator
    of the 10 % largest |W| (ranked over all channels and pixels)."""
    weights = torch.randn(2, 3 * 10 * 10, generator=torch.Generator().manual_seed(3))
    model = nn.Linear(300, 2)
    model.weight.data, model.bias.data = weights, torch.zeros(2)
    wrapped = nn.Sequential(nn.Flatten(), model).eval()
    x = torch.rand(1, 3, 10, 10)
    ours = SparsifiedSmoothGrad(wrapped, n_samples=3, noise_level=0.0, topk=0.1).attribute(x, target=1, seed=0)
    expected = torch.zeros(300)
    expected[weights[1].abs().topk(30).indices] = 1.0
    assert torch.equal(ours.flatten(), expected)


@pytest.mark.parametrize("kind", ["continuous", "coarse", "constant", "segments"])
@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5, 1.0])
def test_topk_binary_matches_a_full_lexicographic_sort(kind, fraction):
    """The partial selection of the top-k pixels (values first, then the tie keys among values
    equal to the k-th) is the same set as an independent full sort by (value, key), in every
    tie pattern: none, coarse values, a constant map, a grouped map's constant segments."""
    from stablesal.explain.gradient.methods import _topk_binary

    g = torch.Generator().manual_seed(len(kind) * 7 + int(fraction * 100))
    values = torch.randn(6, 1, 16, 16, generator=g)
    if kind == "coarse":
        values = torch.round(values * 2) / 2
    elif kind == "constant":
        values = torch.zeros_like(values)
    elif kind == "segments":
        segment = torch.randint(0, 12, (6, 256), generator=g)
        values = torch.randn(6, 12, generator=g).gather(1, segment).view(6, 1, 16, 16)
    keys = torch.randn(6, 1, 16, 16, generator=g)
    flat, flat_keys = values.abs().flatten(1).numpy(), keys.flatten(1).numpy()
    k = max(1, int(round(fraction * flat.shape[1])))
    expected = np.zeros_like(flat)
    for row in range(len(flat)):
        order = np.lexsort((-flat_keys[row], -flat[row]))  # by value, then by key, both descending
        expected[row, order[:k]] = 1.0
    assert np.array_equal(_topk_binary(values, fraction, tie_keys=keys).flatten(1).numpy(), expected)


def test_sparsified_smoothgrad_breaks_ties_with_the_samples_noise():
    """Issue #28: a model whose output ignores its input has zero gradients; top-k by position
    then marked the same first pixels for every model, and two such models agreed perfectly
    (Spearman 1.00). With the sample's noise breaking ties, two seeds give unrelated maps."""
    from stablesal.explain.gradient.methods import _topk_binary

    values = torch.tensor([[0.0, 2.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    keys = torch.tensor([[0.1, 0.0, 0.9, 0.3, 0.5, 0.2, 0.8, 0.0, 0.0, 0.0]])
    assert _topk_binary(values, 0.3, tie_keys=keys).tolist() == [[0, 1, 1, 0, 1, 0, 0, 0, 0, 0]]  # 2, 2, then key .9

    class Constant(nn.Module):
        def forward(self, x):
            return x.sum((1, 2, 3))[:, None] * 0 + torch.tensor([[1.0, 0.0]])

    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    first, second = (SparsifiedSmoothGrad(Constant().eval(), n_samples=8).attribute(x, target=0, seed=seed)
                     for seed in (0, 1))
    rho = spearman(first.sum(1), second.sum(1))
    assert rho.abs().max() < 0.3, rho  # by position it was 1.0
    assert first.sum(1).flatten(1).std(1).min() > 0  # the maps are not constant: random top-k sets
