"""The Resend stand-in is strict in the ways production is, proven through the real SDK.

Longer than ~400 lines: the stand-in's whole contract, one behaviour per test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import resend
from resend import exceptions as rx
from stubs.resend_api import (
    DEFAULT_TEST_API_KEY,
    ResendStub,
    ResendStubProcess,
)

KEY = DEFAULT_TEST_API_KEY  # obviously fake; never anything shaped like a real re_... key


def email(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "from": "Kolaq Bitters <orders@kolaq.test>",
        "to": ["customer@example.com"],
        "subject": "Your order",
        "html": "<p>Thanks!</p>",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not _DROP}


_DROP = object()  # email(to=_DROP) removes the field


class FakeClock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def point_sdk(monkeypatch: pytest.MonkeyPatch):
    """Aim the SDK's module globals at a stub, restored after the test."""

    def aim(url: str, api_key: str = KEY) -> None:
        monkeypatch.setattr(resend, "api_url", url)
        monkeypatch.setattr(resend, "api_key", api_key)

    return aim


@pytest.fixture
def stub(point_sdk) -> Iterator[ResendStub]:
    with ResendStub(api_keys={KEY}) as server:
        point_sdk(server.url)
        yield server


def send(params: dict[str, Any], key: str | None = None) -> Any:
    options = {"idempotency_key": key} if key is not None else None
    return resend.Emails.send(params, options=options)  # type: ignore[arg-type]


def batch(items: list[dict[str, Any]], key: str | None = None, mode: str | None = None) -> Any:
    options: dict[str, str] = {}
    if key is not None:
        options["idempotency_key"] = key
    if mode is not None:
        options["batch_validation"] = mode
    return resend.Batch.send(items, options=options or None)  # type: ignore[arg-type]


# ---- happy path and records -------------------------------------------------------------------


def test_send_returns_an_id_and_records_one_delivery_without_the_authorization_header(stub):
    response = send(email(), key="order-1/receipt")

    assert len(response["id"]) == 36
    [delivery] = stub.deliveries
    assert delivery.id == response["id"]
    assert delivery.payload == email()
    assert delivery.idempotency_key == "order-1/receipt"
    assert delivery.endpoint == "/emails"
    assert "authorization" not in delivery.headers
    assert delivery.headers["user-agent"].startswith("resend-python:")
    assert [(r.method, r.path, r.status) for r in stub.requests] == [("POST", "/emails", 200)]


def test_sent_email_can_be_retrieved_and_unknown_ids_are_404(stub):
    sent = send(email(to="Ada <ada@example.com>", subject="Hello"))

    fetched = resend.Emails.get(sent["id"])
    assert fetched["to"] == ["Ada <ada@example.com>"]
    assert fetched["subject"] == "Hello"
    with pytest.raises(rx.ResendError) as info:
        resend.Emails.get("00000000-0000-0000-0000-000000000000")
    assert (info.value.code, info.value.error_type) == (404, "not_found")


# ---- auth ------------------------------------------------------------------------------------


def test_empty_api_key_is_401_missing_api_key(stub, point_sdk):
    point_sdk(stub.url, api_key="")  # the SDK then sends a bare "Bearer"

    with pytest.raises(rx.MissingApiKeyError) as info:
        send(email())
    assert (info.value.code, info.value.error_type) == (401, "missing_api_key")
    assert stub.deliveries == []


def test_api_key_not_accepted_by_the_server_is_403_invalid_api_key(stub, point_sdk):
    point_sdk(stub.url, api_key="test-key-someone-elses")

    with pytest.raises(rx.InvalidApiKeyError) as info:
        send(email())
    assert (info.value.code, info.value.error_type) == (403, "invalid_api_key")
    assert stub.deliveries == []


