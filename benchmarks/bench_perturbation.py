"""Perturbation presets: time as a ratio to the floor and to Captum, and peak memory vs N.

The floor of a preset is the same number of forward passes (N samples + the full and the empty
image) with the masks made and blended directly in torch at the same chunk size, in this
process: for RISE, binary grids upsampled bilinearly and cropped at random offsets; for the
others, random rows of Z times the hard segment masks. Segmentation is done once outside the
floor; stablesal's time includes it. Captum runs Lime, KernelShap and Occlusion with the same
feature masks, N and ``perturbations_per_eval`` equal to the chunk (its default of 1 would be
one forward per sample).

Peak memory is measured in fresh subprocesses (max RSS) for RISE with N and 8·N masks.

    python benchmarks/bench_perturbation.py [--size 32] [--images 8] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stablesal.data import load_dataset  # noqa: E402
from stablesal.explain.perturbation import make_preset  # noqa: E402
from stablesal.explain.perturbation.presets import budget_options  # noqa: E402
from stablesal.core.chunking import measure_forward_chunk  # noqa: E402
import imagenet_resnet  # noqa: E402,F401  (registers resnet18_imagenet and resnet50_imagenet)


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def interleaved(fns: dict, repeats: int) -> dict:
    """Best time of each callable, measured in alternation (GPU work is waited for)."""
    for fn in fns.values():
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync()
            began = time.perf_counter()
            fn()
            _sync()
            best[name] = min(best[name], time.perf_counter() - began)
    return best


@torch.inference_mode()
def floor_rise(model, images, target, n, grid, chunk, generator):
    side = images.shape[-1]
    cell = math.ceil(side / grid)
    device = images.device
    fill = torch.tensor([0.485, 0.456, 0.406], device=device).view(3, 1, 1)
    for index, image in enumerate(images):
        total = torch.zeros(side, side, device=device)
        for start in range(0, n + 2, chunk):
            rows = min(chunk, n + 2 - start)
            cells = (torch.rand(rows, 1, grid, grid, generator=generator, device=device) < 0.5).float()
            up = F.interpolate(cells, size=((grid + 1) * cell,) * 2, mode="bilinear", align_corners=False)[:, 0]
            dy, dx = torch.randint(0, cell, (2, rows), generator=generator, device=device)
            span = torch.arange(side, device=device)
            masks = up[torch.arange(rows, device=device)[:, None, None], (dy[:, None] + span)[:, :, None],
                       (dx[:, None] + span)[:, None, :]]
            y = torch.softmax(model(torch.addcmul(fill, masks.unsqueeze(1), image - fill)), 1)[:, target[index]]
            total += (y @ masks.flatten(1)).view(side, side)


@torch.inference_mode()
def floor_segments(model, images, target, n, segments, chunk, generator):
    for index, image in enumerate(images):
        one_hot = F.one_hot(segments[index]).permute(2, 0, 1).float().flatten(1)
        fill = image.mean((1, 2), keepdim=True)
        for start in range(0, n + 2, chunk):
            rows = min(chunk, n + 2 - start)
            z = (torch.rand(rows, one_hot.shape[0], generator=generator, device=image.device) < 0.5).float()
            masks = (z @ one_hot).view(rows, 1, *image.shape[1:])
            torch.softmax(model(torch.addcmul(fill, masks, image - fill)), 1)[:, target[index]]


def captum_runner(name, model, images, target, n, chunk, preset):
    import captum.attr as ca

    def probability(x):
        return torch.softmax(model(x), 1)

    if name == "occlusion":
        size, stride = preset.segmenter.size, preset.segmenter.stride
        method = ca.Occlusion(probability)
        return lambda: method.attribute(images, target=target, sliding_window_shapes=(3, size, size),
                                        strides=(3, stride, stride), baselines=0.0, perturbations_per_eval=chunk)
    try:
        import sklearn  # noqa: F401  (Captum's default surrogate models need scikit-learn)
    except ImportError:
        return None
    masks = torch.stack([preset._features(image).labels for image in images]).unsqueeze(1).expand_as(images)
    method = ca.Lime(probability) if name == "lime" else ca.KernelShap(probability)
    baselines = images.mean((2, 3), keepdim=True).expand_as(images).contiguous()

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i in range(images.shape[0]):  # Captum's Lime/KernelShap take one image per call
                method.attribute(images[i:i + 1], target=target[i:i + 1], feature_mask=masks[i:i + 1],
                                 n_samples=n, baselines=baselines[i:i + 1], perturbations_per_eval=chunk)
    return run


def peak_memory(size: int, n_masks: int) -> float:
    """Max RSS (MiB) of a fresh process that runs RISE with ``n_masks`` masks on one image."""
    code = (
        "import resource, torch, sys; sys.path.insert(0, '.');"
        "from stablesal.models import build_model; from stablesal.explain.perturbation import RISE;"
        "torch.set_num_threads(2);"
        f"m = build_model('small_cnn', 3, 10, [0.5]*3, [0.25]*3).eval(); x = torch.rand(1, 3, {size}, {size});"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
        f"RISE(m, n_samples={n_masks}, chunk_size=64).attribute(x, target=0);"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--images", type=int, default=None, help="default 8 at 32 px, 1 at 224 px")
    parser.add_argument("--samples", type=int, default=None, help="N (default 1000 at 32 px, 200 at 224 px)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--presets", default="rise,lime,kernel_shap,occlusion,pda,ciu")
    parser.add_argument("--out", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--arch", default="small_cnn", help="small_cnn, resnet18_imagenet, resnet50_imagenet or torchvision:<name>")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(2)
    size = args.size
    count = args.images or (8 if size <= 64 else 1)
    n = args.samples or (1000 if size <= 64 else 200)
    model = imagenet_resnet.benchmark_model(args.arch)
    for p in model.parameters():
        p.requires_grad_(False)
    results_device = str(device)
    # images of the built-in dataset (super-pixel counts on noise images would be unrealistic)
    data = load_dataset("shapes", n_train=10, n_test=count, size=size, seed=0, cache_dir=False)
    images, target = data.test_images[:count].to(device), data.test_labels[:count].to(device)
    model = model.to(device)
    chunk = measure_forward_chunk(model, (3, size, size), device)
    results = {"device": results_device, "machine": platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__,
               "arch": args.arch, "size": size, "images": count, "n_samples": n, "chunk": chunk, "presets": {}}
    print(f"{count} images {size}x{size}, N = {n}, chunk {chunk}, {args.arch}, {torch.get_num_threads()} threads")
    print(f"{'preset':<12} {'forwards':>9} {'stablesal s':>12} {'floor s':>9} {'ratio':>6} {'captum s':>9} {'captum/ours':>11}")
    for name in args.presets.split(","):
        options = budget_options(name, n)
        if name == "occlusion":
            options = {"size": max(2, size // 4), "stride": max(1, size // 8)}
        preset = make_preset(name, model, chunk_size=chunk, **options)
        segments = torch.stack([preset._features(image).labels for image in images])
        features = preset._features(images[0]).count
        samples = preset.sampler.count(preset.n_samples, features)
        generator = torch.Generator(device=device).manual_seed(1)
        fns = {"stablesal": lambda: preset.attribute(images, target=target, seed=0)}
        if name == "rise":
            fns["floor"] = lambda: floor_rise(model, images, target, samples, 7, chunk, generator)
        else:
            fns["floor"] = lambda: floor_segments(model, images, target, samples, segments, chunk, generator)
        peer = captum_runner(name, model, images, target, samples, chunk, preset) if name in (
            "lime", "kernel_shap", "occlusion") and device.type == "cpu" else None
        if peer is not None:
            fns["captum"] = peer
        best = interleaved(fns, args.repeats)
        row = {"forwards": count * (samples + 2), "stablesal_s": best["stablesal"], "floor_s": best["floor"],
               "ratio_to_floor": best["stablesal"] / best["floor"], "pipeline": str(preset)}
        if "captum" in best:
            row["captum_s"] = best["captum"]
            row["captum_over_stablesal"] = best["captum"] / best["stablesal"]
        results["presets"][name] = row
        captum_text = f"{row['captum_s']:9.3f} {row['captum_over_stablesal']:10.2f}x" if "captum_s" in row else (
            f"{'-':>9} {'-':>11}")
        print(f"{name:<12} {row['forwards']:9d} {row['stablesal_s']:12.3f} {row['floor_s']:9.3f} "
              f"{row['ratio_to_floor']:5.2f}x {captum_text}")
    if not args.no_memory:
        small, large = peak_memory(size, n), peak_memory(size, 8 * n)
        results["peak_rss_mib"] = {str(n): small, str(8 * n): large}
        print(f"RISE peak RSS: {small:.0f} MiB with {n} masks, {large:.0f} MiB with {8 * n} masks")
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    out = Path(args.out or f"benchmarks/results/perturbation_{size}{suffix}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
