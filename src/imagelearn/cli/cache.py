"""``imagelearn cache info|clear``: what the on-disk caches hold, and emptying them."""

from __future__ import annotations

import argparse

from imagelearn.cli.arguments import add_format, add_verbs, json_text
from imagelearn.core.cache import CACHE_KINDS


def register(subparsers: argparse._SubParsersAction) -> None:
    verbs = add_verbs(
        subparsers,
        "cache",
        help="the on-disk caches ($IMAGELEARN_CACHE, default ~/.cache/imagelearn)",
    )
    info = verbs.add_parser("info", help="location, size cap, and size and entries of each kind")
    add_format(info)
    info.set_defaults(handler=run_info)
    clear = verbs.add_parser("clear", help="delete cache entries (all of them by default)")
    clear.add_argument(
        "--older-than",
        type=float,
        metavar="DAYS",
        help="only entries not used for this many days (default: every entry)",
    )
    clear.add_argument(
        "--kind",
        dest="kinds",
        action="append",
        choices=CACHE_KINDS,
        help="only this kind; repeat for several (default: every kind)",
    )
    clear.set_defaults(handler=run_clear)


def run_info(arguments: argparse.Namespace) -> int:
    from imagelearn.core.cache import cache_info

    info = cache_info()
    if arguments.format == "json":
        print(json_text(info.as_dict()), end="")
    else:
        print(info.format())
    return 0


def run_clear(arguments: argparse.Namespace) -> int:
    from imagelearn.core.cache import cache_home, clear_cache, format_size

    freed = clear_cache(older_than=arguments.older_than, kinds=arguments.kinds)
    print(f"freed {format_size(freed)} in {cache_home()}")
    return 0
