"""Controls behind the inpainting section's keep-prediction reading, on the default report's models and
learned inpainter (run ``make report`` first):

    python analysis/fill_controls.py [--runs runs/default] [--images 1024]

For every trained model (the main seeds and the controls) and the report's quality images (the
test images after those of the stability study), with exactly the background removed, it prints
how often the prediction is kept by:

- the learned inpainter (unconditional), the dataset-mean fill and the image mean colour;
- ``true-background-mean``: a flat fill of the mean colour of the removed background itself, an
  oracle no inpainter can match: the ceiling of flat fills;

and how many images only the learned fill keeps and how many only the dataset-mean fill keeps.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stablesal.pipeline.config import StudyConfig  # noqa: E402
from stablesal.explain.inpainting import InpainterConfig, train_inpainter  # noqa: E402
from stablesal.data import load_configured  # noqa: E402
from stablesal.data.selection import ordered_for_explaining  # noqa: E402
from stablesal.models.training import load_checkpoint  # noqa: E402


@torch.inference_mode()
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/default", help="the default report's runs folder")
    parser.add_argument("--images", type=int, default=1024)
    args = parser.parse_args(argv)
    config = StudyConfig()
    runs = Path(args.runs)
    checkpoint = runs / "inpainter.pt"
    if not checkpoint.exists():
        raise SystemExit(f"no learned inpainter at {checkpoint}: run `make report` first")
    dataset = ordered_for_explaining(load_configured(config.data), config.data.selection, config.data.selection_seed)
    section = config.inpainting
    inpainter = train_inpainter(dataset.train_images, dataset.train_labels, dataset.num_classes,
                                InpainterConfig(width=section.width, conditional=section.conditional,
                                                steps=section.steps, seed=section.seed),
                                path=checkpoint, progress=False, masks=dataset.train_masks)
    # the report's quality images: the removal stage's start in the report's order
    start = min(config.gradient.n_images, max(0, len(dataset.test_labels) - section.n_images))
    images = dataset.test_images[start:start + args.images]
    background = ~dataset.test_masks[start:start + args.images].unsqueeze(1)
    share = background.float().sum((2, 3), keepdim=True)
    fills = {
        "learned": inpainter(images, background),
        "dataset-mean": torch.tensor(dataset.mean).view(1, -1, 1, 1).expand_as(images),
        "mean-colour": images.mean((2, 3), keepdim=True).expand_as(images),
        "true-background-mean": ((images * background).sum((2, 3), keepdim=True) / share).expand_as(images),
    }
    fills = {name: torch.where(background, fill, images) for name, fill in fills.items()}
    print(f"{images.shape[0]} images, exactly the background removed; share of predictions kept")
    print("model".ljust(28) + "".join(name.rjust(22) for name in fills) + "   only learned / only dataset-mean")
    totals = [0, 0]
    for path in sorted(runs.glob("models/*.pt")):
        model = load_checkpoint(path, dataset=dataset).model.eval()
        predicted = model(images).argmax(1)
        kept = {name: model(fill).argmax(1).eq(predicted) for name, fill in fills.items()}
        only = [int((kept["learned"] & ~kept["dataset-mean"]).sum()), int((~kept["learned"] & kept["dataset-mean"]).sum())]
        totals = [totals[0] + only[0], totals[1] + only[1]]
        print(path.stem.ljust(28) + "".join(f"{float(k.float().mean()):22.3f}" for k in kept.values())
              + f"   {only[0]} / {only[1]}")
    print(f"all models: only learned {totals[0]}, only dataset-mean {totals[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
