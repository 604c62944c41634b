"""Opt-out keywords: what a recipient's one-word answer (STOP, START, HELP) asks for, and the
account's setting of the words, their scope and the automatic answers.

An inbound SMS or MMS is a keyword when its whole body is one of the account's words, compared
trimmed, with runs of inner whitespace read as one space, and case-folded: ``opt  out`` and
``OPT OUT`` are the same word, ``stop please`` is no keyword at all. The three lists never share
a word, so a body names one kind or none.

Pure: the services decide what the kind does (a suppression added or lifted, an auto-reply).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from .ids import encode_id
from .messages import FieldProblem, text_problem


class KeywordKind(enum.StrEnum):
    #: Opt out: the sender is suppressed.
    STOP = "STOP"
    #: Opt back in: the sender's own opt-out is lifted.
    START = "START"
    #: Ask for help: answered, nothing changes.
    HELP = "HELP"


class OptOutScope(enum.StrEnum):
    #: A keyword holds for the one number it was written to.
    SENDER = "SENDER"
    #: A keyword holds for every number of the account.
    ACCOUNT = "ACCOUNT"


DEFAULT_KEYWORDS: dict[KeywordKind, tuple[str, ...]] = {
    KeywordKind.STOP: (
        "STOP",
        "STOPALL",
        "UNSUBSCRIBE",
        "CANCEL",
        "END",
        "QUIT",
        "OPTOUT",
        "OPT OUT",
        "REVOKE",
    ),
    KeywordKind.START: ("START", "YES", "UNSTOP"),
    KeywordKind.HELP: ("HELP", "INFO"),
}
DEFAULT_REPLIES: dict[KeywordKind, str] = {
    KeywordKind.STOP: (
        "You are unsubscribed and will receive no more messages. Reply START to resubscribe."
    ),
    KeywordKind.START: "You are resubscribed. Reply STOP to unsubscribe.",
    KeywordKind.HELP: (
        "Reply STOP to unsubscribe, START to resubscribe. Message and data rates may apply."
    ),
}

#: Most words one list may hold.
KEYWORDS_MAX = 20
#: Longest word kept; also the longest body worth comparing with the words at all.
KEYWORD_MAX = 32
#: Longest auto-reply text (the longest SMS body a send accepts).
REPLY_MAX = 1600


def normalize_keyword(text: str) -> str:
    """A word as it is kept and shown: trimmed, inner whitespace one space each."""
    return " ".join(text.split())


def _folded(text: str) -> str:
    return normalize_keyword(text).casefold()


@dataclass(frozen=True, slots=True)
class OptOutSettings:
    """An account's keywords, their scope and auto-replies. A reply of None is turned off."""

    keywords: dict[KeywordKind, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_KEYWORDS)
    )
    scope: OptOutScope = OptOutScope.SENDER
    replies: dict[KeywordKind, str | None] = field(
        default_factory=lambda: dict[KeywordKind, str | None](DEFAULT_REPLIES)
    )


DEFAULTS = OptOutSettings()


def could_be_keyword(body: str | None) -> bool:
    """Whether ``body`` is short enough to be a word of any account: most messages are not,
    and need no setting read to tell."""
    return body is not None and len(normalize_keyword(body)) <= KEYWORD_MAX


def match_keyword(settings: OptOutSettings, body: str | None) -> KeywordMatch | None:
    """The keyword ``body`` is among the account's words, if it is one."""
    if body is None or not could_be_keyword(body):
        return None
    folded = _folded(body)
    for kind, words in settings.keywords.items():
        for word in words:
            if _folded(word) == folded:
                return KeywordMatch(kind, word)
    return None


@dataclass(frozen=True, slots=True)
class KeywordMatch:
    kind: KeywordKind
    #: The account's word it matched, as the account wrote it.
    keyword: str

    def detail(self) -> dict[str, Any]:
        """What the audit trail says of the keyword received."""
        return {"keyword": self.keyword, "kind": self.kind.value}


@dataclass(frozen=True, slots=True)
class AutoReply:
    """What makes a message an automatic answer to a keyword: the inbound message it answers.

    Such a message is sent to a recipient who may just have been suppressed (the answer to STOP
    confirms it) and inside their quiet hours (it answers their own message), so it is exempt
    from both; only this answer is, never a message sent through the API."""

    in_reply_to: UUID
    kind: KeywordKind

    def idempotency_key(self) -> str:
        """One answer per inbound message, however often its webhook is delivered."""
        return f"auto-reply:{self.in_reply_to.hex}"

    def detail(self) -> dict[str, Any]:
        """What the answer's ``accepted`` event says of it."""
        return {"autoReply": self.kind.value, "inReplyTo": encode_id("Message", self.in_reply_to)}


def parse_opt_out_settings(
    keywords: dict[KeywordKind, list[str]],
    scope: OptOutScope,
    replies: dict[KeywordKind, str | None],
) -> OptOutSettings | list[FieldProblem]:
    """The setting from its API form. Words are kept normalized (see :func:`normalize_keyword`)
    and once each; a list may not name a word another list names; the STOP list may not be
    empty (a recipient must always have a way out). ``replies``: None turns one off."""
    problems: list[FieldProblem] = []
    kept: dict[KeywordKind, tuple[str, ...]] = {}
    owner: dict[str, KeywordKind] = {}
    for kind, words in keywords.items():
        name = _keywords_field(kind)
        if len(words) > KEYWORDS_MAX:
            problems.append(FieldProblem(name, f"must list at most {KEYWORDS_MAX} words"))
            continue
        listed: dict[str, str] = {}
        for raw in words:
            problem = _word_problem(raw)
            if problem is not None:
                problems.append(FieldProblem(name, problem))
                continue
            word = normalize_keyword(raw)
            folded = word.casefold()
            other = owner.get(folded)
            if other is not None and other is not kind:
                problems.append(
                    FieldProblem(name, f"{word!r} is listed in {_keywords_field(other)} too")
                )
            owner[folded] = kind
            listed.setdefault(folded, word)
        kept[kind] = tuple(listed.values())
    if not keywords.get(KeywordKind.STOP):
        problems.append(
            FieldProblem(_keywords_field(KeywordKind.STOP), "must list at least one word")
        )
    for kind, text in replies.items():
        problem = _reply_problem(text)
        if problem is not None:
            problems.append(FieldProblem(_reply_field(kind), problem))
    if problems:
        return problems
    return OptOutSettings(kept, scope, dict(replies))


def _keywords_field(kind: KeywordKind) -> str:
    return f"{kind.value.lower()}Keywords"


def _reply_field(kind: KeywordKind) -> str:
    return f"{kind.value.lower()}Reply"


def _word_problem(raw: str) -> str | None:
    problem = text_problem(raw)
    if problem is not None:
        return problem
    word = normalize_keyword(raw)
    if not word:
        return "must not list an empty word"
    if len(word) > KEYWORD_MAX:
        return f"words must be at most {KEYWORD_MAX} characters"
    return None


def _reply_problem(text: str | None) -> str | None:
    if text is None:
        return None
    problem = text_problem(text)
    if problem is not None:
        return problem
    if not text.strip():
        return "must not be blank (null turns the reply off)"
    if len(text) > REPLY_MAX:
        return f"must be at most {REPLY_MAX} characters"
    return None
