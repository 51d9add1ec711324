"""Keywords: images by tag prefix (ranked by score), and the tags with their image counts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from imagelearn.web.app import service

router = APIRouter(prefix="/api/tags", tags=["tags"])

#: Most images or tags one answer lists.
MAX_TOP = 500


@router.get("", summary="Tags and how many images carry each")
def tag_counts(
    request: Request,
    prefix: Annotated[str, Query(max_length=100, description="only tags starting so")] = "",
    top: Annotated[int, Query(ge=1, le=MAX_TOP)] = 50,
) -> dict:
    """Tags whose name starts with ``prefix`` (case-insensitive), most frequent first."""
    return {"tags": service(request).collection.tag_counts(prefix, top)}


@router.get("/search", summary="Images by keyword")
def tag_search(
    request: Request,
    q: Annotated[str, Query(min_length=1, max_length=100, description="a tag prefix")],
    top: Annotated[int, Query(ge=1, le=MAX_TOP)] = 100,
) -> dict:
    """Images with a tag starting with ``q``, best tag score first."""
    collection = service(request).collection
    found = collection.search_tags(q, top)
    return {
        "query": q,
        "results": [{**collection.describe(i), "tag": tag} for i, tag in found],
    }
