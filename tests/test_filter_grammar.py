"""The lists' one filter grammar and their sort order (no terminal needed; the keys are
tested with Pilot in tests/ui/test_lists.py)."""

from __future__ import annotations

import pytest
from rich.text import Text
from textual.content import Content

from kolaq_console.ui.filtering import Filter, FilterError, Grammar, cycle
from kolaq_console.ui.widgets.record_table import sort_key

GRAMMAR = Grammar({"status": ("queued", "sent", "failed"), "kind": None}, bare_key="status")


def test_terms_and_free_words_are_parsed_apart():
    flt = GRAMMAR.parse("status:failed kind:order Ada@Example")
    assert flt.get("status") == "failed" and flt.get("kind") == "order"
    assert flt.words == ("ada@example",)
    assert flt.matches("ada@example.com", "subject") and not flt.matches("bo@example.com")


def test_a_bare_value_of_the_bare_key_is_that_term():
    assert GRAMMAR.parse("failed").terms == (("status", "failed"),)
    assert GRAMMAR.parse("sent failed").get("status") == "failed"  # the last one wins


def test_an_unknown_key_names_the_allowed_keys():
    with pytest.raises(FilterError) as caught:
        GRAMMAR.parse("colour:red")
    assert "colour:" in str(caught.value)
    assert "status:, kind:" in str(caught.value)


def test_a_value_outside_a_closed_set_names_the_allowed_values():
    with pytest.raises(FilterError, match=r"unknown status “bounced” \(queued, sent, failed\)"):
        GRAMMAR.parse("status:bounced")


def test_words_that_only_look_like_terms_are_free_text():
    flt = GRAMMAR.parse("17:08 https://shop.test")
    assert flt.terms == () and flt.words == ("17:08", "https://shop.test")


def test_a_filter_prints_back_to_text_that_parses_to_it():
    flt = GRAMMAR.parse("kind:order status:sent ada")
    assert GRAMMAR.parse(flt.unparse()) == flt
    assert flt.with_term("status", None) == Filter((("kind", "order"),), ("ada",))


def test_the_status_cycle_runs_through_every_value_and_back_to_none():
    values = ("a", "b")
    assert [cycle(values, v) for v in (None, "a", "b")] == ["a", "b", None]


def test_sort_puts_numbers_by_value_before_words():
    cells = ["10", "9", "#100", "1,200", "-3", "sent", Content("queued"), Text("4.5d")]
    ordered = [c if isinstance(c, str) else c.plain for c in sorted(cells, key=sort_key)]
    assert ordered == ["-3", "4.5d", "9", "10", "#100", "1,200", "queued", "sent"]
