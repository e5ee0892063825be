"""Unsubscribe tokens, consent withdrawal and the suppression list."""

from __future__ import annotations

import json

import pytest
from itsdangerous import URLSafeSerializer
from itsdangerous.encoding import base64_encode
from sqlmodel import Session, select

from kolaq_console import consent
from kolaq_console.models import ActivityLog, Customer, Suppression


def test_token_names_its_address_and_a_forged_or_foreign_one_is_refused(make_settings):
    ours = make_settings(KOLAQ_SIGNING_KEY="ours-test-only")
    theirs = make_settings(KOLAQ_SIGNING_KEY="someone-else-test-only")
    token = consent.make_token(ours, " Ada@Example.COM ")
    assert consent.read_token(ours, token) == "ada@example.com"
    with pytest.raises(consent.InvalidToken):
        consent.read_token(theirs, token)
    with pytest.raises(consent.InvalidToken):
        consent.read_token(ours, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))


def test_tokens_already_sent_out_by_the_serializer_still_verify_and_new_ones_are_the_same(
    make_settings,
):
    """Links sent before tokens were made with the bare Signer keep working: the old
    URLSafeSerializer form (zlib-compressed for a long, repetitive address) verifies, and for
    an ordinary address the new token is byte for byte the old one."""
    s = make_settings(KOLAQ_SIGNING_KEY="ours-test-only")
    old = URLSafeSerializer("ours-test-only", salt=consent.SALT)
    ordinary, repetitive = "ada@example.com", "news" * 20 + "@example.com"
    compressed = old.dumps(repetitive)
    assert compressed.startswith(".")  # the serializer's compressed form
    assert consent.read_token(s, compressed) == repetitive
    assert consent.read_token(s, old.dumps(ordinary)) == ordinary
    assert consent.make_token(s, ordinary) == old.dumps(ordinary)
    assert consent.read_token(s, consent.make_token(s, repetitive)) == repetitive
    foreign = URLSafeSerializer("someone-else-test-only", salt=consent.SALT)
    with pytest.raises(consent.InvalidToken):
        consent.read_token(s, foreign.dumps(repetitive))


def test_tokens_are_the_signers_for_every_kind_of_address(make_settings):
    """The token maker writes the JSON of a plain address itself and signs with the derived
    key directly: byte for byte what the bare Signer makes, whatever the address holds."""
    s = make_settings(KOLAQ_SIGNING_KEY="ours-test-only")
    signer = URLSafeSerializer("ours-test-only", salt=consent.SALT).make_signer()
    for address in ["ada@example.com", 'o"neil@example.com', "back\\slash@example.com",
                    "zoë@example.com", "tab\there@example.com", "del\x7f@example.com",
                    " MiXeD@Example.COM "]:
        payload = json.dumps(consent.normalise(address), ensure_ascii=False,
                             separators=(",", ":"))
        expected = signer.sign(base64_encode(payload.encode())).decode("ascii")
        assert consent.make_token(s, address) == expected
        assert consent.read_token(s, expected) == consent.normalise(address)


def test_list_unsubscribe_headers_are_one_click_with_https_and_mailto(make_settings):
    s = make_settings(shop__public_url="https://shop.test")
    headers = consent.list_unsubscribe_headers(s, "ada@example.com")
    https, mailto = headers["List-Unsubscribe"].split(", ")
    assert https.startswith("<https://shop.test/unsubscribe/") and mailto.startswith("<mailto:")
    token = https.strip("<>").rsplit("/", 1)[1]
    assert consent.read_token(s, token) == "ada@example.com"
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_unsubscribe_withdraws_consent_once_and_is_audited(engine):
    with Session(engine) as s:
        s.add(Customer(email="Ada@example.com", name="Ada", marketing_consent=True))
        s.commit()
        assert consent.marketing_allowed(s, "ada@example.com")
        assert consent.unsubscribe(s, "ada@example.com", source="link") is True
        s.commit()
        assert consent.unsubscribe(s, "ada@example.com", source="link") is False
        s.commit()
        assert not consent.marketing_allowed(s, "ada@example.com")
        assert len(s.exec(select(ActivityLog)).all()) == 1
        # a non-customer's unsubscribe is remembered too, as a suppression row
        assert consent.unsubscribe(s, "stranger@example.com", source="mailto") is True
        s.commit()
        assert s.exec(select(Suppression)).one().reason == consent.UNSUBSCRIBED
        assert consent.is_blocked(s, "stranger@example.com") is None  # transactional allowed


def test_a_bounce_blocks_every_email_and_replaces_an_unsubscribe(engine):
    with Session(engine) as s:
        consent.unsubscribe(s, "gone@example.com", source="link")
        assert consent.suppress(s, "gone@example.com", "bounced", source="resend") is True
        assert consent.suppress(s, "gone@example.com", "complained", source="resend") is False
        s.commit()
        assert consent.is_blocked(s, "GONE@example.com") == "bounced"
