"""Following one object through a video by recognising its photo in every frame.

>>> from imagelearn.tracking import ObjectTracker, video_run
>>> video_run("clip.mp4", "object.jpg", csv="track.csv").n_found  # doctest: +SKIP
"""

from typing import TYPE_CHECKING

from imagelearn.core.lazy import lazy_exports

if TYPE_CHECKING:
    from imagelearn.tracking.runs import TrackResult, video_run
    from imagelearn.tracking.tracker import ObjectTracker, TrackedFrame
    from imagelearn.tracking.video import (
        Frames,
        VideoError,
        annotate,
        read_frames,
        read_otb_boxes,
        write_annotated,
        write_track_csv,
    )

__all__ = [
    "Frames",
    "ObjectTracker",
    "TrackResult",
    "TrackedFrame",
    "VideoError",
    "annotate",
    "read_frames",
    "read_otb_boxes",
    "video_run",
    "write_annotated",
    "write_track_csv",
]

__getattr__, __dir__ = lazy_exports(__name__, __file__)