# ---- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("to", ["not-an-address"]),
        ("to", "a@example.com, b@example.com"),  # comma-joined string, a classic client bug
        ("from", "Kolaq Bitters"),
        ("cc", ["ok@example.com", "broken@"]),
        ("bcc", "Name <missing-at.example.com>"),
        ("reply_to", 42),
    ],
)
def test_invalid_address_is_422_validation_error_naming_the_field(stub, field, value):
    with pytest.raises(rx.ValidationError) as info:
        send(email(**{field: value}))

    assert (info.value.code, info.value.error_type) == (422, "validation_error")
    assert f"`{field}`" in info.value.message
    assert stub.deliveries == []


def test_name_and_angle_bracket_addresses_are_accepted(stub):
    send(
        email(to=["Ada Lovelace <ada@example.com>", "bob@example.co.uk"], cc='"Ops, Inc" <o@x.io>')
    )

    assert len(stub.deliveries) == 1


@pytest.mark.parametrize("field", ["from", "to", "subject"])
def test_missing_required_field_is_422_missing_required_field(stub, field):
    with pytest.raises(rx.MissingRequiredFieldsError) as info:
        send(email(**{field: _DROP}))

    assert (info.value.code, info.value.error_type) == (422, "missing_required_field")
    assert f"`{field}`" in info.value.message


def test_missing_both_html_and_text_is_422(stub):
    with pytest.raises(rx.ValidationError) as info:
        send(email(html=_DROP))

    assert info.value.code == 422
    assert "`html` or `text`" in info.value.message


def test_more_than_50_recipients_is_422(stub):
    send(email(to=[f"c{i}@example.com" for i in range(50)]))
    with pytest.raises(rx.ValidationError) as info:
        send(email(to=[f"c{i}@example.com" for i in range(51)]))

    assert info.value.code == 422
    assert "`to`" in info.value.message
    assert len(stub.deliveries) == 1


def test_unknown_top_level_field_is_422_naming_it(stub):
    with pytest.raises(rx.ValidationError) as info:
        send(email(reply_too="typo@example.com"))

    assert info.value.code == 422
    assert "`reply_too`" in info.value.message


def test_batch_over_100_items_is_422(stub):
    with pytest.raises(rx.ValidationError) as info:
        batch([email() for _ in range(101)])

    assert info.value.code == 422
    assert "100" in info.value.message
    assert stub.deliveries == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("attachments", [{"filename": "invoice.pdf", "content": "aGVsbG8="}]),
        ("scheduled_at", "2030-01-01T00:00:00Z"),
    ],
)
def test_batch_item_with_unsupported_field_is_422(stub, field, value):
    with pytest.raises(rx.ValidationError) as info:
        batch([email(), email(**{field: value})])

    assert info.value.code == 422
    assert f"`{field}`" in info.value.message
    assert "emails[1]" in info.value.message
    assert stub.deliveries == []


# ---- batch modes -----------------------------------------------------------------------------


def test_batch_strict_sends_nothing_when_one_item_is_invalid(stub):
    with pytest.raises(rx.ValidationError):
        batch([email(), email(to=["nope"]), email()], mode="strict")

    assert stub.deliveries == []


def test_batch_permissive_sends_valid_items_and_reports_errors_by_index(stub):
    response = batch([email(), email(to=["nope"]), email(subject=_DROP)], mode="permissive")

    assert len(response["data"]) == 1
    assert [e["index"] for e in response["errors"]] == [1, 2]
    assert "`to`" in response["errors"][0]["message"]
    [delivery] = stub.deliveries
    assert (delivery.id, delivery.batch_index) == (response["data"][0]["id"], 0)


def test_batch_permissive_with_every_item_refused_is_a_200_with_no_data(stub):
    response = batch([email(to=["nope"]), email(to=["josé@example.com"])], mode="permissive")

    assert response["data"] == [] and [e["index"] for e in response["errors"]] == [0, 1]
    assert stub.deliveries == [] and [r.status for r in stub.requests] == [200]


def test_the_request_log_counts_the_emails_of_each_request_and_its_validation_mode(stub):
    batch([email() for _ in range(3)], mode="permissive")
    batch([email()])
    send(email())

    assert [(r.path, r.emails, r.validation) for r in stub.requests] == [
        ("/emails/batch", 3, "permissive"), ("/emails/batch", 1, "strict"), ("/emails", 1, None)]


