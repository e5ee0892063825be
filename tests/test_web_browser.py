"""`kolaq-console web` in a real browser: Debian's chromium (/usr/bin/chromium, installed by
scripts/ensure-services) driven by Playwright through its executable path; Playwright never
downloads a browser here. The page loads, the overview renders, a key switches screens, and
the page fetches nothing from another site."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest
from test_web import free_port

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("KOLAQ_TEST_CHROMIUM", "/usr/bin/chromium")

# textual-serve keeps its xterm.js Terminal in a closure; this test-only hook catches the
# object when the page's script assigns `this.terminal`, so the test reads the terminal's own
# buffer (what the operator sees, as text) instead of pixels.
CATCH_TERMINAL = """
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  set(value) {
    Object.defineProperty(this, "terminal", {value, writable: true, configurable: true});
    window.__kolaqTerminal = value;
  },
  get() { return undefined; },
});
"""
SCREEN_TEXT = """() => {
  const term = window.__kolaqTerminal;
  if (!term) return "";
  const buffer = term.buffer.active, rows = [];
  for (let i = 0; i < term.rows; i++) {
    const line = buffer.getLine(buffer.viewportY + i);
    rows.push(line ? line.translateToString(true) : "");
  }
  return rows.join("\\n");
}"""


@pytest.fixture
def browser() -> Iterator[object]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-services (apt-get install "
                    "chromium); the browser test never downloads one")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start.
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def is_overview(text: str) -> bool:
    return "Queues" in text and "Needs attention" in text


def below_navbar(text: str) -> str:
    return text.split("\n", 1)[-1]


def wait_for_screen(page, has: Callable[[str], bool], timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = page.evaluate(SCREEN_TEXT)
        if has(text):
            return text
        time.sleep(0.1)
    raise AssertionError(f"screen not reached in {timeout:.0f} s; it shows:\n{text}")


def test_the_console_runs_in_a_browser(cli_run, spawn, browser):
    assert cli_run("db", "upgrade")[0] == 0
    assert cli_run("demo")[0] == 0
    port = free_port()
    server = spawn("web", "--port", str(port), name="web")
    server.wait_for_output(f"serving the console on http://127.0.0.1:{port}", timeout=60)

    page = browser.new_page(viewport={"width": 1000, "height": 600})
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))
    page.add_init_script(CATCH_TERMINAL)
    page.goto(f"http://127.0.0.1:{port}/")

    overview = wait_for_screen(page, is_overview)
    assert "1 Home" in overview  # the navbar, short labels below 120 columns
    assert "db ok" in overview  # the health line: the console behind the page reads its database
    assert "Low stock" in overview  # the demo shop's figures, read by the console behind it

    page.click(".xterm")  # the keyboard goes to the terminal, as a person's click would
    page.keyboard.press("2")
    wait_for_screen(page, lambda t: not is_overview(t) and "failed" in below_navbar(t).lower(),
                    timeout=30)
    page.keyboard.press("1")
    wait_for_screen(page, is_overview, timeout=30)

    foreign = {urlsplit(u).netloc for u in fetched if not u.startswith("data:")}
    assert foreign == {f"127.0.0.1:{port}"}, fetched
