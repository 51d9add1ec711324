"""Model review in a real browser (Debian's Chromium via Playwright, the harness of
``tests/test_web_browser.py``) on the tiny real runs of ``tests/test_web_review.py``: a BoF
run's page shows its metrics, and clicking a cell of its confusion matrix shows exactly the
images of that cell; a clustering's map has one legend entry per cluster and a thumbnail on
hover; a transfer comparison's curves have integer epoch ticks.

Screenshots go to ``test-output/web/``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_web_browser import browser, checked_page, screenshot  # noqa: F401
from test_web_review import review_run

pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    for kind in ("bof", "cluster", "transfer"):
        folder = review_run(tmp_path_factory, kind).parent
    return folder


@pytest.fixture(scope="module")
def server(runs, tmp_path_factory) -> Iterator[str]:
    from imagelearn.web import create_app
    from imagelearn.web.server import running

    app = create_app(None, review=[runs], thumbnail_dir=tmp_path_factory.mktemp("thumbnails"))
    with running(app) as url:
        yield url


@pytest.fixture
def page(browser, server):  # noqa: F811
    with checked_page(browser) as page:
        yield page


def open_review(page, server: str, run: str) -> None:
    page.goto(f"{server}/#/review?run={run}")
    page.wait_for_selector(".review .review-figures")


def loaded_images(page, selector: str) -> None:
    """Wait until every thumbnail under ``selector`` has loaded (a real picture, not an error)."""
    page.wait_for_function(
        "(selector) => [...document.querySelectorAll(selector + ' img')]"
        ".every((img) => img.complete && img.naturalWidth > 0)",
        arg=selector,
    )


def test_a_cell_of_the_confusion_matrix_shows_exactly_its_images(page, server, runs):
    metrics = json.loads((runs / "bof" / "metrics.json").read_text())
    with (runs / "bof" / "predictions.csv").open(newline="") as stream:
        predictions = list(csv.DictReader(stream))
    page.goto(f"{server}/")  # a server of runs only opens into the review's list
    page.click("text=runs/bof")
    page.wait_for_selector(".review .review-figures")
    shown = page.inner_text(".review-figures [data-key=accuracy] dd")
    assert shown == f"{100 * metrics['accuracy']:.1f}%"
    assert page.get_attribute(".review-words-link", "href") == "#/words?run=runs%2Fbof"
    matrix = metrics["confusion_matrix"]
    # the busiest off-diagonal cell, else the busiest cell
    _, i, j = max(
        (count + (i != j) * 1000, i, j)
        for i, row in enumerate(matrix)
        for j, count in enumerate(row)
    )
    true, predicted = metrics["class_names"][i], metrics["class_names"][j]
    page.click(f".review-cell[data-true='{true}'][data-predicted='{predicted}']")
    grid = f".review-cell-images .review-grid[data-true='{true}'][data-predicted='{predicted}']"
    page.wait_for_selector(grid)
    loaded_images(page, grid)
    names = page.eval_on_selector_all(
        f"{grid} .review-image", "cards => cards.map(c => c.dataset.name)"
    )
    expected = [
        Path(row["path"]).name
        for row in predictions
        if (row["true"], row["predicted"]) == (true, predicted)
    ]
    assert names == expected and len(names) == matrix[i][j] > 0
    assert f"true {true}, predicted {predicted} · {len(names)} image" in page.inner_text(
        ".review-cell-images h4"
    )
    assert screenshot(page, "review-bof").stat().st_size > 10_000
    wrong = [row for row in predictions if row["true"] != row["predicted"]]
    cards = page.locator(".review-misclassified .review-image")
    assert cards.count() == len(wrong) > 0
    first = cards.first
    assert first.get_attribute("data-name") == Path(wrong[0]["path"]).name
    top = first.locator(".review-top li")
    assert top.count() == 3 and top.first.get_attribute("data-label") == wrong[0]["predicted"]
    first.scroll_into_view_if_needed()
    loaded_images(page, ".review-misclassified")
    assert screenshot(page, "review-bof-misclassified").stat().st_size > 10_000


def test_a_clustering_has_one_legend_entry_per_cluster_and_thumbnails_on_hover(page, server, runs):
    summary = json.loads((runs / "cluster" / "summary.json").read_text())
    open_review(page, server, "runs/cluster")
    entries = page.eval_on_selector_all(
        ".review-map-wrap .legend li", "items => items.map(i => i.dataset.name)"
    )
    sizes = [
        page.get_attribute(f".review-montage[data-cluster='{c}'] .review-shown", "data-size")
        for c in range(summary["n_clusters"])
    ]
    assert len(entries) == summary["n_clusters"] == len(sizes)
    assert entries == [f"cluster {c} ({size})" for c, size in enumerate(sizes)]
    page.wait_for_selector(".review-montage .review-shown[data-shown]")
    captions = page.eval_on_selector_all(".review-shown", "items => items.map(i => i.textContent)")
    assert all("images shown, closest to the centre first" in text for text in captions)
    top = page.locator(".review-map circle").last  # drawn last: no other dot covers it
    top.hover()
    page.wait_for_selector(".review-tip:not([hidden]) img")
    loaded_images(page, ".review-tip")
    assert page.get_attribute(".review-tip", "data-image") == top.get_attribute("data-image")
    assert screenshot(page, "review-cluster").stat().st_size > 10_000


def test_transfer_learning_curves_have_integer_epoch_ticks(page, server):
    open_review(page, server, "runs/transfer")
    page.wait_for_selector(".review-charts svg")
    curves = page.locator(".review-charts .chart-figure").first
    assert curves.locator(".tick.x").all_text_contents() == ["1", "2", "3"]
    legend = curves.locator(".legend li").all_text_contents()
    assert len(legend) == 2 and all(name.startswith("scratch, ") for name in legend)
    assert screenshot(page, "review-transfer").stat().st_size > 10_000
