"""The demo page in a real browser: headless Chromium driven through Playwright, as a person would
use it. Skipped without Debian's `chromium` (apt-get install chromium)."""
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import spacy
import uvicorn

from spacy_uniner.demo import MAX_LABELS, create_app

from conftest import needs

sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright: pip install playwright")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STUDENT = ROOT / "training" / "uniner"
pytestmark = [
    pytest.mark.browser,
    needs(CHROMIUM is not None, "needs a Chromium browser: apt-get install chromium (Debian's package)"),
]

TEXT = "Marie Curie discovered polonium in Paris."
ANSWERS = {
    (TEXT, "person"): [("Marie Curie", 0.9)],
    (TEXT, "chemical element"): [("polonium", 0.3)],
    (TEXT, "city"): [("Paris", 0.8)],
}


class PageServer:
    """The demo app served by uvicorn on a free loopback port, in a thread of this process."""

    def __init__(self, nlp):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(create_app(nlp), log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the demo server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def scripted_page(scripted_nlp, browser):
    nlp = scripted_nlp(ANSWERS, ["unused"], threshold=0.5)
    with PageServer(nlp) as server:
        page = browser.new_page()
        page.goto(server.url)
        yield page, nlp.get_pipe("uniner").generator
        page.close()


def run(page, text, labels):
    page.fill("#text", text)
    page.fill("#labels", labels)
    page.click("#run")
    sync_api.expect(page.locator("#run")).to_have_text("Run")  # the answer, or a message, is in


def marks(page):
    """The highlighted entities: (text, label) of each displaCy mark."""
    found = []
    for mark in page.locator("#entities mark").all():
        label = mark.locator("span").inner_text()
        found.append((mark.inner_text().replace(label, "").strip(), label))
    return found


def table(page):
    return [[cell.inner_text() for cell in row.locator("td").all()] for row in page.locator("#mentions tbody tr").all()]


def test_run_highlights_entities_and_lists_scores(scripted_page):
    page, _ = scripted_page
    assert page.locator("#threshold").input_value() == "0.5"
    run(page, TEXT, "person, chemical element, city")
    assert marks(page) == [("Marie Curie", "person"), ("Paris", "city")]
    assert table(page) == [["Marie Curie", "person", "0.90", "yes"], ["Paris", "city", "0.80", "yes"]]
    assert page.inner_text("#stats").startswith("3 questions in ") and "3 mentions found at any score" in page.inner_text("#stats")
    assert page.locator("#message").is_hidden()
    # displaCy's colour for each label, as display.py gives it
    assert page.locator("#entities mark").first.get_attribute("style").startswith("background: #")


def test_the_threshold_slider_refilters_without_the_model(scripted_page):
    page, generator = scripted_page
    run(page, TEXT, "person, chemical element, city")
    calls = len(generator.calls)
    page.locator("#threshold").fill("0")
    sync_api.expect(page.locator("#entities mark")).to_have_count(3)
    assert page.inner_text("#threshold-value") == "0"
    page.locator("#threshold").fill("0.85")
    sync_api.expect(page.locator("#entities mark")).to_have_count(1)
    assert marks(page) == [("Marie Curie", "person")] and len(table(page)) == 1
    assert len(generator.calls) == calls


@pytest.mark.parametrize(
    "text, labels, message",
    [
        ("", "person", "Type a text"),
        (TEXT, "", "Give at least one label"),
        (TEXT, ", ".join(f"type {i}" for i in range(40)), f"At most {MAX_LABELS} labels a run: you gave 40"),
        ("word " * 20_000, "person", "The text has 100,000 characters"),
    ],
)
def test_bad_input_shows_a_message_and_the_page_still_works(scripted_page, text, labels, message):
    page, _ = scripted_page
    run(page, text, labels)
    sync_api.expect(page.locator("#message")).to_contain_text(message)
    run(page, TEXT, "person")
    assert page.locator("#message").is_hidden() and marks(page) == [("Marie Curie", "person")]


def test_html_in_a_label_is_shown_as_text_never_run(scripted_nlp, browser):
    label = '<img src=x onerror="window.pwned=1">"quoted"'
    with PageServer(scripted_nlp({(TEXT, label): [("Paris", 0.9)]}, ["unused"])) as server:
        page = browser.new_page()
        page.goto(server.url)
        run(page, TEXT, label)
        assert marks(page) == [("Paris", label)]
        assert table(page)[0][1] == label
        assert page.evaluate("window.pwned") is None and page.locator("#entities img").count() == 0
        page.close()


def test_two_people_at_once_both_get_their_answers(scripted_nlp, browser):
    nlp = scripted_nlp(ANSWERS, ["unused"])
    generator = nlp.get_pipe("uniner").generator
    scripted = generator.generate_scored
    generator.generate_scored = lambda prompts: (time.sleep(0.5), scripted(prompts))[1]
    with PageServer(nlp) as server:
        pages = [browser.new_page(), browser.new_page()]
        for page, labels in zip(pages, ("person", "city")):
            page.goto(server.url)
            page.fill("#text", TEXT)
            page.fill("#labels", labels)
        for page in pages:
            page.click("#run")  # the second asks while the first is being answered
        for page, expected in zip(pages, ([("Marie Curie", "person")], [("Paris", "city")])):
            sync_api.expect(page.locator("#entities mark")).to_have_count(1, timeout=10_000)
            assert marks(page) == expected
            page.close()


@pytest.mark.slow
@pytest.mark.skipif(not DEFAULT_STUDENT.exists(), reason="needs the default student: `make run` trains it into training/uniner")
def test_the_default_student_on_the_page(browser, tmp_path):
    """The trained default student, end to end: the page marks what the pipeline itself puts in
    `doc.ents` for the page's own example, at the pipeline's threshold. Which mentions the student
    finds is measured by `evaluate`, not pinned here to one sentence. The screenshot goes to
    $SPACY_UNINER_SCREENSHOT when set (README's docs/demo.png is taken this way)."""
    with PageServer(spacy.load(DEFAULT_STUDENT)) as server:
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(server.url)
        text, labels = page.input_value("#text"), page.input_value("#labels")
        page.click("#run")  # the page's own example text and labels
        sync_api.expect(page.locator("#run")).to_have_text("Run", timeout=120_000)
        assert page.locator("#message").is_hidden()
        found = marks(page)
        nlp = spacy.load(DEFAULT_STUDENT)
        nlp.get_pipe("uniner").labels = [label.strip() for label in labels.split(",")]
        assert found and found == [(ent.text, ent.label_) for ent in nlp(text).ents]
        screenshot = Path(os.environ.get("SPACY_UNINER_SCREENSHOT", tmp_path / "demo.png"))
        page.screenshot(path=str(screenshot), full_page=True)
        page.close()


def test_a_label_that_is_not_unicode_text_gets_a_message_and_the_page_still_works(scripted_page):
    """The request that once took the page down until a restart: a label holding a lone surrogate,
    which a page's JavaScript string can hold and JSON.stringify sends as "\\udc00"."""
    page, generator = scripted_page
    page.fill("#text", TEXT)
    page.evaluate("document.querySelector('#labels').value = 'per\\udc00son'")
    page.click("#run")
    sync_api.expect(page.locator("#message")).to_contain_text("lone surrogate")
    assert generator.calls == []
    run(page, TEXT, "person, city")
    assert page.locator("#message").is_hidden() and marks(page) == [("Marie Curie", "person"), ("Paris", "city")]
    page.locator("#threshold").fill("0.85")  # and the render the slider calls
    sync_api.expect(page.locator("#entities mark")).to_have_count(1)
