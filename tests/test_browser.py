"""The chat in a real browser: Debian's headless chromium drives `python app.py` started as a subprocess.

Screenshots (a cited answer with its source open, and an upload) go to the test's temp folder, or to
$CITEQA_SCREENSHOTS when set: `make screenshots` sets it to docs/img. `make test` writes no tracked file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium: "
                       "`apt-get install -y chromium` (or `make setup-browser`)"),
]


@pytest.fixture
def app_url(indexed: Path, tmp_path: Path):
    """`python app.py --port FREE` over the test's CITEQA_HOME; yields its URL once it answers HTTP."""
    port = free_port()
    env = {**os.environ, "CITEQA_HOME": str(indexed)}
    log = (tmp_path / "app.log").open("w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"app.py did not start:\n{(tmp_path / 'app.log').read_text()[-3000:]}")
            time.sleep(0.3)
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_chat_in_browser(app_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)  # a loaded 2-core CI machine takes seconds to render lists
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1360, "height": 940})
        page.set_default_timeout(60_000)
        outside: list[str] = []
        page.on("request", lambda r: None if r.url.startswith((app_url, "data:", "blob:")) else outside.append(r.url))
        page.goto(app_url)
        expect(page.locator("#citeqa-docs")).to_contain_text("isil-retakes-syria-border-town.txt")
        expect(page.locator("#citeqa-model")).to_contain_text("extractive")

        def ask(question: str, expected: str):
            bots = page.locator("#citeqa-chat .message-row.bot-row")
            before = bots.count()
            box = page.locator("#citeqa-input textarea")
            box.fill(question)
            box.press("Enter")
            expect(bots).to_have_count(before + 1)
            expect(bots.nth(before)).to_contain_text(expected)
            expect(box).to_be_editable()  # the answer has finished streaming
            return bots.nth(before)

        # 1. A cited answer; its first source is open with the recapture sentence highlighted.
        ask("Who retook the al-Hamdan airbase?", "[1]")
        chat = page.locator("#citeqa-chat")
        expect(chat).to_contain_text("ISIL")
        expect(chat.get_by_text("[1] isil-retakes-syria-border-town.txt").first).to_be_visible()
        mark = chat.locator("mark").first
        expect(mark).to_be_visible()
        expect(mark).to_contain_text("ISIL fighters had recaptured the area")
        img = Path(os.environ.get("CITEQA_SCREENSHOTS") or tmp_path)
        img.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(img / "chat-answer.png"))

        # 2. A follow-up resolved against the conversation.
        ask("How many air strikes did the coalition conduct near al-Bukamal?", "eight")
        ask("And near al-Qaim?", "five")

        # 3. Upload a document with a made-up fact, then ask about it.
        note = tmp_path / "zorblat.md"
        note.write_text("# Festivals of Quentown\n\nThe Zorblat festival is held every June in Quentown. "
                        "It celebrates the town's glass blowers.\n")
        page.locator("#citeqa-upload input[type=file]").set_input_files(str(note))
        expect(page.locator("#citeqa-upload-status")).to_contain_text("zorblat.md")
        expect(page.locator("#citeqa-docs")).to_contain_text("zorblat.md")
        answer = ask("When is the Zorblat festival held?", "June")
        expect(answer.get_by_text("[1] zorblat.md")).to_be_visible()
        expect(answer.locator("mark")).to_contain_text("The Zorblat festival is held every June in Quentown.")
        page.screenshot(path=str(img / "chat-upload.png"))
        browser.close()
    assert not outside, f"the page fetched from outside the app: {outside[:5]}"
