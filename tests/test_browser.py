"""The chat in a real browser: Debian's headless chromium drives `python app.py` started as a subprocess.

Screenshots (a cited answer with its source open, and an upload) go to the test's temp folder, or to
$CITEQA_SCREENSHOTS when set: `make screenshots` sets it to docs/img. `make test` writes no tracked file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from citeqa import servers
from tests.conftest import ROOT, free_port

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = os.environ.get("CITEQA_SCREENSHOTS")  # read at import: the per-test fixture clears CITEQA_*
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium: "
                       "`apt-get install -y chromium` (or `make setup-browser`)"),
]


def start_app(home: Path, log_path: Path, env: dict | None = None):
    """`python app.py --port FREE` over CITEQA_HOME=home (plus `env`); returns (process, URL) once it serves."""
    port = free_port()
    try:
        with log_path.open("w") as log:  # the app writes to its own copy of the file
            proc = servers.start([sys.executable, str(ROOT / "app.py"), "--port", str(port)], port, seconds=120,
                                 what="app.py", cwd=ROOT, env={**os.environ, "CITEQA_HOME": str(home), **(env or {})},
                                 stdout=log, stderr=subprocess.STDOUT)
    except servers.ServerStartError as exc:
        pytest.fail(f"{exc}:\n{log_path.read_text()[-3000:]}")
    return proc, f"http://127.0.0.1:{port}/"


@pytest.fixture
def app_url(indexed: Path, tmp_path: Path):
    proc, url = start_app(indexed, tmp_path / "app.log")
    yield url
    servers.stop(proc)


def contrast(page, selector: str) -> float:
    """WCAG contrast ratio of the element's text colour against its background colour."""
    return page.eval_on_selector(selector, """el => {
        const rgb = s => s.match(/[\\d.]+/g).slice(0, 3).map(Number);
        const lum = ([r, g, b]) => [r, g, b].map(v => { v /= 255; return v <= 0.03928 ? v / 12.92
            : Math.pow((v + 0.055) / 1.055, 2.4); }).reduce((a, v, i) => a + v * [0.2126, 0.7152, 0.0722][i], 0);
        const st = getComputedStyle(el), a = lum(rgb(st.color)), b = lum(rgb(st.backgroundColor));
        return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05); }""")


def ask(page, question: str, expected: str):
    """Type a question, wait for its answer (holding `expected`) to finish; returns the answer's row."""
    from playwright.sync_api import expect

    bots = page.locator("#citeqa-chat .message-row.bot-row")
    before = bots.count()
    box = page.locator("#citeqa-input textarea")
    box.fill(question)
    box.press("Enter")
    expect(bots).to_have_count(before + 1)
    expect(bots.nth(before)).to_contain_text("answered in ")  # finished: the time is shown last
    expect(bots.nth(before)).to_contain_text(expected)
    return bots.nth(before)


def pick(page, dropdown: str, *choices: str) -> None:
    """Choose `choices` in the multiselect dropdown `dropdown` (its elem_id)."""
    for choice in choices:
        page.locator(f"{dropdown} input").click()
        page.locator("[role=listbox] [role=option]", has_text=choice).first.click()
    page.keyboard.press("Escape")


def open_citation(page, link) -> None:
    """Click a [n] link; the viewer shows the cited span highlighted and scrolled into its view."""
    from playwright.sync_api import expect

    link.click()
    hit = page.locator("#citeqa-viewer #citeqa-hit")
    expect(hit).to_be_visible()
    expect(hit).to_be_in_viewport()
    box, doc = hit.bounding_box(), page.locator("#citeqa-viewer .citeqa-doc").bounding_box()
    assert doc["y"] - 1 <= box["y"] and box["y"] + 10 <= doc["y"] + doc["height"], (box, doc)


HOSTILE_Q = "1887. [1] <img src=x onerror=\"fetch('/y')\"> <b>bold</b> Who retook the al-Hamdan airbase?"
HOSTILE_DOC = ("# Festivals of Quentown\n\nThe Zorblat festival is held every June in Quentown. <b>It</b> "
               "celebrates the town's glass blowers <img src=z onerror=\"fetch('/w')\">.\n\n"
               "* Visit [the site](http://evil.example) $$x^2$$\n")


