"""Keywords: images by tag prefix (ranked by score), and the tags with their image counts."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from imagelearn.web.app import service

router = APIRouter(prefix="/api/tags", tags=["tags"])

#: Most images or tags one answer lists.
MAX_TOP = 500

Source = Literal["imagenet", "model", "cluster"]


@router.get("", summary="Tags and how many images carry each")
def tag_counts(
    request: Request,
    prefix: Annotated[str, Query(max_length=100, description="only tags starting so")] = "",
    top: Annotated[int, Query(ge=1, le=MAX_TOP)] = 50,
    source: Annotated[Source | None, Query(description="only tags of this source")] = None,
) -> dict:
    """Tags whose name (or a word of it) starts with ``prefix`` (any case), most frequent
    first."""
    return {"tags": service(request).collection.tag_counts(prefix, top, source)}


@router.get("/search", summary="Images by keyword")
def tag_search(
    request: Request,
    q: Annotated[str, Query(min_length=1, max_length=100, description="keyword")],
    top: Annotated[int, Query(ge=1, le=MAX_TOP)] = 100,
) -> dict:
    """Images with a tag matching ``q`` (each word the beginning of a word of the tag or of
    its synonyms: "tab cat" finds "tabby"), best tag score first."""
    collection = service(request).collection
    found = collection.search_tags(q, top)
    return {
        "query": q,
        "results": [{**collection.describe(i), "tag": tag} for i, tag in found],
    }
