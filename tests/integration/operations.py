"""GraphQL documents that several integration test modules send alike."""

from __future__ import annotations

_MESSAGE_ACTION = """
mutation Act($id: ID!) {
  FIELD(id: $id) {
    __typename
    ... on MessageAccepted { message { ACCEPTED } }
    ... on NotFound { id }
    ... on NotCancelable { current { id status } }
  }
}
"""


def message_action(field: str, accepted: str = "id status") -> str:
    """A cancelMessage or retryMessage by id that names every member of its result union;
    `accepted` is what the accepted message is asked for."""
    return _MESSAGE_ACTION.replace("FIELD", field).replace("ACCEPTED", accepted)


CANCEL = message_action("cancelMessage")
RETRY = message_action("retryMessage")