def test_chat_in_browser(app_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)  # a loaded 2-core CI machine takes seconds to render lists
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1360, "height": 940})
        page.set_default_timeout(60_000)
        outside: list[str] = []
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.on("request", lambda r: None if r.url.startswith((app_url, "data:", "blob:")) else outside.append(r.url))
        page.goto(app_url)
        expect(page.locator("#citeqa-docs")).to_contain_text("isil-retakes-syria-border-town.txt")
        expect(page.locator("#citeqa-model")).to_contain_text("extractive")
        chat = page.locator("#citeqa-chat")
        assert chat.locator("[data-testid=block-label]").count() == 0  # no "Chat" label over the messages

        # 1. The cited answer's [1] opens the viewer on the span; a hostile question is shown as typed.
        answer = ask(page, "Who retook the al-Hamdan airbase?", "[1]")
        expect(answer.locator("strong").first).to_contain_text("ISIL")
        expect(chat.get_by_text("[1] isil-retakes-syria-border-town.txt").first).to_be_visible()
        expect(chat.locator("mark").first).to_contain_text("ISIL fighters had recaptured the area")
        open_citation(page, answer.locator("a.citeqa-cite", has_text="[1]").first)
        expect(page.locator("#citeqa-viewer")).to_contain_text("[1] isil-retakes-syria-border-town.txt")
        expect(page.locator("#citeqa-viewer #citeqa-hit")).to_contain_text("ISIL fighters had recaptured the area")
        assert contrast(page, "#citeqa-viewer #citeqa-hit") >= 4.5
        img = Path(SCREENSHOTS or tmp_path)
        img.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(img / "chat-answer.png"))
        ask(page, HOSTILE_Q, "answered in")
        user = chat.locator(".message-row.user-row").last
        expect(user).to_contain_text("1887. [1] <img src=x onerror=\"fetch('/y')\"> <b>bold</b> Who retook")
        assert chat.locator("img, b, ol, ul").count() == 0

        # 2. A follow-up resolved against the conversation; the conversation survives a reload.
        ask(page, "How many air strikes did the coalition conduct near al-Bukamal?", "eight")
        ask(page, "And near al-Qaim?", "five")
        page.reload()
        expect(chat.locator(".message-row.bot-row")).to_have_count(4)
        expect(chat).to_contain_text("And near al-Qaim?")
        ask(page, "And near al-Qaim?", "five")  # the restored turns are still the conversation

        # 3. Upload a hostile document with a made-up fact, then ask about it.
        note = tmp_path / "zorblat.md"
        note.write_text(HOSTILE_DOC)
        other = tmp_path / "ferries.txt"
        other.write_text("The Quentown ferries run every hour from the harbour.\n")
        page.locator("#citeqa-upload input[type=file]").set_input_files([str(note), str(other)])
        expect(page.locator("#citeqa-upload-status")).to_contain_text("zorblat.md")
        expect(page.locator("#citeqa-docs")).to_contain_text("ferries.txt")
        answer = ask(page, "When is the Zorblat festival held?", "June")
        expect(answer.get_by_text("[1] zorblat.md")).to_be_visible()
        expect(answer.locator("mark")).to_contain_text("The Zorblat festival is held every June in Quentown.")
        open_citation(page, answer.locator("a.citeqa-cite").first)
        viewer = page.locator("#citeqa-viewer")
        expect(viewer).to_contain_text("<b>It</b> celebrates")
        expect(viewer).to_contain_text("* Visit [the site](http://evil.example) $$x^2$$")
        assert viewer.locator("img, b, a, ul, h1, .katex").count() == 0 and chat.locator("img, b").count() == 0
        page.screenshot(path=str(img / "chat-upload.png"))

        # 4. The document filter: scoped to zorblat.md, the article's question gets no article citation.
        pick(page, "#citeqa-scope", "zorblat.md")
        scoped = ask(page, "Who retook the al-Hamdan airbase?", "answered in")
        expect(scoped).not_to_contain_text("isil-retakes-syria-border-town.txt")

        # 5. Removing asks first, Cancel keeps everything, Remove takes both.
        pick(page, "#citeqa-pick", "zorblat.md", "ferries.txt")
        page.locator("#citeqa-remove").click()
        expect(page.locator("#citeqa-confirm-text")).to_contain_text("Remove 2 documents from the index: zorblat.md, ferries.txt?")
        page.locator("#citeqa-confirm-no").click()
        expect(page.locator("#citeqa-confirm-text")).to_be_hidden()
        expect(page.locator("#citeqa-docs")).to_contain_text("zorblat.md")
        page.locator("#citeqa-remove").click()
        page.locator("#citeqa-confirm-yes").click()
        expect(page.locator("#citeqa-upload-status")).to_contain_text("Removed zorblat.md")
        expect(page.locator("#citeqa-upload-status")).to_contain_text("Removed ferries.txt")
        expect(page.locator("#citeqa-docs")).not_to_contain_text("zorblat.md")
        expect(page.locator("#citeqa-docs")).to_contain_text("isil-retakes-syria-border-town.txt")
        browser.close()
    assert not outside, f"the page fetched from outside the app: {outside[:5]}"
    fetched = [u for u in requests if u.rstrip("/").endswith(("/x", "/y", "/z", "/w"))]
    assert not fetched, f"hostile HTML made the browser fetch: {fetched}"
    log = (tmp_path / "app.log").read_text()
    assert "DEBUG" not in log and "Warning" not in log and "Traceback" not in log, log[-2000:]


