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


def set_mutation(field: str, input_type: str, payload: str, selection: str) -> str:
    """A mutation ``field(input:)`` that sets one of an account's settings: its ``payload``
    member is asked for ``selection``, and an InvalidInput for its problems."""
    return f"""
mutation Set($input: {input_type}!) {{
  {field}(input: $input) {{
    __typename
    ... on {payload} {{ {selection} }}
    ... on InvalidInput {{ problems {{ field problem }} }}
  }}
}}
"""
