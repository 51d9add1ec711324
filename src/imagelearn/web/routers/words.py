"""The visual words of a BoF run (``imagelearn serve --review RUN_DIR``): its channels, the words
its SVM weighs most, a word's montage of patches, and one image's histogram and strongest words.

Only the runs the server was started with are served (:func:`allowed_bof_run`): a client names
a run by its place below one of them (``flowers``, ``runs/flowers``), every component a plain
name, and the path (links followed) must stay below it. The images are those the run's
``split.json`` lists (held-out first, then training), by their number: no path from a client
reaches the disk. A word's patches are looked for in the first :data:`SAMPLE_IMAGES` of them,
computed once per run and channel and kept (:data:`KEPT_PASSES`).
"""

from __future__ import annotations

import io
import json
import re
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

from imagelearn.core.bundle import BundleError, member_path, read_manifest
from imagelearn.core.errors import ImagelearnError
from imagelearn.core.schema import MEMBER_NAME_PATTERN
from imagelearn.web.app import settings

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
#: How deep below a directory given to the server BoF runs are listed.
SEARCH_DEPTH = 3
#: The bundle kind of a BoF run's model (:attr:`BofClassifier.bundle_kind`).
BOF_KIND = "bof-classifier"
#: Cache lifetime of the PNGs (a run's files do not change while it is served).
CACHE_CONTROL = "private, max-age=3600"

RunName = Query(min_length=1, max_length=400, description="a run, as GET /api/words/runs names it")
Channel = Query(min_length=1, max_length=64, description="channel index or detector name")


def _roots(request: Request) -> dict[str, Path]:
    """The directories the server was given, by the name clients use: the directory's name
    (plain characters), made unique with ``-2``, ``-3``..."""
    roots: dict[str, Path] = {}
    for path in settings(request).review_runs:
        base = re.sub(r"[^A-Za-z0-9._-]", "_", path.resolve().name).lstrip("._-") or "runs"
        name, suffix = base, 2
        while name in roots:
            name, suffix = f"{base}-{suffix}", suffix + 1
        roots[name] = path
    return roots


def _is_bof_run(directory: Path) -> bool:
    try:
        return read_manifest(directory)["kind"] == BOF_KIND
    except BundleError:
        return False


def allowed_bof_run(request: Request, run: str) -> Path:
    """The directory of the BoF run ``run`` if the server was started with it (or a folder
    above it).

    Raises
    ------
    HTTPException
        404: the server reviews no runs, or no such run; 403: a name that is not plain names
        below a given directory or that leads out of it; 422: not a BoF run (``bof train``).
    """
    roots = _roots(request)
    if not roots:
        raise HTTPException(404, "this server reviews no runs: start it with --review RUN_DIR")
    root_name, *parts = run.split("/")
    if not all(re.fullmatch(MEMBER_NAME_PATTERN, part) for part in (root_name, *parts)):
        raise HTTPException(403, f"{run!r}: refused, a run is named by plain names")
    if root_name not in roots:
        raise HTTPException(404, f"no run {run!r} here: this server reviews {', '.join(roots)}")
    try:
        directory = member_path(roots[root_name], *parts, what="runs folder")
    except BundleError:
        raise HTTPException(403, f"{run!r}: refused, it leads out of {root_name}") from None
    if not directory.is_dir():
        raise HTTPException(404, f"no run directory {run!r}")
    if not _is_bof_run(directory):
        raise HTTPException(422, f"{run!r} is not a BoF run (one that 'bof train' writes)")
    return directory


@dataclass(frozen=True)
class _Run:
    """A BoF run read: the model and the images its split lists."""

    model: BofClassifier
    images: tuple[str, ...]

    def image(self, run: str, number: int) -> str:
        if not 0 <= number < len(self.images):
            raise HTTPException(404, f"{run}: no image {number}; the run lists {len(self.images)}")
        return self.images[number]


class _Passes:
    """The runs read and their word passes, least recently used dropped first (one per app)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: OrderedDict[Path, _Run] = OrderedDict()
        self.passes: OrderedDict[tuple[Path, int], WordOccurrences] = OrderedDict()

    def run(self, directory: Path) -> _Run:
        with self.lock:
            if directory in self.runs:
                self.runs.move_to_end(directory)
                return self.runs[directory]
            from imagelearn.bof.recognition import BofClassifier

            model = BofClassifier.load(directory)
            split = directory / "split.json"
            listed = json.loads(split.read_text()) if split.is_file() else {}
            images = tuple(
                str(path) for path, _ in [*listed.get("held_out", []), *listed.get("train", [])]
            )
            self.runs[directory] = found = _Run(model, images)
            while len(self.runs) > KEPT_PASSES:
                self.runs.popitem(last=False)
            return found

    def occurrences(self, directory: Path, channel: int) -> WordOccurrences:
        from imagelearn.bof.inspection import word_occurrences

        run = self.run(directory)
        with self.lock:  # one pass at a time: the machine's cores are the workers'
            key = (directory, channel)
            if key not in self.passes:
                self.passes[key] = word_occurrences(
                    run.model, run.images[:SAMPLE_IMAGES], channel, PER_WORD
                )
                while len(self.passes) > KEPT_PASSES:
                    self.passes.popitem(last=False)
            self.passes.move_to_end(key)
            return self.passes[key]


def _passes(request: Request) -> _Passes:
    state = request.app.state
    if getattr(state, "words", None) is None:
        state.words = _Passes()
    return state.words


def _listed(roots: dict[str, Path]) -> list[dict]:
    found = []
    for name, root in roots.items():
        level = [root]
        for _ in range(SEARCH_DEPTH + 1):
            below = []
            for directory in sorted(level):
                if _is_bof_run(directory):
                    relative = directory.relative_to(root).parts
                    found.append({"name": "/".join((name, *relative))})
                else:
                    below += [
                        path
                        for path in directory.iterdir()
                        if path.is_dir() and not path.is_symlink()
                    ]
            level = below
    return found


@router.get("/runs", summary="The BoF runs whose visual words this server shows")
async def runs(request: Request) -> dict:
    return {"runs": await run_in_threadpool(_listed, _roots(request))}


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

    directory = allowed_bof_run(request, run)
    passes = _passes(request)
    found = await run_in_threadpool(passes.run, directory)
    index = _channel(found.model, channel)
    occurrences = await run_in_threadpool(passes.occurrences, directory, index)
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

    directory = allowed_bof_run(request, run)
    passes = _passes(request)
    index = _channel((await run_in_threadpool(passes.run, directory)).model, channel)
    occurrences = await run_in_threadpool(passes.occurrences, directory, index)
    if word >= occurrences.n_words:
        raise HTTPException(
            404, f"{run}: no word {word}; channel {index} has {occurrences.n_words}"
        )
    return _png(await run_in_threadpool(word_montage, occurrences, word))


async def _image_words(
    request: Request, run: str, image: int, channel: str, top: int
) -> ImageWords:
    from imagelearn.bof.inspection import image_words

    directory = allowed_bof_run(request, run)
    found = await run_in_threadpool(_passes(request).run, directory)
    index = _channel(found.model, channel)
    path = found.image(run, image)
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
