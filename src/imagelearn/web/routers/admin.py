"""Adding and removing images: only when the server was started writable (403 otherwise).

Added images are uploads: their bytes are checked as every upload is, stored under the
server's upload folder with a name of the app's choosing (content hash and a tidied name,
the suffix of the sniffed format), then indexed by :func:`imagelearn.retrieval.runs.add_run`
while searches go on. Removal is by catalogue id; the file stays on disk.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool

from imagelearn.retrieval import IndexBusyError
from imagelearn.retrieval.runs import add_run, remove_run
from imagelearn.web.app import service, settings
from imagelearn.web.routers.common import ImageId, record_of
from imagelearn.web.security import Upload, read_upload, safe_file_name

router = APIRouter(prefix="/api/images", tags=["admin"])

#: Most files one add request takes.
MAX_FILES = 100


def _check_writable(request: Request) -> None:
    if not settings(request).writable:
        raise HTTPException(
            403, "this server is read-only; start it with --writable to add or remove images"
        )


async def _write(request: Request, work):
    """``work()`` on the service's writer thread; another process writing is a 409."""
    try:
        return await service(request).write(work)
    except IndexBusyError:
        raise HTTPException(
            409, "another process is writing to this index; try again when it ends"
        ) from None


def store(upload: Upload, folder: Path) -> Path:
    """Write an upload into ``folder`` under a name of the app's choosing (atomic; a file of
    the same content and name is kept)."""
    digest = hashlib.sha256(upload.data).hexdigest()
    path = folder / safe_file_name(upload, digest)
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
        with os.fdopen(handle, "wb") as stream:
            stream.write(upload.data)
        os.replace(temporary, path)
    return path


@router.post("", summary="Add uploaded images to the index (writable servers only)")
async def add(
    request: Request,
    files: Annotated[list[UploadFile], File(description="image files")],
) -> dict:
    _check_writable(request)
    if len(files) > MAX_FILES:
        raise HTTPException(413, f"at most {MAX_FILES} files per request")
    limits = settings(request)
    uploads = [
        await run_in_threadpool(
            read_upload, await f.read(), f.filename or "upload", limits.max_pixels
        )
        for f in files
    ]
    paths = [await run_in_threadpool(store, upload, limits.upload_dir) for upload in uploads]
    index_dir = limits.index_dir
    result = await _write(request, lambda: add_run(index_dir, [str(p) for p in paths], n_jobs=1))
    collection = service(request).collection
    by_path = {record.path: image_id for image_id, record in collection.records.items()}
    report = result.report
    names = {str(path): upload.name for path, upload in zip(paths, uploads, strict=True)}
    return {
        "added": [collection.describe(by_path[p]) for p in report.added if p in by_path],
        "duplicates": [
            {"name": names.get(p, Path(p).name), "of": collection.display_path(by_path[other])}
            if other in by_path
            else {"name": names.get(p, Path(p).name), "of": None}
            for p, other in report.duplicates
        ],
        "skipped": [{"name": names.get(p, Path(p).name), "reason": r} for p, r in report.skipped],
        "images": len(collection.records),
    }


@router.delete("/{image_id}", summary="Remove an image from the index (writable servers only)")
async def remove(request: Request, image_id: Annotated[int, ImageId]) -> dict:
    _check_writable(request)
    record = record_of(service(request).collection, image_id)
    index_dir = settings(request).index_dir
    await _write(request, lambda: remove_run(index_dir, [record.path]))
    return {"removed": image_id, "images": len(service(request).collection.records)}
