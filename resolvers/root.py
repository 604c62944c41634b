"""The root types: which resolver answers each query, mutation and subscription field."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from resolvers import (
    inbox,
    mutations,
    opt_outs,
    pages,
    queries,
    routes,
    subscriptions,
    suppressions,
)
from resolvers import webhook_endpoints as endpoints
from schema.build import Roots
from schema.inbox import InboxChange, MarkConversationReadResult
from schema.opt_outs import OptOutSettings, SetOptOutSettingsResult
from schema.pacing import SenderAddress, SetSenderRateResult
from schema.quiet_hours import QuietHours, SetQuietHoursResult
from schema.results import (
    CancelMessageResult,
    MessagePreview,
    RetryMessageResult,
    SendMessageResult,
)
from schema.routes import Route, SetRouteResult
from schema.suppressions import (
    AddSuppressionResult,
    RemoveSuppressionResult,
    SuppressionConnection,
)
from schema.types import (
    Conversation,
    ConversationConnection,
    Message,
    MessageConnection,
    MessageEvent,
    Node,
)
from schema.webhook_endpoints import (
    CreateWebhookEndpointResult,
    RedeliverFailedWebhooksResult,
    RedeliverWebhookResult,
    RotateWebhookSecretResult,
    UpdateWebhookEndpointResult,
    WebhookEndpoint,
    WebhookEndpointConnection,
    WebhookEndpointResult,
)


@strawberry.type
class Query:
    node: Node | None = strawberry.field(resolver=queries.node)
    message: Message | None = strawberry.field(resolver=queries.message)
    conversation: Conversation | None = strawberry.field(resolver=queries.conversation)
    conversations: ConversationConnection = strawberry.field(
        resolver=pages.conversations,
        description=(
            "Most recently active first. `search`: part of a participant's number or address,"
            " or words of its messages (then `matchingMessage` is the newest that has them)."
        ),
    )
    messages: MessageConnection = strawberry.field(
        resolver=pages.messages,
        description=(
            "The account's messages that pass `filter`, newest created first unless `sortBy`"
            " and `order` say otherwise; keyset cursors."
        ),
    )
    preview_message: MessagePreview = strawberry.field(resolver=queries.preview_message)
    dead_letters: MessageConnection = strawberry.field(
        resolver=pages.dead_letters,
        description="FAILED messages whose retries are exhausted, newest first.",
    )
    quiet_hours: QuietHours = strawberry.field(
        resolver=queries.quiet_hours, description="The account's quiet hours."
    )
    opt_out_settings: OptOutSettings = strawberry.field(
        resolver=opt_outs.opt_out_settings,
        description="The account's opt-out keywords (STOP, START, HELP), scope and auto-replies.",
    )
    sender_addresses: list[SenderAddress] = strawberry.field(
        resolver=queries.sender_addresses,
        description="The account's sender numbers and e-mail addresses, with their rates.",
    )
    suppressions: SuppressionConnection = strawberry.field(
        resolver=suppressions.suppressions,
        description=(
            "Recipients this account does not send to, newest first; `address` filters by one."
        ),
    )
    webhook_endpoints: WebhookEndpointConnection = strawberry.field(
        resolver=endpoints.webhook_endpoints,
        description="The endpoints this account's events are POSTed to, newest first.",
    )
    webhook_endpoint: WebhookEndpoint | None = strawberry.field(resolver=endpoints.webhook_endpoint)
    routes: list[Route] = strawberry.field(
        resolver=routes.routes,
        description="The account's routes: which vendors its messages try, in which order.",
    )


@strawberry.type
class Mutation:
    send_message: SendMessageResult = strawberry.mutation(resolver=mutations.send_message)
    send_messages: list[SendMessageResult] = strawberry.mutation(
        resolver=mutations.send_messages,
        description="Up to 1000 inputs in one call; results in input order.",
    )
    cancel_message: CancelMessageResult = strawberry.mutation(
        resolver=mutations.cancel_message, description="Cancel a SCHEDULED or QUEUED message."
    )
    retry_message: RetryMessageResult = strawberry.mutation(
        resolver=mutations.retry_message,
        description="Send a FAILED (dead-lettered) message again.",
    )
    mark_conversation_read: MarkConversationReadResult = strawberry.mutation(
        resolver=inbox.mark_conversation_read,
        description=(
            "Move the conversation's read cursor forward to `upTo` (one of its messages;"
            " default: its newest). It never moves back: a stale tab cannot unread anything."
        ),
    )
    set_quiet_hours: SetQuietHoursResult = strawberry.mutation(
        resolver=mutations.set_quiet_hours,
        description="Replace the account's quiet hours; messages already held keep their time.",
    )
    set_opt_out_settings: SetOptOutSettingsResult = strawberry.mutation(
        resolver=opt_outs.set_opt_out_settings,
        description="Replace the account's opt-out keywords, scope and auto-replies.",
    )
    set_sender_rate: SetSenderRateResult = strawberry.mutation(
        resolver=mutations.set_sender_rate,
        description=(
            "Set the rate one of the account's sender addresses is paced at (an e-mail\n"
            "address: its domain's rate)."
        ),
    )
    add_suppression: AddSuppressionResult = strawberry.mutation(
        resolver=suppressions.add_suppression,
        description="Stop sending to an address (for one channel or sender, or all of them).",
    )
    remove_suppression: RemoveSuppressionResult = strawberry.mutation(
        resolver=suppressions.remove_suppression,
        description=(
            "Send to an address again. One the recipient asked for (STOP_KEYWORD) needs a\n"
            "`reason`; every removal is recorded."
        ),
    )
    create_webhook_endpoint: CreateWebhookEndpointResult = strawberry.mutation(
        resolver=endpoints.create_webhook_endpoint,
        description="Add an endpoint; its signing secret is in the answer, and only there.",
    )
    update_webhook_endpoint: UpdateWebhookEndpointResult = strawberry.mutation(
        resolver=endpoints.update_webhook_endpoint,
        description="Change an endpoint's URL, description or filters.",
    )
    disable_webhook_endpoint: WebhookEndpointResult = strawberry.mutation(
        resolver=endpoints.disable_webhook_endpoint,
        description="Stop sending to an endpoint; its waiting deliveries wait.",
    )
    enable_webhook_endpoint: WebhookEndpointResult = strawberry.mutation(
        resolver=endpoints.enable_webhook_endpoint,
        description="Send to an endpoint again (its record of failures is cleared).",
    )
    delete_webhook_endpoint: WebhookEndpointResult = strawberry.mutation(
        resolver=endpoints.delete_webhook_endpoint,
        description="Delete an endpoint and its deliveries.",
    )
    rotate_webhook_secret: RotateWebhookSecretResult = strawberry.mutation(
        resolver=endpoints.rotate_webhook_secret,
        description=(
            "A new signing secret for an endpoint; for 24 hours the old one signs each\n"
            "delivery too."
        ),
    )
    redeliver_webhook: RedeliverWebhookResult = strawberry.mutation(
        resolver=endpoints.redeliver_webhook,
        description="Send one delivery again, with a fresh set of tries.",
    )
    redeliver_failed_webhooks: RedeliverFailedWebhooksResult = strawberry.mutation(
        resolver=endpoints.redeliver_failed_webhooks,
        description="Send again every FAILED delivery of an endpoint made at or after `since`.",
    )
    set_route: SetRouteResult = strawberry.mutation(
        resolver=routes.set_route,
        description=(
            "Set the vendor order of a channel, for every destination or one country; messages\n"
            "already handed to a vendor stay with it."
        ),
    )
    remove_route: bool = strawberry.mutation(
        resolver=routes.remove_route,
        description=(
            "Drop the route of a channel (and country); true when there was one. Its messages\n"
            "go by the next route that applies."
        ),
    )


@strawberry.type
class Subscription:
    message_events: AsyncGenerator[MessageEvent, None] = strawberry.subscription(
        resolver=subscriptions.message_events,
        description=(
            "Live audit-trail events of the caller's account, filtered by conversation or "
            "message.\nWith `after` (an event cursor), events after it are replayed from storage "
            "first, then live\nevents follow with no gap and no duplicate."
        ),
    )
    inbox_changes: AsyncGenerator[InboxChange, None] = strawberry.subscription(
        resolver=inbox.inbox_changes,
        description=(
            "Live changes of the caller's inbox state (of one conversation if given): a read\n"
            "mark from any tab or process, an inbound message arriving. Live only, no replay:\n"
            "read the conversations once subscribed, then keep them by these changes."
        ),
    )


ROOTS = Roots(
    Query,
    Mutation,
    Subscription,
    on_coerced_inputs={
        "sendMessage": mutations.send_message_coerced,
        "sendMessages": mutations.send_messages_coerced,
    },
)