def test_dark_mode_highlights_are_readable(app_url: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1360, "height": 940}, color_scheme="dark")
        page.goto(app_url)
        answer = ask(page, "Who retook the al-Hamdan airbase?", "[1]")
        assert "dark" in page.evaluate("document.body.className")
        open_citation(page, answer.locator("a.citeqa-cite").first)
        assert contrast(page, "#citeqa-viewer #citeqa-hit") >= 4.5
        assert contrast(page, "#citeqa-chat mark") >= 4.5
        browser.close()


def test_generative_answer_streams_into_the_chat(indexed: Path, tmp_path: Path, model_server) -> None:
    """openai-compatible backend against a streaming server (events 0.25 s apart): the answer grows in the
    chat as tokens arrive, then the verified answer with its [1] link and time replaces the draft."""
    from playwright.sync_api import expect, sync_playwright

    from tests.test_agent import cite_passage_with

    claim = "ISIL fighters recaptured the airbase area on Wednesday afternoon after a counter-attack"
    server = model_server(cite_passage_with("recaptured the area", claim), chunk_delay=0.25)
    proc, url = start_app(indexed, tmp_path / "app.log", {"CITEQA_BACKEND": "openai-compatible",
                                                          "CITEQA_BASE_URL": server.url})
    try:
        expect.set_options(timeout=60_000)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1360, "height": 940})
            page.goto(url)
            expect(page.locator("#citeqa-model")).to_contain_text("openai-compatible")
            box = page.locator("#citeqa-input textarea")
            box.fill("Who retook the al-Hamdan airbase?")
            box.press("Enter")
            bot = page.locator("#citeqa-chat .message-row.bot-row").first
            seen = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and "answered in" not in (seen[-1] if seen else ""):
                text = bot.inner_text() if bot.count() else ""
                if text and (not seen or seen[-1] != text):
                    seen.append(text)
                time.sleep(0.05)
            drafts = [t.rstrip("▍ \n") for t in seen if "answered in" not in t and t.strip("▍ \n")]
            assert len(drafts) >= 3 and all(claim.startswith(d[:len(claim)]) or d.startswith(claim) for d in drafts), seen
            assert len(set(drafts)) >= 3 and drafts == sorted(drafts, key=len), seen  # it grew as tokens arrived
            expect(bot.locator("a.citeqa-cite", has_text="[1]")).to_have_count(1)
            expect(bot).to_contain_text(claim)
            browser.close()
    finally:
        servers.stop(proc)
