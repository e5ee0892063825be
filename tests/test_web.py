"""`kolaq-console web` without a browser: where it may listen, whose websocket it accepts, the
page it serves (nothing loaded from another site). The browser itself: test_web_browser.py."""

from __future__ import annotations

import asyncio
import gc
import re
import socket
import sys
import urllib.request

import pytest
from aiohttp import WSServerHandshakeError
from aiohttp.test_utils import TestClient, TestServer
from helpers import wait_until

from kolaq_console.errors import UserError
from kolaq_console.ui.web import console_command, is_loopback, make_server, plan


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A stand-in for the console process textual-serve starts per tab: the web driver's prelude,
# one data packet, then exit (the real console is driven in test_web_browser.py).
FAKE_CONSOLE = (
    "import sys; out = sys.stdout.buffer; out.write(b'__GANGLION__\\n'); "
    "out.write(b'D' + (5).to_bytes(4, 'big') + b'hello'); out.flush()"
)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.5", "shop.example"])
def test_web_refuses_to_listen_beyond_loopback_without_allow_remote(cli_run, host):
    code, _, err = cli_run("web", "--host", host)
    assert code == 1
    assert "[web] allow_remote" in err and "KOLAQ_WEB__ALLOW_REMOTE" in err
    assert "login" in err  # says why: the console has none of its own


def test_allow_remote_on_a_wildcard_address_still_needs_the_public_url(make_settings):
    settings = make_settings(web__allow_remote="true")
    with pytest.raises(UserError, match=r"\[web\] public_url"):
        plan(settings, "0.0.0.0", 8000)
    remote = plan(make_settings(web__allow_remote="true",
                                web__public_url="https://console.shop.example/"), "0.0.0.0", 8000)
    assert remote.public_url == "https://console.shop.example"
    assert "https://console.shop.example" in remote.origins
    assert "http://0.0.0.0:8000" not in remote.origins | remote.hosts
    assert remote.hosts == {"console.shop.example"}  # the Host header a browser sends there
    explicit = plan(make_settings(web__public_url="https://console.shop.example:443"))
    assert "console.shop.example" in explicit.hosts
    assert "https://console.shop.example" in explicit.origins


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LOCALHOST", True), ("0.0.0.0", False), ("::", False),
    ("192.168.1.20", False), ("localhost.evil.example", False), ("example.com", False),
])
def test_only_loopback_addresses_count_as_local(host, loopback):
    assert is_loopback(host) is loopback


def test_the_defaults_listen_on_loopback_and_accept_its_own_origins_only(make_settings):
    web = plan(make_settings())
    assert (web.host, web.port, web.public_url) == ("127.0.0.1", 8000, "http://127.0.0.1:8000")
    assert web.origins == {"http://127.0.0.1:8000", "http://localhost:8000",
                           "http://[::1]:8000"}


def test_each_tab_runs_this_python_with_the_same_config_file():
    command = console_command("/srv/kolaq/my config.toml", read_only=True)
    assert command.startswith(sys.executable)
    assert "-m kolaq_console --config '/srv/kolaq/my config.toml' --read-only" in command


# --- the server in this process --------------------------------------------------------------


@pytest.fixture
async def client(make_settings):
    """The web app on a free loopback port, its console replaced by FAKE_CONSOLE."""
    port = free_port()
    server = make_server(make_settings(), port=port)
    server.command = f"{sys.executable} -c \"{FAKE_CONSOLE}\""
    test_server = TestServer(await server._make_app(), host="127.0.0.1", port=port)
    async with TestClient(test_server) as c:
        yield c


async def test_the_page_loads_nothing_from_another_site(client):
    response = await client.get("/")
    assert response.status == 200
    page = await response.text()
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "fonts.googleapis.com" not in page
    base = f"http://127.0.0.1:{client.port}"
    urls = re.findall(r"""(?:href|src)="([^"]+)"|url\("([^"]+)"\)""", page)
    urls = [a or b for a, b in urls]
    assert any(u.endswith(".ttf") for u in urls)  # the font comes from this server
    assert all(u.startswith(f"{base}/static/") or u.startswith("data:") for u in urls), urls
    assert f'data-session-websocket-url="ws://127.0.0.1:{client.port}/ws"' in page
    for url in urls:
        if url.startswith(base):
            assert (await client.get(url.removeprefix(base))).status == 200, url


async def test_a_request_naming_another_host_is_refused(client):
    # A DNS name rebound to 127.0.0.1 reaches this port, but its Host header gives it away.
    response = await client.get("/", headers={"Host": f"evil.example:{client.port}"})
    assert response.status == 421


@pytest.mark.parametrize("origin", [
    "http://evil.example", "http://127.0.0.1:1", "https://127.0.0.1:{port}", None])
async def test_a_websocket_from_another_origin_is_refused(client, origin):
    headers = {} if origin is None else {"Origin": origin.format(port=client.port)}
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", headers=headers)
    assert refused.value.status == 403


@pytest.mark.parametrize("origin", ["http://127.0.0.1:{port}", "http://localhost:{port}"])
async def test_a_websocket_from_the_page_own_origin_drives_a_console(client, origin):
    ws = await client.ws_connect("/ws?width=80&height=24",
                                 headers={"Origin": origin.format(port=client.port)})
    message = await ws.receive(timeout=30)
    assert message.data == b"hello"  # relayed from the console process it started
    await ws.close()
    await asyncio.sleep(0.2)  # the server stops its console process...
    gc.collect()  # ...whose pipes textual-serve leaves to the collector: while the loop runs


# --- the command, as a real process ----------------------------------------------------------


def test_web_serves_the_console_page_on_loopback(cli_run, spawn):
    assert cli_run("db", "upgrade")[0] == 0
    port = free_port()
    proc = spawn("web", "--port", str(port), name="web")
    proc.wait_for_output(f"serving the console on http://127.0.0.1:{port}", timeout=60)

    def page() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                return response.read().decode()
        except OSError:
            return None

    text = wait_until(page, timeout=30, message="the page")
    assert "<title>Kolaq Bitters console</title>" in text
