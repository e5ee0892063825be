"""`webhooks replay` on the command line: what cannot be replayed is said before any question,
and without a terminal (a script, cron) it refuses in one line instead of click's bare
"Aborted!"; nothing changes either way."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session, select

from kolaq_console import dispatch
from kolaq_console.models import ActivityLog, WebhookEvent


def seed_event(engine, status: str) -> int:
    with Session(engine) as s:
        event = WebhookEvent(provider="paystack", event_id=f"evt-{status}",
                             event_type="charge.success", status=status, error="lock timeout")
        s.add(event)
        s.commit()
        return event.id


def test_replay_without_yes_and_no_terminal_refuses_in_one_line_and_changes_nothing(
    engine, cli_result
):
    event_id = seed_event(engine, "failed")
    with dispatch.recording() as calls:
        result = cli_result("webhooks", "replay", str(event_id))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"kolaq-console: not replayed: webhook event #{event_id} (paystack charge.success, "
        "failed); add --yes to replay without asking"]
    with Session(engine) as s:
        assert s.get(WebhookEvent, event_id).status == "failed"
        assert s.exec(select(ActivityLog)).all() == []
    assert calls == []


def test_replay_of_a_missing_or_processed_event_says_so_before_asking(engine, cli_result):
    done = seed_event(engine, "processed")
    missing = cli_result("webhooks", "replay", "999")
    processed = cli_result("webhooks", "replay", str(done))
    assert missing.returncode == processed.returncode == 1
    assert missing.stderr.strip() == "kolaq-console: webhook event #999 not found"
    assert processed.stderr.strip() == (f"kolaq-console: webhook event #{done} is processed; "
                                        "only failed, flagged, ignored events can be replayed")


def test_list_prints_received_times_on_the_shops_clock(engine, cli_run, settings):
    event_id = seed_event(engine, "failed")
    received = datetime(2026, 3, 1, 23, 30, 5, tzinfo=UTC)
    with Session(engine) as s:
        event = s.get(WebhookEvent, event_id)
        event.received_at = received
        s.add(event)
        s.commit()
    code, out, _ = cli_run("webhooks", "list")
    local = received.astimezone(settings.shop.zone)
    assert code == 0 and local.utcoffset()  # the check means something only off UTC
    assert out.startswith(f"#{event_id:<6} {local:%Y-%m-%d %H:%M:%S}  paystack")
