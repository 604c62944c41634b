"""The search syntax users type, parsed into terms that each database is given as data.

``red "big dog" wor*`` finds messages with the word ``red``, the phrase ``big dog`` and a
word starting with ``wor``: every term must match (AND). Words are what both full-text engines
index: runs of letters and digits, lower-cased; everything else (operators, quotes of an
unclosed phrase, backslashes, punctuation) only separates words, so no user text ever reaches a
database as query syntax. Each term is rendered with every word quoted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Letters and digits; the underscore is \\w but both engines split words on it.
_WORD = re.compile(r"[^\W_]+")
_PHRASE_OR_WORD = re.compile(r'"([^"]*)"?|([^\s"]+)')
MAX_TERMS = 16
MAX_QUERY_CHARS = 500


class SearchError(ValueError):
    """A search that cannot be run: no word at all, or more than the engines are asked."""


@dataclass(frozen=True, slots=True)
class Term:
    """Words that must follow each other (one word: just that word); ``prefix``: the last one
    may be the start of a longer word."""

    words: tuple[str, ...]
    prefix: bool = False


def parse(query: str) -> tuple[Term, ...]:
    if len(query) > MAX_QUERY_CHARS:
        raise SearchError(f"a search is at most {MAX_QUERY_CHARS} characters")
    terms: list[Term] = []
    for match in _PHRASE_OR_WORD.finditer(query):
        phrase, bare = match.group(1), match.group(2)
        if phrase is not None:
            words = tuple(w.lower() for w in _WORD.findall(phrase))
            if words:
                terms.append(Term(words))
            continue
        # A bare token may still hold several words ("e-mail", "a.b"): they form a phrase, as
        # both engines index them as neighbours.
        words = tuple(w.lower() for w in _WORD.findall(bare))
        if words:
            terms.append(
                Term(words, prefix=bare.endswith("*") and _WORD.fullmatch(bare[-2:-1]) is not None)
            )
    unique = tuple(dict.fromkeys(terms))
    if not unique:
        raise SearchError("a search needs at least one word (letters or digits)")
    if len(unique) > MAX_TERMS:
        raise SearchError(f"a search has at most {MAX_TERMS} terms")
    return unique


def _ends_in_a_prefix(token: str) -> bool:
    """``wor*``: a star right after a letter or digit."""
    return token.endswith("*") and _WORD.fullmatch(token[-2:-1]) is not None


def to_tsquery(terms: tuple[Term, ...]) -> str:
    """PostgreSQL ``to_tsquery`` text: quoted lexemes, ``<->`` between the words of a phrase,
    ``:*`` for a prefix, ``&`` between terms."""

    def lexeme(word: str) -> str:
        return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"

    rendered = []
    for term in terms:
        words = [lexeme(w) for w in term.words]
        if term.prefix:
            words[-1] += ":*"
        rendered.append("(" + " <-> ".join(words) + ")")
    return " & ".join(rendered)


def to_fts5(terms: tuple[Term, ...]) -> str:
    """SQLite FTS5 MATCH text: each term one quoted string (a phrase when it holds several
    words), ``*`` after the closing quote for a prefix; terms side by side are ANDed."""
    rendered = []
    for term in terms:
        text = '"' + " ".join(term.words).replace('"', '""') + '"'
        rendered.append(text + ("*" if term.prefix else ""))
    return " ".join(rendered)


_PHONE_LIKE = re.compile(r"[\d\s+().-]+")


@dataclass(frozen=True, slots=True)
class ConversationSearch:
    """A conversation matches when a participant contains ``fragment`` or one of its messages
    has every term."""

    terms: tuple[Term, ...]
    fragment: str


def conversation_search(query: str) -> ConversationSearch:
    """``query`` as typed in an inbox's search box: part of a number however it is written
    (``555-0199`` is in ``+14155550199``) or of an address, or words of the messages."""
    terms = parse(query)
    typed = query.strip()
    if _PHONE_LIKE.fullmatch(typed):
        return ConversationSearch(terms, "".join(ch for ch in typed if ch.isdigit()))
    return ConversationSearch(terms, typed.lower())
