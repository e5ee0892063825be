"""dburl reads database URLs as SQLAlchemy does (the settings use it so that loading them does
not import SQLAlchemy), and the fast path's connection parameters are SQLAlchemy's."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from kolaq_console import dburl
from kolaq_console.db import normalise_url

URLS = [
    "sqlite:///var/kolaq.db", "sqlite:////abs/kolaq.db", "sqlite://", "sqlite:///:memory:",
    "sqlite+pysqlite:///a b/c+d.db", "sqlite:///per%25cent.db", "sqlite:///x.db?mode=ro",
    "postgresql://u:p%40ss@127.0.0.1:5432/shop", "postgresql+psycopg://u@h/db?sslmode=disable",
    "postgres://h:5432/db", "postgresql://[::1]:5432/db", "postgresql://u:@h/db",
    "mysql://u:p@h/db",
]


@pytest.mark.parametrize("url", URLS)
def test_components_are_sqlalchemys(url):
    ours, theirs = dburl.parts(url), make_url(url)
    assert dburl.backend_name(url) == theirs.get_backend_name()
    assert dburl.has_password(url) == (theirs.password is not None)
    if theirs.get_backend_name() == "sqlite":
        assert dburl.sqlite_file(url) == theirs.database
    assert ours["name"] == theirs.drivername


@pytest.mark.parametrize("url", ["not a url", "postgresql://h:port/db", "://x"])
def test_what_sqlalchemy_refuses_is_refused(url):
    with pytest.raises(Exception):  # noqa: B017 (SQLAlchemy raises its own types)
        make_url(url)
    with pytest.raises(ValueError):
        dburl.parts(url)


@pytest.mark.parametrize("url", [u for u in URLS if u.startswith("sqlite")])
@pytest.mark.parametrize("file", ["/srv/kolaq/kolaq.db", "/tmp/a b/c+d.db", "/tmp/50%/x?.db"])
def test_a_sqlite_url_is_rewritten_as_sqlalchemy_renders_it(url, file):
    assert dburl.sqlite_with_file(url, file) == str(make_url(url).set(database=file))


@pytest.mark.parametrize("url", [
    "postgresql://u:p%40ss@127.0.0.1:5432/shop", "postgresql+psycopg://u@h/db?sslmode=disable",
    "postgres://h:5432/db", "postgresql://u:@h/db",
])
def test_the_fast_paths_connection_parameters_are_sqlalchemys(url):
    from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

    _, theirs = PGDialect_psycopg().create_connect_args(normalise_url(url))
    parsed = dburl.parse(url)
    assert parsed is not None and parsed.backend == "postgresql"
    assert parsed.connect == theirs


def test_unusual_urls_are_left_to_sqlalchemy():
    for url in ("sqlite://", "sqlite:///x.db?mode=ro", "postgresql://[::1]:5432/db",
                "mysql://u:p@h/db", "postgresql+asyncpg://h/db"):
        assert dburl.parse(url) is None, url


@pytest.mark.parametrize("url", ["sqlite:///var/kolaq.db", "sqlite:////abs/kolaq.db",
                                 "sqlite+pysqlite:///a b/c+d.db", "sqlite:///per%25cent.db"])
def test_the_fast_paths_sqlite_file_is_sqlalchemys(url):
    parsed = dburl.parse(url)
    assert parsed is not None and parsed.path == make_url(url).database
