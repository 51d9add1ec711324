"""The pixel classification studio (``imagelearn serve --studio``): images by id, tiles, classes,
samples, background training and clustering, overlays, areas, accuracy, saving.

Every route calls :class:`imagelearn.web.studio.Studio` (over :mod:`imagelearn.segment`), whose
refusals (:class:`~imagelearn.web.studio.StudioError`) carry their 4xx status; a server started
without ``--studio`` answers them with 404.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, HTTPException, Path, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from imagelearn.web.studio import MAX_CLASSES, TILE_SIDE, Studio, StudioImage, hex_color

router = APIRouter(prefix="/api/studio", tags=["studio"])

StudioImageId = Path(ge=0, le=2**31 - 1, description="id of an image of the studio")
LabelKind = Literal["train", "validation"]


def studio(request: Request) -> Studio:
    """The studio of the app, or a 404 when it was started without ``--studio``."""
    found = getattr(request.app.state, "studio", None)
    if found is None:
        raise HTTPException(
            404, "this server has no studio: start it with --studio IMAGE_OR_FOLDER"
        )
    return found


async def _image(request: Request, image_id: int) -> tuple[Studio, StudioImage]:
    owner = studio(request)
    return owner, await run_in_threadpool(owner.image, image_id)


class ClassIn(BaseModel):
    name: str = Field(max_length=40)
    color: str = Field(max_length=7, description="#RRGGBB")


class ClassesIn(BaseModel):
    classes: list[ClassIn] = Field(min_length=2, max_length=MAX_CLASSES)


class ClusterNamesIn(BaseModel):
    names: list[str] = Field(max_length=MAX_CLASSES, description="class of each cluster, '' none")


def _classes(owner: Studio) -> list[dict]:
    return [{"name": c.name, "color": hex_color(c.color)} for c in owner.classes]


@router.get("", summary="The studio: its images, classes and limits")
async def describe(request: Request) -> dict:
    owner = studio(request)
    return {
        "source": owner.source.name,
        "out": str(owner.out),
        "images": await run_in_threadpool(owner.describe_images),
        "classes": _classes(owner),
        "max_pixels": owner.max_pixels,
        "tile_size": TILE_SIDE,
        "pixel_size": owner.pixel_size,
    }


@router.put("/classes", summary="Replace the class list (names and colours)")
def set_classes(request: Request, body: ClassesIn) -> dict:
    owner = studio(request)
    owner.set_classes([(item.name, item.color) for item in body.classes])
    return {"classes": _classes(owner)}


@router.put("/pixel-size", summary="Set the ground sampling distance (metres per pixel)")
def set_pixel_size(
    request: Request,
    metres: Annotated[float | None, Query(gt=0, le=1e6, description="none: unknown")] = None,
) -> dict:
    studio(request).pixel_size = metres
    return {"pixel_size": metres}


@router.get("/images/{image_id}", summary="Open an image: size, pyramid, samples, last result")
async def open_image(request: Request, image_id: Annotated[int, StudioImageId]) -> dict:
    owner, image = await _image(request, image_id)
    return owner.describe_image(image)


@router.get(
    "/images/{image_id}/tiles/{level}/{column}/{row}",
    summary="One 256-pixel JPEG tile of the image at a pyramid level (0: full size)",
    response_class=Response,
)
async def tile(
    request: Request,
    image_id: Annotated[int, StudioImageId],
    level: Annotated[int, Path(ge=0, le=32)],
    column: Annotated[int, Path(ge=0, le=2**20)],
    row: Annotated[int, Path(ge=0, le=2**20)],
) -> Response:
    _, image = await _image(request, image_id)
    data = await run_in_threadpool(image.tile, level, column, row)
    return Response(
        data, media_type="image/jpeg", headers={"cache-control": "private, max-age=3600"}
    )


Coordinate = Annotated[int | None, Query(ge=0, le=2**31 - 1)]


async def _labels(
    request: Request, image_id: int, kind: str, file: UploadFile, at: tuple[int, int] | None
) -> dict:
    owner, image = await _image(request, image_id)
    data = await file.read()
    counts = await run_in_threadpool(owner.set_labels, image, kind, data, at)
    return {"kind": kind, "counts": counts}


def _corner(left: int | None, top: int | None) -> tuple[int, int] | None:
    if (left is None) != (top is None):
        raise HTTPException(422, "give both left and top (a window), or neither (the image)")
    return None if left is None else (left, top)


@router.put(
    "/images/{image_id}/samples",
    summary="The painted samples: a PNG of the image's size, or of a window at (left, top)",
)
async def put_samples(
    request: Request,
    image_id: Annotated[int, StudioImageId],
    file: Annotated[
        UploadFile, File(description="PNG: class colours (transparent/black: none) or labels 0..K")
    ],
    kind: Annotated[LabelKind, Query(description="training or validation samples")] = "train",
    left: Coordinate = None,
    top: Coordinate = None,
) -> dict:
    return await _labels(request, image_id, kind, file, _corner(left, top))


@router.get(
    "/images/{image_id}/samples",
    summary="The stored samples as a PNG of class colours (transparent: unlabelled)",
    response_class=Response,
)
async def get_samples(
    request: Request,
    image_id: Annotated[int, StudioImageId],
    kind: Annotated[LabelKind, Query()] = "train",
    left: Coordinate = None,
    top: Coordinate = None,
    width: Annotated[int | None, Query(ge=1, le=2**20)] = None,
    height: Annotated[int | None, Query(ge=1, le=2**20)] = None,
) -> Response:
    owner, image = await _image(request, image_id)
    corner = _corner(left, top)
    if (corner is None) != (width is None or height is None):
        raise HTTPException(422, "a window needs left, top, width and height")
    window = None if corner is None else (*corner, width, height)
    data = await run_in_threadpool(owner.labels_png, image, kind, window)
    return Response(data, media_type="image/png", headers={"cache-control": "no-store"})


@router.put("/images/{image_id}/reference", summary="A reference mask for the accuracy report")
async def put_reference(
    request: Request,
    image_id: Annotated[int, StudioImageId],
    file: Annotated[UploadFile, File(description="PNG: class colours or labels 0..K")],
) -> dict:
    return await _labels(request, image_id, "reference", file, None)


@router.post("/images/{image_id}/train", summary="Train on the samples (background job)")
async def train(
    request: Request,
    image_id: Annotated[int, StudioImageId],
    n_estimators: Annotated[int, Query(ge=1, le=500, description="trees of the forest")] = 30,
) -> JSONResponse:
    owner, image = await _image(request, image_id)
    job = owner.train(image, n_estimators)
    return JSONResponse(job.describe(), status_code=202)


@router.post("/images/{image_id}/apply", summary="Predict with a saved model (background)")
async def apply(
    request: Request,
    image_id: Annotated[int, StudioImageId],
    model: Annotated[
        str, Query(min_length=1, max_length=200, description="bundle under the output folder")
    ],
) -> JSONResponse:
    owner, image = await _image(request, image_id)
    job = await run_in_threadpool(owner.apply, image, model)
    return JSONResponse(job.describe(), status_code=202)


@router.post("/images/{image_id}/cluster", summary="k-means or ISODATA on the pixels (background)")
async def cluster(
    request: Request,
    image_id: Annotated[int, StudioImageId],
    method: Annotated[str, Query(max_length=20)] = "kmeans",
    n_clusters: Annotated[int, Query(ge=2, le=MAX_CLASSES)] = 5,
) -> JSONResponse:
    owner, image = await _image(request, image_id)
    job = owner.cluster(image, method, n_clusters)
    return JSONResponse(job.describe(), status_code=202)


@router.put("/images/{image_id}/cluster-names", summary="Name (or merge) the clusters as classes")
async def name_clusters(
    request: Request, image_id: Annotated[int, StudioImageId], body: ClusterNamesIn
) -> dict:
    owner, image = await _image(request, image_id)
    owner.name_clusters(image, body.names)
    return owner.describe_result(image)


@router.get("/jobs/{job_id}", summary="Progress of a training or clustering job")
def job(request: Request, job_id: Annotated[int, Path(ge=1, le=2**31 - 1)]) -> dict:
    return studio(request).job(job_id).describe()


@router.get("/images/{image_id}/result", summary="The class map's classes and areas")
async def result(request: Request, image_id: Annotated[int, StudioImageId]) -> dict:
    owner, image = await _image(request, image_id)
    described = await run_in_threadpool(owner.describe_result, image)
    if described is None:
        raise HTTPException(404, "no class map yet: train or cluster first")
    return described


@router.get(
    "/images/{image_id}/overlay",
    summary="RGBA PNG of the class map or of the classifier's uncertainty",
    response_class=Response,
)
async def overlay(
    request: Request,
    image_id: Annotated[int, StudioImageId],
    kind: Annotated[Literal["classes", "uncertainty"], Query()] = "classes",
    version: Annotated[
        int | None, Query(ge=0, description="ignored: lets the page bust caches")
    ] = None,
) -> Response:
    owner, image = await _image(request, image_id)
    data = await run_in_threadpool(owner.overlay, image, kind)
    return Response(data, media_type="image/png", headers={"cache-control": "no-store"})


@router.get(
    "/images/{image_id}/overlay-tiles/{level}/{column}/{row}",
    summary="One 256-pixel RGBA PNG tile of a map's class map or uncertainty (as the image's tiles)",
    response_class=Response,
)
async def overlay_tile(
    request: Request,
    image_id: Annotated[int, StudioImageId],
    level: Annotated[int, Path(ge=0, le=32)],
    column: Annotated[int, Path(ge=0, le=2**20)],
    row: Annotated[int, Path(ge=0, le=2**20)],
    kind: Annotated[Literal["classes", "uncertainty"], Query()] = "classes",
    version: Annotated[
        str | None, Query(max_length=40, description="ignored: lets the page bust caches")
    ] = None,
) -> Response:
    owner, image = await _image(request, image_id)
    data = await run_in_threadpool(owner.overlay_tile, image, kind, level, column, row)
    return Response(data, media_type="image/png", headers={"cache-control": "no-store"})


@router.get("/images/{image_id}/accuracy", summary="Accuracy report of the class map")
async def accuracy(
    request: Request,
    image_id: Annotated[int, StudioImageId],
    against: Annotated[Literal["reference", "validation"], Query()] = "reference",
) -> dict:
    owner, image = await _image(request, image_id)
    return await run_in_threadpool(owner.accuracy, image, against)


@router.post("/images/{image_id}/save", summary="Save samples, model, class map and report")
async def save(request: Request, image_id: Annotated[int, StudioImageId]) -> dict:
    owner, image = await _image(request, image_id)
    return await run_in_threadpool(owner.save, image)
