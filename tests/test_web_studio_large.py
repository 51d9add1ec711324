"""The studio on images over its pixel limit, opened as maps: a 12,000 x 12,000 tiled TIFF
mosaic of a real Dubai tile shown by tiles in bounded memory; a Dubai tile over a small limit
trained from samples sent by windows and predicted block by block; the ground sampling
distance read from GeoTIFF tags; the windowed reader on every TIFF layout it takes."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")

import tifffile
from fastapi.testclient import TestClient
from PIL import Image

from conftest import data_path
from imagelearn.segment.windowed import geotiff_pixel_size, open_windowed
from imagelearn.web import create_app
from imagelearn.web.studio import DEFAULT_CLASSES

BASE = "http://127.0.0.1"
MOSAIC_SIDE = 12_000
#: Below the pixels of the Dubai crop trained as a map: it opens as a map.
MAX_PIXELS = 200_000
#: The crop of the Dubai tile trained as a map (rows, columns): 2 x 2 blocks of 512 pixels.
MAP_CROP = (slice(0, 600), slice(0, 560))


def dubai() -> np.ndarray:
    return np.asarray(
        Image.open(data_path("dubai_landcover", "tile1", "images", "image_part_001.jpg"))
    )


def rgb(hex_color: str) -> tuple[int, int, int]:
    return tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5))


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def mosaic_window(source: np.ndarray, rows: slice, columns: slice) -> np.ndarray:
    """The mosaic's pixels: the source repeated (``source[y % h, x % w]``)."""
    height, width = source.shape[:2]
    ys = np.arange(rows.start, rows.stop) % height
    xs = np.arange(columns.start, columns.stop) % width
    return source[ys][:, xs]


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory) -> Path:
    """A 12,000 x 12,000 RGB tiled TIFF (432 MB uncompressed) written tile by tile."""
    source = dubai()
    folder = tmp_path_factory.mktemp("studio-mosaic")
    path = folder / "mosaic.tif"
    side = 512

    def tiles():
        for top in range(0, MOSAIC_SIDE, side):
            band = mosaic_window(source, slice(top, top + side), slice(0, MOSAIC_SIDE + side))
            for left in range(0, MOSAIC_SIDE, side):
                yield band[:, left : left + side]

    tifffile.imwrite(
        path,
        tiles(),
        shape=(MOSAIC_SIDE, MOSAIC_SIDE, 3),
        dtype=np.uint8,
        tile=(side, side),
        photometric="rgb",
    )
    return path


def decoded(answer) -> np.ndarray:
    assert answer.status_code == 200, answer.text
    return np.asarray(Image.open(io.BytesIO(answer.content)))


