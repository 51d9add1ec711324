"""The studio's REST API (``imagelearn serve --studio``) with FastAPI's test client, on a crop of
a real Dubai aerial tile: every route, and its bad requests (samples of the wrong size or with
unknown colours, an image over the pixel limit, a corrupt one, a model that is not one)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient
from PIL import Image

from conftest import data_path
from imagelearn.core.errors import ParameterError
from imagelearn.web import create_app
from imagelearn.web.studio import DEFAULT_CLASSES, Studio

BASE = "http://127.0.0.1"
#: The crop of the Dubai tile (rows, columns) and the studio's pixel limit (the big image is over).
CROP = (slice(150, 350), slice(200, 440))
MAX_PIXELS = 100_000
#: Dubai mask colours of the classes in the crop, as named by the studio's defaults.
COLORS = dict(DEFAULT_CLASSES)


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def rgb(hex_color: str) -> tuple[int, int, int]:
    return tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5))


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    """Labels of the crop in the studio's default classes (0: unlabelled)."""
    from imagelearn.segment.samples import labels_from_colors

    mask = Image.open(data_path("dubai_landcover", "tile1", "masks", "image_part_001.png"))
    colors = [rgb(color) for _, color in DEFAULT_CLASSES]
    return labels_from_colors(np.asarray(mask.convert("RGB"))[CROP], colors)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """0: the Dubai crop (240x200), 1: an image over the pixel limit, 2: a corrupt JPEG."""
    source = tmp_path_factory.mktemp("studio-source")
    tile = Image.open(data_path("dubai_landcover", "tile1", "images", "image_part_001.jpg"))
    Image.fromarray(np.asarray(tile)[CROP]).save(source / "a-dubai.png")
    Image.new("RGB", (400, 300), (90, 120, 60)).save(source / "b-big.png")
    (source / "c-corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 40)
    return source


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("studio-out")


@pytest.fixture(scope="module")
def client(folder, out):
    app = create_app(None, studio=folder, studio_out=out, max_pixels=MAX_PIXELS)
    with TestClient(app, base_url=BASE) as client:
        client.studio = app.state.studio
        yield client


def samples_png(labels: np.ndarray, classes=DEFAULT_CLASSES) -> bytes:
    """Colour-coded RGBA samples, as the page sends them (transparent: unlabelled)."""
    table = np.array([(0, 0, 0, 0), *((*rgb(color), 255) for _, color in classes)], np.uint8)
    return table[labels]


def put(client, route: str, data: bytes, **params):
    return client.put(route, params=params, files={"file": ("samples.png", data, "image/png")})


def scribbles(truth: np.ndarray, seed: int = 0) -> np.ndarray:
    from imagelearn.segment.samples import simulate_scribbles

    return simulate_scribbles(truth, 150, random_state=seed).astype(np.uint8)


def run_job(client, answer) -> dict:
    assert answer.status_code == 202, answer.text
    job = client.studio.wait(answer.json()["id"], timeout=120)
    described = client.get(f"/api/studio/jobs/{job.id}").json()
    assert described["state"] == "done", described
    return described


@pytest.fixture(scope="module")
def trained(client, truth) -> dict:
    """The crop trained on simulated scribbles of its classes."""
    assert put(
        client, "/api/studio/images/0/samples", png(samples_png(scribbles(truth)))
    ).is_success
    return run_job(client, client.post("/api/studio/images/0/train", params={"n_estimators": 10}))


def test_the_studio_lists_its_images_with_the_ones_it_cannot_open(client):
    answer = client.get("/api/studio").json()
    assert [image["name"] for image in answer["images"]] == [
        "a-dubai.png",
        "b-big.png",
        "c-corrupt.jpg",
    ]
    assert answer["images"][0]["width"] == 240 and answer["images"][0]["height"] == 200
    assert "limit" in answer["images"][1]["error"]
    assert "error" in answer["images"][2]
    assert [c["name"] for c in answer["classes"]] == [
        "vegetation",
        "road",
        "water",
        "building",
        "land",
    ]
    assert "/" not in answer["source"]  # the folder's name, not its path


def test_opening_an_image_over_the_pixel_limit_or_corrupt_or_unknown_is_refused(client):
    assert client.get("/api/studio/images/0").json()["levels"] == 1
    big = client.get("/api/studio/images/1")
    assert big.status_code == 413 and "exceeds the limit of 100000" in big.json()["detail"]
    corrupt = client.get("/api/studio/images/2")
    assert corrupt.status_code == 422 and "c-corrupt.jpg" in corrupt.json()["detail"]
    assert client.get("/api/studio/images/3").status_code == 404
    assert client.get("/api/studio/images/-1").status_code == 422
    assert client.get("/api/studio/images/..%2Fx").status_code in (404, 422)


def test_tiles_are_jpegs_inside_the_pyramid(client):
    tile = client.get("/api/studio/images/0/tiles/0/0/0")
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(tile.content)).size == (240, 200)
    assert client.get("/api/studio/images/0/tiles/0/1/0").status_code == 404
    assert client.get("/api/studio/images/0/tiles/5/0/0").status_code == 404


