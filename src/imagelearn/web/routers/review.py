"""Model review (``imagelearn serve --review RUN_DIR...``): the runs, one run's metrics, confusion
matrix, misclassified images, learning curves, clusters and map, and the thumbnails of the
images a run lists.

Runs are named by their place below a directory the server was given and images by their
number in the run (:mod:`imagelearn.web.review`); a server started without ``--review``
answers these routes with 404.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from imagelearn.core.images import ImageReadError
from imagelearn.web.review import Review, ReviewError, RunShelf
from imagelearn.web.thumbnails import THUMBNAIL_SIDE

router = APIRouter(prefix="/api/review", tags=["review"])

RunName = Query(min_length=1, max_length=400, description="a run, as GET /api/review/runs names it")


def shelf(request: Request) -> RunShelf:
    """The runs of the app, or a 404 when it was started without ``--review``."""
    found = getattr(request.app.state, "review", None)
    if found is None:
        raise HTTPException(404, "this server reviews no runs: start it with --review RUN_DIR")
    return found


async def _open(request: Request, run: str) -> Review:
    return await run_in_threadpool(shelf(request).open, run)


@router.get("/runs", summary="The runs this server reviews: name and kind")
async def runs(request: Request) -> dict:
    return {"runs": await run_in_threadpool(shelf(request).runs)}


@router.get("/run", summary="One run: metrics, confusion matrix, misclassified, curves, clusters")
async def run(request: Request, run: Annotated[str, RunName]) -> dict:
    return (await _open(request, run)).data


@router.get("/cell", summary="The images of one cell of the confusion matrix")
async def cell(
    request: Request,
    run: Annotated[str, RunName],
    true: Annotated[str, Query(max_length=200, description="true class")],
    predicted: Annotated[str, Query(max_length=200, description="predicted class")],
) -> dict:
    return (await _open(request, run)).cell(true, predicted)


@router.get("/cluster", summary="The images of one cluster, closest to its centre first")
async def cluster(
    request: Request,
    run: Annotated[str, RunName],
    cluster: Annotated[int, Query(ge=-1, le=2**31 - 1, description="-1: HDBSCAN noise")],
) -> dict:
    return (await _open(request, run)).cluster(cluster)


@router.get(
    "/thumbnail",
    summary="A JPEG thumbnail of an image the run lists (256 pixels on the longer side)",
    response_class=FileResponse,
)
async def thumbnail(
    request: Request,
    run: Annotated[str, RunName],
    image: Annotated[int, Query(ge=0, le=2**31 - 1, description="number of the image in the run")],
) -> FileResponse:
    runs = shelf(request)
    path = (await run_in_threadpool(runs.open, run)).image_path(image)
    thumbnails = request.app.state.thumbnails

    def cached():
        try:
            return thumbnails.get(path, runs.digest(path), THUMBNAIL_SIDE)
        except (ImageReadError, OSError) as error:
            reason = getattr(error, "reason", None) or error.strerror or str(error)
            raise ReviewError(404, f"{run}: image {image} ({path.name}): {reason}") from None

    found = await run_in_threadpool(cached)
    return FileResponse(
        found, media_type="image/jpeg", headers={"cache-control": "private, max-age=3600"}
    )
