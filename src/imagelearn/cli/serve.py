"""``imagelearn serve INDEX``: the web app over an index (search, match view, browse, map)."""

from __future__ import annotations

import argparse

#: :data:`imagelearn.web.server.DEFAULT_HOST` and ``DEFAULT_PORT``, copied: importing the web
#: package imports FastAPI, which ``--help`` must not wait for.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="the web app: search by image or keyword, see why it matched, explore",
        description="Serve the web app over an index; open the URL it prints.",
    )
    serve.add_argument("index", help="index directory (from 'imagelearn index build')")
    serve.add_argument("--model", help="a classifier run whose classes tag the images")
    serve.add_argument("--clusters", help="a clustering run whose cluster ids tag the images")
    serve.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to listen on; another than the loopback requires a token (printed)",
    )
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (0: a free one)")
    serve.add_argument(
        "--writable", action="store_true", help="allow adding and removing images in the page"
    )
    serve.add_argument(
        "--no-auth",
        action="store_true",
        help="no token even beyond the loopback: anyone who can reach the port can use it",
    )
    serve.add_argument("--workers", type=int, default=1, help="search threads")
    serve.set_defaults(handler=run_serve)


def run_serve(arguments: argparse.Namespace) -> int:
    from imagelearn.web.server import serve

    serve(
        arguments.index,
        host=arguments.host,
        port=arguments.port,
        no_auth=arguments.no_auth,
        model=arguments.model,
        clusters=arguments.clusters,
        writable=arguments.writable,
        workers=arguments.workers,
        announce=lambda line: print(line, flush=True),
    )
    return 0
