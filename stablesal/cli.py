"""The ``stablesal`` command line: ``train-seeds``, ``explain``, ``stability`` and ``report``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__


def format_table(rows: list[dict], floats: str = "{:.3f}") -> str:
    """A plain-text table of dict rows with aligned columns."""
    if not rows:
        return "(no rows)"
    columns = list(rows[0])
    cells = [[floats.format(v) if isinstance(v, float) else str(v) for v in (row[c] for c in columns)] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = lambda values: "  ".join(v.rjust(w) for v, w in zip(values, widths))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="shapes", help="shapes (built in), lfw (built in), cifar10, folder")
    parser.add_argument("--data-root", default=None, help="local path for cifar10 / folder datasets")
    parser.add_argument("--n-train", type=int, default=None, help="shapes: number of training images")
    parser.add_argument("--n-test", type=int, default=None, help="shapes: number of test images")
    parser.add_argument("--image-size", type=int, default=None, help="shapes / folder: image side in pixels")


def _load_data(args):
    from .data import load_dataset

    options = {}
    if args.dataset == "shapes":
        options = {k: v for k, v in (("n_train", args.n_train), ("n_test", args.n_test), ("size", args.image_size)) if v}
    elif args.dataset == "folder" and args.image_size:
        options = {"size": args.image_size}
    return load_dataset(args.dataset, root=args.data_root, **options)


def _add_training_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-k", "--models", type=int, default=4, help="number of retrained models K")
    parser.add_argument("--vary", default="both", choices=["seed", "split", "both"],
                        help="what differs between models: seed, disjoint data split, or both")
    parser.add_argument("--arch", default="small_cnn", help="small_cnn or resnet20")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--base-seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")


def _train(args, dataset, out_dir: Path):
    from .seeds import TrainConfig, train_seeds

    config = TrainConfig(model=args.arch, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    return train_seeds(dataset, k=args.models, vary=args.vary, config=config, out_dir=out_dir,
                       base_seed=args.base_seed, device=args.device, progress=not args.quiet)


def cmd_train_seeds(args) -> int:
    from .seeds import summary_rows

    dataset = _load_data(args)
    runs = _train(args, dataset, Path(args.out))
    print(format_table(summary_rows(runs)))
    print(f"checkpoints in {args.out}")
    return 0


def cmd_report(args) -> int:
    from .config import load_config
    from .report import apply_quick, run_report

    overrides = {"report": {"name": args.name}} if args.name else {}
    if args.out:
        overrides.setdefault("report", {})["out_dir"] = args.out
    if args.runs:
        overrides.setdefault("report", {})["runs_dir"] = args.runs
    config = load_config(args.config, overrides)
    if args.quick:
        config = apply_quick(config)
    out = run_report(config, progress=not args.quiet)
    print(f"report written to {out / 'index.html'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stablesal", description=__doc__)
    parser.add_argument("--version", action="version", version=f"stablesal {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train-seeds", help="train K models that differ only in seed and/or data split")
    _add_data_arguments(train)
    _add_training_arguments(train)
    train.add_argument("--out", default="runs/seeds", help="checkpoint folder (re-runs resume here)")
    train.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=cmd_train_seeds)

    report = commands.add_parser("report", help="run the whole study and write the stability report")
    report.add_argument("--config", default=None, help="TOML configuration (see experiments/default.toml)")
    report.add_argument("--name", default=None, help="report name (folder under reports/)")
    report.add_argument("--out", default=None, help="parent folder of the report (default reports/)")
    report.add_argument("--runs", default=None, help="folder for checkpoints and cached study units (default runs/)")
    report.add_argument("--quick", action="store_true", help="a small, fast version of the study")
    report.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, TypeError) as error:
        # Bad input is the user's to fix: one clear line, not a traceback from deep inside.
        print(f"stablesal {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
