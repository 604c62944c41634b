"""Root fields of the opt-out keywords: read and replace the account's setting."""

from __future__ import annotations

import strawberry

from gateway.domain.opt_outs import KeywordKind
from resolvers.mutations import invalid_input
from schema.context import context_of
from schema.opt_outs import (
    OptOutSettings,
    OptOutSettingsInput,
    OptOutSettingsSet,
    SetOptOutSettingsResult,
)


async def opt_out_settings(info: strawberry.Info) -> OptOutSettings:
    context, account, _ = context_of(info)
    return OptOutSettings.from_domain(await context.services.opt_outs.of(account.id))


async def set_opt_out_settings(
    info: strawberry.Info, input: OptOutSettingsInput
) -> SetOptOutSettingsResult:
    context, account, _ = context_of(info)
    outcome = await context.services.opt_outs.set(
        account.id,
        {
            KeywordKind.STOP: input.stop_keywords,
            KeywordKind.START: input.start_keywords,
            KeywordKind.HELP: input.help_keywords,
        },
        input.scope,
        {
            KeywordKind.STOP: input.stop_reply,
            KeywordKind.START: input.start_reply,
            KeywordKind.HELP: input.help_reply,
        },
    )
    if isinstance(outcome, list):
        return invalid_input(outcome)
    return OptOutSettingsSet(opt_out_settings=OptOutSettings.from_domain(outcome))
