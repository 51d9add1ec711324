"""The pixel classification studio behind ``imagelearn serve --studio IMAGE_OR_FOLDER``.

The web layer over :mod:`imagelearn.segment`: the images of one file or folder (served by
id, never by a client's path), the class list, the samples painted in the page (a PNG of the
image's size), training a :class:`~imagelearn.segment.PixelClassifier` or clustering with a
:class:`~imagelearn.segment.PixelClusterer` in the background with progress, the class map
and uncertainty overlays, areas (:func:`~imagelearn.evaluation.segmentation.class_areas`),
the accuracy report (:func:`~imagelearn.evaluation.segmentation.accuracy_report`, as
``segment evaluate`` writes it) and saving everything to the output folder.

Retraining is interactive because an image's feature stack (:class:`PixelFeatures`, the
whole image, equal to the tiled computation) is computed once and kept: a retrain fits the
classifier on the stack's labelled rows (:meth:`PixelClassifier.fit_features`), predicts a
decimated stack first (the overlay the page shows at once), then the full map. Images with
more pixels than :data:`FEATURE_CACHE_PIXELS` are trained and predicted tile by tile.
"""

from __future__ import annotations

import io
import itertools
import logging
import os
import queue
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imagelearn.core.bundle import atomic_write_bytes, atomic_write_json
from imagelearn.core.errors import ImagelearnError, ParameterError
from imagelearn.core.images import IMAGE_SUFFIXES, ImageReadError, ImageTooLargeError, open_image
from imagelearn.core.persistence import read_metadata
from imagelearn.web.security import DEFAULT_MAX_PIXELS, UploadError

log = logging.getLogger(__name__)

Color = tuple[int, int, int]
#: The classes a studio starts with (the seed's land-cover categories; colours of the Dubai set).
DEFAULT_CLASSES: tuple[tuple[str, str], ...] = (
    ("vegetation", "#FEDD3A"),
    ("road", "#6EC1E4"),
    ("water", "#E2A929"),
    ("building", "#3C1098"),
    ("land", "#8429F6"),
)
#: Most classes (class maps are uint8 with 0 for none).
MAX_CLASSES = 64
#: Side of a display tile in pixels.
TILE_SIDE = 256
#: Images up to this many pixels keep their feature stack in memory (40 float32 features:
#: 160 bytes a pixel, so 6 MP is about 1 GB).
FEATURE_CACHE_PIXELS = 6_000_000
#: The first overlay of a retrain predicts every n-th pixel so it has at most this many.
PREVIEW_PIXELS = 600_000
#: Images kept open at once (rasters, feature stacks, results).
OPEN_IMAGES = 2
#: Trees of the studio's random forest (fewer than the CLI's 50: retraining must feel
#: interactive; the saved bundle says how many).
DEFAULT_TREES = 30
#: Default output folder (relative to the working directory).
DEFAULT_OUT = Path("runs") / "studio"


class StudioError(UploadError, ImagelearnError):
    """A studio request that cannot be done; ``status`` is its HTTP status (the app answers
    it as it answers a refused upload)."""


def parse_color(text: str) -> Color:
    """``"#3C1098"`` -> ``(60, 16, 152)``; raises ``StudioError`` 422 otherwise."""
    from imagelearn.segment.samples import parse_color as parse

    try:
        return parse(text)
    except ValueError as error:
        raise StudioError(422, str(error)) from None


def hex_color(color: Color) -> str:
    return "#{:02X}{:02X}{:02X}".format(*color)


@dataclass(frozen=True)
class StudioClass:
    """One class: its name and its colour in samples, overlays and saved class maps."""

    name: str
    color: Color


