"""The visual words of a BoF run (``imagelearn serve --review RUN_DIR``): its channels, the words
its SVM weighs most, a word's montage of patches, and one image's histogram and strongest words.

Only the runs the server reviews are served (:func:`allowed_bof_run`): named, guarded and read
by the review's :class:`~imagelearn.web.review.RunShelf` (plain names below a directory given
to ``--review``, links followed must stay below it). The images are those the run lists, its
held-out images, by their number on the review page: no path from a client reaches the disk.
A word's patches are looked for in the first :data:`SAMPLE_IMAGES` of them, computed once per
run and channel and kept (:data:`KEPT_PASSES`).
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from PIL import Image

from imagelearn.core.errors import ImagelearnError
from imagelearn.web.review import Review
from imagelearn.web.routers.review import shelf

if TYPE_CHECKING:  # the BoF model imports scikit-learn: only once a run's words are asked for
    from imagelearn.bof.inspection import ImageWords, WordOccurrences
    from imagelearn.bof.recognition import BofClassifier

router = APIRouter(prefix="/api/words", tags=["words"])

#: Images of a run in which a word's patches are looked for.
SAMPLE_IMAGES = 48
#: Patches kept per word (a montage shows them all).
PER_WORD = 24
#: Passes (run, channel) kept in memory.
KEPT_PASSES = 4
#: Cache lifetime of the PNGs (a run's files do not change while it is served).
CACHE_CONTROL = "private, max-age=3600"

RunName = Query(min_length=1, max_length=400, description="a run, as GET /api/words/runs names it")
Channel = Query(min_length=1, max_length=64, description="channel index or detector name")


def allowed_bof_run(request: Request, run: str) -> Review:
    """The BoF run ``run`` among those the server reviews, read by its shelf.

    Raises
    ------
    HTTPException
        404: the server reviews no runs, or no such run; 403: a name that is not plain names
        below a reviewed directory or that leads out of it; 422: not a run, or a run of
        another kind than ``bof`` (``bof train``).
    """
    review = shelf(request).open(run)
    if review.kind != "bof":
        raise HTTPException(422, f"{run} is a {review.kind} run, not a BoF run ('bof train')")
    return review


@dataclass(frozen=True)
class _Run:
    """A BoF run read: its review (name, images) and its model."""

    review: Review
    model: BofClassifier

    @property
    def images(self) -> tuple[str, ...]:
        return self.review.images

    def image(self, number: int) -> str:
        """The path of image ``number`` of the run (404 for a number it does not list)."""
        return str(self.review.image_path(number))


class _Passes:
    """The models read and their word passes, least recently used dropped first (one per app)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: OrderedDict[Path, _Run] = OrderedDict()
        self.passes: OrderedDict[tuple[Path, int], WordOccurrences] = OrderedDict()

    def run(self, review: Review) -> _Run:
        from imagelearn.bof.recognition import BofClassifier

        with self.lock:
            found = self.runs.get(review.path)
            if found is None or found.review is not review:  # new, or its files changed
                found = _Run(review, BofClassifier.load(review.path))
                self.runs[review.path] = found
                self.passes = OrderedDict(
                    (key, value) for key, value in self.passes.items() if key[0] != review.path
                )
            self.runs.move_to_end(review.path)
            while len(self.runs) > KEPT_PASSES:
                self.runs.popitem(last=False)
            return found

    def occurrences(self, run: _Run, channel: int) -> WordOccurrences:
        from imagelearn.bof.inspection import word_occurrences

        with self.lock:  # one pass at a time: the machine's cores are the workers'
            key = (run.review.path, channel)
            if key not in self.passes:
                paths = [str(path) for path in run.images[:SAMPLE_IMAGES]]
                self.passes[key] = word_occurrences(run.model, paths, channel, PER_WORD)
                while len(self.passes) > KEPT_PASSES:
                    self.passes.popitem(last=False)
            self.passes.move_to_end(key)
            return self.passes[key]


def _passes(request: Request) -> _Passes:
    state = request.app.state
    if getattr(state, "words", None) is None:
        state.words = _Passes()
    return state.words


async def _open(request: Request, run: str) -> _Run:
    """The BoF run ``run`` (:func:`allowed_bof_run`) with its model, read off the event loop."""
    review = await run_in_threadpool(allowed_bof_run, request, run)
    return await run_in_threadpool(_passes(request).run, review)


