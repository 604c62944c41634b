"""The GraphiQL page, pre-filled with the development key in embedded mode, and its assets.

A newcomer opens /graphql and can send a message at once: the key is in the HTTP headers and
in the websocket connectionParams of the page's fetcher, and the editor starts with examples.

The page needs nothing from outside the gateway, so it works on a host without internet.
React, GraphiQL and its explorer plugin are files of this package (graphiql_assets/vendor/, taken
from the npm registry at the versions pinned in graphiql_assets/manifest.json by
scripts/refresh-graphiql-assets.py) and served under /graphiql/assets/<digest>/<file>: the
digest changes with the content, so they are cached for a year, and the page names each with
its Subresource Integrity hash. The page's Content-Security-Policy lets it load and connect
to its own origin only.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from base64 import b64encode
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from html import escape
from importlib import resources
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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

#: Where the assets are served; the page names them relative to /graphql.
ASSET_ROUTE = "/graphiql/assets/{digest}/{path:path}"
_ASSET_FOLDER = "graphiql/assets"

#: In page order: the vendored files (see graphiql_assets/manifest.json), then the page's own.
STYLES = (
    "vendor/graphiql/graphiql.min.css",
    "vendor/graphiql-plugin-explorer/style.css",
    "page.css",
)
SCRIPTS = (
    "vendor/react/react.production.min.js",
    "vendor/react-dom/react-dom.production.min.js",
    "vendor/graphiql/graphiql.min.js",
    "vendor/graphiql-plugin-explorer/index.umd.js",
    "page.js",
)

_MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css"}
_IMMUTABLE = "public, max-age=31536000, immutable"


def page_headers(*loads: str) -> dict[str, str]:
    """Headers of a page that may hold a key: never stored by a cache, never framed, running
    and connecting to nothing but its own origin; ``loads`` are the directives of what else it
    loads (styles, images, fonts)."""
    directives = ("default-src 'none'", "script-src 'self'", *loads, "connect-src 'self'")
    return {
        "Cache-Control": "no-store",
        "Content-Security-Policy": "; ".join(
            (*directives, "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'")
        ),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }


#: Inline styles and data: fonts and images are what GraphiQL's code and stylesheet use.
PAGE_HEADERS = page_headers(
    "style-src 'self' 'unsafe-inline'", "img-src 'self' data:", "font-src 'self' data:"
)

#: How each page the gateway serves starts; ``%s`` is its title. The empty data: icon spares
#: the browser a request for one.
PAGE_START = """<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>%s - messaging gateway</title>
    <link rel="icon" href="data:,">
"""

_PAGE = (
    PAGE_START % "GraphiQL"
    + """{styles}
  </head>
  <body>
    <div id="graphiql">Loading...</div>
    <script id="graphiql-settings" type="application/json">{settings}</script>
{scripts}
  </body>
</html>
"""
)


@dataclass
class Asset:
    path: str
    data: bytes
    media_type: str
    #: The folder it is served under, relative to the page.
    folder: str = _ASSET_FOLDER
    digest: str = field(init=False)
    integrity: str = field(init=False)
    gzipped: bytes | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.digest = hashlib.sha256(self.data).hexdigest()[:20]
        self.integrity = "sha384-" + b64encode(hashlib.sha384(self.data).digest()).decode()

    @property
    def url(self) -> str:
        return f"{self.folder}/{self.digest}/{self.path}"


def read_assets(package_folder: str, paths: Iterable[str], folder: str) -> dict[str, Asset]:
    """``paths`` of ``package_folder`` (in gateway.web), to be served under ``folder``."""
    files = resources.files("gateway.web").joinpath(package_folder)
    found: dict[str, Asset] = {}
    for path in paths:
        suffix = path[path.rindex(".") :]
        data = files.joinpath(path).read_bytes()
        found[path] = Asset(path, data, _MEDIA_TYPES[suffix], folder)
    return found


@cache
def assets() -> dict[str, Asset]:
    """Every file the page loads, read once from the installed package."""
    return read_assets("graphiql_assets", (*STYLES, *SCRIPTS), _ASSET_FOLDER)


def json_for_html(value: object) -> str:
    # Inside <script type="application/json">: nothing in it can close the element.
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def graphiql_html(api_key: str | None) -> str:
    """The page; with ``api_key``, pre-filled with it and allowed to keep it in storage."""
    files = assets()
    styles = "\n".join(
        f'    <link rel="stylesheet" href="{escape(files[p].url)}" '
        f'integrity="{files[p].integrity}">'
        for p in STYLES
    )
    scripts = "\n".join(
        f'    <script src="{escape(files[p].url)}" integrity="{files[p].integrity}"></script>'
        for p in SCRIPTS
    )
    settings: dict[str, Any] = {
        "query": WELCOME,
        "headers": {},
        "connectionParams": {},
        "editorHeaders": None,
        "persistHeaders": False,
    }
    if api_key is not None:
        header = {"Authorization": f"Bearer {api_key}"}
        settings.update(
            headers=header,
            connectionParams={"authorization": f"Bearer {api_key}"},
            editorHeaders=json.dumps(header, indent=2),
            persistHeaders=True,
        )
    return _PAGE.format(styles=styles, scripts=scripts, settings=json_for_html(settings))


def _accepts_gzip(accept_encoding: str) -> bool:
    for part in accept_encoding.split(","):
        coding, *params = part.split(";")
        if coding.strip().lower() not in ("gzip", "*"):
            continue
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


def asset_endpoint(
    lookup: Callable[[], dict[str, Asset]],
) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint serving the files ``lookup`` gives, at ``<folder>/{digest}/{path}``."""

    async def serve_asset(request: Request) -> Response:
        return await _serve(lookup().get(request.path_params["path"]), request)

    return serve_asset


async def _serve(asset: Asset | None, request: Request) -> Response:
    if asset is None or request.path_params["digest"] != asset.digest:
        return Response(
            "not found",
            status_code=404,
            media_type="text/plain",
            headers={"Cache-Control": "no-store"},
        )
    headers = {
        "Cache-Control": _IMMUTABLE,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    body = asset.data
    etag = f'"{asset.digest}"'
    if _accepts_gzip(request.headers.get("accept-encoding", "")):
        if asset.gzipped is None:
            asset.gzipped = await run_in_threadpool(gzip.compress, asset.data, 9, mtime=0)
        body = asset.gzipped
        etag = f'"{asset.digest}-gzip"'
        headers["Content-Encoding"] = "gzip"
    headers["ETag"] = etag
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=asset.media_type, headers=headers)


def graphiql_routes() -> list[Route]:
    return [Route(ASSET_ROUTE, asset_endpoint(assets), methods=["GET"])]