def check_classes(classes: Sequence[tuple[str, str]]) -> list[StudioClass]:
    """Validated classes from (name, ``#RRGGBB``) pairs: 2..MAX_CLASSES, unique names and
    colours, no black (black is "unlabelled" in a sample image)."""
    if not 2 <= len(classes) <= MAX_CLASSES:
        raise StudioError(422, f"give 2 to {MAX_CLASSES} classes, got {len(classes)}")
    result = []
    for name, color in classes:
        name = name.strip()
        if not name or len(name) > 40 or not name.isprintable():
            raise StudioError(422, f"class name {name!r}: 1 to 40 printable characters")
        result.append(StudioClass(name, parse_color(color)))
    names = [item.name for item in result]
    colors = [item.color for item in result]
    if len(set(names)) != len(names):
        raise StudioError(422, "class names must differ")
    if len(set(colors)) != len(colors):
        raise StudioError(422, "class colours must differ")
    if (0, 0, 0) in colors:
        raise StudioError(422, "black (#000000) means unlabelled; choose another colour")
    return result


def read_label_png(
    data: bytes, shape: tuple[int, int], classes: Sequence[StudioClass], what: str
) -> np.ndarray:
    """The labels of an uploaded sample or reference image of an image of ``shape``.

    Colour images (RGB, RGBA) are colour-coded: a class's colour is its label, transparent
    and black pixels are unlabelled, any other colour is refused. Grey and palette images
    (what ``segment train --samples`` reads without class colours, and what the studio
    saves) hold the labels themselves: 0 unlabelled, 1..K.

    Returns
    -------
    uint8 ndarray ``(H, W)``

    Raises
    ------
    UploadError
        400 empty, 415 not an image, 413 beyond the image's size in pixels, 422 of another
        size than the image, unknown colours or labels.
    """
    from imagelearn.segment.samples import labels_from_colors

    if not data:
        raise UploadError(400, f"{what}: empty upload")
    height, width = shape
    with tempfile.TemporaryDirectory(prefix="imagelearn-studio-") as folder:
        path = Path(folder) / "upload"
        path.write_bytes(data)
        try:
            with open_image(path, max_pixels=max(1, width * height)) as image:
                if image.size != (width, height):
                    raise UploadError(
                        422,
                        f"{what} is {image.width}x{image.height} but the image is {width}x{height}",
                    )
                mode = image.mode
                image.load()
                if mode in ("P", "L", "I", "I;16", "1"):
                    labels = np.asarray(image if mode != "1" else image.convert("L"))
                    labels = labels.astype(np.int64)
                    rgba = None
                else:
                    rgba = np.asarray(image.convert("RGBA"))
        except UploadError:
            raise
        except ImageTooLargeError:
            raise UploadError(
                413, f"{what} has more pixels than the {width}x{height} image"
            ) from None
        except ImageReadError as error:
            status = 415 if "identify" in error.reason or "empty" in error.reason else 422
            raise UploadError(status, f"{what}: {error.reason}") from None
        except (OSError, ValueError, SyntaxError, EOFError) as error:
            raise UploadError(422, f"{what}: unreadable image ({error})") from None
    if rgba is None:
        top = int(labels.max(initial=0))
        if top > len(classes):
            raise UploadError(
                422, f"{what} holds label {top} but there are only {len(classes)} classes"
            )
        return labels.astype(np.uint8)
    colored = (rgba[..., 3] > 0) & np.any(rgba[..., :3] > 0, axis=2)
    mask = labels_from_colors(rgba[..., :3], [item.color for item in classes])
    unknown = colored & (mask == 0)
    if unknown.any():
        found = np.unique(rgba[..., :3][unknown].reshape(-1, 3), axis=0)[:3]
        shown = ", ".join(hex_color(tuple(int(c) for c in color)) for color in found)
        raise UploadError(
            422,
            f"{what}: {int(unknown.sum())} pixels have colours of no class ({shown}...); "
            f"the classes are {', '.join(f'{c.name}={hex_color(c.color)}' for c in classes)}",
        )
    return mask.astype(np.uint8)


