"""``imagelearn transfer compare DATA``: transfer learning against training from scratch, measured."""

from __future__ import annotations

import argparse


def _fractions(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated fractions like 0.1,0.5,1, got {text!r}"
        ) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    transfer = subparsers.add_parser(
        "transfer", help="measure transfer learning against training from scratch"
    )
    verbs = transfer.add_subparsers(dest="verb", metavar="VERB", required=True)
    compare = verbs.add_parser(
        "compare", help="scratch vs finetune vs features at several training-set sizes"
    )
    compare.add_argument("source", help="class folders, train/val folders, or a CSV of path,label")
    compare.add_argument(
        "--out", default="runs/transfer", help="folder for transfer.json and transfer.png"
    )
    compare.add_argument(
        "--fractions",
        type=_fractions,
        default=[0.1, 0.25, 0.5, 1.0],
        help="training-set fractions (default 0.1,0.25,0.5,1)",
    )
    compare.add_argument(
        "--modes", default="scratch,finetune,features", help="comma-separated modes"
    )
    compare.add_argument("--epochs", type=int, default=5, help="epochs per arm, the same for all")
    compare.add_argument("--image-size", type=int, default=96, help="network input side, pixels")
    compare.add_argument("--backbone", default="mobilenet_v2")
    compare.add_argument(
        "--test-size", type=float, default=0.3, help="held-out fraction when no split is given"
    )
    compare.add_argument("--seed", type=int, default=0)
    compare.add_argument(
        "--cache-dir", default=None, help="embedding cache (default ~/.cache/imagelearn/embeddings)"
    )
    compare.set_defaults(handler=run_compare)


def run_compare(arguments: argparse.Namespace) -> int:
    from imagelearn.classify.transfer import compare_transfer

    report = compare_transfer(
        arguments.source,
        fractions=arguments.fractions,
        modes=[mode.strip() for mode in arguments.modes.split(",") if mode.strip()],
        epochs=arguments.epochs,
        image_size=arguments.image_size,
        backbone=arguments.backbone,
        test_size=arguments.test_size,
        seed=arguments.seed,
        out_dir=arguments.out,
        cache_dir=arguments.cache_dir,
    )
    print(report.table())
    print(f"\n{report.json_path}\n{report.plot_path}")
    return 0
