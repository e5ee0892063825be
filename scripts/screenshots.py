"""Take the README's screenshots: every numbered screen of the console on the demo shop, as SVG
(Textual's own export), into docs/screenshots/.

    .venv/bin/python scripts/screenshots.py [--size 120x40] [--out docs/screenshots]

Runs on a scratch folder (its own SQLite database and queue), never on var/.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

# key -> file name; only the screens this version has are taken
SCREENS = [
    ("1", "overview"),
    ("2", "failed-jobs"),
    ("3", "inventory"),
    ("4", "emails"),
    ("5", "broadcasts"),
    ("6", "orders"),
    ("7", "webhooks"),
    ("8", "activity"),
    ("9", "messages"),
]


def scratch_environment() -> None:
    folder = Path(tempfile.mkdtemp(prefix="kolaq-shots-"))
    os.environ.update({
        "KOLAQ_DATABASE__URL": f"sqlite:///{folder / 'kolaq.db'}",
        "KOLAQ_QUEUE__SQLITE_PATH": str(folder / "queue.db"),
        "KOLAQ_QUEUE__NAME": "kolaq-screenshots",
        "KOLAQ_EMAIL__OUTBOX_DIR": str(folder / "outbox"),
        "KOLAQ_SMS__OUTBOX_DIR": str(folder / "outbox"),
    })


async def take(out: Path, width: int, height: int) -> list[Path]:
    from sqlmodel import Session, col, select

    from kolaq_console import runtime
    from kolaq_console.cli.demo import demo
    from kolaq_console.models import EmailOutbox, Order
    from kolaq_console.schema import upgrade
    from kolaq_console.ui.app import make_app

    settings = runtime.settings()
    engine = runtime.engine_for(settings.database.url)
    upgrade(engine)
    demo()  # what `make console` loads: the shop and its present, retries scheduled on the queue
    import tasks  # noqa: F401  (wires the queue the console shows)
    with Session(engine) as session:  # the incident of the tour: an order whose email failed
        incident = session.exec(
            select(Order.number).join(EmailOutbox, col(EmailOutbox.order_id) == Order.id)
            .where(EmailOutbox.status == "failed").order_by(col(EmailOutbox.id))).first()

    app = make_app(settings)
    written: list[Path] = []
    async with app.run_test(size=(width, height)) as pilot:
        for key, name in SCREENS:
            if key not in {b.key for b in app.BINDINGS if hasattr(b, "key")}:
                continue
            await pilot.press(key)
            await pilot.pause(1.0)  # the screen's first load runs in a thread worker
            await pilot.wait_for_scheduled_animations()
            path = out / f"{name}.svg"
            app.save_screenshot(filename=path.name, path=str(out))
            written.append(path)
        if incident:  # ctrl+p, the order number, Enter: the order's record
            await pilot.press("ctrl+p", *incident, "enter")
            await pilot.pause(1.0)
            path = out / "order-record.svg"
            app.save_screenshot(filename=path.name, path=str(out))
            written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="120x40", help="terminal size, COLSxROWS")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args()
    width, height = (int(part) for part in args.size.lower().split("x"))
    args.out.mkdir(parents=True, exist_ok=True)
    scratch_environment()
    for path in asyncio.run(take(args.out, width, height)):
        print(path)


if __name__ == "__main__":
    main()
