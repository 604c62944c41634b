"""The console page and its two files: shipped, served by digest, strict headers, and the
alphabet its segment preview counts with is the gateway's. The browser test
(tests/integration/test_console_browser.py) shows the page working."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from base64 import b64encode
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
from starlette.applications import Starlette

from gateway.domain import segments
from gateway.web.console import PAGE_HEADERS, SCRIPT, STYLE, console_html, console_routes

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "gateway" / "web" / "console_assets"
SOURCE = (FOLDER / SCRIPT).read_text()
KEY = "mgw_" + "k" * 40


def js_string(name: str) -> str:
    found = re.search(rf"^const {name} = (\".*\");$", SOURCE, re.MULTILINE)
    assert found is not None, name
    value: str = json.loads(found.group(1))
    return value


def settings_of(html: str) -> dict[str, Any]:
    found = re.search(r'<script id="console-settings" type="application/json">(.*?)</script>', html)
    assert found is not None, html
    settings: dict[str, Any] = json.loads(found.group(1))
    return settings


def test_the_page_counts_with_the_gateways_alphabet() -> None:
    assert set(js_string("GSM7_BASIC")) == segments._GSM7_BASIC
    assert set(js_string("GSM7_EXTENSION")) == segments._GSM7_EXTENSION


def test_the_script_never_writes_markup_or_keeps_the_key() -> None:
    for forbidden in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert forbidden not in SOURCE, forbidden
    assert "localStorage" not in SOURCE and "sessionStorage" not in SOURCE


def test_the_key_is_prefilled_only_when_given() -> None:
    assert settings_of(console_html(KEY)) == {"apiKey": KEY}
    without = console_html(None)
    assert settings_of(without) == {"apiKey": None} and "mgw_" not in without
    hostile = console_html("</script><script>alert(1)</script>")
    assert settings_of(hostile)["apiKey"].startswith("</script>")
    assert hostile.count("</script>") == 2  # the module's and the settings'


def test_the_page_runs_only_its_module_from_the_gateway() -> None:
    html = console_html(KEY)
    # No inline script but the JSON settings, no inline style, nothing from elsewhere.
    scripts = re.findall(r"<script([^>]*)>", html)
    assert scripts == [
        f' type="module" src="console/assets/{asset_digest(SCRIPT)}/{SCRIPT}"'
        f' integrity="{integrity(SCRIPT)}"',
        ' id="console-settings" type="application/json"',
    ]
    assert f'href="console/assets/{asset_digest(STYLE)}/{STYLE}"' in html
    assert f'integrity="{integrity(STYLE)}"' in html
    assert "style=" not in html and "<style" not in html and "://" not in html
    policy = dict(
        d.strip().split(" ", 1) for d in PAGE_HEADERS["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["connect-src"] == "'self'" and policy["frame-ancestors"] == "'none'"
    assert PAGE_HEADERS["Cache-Control"] == "no-store"
    assert PAGE_HEADERS["X-Content-Type-Options"] == "nosniff"


def asset_digest(path: str) -> str:
    return hashlib.sha256((FOLDER / path).read_bytes()).hexdigest()[:20]


def integrity(path: str) -> str:
    return "sha384-" + b64encode(hashlib.sha384((FOLDER / path).read_bytes()).digest()).decode()


def test_the_wheel_ships_both_files() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["gateway"]
    for path in (STYLE, SCRIPT):
        parts = PurePosixPath("web/console_assets", path).parts
        assert any(
            len(parts) == len(PurePosixPath(p).parts)
            and all(map(fnmatch, parts, PurePosixPath(p).parts))
            for p in patterns
        ), path


async def test_the_files_are_served_by_digest() -> None:
    app = Starlette(routes=console_routes())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway"
    ) as client:
        for path, media in ((SCRIPT, "text/javascript"), (STYLE, "text/css")):
            url = f"/console/assets/{asset_digest(path)}/{path}"
            response = await client.get(url)
            assert response.status_code == 200
            assert response.content == (FOLDER / path).read_bytes()
            assert response.headers["content-type"].startswith(media)
            stale = await client.get(f"/console/assets/0000000000/{path}")
            assert stale.status_code == 404
        assert (await client.get(f"/console/assets/{asset_digest(SCRIPT)}/x.js")).status_code == 404
