"""Tracking one object through a video, from the object photo to the written outputs."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from itertools import tee
from pathlib import Path

from imagelearn.core.images import load_image
from imagelearn.core.progress import progress
from imagelearn.evaluation.tracking import Box, success_rate
from imagelearn.tracking.tracker import ObjectTracker, TrackedFrame
from imagelearn.tracking.video import (
    Frames,
    annotate,
    read_otb_boxes,
    write_annotated,
    write_track_csv,
)


@dataclass(frozen=True)
class TrackResult:
    """What :func:`video_run` found and wrote.

    Attributes
    ----------
    frames : tuple of TrackedFrame
        One estimate per frame read, in order.
    csv : Path or None
        The per-frame CSV, when asked for.
    out : Path or None
        The annotated video or GIF, when asked for.
    success_rate : float or None
        OTB success rate (IoU > 0.5) against ``truth``, when given; a skipped frame counts
        as lost.
    skipped : tuple of (str, str)
        ``(source, reason)`` of the frames that could not be read: unreadable images of a
        frame folder, or the end of a truncated video.
    """

    frames: tuple[TrackedFrame, ...]
    csv: Path | None = None
    out: Path | None = None
    success_rate: float | None = None
    skipped: tuple[tuple[str, str], ...] = ()

    @property
    def n_found(self) -> int:
        """Frames in which the object was found."""
        return sum(frame.homography is not None for frame in self.frames)


def video_run(
    video: str | os.PathLike,
    query: str | os.PathLike,
    tracker: ObjectTracker | None = None,
    roi: tuple[int, int, int, int] | None = None,
    csv: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    truth: str | os.PathLike | None = None,
    max_frames: int | None = None,
    fps: float = 10.0,
) -> TrackResult:
    """Find the object photo ``query`` in every frame of ``video`` and write what was asked for.

    Parameters
    ----------
    video : path
        A video file, or a folder of frames in name order.
    query : path
        Photo of the object.
    tracker : ObjectTracker, optional
        Unfitted; it is fitted on the photo (default: ``ObjectTracker()``).
    roi : (x, y, width, height), optional
        The object's part of the photo, pixels.
    csv : path, optional
        Where to write per-frame boxes, confidence and homographies.
    out : path, optional
        Where to write the annotated frames: ``.mp4``, ``.avi`` or ``.gif``.
    truth : path, optional
        OTB ``groundtruth_rect.txt``: the result's ``success_rate`` is measured against it.
    max_frames : int, optional
        Stop after this many frames.
    fps : float
        Frame rate of ``out``.

    Raises
    ------
    VideoError
        ``video`` is missing, not a video, an empty folder, or none of its frames can be read.
    """
    frames = Frames(video, max_frames)
    truth_boxes = read_otb_boxes(truth) if truth is not None else None
    photo = load_image(query)
    if roi is not None:
        x, y, width, height = roi
        photo = photo[max(0, y) : y + height, max(0, x) : x + width]
    tracker = (tracker or ObjectTracker()).fit(photo)
    tracked, annotated = [], []
    numbered, searched = tee(progress(frames, "frames", unit="frame"))
    estimates = tracker.track(frame for _, frame in searched)
    for (number, frame), estimate in zip(numbered, estimates, strict=True):
        estimate = dataclasses.replace(estimate, frame=number)  # its place, skipped frames counted
        tracked.append(estimate)
        if out is not None:
            annotated.append(annotate(frame, estimate))
    return TrackResult(
        frames=tuple(tracked),
        csv=write_track_csv(tracked, csv) if csv is not None else None,
        out=write_annotated(annotated, out, fps) if annotated else None,
        success_rate=(
            success_rate(_boxes_by_frame(tracked), truth_boxes) if truth_boxes is not None else None
        ),
        skipped=tuple(frames.skipped),
    )


def _boxes_by_frame(tracked: list[TrackedFrame]) -> list[Box | None]:
    """The box of every frame position up to the last tracked one; None where a frame was skipped."""
    boxes: list[Box | None] = [None] * (tracked[-1].frame + 1 if tracked else 0)
    for estimate in tracked:
        boxes[estimate.frame] = estimate.box
    return boxes
