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

An image with more pixels than the studio's limit (a single-page TIFF, which is read by
windows: :mod:`imagelearn.segment.windowed`) opens as a *map*: its display tiles are made on
demand (:mod:`imagelearn.web.pyramid`), its samples arrive and are kept by blocks
(:class:`~imagelearn.web.labelmaps.SparseLabels`), training computes features only on the
windows around the strokes, and the class map is predicted block by block in the background
at full resolution, nearest to what the page looks at first
(:class:`~imagelearn.web.labelmaps.LabelMap`), shown as overlay tiles while it fills in.
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
from imagelearn.web.labelmaps import (
    CHUNK,
    LabelMap,
    SparseLabels,
    overlay_palette,
    uncertainty_rgba,
)
from imagelearn.web.pyramid import TILE_SIDE, TilePyramid
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
#: Most pixels of one uploaded or downloaded window of samples (the page sends 512-pixel
#: blocks; a bound on what one request decodes or renders: 16 MB of RGBA).
WINDOW_PIXELS = 2048 * 2048
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


class JobStopped(Exception):
    """A background prediction left partial because a newer job waits (its message says
    how far it got)."""


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
    data: bytes, shape: tuple[int, int] | None, classes: Sequence[StudioClass], what: str
) -> np.ndarray:
    """The labels of an uploaded sample or reference image of an image of ``shape`` (None:
    a window of samples, of any size up to :data:`WINDOW_PIXELS`).

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
    height, width = shape or (WINDOW_PIXELS, 1)
    with tempfile.TemporaryDirectory(prefix="imagelearn-studio-") as folder:
        path = Path(folder) / "upload"
        path.write_bytes(data)
        try:
            with open_image(path, max_pixels=max(1, width * height)) as image:
                if shape is not None and image.size != (width, height):
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
            limit = f"the {width}x{height} image" if shape else f"a window ({WINDOW_PIXELS})"
            raise UploadError(413, f"{what} has more pixels than {limit}") from None
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
    label_map : LabelMap or None
        The map of an image opened as a map: ``labels`` is its memory-mapped class map,
        filled block by block (``preview`` until every block is done).
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
    label_map: LabelMap | None = None


class StudioImage:
    """One open image: its raster, display pyramid, feature stack, samples and last result.

    An image within ``max_pixels`` is read whole (``raster``, a memory map for an
    uncompressed TIFF); a larger one (``large``: only single-page TIFFs, read by windows)
    has ``raster`` None and is read through ``windows`` only.
    """

    def __init__(self, image_id: int, path: Path, max_pixels: int) -> None:
        from imagelearn.segment import read_raster
        from imagelearn.segment.windowed import ArrayRaster, geotiff_pixel_size, open_windowed

        self.id = image_id
        self.path = path
        windows = open_windowed(path, max_pixels=max_pixels)
        self.height, self.width, self.bands = windows.shape
        self.large = self.width * self.height > max_pixels
        self.raster: np.ndarray | None = None
        if not self.large:
            if not windows.whole:
                windows.close()
                windows = ArrayRaster(path, read_raster(path, max_pixels=max_pixels))
            self.raster = windows.array
        self.windows = windows
        self.pyramid = TilePyramid(windows)
        #: Ground size of a pixel (x, y) in metres from the GeoTIFF's tags, or None.
        self.pixel_size = geotiff_pixel_size(path)
        self.lock = threading.Lock()
        self._features: np.ndarray | None = None
        self.samples = SparseLabels(self.shape)
        self.validation = SparseLabels(self.shape)
        self.reference: np.ndarray | None = None
        self.result: Result | None = None
        self.versions = itertools.count(1)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def levels(self) -> int:
        """Pyramid levels: level ``k`` halves the image ``k`` times; the last fits one tile."""
        return self.pyramid.levels

    def tile(self, level: int, column: int, row: int) -> bytes:
        """JPEG of one display tile, or ``StudioError`` 404 outside the image."""
        try:
            return self.pyramid.tile(level, column, row)
        except LookupError as error:
            raise StudioError(404, str(error)) from None
        except ImageReadError as error:
            raise StudioError(422, f"{self.path.name}: {error.reason}") from None

    def features(self, pixel_features) -> np.ndarray | None:
        """The whole feature stack (cached), or None beyond :data:`FEATURE_CACHE_PIXELS`."""
        if self.width * self.height > FEATURE_CACHE_PIXELS:
            return None
        if self._features is None:
            self._features = pixel_features.transform(np.asarray(self.raster))
        return self._features

    def set_result(self, result: Result) -> None:
        """Make ``result`` the image's class map (the files of a replaced map are removed)."""
        old, self.result = self.result, result
        if old is not None and old.label_map is not None and old.label_map is not result.label_map:
            old.label_map.close()


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
        """Each image's id, name and size, ``large`` (opened as a map) or why it cannot open."""
        from imagelearn.segment.windowed import readable_by_windows

        rows = []
        for image_id, path in enumerate(self.paths):
            row: dict[str, Any] = {"id": image_id, "name": path.name}
            try:
                with open_image(path, max_pixels=None) as image:
                    row["width"], row["height"] = image.size
            except ImageReadError as error:
                row["error"] = error.reason
            else:
                row["large"] = row["width"] * row["height"] > self.max_pixels
                if row["large"] and not readable_by_windows(path):
                    row["error"] = (
                        f"more pixels than the limit of {self.max_pixels}; "
                        "save it as a single-page TIFF to open it as a map"
                    )
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

    def pixel_size_of(self, image: StudioImage) -> tuple[float, float] | None:
        """Ground size (x, y) of a pixel in metres: the studio's setting (``--pixel-size``, the
        page's field), else the image's GeoTIFF tags, else None."""
        if self.pixel_size is not None:
            return float(self.pixel_size), float(self.pixel_size)
        return image.pixel_size

    def describe_image(self, image: StudioImage) -> dict:
        return {
            "id": image.id,
            "name": image.path.name,
            "width": image.width,
            "height": image.height,
            "bands": image.bands,
            "large": image.large,
            "levels": image.levels,
            "overview_level": image.pyramid.overview_level,
            "tile_size": TILE_SIDE,
            "chunk": CHUNK,
            "pixel_size": self.pixel_size_of(image),
            "samples": self._counts(image.samples),
            "validation": self._counts(image.validation),
            "reference": self._counts(image.reference),
            "windows": {kind: self.sample_windows(image, kind) for kind in ("train", "validation")},
            "result": self.describe_result(image),
        }

    def _counts(self, mask: SparseLabels | np.ndarray | None) -> dict[str, int] | None:
        if mask is None or not mask.any():
            return None
        if isinstance(mask, SparseLabels):
            counts = mask.counts(len(self.classes))
        else:
            counts = np.bincount(mask.ravel(), minlength=len(self.classes) + 1)
        return {item.name: int(counts[k + 1]) for k, item in enumerate(self.classes)}

    def set_classes(self, classes: Sequence[tuple[str, str]]) -> None:
        checked = check_classes(classes)
        if len(checked) < len(self.classes):  # stored labels of removed classes are dropped
            for image in self._open.values():
                image.samples.drop_above(len(checked))
                image.validation.drop_above(len(checked))
                if image.reference is not None:
                    image.reference[image.reference > len(checked)] = 0
        self.classes = checked

    def _layer(self, image: StudioImage, kind: str) -> SparseLabels:
        return image.samples if kind == "train" else image.validation

    def sample_windows(self, image: StudioImage, kind: str) -> list[list[int]]:
        """``[left, top, width, height]`` of each block of ``kind`` samples holding a label."""
        return [
            [left, top, block.shape[1], block.shape[0]]
            for top, left, block in self._layer(image, kind).blocks()
        ]

    def _check_window(self, image: StudioImage, window: tuple[int, int, int, int]) -> None:
        left, top, width, height = window
        if width < 1 or height < 1 or width * height > WINDOW_PIXELS:
            raise StudioError(
                422, f"a window has 1 to {WINDOW_PIXELS} pixels, got {width}x{height}"
            )
        if left < 0 or top < 0 or left + width > image.width or top + height > image.height:
            raise StudioError(
                422,
                f"the {width}x{height} window at ({left}, {top}) runs outside the "
                f"{image.width}x{image.height} image",
            )

    def _check_whole(self, image: StudioImage, what: str) -> None:
        if image.large:
            raise StudioError(
                413,
                f"{what}: the image has {image.width}x{image.height} pixels, more than the "
                f"limit of {self.max_pixels} for a whole image; send or ask for windows "
                "(left, top) instead",
            )

    def labels_png(
        self, image: StudioImage, kind: str, window: tuple[int, int, int, int] | None = None
    ) -> bytes:
        """The stored samples (``kind`` train/validation) as the page sends them: an RGBA PNG
        of the class colours, transparent where unlabelled; of the whole image, or of
        ``window`` ``(left, top, width, height)``."""
        mask = self._layer(image, kind)
        if window is None:
            if not mask.any():
                raise StudioError(404, f"no {kind} samples stored for this image")
            self._check_whole(image, f"{kind} samples")
            window = (0, 0, image.width, image.height)
        self._check_window(image, window)
        left, top, width, height = window
        palette = overlay_palette([c.color for c in self.classes])
        labels = mask.read(top, left, height, width)
        return png_bytes(palette[np.minimum(labels, len(self.classes))])

    def set_labels(
        self, image: StudioImage, kind: str, data: bytes, at: tuple[int, int] | None = None
    ) -> dict[str, int] | None:
        """Store an uploaded samples (``kind`` train/validation) or reference PNG: of the whole
        image, or (samples only) a window whose top-left corner is at ``(left, top)``,
        replacing the labels there. Returns the counts of the kind's labels."""
        what = {"train": "samples", "validation": "validation samples", "reference": "reference"}
        if at is None:
            self._check_whole(image, what[kind])
            mask = read_label_png(data, image.shape, self.classes, what[kind])
            if kind == "reference":
                image.reference = mask
                return self._counts(mask)
            setattr(image, {"train": "samples"}.get(kind, kind), SparseLabels.from_dense(mask))
            return self._counts(self._layer(image, kind))
        if kind == "reference":
            raise StudioError(422, "a reference mask is sent whole, not by windows")
        labels = read_label_png(data, None, self.classes, what[kind])
        left, top = at
        self._check_window(image, (left, top, labels.shape[1], labels.shape[0]))
        layer = self._layer(image, kind)
        layer.write(top, left, labels)
        return self._counts(layer)

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
            except JobStopped as stopped:
                job.state, job.stage = "stopped", str(stopped)
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
        counts = image.samples.counts(MAX_CLASSES)
        if not counts[1:].any():
            raise StudioError(409, "paint samples of at least two classes first")
        if np.count_nonzero(counts[1:]) < 2:
            raise StudioError(409, "the samples hold one class only; paint a second class")
        blocks = [(top, left, block.copy()) for top, left, block in image.samples.blocks()]
        classes = list(self.classes)
        return self._submit(
            image, "train", lambda job: self._train(job, image, blocks, classes, n_estimators)
        )

    def _train(
        self,
        job: Job,
        image: StudioImage,
        blocks: list[tuple[int, int, np.ndarray]],
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
        if image.large:  # features of the windows around the strokes only
            rows, labels = self._sample_features(image, features, blocks)
            since = self._stage(job, "training", 0.1, since)
            model.fit_features(rows, labels, names, image.bands)
            self._stage(job, "predicting", 0.1, since)
            self._predict_map(job, image, model, names, colors)
            return
        mask = SparseLabels(image.shape)
        for top, left, block in blocks:
            mask.write(top, left, block)
        mask = mask.dense()
        stack = image.features(features)
        since = self._stage(job, "training", 0.4, since)
        if stack is None:  # too large to keep: tile by tile, as the CLI does
            model.fit(image.raster, mask, names)
            since = self._stage(job, "predicting", 0.6, since)
            self._publish(image, model, model.predict_proba(image.raster), names, colors, job)
            self._stage(job, "done", 1.0, since)
            return
        labelled = mask > 0
        model.fit_features(stack[labelled], mask[labelled], names, image.bands)
        step = max(1, int(np.ceil(np.sqrt(image.width * image.height / PREVIEW_PIXELS))))
        step = max(step, preview_step(image.shape))
        if step > 1:
            since = self._stage(job, "preview", 0.55, since)
            proba = model.predict_proba_features(stack[::step, ::step])
            self._publish(image, model, proba, names, colors, job, preview=step)
        since = self._stage(job, "predicting", 0.75, since)
        self._publish(image, model, model.predict_proba_features(stack), names, colors, job)
        self._stage(job, "done", 1.0, since)

    @staticmethod
    def _sample_features(
        image: StudioImage, features, blocks: list[tuple[int, int, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Features ``(N, F)`` and labels ``(N,)`` of the labelled pixels of ``blocks``, each
        computed on the bounding box of the block's labels with the features' halo (so equal
        to the whole image's)."""
        margin = features.margin
        rows, labels = [], []
        for top, left, block in blocks:
            ys, xs = np.nonzero(block)
            if not ys.size:
                continue
            box = block[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
            top, left = top + int(ys.min()), left + int(xs.min())
            read = (
                slice(max(0, top - margin), min(image.height, top + box.shape[0] + margin)),
                slice(max(0, left - margin), min(image.width, left + box.shape[1] + margin)),
            )
            stack = features.transform(image.windows.read(*read))
            core = stack[
                top - read[0].start : top - read[0].start + box.shape[0],
                left - read[1].start : left - read[1].start + box.shape[1],
            ]
            labelled = box > 0
            rows.append(core[labelled])
            labels.append(box[labelled])
        return np.concatenate(rows), np.concatenate(labels)

    def _predict_map(
        self, job: Job, image: StudioImage, model, names: list[str], colors: list[Color]
    ) -> None:
        """Predict a large image block by block into a :class:`LabelMap` that becomes its
        result at once (the page shows the blocks as they come); stops early, leaving the map
        partial, when another job is waiting."""
        label_map = LabelMap(image.shape, len(names))
        result = Result(
            "classifier",
            label_map.labels,
            None,
            names,
            colors,
            True,
            1,
            dict(job.seconds),
            model,
            next(image.versions),
            label_map=label_map,
        )
        image.set_result(result)
        margin = model.features_.margin
        table = model.classes_.astype(np.uint8)
        while (block := label_map.next_block()) is not None:
            if not self._queue.empty():
                raise JobStopped(
                    f"stopped for a newer job after {label_map.n_done} of "
                    f"{label_map.n_blocks} blocks"
                )
            rows, columns = label_map.block_window(*block)
            read = (
                slice(max(0, rows.start - margin), min(image.height, rows.stop + margin)),
                slice(max(0, columns.start - margin), min(image.width, columns.stop + margin)),
            )
            proba = model.predict_proba(image.windows.read(*read))
            proba = proba[
                rows.start - read[0].start : rows.stop - read[0].start,
                columns.start - read[1].start : columns.stop - read[1].start,
            ]
            uncertainty = np.round(255 * (1 - proba.max(axis=2))).astype(np.uint8)
            label_map.put(*block, table[proba.argmax(axis=2)], uncertainty)
            if "to_overlay" not in job.seconds:
                job.seconds["to_overlay"] = time.perf_counter() - job.started
            job.progress = 0.1 + 0.9 * label_map.n_done / label_map.n_blocks
            job.stage = f"predicting: {label_map.n_done} of {label_map.n_blocks} blocks"
        result.preview = False
        result.seconds = dict(job.seconds)
        job.seconds["to_map"] = time.perf_counter() - job.started

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
        image.set_result(
            Result(
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
            if image.large:
                self._predict_map(job, image, model, names, colors)
                return
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
        if image.large:
            raise StudioError(
                409,
                f"clustering a map of {image.width}x{image.height} pixels is not done in the "
                "studio; use `imagelearn segment cluster`, or train on painted samples",
            )

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
            image.set_result(
                Result(
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
        image.set_result(
            Result(
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
        )

    # ------------------------------------------------------------ results

    def result(self, image: StudioImage) -> Result:
        if image.result is None:
            raise StudioError(404, "no class map yet: train or cluster first")
        return image.result

    def _areas(self, image: StudioImage, result: Result) -> list[dict]:
        """Pixels, per cent and (with a pixel size) square metres of each class; a map's
        per cent are of the pixels predicted so far."""
        from imagelearn.evaluation.segmentation import class_areas

        if result.label_map is not None:
            counts = result.label_map.counts
            total = max(1, int(counts.sum()))
            areas = [
                {
                    "label": label,
                    "class": name,
                    "pixels": int(counts[label]),
                    "percent": 100.0 * int(counts[label]) / total,
                }
                for label, name in enumerate(result.class_names, start=1)
            ]
        else:
            areas = class_areas(result.labels, result.class_names)
            scale = float(result.step**2) if result.preview else 1.0
            for row in areas:
                row["pixels"] = round(row["pixels"] * scale)
        pixel_size = self.pixel_size_of(image)
        if pixel_size is not None:
            for row in areas:
                row["square_metres"] = row["pixels"] * pixel_size[0] * pixel_size[1]
        return areas

    def describe_result(self, image: StudioImage) -> dict | None:
        result = image.result
        if result is None:
            return None
        described = {
            "kind": result.kind,
            "version": result.version,
            "preview": result.preview,
            "classes": [
                {"name": name, "color": hex_color(color)}
                for name, color in zip(result.class_names, result.colors, strict=True)
            ],
            "areas": self._areas(image, result),
            "uncertainty": result.uncertainty is not None or result.label_map is not None,
            "seconds": {key: round(value, 3) for key, value in result.seconds.items()},
            "tiled": result.label_map is not None,
        }
        if result.label_map is not None:
            described["blocks"] = {
                "done": result.label_map.n_done,
                "total": result.label_map.n_blocks,
            }
        return described

    def overlay(self, image: StudioImage, kind: str) -> bytes:
        """RGBA PNG at preview size: class colours (unlabelled transparent) or uncertainty."""
        from imagelearn.segment.render import preview_step

        result = self.result(image)
        if result.label_map is not None:  # a map being filled: decimated now, never kept
            step = preview_step(image.shape)
            source = result.labels if kind == "classes" else result.label_map.uncertainty
            pixels = np.asarray(source[::step, ::step])
            if kind == "classes":
                return png_bytes(overlay_palette(result.colors)[pixels])
            return png_bytes(uncertainty_rgba(pixels))
        if kind not in result.overlays:
            if kind == "classes":
                step = 1 if result.preview else preview_step(result.labels.shape)
                labels = result.labels[::step, ::step]
                result.overlays[kind] = png_bytes(overlay_palette(result.colors)[labels])
            else:
                if result.uncertainty is None:
                    raise StudioError(404, "this class map has no uncertainty (not a classifier)")
                result.overlays[kind] = png_bytes(uncertainty_rgba(result.uncertainty))
        return result.overlays[kind]

    def overlay_tile(
        self, image: StudioImage, kind: str, level: int, column: int, row: int
    ) -> bytes:
        """RGBA PNG of one overlay tile of a map's class map (as the display tiles are cut;
        transparent where not predicted yet); asking for it brings its blocks forward."""
        result = self.result(image)
        if result.label_map is None:
            raise StudioError(409, "this class map is one overlay image: GET .../overlay")
        try:
            rgba = result.label_map.overlay_tile(kind, level, column, row, result.colors)
        except LookupError as error:
            raise StudioError(404, str(error)) from None
        return png_bytes(rgba)

    def accuracy(self, image: StudioImage, against: str) -> dict:
        """The accuracy report of the class map against the reference or validation samples."""
        from imagelearn.evaluation.segmentation import accuracy_report

        result = self.result(image)
        if result.preview:
            raise StudioError(409, "the full class map is still being predicted")
        layer = image.reference if against == "reference" else image.validation
        if layer is None or not layer.any():
            wanted = "a reference mask" if against == "reference" else "validation samples"
            raise StudioError(409, f"give {wanted} first")
        names = [c.name for c in self.classes]
        if result.class_names != names:
            raise StudioError(409, "the classes changed since the map was made; train again")
        if isinstance(layer, np.ndarray):
            return accuracy_report(layer, result.labels, names)
        reference, mapped = [], []
        for top, left, block in layer.blocks():  # the map's pixels under the validation blocks
            height, width = block.shape
            labelled = block > 0
            reference.append(block[labelled])
            mapped.append(
                np.asarray(result.labels[top : top + height, left : left + width])[labelled]
            )
        return accuracy_report(np.concatenate(reference), np.concatenate(mapped), names)

    def save(self, image: StudioImage) -> dict:
        """Write samples, model bundle, class map (PNG, TIFF), overlay, areas and report to
        ``out/<image stem>/`` (a map: samples and class map as tiled TIFFs, no whole-image
        PNGs); returns what was written."""
        import tifffile

        from imagelearn.segment.render import (
            write_areas,
            write_classmap_png,
            write_legend_png,
            write_results,
        )

        folder = self.out / image.path.stem
        folder.mkdir(parents=True, exist_ok=True)
        colors = [c.color for c in self.classes]
        written = []
        suffix = ".tif" if image.large else ".png"
        for name, layer in (("samples", image.samples), ("validation", image.validation)):
            if layer.any():
                if image.large:
                    write_label_tiff(folder / f"{name}.tif", image.shape, layer.read)
                else:
                    write_classmap_png(folder / f"{name}.png", layer.dense(), colors)
                written.append(name + suffix)
        pixel_size = self.pixel_size_of(image)
        report: dict[str, Any] = {
            "image": image.path.name,
            "classes": [{"name": c.name, "color": hex_color(c.color)} for c in self.classes],
            "samples": self._counts(image.samples),
            "pixel_size": list(pixel_size) if pixel_size else None,
        }
        result = image.result
        if result is not None and not result.preview:
            if image.large:
                areas = self._areas(image, result)
                labels = result.labels
                write_label_tiff(
                    folder / "classmap.tif",
                    image.shape,
                    lambda top, left, height, width: labels[
                        top : top + height, left : left + width
                    ],
                )
                write_legend_png(folder / "legend.png", areas, result.colors, "classes")
                write_areas(folder, areas)
                written += ["classmap.tif", "legend.png", "areas.csv"]
            else:
                side = None if pixel_size is None else float(np.sqrt(pixel_size[0] * pixel_size[1]))
                areas = write_results(
                    folder, image.raster, result.labels, result.class_names, result.colors, side
                )
                buffer = io.BytesIO()
                tifffile.imwrite(buffer, result.labels)
                atomic_write_bytes(folder / "classmap.tif", buffer.getvalue())
                written += [
                    "classmap.png",
                    "classmap.tif",
                    "overlay.png",
                    "legend.png",
                    "areas.csv",
                ]
            report["areas"] = areas
            report["seconds"] = result.seconds
            if result.model is not None:
                metadata = {
                    "images": [str(image.path)],
                    "samples": [str(folder / f"samples{suffix}")],
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


def write_label_tiff(
    path: Path, shape: tuple[int, int], read: Callable[[int, int, int, int], np.ndarray]
) -> None:
    """A uint8 label image ``shape`` as a tiled deflate TIFF, from ``read(top, left, height,
    width)`` one tile at a time (a map is never whole in memory); atomic."""
    import tifffile

    height, width = shape

    def tiles():
        for top in range(0, height, CHUNK):
            for left in range(0, width, CHUNK):
                block = np.zeros((CHUNK, CHUNK), np.uint8)
                rows, columns = min(CHUNK, height - top), min(CHUNK, width - left)
                block[:rows, :columns] = read(top, left, rows, columns)
                yield block

    staging = path.with_name(f".{path.name}.partial")
    tifffile.imwrite(
        staging, tiles(), shape=shape, dtype=np.uint8, tile=(CHUNK, CHUNK), compression="zlib"
    )
    os.replace(staging, path)
