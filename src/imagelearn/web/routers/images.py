"""The collection: the paged list with filters, one image's metadata, its thumbnail and file.

Images are served by catalogue id only: the path comes from the catalogue, never from the
client, and the file's type is sniffed from its bytes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from imagelearn.core.images import ImageReadError
from imagelearn.web.app import service, settings
from imagelearn.web.routers.common import ImageId, record_of
from imagelearn.web.thumbnails import BROWSER_FORMATS, RENDITION_SIDE, THUMBNAIL_SIDE, sniff_format

router = APIRouter(prefix="/api", tags=["images"])

#: Most images one page of the list holds.
MAX_PAGE = 500
#: Cache lifetime of thumbnails and files (ids are never reused, content never changes).
CACHE_CONTROL = "private, max-age=86400"


def parse_ids(text: str | None) -> list[int] | None:
    """``"3,5,8"`` as ids (at most :data:`MAX_PAGE`), or None for no text.

    Raises
    ------
    HTTPException
        422: not a comma-separated list of non-negative integers, or too long.
    """
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if len(parts) > MAX_PAGE or not all(part.isdigit() for part in parts):
        raise HTTPException(
            422, f"ids: expected at most {MAX_PAGE} comma-separated non-negative integers"
        )
    return [int(part) for part in parts]


@router.get("/info", tags=["info"], summary="What this server serves")
def info(request: Request) -> dict:
    """Image count, search modes, tag sources, limits and whether adding is allowed."""
    collection = service(request).collection
    limits = settings(request)
    return {
        "name": limits.index_dir.name,
        "images": len(collection.records),
        "generation": collection.generation,
        "modes": list(collection.modes),
        "default_mode": collection.default_mode,
        "writable": limits.writable,
        "auth": limits.auth,
        "tag_sources": collection.tag_sources(),
        "max_upload_bytes": limits.max_upload_bytes,
        "max_pixels": limits.max_pixels,
    }


@router.get("/images", summary="A page of the collection, filtered")
def list_images(
    request: Request,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 48,
    folder: Annotated[str | None, Query(description="this folder and those below it")] = None,
    tag: Annotated[str | None, Query(description="images with this tag (exact name)")] = None,
    cluster: Annotated[str | None, Query(description="images of this cluster")] = None,
    ids: Annotated[str | None, Query(description="only these ids (comma-separated)")] = None,
) -> dict:
    """Images in id order (or in the order of ``ids``), with the filters applied."""
    collection = service(request).collection
    chosen = collection.select(
        folder=folder or None, tag=tag or None, cluster=cluster or None, ids=parse_ids(ids)
    )
    page = chosen[offset : offset + limit]
    tags = collection.tags_of(page)
    return {
        "total": len(chosen),
        "offset": offset,
        "limit": limit,
        "items": [{**collection.describe(i), "tags": tags[i]} for i in page],
    }


@router.get("/folders", summary="Folders of the collection")
def folders(request: Request) -> dict:
    """Images per folder (paths relative to the collection's root)."""
    return {"folders": service(request).collection.folders()}


@router.get("/images/{image_id}", summary="One image's metadata and tags")
def image(request: Request, image_id: Annotated[int, ImageId]) -> dict:
    collection = service(request).collection
    record = record_of(collection, image_id)
    return {
        **collection.describe(image_id),
        "bytes": record.bytes,
        "n_features": record.n_features,
        "added": record.added,
        "sha256": record.sha256,
        "tags": collection.tags_of([image_id])[image_id],
    }


@router.get(
    "/images/{image_id}/thumbnail",
    summary="A JPEG thumbnail (256 pixels on the longer side)",
    response_class=FileResponse,
)
async def thumbnail(request: Request, image_id: Annotated[int, ImageId]) -> FileResponse:
    record = record_of(service(request).collection, image_id)
    path = await run_in_threadpool(_cached, request, record, THUMBNAIL_SIDE)
    return FileResponse(path, media_type="image/jpeg", headers={"cache-control": CACHE_CONTROL})


@router.get(
    "/images/{image_id}/file",
    summary="The image itself (a JPEG rendition for formats browsers do not show)",
    response_class=FileResponse,
)
async def image_file(request: Request, image_id: Annotated[int, ImageId]) -> FileResponse:
    record = record_of(service(request).collection, image_id)
    try:
        kind = await run_in_threadpool(sniff_format, record.path)
    except ImageReadError as error:
        raise HTTPException(404, f"image {image_id}: {error.reason}") from None
    headers = {"cache-control": CACHE_CONTROL}
    if kind in BROWSER_FORMATS:
        return FileResponse(record.path, media_type=BROWSER_FORMATS[kind], headers=headers)
    path = await run_in_threadpool(_cached, request, record, RENDITION_SIDE)
    return FileResponse(path, media_type="image/jpeg", headers=headers)


def _cached(request: Request, record, side: int):
    try:
        return request.app.state.thumbnails.get(record.path, record.sha256, side)
    except ImageReadError as error:
        raise HTTPException(404, f"image {record.id}: {error.reason}") from None
