"""`tenderhall draw verify`: recompute a draw from its published record and say whether it matches.

Three sources, one check (draw_verify.check_published): this server's own database (the
default), a running server's public API (`--server`, what an outsider does), or a saved record
file (`--record`, offline: the record and the tree head's signature, not the log entries).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from evaluation.draw_record import Verification, verify_record
from evaluation.draw_verify import check_published
from tenderhall.log import TreeHead
from tenderhall.platform_key import load_public_pem


def _print(result: Verification, what: str) -> int:
    if result.ok:
        print(f"draw {what}: verified — the recomputed result matches the published one")
        return 0
    print(f"draw {what}: NOT verified", file=sys.stderr)
    for problem in result.problems:
        print(f"  - {problem}", file=sys.stderr)
    return 1


def _from_database(args: argparse.Namespace, draw_id: uuid.UUID) -> int:
    from evaluation.draw_verify import verify_draw
    from tenderhall.cli import _settings, _with_connection
    from tenderhall.platform_key import load_or_create

    settings = _settings(args)
    public = load_or_create(settings.platform_key_path).public

    async def work(conn: Any, dsn: str) -> Verification | None:
        return await verify_draw(conn, draw_id, public)

    result = asyncio.run(_with_connection(settings, work))
    if result is None:
        print(f"tenderhall: no drawn draw has id {draw_id}", file=sys.stderr)
        return 1
    return _print(result, str(draw_id))


def _from_server(args: argparse.Namespace, draw_id: uuid.UUID) -> int:
    import httpx

    with httpx.Client(base_url=args.server.rstrip("/"), timeout=30.0) as client:
        def get(path: str) -> Any:
            response = client.get(path)
            if response.status_code != 200:
                raise RuntimeError(f"GET {path} answered {response.status_code}")
            return response.json()

        record = get(f"/api/draws/{draw_id}/record")
        entries = [json.loads(get(f"/api/log/entries/{record[k]}")["canonical"])
                   for k in ("scheduled_log_index", "drawn_log_index")]
        pem = Path(args.public_key).read_bytes() if args.public_key else get("/.well-known/tenderhall-log-key")["public_key_pem"]
    return _print(check_published(record, entries[0], entries[1], load_public_pem(pem)), str(draw_id))


def _from_file(args: argparse.Namespace) -> int:
    record = json.loads(Path(args.record).read_text("utf-8"))
    problems = list(verify_record(record).problems)
    if args.public_key:
        try:
            head = TreeHead.from_json(record.get("tree_head") or {})
            if not head.verify(load_public_pem(Path(args.public_key).read_bytes())):
                problems.append("the tree head is not signed by this log key")
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"the tree head is malformed: {exc}")
    else:
        print("note: no --public-key: the tree head's signature is not checked", file=sys.stderr)
    print("note: offline check; the log entries are checked with --server or on the server itself", file=sys.stderr)
    return _print(Verification(not problems, tuple(problems)), str(record.get("draw", args.record)))


def cmd_draw_verify(args: argparse.Namespace) -> int:
    if args.record:
        return _from_file(args)
    if not args.draw_id:
        print("tenderhall: give a DRAW_ID (or --record FILE)", file=sys.stderr)
        return 2
    try:
        draw_id = uuid.UUID(args.draw_id)
    except ValueError:
        print(f"tenderhall: {args.draw_id!r} is not a draw id", file=sys.stderr)
        return 2
    return _from_server(args, draw_id) if args.server else _from_database(args, draw_id)


def add_commands(subparsers: Any) -> None:
    from tenderhall.cli import _add_server_options

    draw = subparsers.add_parser("draw", help="expert and intermediary draws")
    draw_sub = draw.add_subparsers(dest="draw_command", required=True, metavar="ACTION")
    verify = draw_sub.add_parser("verify", help="recompute a draw from its published record and check it against the log")
    verify.add_argument("draw_id", nargs="?", help="the draw's id")
    verify.add_argument("--server", help="check through this server's public API (e.g. https://centre.example) "
                        "instead of the local database")
    verify.add_argument("--record", help="check a saved record file offline (from /api/draws/ID/record)")
    verify.add_argument("--public-key", help="PEM file of the platform's log key (from /.well-known/tenderhall-log-key)")
    _add_server_options(verify)
    verify.set_defaults(func=cmd_draw_verify)
