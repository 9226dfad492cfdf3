"""On a GPU: the engine, grouping and metrics give the CPU's results, stay seeded, and chunking
bounds memory. Skipped where CUDA is not available (CI has none).

CUDA's index_add_ and max-pool backward use atomic additions, so sums come in varying order:
seeded maps are equal to float tolerance on CUDA (bit-identical on CPU), and a binarised top-k
(Sparsified SmoothGrad) may flip an element that ties within that tolerance."""

import copy

import pytest
import torch

from stablesal.explain.gradient.methods import make_method
from stablesal.explain.perturbation.presets import budget_options
from stablesal.metrics import deletion_insertion
from stablesal.models import build_model
from stablesal.explain.segmentation import SkimageSLIC

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = build_model("small_cnn", 3, 10, [0.5] * 3, [0.25] * 3).eval()
    images = torch.rand(6, 3, 32, 32)
    return model, images, torch.arange(6) % 10


@pytest.mark.parametrize("name", ["saliency", "integrated_gradients", "input_x_gradient"])
def test_deterministic_methods_match_cpu(setup, name):
    model, images, target = setup
    segments = SkimageSLIC(32)(images)
    cpu = make_method(name, model, grouping="segments").attribute(images, target=target, segments=segments)
    gpu = make_method(name, copy.deepcopy(model).cuda(), grouping="segments").attribute(
        images.cuda(), target=target.cuda(), segments=segments.cuda())
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-5, rtol=1e-3)


@pytest.mark.parametrize("name", ["smoothgrad", "vargrad", "suppression", "sparsified_smoothgrad"])
def test_random_methods_seeded_and_batch_independent_on_cuda(setup, name):
    model, images, target = setup
    model = copy.deepcopy(model).cuda()
    x, y = images.cuda(), target.cuda()
    method = make_method(name, model, n_samples=8, internal_batch_size=5)
    first, second = method.attribute(x, target=y, seed=3), method.attribute(x, target=y, seed=3)
    single = method.attribute(x[2:3], target=y[2:3], seed=3)
    other_seed = method.attribute(x, target=y, seed=4)
    if name == "sparsified_smoothgrad":
        assert (first - second).abs().mean() < 1e-2 and (single[0] - first[2]).abs().mean() < 1e-2
    else:
        assert torch.allclose(first, second, atol=1e-6, rtol=1e-4)
        assert torch.allclose(single[0], first[2], atol=1e-6, rtol=1e-4)
    assert (other_seed - first).abs().max() > 1e-3 * first.abs().max()  # the seed matters


def test_deletion_matches_cpu(setup):
    model, images, target = setup
    maps = torch.rand_like(images)
    _, cpu = deletion_insertion(model, images, maps, target, steps=8)
    _, gpu = deletion_insertion(copy.deepcopy(model).cuda(), images.cuda(), maps.cuda(), target.cuda(), steps=8)
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-4)


def test_chunking_bounds_memory(setup):
    model, _, _ = setup
    model = copy.deepcopy(model).cuda()
    images = torch.rand(32, 3, 32, 32, device="cuda")
    target = torch.zeros(32, dtype=torch.long, device="cuda")
    peaks = []
    for steps in (32, 256):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        make_method("integrated_gradients", model, n_steps=steps, internal_batch_size=256).attribute(images, target=target)
        peaks.append(torch.cuda.max_memory_allocated())
    assert peaks[1] < 1.5 * peaks[0]  # 8× the passes, not 8× the memory


@pytest.mark.parametrize("preset", ["rise", "lime", "kernel_shap", "occlusion", "pda", "ciu"])
def test_perturbation_presets_match_cpu(setup, preset):
    """Perturbation pipelines run on the model's device and give the CPU's maps (super-pixel
    presets use scikit-image SLIC / quickshift on the CPU, as the gradient tests do)."""
    from stablesal.explain.perturbation import make_preset

    model, images, target = setup
    options = budget_options(preset, 200)
    cpu = make_preset(preset, model, chunk_size=64, **options).attribute(images, target=target, seed=3)
    gpu_model = copy.deepcopy(model).cuda()
    gpu = make_preset(preset, gpu_model, chunk_size=64, **options).attribute(images.cuda(), target=target, seed=3)
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-4, rtol=1e-3)


def test_inpainting_and_meaningful_perturbation_on_cuda(setup):
    from stablesal.explain.inpainting import InpainterConfig, train_inpainter
    from stablesal.explain.perturbation.meaningful import MeaningfulPerturbation
    from stablesal.metrics import srg

    model, images, target = setup
    gpu_model = copy.deepcopy(model).cuda()
    inpainter = train_inpainter(images, target, 10, InpainterConfig(width=8, steps=20, batch_size=4), device="cuda",
                                progress=False)
    holes = torch.zeros(6, 1, 32, 32, dtype=torch.bool, device="cuda")
    holes[:, :, 8:20, 8:20] = True
    filled = inpainter(images.cuda(), holes, target.cuda())
    assert filled.device.type == "cuda" and torch.equal(filled[~holes.expand_as(filled)],
                                                        images.cuda()[~holes.expand_as(filled)])
    maps = MeaningfulPerturbation(gpu_model, inpainter=inpainter, iterations=5).attribute(images.cuda(), target=target)
    assert maps.device.type == "cuda" and torch.isfinite(maps).all()
    scores = srg(gpu_model, images.cuda(), maps, target.cuda())
    assert torch.isfinite(scores["srg"]).all()


def test_counter_streams_give_the_cpus_bits_on_cuda():
    from stablesal.core.counter_streams import as_seeds, normal, uniform, words

    seeds, offsets = as_seeds([1234567, 2**63 + 5, 42]), torch.tensor([0, 10**9, 77])
    assert torch.equal(words(seeds.cuda(), offsets.cuda(), 4096).cpu(), words(seeds, offsets, 4096))
    assert torch.equal(uniform(seeds.cuda(), offsets.cuda(), 4096).cpu(), uniform(seeds, offsets, 4096))
    # Box–Muller's log and cos come from different maths libraries: equal to rounding
    assert torch.allclose(normal(seeds.cuda(), offsets.cuda(), 4096).cpu(), normal(seeds, offsets, 4096), atol=1e-6)


@pytest.mark.parametrize("name", ["smoothgrad", "vargrad", "gradient_shap", "suppression"])
def test_counter_streams_give_the_cpus_maps_on_cuda(setup, name):
    """rng="counter" draws the same samples on both devices, so seeded random maps agree across
    devices (to the atomic-addition tolerance), which per-image torch generators cannot give."""
    model, images, target = setup
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # full-precision convolutions, so no ReLU flips from TF32 rounding
    kwargs = {"baselines": torch.rand(4, 3, 32, 32)} if name == "gradient_shap" else {}
    cpu = make_method(name, model, n_samples=8, rng="counter").attribute(images, target=target, seed=3, **kwargs)
    gpu_method = make_method(name, copy.deepcopy(model).cuda(), n_samples=8)  # auto: counter streams on CUDA
    assert gpu_method.stream_kind("cuda") == "counter"
    try:
        gpu = gpu_method.attribute(images.cuda(), target=target.cuda(), seed=3,
                                   **{k: v.cuda() for k, v in kwargs.items()})
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-5, rtol=1e-3)
