"""Tracking scores: box overlap (IoU) and the OTB success rate."""

from __future__ import annotations

import numpy as np

#: An axis-aligned box (x, y, width, height) in pixels.
Box = tuple[float, float, float, float]


def box_iou(first: Box | None, second: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes; 0 when ``first`` is None."""
    if first is None:
        return 0.0
    x0, y0 = max(first[0], second[0]), max(first[1], second[1])
    x1 = min(first[0] + first[2], second[0] + second[2])
    y1 = min(first[1] + first[3], second[1] + second[3])
    intersection = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = first[2] * first[3] + second[2] * second[3] - intersection
    return intersection / union if union > 0 else 0.0


def success_rate(predicted: list[Box | None], truth: np.ndarray, threshold: float = 0.5) -> float:
    """OTB success rate: share of frames whose box overlaps the truth with IoU > ``threshold``."""
    overlaps = [box_iou(box, tuple(row)) for box, row in zip(predicted, truth, strict=False)]
    return float(np.mean(np.array(overlaps) > threshold)) if overlaps else 0.0
