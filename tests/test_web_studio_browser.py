"""The studio end to end in a real browser (Debian's Chromium via Playwright, the harness of
``tests/test_web_browser.py``): strokes painted by simulated mouse drags on a real Dubai aerial
tile, training, the overlay and the area table; on an EM slice with its mask as reference, the
accuracy the page shows equals what ``segment evaluate`` computes for the saved model.

Screenshots go to ``test-output/web/``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import data_path
from test_web_browser import browser, checked_page, screenshot  # noqa: F401

pytest.importorskip("fastapi")

#: The Dubai tile painted (797x644) and its mask; the EM slice and its mask.
DUBAI = ("tile1", "image_part_001")
EM_SLICE = "3.png"
#: Mask colours of the Dubai set, which are the studio's default class colours.
DUBAI_COLORS = {"building": "#3C1098", "land": "#8429F6", "road": "#6EC1E4", "water": "#E2A929"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A studio folder holding the Dubai tile (id 0) and the EM slice (id 1)."""
    source = tmp_path_factory.mktemp("studio-source")
    tile, part = DUBAI
    shutil.copy(data_path("dubai_landcover", tile, "images", f"{part}.jpg"), source / "a-dubai.jpg")
    shutil.copy(data_path("em_membranes", "image", EM_SLICE), source / "b-em.png")
    return source


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("studio-out")


@pytest.fixture(scope="module")
def server(folder, out) -> Iterator[str]:
    from imagelearn.web import create_app
    from imagelearn.web.server import running

    with running(create_app(None, studio=folder, studio_out=out)) as url:
        yield url


@pytest.fixture
def page(browser, server):  # noqa: F811
    with checked_page(browser) as page:
        yield page


def open_studio(page, server: str, image_id: int) -> None:
    page.goto(f"{server}/#/studio?image={image_id}")
    page.wait_for_selector("canvas.studio-canvas[data-ready=true]")


