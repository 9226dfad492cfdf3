"""Peak memory of a gradient method at 224 px: SmoothGrad on ImageNet-layout ResNet-18 and ResNet-50,
each run in a fresh process (max RSS), for a few and for more images. Chunking keeps the peak
nearly flat in the number of images.

    python benchmarks/bench_memory_224.py [--out benchmarks/results/memory_224.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = [("resnet18_imagenet", 4, 32, 2), ("resnet18_imagenet", 16, 32, 2),
         ("resnet50_imagenet", 2, 16, 1), ("resnet50_imagenet", 6, 16, 1)]


def peak(arch: str, images: int, samples: int, threads: int) -> dict:
    code = (
        "import resource, sys, torch; sys.path.insert(0, 'benchmarks'); import imagenet_resnet;"
        "from stablesal.models import build_model; from stablesal.explain.gradient.methods import make_method;"
        f"torch.set_num_threads({threads});"
        f"m = build_model('{arch}', 3, 10, [0.5]*3, [0.25]*3).eval(); x = torch.rand({images}, 3, 224, 224);"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024;"
        f"make_method('smoothgrad', m, n_samples={samples}).attribute(x, target=0, seed=0);"
        "print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    before, after = (float(v) for v in out.stdout.split()[-2:])
    return {"arch": arch, "images": images, "samples": samples, "threads": threads,
            "rss_before_mib": round(before), "peak_rss_mib": round(after)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/memory_224.json")
    args = parser.parse_args()
    rows = []
    for case in CASES:
        rows.append(peak(*case))
        print(json.dumps(rows[-1]), flush=True)
    Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
