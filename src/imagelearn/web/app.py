"""The web app: :func:`create_app` returns the FastAPI application serving one index.

The app is thin: every route calls the retrieval API (:class:`imagelearn.retrieval.Index`,
:mod:`imagelearn.retrieval.runs`) and returns JSON, files or the page. Routes are grouped in
routers by area (:data:`ROUTERS`, one module each under :mod:`imagelearn.web.routers`); a
new area is one more module there and one more entry, and a new page of the front end is one
more module under ``static/js/pages/`` (see ``static/js/main.js``). The OpenAPI schema is
served at ``/api/openapi.json``.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from imagelearn import __version__
from imagelearn.core.errors import ImagelearnError, ParameterError
from imagelearn.web.security import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD_BYTES,
    LOOPBACK_NAMES,
    TOKEN_COOKIE,
    Guard,
    GuardMiddleware,
    UploadError,
    query_token,
)
from imagelearn.web.service import IndexService
from imagelearn.web.thumbnails import ThumbnailCache

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
#: The routers of the app, by module under :mod:`imagelearn.web.routers`.
ROUTERS = ("search", "images", "tags", "map", "admin", "studio", "review", "words")
#: Folder (inside the index directory) where images added through the app are stored.
UPLOADS_NAME = "uploads"


@dataclass(frozen=True)
class AppSettings:
    """How one app was configured (read by the routers through :func:`settings`).

    Attributes
    ----------
    index_dir : Path or None
        None: a studio-only server (``imagelearn serve --studio``).
    writable : bool
        Adding and removing images allowed.
    upload_dir : Path
        Where added images are stored (inside the index directory unless chosen).
    max_upload_bytes, max_pixels : int
        Limits of a request body and of an uploaded image.
    model, clusters : Path or None
        The classifier and clustering runs whose classes and clusters tag the images.
    auth : bool
        A token is required.
    """

    index_dir: Path | None
    writable: bool
    upload_dir: Path | None
    max_upload_bytes: int
    max_pixels: int
    model: Path | None
    clusters: Path | None
    auth: bool


def create_app(
    index_dir: str | os.PathLike | None,
    *,
    studio: str | os.PathLike | None = None,
    studio_out: str | os.PathLike | None = None,
    pixel_size: float | None = None,
    review: Sequence[str | os.PathLike] | None = None,
    model: str | os.PathLike | None = None,
    clusters: str | os.PathLike | None = None,
    writable: bool = False,
    token: str | None = None,
    allowed_hosts: Sequence[str] | None = LOOPBACK_NAMES,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    thumbnail_dir: str | os.PathLike | None = None,
    upload_dir: str | os.PathLike | None = None,
    workers: int = 1,
) -> FastAPI:
    """The web app serving the index at ``index_dir``.

    Parameters
    ----------
    index_dir : path-like or None
        An index built by ``imagelearn index build``; None serves the studio or the review only.
    studio : path-like, optional
        An image or a folder of images for the pixel classification studio
        (:mod:`imagelearn.web.studio`).
    studio_out : path-like, optional
        Where the studio saves (default ``runs/studio``; never inside the studio's folder).
    pixel_size : float, optional
        Ground sampling distance of the studio's images, metres per pixel.
    review : sequence of path-like, optional
        Run directories (or folders of runs) for model review (:mod:`imagelearn.web.review`;
        the visual words of BoF runs: :mod:`imagelearn.web.routers.words`).
    model : path-like, optional
        A classifier run (``bof train`` or ``classify train``): its classes tag the images.
    clusters : path-like, optional
        A clustering run (``cluster fit``): its cluster ids tag the images.
    writable : bool
        Allow adding and removing images (read-only by default: the index directory is then
        never written).
    token : str, optional
        Required on every request (see :mod:`imagelearn.web.security`); None: no token.
    allowed_hosts : sequence of str or None
        ``Host`` names answered; the loopback names by default (a server on another address
        passes None, and should then require a token).
    max_upload_bytes : int
        Largest request body.
    max_pixels : int
        Largest uploaded image (width x height).
    thumbnail_dir : path-like, optional
        Thumbnail cache (None: ``$IMAGELEARN_CACHE/thumbnails``).
    upload_dir : path-like, optional
        Where images added through the app are stored (None: ``INDEX/uploads``).
    workers : int
        Search threads.

    Raises
    ------
    BundleError
        ``index_dir`` is not an index, ``model`` not a classifier run, ``clusters`` not a
        clustering run, a ``review`` path neither a run nor a folder holding runs.
    """
    if index_dir is None and studio is None and not review:
        raise ParameterError("index", "give an index, a studio image or folder, runs to review")
    service = None
    if index_dir is not None:
        index_dir = Path(index_dir)
        upload_dir = Path(upload_dir) if upload_dir is not None else index_dir / UPLOADS_NAME
        service = IndexService(
            index_dir, upload_dir=upload_dir, model=model, clusters=clusters, workers=workers
        )
    studio_state = None
    if studio is not None:
        from imagelearn.web.studio import Studio

        studio_state = Studio(
            studio,
            studio_out,
            max_pixels=max_pixels,
            pixel_size=pixel_size,
            allow_inside_source=studio_out is not None,
        )
    review_runs = None
    if review:
        from imagelearn.web.review import RunShelf

        review_runs = RunShelf(review)
    app_settings = AppSettings(
        index_dir=index_dir,
        writable=writable,
        upload_dir=upload_dir if service is not None else None,
        max_upload_bytes=int(max_upload_bytes),
        max_pixels=int(max_pixels),
        model=Path(model) if model is not None else None,
        clusters=Path(clusters) if clusters is not None else None,
        auth=token is not None,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if service is not None:
            service.warm_up()
        yield
        if service is not None:
            service.close()
        if studio_state is not None:
            studio_state.close()

    app = FastAPI(
        title="imagelearn",
        version=__version__,
        description="Search a collection by example image or keyword, see why it matched, "
        "explore it.",
        openapi_url="/api/openapi.json",
        docs_url=None,  # FastAPI's documentation pages load scripts from a CDN
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.studio = studio_state
    app.state.review = review_runs
    app.state.settings = app_settings
    app.state.thumbnails = ThumbnailCache(thumbnail_dir)
    hosts = None if allowed_hosts is None else tuple(host.lower() for host in allowed_hosts)
    app.add_middleware(GuardMiddleware, guard=Guard(token, hosts, int(max_upload_bytes)))
    _add_error_handlers(app)
    for name in ROUTERS:
        app.include_router(importlib.import_module(f"imagelearn.web.routers.{name}").router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page(request: Request) -> Response:
        token_given = query_token(request.scope)
        if (
            token_given is not None
        ):  # the guard checked it: keep it in a cookie, drop it from the URL
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(
                TOKEN_COOKIE, token_given, httponly=True, samesite="strict", path="/"
            )
            return response
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    return app


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def _validation_message(error: RequestValidationError) -> str:
    """One line per invalid field: ``query.top: Input should be less than or equal to 200``."""
    parts = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem.get("loc", ()) if part != "body")
        parts.append(f"{where}: {problem.get('msg', 'invalid')}" if where else problem["msg"])
    return "; ".join(parts) or "invalid request"


def _add_error_handlers(app: FastAPI) -> None:
    """Every error becomes JSON ``{"detail": message}`` with a 4xx status; only a bug is a 500,
    and its trace goes to the log, never to the client."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(error))

    @app.exception_handler(HTTPException)
    async def http(request: Request, error: HTTPException) -> JSONResponse:
        detail: Any = error.detail
        return JSONResponse(
            {"detail": detail}, status_code=error.status_code, headers=error.headers
        )

    @app.exception_handler(UploadError)
    async def upload(request: Request, error: UploadError) -> JSONResponse:
        return _error(error.status, str(error))

    @app.exception_handler(ImagelearnError)
    async def user(request: Request, error: ImagelearnError) -> JSONResponse:
        return _error(422, str(error))

    @app.exception_handler(Exception)
    async def bug(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return _error(500, "internal error; the server's log has the details")


def settings(request: Request) -> AppSettings:
    """The settings of the app answering ``request``."""
    return request.app.state.settings


def service(request: Request) -> IndexService:
    """The index service of the app answering ``request`` (a 404 on a studio-only server)."""
    found = request.app.state.service
    if found is None:
        raise HTTPException(
            404, "this server serves no index (it was started with --studio or --review only)"
        )
    return found
