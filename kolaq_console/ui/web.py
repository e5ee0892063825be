"""`kolaq-console web`: the same console in a browser, served by textual-serve.

textual-serve starts one console process per browser tab (the `command` below, with Textual's
web driver) and relays its screen over a websocket to xterm.js in the page.

The console has no login of its own, so what guards it is where it listens and who may open
its websocket:
- it binds a loopback address unless `[web] allow_remote` is set (then a proxy with a login
  belongs in front of it: README);
- a websocket is opened only from the page's own origin (`[web] public_url`, or the bound
  address): a page from another site that the operator visits cannot drive the console
  (cross-site websocket hijacking), and the Host header must name this server too, so a
  rebound DNS name cannot pass for it;
- the page is our own template (ui/templates/app_index.html): textual-serve's loads a web font
  from a third party; ours uses the font textual-serve ships.
"""

from __future__ import annotations

import ipaddress
import shlex
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from textual_serve.server import Server

from kolaq_console.config import Settings
from kolaq_console.errors import UserError

TEMPLATES = Path(__file__).parent / "templates"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
WILDCARDS = frozenset({"0.0.0.0", "::", ""})


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; any other name could resolve to anything."""
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class WebPlan:
    """Where `kolaq-console web` listens and which origins its websocket accepts."""

    host: str
    port: int
    public_url: str
    origins: frozenset[str]  # scheme://host[:port], lower case, default ports dropped
    hosts: frozenset[str]  # Host header values accepted: host[:port], lower case


def _origin(url: str) -> str:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    port = parts.port
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, default) else f"{host}:{port}"
    return f"{parts.scheme}://{netloc}"


def _host_key(value: str) -> str:
    """A Host header (or netloc) normalised as in `_origin`, without a scheme: the port is
    kept whatever it is (the Host header does not say the scheme)."""
    return urlsplit(f"//{value.strip().lower()}").netloc


def plan(settings: Settings, host: str | None = None, port: int | None = None) -> WebPlan:
    """The address to bind and the origins to accept; refuses (UserError naming the setting)
    a non-loopback address without `[web] allow_remote`, and a wildcard address without a
    `[web] public_url` (browsers cannot open 0.0.0.0)."""
    cfg = settings.web
    host = host or cfg.host
    port = cfg.port if port is None else port
    if not is_loopback(host) and not cfg.allow_remote:
        raise UserError(
            f"refusing to serve the console on {host}: it has no login of its own, so it "
            "listens on a loopback address only. Put a proxy that asks for a login in front of "
            "it (README: \"The console in a browser\") and, if it must listen on another "
            "address, set [web] allow_remote = true (KOLAQ_WEB__ALLOW_REMOTE=true)"
        )
    if host.strip("[]") in WILDCARDS and not cfg.public_url:
        raise UserError(
            f"[web] public_url is needed with host {host or '(any)'}: the address browsers "
            "open, e.g. https://console.example.com (KOLAQ_WEB__PUBLIC_URL)"
        )
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    public_url = cfg.public_url or f"http://{shown}:{port}"
    bound = [] if host.strip("[]") in WILDCARDS else [shown]
    if is_loopback(host):  # the same machine under its other loopback names
        bound += ["127.0.0.1", "localhost", "[::1]"]
    origins = {_origin(public_url)} | {_origin(f"http://{h}:{port}") for h in bound}
    # The public URL's Host as browsers send it: without a default port (https://x:443 -> x).
    hosts = {_origin(public_url).split("://", 1)[1]} | {_host_key(f"{h}:{port}") for h in bound}
    return WebPlan(host, port, public_url, frozenset(origins), frozenset(hosts))


def console_command(config: str | None, read_only: bool) -> str:
    """The shell command textual-serve runs per browser tab: this Python, this package, the
    same config file (environment overrides are inherited)."""
    argv = [sys.executable, "-m", "kolaq_console"]
    if config:
        argv += ["--config", config]
    if read_only:
        argv.append("--read-only")
    return shlex.join(argv)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ConsoleServer(Server):
    """textual-serve's server with our page, the Host and Origin checks and a plain banner."""

    def __init__(self, command: str, web_plan: WebPlan, title: str) -> None:
        super().__init__(command, host=web_plan.host, port=web_plan.port, title=title,
                         public_url=web_plan.public_url, templates_path=TEMPLATES)
        self.plan = web_plan

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(self._check_host)
        return app

    @web.middleware
    async def _check_host(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if _host_key(request.headers.get("Host", "")) not in self.plan.hosts:
            raise web.HTTPMisdirectedRequest(
                text="This server answers to its own address only ([web] public_url).\n")
        return await handler(request)

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        origin = request.headers.get("Origin")
        if origin is None or _origin(origin) not in self.plan.origins:
            # Before the upgrade: no console process is started for a refused origin.
            raise web.HTTPForbidden(
                text="Websocket refused: its Origin is not this console's address "
                     "([web] public_url).\n")
        return await super().handle_websocket(request)

    async def handle_index(self, request: web.Request) -> web.StreamResponse:
        response = await super().handle_index(request)
        # The page is the console: never framed by another site (clickjacking), never cached.
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    async def on_startup(self, app: web.Application) -> None:
        self.console.print(f"kolaq-console web: serving the console on {self.public_url} "
                           "(Ctrl+C stops)", highlight=False, markup=False)


def make_server(settings: Settings, *, host: str | None = None, port: int | None = None,
                read_only: bool = False, config: str | None = None) -> ConsoleServer:
    """The server `kolaq-console web` runs (refusals are raised here, before any bind)."""
    web_plan = plan(settings, host, port)
    return ConsoleServer(console_command(config, read_only), web_plan,
                         title=f"{settings.shop.name} console")


def serve(server: ConsoleServer) -> None:
    """Run until SIGINT/SIGTERM (textual-serve stops each tab's console process)."""
    server.serve()

