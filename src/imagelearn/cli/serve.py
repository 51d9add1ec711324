"""``imagelearn serve INDEX``: the web app over an index (search, match view, browse, map);
``--studio IMAGE_OR_FOLDER`` adds the pixel classification studio (and opens into it),
``--review RUN_DIR...`` the review of trained models and clusterings."""

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
    serve.add_argument(
        "index",
        nargs="?",
        help="index directory (from 'imagelearn index build'); optional with --studio, --review",
    )
    serve.add_argument(
        "--studio",
        metavar="IMAGE_OR_FOLDER",
        help="pixel classification studio on this image or folder of images (opens into it)",
    )
    serve.add_argument(
        "--studio-out",
        metavar="DIR",
        help="where the studio saves samples, models, class maps (default: runs/studio)",
    )
    serve.add_argument(
        "--pixel-size",
        type=float,
        help="studio images: metres per pixel (areas in m²); default: a GeoTIFF's own pixel size",
    )
    serve.add_argument(
        "--review",
        nargs="+",
        metavar="RUN_DIR",
        help="review these runs (bof train, classify train, transfer compare, cluster fit) or "
        "the runs in these folders: metrics, confusion matrix, mistakes, curves, clusters",
    )
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
    from imagelearn.core.errors import ParameterError
    from imagelearn.web.server import serve

    if arguments.index is None and arguments.studio is None and arguments.review is None:
        raise ParameterError(
            "index", "give an index directory, --studio IMAGE_OR_FOLDER, --review RUN_DIR, or some"
        )
    studio = {}
    if arguments.studio is not None:
        studio = {
            "studio": arguments.studio,
            "studio_out": arguments.studio_out,
            "pixel_size": arguments.pixel_size,
        }

    serve(
        arguments.index,
        host=arguments.host,
        port=arguments.port,
        no_auth=arguments.no_auth,
        model=arguments.model,
        clusters=arguments.clusters,
        writable=arguments.writable,
        workers=arguments.workers,
        review=arguments.review,
        announce=lambda line: print(line, flush=True),
        **studio,
    )
    return 0