def test_a_mosaic_over_the_limit_opens_as_a_map_and_its_tiles_come_in_bounded_memory(
    mosaic, tmp_path
):
    import cv2

    source = dubai()
    app = create_app(None, studio=mosaic.parent, studio_out=tmp_path)
    tracemalloc.start()
    try:
        with TestClient(app, base_url=BASE) as client:
            listed = client.get("/api/studio").json()["images"][0]
            assert listed["large"] and "error" not in listed
            opened = client.get("/api/studio/images/0").json()
            assert opened["large"] and (opened["width"], opened["height"]) == (12_000, 12_000)
            assert opened["levels"] == 7 and opened["overview_level"] == 2  # 3000 px a side
            route = "/api/studio/images/0/tiles"
            for level, column, row in ((6, 0, 0), (4, 2, 1), (2, 3, 5), (1, 10, 7), (0, 46, 46)):
                tile = decoded(client.get(f"{route}/{level}/{column}/{row}"))
                span = 256 << level
                rows = slice(row * span, min(MOSAIC_SIDE, (row + 1) * span))
                columns = slice(column * span, min(MOSAIC_SIDE, (column + 1) * span))
                side = (
                    -(-(columns.stop - columns.start) // (1 << level)),
                    -(-(rows.stop - rows.start) // (1 << level)),
                )
                assert tile.shape == (side[1], side[0], 3)
                if level <= 2:  # read from the file and averaged down, as cv2 would
                    expected = cv2.resize(
                        mosaic_window(source, rows, columns), side, interpolation=cv2.INTER_AREA
                    )
                    assert np.abs(tile.astype(int) - expected).mean() < 4  # JPEG's loss
            assert client.get(f"{route}/7/0/0").status_code == 404
            assert client.get(f"{route}/0/47/0").status_code == 404
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 150 * 2**20  # the image is 432 MB; the overview 27 MB


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    from imagelearn.segment.samples import labels_from_colors

    mask = Image.open(data_path("dubai_landcover", "tile1", "masks", "image_part_001.png"))
    colors = [rgb(color) for _, color in DEFAULT_CLASSES]
    return labels_from_colors(np.asarray(mask.convert("RGB"))[MAP_CROP], colors)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """The Dubai crop as an uncompressed TIFF with a ModelPixelScaleTag of 0.5 x 0.25 m."""
    folder = tmp_path_factory.mktemp("studio-map")
    tifffile.imwrite(
        folder / "dubai.tif",
        dubai()[MAP_CROP],
        photometric="rgb",
        extratags=[(33550, "d", 3, (0.5, 0.25, 0.0), False)],
    )
    return folder


@pytest.fixture(scope="module")
def client(folder, tmp_path_factory):
    app = create_app(
        None, studio=folder, studio_out=tmp_path_factory.mktemp("out"), max_pixels=MAX_PIXELS
    )
    with TestClient(app, base_url=BASE) as client:
        client.studio = app.state.studio
        yield client


def send_by_windows(client, labels: np.ndarray, kind: str = "train", side: int = 512) -> dict:
    """Send ``labels`` as the page does on a map: one labels PNG per painted block."""
    answer = None
    for top in range(0, labels.shape[0], side):
        for left in range(0, labels.shape[1], side):
            block = labels[top : top + side, left : left + side]
            if block.any():
                answer = client.put(
                    "/api/studio/images/0/samples",
                    params={"kind": kind, "left": left, "top": top},
                    files={"file": ("w.png", png(block, "L"), "image/png")},
                )
                assert answer.status_code == 200, answer.text
    return answer.json()


def test_samples_of_a_map_go_by_windows_and_whole_ones_are_refused(client, truth):
    from imagelearn.segment.samples import simulate_scribbles

    route = "/api/studio/images/0/samples"
    whole = client.put(route, files={"file": ("s.png", png(truth.astype(np.uint8), "L"))})
    assert whole.status_code == 413 and "send or ask for windows" in whole.json()["detail"]
    outside = client.put(
        route,
        params={"left": 500, "top": 0},
        files={"file": ("s.png", png(np.ones((10, 200), np.uint8), "L"))},
    )
    assert (
        outside.status_code == 422 and "runs outside the 560x600 image" in outside.json()["detail"]
    )
    half = client.put(
        route, params={"left": 3}, files={"file": ("s.png", png(np.ones((4, 4), np.uint8), "L"))}
    )
    assert half.status_code == 422
    reference = client.put(
        "/api/studio/images/0/reference",
        files={"file": ("r.png", png(truth.astype(np.uint8), "L"))},
    )
    assert reference.status_code == 413
    samples = simulate_scribbles(truth, 400, random_state=0).astype(np.uint8)
    counts = send_by_windows(client, samples)["counts"]
    assert counts == {
        name: int((samples == k).sum()) for k, (name, _) in enumerate(DEFAULT_CLASSES, 1)
    }
    window = client.get(route, params={"left": 100, "top": 200, "width": 300, "height": 100})
    expected = np.array([(0, 0, 0, 0), *((*rgb(c), 255) for _, c in DEFAULT_CLASSES)], np.uint8)
    assert np.array_equal(decoded(window), expected[samples[200:300, 100:400]])
    assert client.get(route).status_code == 413
    too_big = client.get(route, params={"left": 0, "top": 0, "width": 4096, "height": 4096})
    assert too_big.status_code == 422 and "1 to 4194304 pixels" in too_big.json()["detail"]
    huge = png(np.zeros((2049, 2048), np.uint8), "L")
    assert (
        client.put(route, params={"left": 0, "top": 0}, files={"file": ("h.png", huge)}).status_code
        == 413
    )
    windows = client.get("/api/studio/images/0").json()["windows"]["train"]
    assert [512, 0, 48, 512] in windows and all(w[2] <= 512 for w in windows)


def test_a_map_is_trained_on_its_strokes_and_predicted_block_by_block(client, truth, folder):
    from imagelearn.segment import read_raster
    from imagelearn.segment.samples import simulate_scribbles

    samples = simulate_scribbles(truth, 400, random_state=0).astype(np.uint8)
    send_by_windows(client, samples)
    assert client.post("/api/studio/images/0/cluster").status_code == 409
    answer = client.post("/api/studio/images/0/train", params={"n_estimators": 10})
    assert answer.status_code == 202
    job = client.studio.wait(answer.json()["id"], timeout=300)
    assert job.state == "done", job.error
    result = client.get("/api/studio/images/0/result").json()
    assert result["tiled"] and not result["preview"]
    assert result["blocks"] == {"done": 4, "total": 4}
    image = client.studio.image(0)
    labels = np.asarray(image.result.labels)
    # The features of the windows around the strokes and of each block with its halo are
    # those of the whole image: the map is what the model predicts for the whole raster.
    assert np.array_equal(labels, image.result.model.predict(read_raster(folder / "dubai.tif")))
    assert sum(row["pixels"] for row in result["areas"]) == 560 * 600
    for row in result["areas"]:
        assert row["square_metres"] == pytest.approx(row["pixels"] * 0.5 * 0.25)

    tile = decoded(client.get("/api/studio/images/0/overlay-tiles/0/1/1"))
    palette = np.array([(0, 0, 0, 0), *((*rgb(c), 255) for _, c in DEFAULT_CLASSES)], np.uint8)
    assert np.array_equal(tile, palette[labels[256:512, 256:512]])
    top = decoded(client.get("/api/studio/images/0/overlay-tiles/2/0/0"))
    assert top.shape == (150, 140, 4) and np.array_equal(top, palette[labels[::4, ::4]])
    uncertainty = client.get(
        "/api/studio/images/0/overlay-tiles/0/0/0", params={"kind": "uncertainty"}
    )
    assert decoded(uncertainty).shape == (256, 256, 4)
    assert client.get("/api/studio/images/0/overlay-tiles/3/0/0").status_code == 404

    validation = simulate_scribbles(truth, 200, random_state=5).astype(np.uint8)
    send_by_windows(client, validation, kind="validation")
    report = client.get("/api/studio/images/0/accuracy", params={"against": "validation"}).json()
    assert report["n_pixels"] == int((validation > 0).sum())
    counts = np.bincount(truth[truth > 0])
    assert report["accuracy"] >= counts.max() / counts.sum()

    saved = client.post("/api/studio/images/0/save").json()
    written = Path(saved["folder"])
    assert {"samples.tif", "validation.tif", "classmap.tif", "model", "areas.csv"} <= set(
        saved["files"]
    )
    assert np.array_equal(tifffile.imread(written / "classmap.tif"), labels)
    assert np.array_equal(tifffile.imread(written / "samples.tif"), samples)


def test_a_newer_job_stops_a_map_prediction_and_a_saved_model_is_applied_to_the_map(client):
    image = client.studio.image(0)
    saved = Path(client.post("/api/studio/images/0/save").json()["folder"])
    expected = tifffile.imread(saved / "classmap.tif")
    with image.lock:  # neither job starts before both are queued
        first = client.post("/api/studio/images/0/train", params={"n_estimators": 5})
        second = client.post("/api/studio/images/0/apply", params={"model": "dubai/model"})
    stopped = client.studio.wait(first.json()["id"], timeout=300)
    assert stopped.state == "stopped", stopped.error
    assert stopped.stage == "stopped for a newer job after 0 of 4 blocks"
    applied = client.studio.wait(second.json()["id"], timeout=300)
    assert applied.state == "done", applied.error
    assert client.get(f"/api/studio/jobs/{first.json()['id']}").json()["state"] == "stopped"
    assert image.result.label_map.complete
    assert np.array_equal(np.asarray(image.result.labels), expected)


def test_a_small_image_map_has_no_overlay_tiles_and_its_geotiff_gives_square_metres(tmp_path):
    from imagelearn.segment.samples import simulate_scribbles

    crop = dubai()[:200, :240]
    tifffile.imwrite(
        tmp_path / "crop.tif",
        crop,
        photometric="rgb",
        extratags=[
            (34264, "d", 16, (0.3, 0, 0, 5e5, 0, -0.4, 0, 2.7e6, 0, 0, 0, 0, 0, 0, 0, 1), False)
        ],
    )
    app = create_app(None, studio=tmp_path / "crop.tif", studio_out=tmp_path / "out")
    with TestClient(app, base_url=BASE) as client:
        opened = client.get("/api/studio/images/0").json()
        assert not opened["large"] and opened["pixel_size"] == pytest.approx([0.3, 0.4])
        truth = np.zeros((200, 240), np.uint8)
        truth[:, :120], truth[:, 120:] = 1, 5
        samples = simulate_scribbles(truth, 100, random_state=0).astype(np.uint8)
        client.put("/api/studio/images/0/samples", files={"file": ("s.png", png(samples, "L"))})
        job = app.state.studio.wait(client.post("/api/studio/images/0/train").json()["id"], 120)
        assert job.state == "done", job.error
        areas = client.get("/api/studio/images/0/result").json()["areas"]
        for row in areas:
            assert row["square_metres"] == pytest.approx(row["pixels"] * 0.3 * 0.4)
        assert client.get("/api/studio/images/0/overlay-tiles/0/0/0").status_code == 409
        client.put("/api/studio/pixel-size", params={"metres": 2})
        areas = client.get("/api/studio/images/0/result").json()["areas"]
        assert all(row["square_metres"] == row["pixels"] * 4 for row in areas)


def test_geotiff_pixel_sizes_in_metres_feet_or_none(tmp_path):
    image = np.zeros((4, 4), np.uint8)

    def written(name: str, *tags) -> Path:
        tifffile.imwrite(tmp_path / name, image, extratags=list(tags))
        return tmp_path / name

    scale = (33550, "d", 3, (2.0, 3.0, 0.0), False)
    feet = (34735, "H", 8, (1, 1, 0, 1, 3076, 0, 1, 9002), False)
    degrees = (34735, "H", 8, (1, 1, 0, 1, 1024, 0, 1, 2), False)
    assert geotiff_pixel_size(written("scale.tif", scale)) == (2.0, 3.0)
    assert geotiff_pixel_size(written("feet.tif", scale, feet)) == pytest.approx((0.6096, 0.9144))
    assert geotiff_pixel_size(written("degrees.tif", scale, degrees)) is None
    assert geotiff_pixel_size(written("plain.tif")) is None
    Image.fromarray(image).save(tmp_path / "plain.png")
    assert geotiff_pixel_size(tmp_path / "plain.png") is None


@pytest.mark.parametrize(
    "layout",
    [
        {"tile": (128, 128)},
        {"tile": (128, 128), "compression": "zlib"},
        {"tile": (128, 128), "compression": "lzma"},
        {"rowsperstrip": 37, "compression": "zlib"},
        {},
        {"planarconfig": "separate", "tile": (128, 128)},
        {"planarconfig": "separate"},
    ],
)
def test_windows_of_every_tiff_layout_equal_the_whole_image(tmp_path, layout):
    image = dubai()[:300, :410]
    data = np.moveaxis(image, 2, 0) if layout.get("planarconfig") == "separate" else image
    tifffile.imwrite(tmp_path / "image.tif", data, photometric="rgb", **layout)
    raster = open_windowed(tmp_path / "image.tif", max_pixels=10)  # windows need no limit
    assert not raster.whole and raster.shape == (300, 410, 3)
    for rows, columns in (
        (slice(0, 300), slice(0, 410)),
        (slice(3, 290), slice(100, 101)),
        (slice(129, 260), slice(7, 300)),
    ):
        assert np.array_equal(raster.read(rows, columns), image[rows, columns])
    with pytest.raises(ValueError, match="outside 410x300"):
        raster.read(slice(0, 301), slice(0, 10))


def test_sixteen_bit_big_endian_windows(tmp_path):
    values = (dubai()[:120, :90, 0].astype(np.uint16) * 257).astype(">u2")
    tifffile.imwrite(tmp_path / "gray.tif", values, byteorder=">")
    tifffile.imwrite(
        tmp_path / "gray-z.tif", values, byteorder=">", compression="zlib", tile=(32, 32)
    )
    for name in ("gray.tif", "gray-z.tif"):
        raster = open_windowed(tmp_path / name)
        assert raster.dtype == np.uint16
        assert np.array_equal(
            raster.read(slice(10, 100), slice(5, 80))[..., 0], values[10:100, 5:80]
        )


def test_a_sixteen_bit_four_band_map_is_shown_stretched_by_its_overview(tmp_path):
    pixels = dubai()[:600, :700].astype(np.uint16) * 200
    bands = np.concatenate([pixels, pixels[..., :1] // 2], axis=2)  # 4 bands, 16 bits
    tifffile.imwrite(
        tmp_path / "bands.tif",
        bands,
        tile=(256, 256),
        photometric="minisblack",
        planarconfig="contig",
    )
    app = create_app(
        None, studio=tmp_path / "bands.tif", studio_out=tmp_path / "out", max_pixels=100_000
    )
    with TestClient(app, base_url=BASE) as client:
        opened = client.get("/api/studio/images/0").json()
        assert opened["large"] and opened["bands"] == 4
        fine = decoded(client.get("/api/studio/images/0/tiles/0/1/1"))
        coarse = decoded(client.get(f"/api/studio/images/0/tiles/{opened['levels'] - 1}/0/0"))
        assert fine.shape == (256, 256, 3) and coarse.shape == (150, 175, 3)  # level 2
        # The first three bands, stretched between the overview's 2nd and 98th percentiles.
        low, high = np.percentile(bands[..., :3].astype(np.float32), [2, 98], axis=(0, 1))
        expected = np.clip((bands[256:512, 256:512, :3] - low) / (high - low) * 255, 0, 255)
        assert np.abs(fine.astype(float) - expected).mean() < 4
