"""What the screens read (kolaq_console.ui.data), without Textual; and the layering rule:
nothing outside kolaq_console/ui imports Textual or the UI."""

from __future__ import annotations

import ast
from pathlib import Path

from seed import NOW, seed_ledger
from sqlmodel import Session

from kolaq_console.ui.data import collect_overview, load_inventory

PACKAGE = Path(__file__).resolve().parents[2] / "kolaq_console"


def test_overview_buckets_the_last_hour_and_marks_dead_workers(sqlite_engine, settings,
                                                                     huey):
    seed_ledger(sqlite_engine)
    o = collect_overview(settings.model_copy(update={"jobs": settings.jobs.model_copy(
        update={"lease_seconds": 120.0})}), sqlite_engine, huey, NOW)
    assert len(o.completed) == len(o.failed) == len(o.retried) == 60
    assert o.total_completed == 183 and o.total_failed == 2 and o.total_retried == 2
    assert o.completed[-1] > 0  # the current minute is the last bucket
    assert round(o.error_rate, 3) == round(4 / 187, 3)
    assert {w["name"]: w["state"] for w in o.workers} == {"shop-1:4242": "live",
                                                          "shop-2:977": "dead"}
    assert o.status.failed_jobs == 4


def test_overview_of_an_unreachable_database_reports_it(settings, huey, tmp_path):
    from kolaq_console.db import make_engine

    broken = make_engine(f"sqlite:///{tmp_path / 'missing' / 'nothing.db'}")
    (tmp_path / "missing" / "nothing.db").mkdir(parents=True)  # a folder, not a file
    o = collect_overview(settings, broken, huey, NOW)
    assert o.status.storage["database"] != "ok"
    assert o.workers == [] and o.completed == []


def test_inventory_view_summarises_activity(sqlite_engine, settings, shop):
    with Session(sqlite_engine) as session:
        view = load_inventory(session, settings, NOW)
    # Adjustments are their own record (event + adjust entry); folding writes only the run.
    assert [a["action"] for a in view.activity] == ["adjust", "adjust", "run"]
    assert view.activity[0]["summary"] == "-2 → 3: two bottles broken in transit"
    assert view.last_run_at == NOW.replace(hour=1)


def test_only_the_ui_package_imports_textual_or_the_ui():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        # the console command starts it; the web command serves it
        if rel.startswith("ui/") or rel in ("cli/console.py", "cli/web.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "textual" or n.startswith("kolaq_console.ui")
                   for n in names):
                offenders.append(rel)
    assert offenders == []
