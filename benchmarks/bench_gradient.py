"""Gradient methods: time as a ratio to the floor and to Captum, grouping overhead, segmenter speed.

The floor of a method is the same forward+backward passes written directly (samples built in
one torch expression, chunked at the best of several chunk sizes, parameter gradients frozen),
in this process. Captum runs at its defaults (one big batch), as a user would call it.

    python benchmarks/bench_gradient.py [--images 64] [--samples 32] [--device cpu] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import warnings
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import captum.attr as ca  # noqa: E402

from stablesal.explain.gradient.methods import make_method  # noqa: E402
from stablesal.core.chunking import frozen_parameters  # noqa: E402
from stablesal.explain.segmentation import FastSLIC, SkimageSLIC  # noqa: E402
import imagenet_resnet  # noqa: E402,F401  (registers resnet18_imagenet and resnet50_imagenet)


def synchronise() -> None:
    """Wait for queued GPU work, so that a time covers the work and not only its launch."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        synchronise()
        began = time.perf_counter()
        fn()
        synchronise()
        times.append(time.perf_counter() - began)
    return min(times)


def interleaved(fns: dict, repeats: int) -> dict:
    """Best time of each callable, measured in alternation so drift of the machine hits all alike."""
    for fn in fns.values():
        fn()  # warm-up (and the chunk-size measurement of stablesal's first call)
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronise()
            began = time.perf_counter()
            fn()
            synchronise()
            best[name] = min(best[name], time.perf_counter() - began)
    return best


