"""Search by an uploaded image or by a catalogue id; each result says why it matched.

A result carries the matched image's id, display path and size, the ranking score, the RANSAC
inliers, the homography (query pixels -> match pixels) and the inlier correspondences, so the
page draws the match view from the result alone.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool

from imagelearn.core.errors import ParameterError
from imagelearn.retrieval import Index, SearchResult
from imagelearn.web.app import service, settings
from imagelearn.web.collection import Collection
from imagelearn.web.routers.common import ImageId, record_of
from imagelearn.web.security import read_upload

router = APIRouter(prefix="/api/search", tags=["search"])

#: Most results one search returns.
MAX_TOP = 200
#: Results searched before a keyword filter keeps those whose tags match.
FILTERED_DEPTH = 200
#: Decimals of the correspondences' pixel coordinates.
POINT_DECIMALS = 1

Mode = Literal["local", "global", "hybrid"]


def parse_roi(text: str | None, width: int, height: int) -> tuple[int, int, int, int] | None:
    """``"x,y,w,h"`` (query pixels) clipped to the image, or None for no text.

    Raises
    ------
    HTTPException
        422: not four integers, an empty box, or a box outside the image.
    """
    if text is None or not text.strip():
        return None
    try:
        x, y, w, h = (round(float(part)) for part in text.split(","))
    except (ValueError, OverflowError):  # not four numbers, NaN, infinity
        raise HTTPException(422, f"roi: expected x,y,w,h in pixels, got {text!r}") from None
    left, top = max(0, x), max(0, y)
    right, bottom = min(width, x + w), min(height, y + h)
    if w <= 0 or h <= 0 or right - left < 8 or bottom - top < 8:
        raise HTTPException(
            422,
            f"roi: the box {x},{y},{w},{h} leaves less than 8x8 pixels of the {width}x{height} query",
        )
    return left, top, right - left, bottom - top


def _points(points: np.ndarray) -> list[list[float]]:
    return np.round(np.asarray(points, dtype=np.float64), POINT_DECIMALS).tolist()


def result_json(result: SearchResult, collection: Collection, top: int, keep=None) -> list[dict]:
    """The matches of ``result`` in ``collection`` (those ``keep`` accepts, at most ``top``)."""
    rows: list[dict[str, Any]] = []
    for match in result.matches:
        if match.image_id not in collection.records or (keep is not None and not keep(match)):
            continue
        verification = match.verification
        homography = match.homography
        rows.append(
            {
                **collection.describe(match.image_id),
                "score": round(float(match.score), 6),
                "inliers": int(match.inliers),
                "homography": None if homography is None else np.round(homography, 8).tolist(),
                "query_points": [] if verification is None else _points(verification.query_points),
                "database_points": []
                if verification is None
                else _points(verification.database_points),
            }
        )
        if len(rows) == top:
            break
    return rows


def _keyword_filter(collection: Collection, keyword: str | None, result: SearchResult):
    """The filter keeping the matches with a tag matching ``keyword`` (None: no filter)."""
    if keyword is None or not keyword.strip():
        return None
    matching = collection.matching(keyword, [match.image_id for match in result.matches])
    return lambda match: match.image_id in matching


def _search_options(mode, verify, expand) -> dict[str, Any]:
    return {"mode": mode, "verify": verify, "expand": expand}


def _answer(result: SearchResult, collection: Collection, top: int, keyword, query) -> dict:
    keep = _keyword_filter(collection, keyword, result)
    return {
        "query": query,
        "mode": result.mode,
        "timings": result.timings,
        "keyword": keyword or None,
        "results": result_json(result, collection, top, keep),
    }


@router.post("", summary="Search by an uploaded image")
async def search_upload(
    request: Request,
    file: Annotated[UploadFile, File(description="the query image (any common format)")],
    mode: Annotated[Mode | None, Form(description="default: hybrid when available")] = None,
    verify: Annotated[bool, Form(description="re-rank by RANSAC inliers")] = True,
    expand: Annotated[bool, Form(description="average query expansion")] = False,
    top: Annotated[int, Form(ge=1, le=MAX_TOP)] = 20,
    roi: Annotated[
        str | None, Form(description="x,y,w,h in query pixels: search this region only")
    ] = None,
    keyword: Annotated[
        str | None, Form(description="keep results with a tag of this prefix")
    ] = None,
) -> dict:
    """Rank the indexed images against an uploaded photo (multipart form)."""
    limits = settings(request)
    upload = await run_in_threadpool(
        read_upload, await file.read(), file.filename or "upload", limits.max_pixels
    )
    height, width = upload.pixels.shape[:2]
    box = parse_roi(roi, width, height)
    depth = FILTERED_DEPTH if keyword else top

    def search(index: Index, collection: Collection) -> dict:
        try:
            result = index.search(
                upload.pixels, top=depth, roi=box, **_search_options(mode, verify, expand)
            )
        except (ParameterError, ValueError) as error:
            raise HTTPException(422, str(error).replace("<array>", upload.name)) from None
        query = {"name": upload.name, "width": width, "height": height, "roi": box}
        return _answer(result, collection, top, keyword, query)

    return await service(request).search(search)


@router.get("/{image_id}", summary="Search by an indexed image")
async def search_id(
    request: Request,
    image_id: Annotated[int, ImageId],
    mode: Annotated[Mode | None, Query(description="default: hybrid when available")] = None,
    verify: bool = True,
    expand: bool = False,
    top: Annotated[int, Query(ge=1, le=MAX_TOP)] = 20,
    keyword: Annotated[
        str | None, Query(description="keep results with a tag of this prefix")
    ] = None,
) -> dict:
    """Rank the indexed images against the indexed image ``image_id`` (nothing is extracted)."""
    depth = FILTERED_DEPTH if keyword else top

    def search(index: Index, collection: Collection) -> dict:
        record = record_of(collection, image_id)
        try:
            result = index.search_id(image_id, top=depth, **_search_options(mode, verify, expand))
        except ParameterError as error:
            if error.parameter == "image_id":
                raise HTTPException(404, f"no indexed image has id {image_id}") from None
            raise HTTPException(422, str(error)) from None
        query = {**collection.describe(image_id), "width": record.width, "height": record.height}
        return _answer(result, collection, top, keyword, query)

    return await service(request).search(search)
