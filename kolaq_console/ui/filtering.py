"""The one `/` filter grammar of every list: `key:value` terms plus free words.

`status:failed kind:order ada@` keeps rows whose status is failed, whose kind is order and
whose searchable text contains "ada@". A key the list does not know, or a value outside a
key's closed set, is a FilterError naming what is allowed: the list keeps its previous filter
(an error changes nothing). Words that only look like terms (`17:08`, `https://…`) are free
text: a key is letters and underscores only, and a URL is no term.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from textual.markup import escape

_KEY = re.compile(r"[a-z_]+")


class FilterError(ValueError):
    """The filter text cannot be applied; the message says what is allowed, `word` is the
    word of the text at fault."""

    def __init__(self, message: str, word: str) -> None:
        super().__init__(message)
        self.word = word


@dataclass(frozen=True)
class Filter:
    """A parsed filter: `terms` as (key, value) pairs in the order typed, free `words`
    (lower case)."""

    terms: tuple[tuple[str, str], ...] = ()
    words: tuple[str, ...] = ()

    def get(self, key: str) -> str | None:
        for k, v in self.terms:
            if k == key:
                return v
        return None

    def __bool__(self) -> bool:
        return bool(self.terms or self.words)

    @property
    def text(self) -> str:
        return " ".join(self.words)

    def matches(self, *haystack: object) -> bool:
        """Every free word occurs in one of these values (case-insensitive)."""
        blob = " ".join("" if h is None else str(h) for h in haystack).lower()
        return all(word in blob for word in self.words)

    def describe(self) -> str:
        """What is filtered, as markup (typed text escaped), for a caption."""
        parts = [f"{k} {escape(v)}" for k, v in self.terms]
        if self.words:
            parts.append(f"“{escape(self.text)}”")
        return " · ".join(parts) or "no filter"

    def with_term(self, key: str, value: str | None) -> Filter:
        """This filter with `key` set to `value` (None removes it)."""
        terms = tuple((k, v) for k, v in self.terms if k != key)
        if value is not None:
            terms += ((key, value),)
        return Filter(terms, self.words)

    def unparse(self) -> str:
        """The text that parses back to this filter (for the filter line)."""
        return " ".join([*(f"{k}:{v}" for k, v in self.terms), *self.words])


@dataclass(frozen=True)
class Grammar:
    """The keys a list accepts. `keys` maps each key to its allowed values (None: any
    value); a bare word that is one of `bare_key`'s values counts as that term (so
    `failed` alone filters by status)."""

    keys: Mapping[str, Sequence[str] | None] = field(default_factory=dict)
    bare_key: str | None = None

    def help(self) -> str:
        return ", ".join(f"{k}:" for k in self.keys) or "no keys, only words"

    def parse(self, text: str) -> Filter:
        terms: list[tuple[str, str]] = []
        words: list[str] = []
        bare = self.keys.get(self.bare_key) if self.bare_key else None
        for word in text.split():
            key, sep, value = word.partition(":")
            key = key.lower()
            if sep and _KEY.fullmatch(key) and not value.startswith("//"):  # not a URL
                if key not in self.keys:
                    allowed = self.help()
                    raise FilterError(f"unknown filter key “{key}:” (this list takes "
                                      f"{allowed})", word)
                if not value:
                    raise FilterError(f"“{key}:” needs a value", word)
                choices = self.keys[key]
                if choices is not None:
                    value = value.lower()
                    if value not in choices:
                        raise FilterError(f"unknown {key} “{value}” ({', '.join(choices)})",
                                          word)
                terms = [(k, v) for k, v in terms if k != key] + [(key, value)]
            elif bare and self.bare_key and word.lower() in bare:
                terms = [(k, v) for k, v in terms if k != self.bare_key]
                terms.append((self.bare_key, word.lower()))
            else:
                words.append(word.lower())
        return Filter(tuple(terms), tuple(words))


def cycle(values: Iterable[str], current: str | None) -> str | None:
    """The value after `current` in None, *values (wrapping): the `f` key's status cycle."""
    order: list[str | None] = [None, *values]
    index = order.index(current) if current in order else 0
    return order[(index + 1) % len(order)]
