"""Video input and output for tracking.

Frames from a video file or a folder of images, the per-frame CSV, annotated frames saved as
a video or an animated GIF, and OTB ground-truth boxes.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from imagelearn.core.bundle import atomic_write_text
from imagelearn.core.images import load_image
from imagelearn.tracking.tracker import TrackedFrame


def read_frames(source: str | os.PathLike, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """RGB uint8 frames of a video file, or of a folder of images in name order.

    Raises
    ------
    FileNotFoundError
        ``source`` does not exist.
    ValueError
        A file OpenCV cannot decode as video.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such video file or frame folder")
    if source.is_dir():
        from imagelearn.data.collection import find_images

        for number, path in enumerate(find_images(source, recursive=False)):
            if max_frames is not None and number >= max_frames:
                return
            yield load_image(path, "RGB")
        return
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise ValueError(f"{source}: not a video OpenCV can read")
    try:
        number = 0
        while max_frames is None or number < max_frames:
            ok, frame = capture.read()
            if not ok:
                if number == 0:
                    raise ValueError(f"{source}: no frame could be decoded")
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            number += 1
    finally:
        capture.release()


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
