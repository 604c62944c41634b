"""The GraphiQL page, pre-filled with the development key in embedded mode.

A newcomer opens /graphql and can send a message at once: the key is in the HTTP headers and
in the websocket connectionParams of the page's fetcher, and the editor starts with examples.
"""

from __future__ import annotations

import json
import re

from strawberry.http.ides import get_graphql_ide_html

WELCOME = """# Messaging gateway. Run "Send" (Ctrl-Enter), copy the message id, then run
# "Watch" to see QUEUED -> SENDING -> SENT -> DELIVERED (use after: "0" to replay).

mutation Send {
  sendMessage(input: {channel: SMS, from: "+14155550100", to: "+14155550199", body: "Hello!"}) {
    __typename
    ... on MessageAccepted { replayed message { id status segments encoding conversation { id } } }
    ... on InvalidInput { problems { field problem } }
  }
}

subscription Watch {
  messageEvents(after: "0") { cursor kind status messageId occurredAt }
}
"""


def graphiql_html(api_key: str | None) -> str:
    html = get_graphql_ide_html(graphql_ide="graphiql")
    html = re.sub(
        r"const EXAMPLE_QUERY = `.*?`;",
        lambda _: f"const EXAMPLE_QUERY = {json.dumps(WELCOME)};",
        html,
        count=1,
        flags=re.DOTALL,
    )
    if api_key is None:
        return html
    header = json.dumps({"Authorization": f"Bearer {api_key}"})
    params = json.dumps({"authorization": f"Bearer {api_key}"})
    html = html.replace("const defaultHeaders = {};", f"const defaultHeaders = {header};", 1)
    html = html.replace(
        "        subscriptionUrl,\n      });",
        f"        subscriptionUrl,\n        wsConnectionParams: {params},\n      }});",
        1,
    )
    html = html.replace(
        "React.useState(parameters.headers)",
        f"React.useState(parameters.headers || {json.dumps(header)})",
        1,
    )
    return html