def runs_inside(
    mask: np.ndarray, length: int, count: int, margin: int = 5
) -> list[tuple[int, int, int]]:
    """``count`` horizontal runs ``(row, first column, last column)`` of ``length`` pixels lying
    inside the true pixels of ``mask`` (``margin`` pixels from its edges), far apart."""
    from scipy import ndimage

    inner = ndimage.binary_erosion(mask, iterations=margin) if margin else mask
    found: list[tuple[int, int, int]] = []
    for row in range(0, mask.shape[0], 7):
        line = np.concatenate([[0], inner[row].astype(np.int8), [0]])
        edges = np.flatnonzero(np.diff(line))
        for start, stop in zip(edges[::2], edges[1::2], strict=True):
            if stop - start >= length and all(abs(row - r) > 40 for r, _, _ in found):
                middle = (start + stop) // 2
                found.append((row, middle - length // 2, middle + length // 2))
                break
        if len(found) == count:
            return found
    raise AssertionError(f"fewer than {count} runs of {length} pixels in the mask")


def drag(page, row: int, first: int, last: int) -> None:
    """A stroke from image pixel (first, row) to (last, row), by mouse."""
    canvas = page.locator("canvas.studio-canvas")
    box = canvas.bounding_box()
    scale, ox, oy = (float(canvas.get_attribute(f"data-{name}")) for name in ("scale", "ox", "oy"))

    def client(x: float, y: float) -> tuple[float, float]:
        return box["x"] + (x + 0.5 - ox) * scale, box["y"] + (y + 0.5 - oy) * scale

    page.mouse.move(*client(first, row))
    page.mouse.down()
    page.mouse.move(*client(last, row), steps=6)
    page.mouse.up()


def choose_class(page, label: int) -> None:
    page.check(f".studio-class[data-label='{label}'] input[type=radio]")


def train(page) -> None:
    page.click("button[data-action=train]")
    page.wait_for_function(
        "() => document.querySelector('.studio-stage').textContent.startsWith('done')"
    )
    page.wait_for_selector(".studio-areas h3:text-is('Areas')")


def test_painted_strokes_of_two_classes_train_an_overlay_with_their_areas(page, server):
    from imagelearn.segment.samples import labels_from_colors, parse_color

    tile, part = DUBAI
    truth = np.asarray(
        Image.open(data_path("dubai_landcover", tile, "masks", f"{part}.png")).convert("RGB")
    )
    open_studio(page, server, 0)
    classes = [item["name"] for item in page.request.get(f"{server}/api/studio").json()["classes"]]
    painted = []
    for name in ("land", "road"):
        mask = labels_from_colors(truth, [parse_color(DUBAI_COLORS[name])]) == 1
        choose_class(page, classes.index(name) + 1)
        for row, first, last in runs_inside(mask, 40, 2):
            drag(page, row, first, last)
        painted.append(name)
    counts = page.inner_text(".studio-counts")
    assert "land" in counts and "road" in counts, counts
    train(page)
    assert int(page.get_attribute("canvas.studio-canvas", "data-overlay")) >= 1
    listed = page.eval_on_selector_all(
        ".studio-areas tbody tr", "rows => rows.map(row => row.dataset.class)"
    )
    assert sorted(listed) == sorted(painted), listed
    overlay = page.request.get(f"{server}/api/studio/images/0/overlay")
    assert overlay.ok and overlay.headers["content-type"] == "image/png"
    assert screenshot(page, "studio-dubai").stat().st_size > 10_000
    page.check("text=Uncertainty")
    assert screenshot(page, "studio-dubai-uncertainty").stat().st_size > 10_000
    page.reload()  # the samples sent come back into the page, the class map too
    page.wait_for_selector("canvas.studio-canvas[data-ready=true]")
    assert page.inner_text(".studio-counts") == counts
    assert page.get_attribute("canvas.studio-canvas", "data-overlay") is not None


def test_accuracy_against_the_em_mask_equals_segment_evaluate(page, server, folder, out, tmp_path):
    from imagelearn.segment.reference_data import load_em_slice
    from imagelearn.segment.runs import evaluate_run

    _, truth = load_em_slice(data_path("em_membranes"), EM_SLICE)  # 1 membrane, 2 interior
    reference = tmp_path / "reference.png"
    Image.fromarray(truth.astype(np.uint8), mode="L").save(reference)
    answer = page.request.put(
        f"{server}/api/studio/classes",
        data={
            "classes": [
                {"name": "membrane", "color": "#FF00FF"},
                {"name": "interior", "color": "#00C0FF"},
            ]
        },
    )
    assert answer.ok, answer.text()
    open_studio(page, server, 1)
    page.eval_on_selector(
        ".studio-panel input[aria-label^=Brush]",
        "(range) => { range.value = '3'; range.dispatchEvent(new Event('input')); }",
    )
    for label, length, margin in ((1, 8, 1), (2, 40, 5)):
        choose_class(page, label)
        for row, first, last in runs_inside(truth == label, length, 4, margin):
            drag(page, row, first, last)
    train(page)
    page.set_input_files("input[aria-label='Reference mask']", str(reference))
    page.wait_for_selector(".studio-oa[data-against=reference]")
    shown = float(page.get_attribute(".studio-oa", "data-accuracy"))
    page.click("text=Save")
    page.wait_for_selector("button[data-saved]")
    model = out / "b-em" / "model"
    expected = evaluate_run(model, [folder / "b-em.png"], [reference], tmp_path / "evaluation")
    assert shown == pytest.approx(expected.metrics["accuracy"], abs=1e-12)
    assert f"{100 * expected.metrics['accuracy']:.2f}%" in page.inner_text(".studio-oa")
    assert shown > 0.7
    assert screenshot(page, "studio-em").stat().st_size > 10_000


@pytest.fixture(scope="module")
def map_server(tmp_path_factory) -> Iterator[tuple[str, object]]:
    """A studio whose pixel limit is below the Dubai tile (saved as a TIFF): it opens as a map."""
    import tifffile

    from imagelearn.web import create_app
    from imagelearn.web.server import running

    source = tmp_path_factory.mktemp("studio-map")
    tile, part = DUBAI
    pixels = np.asarray(Image.open(data_path("dubai_landcover", tile, "images", f"{part}.jpg")))
    tifffile.imwrite(source / "dubai.tif", pixels, photometric="rgb")
    app = create_app(
        None, studio=source, studio_out=tmp_path_factory.mktemp("map-out"), max_pixels=200_000
    )
    with running(app) as url:
        yield url, app.state.studio


def test_a_map_is_painted_by_blocks_and_its_class_map_drawn_from_overlay_tiles(browser, map_server):  # noqa: F811
    from imagelearn.segment.samples import labels_from_colors, parse_color

    url, studio = map_server
    with checked_page(browser) as page:
        overlay_tiles: list[str] = []
        page.on(
            "request",
            lambda request: "overlay-tiles" in request.url and overlay_tiles.append(request.url),
        )
        tile, part = DUBAI
        truth = np.asarray(
            Image.open(data_path("dubai_landcover", tile, "masks", f"{part}.png")).convert("RGB")
        )
        open_studio(page, url, 0)
        assert "samples are sent by blocks" in page.inner_text(".studio-panel")
        classes = [item["name"] for item in page.request.get(f"{url}/api/studio").json()["classes"]]
        for name in ("land", "road"):
            mask = labels_from_colors(truth, [parse_color(DUBAI_COLORS[name])]) == 1
            choose_class(page, classes.index(name) + 1)
            for row, first, last in runs_inside(mask, 40, 2):
                drag(page, row, first, last)
        train(page)
        image = studio.image(0)
        assert image.large and image.result.label_map.complete
        counts = image.samples.counts(len(classes))
        assert counts[classes.index("land") + 1] > 0 and counts[classes.index("road") + 1] > 0
        # the page asks for the finished map's tiles once it has drawn it (after "done")
        finished = f"version={image.result.version}.{image.result.label_map.n_blocks}"
        while not any(finished in requested for requested in overlay_tiles):
            page.wait_for_event("request", predicate=lambda request: finished in request.url)
        assert screenshot(page, "studio-map").stat().st_size > 10_000