def test_classes_are_validated(client):
    route = "/api/studio/classes"
    for classes, problem in (
        ([{"name": "a", "color": "#112233"}, {"name": "a", "color": "#332211"}], "names"),
        ([{"name": "a", "color": "#112233"}, {"name": "b", "color": "#112233"}], "colours"),
        ([{"name": "a", "color": "#000000"}, {"name": "b", "color": "#112233"}], "unlabelled"),
        ([{"name": "a", "color": "red"}, {"name": "b", "color": "#112233"}], "#RRGGBB"),
        ([{"name": "a", "color": "#112233"}], "classes"),
    ):
        answer = client.put(route, json={"classes": classes})
        assert answer.status_code == 422 and problem in answer.json()["detail"], answer.text
    assert client.get("/api/studio").json()["classes"][0]["name"] == "vegetation"


def test_samples_of_the_wrong_size_or_unknown_colours_are_refused(client, truth):
    route = "/api/studio/images/0/samples"
    wrong = put(client, route, png(np.zeros((199, 240, 4), np.uint8)))
    assert wrong.status_code == 422
    assert wrong.json()["detail"] == "samples is 240x199 but the image is 240x200"
    painted = samples_png(scribbles(truth))
    painted[10:12, 10:14] = (1, 2, 3, 255)
    unknown = put(client, route, png(painted))
    assert unknown.status_code == 422
    assert "8 pixels have colours of no class (#010203" in unknown.json()["detail"]
    labels = np.zeros((200, 240), np.uint8)
    labels[5, 5] = 9
    too_high = put(client, route, png(labels, "L"))
    assert too_high.status_code == 422 and "label 9" in too_high.json()["detail"]
    assert put(client, route, b"not an image").status_code == 415
    assert put(client, route, b"").status_code == 400
    assert put(client, route, png(np.zeros((400, 300, 4), np.uint8))).status_code == 413
    assert put(client, route, png(painted[:, :, :3] * 0), kind="other").status_code == 422


def test_training_needs_samples_of_two_classes(client, folder, out):
    app = create_app(None, studio=folder, studio_out=out / "fresh", max_pixels=MAX_PIXELS)
    with TestClient(app, base_url=BASE) as fresh:
        assert fresh.post("/api/studio/images/0/train").status_code == 409
        one = np.zeros((200, 240), np.uint8)
        one[20:30, 20:60] = 2
        assert (
            put(fresh, "/api/studio/images/0/samples", png(one, "L")).json()["counts"]["road"]
            == 400
        )
        answer = fresh.post("/api/studio/images/0/train")
        assert answer.status_code == 409 and "one class" in answer.json()["detail"]
        assert fresh.get("/api/studio/images/0/result").status_code == 404
        assert fresh.get("/api/studio/images/0/overlay").status_code == 404
        assert fresh.get("/api/studio/jobs/99").status_code == 404
        assert (
            fresh.get("/api/studio/images/0/samples", params={"kind": "validation"}).status_code
            == 404
        )


def test_training_gives_overlays_areas_and_the_map_of_the_saved_model(client, trained, truth, out):
    from imagelearn.segment import PixelClassifier, read_raster, read_samples

    assert trained["seconds"]["to_map"] > 0
    result = client.get("/api/studio/images/0/result").json()
    assert result["kind"] == "classifier" and not result["preview"]
    assert sum(row["pixels"] for row in result["areas"]) == 240 * 200
    present = {row["class"] for row in result["areas"] if row["pixels"]}
    assert present <= {name for k, (name, _) in enumerate(DEFAULT_CLASSES, 1) if (truth == k).any()}
    overlay = Image.open(io.BytesIO(client.get("/api/studio/images/0/overlay").content))
    assert overlay.mode == "RGBA" and overlay.size == (240, 200)
    uncertainty = client.get("/api/studio/images/0/overlay", params={"kind": "uncertainty"})
    assert Image.open(io.BytesIO(uncertainty.content)).size == (240, 200)
    assert client.get("/api/studio/images/0/overlay", params={"kind": "x"}).status_code == 422
    sent = Image.open(io.BytesIO(client.get("/api/studio/images/0/samples").content))
    assert np.array_equal(np.asarray(sent), samples_png(scribbles(truth)))

    saved = client.post("/api/studio/images/0/save").json()
    folder = Path(saved["folder"])
    assert folder == out / "a-dubai"
    assert {"samples.png", "classmap.png", "classmap.tif", "model", "report.json"} <= set(
        saved["files"]
    )
    names = [name for name, _ in DEFAULT_CLASSES]
    samples = read_samples(folder / "samples.png", (200, 240), names)  # what `segment train` reads
    assert np.array_equal(samples.mask, scribbles(truth))
    model = PixelClassifier.load(folder / "model")
    mapped = model.predict(read_raster(client.studio.paths[0]))
    assert np.array_equal(mapped, client.studio.image(0).result.labels)
    report = json.loads((folder / "report.json").read_text())
    assert [row["pixels"] for row in report["areas"]] == [row["pixels"] for row in result["areas"]]


