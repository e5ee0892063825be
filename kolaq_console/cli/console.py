"""Start the Textual console."""

from __future__ import annotations

from kolaq_console.cli.common import huey, ready_engine


def run_console(with_worker: bool, read_only: bool) -> None:
    from kolaq_console import runtime

    ready_engine()
    from kolaq_console.ui.app import make_app

    make_app(runtime.settings(), with_worker=with_worker, read_only=read_only,
             huey=huey()).run()
