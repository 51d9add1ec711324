"""A test video with known truth: a real object photo moving over real background photos."""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image


def moving_object_video(
    photo: np.ndarray,
    backgrounds: Sequence[str | os.PathLike],
    n_frames: int = 16,
    frame_size: tuple[int, int] = (320, 240),
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames of ``photo`` moving, growing and turning over ``backgrounds``, with true corners.

    Over the video the photo moves right (and along a sine up and down), grows from 0.45 to
    0.70 of its size and turns by 35 degrees; the backgrounds follow one another in equal
    parts.

    Parameters
    ----------
    photo : ndarray (height, width, 3) uint8
        The object, RGB.
    backgrounds : sequence of image files
        Resized to ``frame_size``.
    n_frames : int
        At least 2.
    frame_size : (width, height)
        Pixels.

    Returns
    -------
    frames : list of ndarray (height, width, 3) uint8, RGB
    corners : list of ndarray (4, 2) float64
        Where the photo's corners (top-left, top-right, bottom-right, bottom-left) are in
        each frame, pixels.
    """
    height, width = photo.shape[:2]
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
    frames, truths = [], []
    for number in range(n_frames):
        progress = number / (n_frames - 1)
        background = np.asarray(
            Image.open(backgrounds[number * len(backgrounds) // n_frames])
            .convert("RGB")
            .resize(frame_size)
        )
        scale, angle = 0.45 + 0.25 * progress, 35.0 * progress
        centre = (90 + 140 * progress, 100 + 40 * np.sin(3 * progress))
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
        matrix[:, 2] += np.array(centre) - np.array([width / 2, height / 2])
        warped = cv2.warpAffine(photo, matrix, frame_size, flags=cv2.INTER_AREA)
        mask = cv2.warpAffine(np.full(photo.shape[:2], 255, np.uint8), matrix, frame_size) > 127
        frames.append(np.where(mask[..., None], warped, background))
        truths.append(corners @ matrix[:, :2].T + matrix[:, 2])
    return frames, truths