@pytest.mark.parametrize("headers", [
    {"List-Unsubscribe": "<https://x.test/u>\r\nBcc: victim@example.com"},
    {"Bad Name": "x"},
    {"X-Colon:": "x"},
])
def test_malformed_custom_headers_are_refused(stub, headers):
    with pytest.raises(rx.ValidationError, match="headers"):
        send(email(headers=headers))
    assert stub.deliveries == []


def test_batch_permissive_replay_answers_the_same_ids_and_errors_and_sends_nothing_more(stub):
    items = [email(to=["a@example.com"]), email(to=["nope"]), email(to=["b@example.com"])]
    first = batch(items, key="batch/1", mode="permissive")
    again = batch(items, key="batch/1", mode="permissive")

    assert again["data"] == first["data"] and again["errors"] == first["errors"]
    assert len(stub.deliveries) == 2 and [r.replayed for r in stub.requests] == [False, True]
    # the same key with other members is a different request: refused, nothing sent
    with pytest.raises(rx.ResendError) as info:
        batch(items[:2], key="batch/1", mode="permissive")
    assert (info.value.code, info.value.error_type) == (409, "invalid_idempotent_request")
    assert len(stub.deliveries) == 2


def test_batch_expands_to_one_delivery_per_item(stub):
    response = batch([email(to=[f"c{i}@example.com"]) for i in range(3)], key="digest/42")

    assert "errors" not in response  # strict (default) mode has no errors array
    assert [d.id for d in stub.deliveries] == [item["id"] for item in response["data"]]
    assert [d.batch_index for d in stub.deliveries] == [0, 1, 2]
    assert {d.idempotency_key for d in stub.deliveries} == {"digest/42"}


# ---- idempotency -----------------------------------------------------------------------------


def test_idempotent_replay_returns_the_same_id_and_records_one_delivery(stub):
    first = send(email(), key="order-7/receipt")
    second = send(email(), key="order-7/receipt")

    assert first["id"] == second["id"]
    assert len(stub.deliveries) == 1
    assert [r.replayed for r in stub.requests] == [False, True]
    assert {k: len(v) for k, v in stub.deliveries_by_key().items()} == {"order-7/receipt": 1}


def test_idempotent_batch_replay_returns_the_same_ids(stub):
    first = batch([email(), email()], key="digest/1")
    second = batch([email(), email()], key="digest/1")

    assert first["data"] == second["data"]
    assert len(stub.deliveries) == 2


def test_same_key_with_a_different_body_is_409_invalid_idempotent_request(stub):
    send(email(), key="order-8/receipt")

    with pytest.raises(rx.ResendError) as info:
        send(email(subject="Something else"), key="order-8/receipt")
    assert (info.value.code, info.value.error_type) == (409, "invalid_idempotent_request")
    assert len(stub.deliveries) == 1


def test_same_key_while_the_first_is_in_progress_is_409_concurrent_idempotent_requests(stub):
    stub.inject(delay=0.5, path="/emails")  # the first request holds the key for 0.5 s
    results: dict[str, Any] = {}
    first = threading.Thread(target=lambda: results.update(first=send(email(), key="slow")))
    first.start()
    deadline = time.monotonic() + 2
    while "slow" not in stub.pending_idempotency_keys() and time.monotonic() < deadline:
        time.sleep(0.01)

    with pytest.raises(rx.ResendError) as info:
        send(email(), key="slow")
    first.join()

    assert (info.value.code, info.value.error_type) == (409, "concurrent_idempotent_requests")
    assert send(email(), key="slow")["id"] == results["first"]["id"]
    assert len(stub.deliveries) == 1


def test_idempotency_key_scope_includes_the_endpoint(stub):
    single = send(email(), key="shared")
    batched = batch([email()], key="shared")

    assert single["id"] != batched["data"][0]["id"]
    assert len(stub.deliveries) == 2


