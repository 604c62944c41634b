"""The ``messaging-gateway`` command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.entry.bootstrap.cli import Cli


def _local_url(host: str, port: int) -> str:
    reachable = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{reachable}:{port}"


#: The only command that needs no database: REQUIRE_PRODUCTION leaves it alone.
_WITHOUT_DATABASE = frozenset({"sandbox"})
#: Commands that also need Redis under REQUIRE_PRODUCTION (the processes that share work).
_WITH_REDIS = frozenset({"serve", "worker"})
#: uvicorn's options for ``serve`` that do not depend on the settings or the command line; the
#: benchmarks' plain floor app is served with them too, so that it stays comparable.
SERVE_OPTIONS: Final[dict[str, Any]] = {
    "log_config": None,
    "proxy_headers": False,
    "ws_ping_interval": 20,
    "ws_ping_timeout": 20,
    "lifespan": "on",
}


def production_problem(command: str, settings: Settings) -> str | None:
    """Why ``command`` must not run under REQUIRE_PRODUCTION, or None. The container image
    sets it: a missing DATABASE_URL there is a deployment mistake, not a wish for SQLite."""
    if not settings.require_production or command in _WITHOUT_DATABASE:
        return None
    missing = [] if settings.database_url else ["DATABASE_URL"]
    if command in _WITH_REDIS and not settings.redis_url:
        missing.append("REDIS_URL")
    if not missing:
        return None
    return (
        f"REQUIRE_PRODUCTION is set and {' and '.join(missing)} "
        f"{'is' if len(missing) == 1 else 'are'} not: `{command}` runs only the production "
        "shape here (set REQUIRE_PRODUCTION=false for the embedded mode)"
    )


def _embedded_on_network(args: argparse.Namespace, settings: Settings) -> str | None:
    """The embedded mode binds loopback unless ALLOW_EMBEDDED_ON_NETWORK says otherwise."""
    from gateway.loopback import is_loopback_host

    if not settings.embedded or is_loopback_host(args.host):
        return None
    if not settings.allow_embedded_on_network:
        return (
            f"the embedded mode (no DATABASE_URL, no REDIS_URL) serves loopback only; "
            f"--host {args.host or repr(args.host)} needs ALLOW_EMBEDDED_ON_NETWORK=true"
        )
    import structlog

    structlog.get_logger("gateway.entry.cli").warning(
        "embedded_mode_on_network",
        host=args.host,
        detail="the development key is not exposed to non-loopback clients: GraphiQL shows "
        "them an empty key field, and the sandbox's control API answers them only with "
        "SANDBOX_CONTROL_TOKEN",
    )
    return None


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from gateway.entry.app import create_app
    from gateway.entry.bootstrap.shared import ConfigurationError, verify_providers

    refused = _embedded_on_network(args, settings)
    if refused is not None:
        print(f"messaging-gateway: {refused}", file=sys.stderr)
        return 2
    if "public_base_url" not in settings.model_fields_set:
        # Unset: providers (and the mounted sandbox) call back where this process listens.
        settings.public_base_url = _local_url(args.host, args.port)
    if args.workers > 1 and settings.redis_url is None:
        print(
            "messaging-gateway: --workers above 1 needs REDIS_URL (without it the queue and "
            "live events live inside one process)",
            file=sys.stderr,
        )
        return 2
    app: Any = "gateway.entry.app:create_app"  # with several workers each builds its own from env
    try:
        verify_providers(settings)
        if args.workers > 1:
            os.environ["PUBLIC_BASE_URL"] = settings.public_base_url
        else:
            app = create_app(settings)
    except ConfigurationError as exc:
        print(f"messaging-gateway: {exc}", file=sys.stderr)
        return 2
    # uvicorn re-raises the SIGTERM it handled once it has shut down gracefully; with a
    # Python-level handler in place that re-raise is harmless and we exit 0, not -15.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.run(
        app,
        factory=args.workers > 1,
        workers=args.workers,
        # Event payloads are small and latency matters more than bytes on the wire.
        ws_per_message_deflate=False,
        host=args.host,
        port=args.port,
        # A websocket message is a GraphQL request too: the same bound as an HTTP body.
        ws_max_size=settings.graphql_max_body_bytes,
        **SERVE_OPTIONS,
    )
    return 0


def _worker(_: argparse.Namespace, settings: Settings) -> int:
    if settings.redis_url is None:
        print(
            "messaging-gateway worker needs REDIS_URL: without it the delivery worker runs "
            "inside `messaging-gateway serve`.",
            file=sys.stderr,
        )
        return 2
    import uvloop

    from gateway.entry.bootstrap.shared import ConfigurationError, verify_providers
    from gateway.entry.worker import run_worker

    try:
        verify_providers(settings)
        # uvloop, as `serve` gets from uvicorn: the worker's CPU is mostly socket I/O
        # (PostgreSQL, Redis and provider round trips), which uvloop does in C.
        return uvloop.run(run_worker(settings))
    except ConfigurationError as exc:
        print(f"messaging-gateway: {exc}", file=sys.stderr)
        return 2


def _sandbox(args: argparse.Namespace, settings: Settings) -> int:
    import uvloop

    from providers.sandbox_app import run_sandbox

    # As in `serve`: uvicorn re-raises the SIGTERM it handled; a graceful stop exits 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    # uvloop, as `serve` gets from uvicorn: under load the stand-in's I/O is most of its CPU.
    uvloop.run(run_sandbox(settings, args.host, args.port))
    return 0


def _migrate(_: argparse.Namespace, settings: Settings) -> int:
    from gateway.entry.migrations import upgrade_to_head

    asyncio.run(upgrade_to_head(settings))
    print("database schema is at head")
    return 0


async def _account_command(settings: Settings, action: str, args: argparse.Namespace) -> int:
    from gateway.entry.bootstrap.cli import bootstrap_cli
    from gateway.entry.migrations import upgrade_to_head
    from gateway.services.clock import utcnow

    if settings.is_sqlite:
        await upgrade_to_head(settings)
    cli = bootstrap_cli(settings)
    try:
        if action == "create":
            account, key = await cli.api_keys.create(args.account)
            print(f"API key for account '{account.name}' (shown once, store it now):")
            print(key)
        elif action == "list":
            keys = await cli.accounts.list_keys()
            print(f"{'PREFIX':<14} {'ACCOUNT':<24} {'CREATED':<26} REVOKED")
            for k in keys:
                revoked = k.revoked_at.isoformat() if k.revoked_at else "-"
                print(f"{k.prefix:<14} {k.account:<24} {k.created_at.isoformat():<26} {revoked}")
        elif action == "add-address":
            owner = await _add_address(cli, args.account, args.address, args.rate)
            if owner is None:
                return 1
        elif action == "revoke":
            if not await cli.accounts.revoke_key(args.prefix, utcnow()):
                print(f"no active key with prefix {args.prefix!r}", file=sys.stderr)
                return 1
            print(f"revoked {args.prefix}")
    finally:
        await cli.close()
    return 0


async def _add_address(cli: Cli, account_name: str, raw: str, rate: float | None) -> UUID | None:
    from gateway.domain.addresses import AddressError
    from gateway.domain.pacing import check_rate, pacing_key
    from gateway.services.clock import utcnow

    try:
        address = cli.rates.normalize(raw)
    except AddressError as exc:
        print(f"not an address: {exc}", file=sys.stderr)
        return None
    for problem in check_rate(rate, "--rate"):
        print(f"{problem.field} {problem.problem}", file=sys.stderr)
        return None
    account = await cli.accounts.ensure_account(account_name, utcnow())
    owner: UUID = await cli.addresses.add_address(account.id, address, utcnow())
    if owner != account.id:
        print(f"{address} already belongs to another account", file=sys.stderr)
        return None
    print(f"{address} belongs to account '{account.name}'")
    if rate is not None:
        await cli.rates.store_rate(address, rate)
        print(f"{pacing_key(address)} is paced at {rate:g} segments per second")
    return owner


def _iso_time(value: str) -> datetime:
    """An ISO 8601 time for ``--since``; one without an offset is UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {value!r} (e.g. 2026-12-03T04:00:00Z)"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _receipt_id(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"not a receipt id: {value!r}")
    return number


