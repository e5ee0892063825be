"""Snapshots of every screen on fixed data, at 80x24 and wider. Review the report
(`pytest --snapshot-report`) and the screen in a real terminal before `--snapshot-update`."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import settle

APP = str(Path(__file__).parent / "snapshot_app.py")
BROADCASTS_APP = str(Path(__file__).parent / "snapshot_broadcasts_app.py")
SIZES = pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])


def keys(*presses: str):
    """run_before: press these keys, waiting for the workers each one starts."""

    async def run(pilot) -> None:
        await settle(pilot)
        for key in presses:
            await pilot.press(key)
            await settle(pilot)

    return run


@SIZES
def test_overview(snap_compare, size):
    assert snap_compare(APP, terminal_size=size, run_before=keys())


@SIZES
def test_failed_jobs(snap_compare, size):
    assert snap_compare(APP, terminal_size=size, run_before=keys("2"))


def test_failed_job_detail(snap_compare):
    assert snap_compare(APP, terminal_size=(80, 24), run_before=keys("2", "enter"))


def test_retry_all_confirmation(snap_compare):
    assert snap_compare(APP, terminal_size=(80, 24), run_before=keys("2", "R"))


def test_marked_failed_jobs(snap_compare):
    assert snap_compare(APP, terminal_size=(80, 24),
                        run_before=keys("2", "space", "down", "space"))


@SIZES
def test_inventory(snap_compare, size):
    assert snap_compare(APP, terminal_size=size, run_before=keys("3"))


@SIZES
def test_emails(snap_compare, size):
    assert snap_compare(APP, terminal_size=size, run_before=keys("4"))


def test_email_detail(snap_compare):
    # the failed one: the status filter cycles all -> queued -> sending -> sent -> failed
    assert snap_compare(APP, terminal_size=(80, 24),
                        run_before=keys("4", "f", "f", "f", "f", "enter"))


def test_resend_confirmation(snap_compare):
    # the failed email: a queued one is on its way already, so send again is refused
    assert snap_compare(APP, terminal_size=(80, 24),
                        run_before=keys("4", "f", "f", "f", "f", "s"))


def test_help(snap_compare):
    assert snap_compare(APP, terminal_size=(80, 24), run_before=keys("question_mark"))


@SIZES
def test_broadcasts(snap_compare, size):
    """The newest draft in the composer, the running broadcast followed, the list."""
    assert snap_compare(BROADCASTS_APP, terminal_size=size, run_before=keys("5"))


def test_broadcast_send_confirmation(snap_compare):
    assert snap_compare(BROADCASTS_APP, terminal_size=(80, 24),
                        run_before=keys("5", "ctrl+g"))


@SIZES
def test_orders(snap_compare, size):
    assert snap_compare(APP, terminal_size=size, run_before=keys("6"))


def test_order_detail(snap_compare):
    assert snap_compare(APP, terminal_size=(80, 24), run_before=keys("6", "enter"))


def test_order_status_choice(snap_compare):
    assert snap_compare(APP, terminal_size=(80, 24), run_before=keys("6", "s"))


@SIZES
def test_webhooks(snap_compare, size):
    assert snap_compare(APP, terminal_size=size, run_before=keys("7"))


@SIZES
def test_activity(snap_compare, size):
    assert snap_compare(APP, terminal_size=size, run_before=keys("8"))


def test_activity_filter_error(snap_compare):
    """A key the list does not take: said in the caption, the list unchanged."""
    assert snap_compare(APP, terminal_size=(80, 24),
                        run_before=keys("8", "slash", *"who:ada"))


def test_adjust_stock_dialog(snap_compare):
    assert snap_compare(APP, terminal_size=(80, 24), run_before=keys("3", "a", "x", "enter",
                                                                     "enter"))


def test_product_history(snap_compare):
    assert snap_compare(APP, terminal_size=(80, 24), run_before=keys("3", "G", "enter"))


def test_failed_jobs_sorted_by_tries(snap_compare):
    assert snap_compare(APP, terminal_size=(80, 24), run_before=keys("2", "o", "o", "o", "O"))


@SIZES
def test_messages_empty_state(snap_compare, size):
    assert snap_compare(APP, terminal_size=size, run_before=keys("9"))
