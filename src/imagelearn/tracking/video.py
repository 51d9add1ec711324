"""Video input and output for tracking.

Frames from a video file or a folder of images, the per-frame CSV, annotated frames saved as
a video or an animated GIF, and OTB ground-truth boxes.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from imagelearn.core.bundle import atomic_write_text
from imagelearn.core.errors import ImagelearnError
from imagelearn.core.images import ImageReadError, load_image
from imagelearn.tracking.tracker import TrackedFrame

#: FFmpeg's log level "quiet" (``AV_LOG_QUIET``), unless the user set ``OPENCV_FFMPEG_LOGLEVEL``.
_FFMPEG_QUIET = -8


class VideoError(ImagelearnError, ValueError):
    """A video file or frame folder with no frame that can be read; the message names it."""


@dataclass
class Frames:
    """The frames of a video file, or of a folder of images in name order, read lazily.

    Iterating yields ``(number, frame)``: the frame's position from 0 (in the video, or among
    the folder's images) and its RGB uint8 array ``(H, W, 3)``. What cannot be read is not
    fatal while at least one frame can: an unreadable image of a folder is skipped, and a
    video whose decoding stops before its stated frame count ends there; both are listed in
    ``skipped`` as ``(source, reason)``, as collections report their unreadable files.

    Parameters
    ----------
    source : path-like
        A video file OpenCV reads, or a folder of images.
    max_frames : int, optional
        Stop after this many frame positions.

    Raises
    ------
    VideoError
        ``source`` is missing or an empty folder; while iterating, not a video, or no frame
        of it can be read.
    """

    source: str | os.PathLike
    max_frames: int | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        from imagelearn.data.collection import find_images

        source = Path(self.source)
        if source.is_dir():
            self._folder_paths: list[Path] | None = find_images(source, recursive=False)
            if not self._folder_paths:
                raise VideoError(f"{source}: a folder without image frames")
        elif source.exists():
            self._folder_paths = None
        else:
            raise VideoError(f"{source}: no such video file or frame folder")

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        self.skipped.clear()
        frames = self._folder_frames() if self._folder_paths is not None else self._video_frames()
        n_read = 0
        for number, frame in frames:
            n_read += 1
            yield number, frame
        if n_read == 0 and self.skipped:
            where, reason = self.skipped[0]
            raise VideoError(
                f"{self.source}: no frame could be read ({len(self.skipped)} unreadable, "
                f"the first: {where}: {reason})"
            )

    def _folder_frames(self) -> Iterator[tuple[int, np.ndarray]]:
        for number, path in enumerate(self._folder_paths[: self.max_frames]):
            try:
                yield number, load_image(path, "RGB")
            except ImageReadError as error:
                self.skipped.append((error.path, error.reason))

    def _video_frames(self) -> Iterator[tuple[int, np.ndarray]]:
        video = Path(self.source)
        # FFmpeg's own messages about a broken stream are replaced by one of ours.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", str(_FFMPEG_QUIET))
        capture = cv2.VideoCapture(str(video))
        if not capture.isOpened():
            raise VideoError(f"{video}: not a video OpenCV can read (unknown format or truncated)")
        try:
            stated = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            number, ok = 0, True
            while self.max_frames is None or number < self.max_frames:
                ok, frame = capture.read()
                if not ok:
                    break
                yield number, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                number += 1
        finally:
            capture.release()
        if number == 0 and (self.max_frames is None or self.max_frames > 0):
            raise VideoError(f"{video}: no frame could be decoded")
        if not ok and number < stated:
            self.skipped.append(
                (str(video), f"truncated or unreadable after frame {number - 1} of {stated}")
            )


def read_frames(source: str | os.PathLike, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """RGB uint8 frames of a video file, or of a folder of images in name order.

    Unreadable frames are skipped (see :class:`Frames`, which also reports them).

    Raises
    ------
    VideoError
        ``source`` is missing, not a video, an empty folder, or no frame of it can be read.
    """
    return (frame for _, frame in Frames(source, max_frames))


def write_track_csv(tracked: Iterable[TrackedFrame], path: str | os.PathLike) -> Path:
    """CSV with one row per frame: frame, x, y, w, h, confidence, inliers, h11..h33 (empty when lost)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "frame",
            "x",
            "y",
            "w",
            "h",
            "confidence",
            "inliers",
            *[f"h{r}{c}" for r in (1, 2, 3) for c in (1, 2, 3)],
        ]
    )
    for item in tracked:
        box = [f"{v:.2f}" for v in item.box] if item.box else [""] * 4
        homography = (
            [f"{v:.8g}" for v in item.homography.ravel()]
            if item.homography is not None
            else [""] * 9
        )
        writer.writerow([item.frame, *box, f"{item.confidence:.4f}", item.inliers, *homography])
    atomic_write_text(path, buffer.getvalue())
    return Path(path)


def annotate(frame: np.ndarray, tracked: TrackedFrame) -> np.ndarray:
    """A copy of the frame with the object's outline (green) and its confidence written."""
    annotated = np.ascontiguousarray(frame.copy())
    if tracked.corners is not None:
        cv2.polylines(annotated, [np.round(tracked.corners).astype(np.int32)], True, (0, 255, 0), 2)
    label = f"{tracked.frame}: " + (
        f"conf {tracked.confidence:.2f}" if tracked.corners is not None else "lost"
    )
    cv2.putText(
        annotated, label, (5, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1, cv2.LINE_AA
    )
    return annotated


def write_annotated(frames: list[np.ndarray], path: str | os.PathLike, fps: float = 10.0) -> Path:
    """Save annotated frames as an animated GIF (``.gif``) or a video (``.mp4``/``.avi``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    if path.suffix.lower() == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        images[0].save(
            temporary, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0
        )
    else:
        codec = "mp4v" if path.suffix.lower() == ".mp4" else "MJPG"
        height, width = frames[0].shape[:2]
        writer = cv2.VideoWriter(
            str(temporary), cv2.VideoWriter_fourcc(*codec), fps, (width, height)
        )
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
    os.replace(temporary, path)
    return path


def read_otb_boxes(path: str | os.PathLike) -> np.ndarray:
    """OTB ``groundtruth_rect.txt``: (n_frames, 4) float64 x, y, w, h (tab, comma or space separated).

    OTB boxes are 1-based; they are returned 0-based.
    """
    rows = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            rows.append([float(v) for v in line.replace(",", " ").split()])
    boxes = np.asarray(rows, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{path}: expected 4 numbers (x, y, w, h) per line")
    boxes[:, :2] -= 1.0
    return boxes
