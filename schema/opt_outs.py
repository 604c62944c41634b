"""The account's opt-out keywords in the API: what ``optOutSettings`` reads and
``setOptOutSettings`` sets."""

from __future__ import annotations

from typing import Annotated

import strawberry

from gateway.domain.opt_outs import DEFAULT_KEYWORDS, DEFAULT_REPLIES, KeywordKind, OptOutScope
from gateway.domain.opt_outs import OptOutSettings as Setting
from schema.results import InvalidInput

STOP, START, HELP = KeywordKind.STOP, KeywordKind.START, KeywordKind.HELP

strawberry.enum(
    OptOutScope,
    name="OptOutScope",
    description=(
        "What a recipient's keyword holds for: the one number it was written to (SENDER), or\n"
        "every number of the account (ACCOUNT)."
    ),
)


@strawberry.type(
    description=(
        "An inbound SMS/MMS whose whole body (trimmed, inner whitespace collapsed, case-folded)\n"
        "is one of these words opts its sender out (STOP_KEYWORD suppression), back in (lifts\n"
        "that suppression), or asks for help; each is answered with its reply, if set."
    )
)
class OptOutSettings:
    stop_keywords: list[str]
    start_keywords: list[str]
    help_keywords: list[str]
    scope: OptOutScope
    stop_reply: str | None = strawberry.field(description="Answer to an opt-out; null: none.")
    start_reply: str | None = strawberry.field(description="Answer to an opt-in; null: none.")
    help_reply: str | None = strawberry.field(description="Answer to HELP; null: none.")

    @classmethod
    def from_domain(cls, setting: Setting) -> OptOutSettings:
        words, replies = setting.keywords, setting.replies
        return cls(
            stop_keywords=list(words.get(STOP, ())),
            start_keywords=list(words.get(START, ())),
            help_keywords=list(words.get(HELP, ())),
            scope=setting.scope,
            stop_reply=replies.get(STOP),
            start_reply=replies.get(START),
            help_reply=replies.get(HELP),
        )


@strawberry.input(
    description=(
        "Replaces the account's opt-out settings; a field left out takes its default, a reply\n"
        "set to null is turned off."
    )
)
class OptOutSettingsInput:
    stop_keywords: list[str] = strawberry.field(
        default_factory=lambda: list(DEFAULT_KEYWORDS[STOP]),
        description="At least one word, at most 20, each at most 32 characters.",
    )
    start_keywords: list[str] = strawberry.field(
        default_factory=lambda: list(DEFAULT_KEYWORDS[START])
    )
    help_keywords: list[str] = strawberry.field(
        default_factory=lambda: list(DEFAULT_KEYWORDS[HELP])
    )
    scope: OptOutScope = OptOutScope.SENDER
    stop_reply: str | None = DEFAULT_REPLIES[STOP]
    start_reply: str | None = DEFAULT_REPLIES[START]
    help_reply: str | None = DEFAULT_REPLIES[HELP]


@strawberry.type
class OptOutSettingsSet:
    opt_out_settings: OptOutSettings


SetOptOutSettingsResult = Annotated[
    OptOutSettingsSet | InvalidInput, strawberry.union("SetOptOutSettingsResult")
]
