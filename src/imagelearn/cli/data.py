"""``imagelearn data check DIR``."""

from __future__ import annotations

import argparse

from imagelearn.cli.arguments import add_format, add_n_jobs, add_source, add_verbs, json_text


def register(subparsers: argparse._SubParsersAction) -> None:
    verbs = add_verbs(subparsers, "data", help="inspect image collections")
    check = verbs.add_parser("check", help="counts per class, unreadable files, duplicates, sizes")
    add_source(
        check, help="a folder (class sub-folders, split folders or flat) or a CSV of path,label"
    )
    add_format(check)
    add_n_jobs(check, help="parallel workers (default -1: one per core)")
    check.set_defaults(handler=run_check)


def run_check(arguments: argparse.Namespace) -> int:
    from pathlib import Path

    from imagelearn.data import check_collection
    from imagelearn.data.collection import SPLIT_NAMES

    source = Path(arguments.source)
    splits = (
        [source / name for name in SPLIT_NAMES if (source / name).is_dir()]
        if source.is_dir()
        else []
    )
    reports = {str(split.name): check_collection(split, arguments.n_jobs) for split in splits} or {
        str(source): check_collection(source, arguments.n_jobs)
    }
    if arguments.format == "json":
        print(json_text({name: report.as_dict() for name, report in reports.items()}), end="")
    else:
        for name, report in reports.items():
            if len(reports) > 1:
                print(f"== {name}")
            print(report.format())
    return 0 if any(report.n_usable > 0 for report in reports.values()) else 1
