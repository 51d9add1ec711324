"""The visual words of a BoF run in the web app (``/api/words``), with FastAPI's test client, on a
small model trained on real flowers5 photos: only the runs the server was given, a word's
montage, an image's histogram as the model encodes it, and refused requests."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient
from PIL import Image

from conftest import data_path
from imagelearn.bof.inspection import CAPTION, TILE
from imagelearn.bof.recognition import BofClassifier
from imagelearn.bof.runs import train_run
from imagelearn.web import create_app

BASE = "http://127.0.0.1"
CHANNELS = [
    {
        "detector": "dense_rootsift",
        "detector_params": {"step": 12},
        "n_words": 24,
        "pyramid": (1, 2),
    },
    {"detector": "dense_lab", "detector_params": {"step": 12}, "n_words": 12, "pyramid": (1,)},
]


@pytest.fixture(scope="module")
def runs_folder(tmp_path_factory):
    """A folder holding one BoF run (``flowers``, trained on 9 of 15 photos of 3 classes, 6
    held out) and one folder that is no run."""
    root = data_path("flowers5")
    folder = tmp_path_factory.mktemp("runs")
    listing = folder / "photos.csv"
    with listing.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["path", "label"])
        for name in ("daisy", "rose", "sunflower"):
            for photo in sorted((root / name).glob("*.jpg"))[:5]:
                writer.writerow([str(photo), name])
    model = BofClassifier(channels=CHANNELS, n_jobs=1, cache_dir=tmp_path_factory.mktemp("cache"))
    train_run(listing, folder / "flowers", model, test_size=0.4)
    (folder / "notes").mkdir()
    return folder


@pytest.fixture(scope="module")
def client(runs_folder, tmp_path_factory):
    app = create_app(None, review=[runs_folder], thumbnail_dir=tmp_path_factory.mktemp("thumbs"))
    with TestClient(app, base_url=BASE) as test_client:
        yield test_client


def test_lists_only_the_bof_runs_below_the_given_folder(client, runs_folder):
    answer = client.get("/api/words/runs").json()
    assert answer == {"runs": [{"name": f"{runs_folder.name}/flowers"}]}


def test_run_words_ranked_by_svm_weight_with_montages(client, runs_folder):
    run = f"{runs_folder.name}/flowers"
    answer = client.get("/api/words/run", params={"run": run, "top": 5}).json()
    assert [channel["detector"] for channel in answer["channels"]] == [
        "dense_rootsift",
        "dense_lab",
    ]
    assert answer["n_images"] == 6 and answer["sample_images"] == 6  # the held-out images
    weights = [word["svm_weight"] for word in answer["words"]]
    assert len(weights) == 5 and weights == sorted(weights, reverse=True)
    word = answer["words"][0]
    response = client.get("/api/words/montage", params={"run": run, "word": word["word"]})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    montage = Image.open(io.BytesIO(response.content))
    rows = -(-word["shown"] // 8)
    assert montage.size[1] == CAPTION + rows * TILE
    lab = client.get("/api/words/run", params={"run": run, "channel": "dense_lab"}).json()
    assert lab["channel"] == 1 and all(w["word"] < 12 for w in lab["words"])


def test_image_histogram_is_the_models_encoding(client, runs_folder):
    run = f"{runs_folder.name}/flowers"
    answer = client.get("/api/words/image", params={"run": run, "image": 2, "top": 3}).json()
    model = BofClassifier.load(runs_folder / "flowers").set_params(n_jobs=1)
    listed = client.get("/api/words/run", params={"run": run}).json()["images"]
    assert answer["image"] == listed[2]
    path = client.app.state.review.open(run).image_path(2)  # as the review page numbers it
    held_out = json.loads((runs_folder / "flowers" / "split.json").read_text())["held_out"]
    assert str(path) in [listed_path for listed_path, _ in held_out]
    encoded = model.channels_[0].transform([path])[0][:24]
    histogram = np.zeros(24)
    for word, weight in answer["words"].items():
        histogram[int(word)] = weight
    np.testing.assert_allclose(histogram, encoded, rtol=1e-5)
    assert [top["word"] for top in answer["top_words"]] == list(
        np.argsort(-encoded, kind="stable")[:3]
    )
    drawn = client.get("/api/words/image.png", params={"run": run, "image": 2})
    assert drawn.status_code == 200 and Image.open(io.BytesIO(drawn.content)).size[0] > 0


def test_refused_and_missing(client, runs_folder, tmp_path):
    root = runs_folder.name
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (runs_folder / "link").symlink_to(outside)
    cases = {
        f"{root}/../x": 403,
        f"{root}/link": 403,
        "/etc": 403,
        "other": 404,
        f"{root}/missing": 404,
        f"{root}/notes": 422,
        root: 422,
    }
    for run, status in cases.items():
        response = client.get("/api/words/run", params={"run": run})
        assert response.status_code == status, (run, response.json())
        assert str(runs_folder) not in response.json()["detail"]
    run = f"{root}/flowers"
    assert client.get("/api/words/montage", params={"run": run, "word": 24}).status_code == 404
    assert client.get("/api/words/image", params={"run": run, "image": 6}).status_code == 404
    answer = client.get("/api/words/run", params={"run": run, "channel": "orb"})
    assert answer.status_code == 404 and "dense_lab" in answer.json()["detail"]


def test_a_server_without_runs_shows_no_words(tmp_path):
    photo = next(data_path("flowers5", "daisy").glob("*.jpg"))
    app = create_app(None, studio=photo, studio_out=tmp_path / "out", thumbnail_dir=tmp_path / "t")
    with TestClient(app, base_url=BASE) as test_client:
        answer = test_client.get("/api/words/runs")
        assert answer.json() == {"runs": []}
        refused = test_client.get("/api/words/run", params={"run": "flowers"})
        assert refused.status_code == 404 and "--review" in refused.json()["detail"]
