"""The process harness's own promises: a child that dies on start is reported with its log,
one that ignores SIGTERM is killed, readiness means a 200 from the URL, a child's stderr can
be kept apart from its stdout, and the blocking forms (for synchronous tests) wait and stop
the same way."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from harness.processes import Process, ProcessError, started, wait_http
from harness.servers import free_port


def python(tmp_path: Path, name: str, code: str) -> Process:
    return Process(name, [sys.executable, "-c", code], {}, tmp_path / f"{name}.log", cwd=tmp_path)


def web_server(port: int) -> str:
    """A child answering 200 on /ready and 503 elsewhere."""
    return (
        "import http.server\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200 if self.path == '/ready' else 503)\n"
        "        self.end_headers()\n"
        "    def log_message(self, *a): pass\n"
        f"http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n"
    )


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
    proc = python(tmp_path, "web", web_server(port))
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
    assert await proc.stop(within=0.5) is False
    assert proc.returncode == -9


def test_stderr_kept_apart_holds_only_what_the_child_wrote_there(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "print('on', 'stdout', flush=True)\n"
        'print(\'{"event": "on stderr"}\', file=sys.stderr, flush=True)\n'
    )
    argv = [sys.executable, "-c", code]
    proc = Process(
        "apart", argv, {}, tmp_path / "a.out", cwd=tmp_path, stderr_path=tmp_path / "a.err"
    )
    proc.proc.wait(timeout=30)
    assert proc.log_text() == "on stdout\n"  # no header line: the child's output alone
    assert proc.stderr_text() == '{"event": "on stderr"}\n'
    assert proc.log_records() == [{"event": "on stderr"}]
    assert "on stdout" in proc.tail() and "on stderr" in proc.tail()
    merged = python(tmp_path, "merged", code)
    merged.proc.wait(timeout=30)
    assert "on stdout" in merged.log_text() and "on stderr" in merged.log_text()
    assert merged.stderr_text() == ""


def test_started_waits_for_readiness_and_stops_the_child_on_the_way_out(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-c", web_server(port)]
    with started(
        "web", argv, {}, tmp_path / "web.log", ready=f"http://127.0.0.1:{port}/ready"
    ) as proc:
        with httpx.Client(trust_env=False) as http:
            assert http.get(f"http://127.0.0.1:{port}/ready").status_code == 200
        assert proc.alive
    assert proc.returncode == -15  # stopped by our SIGTERM, not killed
    dies = [sys.executable, "-c", "print('no', 'port', flush=True); raise SystemExit(4)"]
    never = f"http://127.0.0.1:{port}/"
    with (
        pytest.raises(ProcessError) as failure,
        started("dies", dies, {}, tmp_path / "dies.log", ready=never),
    ):
        raise AssertionError("a child that died is not ready")
    assert "dies died on start" in str(failure.value)
    assert "no port" in str(failure.value)


def test_kill_blocking_kills_and_reaps(tmp_path: Path) -> None:
    proc = python(tmp_path, "sleeper", "import time; time.sleep(600)")
    proc.kill_blocking()
    assert proc.returncode == -9  # set only once reaped
    assert not proc.alive
