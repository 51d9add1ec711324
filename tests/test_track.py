"""Following an object through a video made in the test from real photos."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import data_path
from imagelearn.cli.main import main
from imagelearn.core.images import load_image
from imagelearn.retrieval.tracking import ObjectTracker, read_frames, read_otb_boxes, success_rate

FRAME_SIZE = (320, 240)


def _synthetic_video(n_frames: int = 16) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """The box photo moving, growing and turning over real flower photos; true corners per frame."""
    photo = load_image(data_path("multiview", "opencv", "box.png"))
    backgrounds = sorted(data_path("flowers5", "daisy").glob("*.jpg"))[:4]
    height, width = photo.shape[:2]
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
    frames, truths = [], []
    for number in range(n_frames):
        progress = number / (n_frames - 1)
        background = np.asarray(
            Image.open(backgrounds[number * len(backgrounds) // n_frames])
            .convert("RGB")
            .resize(FRAME_SIZE)
        )
        scale, angle = 0.45 + 0.25 * progress, 35.0 * progress
        centre = (90 + 140 * progress, 100 + 40 * np.sin(3 * progress))
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
        matrix[:, 2] += np.array(centre) - np.array([width / 2, height / 2])
        warped = cv2.warpAffine(photo, matrix, FRAME_SIZE, flags=cv2.INTER_AREA)
        mask = cv2.warpAffine(np.full(photo.shape[:2], 255, np.uint8), matrix, FRAME_SIZE) > 127
        frames.append(np.where(mask[..., None], warped, background))
        truths.append(corners @ matrix[:, :2].T + matrix[:, 2])
    return photo, frames, truths


def test_the_object_is_followed_with_small_corner_error():
    photo, frames, truths = _synthetic_video()
    tracked = list(ObjectTracker().fit(photo).track(frames))
    assert all(t.homography is not None for t in tracked)
    errors = np.array(
        [
            np.linalg.norm(t.corners - truth, axis=1).max()
            for t, truth in zip(tracked, truths, strict=True)
        ]
    )
    assert np.median(errors) < 3.0 and errors.max() < 8.0, errors
    assert (
        sum(t.searched_window for t in tracked[1:]) >= len(tracked) - 3
    )  # previous estimate reused
    assert all(0 < t.confidence <= 1 for t in tracked)


def test_a_blank_object_photo_is_refused():
    with pytest.raises(ValueError, match="features"):
        ObjectTracker().fit(np.full((60, 60, 3), 200, np.uint8))


def test_cli_writes_csv_and_gif(tmp_path, capsys):
    photo, frames, _ = _synthetic_video(6)
    folder = tmp_path / "frames"
    folder.mkdir()
    for number, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{number:04d}.png")
    Image.fromarray(photo).save(tmp_path / "object.png")
    code = main(
        [
            "track",
            str(folder),
            "--query",
            str(tmp_path / "object.png"),
            "--csv",
            str(tmp_path / "track.csv"),
            "--out",
            str(tmp_path / "track.gif"),
        ]
    )
    assert code == 0 and "found: 6" in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "track.csv").open()))
    assert len(rows) == 6 and float(rows[0]["w"]) > 50 and rows[0]["h33"]
    assert (tmp_path / "track.gif").read_bytes()[:3] == b"GIF"


def test_otb_girl_first_frames_and_the_video_reader():
    folder = data_path("video", "otb_girl")
    truth = read_otb_boxes(folder / "groundtruth_rect.txt")
    frames = list(read_frames(folder / "img", max_frames=12))
    x, y, width, height = truth[0].astype(int)
    tracker = ObjectTracker(min_inliers=6).fit(frames[0][y : y + height, x : x + width])
    boxes = [t.box for t in tracker.track(frames)]
    assert success_rate(boxes, truth[:12]) >= 0.5
    video = next(read_frames(data_path("video", "vtest.avi"), max_frames=1))
    assert video.shape == (576, 768, 3)


def test_learning_the_appearance_keeps_the_otb_girl_longer():
    """Over 150 real frames the girl turns her head: the photo alone loses her sooner."""
    folder = data_path("video", "otb_girl")
    truth = read_otb_boxes(folder / "groundtruth_rect.txt")[:150]
    frames = list(read_frames(folder / "img", max_frames=150))
    x, y, width, height = truth[0].astype(int)
    photo = frames[0][y : y + height, x : x + width]
    rates = {}
    for adaptive in (False, True):
        tracker = ObjectTracker(
            min_inliers=6, update_model=adaptive, similarity_fallback=adaptive
        ).fit(photo)
        rates[adaptive] = success_rate([t.box for t in tracker.track(frames)], truth)
    assert rates[True] > rates[False] and rates[True] >= 0.38  # measured 0.353 and 0.407