def test_idempotency_key_longer_than_256_chars_is_400_invalid_idempotency_key(stub):
    send(email(), key="k" * 256)

    with pytest.raises(rx.ResendError) as info:
        send(email(), key="k" * 257)
    assert (info.value.code, info.value.error_type) == (400, "invalid_idempotency_key")
    assert len(stub.deliveries) == 1


def test_idempotency_key_expires_after_24_hours(point_sdk):
    clock = FakeClock()
    with ResendStub(api_keys=[KEY], clock=clock) as server:
        point_sdk(server.url)
        first = send(email(), key="order-9/receipt")
        clock.advance(24 * 3600 - 1)
        assert send(email(), key="order-9/receipt")["id"] == first["id"]
        clock.advance(1)
        # Expired: the key is free again, even for a different body.
        again = send(email(subject="Reminder"), key="order-9/receipt")

    assert again["id"] != first["id"]
    assert len(server.deliveries) == 2


def test_failed_requests_are_not_stored_so_a_retry_with_the_key_may_succeed(stub):
    with pytest.raises(rx.ValidationError):
        send(email(to=["nope"]), key="order-10/receipt")

    assert send(email(), key="order-10/receipt")["id"] == stub.deliveries[0].id


# ---- rate limits and quota ---------------------------------------------------------------------


def test_the_rate_limit_counts_requests_not_emails(point_sdk):
    clock = FakeClock()
    with ResendStub(api_keys=[KEY], rate_limit=2, clock=clock) as server:
        point_sdk(server.url)
        batch([email(to=[f"c{i}@example.com"]) for i in range(100)])
        batch([email(to=[f"d{i}@example.com"]) for i in range(100)])
        with pytest.raises(rx.RateLimitError):
            send(email())

    assert len(server.deliveries) == 200
    assert [r.status for r in server.requests] == [200, 200, 429]


def test_over_2_per_second_is_429_and_the_sdk_exception_exposes_the_headers(point_sdk):
    with ResendStub(api_keys=[KEY], rate_limit=2) as server:
        point_sdk(server.url)
        ok = send(email())
        send(email())
        with pytest.raises(rx.RateLimitError) as info:
            send(email())

    err = info.value
    assert (err.code, err.error_type) == (429, "rate_limit_exceeded")
    # The SDK copies response headers into a plain dict: names keep the server's (lower) case.
    assert err.headers["ratelimit-limit"] == "2"
    assert err.headers["ratelimit-remaining"] == "0"
    assert int(err.headers["retry-after"]) >= 1
    assert int(err.headers["ratelimit-reset"]) >= 1
    # Successes carry them too, under the SDK-injected "http_headers" key.
    assert ok["http_headers"]["ratelimit-remaining"] == "1"
    assert len(server.deliveries) == 2
    assert [r.status for r in server.requests] == [200, 200, 429]


def test_rate_limit_window_slides_over_one_second(point_sdk):
    clock = FakeClock()
    with ResendStub(api_keys=[KEY], rate_limit=2, clock=clock) as server:
        point_sdk(server.url)
        send(email())
        clock.advance(0.6)
        send(email())
        clock.advance(0.3)  # both still inside the window
        with pytest.raises(rx.RateLimitError):
            send(email())
        clock.advance(0.1)  # the first left the window
        send(email())

    assert len(server.deliveries) == 3
    assert server.max_requests_in_any_second() == 3  # includes the rejected one
    assert server.max_requests_in_any_second(include_rejected=False) == 2


def test_every_response_carries_rate_limit_headers_even_errors(stub):
    with pytest.raises(rx.ValidationError) as info:
        send(email(to=["nope"]))

    assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= set(info.value.headers)


def test_exhausted_daily_quota_is_429_daily_quota_exceeded(point_sdk):
    with ResendStub(api_keys=[KEY], daily_quota=2) as server:
        point_sdk(server.url)
        batch([email(), email()])
        with pytest.raises(rx.RateLimitError) as info:
            send(email())

    assert (info.value.code, info.value.error_type) == (429, "daily_quota_exceeded")
    assert len(server.deliveries) == 2


# ---- fault injection -------------------------------------------------------------------------


