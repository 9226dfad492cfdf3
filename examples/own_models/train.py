"""Train three small ResNet-18s on real photographs that ship offline, as a user would train their
own models, and save them as ordinary checkpoints; then point stablesal's report at them.

Data: scikit-image's ``lfw_subset``, 200 grey 25×25 photographs (100 faces, 100 non-faces),
written to ``data/lfw.npz`` with a fixed train/test split. Models: ``model.py``'s ResNet-18 layout
at width 16, the same recipe with seeds 0, 1 and 2 (the only difference between the three). The
inputs are normalised inside the training loop, as most user code does; the report's TOML gives
the same mean and std, and stablesal puts its ``Normalize`` in front of the loaded models.

    python examples/own_models/train.py            # about a minute on 2 CPU cores
    stablesal report --config examples/own_models/report.toml

Every model's test accuracy is printed, and a model that is not clearly above chance (50 % on these
two balanced classes) is reported loudly with exit status 1: its maps would explain a network that
learned nothing. Measured with this recipe on a 2-core CPU (seeds 0-2): 50 % for every model at
3 epochs, 50-72 % at 5, 94-96 % at 7 (1 thread) and 98-100 % at 10 (2 threads); too few epochs
leave BatchNorm's running statistics and the weights unsettled.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from model import resnet18_small  # noqa: E402

MEAN, STD = 0.45, 0.25  # the normalisation this "user" trains with (also in report.toml)
# Below this test accuracy a model counts as "at chance": with 50 test images of two balanced classes,
# a guesser reaches 68 % (34 of 50) with probability 0.8 % (binomial, n = 50, p = 0.5).
CHANCE_CEILING = 0.68


def write_data(path: Path, seed: int = 0) -> dict:
    """lfw_subset as an .npz: train/test split stratified 150/50, images [N, 1, 25, 25] in [0, 1]."""
    import skimage.data

    images = skimage.data.lfw_subset().astype(np.float32)[:, None]
    labels = np.array([1] * 100 + [0] * 100, dtype=np.int64)
    rng = np.random.default_rng(seed)
    test = np.concatenate([rng.permutation(100)[:25], 100 + rng.permutation(100)[:25]])
    train = np.setdiff1d(np.arange(200), test)
    arrays = {"train_images": images[train], "train_labels": labels[train], "test_images": images[test],
              "test_labels": labels[test]}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return arrays


def train(arrays: dict, seed: int, epochs: int, out: Path) -> float:
    """One model with the user's own loop (Adam, flips, cross-entropy); returns test accuracy."""
    torch.manual_seed(seed)
    model = resnet18_small()
    images = (torch.from_numpy(arrays["train_images"]) - MEAN) / STD
    labels = torch.from_numpy(arrays["train_labels"])
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(labels), generator=generator).split(32):
            x = images[batch]
            flip = torch.rand(len(batch), generator=generator) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
            optimiser.zero_grad()
            F.cross_entropy(model(x), labels[batch]).backward()
            optimiser.step()
    model.eval()
    with torch.no_grad():
        test = (torch.from_numpy(arrays["test_images"]) - MEAN) / STD
        accuracy = float((model(test).argmax(1) == torch.from_numpy(arrays["test_labels"])).float().mean())
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "epoch": epochs, "seed": seed, "test_accuracy": accuracy}, out)
    return accuracy


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--out", default=str(HERE), help="folder for data/ and checkpoints/")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    out = Path(args.out)
    arrays = write_data(out / "data" / "lfw.npz")
    at_chance = []
    for seed in range(args.models):
        accuracy = train(arrays, seed, args.epochs, out / "checkpoints" / f"resnet18-seed{seed}.pt")
        print(f"seed {seed}: test accuracy {accuracy:.1%}")
        if accuracy < CHANCE_CEILING:
            at_chance.append(f"seed {seed} ({accuracy:.1%})")
    if at_chance:
        print(f"WARNING: {', '.join(at_chance)} not clearly above chance (50 %, threshold {CHANCE_CEILING:.0%}): "
              f"these models learned nothing and their saliency maps would say nothing about faces. "
              f"Train longer (--epochs, now {args.epochs}).", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