def test_accuracy_against_a_reference_mask_and_validation_samples(client, trained, truth):
    from imagelearn.evaluation.segmentation import accuracy_report

    route = "/api/studio/images/0/accuracy"
    names = [name for name, _ in DEFAULT_CLASSES]
    assert client.get(route).status_code == 409  # no reference yet
    assert put(client, "/api/studio/images/0/reference", png(samples_png(truth))).is_success
    report = client.get(route).json()
    expected = accuracy_report(truth, client.studio.image(0).result.labels, names)
    assert report["accuracy"] == pytest.approx(expected["accuracy"])
    assert report["confusion_matrix"] == expected["confusion_matrix"]
    assert set(report) >= {"kappa", "producers_accuracy", "users_accuracy"}
    counts = np.bincount(truth[truth > 0])
    assert report["accuracy"] >= counts.max() / counts.sum()  # beats the majority class
    validation = scribbles(truth, seed=7)
    assert put(
        client, "/api/studio/images/0/samples", png(validation, "L"), kind="validation"
    ).is_success
    against = client.get(route, params={"against": "validation"}).json()
    assert against["n_pixels"] == int((validation > 0).sum())


def test_a_saved_model_is_applied_and_a_folder_that_is_not_one_is_refused(client, trained, out):
    (out / "not-a-model").mkdir(exist_ok=True)
    (out / "not-a-model" / "manifest.json").write_text("{}")
    route = "/api/studio/images/0/apply"
    refused = client.post(route, params={"model": "not-a-model"})
    assert refused.status_code == 422 and "not a pixel classifier" in refused.json()["detail"]
    assert client.post(route, params={"model": "missing"}).status_code == 404
    assert client.post(route, params={"model": "../etc"}).status_code == 422
    if not (out / "a-dubai" / "model").is_dir():
        client.post("/api/studio/images/0/save")
    before = client.studio.image(0).result.labels.copy()
    run_job(client, client.post(route, params={"model": "a-dubai/model"}))
    assert np.array_equal(client.studio.image(0).result.labels, before)


def test_clusters_are_named_and_merged_into_classes(client, folder, out):
    app = create_app(None, studio=folder, studio_out=out / "clusters", max_pixels=MAX_PIXELS)
    with TestClient(app, base_url=BASE) as fresh:
        fresh.studio = app.state.studio
        route = "/api/studio/images/0/cluster"
        assert fresh.post(route, params={"method": "spectral"}).status_code == 422
        assert (
            fresh.put("/api/studio/images/0/cluster-names", json={"names": []}).status_code == 409
        )
        run_job(fresh, fresh.post(route, params={"method": "isodata", "n_clusters": 3}))
        run_job(fresh, fresh.post(route, params={"n_clusters": 3}))
        result = fresh.get("/api/studio/images/0/result").json()
        assert result["kind"] == "clusters" and len(result["classes"]) == 3
        naming = "/api/studio/images/0/cluster-names"
        assert fresh.put(naming, json={"names": ["road"]}).status_code == 422
        assert fresh.put(naming, json={"names": ["road", "sea", ""]}).status_code == 422
        named = fresh.put(naming, json={"names": ["road", "road", "land"]}).json()
        areas = {row["class"]: row["pixels"] for row in named["areas"]}
        clusters = {row["class"]: row["pixels"] for row in result["areas"]}
        assert areas["road"] == clusters["cluster1"] + clusters["cluster2"]
        assert areas["land"] == clusters["cluster3"] and named["kind"] == "named clusters"


def test_a_server_without_a_studio_or_without_an_index(folder, tmp_path):
    with pytest.raises(ParameterError):
        create_app(None)
    with TestClient(create_app(None, studio=folder, studio_out=tmp_path), base_url=BASE) as client:
        info = client.get("/api/info")
        assert info.status_code == 404 and "--studio" in info.json()["detail"]
        assert client.get("/").status_code == 200
    assert client.get("/api/studio").status_code  # the app closed cleanly


def test_the_output_folder_is_never_the_source_unless_given(folder, tmp_path, monkeypatch):
    with pytest.raises(ParameterError, match="inside the source folder"):
        Studio(folder, folder / "runs")
    assert Studio(folder, folder / "runs", allow_inside_source=True).out == folder / "runs"
    with pytest.raises(ParameterError, match="no such image"):
        Studio(tmp_path / "missing")
    with pytest.raises(ParameterError, match="no images"):
        Studio(tmp_path)
    monkeypatch.chdir(folder)
    with pytest.raises(ParameterError, match="inside the source") as raised:
        Studio(folder)  # the default runs/studio would land inside it
    assert raised.value.parameter == "studio_out"


def test_serve_studio_on_the_command_line(folder, tmp_path):
    from imagelearn.cli.main import build_parser

    arguments = build_parser().parse_args(
        ["serve", "--studio", str(folder), "--studio-out", str(tmp_path), "--pixel-size", "0.5"]
    )
    assert arguments.index is None and arguments.pixel_size == 0.5