def floor_passes(model, make_samples, rows: int, chunk: int, nonlinearity=None):
    """The bare minimum: build samples, forward, backward, accumulate."""
    total = None
    with frozen_parameters(model):
        for start in range(0, rows, chunk):
            x = make_samples(start, min(rows, start + chunk)).requires_grad_(True)
            grad, = torch.autograd.grad(model(x)[:, 0].sum(), x)
            if nonlinearity is not None:
                grad = nonlinearity(grad)
            part = grad.sum(0)
            total = part if total is None else total + part
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="benchmarks/results/gradient.json")
    parser.add_argument("--arch", default="small_cnn",
                        help="small_cnn, resnet20, resnet18_imagenet, resnet50_imagenet (224-px layouts) "
                             "or torchvision:<name> where torchvision is installed")
    parser.add_argument("--chunks", default="32,64,128,256,512", help="chunk sizes the floor tries")
    parser.add_argument("--methods", default=None, help="comma-separated subset of the methods")
    parser.add_argument("--segmenters", default="fastslic,slic",
                        help="segmenters to time; the first also makes the partition for the grouped timings")
    args = parser.parse_args()
    device = torch.device(args.device)
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
    torch.manual_seed(0)
    model = imagenet_resnet.benchmark_model(args.arch, device)
    images = torch.rand(args.images, 3, args.size, args.size, device=device)
    target = torch.randint(0, 10, (args.images,), device=device)
    n, b = args.samples, args.images
    flat = images.repeat_interleave(n, 0)

    def noisy(lo, hi):
        return flat[lo:hi] + 0.15 * torch.randn_like(flat[lo:hi])

    alphas = torch.linspace(0, 1, n, device=device).repeat(b).view(-1, 1, 1, 1)

    def path(lo, hi):
        return alphas[lo:hi] * flat[lo:hi]

    def erased(lo, hi):
        keep = torch.rand(hi - lo, 1, 1, 1, device=device)
        return flat[lo:hi] * (torch.rand(hi - lo, 1, *images.shape[2:], device=device) < keep)

    plain = lambda lo, hi: flat[lo:hi]  # noqa: E731
    cases = {
        # name: (rows, sample builder, per-sample nonlinearity, captum call or None)
        "saliency": (b, lambda lo, hi: images[lo:hi], torch.abs,
                     lambda: ca.Saliency(model).attribute(images, target=target)),
        "integrated_gradients": (b * n, path, None,
                                 lambda: ca.IntegratedGradients(model).attribute(images, target=target, n_steps=n)),
        "smoothgrad": (b * n, noisy, None, lambda: ca.NoiseTunnel(ca.Saliency(model)).attribute(
            images, target=target, nt_type="smoothgrad", nt_samples=n, stdevs=0.15, abs=False)),
        "vargrad": (b * n, noisy, None, lambda: ca.NoiseTunnel(ca.Saliency(model)).attribute(
            images, target=target, nt_type="vargrad", nt_samples=n, stdevs=0.15, abs=False)),
        "gradient_shap": (b * n, path, None, lambda: ca.GradientShap(model).attribute(
            images, target=target, baselines=images[:8], n_samples=n)),
        "sparsified_smoothgrad": (b * n, noisy, torch.abs, None),
        "suppression": (b * n, erased, torch.abs, None),
    }
    del plain
    chunks = tuple(int(c) for c in args.chunks.split(","))
    if args.methods:
        cases = {name: case for name, case in cases.items() if name in args.methods.split(",")}
    rows_out = []
    makers = {"fastslic": FastSLIC, "slic": SkimageSLIC}
    chosen = [makers[name] for name in args.segmenters.split(",")]
    segments = chosen[0](64)(images)
    for name, (rows, builder, nonlinearity, captum_call) in cases.items():
        floor_by_chunk = {c: best_time(lambda c=c: floor_passes(model, builder, rows, c, nonlinearity), 1)
                          for c in chunks}
        best_chunk = min(floor_by_chunk, key=floor_by_chunk.get)
        kwargs = {"baselines": images[:8]} if name == "gradient_shap" else {}
        method = make_method(name, model, n_samples=n, n_steps=n)
        grouped_method = make_method(name, model, n_samples=n, n_steps=n, grouping="segments")
        method.attribute(images, target=target, **kwargs)  # measures stablesal's chunk size
        auto_chunk = method._chunk_size(images.shape[1:], device, model)
        calls = {
            "floor": lambda: floor_passes(model, builder, rows, best_chunk, nonlinearity),
            "floor_at_auto_chunk": lambda: floor_passes(model, builder, rows, auto_chunk, nonlinearity),
            "ours": lambda: method.attribute(images, target=target, **kwargs),
            "grouped": lambda: grouped_method.attribute(images, target=target, segments=segments, **kwargs),
        }
        # the other kind of random stream (auto: counter streams off the CPU, generators on it), so a
        # GPU run shows what drawing whole chunks saves and a CPU run what it would cost there
        other_rng = None
        if method.sampler.random:
            other_rng = "generator" if method.stream_kind(device) == "counter" else "counter"
            other = make_method(name, model, n_samples=n, n_steps=n, rng=other_rng)
            other.attribute(images, target=target, **kwargs)
            calls["other_streams"] = lambda: other.attribute(images, target=target, **kwargs)
        if captum_call:
            calls["captum"] = captum_call
        timed = interleaved(calls, args.repeats)
        floor = min(timed["floor"], timed["floor_at_auto_chunk"])  # the best chunk size found either way
        if timed["floor_at_auto_chunk"] < timed["floor"]:
            best_chunk = auto_chunk
        ours, grouped = timed["ours"], timed["grouped"]
        captum = timed.get("captum", float("nan"))
        rows_out.append({
            "method": name, "passes": rows, "floor_s": floor, "floor_chunk": best_chunk, "stablesal_s": ours,
            "ratio_to_floor": ours / floor, "captum_s": captum, "captum_over_stablesal": captum / ours,
            "grouped_s": grouped, "grouping_overhead_pct": 100 * (grouped / ours - 1),
            "streams": method.stream_kind(device), "other_streams": other_rng,
            "other_streams_s": timed.get("other_streams", float("nan")),
        })
        print(f"{name:24s} passes {rows:6d}  floor {floor:7.3f}s (chunk {best_chunk:3d})  stablesal {ours:7.3f}s "
              f"= {ours / floor:4.2f}x floor  captum {captum:7.3f}s = {captum / ours:4.2f}x stablesal  "
              f"grouped {grouped:7.3f}s (+{100 * (grouped / ours - 1):4.1f}%)"
              + (f"  {other_rng} streams {timed['other_streams'] / floor:4.2f}x floor" if other_rng else ""),
              flush=True)

    # grouping's own cost, free of timing noise between whole runs: project n·b per-sample maps
    from stablesal.explain.grouping import Partition

    partition = Partition(segments)
    rows_index = torch.arange(b, device=device).repeat_interleave(n)
    grads = torch.randn(b * n, *images.shape[1:], device=device)

    def project_all():
        for start in range(0, b * n, 256):
            partition.select(rows_index[start:start + 256]).project(grads[start:start + 256])
        if device.type == "cuda":
            torch.cuda.synchronize()

    projection = best_time(project_all, args.repeats)
    for row in rows_out:
        row["projection_s"] = projection if row["passes"] == b * n else projection / n
        row["projection_pct_of_stablesal"] = 100 * row["projection_s"] / row["stablesal_s"]
    print(f"projection of {b * n} per-sample maps: {projection:.4f}s = "
          f"{100 * projection / rows_out[-1]['stablesal_s']:.1f}% of {rows_out[-1]['method']}'s time", flush=True)

    seg_rows = []
    for size in (32, 224):
        pictures = torch.rand(8, 3, size, size)
        smooth = torch.nn.functional.avg_pool2d(pictures, 5, 1, 2)  # some structure for the segmenters
        for segmenter in (maker(64 if size == 32 else 250) for maker in chosen):
            def fresh(s=segmenter):
                s._cache.clear()  # time the segmentation, not the cache
                return s(smooth)

            seconds = best_time(fresh, 2) / 8
            seg_rows.append({"segmenter": str(segmenter), "size": size, "ms_per_image": 1000 * seconds})
            print(f"{str(segmenter):45s} {size:3d}px  {1000 * seconds:7.2f} ms/image", flush=True)

    result = {"device": str(device), "arch": args.arch, "machine": platform.machine(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "images": b, "samples": n, "size": args.size,
              "methods": rows_out, "segmenters": seg_rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
