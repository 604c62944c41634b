"""The console: conversations, a live thread, compose and dead letters, on the public API alone.

One page at /console, one stylesheet and one script module of this package (console_assets/),
written by hand: nothing is built or fetched from elsewhere. The script speaks GraphQL over HTTP
and graphql-transport-ws on /graphql with the key typed into the page, as any frontend would;
the gateway gives the page no other access. The key field is pre-filled, as GraphiQL's, only
with the development key and only for a client on this machine (the caller decides that).
"""

from __future__ import annotations

from functools import cache
from html import escape

from starlette.routing import Route

from gateway.web.graphiql import (
    PAGE_START,
    Asset,
    asset_endpoint,
    json_for_html,
    page_headers,
    read_assets,
)

STYLE = "console.css"
SCRIPT = "console.js"
_ASSET_FOLDER = "console/assets"
ASSET_ROUTE = "/" + _ASSET_FOLDER + "/{digest}/{path:path}"

#: No inline script or style at all; data: for the empty icon only (see PAGE_START).
PAGE_HEADERS = page_headers("style-src 'self'", "img-src 'self' data:")

_PAGE = (
    PAGE_START % "Console"
    + """\
    <link rel="stylesheet" href="{style}" integrity="{style_integrity}">
    <script type="module" src="{script}" integrity="{script_integrity}"></script>
  </head>
  <body>
    <header>
      <h1>Messaging console</h1>
      <form id="key-form">
        <label>API key <input id="api-key" type="password" autocomplete="off" size="44"></label>
        <button type="submit">Connect</button>
        <span id="connection" role="status">not connected</span>
      </form>
    </header>
    <main>
      <section id="conversations-pane" aria-label="Conversations">
        <input id="search" type="search" placeholder="Search numbers, addresses, words">
        <ul id="conversations"></ul>
      </section>
      <section id="thread-pane" aria-label="Thread">
        <h2 id="thread-title">No conversation open</h2>
        <ol id="thread"></ol>
        <form id="compose">
          <div class="row">
            <select id="channel" aria-label="Channel">
              <option value="SMS">SMS</option>
              <option value="MMS">MMS</option>
              <option value="EMAIL">E-mail</option>
            </select>
            <input id="from" placeholder="From" aria-label="From" value="+14155550100">
            <input id="to" placeholder="To" aria-label="To">
          </div>
          <input id="subject" placeholder="Subject" aria-label="Subject" hidden>
          <input id="media" placeholder="Media URL" aria-label="Media URL" hidden>
          <textarea id="body" rows="3" placeholder="Message" aria-label="Message"></textarea>
          <div class="row">
            <span id="segments" aria-live="polite"></span>
            <button type="submit">Send</button>
          </div>
          <p id="compose-result" role="status"></p>
        </form>
      </section>
      <section id="dead-letters-pane" aria-label="Dead letters">
        <h2>Dead letters</h2>
        <ul id="dead-letters"></ul>
      </section>
    </main>
    <script id="console-settings" type="application/json">{settings}</script>
  </body>
</html>
"""
)


@cache
def console_assets() -> dict[str, Asset]:
    """The page's stylesheet and script, read once from the installed package."""
    return read_assets("console_assets", (STYLE, SCRIPT), _ASSET_FOLDER)


def console_html(api_key: str | None) -> str:
    """The page; with ``api_key``, its key field starts with it."""
    files = console_assets()
    return _PAGE.format(
        style=escape(files[STYLE].url),
        style_integrity=files[STYLE].integrity,
        script=escape(files[SCRIPT].url),
        script_integrity=files[SCRIPT].integrity,
        settings=json_for_html({"apiKey": api_key}),
    )


def console_routes() -> list[Route]:
    return [Route(ASSET_ROUTE, asset_endpoint(console_assets), methods=["GET"])]
