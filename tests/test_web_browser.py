"""The web app end to end in a real browser: Debian's Chromium driven by Playwright, against
uvicorn on 127.0.0.1 (a free port), on the 28-photo UKBench index of the API tests.

Screenshots go to ``test-output/web/`` (ignored by git). Run as a script,
``python tests/test_web_browser.py INDEX OUT``, it saves the README's screenshots of any index.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("IMAGELEARN_CHROMIUM", "/usr/bin/chromium"))
#: How Chromium is started here (Playwright's own browser download is not used).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
OUTPUT = Path(__file__).resolve().parents[1] / "test-output" / "web"
#: Conditions waited on are functions: the page's CSP forbids the eval of plain expressions.
#: Longest wait for one condition in the page (ms): a first search loads the CNN.
WAIT_MS = 60_000
VIEWPORT = {"width": 1360, "height": 900}


def launch(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (make test installs Debian's chromium package)")
    with sync_api.sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    pytest.importorskip("fastapi")
    from imagelearn.web import create_app
    from imagelearn.web.server import running
    from test_web_api import web_index

    app = create_app(
        web_index(tmp_path_factory), thumbnail_dir=tmp_path_factory.mktemp("thumbnails")
    )
    with running(app) as url:
        yield url


@contextmanager
def checked_page(browser) -> Iterator:
    """A page in a fresh browser context (:data:`VIEWPORT`, :data:`WAIT_MS`); when the block
    ends, the context is closed and no JavaScript error may have been raised on the page."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert errors == [], errors


@pytest.fixture
def page(browser, server):
    with checked_page(browser) as page:
        page.goto(f"{server}/")
        page.wait_for_selector("#nav a")
        yield page


def screenshot(page, name: str) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def result_ids(page) -> list[int]:
    return [
        int(card.get_attribute("data-id")) for card in page.query_selector_all("#results .card")
    ]


def search_by_upload(page, photo: Path) -> None:
    page.set_input_files(".query-panel input[type=file]", str(photo))
    page.wait_for_selector("#results .card")


def open_match(page, rank: int) -> None:
    page.click(f"#results .card >> nth={rank}")
    page.wait_for_selector("canvas.match-canvas[data-ready=true]")


def test_an_uploaded_photo_finds_its_three_other_views_first(page):
    from conftest import data_path

    search_by_upload(page, data_path("ukbench", "ukbench00006.jpg"))
    ids = result_ids(page)
    assert ids[0] == 6 and set(ids[:4]) == {4, 5, 6, 7}, ids
    assert "inliers" in page.inner_text("#results .card >> nth=1")
    assert screenshot(page, "search").stat().st_size > 10_000


def test_a_match_view_draws_the_correspondences_and_the_outline(page):
    from conftest import data_path

    search_by_upload(page, data_path("ukbench", "ukbench00006.jpg"))
    open_match(page, 1)
    legend = page.inner_text(".match-legend")
    assert "inliers" in legend and "query region mapped by the homography" in legend
    # the lines are drawn: the canvas holds the green of the correspondences
    green = page.evaluate(
        """() => {
          const c = document.querySelector('canvas.match-canvas');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let n = 0;
          for (let i = 0; i < d.length; i += 4) if (d[i + 1] > 180 && d[i] < 120 && d[i + 2] < 160) n++;
          return n;
        }"""
    )
    assert green > 500, green
    screenshot(page, "match")
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "() => document.getElementById('dialog-title').textContent.startsWith('#3')"
    )
    page.keyboard.press("Escape")
    page.wait_for_selector("#dialog", state="hidden")


def test_a_box_drawn_on_the_query_searches_that_region(page):
    from conftest import data_path

    search_by_upload(page, data_path("ukbench", "ukbench00013.jpg"))
    drag_box(page, 0.25, 0.25, 0.75, 0.75)
    page.wait_for_selector("text=box 80, 60, 160, 120")
    wait_for_results(page)
    assert result_ids(page)[0] == 13


def test_a_keyword_finds_an_image_tagged_so(page, server):
    import json
    from urllib.request import urlopen

    with urlopen(f"{server}/api/images/21") as response:
        tags = json.load(response)["tags"]
    assert tags, "image 21 has no tags"
    prefix = tags[0]["name"][:4]
    page.fill("[data-keyword]", prefix)
    page.wait_for_selector(".suggest li")
    page.keyboard.press("Enter")
    page.wait_for_selector("#results .card[data-id='21']")
    assert all(
        prefix.lower() in card.inner_text().lower()
        for card in page.query_selector_all("#results .card")
    )
    screenshot(page, "keyword")


def test_the_grid_pages_through_the_collection(page, server):
    page.goto(f"{server}/#/browse")
    page.wait_for_selector(".grid .card")
    assert len(page.query_selector_all(".grid .card")) == 28
    assert "28 images" in page.inner_text(".summary")
    chips = page.eval_on_selector_all(
        ".grid .card",
        "cards => cards.map(c => [...c.querySelectorAll('.chip')].map(x => [x.textContent, x.dataset.source]))",
    )  # each card: up to 2 tags of distinct names, each marked with its source
    assert any(chips) and all(len(card) <= 2 for card in chips)
    assert all(len({name for name, _ in card}) == len(card) for card in chips)
    assert {source for card in chips for _, source in card} == {"imagenet"}
    page.click(".grid .card >> nth=3")
    page.wait_for_selector("text=Find similar")
    page.click("text=Find similar")
    page.wait_for_selector("#results .card")
    assert result_ids(page)[0] == 3


def drag_box(page, left: float, top: float, right: float, bottom: float) -> None:
    """Drag a box on the query image, corners as fractions of its width and height."""
    canvas = page.locator(".dropzone canvas").bounding_box()
    x, y, width, height = canvas["x"], canvas["y"], canvas["width"], canvas["height"]
    page.mouse.move(x + width * left, y + height * top)
    page.mouse.down()
    page.mouse.move(x + width * right, y + height * bottom, steps=4)
    page.mouse.up()


def wait_for_results(page) -> None:
    """Until a search has answered and the visible thumbnails have loaded."""
    page.wait_for_function(
        "() => !document.querySelector('.summary .spinner') && [...document.querySelectorAll("
        "'#results img')].slice(0, 15).every((image) => image.complete && image.naturalWidth)"
    )


def save_screenshots(index: Path, out: Path, query: Path) -> None:
    """The README's screenshots of ``index``: the search page with ``query`` (a box drawn on
    its middle), and the match view of the second result."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from imagelearn.web import create_app
    from imagelearn.web.server import running

    out.mkdir(parents=True, exist_ok=True)
    with running(create_app(index)) as url, sync_playwright() as playwright:
        chromium = launch(playwright)
        page = chromium.new_page(viewport=VIEWPORT)
        page.set_default_timeout(WAIT_MS)
        page.goto(f"{url}/")
        search_by_upload(page, query)
        wait_for_results(page)  # the first search loads the CNN: the second is timed as usual
        drag_box(page, 0.15, 0.08, 0.85, 0.92)
        page.wait_for_selector("text=box ")
        wait_for_results(page)
        page.screenshot(path=str(out / "web-search.png"))
        open_match(page, 1)
        page.screenshot(path=str(out / "web-match.png"))
        chromium.close()
    for name in ("web-search.png", "web-match.png"):  # 256 colours: a third of the bytes
        with Image.open(out / name) as shot:
            shot.convert("RGB").quantize(256).save(out / name, optimize=True)


if __name__ == "__main__":
    save_screenshots(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
