"""The words page in a real browser (Debian's Chromium via Playwright, the harness of
``tests/test_web_browser.py``) on a small BoF run trained on real flowers5 photos: the words the
SVM weighs most (reached from the run's review page), a word's montage, an image with its
strongest words, and a click from one of them to its montage. The screenshot goes to ``test-output/web/``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from test_web_browser import browser, checked_page, screenshot  # noqa: F401
from test_web_words import runs_folder  # noqa: F401

pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def server(runs_folder) -> Iterator[str]:  # noqa: F811
    from imagelearn.web import create_app
    from imagelearn.web.server import running

    with running(create_app(None, review=[runs_folder])) as url:
        yield url


def loaded(page, selector: str) -> None:
    page.wait_for_function(
        "(s) => { const i = document.querySelector(s); return i && i.complete && i.naturalWidth > 0; }",
        arg=selector,
    )


def test_words_page_shows_montages_and_an_image_explained(browser, server, runs_folder):  # noqa: F811
    with checked_page(browser) as page:
        page.goto(f"{server}/#/review?run={runs_folder.name}/flowers")
        page.click(".review-words-link")  # the review page's way to the model's words
        page.wait_for_selector(".words-grid .card")
        assert page.locator("#nav a").all_inner_texts() == ["Review", "Words"]
        page.select_option('select[aria-label="Image"]', "2")
        page.wait_for_selector('img[alt$="strongest words outlined"]')
        first = page.locator(".words-grid .card").first.get_attribute("data-word")
        loaded(page, 'img[alt^="Patches of word"]')
        assert (
            page.get_attribute('img[alt^="Patches of word"]', "alt") == f"Patches of word {first}"
        )
        loaded(page, 'img[alt$="strongest words outlined"]')
        top = page.locator(".top-words button").nth(1)
        word = top.inner_text().removeprefix("word ")
        top.click()
        page.wait_for_selector(f'img[alt="Patches of word {word}"]')
        loaded(page, f'img[alt="Patches of word {word}"]')
        screenshot(page, "words")
