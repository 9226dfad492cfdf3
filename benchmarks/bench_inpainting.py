"""Inpainters: stablesal's ``(images, holes) → images`` wrappers against the floor, the same
library calls written directly on NumPy arrays in the same process.

- OpenCV Telea / Navier–Stokes: one ``cv2.inpaint`` per image on a uint8 batch converted once;
- scikit-image biharmonic: one ``inpaint_biharmonic`` per image on a float64 batch;
- ROAD's noisy linear imputation: one sparse solve per image written directly (ROAD's own code
  is not an installable package, so it has no peer here);
- the learned inpainter: the network's forward pass on the whole batch.

Neither Captum nor Quantus has inpainters, so the floor is the only comparison. The script checks
that wrapper and floor give the same images, then prints ms per image and the ratio to the floor,
at 32 px (the built-in dataset) and 224 px.

    python benchmarks/bench_inpainting.py [--sizes 32 224] [--images 64 4]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_gradient import interleaved  # noqa: E402  (benchmarks/ is on the path when run as a script)
from stablesal.data import render_shapes  # noqa: E402
from stablesal.explain.inpainting import (  # noqa: E402
    BiharmonicInpainter, InpaintingNet, LearnedInpainter, NoisyLinearImputation, OpenCVInpainter, random_holes,
)


def opencv_floor(pixels: np.ndarray, masks: np.ndarray, flag: int) -> np.ndarray:
    """``pixels`` uint8 [n, H, W, C], ``masks`` uint8 [n, H, W] → float32 [n, C, H, W]."""
    import cv2

    out = np.stack([cv2.inpaint(p, m, 3, flag) for p, m in zip(pixels, masks)])
    return out.transpose(0, 3, 1, 2).astype(np.float32) / 255.0


def biharmonic_floor(pixels: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``pixels`` float64 [n, H, W, C], ``masks`` bool [n, H, W] → [n, C, H, W]."""
    from skimage.restoration import inpaint_biharmonic

    return np.stack([inpaint_biharmonic(p, m, channel_axis=-1) for p, m in zip(pixels, masks)]).transpose(0, 3, 1, 2)


def road_floor(pixels: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Noisy linear imputation without noise: per image, each unknown pixel is the weighted mean of
    its 8 neighbours (1/6 direct, 1/12 diagonal); ``pixels`` float64 [n, C, H, W]."""
    import scipy.sparse as sparse
    from scipy.sparse.linalg import spsolve

    n, channels, height, width = pixels.shape
    out = pixels.copy()
    offsets = [(-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
               (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12)]
    for index in range(n):
        unknown = np.flatnonzero(masks[index].ravel())
        if unknown.size == 0:
            continue
        number = -np.ones(height * width, dtype=np.int64)
        number[unknown] = np.arange(unknown.size)
        flat = pixels[index].reshape(channels, -1)
        ys, xs = np.divmod(unknown, width)
        diagonal = np.zeros(unknown.size)
        rhs = np.zeros((unknown.size, channels))
        rows, cols, values = [], [], []
        for dy, dx, weight in offsets:
            ny, nx = ys + dy, xs + dx
            ok = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
            target = ny[ok] * width + nx[ok]
            diagonal[ok] += weight
            row = np.flatnonzero(ok)
            inside = number[target] >= 0
            rows.append(row[inside])
            cols.append(number[target[inside]])
            values.append(np.full(inside.sum(), -weight))
            np.add.at(rhs, row[~inside], weight * flat[:, target[~inside]].T)
        rows.append(np.arange(unknown.size))
        cols.append(np.arange(unknown.size))
        values.append(diagonal)
        matrix = sparse.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                                   shape=(unknown.size, unknown.size))
        out[index].reshape(channels, -1)[:, unknown] = spsolve(matrix, rhs).reshape(unknown.size, -1).T
    return np.clip(out, 0, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 224])
    parser.add_argument("--images", type=int, nargs="+", default=[64, 4], help="images per size, in order")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default="benchmarks/results/inpainting.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    import cv2

    results = {"machine": platform.machine(), "threads": torch.get_num_threads(), "opencv": cv2.__version__,
               "sizes": {}}
    failed = False
    for size, count in zip(args.sizes, args.images):
        images = torch.from_numpy(render_shapes(count, size=size, seed=0)[0]).float() / 255
        holes = random_holes(count, size, size, torch.Generator().manual_seed(0), coverage=(0.25, 0.5))
        masks = holes[:, 0].numpy()
        uint8 = (images.numpy().transpose(0, 2, 3, 1) * 255 + 0.5).astype(np.uint8)
        net = InpaintingNet(3, 16, 10).eval()
        learned = LearnedInpainter(net)

        def learned_floor():
            with torch.inference_mode():
                return net(images, holes)

        cases = {
            "opencv-telea": (OpenCVInpainter("telea"), lambda: opencv_floor(uint8, masks.astype(np.uint8),
                                                                            cv2.INPAINT_TELEA)),
            "opencv-ns": (OpenCVInpainter("ns"), lambda: opencv_floor(uint8, masks.astype(np.uint8), cv2.INPAINT_NS)),
            "biharmonic": (BiharmonicInpainter(),
                           lambda: biharmonic_floor(images.double().numpy().transpose(0, 2, 3, 1), masks)),
            "road-linear": (NoisyLinearImputation(noise=0.0), lambda: road_floor(images.double().numpy(), masks)),
            "learned": (learned, learned_floor),
        }
        rows = {}
        for name, (inpainter, floor) in cases.items():
            ours = inpainter(images, holes)
            reference = torch.as_tensor(np.asarray(floor())).float()
            reference = torch.where(holes, reference, images)
            error = float((ours - reference).abs().max())
            if error > 1e-4:
                print(f"MISMATCH {name} at {size} px: max difference {error:.2e}")
                failed = True
            times = interleaved({"ours": lambda: inpainter(images, holes), "floor": floor}, args.repeats)
            t_ours, t_floor = times["ours"], times["floor"]
            rows[name] = {"ms_per_image": 1000 * t_ours / count, "floor_ms_per_image": 1000 * t_floor / count,
                          "ratio_to_floor": t_ours / t_floor, "max_difference": error}
            print(f"{size:4d} px  {name:14s} stablesal {1000 * t_ours / count:9.3f} ms/image   floor "
                  f"{1000 * t_floor / count:9.3f}   ratio {t_ours / t_floor:5.2f}   max diff {error:.1e}", flush=True)
        results["sizes"][str(size)] = {"images": count, "inpainters": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