@router.get("/runs", summary="The BoF runs whose visual words this server shows")
async def runs(request: Request) -> dict:
    if getattr(request.app.state, "review", None) is None:
        return {"runs": []}
    found = await run_in_threadpool(shelf(request).runs)
    return {"runs": [{"name": run["name"]} for run in found if run["kind"] == "bof"]}


def _channel(model: BofClassifier, channel: str) -> int:
    from imagelearn.bof.inspection import channel_encoder

    try:
        return channel_encoder(model, channel)[0]
    except ImagelearnError as error:
        raise HTTPException(404, str(error)) from None


@router.get("/run", summary="A BoF run's channels, classes and images, and its ranked words")
async def run_words(
    request: Request,
    run: Annotated[str, RunName],
    channel: Annotated[str, Channel] = "0",
    top: Annotated[int, Query(ge=1, le=500)] = 48,
) -> dict:
    from imagelearn.bof.inspection import rank_words, word_weights

    found = await _open(request, run)
    index = _channel(found.model, channel)
    occurrences = await run_in_threadpool(_passes(request).occurrences, found, index)
    weights = word_weights(found.model, index)
    ranked = rank_words(found.model, index, occurrences=occurrences)[:top]
    return {
        "run": run,
        "classes": found.model.class_names_,
        "channels": [
            {"index": number, "detector": bof.detector, "n_words": bof.vocabulary_.n_words_}
            for number, bof in enumerate(found.model.channels_)
        ],
        "channel": index,
        "n_images": len(found.images),
        "images": [Path(path).name for path in found.images],
        "sample_images": len(occurrences.images) - len(occurrences.failures),
        "words": [
            {
                "word": int(word),
                "svm_weight": float(weights[word]),
                "occurrences": int(occurrences.counts[word]),
                "shown": len(occurrences.of(int(word))),
            }
            for word in ranked
        ],
    }


def _png(pixels: np.ndarray) -> Response:
    """``pixels`` (H, W, 3) uint8 as a PNG response."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return Response(
        buffer.getvalue(), media_type="image/png", headers={"cache-control": CACHE_CONTROL}
    )


@router.get("/montage", summary="A word's patches as a PNG grid", response_class=Response)
async def montage(
    request: Request,
    run: Annotated[str, RunName],
    word: Annotated[int, Query(ge=0, le=2**31 - 1)],
    channel: Annotated[str, Channel] = "0",
) -> Response:
    from imagelearn.bof.inspection import word_montage

    found = await _open(request, run)
    index = _channel(found.model, channel)
    occurrences = await run_in_threadpool(_passes(request).occurrences, found, index)
    if word >= occurrences.n_words:
        raise HTTPException(
            404, f"{run}: no word {word}; channel {index} has {occurrences.n_words}"
        )
    return _png(await run_in_threadpool(word_montage, occurrences, word))


async def _image_words(
    request: Request, run: str, image: int, channel: str, top: int
) -> ImageWords:
    from imagelearn.bof.inspection import image_words

    found = await _open(request, run)
    index = _channel(found.model, channel)
    path = found.image(image)
    try:
        return await run_in_threadpool(image_words, found.model, path, index, top)
    except ImagelearnError as error:  # named as the client names it, not by the server's path
        raise HTTPException(
            404, f"{run}: image {image}: {str(error).replace(path, Path(path).name)}"
        ) from None


ImageNumber = Query(ge=0, le=2**31 - 1, description="number of the image in the run")
Top = Query(ge=1, le=10, description="strongest words")


@router.get("/image", summary="One image's word histogram and its strongest words' patches")
async def image_histogram(
    request: Request,
    run: Annotated[str, RunName],
    image: Annotated[int, ImageNumber],
    channel: Annotated[str, Channel] = "0",
    top: Annotated[int, Top] = 5,
) -> dict:
    found = await _image_words(request, run, image, channel, top)
    record = found.as_record()
    record["image"] = Path(found.image).name
    return record


@router.get(
    "/image.png", summary="The image with its strongest words outlined", response_class=Response
)
async def image_drawn(
    request: Request,
    run: Annotated[str, RunName],
    image: Annotated[int, ImageNumber],
    channel: Annotated[str, Channel] = "0",
    top: Annotated[int, Top] = 5,
) -> Response:
    from imagelearn.bof.inspection import draw_image_words

    found = await _image_words(request, run, image, channel, top)
    try:
        return _png(await run_in_threadpool(draw_image_words, found))
    except ImagelearnError:
        raise HTTPException(404, f"{run}: image {image} can no longer be read") from None