def png_bytes(array: np.ndarray) -> bytes:
    """An ``(H, W, 4)`` or ``(H, W, 3)`` uint8 array as PNG (fast compression)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


@dataclass
class Result:
    """A class map of one image and how it was made.

    Attributes
    ----------
    kind : {"classifier", "clusters", "named clusters"}
    labels : uint8 ``(H, W)`` (or the decimated map while ``preview``)
    uncertainty : uint8 ``(h, w)`` or None: 255 (1 - highest probability) at preview size
    class_names, colors : the classes of the labels 1..K
    preview : bool
        Only every ``step``-th pixel has been predicted so far.
    step : int
        1 unless ``preview``.
    seconds : dict of str to float
        How long each stage took.
    model : PixelClassifier or None
    """

    kind: str
    labels: np.ndarray
    uncertainty: np.ndarray | None
    class_names: list[str]
    colors: list[Color]
    preview: bool
    step: int
    seconds: dict[str, float]
    model: Any = None
    version: int = 0
    overlays: dict[str, bytes] = field(default_factory=dict)


class StudioImage:
    """One open image: its raster, display pyramid, feature stack, samples and last result."""

    def __init__(self, image_id: int, path: Path, max_pixels: int) -> None:
        from imagelearn.segment import read_raster

        self.id = image_id
        self.path = path
        self.raster = read_raster(path, max_pixels=max_pixels)
        self.height, self.width = self.raster.shape[:2]
        self.lock = threading.Lock()
        self._display: dict[int, np.ndarray] = {}
        self._features: np.ndarray | None = None
        self.samples: np.ndarray | None = None
        self.validation: np.ndarray | None = None
        self.reference: np.ndarray | None = None
        self.result: Result | None = None
        self.versions = itertools.count(1)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def levels(self) -> int:
        """Pyramid levels: level ``k`` halves the image ``k`` times; the last fits one tile."""
        return max(1, int(np.ceil(np.log2(max(self.width, self.height) / TILE_SIDE))) + 1)

    def display(self, level: int) -> np.ndarray:
        """uint8 RGB of the image at pyramid ``level`` (made once per level)."""
        from imagelearn.segment.render import display_rgb

        if level not in self._display:
            import cv2

            if level == 0:
                pixels = np.asarray(self.raster)
                self._display[0] = display_rgb(pixels)
            else:
                above = self.display(level - 1)
                size = (max(1, above.shape[1] // 2), max(1, above.shape[0] // 2))
                self._display[level] = cv2.resize(above, size, interpolation=cv2.INTER_AREA)
        return self._display[level]

    def tile(self, level: int, column: int, row: int) -> bytes:
        """JPEG of one display tile, or ``StudioError`` 404 outside the image."""
        if not 0 <= level < self.levels:
            raise StudioError(404, f"level {level} outside 0..{self.levels - 1}")
        pixels = self.display(level)
        top, left = row * TILE_SIDE, column * TILE_SIDE
        if row < 0 or column < 0 or top >= pixels.shape[0] or left >= pixels.shape[1]:
            raise StudioError(404, f"tile {column},{row} outside level {level}")
        block = np.ascontiguousarray(pixels[top : top + TILE_SIDE, left : left + TILE_SIDE])
        buffer = io.BytesIO()
        Image.fromarray(block).save(buffer, format="JPEG", quality=88)
        return buffer.getvalue()

    def features(self, pixel_features) -> np.ndarray | None:
        """The whole feature stack (cached), or None beyond :data:`FEATURE_CACHE_PIXELS`."""
        if self.width * self.height > FEATURE_CACHE_PIXELS:
            return None
        if self._features is None:
            self._features = pixel_features.transform(np.asarray(self.raster))
        return self._features


@dataclass
class Job:
    """A background training or clustering run, polled by the page."""

    id: int
    image_id: int
    kind: str
    state: str = "queued"
    stage: str = "waiting"
    progress: float = 0.0
    error: str | None = None
    started: float = field(default_factory=time.perf_counter)
    seconds: dict[str, float] = field(default_factory=dict)
    finished: threading.Event = field(default_factory=threading.Event)

    def describe(self) -> dict:
        return {
            "id": self.id,
            "image": self.image_id,
            "kind": self.kind,
            "state": self.state,
            "stage": self.stage,
            "progress": round(self.progress, 3),
            "error": self.error,
            "seconds": {key: round(value, 3) for key, value in self.seconds.items()},
        }


class Studio:
    """The studio's state: images of ``source``, classes, open images, jobs, the output folder.

    Parameters
    ----------
    source : path-like
        An image, or a folder whose images (not its subfolders') are served.
    out : path-like
        Where saves go; refused inside ``source``'s folder unless ``allow_inside_source``.
    max_pixels : int
        Largest image opened.
    pixel_size : float, optional
        Ground sampling distance in metres (adds square metres to the areas).

    Raises
    ------
    ParameterError
        ``studio``: not an image or a folder with images; ``studio_out``: inside the source.
    """

    def __init__(
        self,
        source: str | os.PathLike,
        out: str | os.PathLike | None = None,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        pixel_size: float | None = None,
        allow_inside_source: bool = False,
    ) -> None:
        source = Path(source)
        if source.is_dir():
            paths = sorted(
                path
                for path in source.iterdir()
                if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
            )
            folder = source
        elif source.is_file():
            paths, folder = [source], source.parent
        else:
            raise ParameterError("studio", f"{source}: no such image or folder")
        if not paths:
            raise ParameterError("studio", f"{source}: no images in this folder")
        self.source = source
        self.out = Path(out) if out is not None else DEFAULT_OUT
        inside = self.out.resolve().is_relative_to(folder.resolve())
        if inside and not allow_inside_source:
            raise ParameterError(
                "studio_out",
                f"{self.out} is inside the source folder {folder}; give another output folder",
            )
        self.paths = paths
        self.max_pixels = int(max_pixels)
        self.pixel_size = pixel_size
        self.classes = check_classes(DEFAULT_CLASSES)
        self._open: OrderedDict[int, StudioImage] = OrderedDict()
        self._opening = threading.Lock()
        self._jobs: dict[int, Job] = {}
        self._job_ids = itertools.count(1)
        # Jobs run one at a time on a thread of their own: not one of the shared pools
        # (core.execution), on which the forest's tree traversals would run serially.
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._work, name="imagelearn-studio", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------ images

    def describe_images(self) -> list[dict]:
        rows = []
        for image_id, path in enumerate(self.paths):
            row: dict[str, Any] = {"id": image_id, "name": path.name}
            try:
                with open_image(path, max_pixels=None) as image:
                    row["width"], row["height"] = image.size
            except ImageReadError as error:
                row["error"] = error.reason
            else:
                if row["width"] * row["height"] > self.max_pixels:
                    row["error"] = f"more pixels than the limit of {self.max_pixels}"
            rows.append(row)
        return rows

    def image(self, image_id: int) -> StudioImage:
        """The open image ``image_id`` (opened on first use; the least recent one closed)."""
        if not 0 <= image_id < len(self.paths):
            raise StudioError(404, f"no studio image has id {image_id}")
        with self._opening:
            if image_id not in self._open:
                try:
                    opened = StudioImage(image_id, self.paths[image_id], self.max_pixels)
                except ImageTooLargeError as error:
                    raise StudioError(413, f"{self.paths[image_id].name}: {error.reason}") from None
                except ImageReadError as error:
                    raise StudioError(422, f"{self.paths[image_id].name}: {error.reason}") from None
                self._open[image_id] = opened
                while len(self._open) > OPEN_IMAGES:
                    self._open.popitem(last=False)
            self._open.move_to_end(image_id)
            return self._open[image_id]

    def describe_image(self, image: StudioImage) -> dict:
        return {
            "id": image.id,
            "name": image.path.name,
            "width": image.width,
            "height": image.height,
            "bands": int(image.raster.shape[2]),
            "levels": image.levels,
            "tile_size": TILE_SIDE,
            "pixel_size": self.pixel_size,
            "samples": self._counts(image.samples),
            "validation": self._counts(image.validation),
            "reference": self._counts(image.reference),
            "result": self.describe_result(image),
        }

    def _counts(self, mask: np.ndarray | None) -> dict[str, int] | None:
        if mask is None:
            return None
        counts = np.bincount(mask.ravel(), minlength=len(self.classes) + 1)
        return {item.name: int(counts[k + 1]) for k, item in enumerate(self.classes)}

    def set_classes(self, classes: Sequence[tuple[str, str]]) -> None:
        checked = check_classes(classes)
        if len(checked) < len(self.classes):  # stored labels of removed classes are dropped
            for image in self._open.values():
                for name in ("samples", "validation", "reference"):
                    mask = getattr(image, name)
                    if mask is not None:
                        mask[mask > len(checked)] = 0
        self.classes = checked

    def labels_png(self, image: StudioImage, kind: str) -> bytes:
        """The stored samples (``kind`` train/validation) as the page sends them: an RGBA PNG
        of the class colours, transparent where unlabelled."""
        mask = image.samples if kind == "train" else image.validation
        if mask is None:
            raise StudioError(404, f"no {kind} samples stored for this image")
        palette = np.array([(0, 0, 0, 0), *((*c.color, 255) for c in self.classes)], np.uint8)
        return png_bytes(palette[np.minimum(mask, len(self.classes))])

    def set_labels(self, image: StudioImage, kind: str, data: bytes) -> dict[str, int]:
        """Store an uploaded samples (``kind`` train/validation) or reference PNG."""
        what = {"train": "samples", "validation": "validation samples", "reference": "reference"}
        mask = read_label_png(data, image.shape, self.classes, what[kind])
        setattr(image, {"train": "samples"}.get(kind, kind), mask)
        return self._counts(mask)

    # ------------------------------------------------------------ jobs

    def job(self, job_id: int) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise StudioError(404, f"no studio job has id {job_id}")
        return job

    def _submit(self, image: StudioImage, kind: str, work: Callable[[Job], None]) -> Job:
        job = Job(next(self._job_ids), image.id, kind)
        self._jobs[job.id] = job

        def run() -> None:
            job.state = "running"
            try:
                with image.lock:
                    work(job)
            except (ImagelearnError, ValueError) as error:
                job.state, job.error = "failed", str(error)
            except Exception:
                log.exception("studio job %s failed", job.id)
                job.state, job.error = "failed", "internal error; the server's log has the details"
            else:
                job.state, job.progress, job.stage = "done", 1.0, "done"
            job.seconds["total"] = time.perf_counter() - job.started
            job.finished.set()

        self._queue.put(run)
        return job

    def _work(self) -> None:
        while (task := self._queue.get()) is not None:
            task()

    def wait(self, job_id: int, timeout: float | None = None) -> Job:
        """The job ``job_id`` once it has ended (done or failed), or when ``timeout`` passed."""
        job = self.job(job_id)
        job.finished.wait(timeout)
        return job

    def _stage(self, job: Job, stage: str, progress: float, since: float | None) -> float:
        now = time.perf_counter()
        if since is not None:
            job.seconds[job.stage] = now - since
        job.stage, job.progress = stage, progress
        return now

    def train(self, image: StudioImage, n_estimators: int = DEFAULT_TREES) -> Job:
        """Start training a pixel classifier on the image's samples, then predicting."""
        if image.samples is None or not image.samples.any():
            raise StudioError(409, "paint samples of at least two classes first")
        present = np.unique(image.samples[image.samples > 0])
        if present.size < 2:
            raise StudioError(409, "the samples hold one class only; paint a second class")
        mask = image.samples.copy()
        classes = list(self.classes)
        return self._submit(
            image, "train", lambda job: self._train(job, image, mask, classes, n_estimators)
        )

    def _train(
        self,
        job: Job,
        image: StudioImage,
        mask: np.ndarray,
        classes: list[StudioClass],
        n_estimators: int,
    ) -> None:
        from imagelearn.segment import PixelClassifier, PixelFeatures
        from imagelearn.segment.render import preview_step

        names, colors = [c.name for c in classes], [c.color for c in classes]
        features = PixelFeatures()
        model = PixelClassifier(
            features=features,
            classifier_params={"n_estimators": int(n_estimators)},
            n_jobs=-1,
        )
        since = self._stage(job, "features", 0.05, None)
        stack = image.features(features)
        since = self._stage(job, "training", 0.4, since)
        if stack is None:  # too large to keep: tile by tile, as the CLI does
            model.fit(image.raster, mask, names)
            since = self._stage(job, "predicting", 0.6, since)
            self._publish(image, model, model.predict_proba(image.raster), names, colors, job)
            self._stage(job, "done", 1.0, since)
            return
        labelled = mask > 0
        model.fit_features(stack[labelled], mask[labelled], names, int(image.raster.shape[2]))
        step = max(1, int(np.ceil(np.sqrt(image.width * image.height / PREVIEW_PIXELS))))
        step = max(step, preview_step(image.shape))
        if step > 1:
            since = self._stage(job, "preview", 0.55, since)
            proba = model.predict_proba_features(stack[::step, ::step])
            self._publish(image, model, proba, names, colors, job, preview=step)
        since = self._stage(job, "predicting", 0.75, since)
        self._publish(image, model, model.predict_proba_features(stack), names, colors, job)
        self._stage(job, "done", 1.0, since)

    def _publish(
        self,
        image: StudioImage,
        model,
        proba: np.ndarray,
        names: list[str],
        colors: list[Color],
        job: Job,
        preview: int | None = None,
    ) -> None:
        """Make the class map of ``proba`` ``(H, W, K)`` the image's result; ``preview``: the
        step by which ``proba`` was decimated (a first overlay; the full map follows)."""
        from imagelearn.segment.render import preview_step

        proba = np.asarray(proba)
        labels = model.classes_.astype(np.uint8)[proba.argmax(axis=2)]
        show = 1 if preview else preview_step(image.shape)  # the overlays' resolution
        uncertainty = np.round(255 * (1 - proba[::show, ::show].max(axis=2))).astype(np.uint8)
        image.result = Result(
            "classifier",
            labels,
            uncertainty,
            names,
            colors,
            preview is not None,
            preview or 1,
            dict(job.seconds),
            model,
            next(image.versions),
        )
        job.seconds["to_overlay" if preview else "to_map"] = time.perf_counter() - job.started

    def apply(self, image: StudioImage, name: str) -> Job:
        """Start predicting the image with a saved pixel classifier: ``name`` is a model bundle
        under the output folder (``STEM/model`` as the studio saves, or one that
        ``segment train`` wrote there)."""
        from imagelearn.core.bundle import member_path
        from imagelearn.segment import PixelClassifier, PixelFeatures

        parts = name.strip("/").split("/")
        try:
            directory = member_path(self.out, *parts, what="studio output folder")
        except ImagelearnError as error:
            raise StudioError(422, f"model {name!r}: {error}") from None
        if not directory.is_dir():
            raise StudioError(404, f"no model {name!r} in the output folder {self.out}")
        try:
            model = PixelClassifier.load(directory).set_params(n_jobs=-1)
        except ImagelearnError as error:
            raise StudioError(422, f"model {name!r} is not a pixel classifier: {error}") from None
        colors = read_metadata(directory).get("class_colors") or []
        names = list(model.class_names_)
        if len(colors) != len(names):
            from imagelearn.segment.render import default_colors

            colors = default_colors(len(names))
        colors = [tuple(color) for color in colors]

        def work(job: Job) -> None:
            since = self._stage(job, "predicting", 0.2, None)
            same = model.features_.get_params() == PixelFeatures().get_params()
            stack = image.features(model.features_) if same else None
            if stack is not None:
                proba = model.predict_proba_features(stack)
            else:
                proba = model.predict_proba(image.raster)
            self._publish(image, model, proba, names, colors, job)
            self._stage(job, "done", 1.0, since)

        return self._submit(image, "apply", work)

    def cluster(self, image: StudioImage, method: str, n_clusters: int) -> Job:
        """Start k-means/ISODATA clustering of the image's pixels."""
        from imagelearn.segment.cluster import METHODS

        if method not in METHODS:
            raise StudioError(422, f"method {method!r}: choose from {sorted(METHODS)}")
        if not 2 <= n_clusters <= MAX_CLASSES:
            raise StudioError(422, f"n_clusters: 2 to {MAX_CLASSES}")

        def work(job: Job) -> None:
            from imagelearn.segment import PixelClusterer, PixelFeatures
            from imagelearn.segment.render import default_colors

            since = self._stage(job, "clustering", 0.1, None)
            clusterer = PixelClusterer(
                n_clusters=n_clusters,
                method=method,
                features=PixelFeatures(sigmas=(1.0,), texture=False),
                random_state=0,
            )
            labels = np.asarray(clusterer.fit_predict(image.raster)).astype(np.uint8)
            names = [f"cluster{k}" for k in range(1, clusterer.n_clusters_ + 1)]
            image.result = Result(
                "clusters",
                labels,
                None,
                names,
                default_colors(len(names)),
                False,
                1,
                {},
                None,
                next(image.versions),
            )
            self._stage(job, "done", 1.0, since)
            job.seconds["to_map"] = time.perf_counter() - job.started

        return self._submit(image, "cluster", work)

    def name_clusters(self, image: StudioImage, names: Sequence[str]) -> None:
        """Turn a cluster map into a class map: cluster ``k`` becomes class ``names[k - 1]``
        (a class of the list; two clusters named alike merge; "" leaves a cluster unlabelled)."""
        result = image.result
        if result is None or result.kind != "clusters":
            raise StudioError(409, "no cluster map to name: run the clustering first")
        if len(names) != len(result.class_names):
            raise StudioError(
                422, f"give one name per cluster ({len(result.class_names)}), got {len(names)}"
            )
        known = {item.name: k for k, item in enumerate(self.classes, start=1)}
        unknown = sorted({name for name in names if name and name not in known})
        if unknown:
            raise StudioError(422, f"unknown classes {unknown}; the classes are {list(known)}")
        table = np.array([0, *(known.get(name, 0) for name in names)], dtype=np.uint8)
        image.result = Result(
            "named clusters",
            table[result.labels],
            None,
            [c.name for c in self.classes],
            [c.color for c in self.classes],
            False,
            1,
            {},
            None,
            next(image.versions),
        )

    # ------------------------------------------------------------ results

    def result(self, image: StudioImage) -> Result:
        if image.result is None:
            raise StudioError(404, "no class map yet: train or cluster first")
        return image.result

    def describe_result(self, image: StudioImage) -> dict | None:
        from imagelearn.evaluation.segmentation import class_areas

        result = image.result
        if result is None:
            return None
        areas = class_areas(result.labels, result.class_names)
        scale = float(result.step**2) if result.preview else 1.0
        for row in areas:
            row["pixels"] = round(row["pixels"] * scale)
            if self.pixel_size is not None:
                row["square_metres"] = row["pixels"] * self.pixel_size**2
        return {
            "kind": result.kind,
            "version": result.version,
            "preview": result.preview,
            "classes": [
                {"name": name, "color": hex_color(color)}
                for name, color in zip(result.class_names, result.colors, strict=True)
            ],
            "areas": areas,
            "uncertainty": result.uncertainty is not None,
            "seconds": {key: round(value, 3) for key, value in result.seconds.items()},
        }

    def overlay(self, image: StudioImage, kind: str) -> bytes:
        """RGBA PNG at preview size: class colours (unlabelled transparent) or uncertainty."""
        from imagelearn.segment.render import preview_step

        result = self.result(image)
        if kind not in result.overlays:
            if kind == "classes":
                step = 1 if result.preview else preview_step(result.labels.shape)
                labels = result.labels[::step, ::step]
                palette = np.array([(0, 0, 0, 0), *((*c, 255) for c in result.colors)], np.uint8)
                result.overlays[kind] = png_bytes(palette[labels])
            else:
                if result.uncertainty is None:
                    raise StudioError(404, "this class map has no uncertainty (not a classifier)")
                alpha = result.uncertainty
                rgba = np.zeros((*alpha.shape, 4), np.uint8)
                rgba[..., 0], rgba[..., 2] = 255, 255
                rgba[..., 3] = np.minimum(255, 2 * alpha.astype(np.int32)).astype(np.uint8)
                result.overlays[kind] = png_bytes(rgba)
        return result.overlays[kind]

    def accuracy(self, image: StudioImage, against: str) -> dict:
        """The accuracy report of the class map against the reference or validation samples."""
        from imagelearn.evaluation.segmentation import accuracy_report

        result = self.result(image)
        if result.preview:
            raise StudioError(409, "the full class map is still being predicted")
        mask = image.reference if against == "reference" else image.validation
        if mask is None or not mask.any():
            wanted = "a reference mask" if against == "reference" else "validation samples"
            raise StudioError(409, f"give {wanted} first")
        names = [c.name for c in self.classes]
        if result.class_names != names:
            raise StudioError(409, "the classes changed since the map was made; train again")
        return accuracy_report(mask, result.labels, names)

    def save(self, image: StudioImage) -> dict:
        """Write samples, model bundle, class map (PNG, TIFF), overlay, areas and report to
        ``out/<image stem>/``; returns what was written."""
        import tifffile

        from imagelearn.segment.render import write_classmap_png, write_results

        folder = self.out / image.path.stem
        folder.mkdir(parents=True, exist_ok=True)
        colors = [c.color for c in self.classes]
        written = []
        for name, mask in (("samples.png", image.samples), ("validation.png", image.validation)):
            if mask is not None:
                write_classmap_png(folder / name, mask, colors)
                written.append(name)
        report: dict[str, Any] = {
            "image": image.path.name,
            "classes": [{"name": c.name, "color": hex_color(c.color)} for c in self.classes],
            "samples": self._counts(image.samples),
            "pixel_size": self.pixel_size,
        }
        result = image.result
        if result is not None and not result.preview:
            areas = write_results(
                folder,
                image.raster,
                result.labels,
                result.class_names,
                result.colors,
                self.pixel_size,
            )
            buffer = io.BytesIO()
            tifffile.imwrite(buffer, result.labels)
            atomic_write_bytes(folder / "classmap.tif", buffer.getvalue())
            written += ["classmap.png", "classmap.tif", "overlay.png", "legend.png", "areas.csv"]
            report["areas"] = areas
            report["seconds"] = result.seconds
            if result.model is not None:
                metadata = {
                    "images": [str(image.path)],
                    "samples": [str(folder / "samples.png")],
                    "class_colors": colors,
                    "source": "imagelearn serve --studio",
                }
                result.model.save(folder / "model", metadata)
                written.append("model")
            for against in ("reference", "validation"):
                try:
                    report[f"accuracy_{against}"] = self.accuracy(image, against)
                except StudioError:
                    pass
        atomic_write_json(folder / "report.json", report)
        written.append("report.json")
        return {"folder": str(folder), "files": written}

    def close(self) -> None:
        """Stop the job thread once the job in progress (if any) ends."""
        self._queue.put(None)
