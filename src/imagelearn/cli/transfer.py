"""``imagelearn transfer compare DATA``: transfer learning against training from scratch, measured."""

from __future__ import annotations

import argparse

from imagelearn.cli.arguments import (
    add_backbone_options,
    add_cache_dir,
    add_output_dir,
    add_overwrite,
    add_source,
    add_split_options,
    add_verbs,
    comma_separated,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    verbs = add_verbs(
        subparsers, "transfer", help="measure transfer learning against training from scratch"
    )
    compare = verbs.add_parser(
        "compare", help="scratch vs finetune vs features at several training-set sizes"
    )
    add_source(compare)
    add_output_dir(
        compare,
        "folder for transfer.json and transfer.png (default: %(default)s)",
        default="runs/transfer",
    )
    add_overwrite(compare, "comparison")
    compare.add_argument(
        "--fractions",
        type=comma_separated(float, "fractions like 0.1,0.5,1"),
        default=[0.1, 0.25, 0.5, 1.0],
        help="training-set fractions (default: 0.1,0.25,0.5,1)",
    )
    compare.add_argument(
        "--modes",
        type=comma_separated(str.strip, "modes"),
        default=["scratch", "finetune", "features"],
        help="modes to compare (default: scratch,finetune,features)",
    )
    compare.add_argument(
        "--epochs",
        type=int,
        default=5,
        help="epochs per arm, the same for all (default: %(default)s)",
    )
    add_backbone_options(compare, image_size=96)
    add_split_options(compare)
    add_cache_dir(compare)
    compare.set_defaults(handler=run_compare)


def run_compare(arguments: argparse.Namespace) -> int:
    from imagelearn.classify.runs import compare_transfer

    report = compare_transfer(
        arguments.source,
        fractions=arguments.fractions,
        modes=arguments.modes,
        epochs=arguments.epochs,
        image_size=arguments.image_size,
        backbone=arguments.backbone,
        test_size=arguments.test_size,
        random_state=arguments.random_state,
        out=arguments.out,
        cache_dir=arguments.cache_dir,
        overwrite=arguments.overwrite,
    )
    print(report.table())
    print(f"\n{report.json_path}\n{report.plot_path}")
    return 0
