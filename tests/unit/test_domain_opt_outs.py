"""Opt-out keywords: which bodies are keywords of which kind, and which settings are refused."""

from __future__ import annotations

from uuid import UUID

import pytest

from gateway.domain.messages import FieldProblem
from gateway.domain.opt_outs import (
    DEFAULT_KEYWORDS,
    DEFAULT_REPLIES,
    DEFAULTS,
    KEYWORD_MAX,
    KEYWORDS_MAX,
    REPLY_MAX,
    AutoReply,
    KeywordKind,
    KeywordMatch,
    OptOutScope,
    OptOutSettings,
    match_keyword,
    parse_opt_out_settings,
)

STOP, START, HELP = KeywordKind.STOP, KeywordKind.START, KeywordKind.HELP


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("STOP", KeywordMatch(STOP, "STOP")),
        ("stop", KeywordMatch(STOP, "STOP")),
        ("  Stop\n", KeywordMatch(STOP, "STOP")),
        ("opt  out", KeywordMatch(STOP, "OPT OUT")),
        ("OPT\tOUT", KeywordMatch(STOP, "OPT OUT")),
        ("Unsubscribe", KeywordMatch(STOP, "UNSUBSCRIBE")),
        ("revoke", KeywordMatch(STOP, "REVOKE")),
        ("yes", KeywordMatch(START, "YES")),
        ("UNSTOP", KeywordMatch(START, "UNSTOP")),
        ("info", KeywordMatch(HELP, "INFO")),
        ("help ", KeywordMatch(HELP, "HELP")),
        ("stop please", None),
        ("STOP.", None),
        ("optout now", None),
        ("S T O P", None),
        ("", None),
        ("   ", None),
        (None, None),
        ("stop " * 100, None),
    ],
)
def test_a_whole_body_trimmed_collapsed_and_case_folded_is_a_keyword(
    body: str | None, expected: KeywordMatch | None
) -> None:
    assert match_keyword(DEFAULTS, body) == expected


def test_the_defaults_are_the_carriers_words_with_the_senders_scope() -> None:
    words = "STOP,STOPALL,UNSUBSCRIBE,CANCEL,END,QUIT,OPTOUT,OPT OUT,REVOKE"
    assert DEFAULTS.keywords[STOP] == tuple(words.split(","))
    assert DEFAULTS.keywords[START] == ("START", "YES", "UNSTOP")
    assert DEFAULTS.keywords[HELP] == ("HELP", "INFO")
    assert DEFAULTS.scope is OptOutScope.SENDER
    assert DEFAULTS.replies == DEFAULT_REPLIES
    assert all(DEFAULTS.replies[kind] for kind in KeywordKind)


def _parse(
    stop: list[str] | None = None,
    start: list[str] | None = None,
    help_: list[str] | None = None,
    replies: dict[KeywordKind, str | None] | None = None,
    scope: OptOutScope = OptOutScope.SENDER,
) -> OptOutSettings | list[FieldProblem]:
    keywords = {
        STOP: list(DEFAULT_KEYWORDS[STOP]) if stop is None else stop,
        START: list(DEFAULT_KEYWORDS[START]) if start is None else start,
        HELP: list(DEFAULT_KEYWORDS[HELP]) if help_ is None else help_,
    }
    return parse_opt_out_settings(keywords, scope, {**DEFAULT_REPLIES, **(replies or {})})


def test_an_accounts_own_words_replace_the_defaults_and_are_kept_normalized_once() -> None:
    settings = _parse(
        stop=["  Arrêt ", "halt  now", "HALT NOW"],
        start=["go"],
        help_=[],
        replies={START: None},
        scope=OptOutScope.ACCOUNT,
    )
    assert isinstance(settings, OptOutSettings)
    assert settings.keywords == {STOP: ("Arrêt", "halt now"), START: ("go",), HELP: ()}
    assert settings.scope is OptOutScope.ACCOUNT
    assert settings.replies[START] is None
    assert match_keyword(settings, "ARRÊT") == KeywordMatch(STOP, "Arrêt")
    assert match_keyword(settings, "Halt Now") == KeywordMatch(STOP, "halt now")
    # The defaults are replaced, not added to.
    assert match_keyword(settings, "stop") is None
    assert match_keyword(settings, "help") is None


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"stop": ["STOP", " "]}, [FieldProblem("stopKeywords", "must not list an empty word")]),
        ({"stop": []}, [FieldProblem("stopKeywords", "must list at least one word")]),
        (
            {"help_": ["x" * (KEYWORD_MAX + 1)]},
            [FieldProblem("helpKeywords", f"words must be at most {KEYWORD_MAX} characters")],
        ),
        (
            {"start": [f"go{n}" for n in range(KEYWORDS_MAX + 1)]},
            [FieldProblem("startKeywords", f"must list at most {KEYWORDS_MAX} words")],
        ),
        (
            {"start": ["START", "stop"]},
            [FieldProblem("startKeywords", "'stop' is listed in stopKeywords too")],
        ),
        ({"help_": ["bad\x00"]}, [FieldProblem("helpKeywords", "must not contain NUL characters")]),
        (
            {"replies": {STOP: "  "}},
            [FieldProblem("stopReply", "must not be blank (null turns the reply off)")],
        ),
        (
            {"replies": {HELP: "x" * (REPLY_MAX + 1)}},
            [FieldProblem("helpReply", f"must be at most {REPLY_MAX} characters")],
        ),
    ],
)
def test_bad_settings_are_refused_naming_the_field(
    arguments: dict[str, object], expected: list[FieldProblem]
) -> None:
    assert _parse(**arguments) == expected  # type: ignore[arg-type]


def test_an_auto_replys_key_and_detail_come_from_the_inbound_message_it_answers() -> None:
    inbound = UUID("0190f3c2-0000-7000-8000-000000000001")
    reply = AutoReply(inbound, STOP)
    assert reply.idempotency_key() == f"auto-reply:{inbound.hex}"
    assert AutoReply(inbound, STOP).idempotency_key() == reply.idempotency_key()
    assert reply.detail() == {"autoReply": "STOP", "inReplyTo": "msg_" + inbound.hex}
