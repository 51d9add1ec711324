"""Moved to :mod:`imagelearn.tracking`; kept so that old imports still work.

The tracking scores moved to :mod:`imagelearn.evaluation.tracking`.
"""

from imagelearn.evaluation.tracking import Box, box_iou, success_rate
from imagelearn.tracking.tracker import ObjectTracker, TrackedFrame
from imagelearn.tracking.video import (
    annotate,
    read_frames,
    read_otb_boxes,
    write_annotated,
    write_track_csv,
)

__all__ = [
    "Box",
    "ObjectTracker",
    "TrackedFrame",
    "annotate",
    "box_iou",
    "read_frames",
    "read_otb_boxes",
    "success_rate",
    "write_annotated",
    "write_track_csv",
]