def test_injected_500_then_retry_with_the_same_key_delivers_once(stub):
    stub.inject(status=500)

    with pytest.raises(rx.ApplicationError) as info:
        send(email(), key="order-11/receipt")
    assert (info.value.code, info.value.error_type) == (500, "application_error")
    retried = send(email(), key="order-11/receipt")

    assert [d.id for d in stub.deliveries] == [retried["id"]]
    assert [r.status for r in stub.requests] == [500, 200]


def test_injected_faults_apply_to_the_next_n_matching_requests_only(stub):
    stub.inject(status=503, times=2, path="/emails/batch")

    send(email())  # different path: untouched
    for _ in range(2):
        with pytest.raises(rx.ResendError) as info:
            batch([email()])
        assert (info.value.code, info.value.error_type) == (503, "internal_server_error")
    batch([email()])

    assert [r.status for r in stub.requests] == [200, 503, 503, 200]


def test_dropped_connection_surfaces_as_a_plain_resend_error_with_code_500(stub):
    stub.inject(drop=True)

    with pytest.raises(rx.ResendError) as info:
        send(email(), key="order-12/receipt")

    err = info.value
    assert type(err) is rx.ResendError  # not ApplicationError: only error_type tells them apart
    assert (err.code, err.error_type) == (500, "HttpClientError")
    assert err.headers == {}
    assert stub.requests[0].status is None
    assert stub.deliveries == []


def test_response_lost_after_processing_then_retry_replays_without_a_second_delivery(stub):
    stub.inject(drop=True, after_processing=True)

    with pytest.raises(rx.ResendError):
        send(email(), key="order-13/receipt")
    retried = send(email(), key="order-13/receipt")

    [delivery] = stub.deliveries
    assert retried["id"] == delivery.id
    assert [r.replayed for r in stub.requests] == [False, True]


def test_non_json_error_page_surfaces_with_the_http_status(stub):
    stub.inject(status=502, body="<html>Bad gateway</html>", content_type="text/html")

    with pytest.raises(rx.ResendError) as info:
        send(email())
    assert (info.value.code, info.value.error_type) == (502, "application_error")


# ---- concurrency, inspection, lifecycle --------------------------------------------------------


def test_concurrent_sends_from_many_threads_are_each_delivered_once(stub):
    def worker(n: int) -> None:
        key = f"order-{n}/receipt"
        send(email(to=[f"c{n}@example.com"]), key=key)
        send(email(to=[f"c{n}@example.com"]), key=key)  # retry: replay

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    by_key = stub.deliveries_by_key()
    assert len(by_key) == 20
    assert all(len(v) == 1 for v in by_key.values())
    assert sum(r.replayed for r in stub.requests) == 20


def test_reset_forgets_deliveries_requests_keys_and_faults(stub):
    first = send(email(), key="k")
    stub.inject(status=500, times=5)
    stub.reset()

    assert (stub.deliveries, stub.requests) == ([], [])
    assert send(email(), key="k")["id"] != first["id"]


def test_process_mode_starts_serves_is_inspectable_and_stops(point_sdk):
    with ResendStubProcess(api_keys=[KEY], rate_limit=2) as proc:
        assert proc.url.startswith("http://127.0.0.1:")
        point_sdk(proc.url)
        sent = send(email(), key="order-14/receipt")
        send(email(), key="order-14/receipt")
        with pytest.raises(rx.RateLimitError):
            send(email())

        [delivery] = proc.deliveries
        assert (delivery.id, delivery.idempotency_key) == (sent["id"], "order-14/receipt")
        assert [r.status for r in proc.requests] == [200, 200, 429]
        assert proc.max_requests_in_any_second() == 3

        proc.reset()
        proc.set_rate_limit(None)
        proc.inject(status=500, path="/emails")
        with pytest.raises(rx.ApplicationError):
            send(email())
        send(email())
        assert len(proc.deliveries) == 1
        pid = proc.pid

    assert proc.pid is None and pid is not None
    with pytest.raises(rx.ResendError) as info:  # the port is closed now
        send(email())
    assert info.value.error_type == "HttpClientError"
