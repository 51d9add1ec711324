"""``imagelearn data check DIR``."""

from __future__ import annotations

import argparse

from imagelearn.cli.arguments import (
    add_engine,
    add_format,
    add_n_jobs,
    add_source,
    add_verbs,
    json_text,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    verbs = add_verbs(subparsers, "data", help="inspect image collections")
    check = verbs.add_parser("check", help="counts per class, unreadable files, duplicates, sizes")
    add_source(
        check, help="a folder (class sub-folders, split folders or flat) or a CSV of path,label"
    )
    add_format(check)
    add_n_jobs(check, help="parallel workers (default -1: one per core)")
    add_engine(check)
    check.set_defaults(handler=run_check)


def run_check(arguments: argparse.Namespace) -> int:
    from imagelearn.data.check import check_run

    result = check_run(arguments.source, arguments.n_jobs)
    if arguments.format == "json":
        print(
            json_text({name: report.as_dict() for name, report in result.reports.items()}), end=""
        )
    else:
        for name, report in result.reports.items():
            if len(result.reports) > 1:
                print(f"== {name}")
            print(report.format())
        print(f"cache: {result.cache.summary()}")
    return 0 if result.n_usable > 0 else 1
