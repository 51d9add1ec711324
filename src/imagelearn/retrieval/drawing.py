"""A PNG of a query beside its best matches, inlier correspondences drawn as lines."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from imagelearn.core.images import load_image
from imagelearn.core.plotting import pyplot, save_figure
from imagelearn.retrieval.index import SearchResult

#: Longer side (pixels) of each image in the figure.
PANEL_SIDE = 480
#: Most correspondence lines drawn per match.
MAX_LINES = 60


def _panel(image: np.ndarray) -> tuple[np.ndarray, float]:
    scale = PANEL_SIDE / max(image.shape[:2])
    height, width = (max(1, round(s * scale)) for s in image.shape[:2])
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height))), scale


def draw_matches(
    result: SearchResult,
    query: str | os.PathLike | np.ndarray,
    path: str | os.PathLike,
    n_matches: int = 4,
) -> Path:
    """Write a PNG: one row per match, the query on the left, the match on the right.

    Parameters
    ----------
    result : SearchResult
    query : path-like or ndarray
        The query image the result came from.
    path : path-like
        Output PNG (written atomically).
    n_matches : int
        Best matches shown.
    """
    plt = pyplot()
    query_image, query_scale = _panel(query if isinstance(query, np.ndarray) else load_image(query))
    matches = result.matches[:n_matches] or []
    rows = max(1, len(matches))
    figure, axes = plt.subplots(rows, 1, figsize=(10, 4 * rows), squeeze=False)
    for axis, match in zip(axes[:, 0], matches, strict=False):
        other, other_scale = _panel(load_image(match.path))
        height = max(query_image.shape[0], other.shape[0])
        canvas = np.full((height, query_image.shape[1] + other.shape[1], 3), 255, np.uint8)
        canvas[: query_image.shape[0], : query_image.shape[1]] = query_image
        canvas[: other.shape[0], query_image.shape[1] :] = other
        axis.imshow(canvas)
        if match.verification is not None and match.inliers:
            left = match.verification.query_points[:MAX_LINES] * query_scale
            right = match.verification.database_points[:MAX_LINES] * other_scale
            right = right + np.array([query_image.shape[1], 0])
            for (x0, y0), (x1, y1) in zip(left, right, strict=True):
                axis.plot([x0, x1], [y0, y1], "-", color="lime", linewidth=0.7)
        axis.set_title(
            f"{Path(match.path).name}  score {match.score:.3f}  inliers {match.inliers}", fontsize=9
        )
        axis.axis("off")
    if not matches:
        axes[0, 0].imshow(query_image)
        axes[0, 0].set_title("no match")
        axes[0, 0].axis("off")
    figure.tight_layout()
    return save_figure(figure, path)