#: How ``replay-receipts`` names each outcome (workers.receipt_replay).
_REPLAY_WORDS = {
    "applied": "applied",
    "duplicate": "duplicate",
    "unmatched": "unmatched",
    "failing": "still failing",
    "parsed": "would replay",
}


async def _replay_receipts(args: argparse.Namespace, settings: Settings) -> int:
    from collections import Counter

    from gateway.entry.bootstrap.cli import bootstrap_replay
    from gateway.entry.migrations import upgrade_to_head

    if settings.is_sqlite:
        await upgrade_to_head(settings)
    replay = bootstrap_replay(settings)
    counts: Counter[str] = Counter()
    try:
        try:
            payloads = await replay.receipts.kept(since=args.since, receipt_id=args.receipt_id)
        except Exception as exc:
            print(
                f"messaging-gateway: cannot read webhook_receipts: {type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
            return 1
        if args.receipt_id is not None and not payloads:
            print(
                f"messaging-gateway: no kept webhook payload with id {args.receipt_id}",
                file=sys.stderr,
            )
            return 2
        if not payloads:
            print("nothing to replay: no kept webhook payload is waiting for a replay")
            return 0
        for payload in payloads:
            done = await replay.receipts.replay(payload, dry_run=args.dry_run)
            counts[done.outcome] += 1
            line = (
                f"receipt {payload.id} {payload.source} "
                f"received {payload.received_at.isoformat()}: {_REPLAY_WORDS[done.outcome]}"
            )
            print(f"{line} ({done.detail})" if done.detail else line)
    finally:
        await replay.close()
    order = ["parsed", "failing"] if args.dry_run else list(_REPLAY_WORDS)[:4]
    summary = ", ".join(f"{_REPLAY_WORDS[o]} {counts[o]}" for o in order)
    prefix = "dry run, nothing written" if args.dry_run else f"{len(payloads)} replayed"
    print(f"{prefix}: {summary}")
    return 1 if counts["failing"] or counts["unmatched"] else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="messaging-gateway", description="GraphQL messaging gateway (SMS, MMS, e-mail)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API (and, in embedded mode, the worker)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--workers", type=int, default=1, help="API processes (needs REDIS_URL above 1)"
    )
    sub.add_parser("worker", help="run a delivery worker (needs REDIS_URL)")
    sub.add_parser("migrate", help="upgrade the database schema to the latest migration")
    create = sub.add_parser("create-api-key", help="create an API key (printed once)")
    create.add_argument("--account", required=True, help="account name (created if new)")
    sub.add_parser("list-api-keys", help="list API keys (prefix only)")
    revoke = sub.add_parser("revoke-api-key", help="revoke the API key with this prefix")
    revoke.add_argument("prefix")
    address = sub.add_parser(
        "add-address", help="give a sender number or e-mail address to an account"
    )
    address.add_argument("--account", required=True, help="account name (created if new)")
    address.add_argument(
        "--rate",
        type=float,
        default=None,
        help="segments per second this sender may send (an e-mail address: its domain's rate); "
        "unset: the default of its kind",
    )
    address.add_argument("address")
    replay = sub.add_parser(
        "replay-receipts",
        help="apply again the provider webhook payloads kept in webhook_receipts",
    )
    replay.add_argument(
        "--since",
        type=_iso_time,
        metavar="TIME",
        help="only payloads received at TIME or later (ISO 8601; without an offset: UTC)",
    )
    replay.add_argument(
        "--id",
        type=_receipt_id,
        dest="receipt_id",
        metavar="ID",
        help="only the payload kept with this id, even if it was replayed before",
    )
    replay.add_argument(
        "--dry-run", action="store_true", help="parse and report each payload, write nothing"
    )
    sandbox = sub.add_parser("sandbox", help="run the Twilio/SendGrid/Mailgun stand-in alone")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8090)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    from gateway.observability import configure_logging

    # The replay's report is its standard output; its log lines go beside it, not into it.
    report = args.command == "replay-receipts"
    configure_logging(
        level=settings.log_level, json=settings.log_json, stream=sys.stderr if report else None
    )
    problem = production_problem(args.command, settings)
    if problem is not None:
        print(f"messaging-gateway: {problem}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return _serve(args, settings)
    if args.command == "worker":
        return _worker(args, settings)
    if args.command == "migrate":
        return _migrate(args, settings)
    if args.command == "sandbox":
        return _sandbox(args, settings)
    if args.command == "replay-receipts":
        return asyncio.run(_replay_receipts(args, settings))
    action = {
        "create-api-key": "create",
        "list-api-keys": "list",
        "revoke-api-key": "revoke",
        "add-address": "add-address",
    }
    return asyncio.run(_account_command(settings, action[args.command], args))


if __name__ == "__main__":
    raise SystemExit(main())
