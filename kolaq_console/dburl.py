"""Database URLs read with the standard library, so that loading the settings and `status
--json`'s fast path do not import SQLAlchemy (a tenth of a second of start-up).

`parts` is SQLAlchemy's own URL grammar (sqlalchemy.engine.url._parse_url), so the settings
accept and refuse the same URLs; `sqlite_with_file` rewrites only the plain shape and leaves
anything unusual to SQLAlchemy. `parse` understands only the plain shapes: `sqlite:///FILE`
(sqlite or sqlite+pysqlite, no query string) and `postgresql[+psycopg]://user:password@host:
port/db[?libpq options]`; anything else is None and the caller takes the SQLAlchemy road
(`db.make_engine`). tests/test_dburl.py compares them with SQLAlchemy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

_GRAMMAR = re.compile(
    r"""
        (?P<name>[\w\+]+)://
        (?:
            (?P<username>[^:/]*)
            (?::(?P<password>[^@]*))?
        @)?
        (?:
            (?:
                \[(?P<ipv6host>[^/\?]+)\] |
                (?P<ipv4host>[^/:\?]+)
            )?
            (?::(?P<port>[^/\?]*))?
        )?
        (?:/(?P<database>[^\?]*))?
        (?:\?(?P<query>.*))?
        """,
    re.X,
)
# Characters that SQLAlchemy's unquote and its rendering (quote(safe=" +/")) leave as they are.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_.\-~/ +]*")


def parts(url: str) -> dict[str, str | None]:
    """The URL's components as SQLAlchemy reads them; ValueError if it cannot read them."""
    m = _GRAMMAR.match(url)
    if m is None:
        raise ValueError("Could not parse SQLAlchemy URL from given URL string")
    found = m.groupdict()
    if found["port"]:
        int(found["port"])  # SQLAlchemy refuses a port that is not a number
    return found


def backend_name(url: str) -> str:
    """"postgresql" for postgresql+psycopg://...; ValueError if not a URL."""
    return str(parts(url)["name"]).split("+", 1)[0]


def has_password(url: str) -> bool:
    return parts(url)["password"] is not None


def sqlite_with_file(url: str, file: str) -> str:
    """`url` (a SQLite URL) pointing at `file`, as str(make_url(url).set(database=file))."""
    p = parts(url)
    plain = (p["username"] is None and p["ipv4host"] is None and p["ipv6host"] is None
             and p["port"] is None and p["query"] is None)
    if plain and _PLAIN_PATH.fullmatch(p["database"] or "") and _PLAIN_PATH.fullmatch(file):
        return f"{p['name']}:///{file}"
    from sqlalchemy.engine import make_url  # anything unusual: SQLAlchemy renders it

    return str(make_url(url).set(database=file))


def sqlite_file(url: str) -> str | None:
    """The database part of a SQLite URL (None: in memory), as SQLAlchemy reads it."""
    database = parts(url)["database"]
    return unquote(database) if database else None

_SQLITE = {"sqlite", "sqlite+pysqlite"}
_POSTGRES = {"postgresql", "postgres", "postgresql+psycopg"}


@dataclass(frozen=True)
class PlainUrl:
    backend: str  # "sqlite" or "postgresql"
    path: str = ""  # SQLite: the database file
    connect: dict[str, str | int] = field(default_factory=dict)  # PostgreSQL: psycopg kwargs


def parse(url: str) -> PlainUrl | None:
    scheme, sep, _ = url.partition("://")
    if not sep:
        return None
    if scheme in _SQLITE:
        try:
            p = parts(url)
        except ValueError:
            return None
        if any(p[k] is not None for k in ("username", "ipv4host", "ipv6host", "port", "query")):
            return None
        file = sqlite_file(url)
        return None if file in (None, ":memory:") else PlainUrl("sqlite", path=str(file))
    if scheme not in _POSTGRES:
        return None
    try:
        p = parts(url)
    except ValueError:
        return None
    if p["ipv6host"] or "," in (p["ipv4host"] or ""):
        return None  # IPv6 literals, several hosts: rare, SQLAlchemy handles them
    connect: dict[str, str | int] = {}
    # As SQLAlchemy's translate_connect_args: empty components are left out.
    for key, value in (("user", p["username"]), ("password", p["password"]),
                       ("dbname", p["database"])):
        if value:
            connect[key] = unquote(value)
    if p["ipv4host"]:
        connect["host"] = p["ipv4host"]
    if p["port"]:
        connect["port"] = int(p["port"])
    for key, value in parse_qsl(p["query"] or ""):
        if key in connect:
            return None  # a repeated option: SQLAlchemy passes a list
        connect[key] = value
    return PlainUrl("postgresql", connect=connect)
