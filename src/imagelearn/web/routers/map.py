"""Exploring: the 2-D map of the images' embeddings, and the groups of near-duplicates."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from imagelearn.retrieval.duplicates import NEAR_DUPLICATE_INLIERS
from imagelearn.web.app import service

router = APIRouter(prefix="/api", tags=["explore"])


@router.get("/map", summary="2-D coordinates of every image (in [0, 1])")
async def image_map(request: Request) -> dict:
    """``ids``, ``x`` and ``y`` (same length): images placed by their embeddings' similarity."""
    return await service(request).search(lambda index, collection: collection.map_json(index))


@router.get("/duplicates", summary="Groups of near-duplicate images")
async def duplicates(
    request: Request,
    threshold: Annotated[
        float, Query(gt=0, le=1, description="share of the smaller image's features verified")
    ] = NEAR_DUPLICATE_INLIERS,
) -> dict:
    """Groups (at least two images each, largest first) of copies of one picture: resized,
    re-encoded or cropped, at least ``threshold`` of the smaller one's local features verified
    by a change of scale and position."""
    groups = await service(request).search(
        lambda index, collection: collection.duplicate_groups(index, threshold)
    )
    collection = service(request).collection
    return {
        "threshold": threshold,
        "groups": [
            [collection.describe(i) for i in group if i in collection.records] for group in groups
        ],
    }
