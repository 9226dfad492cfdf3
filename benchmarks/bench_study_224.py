"""Where the time of a 224-pixel stability study goes, with model 0's fidelity metrics computed
(``[gradient] fidelity = "on"``, what every study did before fidelity became opt-in above 64 px)
and left out (``"auto"``, the default now).

Three ImageNet-layout ResNet-18s (``benchmarks/imagenet_resnet.py``, the layout of torchvision's
``resnet18``), 16 images of 224 × 224 px, the default four groupings, the methods given (default:
saliency and SmoothGrad with the default 32 samples; the main set's test–retest repeat included):
the study's total time and the explaining time per model, in one process (auto, on, auto: the
first run pays the one-off costs), so the runs compared share the machine's state.

    python benchmarks/bench_study_224.py [--methods saliency smoothgrad] [--images 16]
                                         [--out benchmarks/results/study_224.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import imagenet_resnet  # noqa: E402,F401  (registers resnet18_imagenet)

from stablesal.core.settings import StudySettings  # noqa: E402
from stablesal.models import build_model  # noqa: E402
from stablesal.studies.stability.run import run_study  # noqa: E402


def models_and_images(count: int, images: int) -> tuple[list, torch.Tensor, torch.Tensor]:
    """``count`` ResNet-18s (seeds 0…), eval mode, frozen, and ``images`` smooth random images with
    model 0's predicted classes as targets."""
    models = []
    for seed in range(count):
        torch.manual_seed(seed)
        model = build_model("resnet18_imagenet", 3, 10, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).eval()
        models.append(model.requires_grad_(False))
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(images, 3, 14, 14, generator=generator)
    x = torch.nn.functional.interpolate(coarse, size=224, mode="bilinear", align_corners=False).clamp(0, 1)
    with torch.no_grad():
        targets = models[0](x).argmax(1)
    return models, x, targets


def timed_study(models, images, targets, methods, fidelity: str) -> dict:
    settings = StudySettings(methods=list(methods), fidelity=fidelity)
    began = time.perf_counter()
    results = run_study({"main": models}, images, targets, None, settings, progress=False, include_random=False)
    total = time.perf_counter() - began
    return {"fidelity": fidelity, "seconds": round(total, 1),
            "explain_seconds_per_model": {r["method"]: round(r["explain_seconds_per_model"], 1) for r in results
                                          if r["grouping"] == "pixel"}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["saliency", "smoothgrad"])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/study_224.json")
    args = parser.parse_args()
    models, images, targets = models_and_images(args.models, args.images)
    runs = []
    # auto, on, auto: the first run pays for one-off costs (chunk sizes measured, code warmed up),
    # so "after" is the second auto run, and the first is kept to show that cost
    for fidelity in ("auto", "on", "auto"):
        runs.append(timed_study(models, images, targets, args.methods, fidelity))
        print(json.dumps(runs[-1]), flush=True)
    before, after = runs[1]["seconds"], runs[2]["seconds"]
    record = {"what": "stability study at 224 px: fidelity computed (before) vs the default auto (after)",
              "models": f"{args.models} × resnet18_imagenet", "images": args.images, "methods": args.methods,
              "groupings": StudySettings().groupings, "torch_threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(), "runs": runs,
              "before_s": before, "after_s": after, "fidelity_share_of_before": round(1 - after / before, 3)}
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(f"before {before:.0f} s, after {after:.0f} s: fidelity took {1 - after / before:.0%} of the study")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
