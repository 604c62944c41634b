"""GraphiQL's page and its vendored assets: pinned, unmodified, shipped, served from the gateway.

The browser test (tests/integration/test_graphiql_browser.py) shows the page working offline;
these check what it rests on without a browser.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from base64 import b64encode
from collections.abc import AsyncIterator
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from gateway.web.graphiql import (
    PAGE_HEADERS,
    SCRIPTS,
    STYLES,
    assets,
    graphiql_html,
    graphiql_routes,
)

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "gateway" / "web" / "graphiql_assets"
MANIFEST: dict[str, Any] = json.loads((FOLDER / "manifest.json").read_text())
VENDORED = {entry["path"]: entry for p in MANIFEST["packages"] for entry in p["files"]}
KEY = "mgw_" + "k" * 40


def settings_of(html: str) -> dict[str, Any]:
    found = re.search(
        r'<script id="graphiql-settings" type="application/json">(.*?)</script>', html, re.DOTALL
    )
    assert found is not None, html
    settings: dict[str, Any] = json.loads(found.group(1))
    return settings


def test_every_package_is_pinned_with_its_registry_integrity_and_licence() -> None:
    for package in MANIFEST["packages"]:
        assert re.fullmatch(r"\d+\.\d+\.\d+", package["version"]), package
        assert package["integrity"].startswith("sha512-"), package
        assert package["license"] == "MIT", package
        shipped = {Path(entry["from"]).name for entry in package["files"]}
        # The licence text, or where the package has none, its package.json naming it.
        assert shipped & {"LICENSE", "package.json"}, package["name"]


@pytest.mark.parametrize("path", sorted(VENDORED))
def test_vendored_files_are_the_registrys_bytes(path: str) -> None:
    data = (FOLDER / path).read_bytes()
    assert len(data) == VENDORED[path]["bytes"]
    assert hashlib.sha256(data).hexdigest() == VENDORED[path]["sha256"], (
        f"{path} changed: run scripts/refresh-graphiql-assets.py instead of editing it"
    )


def test_nothing_unlisted_is_vendored() -> None:
    present = {
        p.relative_to(FOLDER).as_posix() for p in (FOLDER / "vendor").rglob("*") if p.is_file()
    }
    assert present == set(VENDORED)


def test_the_page_loads_only_vendored_files_and_its_own() -> None:
    own = {"page.js", "page.css"}
    assert set(STYLES) | set(SCRIPTS) <= set(VENDORED) | own
    assert own <= set(STYLES) | set(SCRIPTS)


def test_the_wheel_ships_every_asset() -> None:
    # setuptools' package-data globs for the gateway package, matched part by part.
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["gateway"]

    def shipped(relative: str) -> bool:
        parts = PurePosixPath(relative).parts
        for pattern in patterns:
            pattern_parts = PurePosixPath(pattern).parts
            if len(parts) == len(pattern_parts) and all(map(fnmatch, parts, pattern_parts)):
                return True
        return False

    files = [p.relative_to(ROOT / "gateway").as_posix() for p in FOLDER.rglob("*") if p.is_file()]
    assert files
    assert [f for f in files if not shipped(f)] == []


def test_the_page_names_every_file_on_the_gateway_with_its_integrity() -> None:
    html = graphiql_html(KEY)
    references = re.findall(r'(?:src|href)="([^"]*)"(?: integrity="([^"]*)")?', html)
    assert len(references) == len(STYLES) + len(SCRIPTS) + 1  # and the empty data: icon
    for url, integrity in references:
        if url == "data:,":
            continue
        # Relative to /graphql, so on the gateway whatever host or prefix it is reached by.
        assert not re.match(r"^[a-z]+:|^//|^/", url), url
        named = re.fullmatch(r"graphiql/assets/([0-9a-f]+)/(.+)", url)
        assert named is not None, url
        digest, path = named.groups()
        data = (FOLDER / path).read_bytes()
        assert hashlib.sha256(data).hexdigest().startswith(digest)
        assert integrity == "sha384-" + b64encode(hashlib.sha384(data).digest()).decode()
    assert "://" not in html.replace("http://www.w3.org", "")


def test_page_headers_allow_nothing_but_the_gateway() -> None:
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in PAGE_HEADERS["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    for directive, sources in policy.items():
        assert "http" not in sources and "*" not in sources, directive
    assert PAGE_HEADERS["Cache-Control"] == "no-store"


def test_headers_are_kept_in_storage_only_with_the_development_key() -> None:
    with_key = settings_of(graphiql_html(KEY))
    assert with_key["persistHeaders"] is True
    assert with_key["headers"] == {"Authorization": f"Bearer {KEY}"}
    assert with_key["connectionParams"] == {"authorization": f"Bearer {KEY}"}
    assert json.loads(with_key["editorHeaders"]) == {"Authorization": f"Bearer {KEY}"}

    without = graphiql_html(None)
    assert "Bearer" not in without
    settings = settings_of(without)
    assert settings["persistHeaders"] is False
    assert settings["headers"] == {} and settings["connectionParams"] == {}
    assert settings["editorHeaders"] is None
    assert "mutation Send" in settings["query"] and "subscription Watch" in settings["query"]


def test_settings_cannot_close_their_script_element() -> None:
    html = graphiql_html("</script><script>alert(1)</script>")
    assert html.count("</script>") == len(SCRIPTS) + 1
    assert settings_of(html)["headers"]["Authorization"].endswith("</script>")


# --------------------------------------------------------------------------- the endpoint


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=graphiql_routes())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


def asset_url(path: str) -> str:
    return "/" + assets()[path].url


async def test_assets_are_served_immutable_by_content_digest(client: httpx.AsyncClient) -> None:
    for path in (*STYLES, *SCRIPTS):
        response = await client.get(asset_url(path), headers={"Accept-Encoding": "identity"})
        assert response.status_code == 200, path
        assert response.content == (FOLDER / path).read_bytes()
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["x-content-type-options"] == "nosniff"
        expected = "text/css" if path.endswith(".css") else "text/javascript"
        assert response.headers["content-type"].startswith(expected)
        assert "content-encoding" not in response.headers


async def test_assets_are_gzipped_for_clients_that_accept_it(client: httpx.AsyncClient) -> None:
    path = "vendor/graphiql/graphiql.min.js"
    url = asset_url(path)
    raw = await client.get(url, headers={"Accept-Encoding": "gzip"})
    assert raw.headers["content-encoding"] == "gzip"
    assert raw.headers["vary"] == "Accept-Encoding"
    # httpx decodes it: the bytes are the file's, in fewer bytes on the wire.
    assert raw.content == (FOLDER / path).read_bytes()
    assert int(raw.headers["content-length"]) < len(raw.content) / 2
    refused = await client.get(url, headers={"Accept-Encoding": "gzip;q=0, br"})
    assert "content-encoding" not in refused.headers

    again = await client.get(
        url, headers={"Accept-Encoding": "gzip", "If-None-Match": raw.headers["etag"]}
    )
    assert again.status_code == 304 and again.content == b""


async def test_unknown_files_and_stale_digests_are_404(client: httpx.AsyncClient) -> None:
    good = asset_url("page.js")
    stale = re.sub(r"/assets/[0-9a-f]+/", "/assets/0000000000/", good)
    for url in (stale, good.replace("page.js", "manifest.json"), good + ".map"):
        response = await client.get(url)
        assert response.status_code == 404, url
        assert response.headers["cache-control"] == "no-store"
    head = await client.head(good)
    assert head.status_code == 200 and head.content == b""
