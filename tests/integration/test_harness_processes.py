"""The process harness's own promises: a child that dies on start is reported with its log,
one that ignores SIGTERM is killed, and readiness means a 200 from the URL."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.processes import Process, ProcessError, wait_http
from harness.servers import free_port


def python(tmp_path: Path, name: str, code: str) -> Process:
    return Process(name, [sys.executable, "-c", code], {}, tmp_path / f"{name}.log", cwd=tmp_path)


async def test_a_child_that_dies_on_start_is_reported_with_its_log(tmp_path: Path) -> None:
    # The output differs from the code (the log's header holds the code).
    proc = python(tmp_path, "dies", "print('cannot', 'bind', flush=True); raise SystemExit(3)")
    with pytest.raises(ProcessError) as failure:
        await wait_http(proc, f"http://127.0.0.1:{free_port()}/ready", within=30)
    assert "dies died on start" in str(failure.value)
    assert "exited 3" in str(failure.value)
    assert "cannot bind" in str(failure.value)
    with pytest.raises(ProcessError):
        proc.check()


async def test_readiness_is_a_200_from_the_url(tmp_path: Path) -> None:
    port = free_port()
    server = (
        "import http.server\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200 if self.path == '/ready' else 503)\n"
        "        self.end_headers()\n"
        "    def log_message(self, *a): pass\n"
        f"http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n"
    )
    proc = python(tmp_path, "web", server)
    try:
        await wait_http(proc, f"http://127.0.0.1:{port}/ready", within=30)
        with pytest.raises(ProcessError) as failure:
            await wait_http(proc, f"http://127.0.0.1:{port}/health", within=0.5)
        assert "HTTP 503" in str(failure.value)
        proc.check()
    finally:
        await proc.stop()
    assert not proc.alive


async def test_a_child_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    stubborn = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('up', 'and', 'ignoring', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = python(tmp_path, "stubborn", stubborn)
    while "up and ignoring" not in proc.log_text():  # the log's header holds the code
        assert await proc.wait_exit(0.05) is False
    await proc.stop(within=0.5)
    assert proc.proc.returncode == -9
