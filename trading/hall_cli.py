"""`tenderhall hall decrypt|release`: a bidder's and a custodian's part of the opening, from the command line.

For a bidder whose browser cannot be used (or a custodian who keeps its keys offline): the
key file is opened on this machine, the content key (or the custodian's share) is unwrapped
and checked here, and only that value goes to the server over the authenticated session,
as the hall page does.
"""

from __future__ import annotations

import argparse
from typing import Any

from tenderhall.canonical import b64url
from trading import key_wrap
from trading.cli import CliError, _client, _error_text, _guarded, _keyfile_options, _load_keys, _login, _login_options
from trading.manifest import validate_manifest
from trading.seal_errors import SealError
from trading.sealing import check_content_key


def _hall_at(client: Any, args: argparse.Namespace, step: str, refusal: str) -> dict[str, Any]:
    """Log in and read the hall; CliError unless the opening is at `step`."""
    _login(client, args)
    response = client.get(f"/api/tenders/{args.tender}/hall")
    if response.status_code != 200:
        raise CliError(f"cannot read the hall: {_error_text(response)}")
    hall = response.json()["hall"]
    if hall["step"] != step:
        raise CliError(f"the opening is at step {hall['step']!r}; {refusal}")
    return hall


def cmd_hall_decrypt(args: argparse.Namespace) -> int:
    keys = _load_keys(args)
    with _client(args.server) as client:
        hall = _hall_at(client, args, "decryption", "decryption is not open")
        mine = [b for b in hall["bids"] if b["mine"] and b["status"] == "listed"]
        if not mine:
            raise CliError("your organisation has no bid waiting for decryption in this opening")
        failed = 0
        for bid in mine:
            manifest = validate_manifest(bid["manifest"])
            try:
                key = key_wrap.unwrap_bidder_key(manifest.bidder_wrap.enc, keys.decrypt)
                check_content_key(manifest, key)
            except SealError as exc:
                print(f"{bid['bid_id']}  lot {bid['lot']}  cannot unwrap with this key file: {exc}")
                failed += 1
                continue
            response = client.post(f"/api/tenders/{args.tender}/hall/decrypt",
                                   json={"bid_id": bid["bid_id"], "content_key": b64url(key)})
            if response.status_code == 200:
                print(f"{bid['bid_id']}  lot {bid['lot']}  decrypted and verified by the server")
            else:
                print(f"{bid['bid_id']}  lot {bid['lot']}  refused: {_error_text(response)}")
                failed += 1
    return 1 if failed else 0


def cmd_hall_release(args: argparse.Namespace) -> int:
    keys = _load_keys(args)
    with _client(args.server) as client:
        hall = _hall_at(client, args, "custodians", "no shares are wanted now")
        waiting = [b for b in hall["bids"] if b.get("share_enc")]
        if not waiting:
            raise CliError("no bid is waiting for your share (already released, or you are not a custodian here)")
        shares = []
        for bid in waiting:
            try:
                share = key_wrap.unwrap_share(bid["share_enc"], keys.decrypt)
            except SealError as exc:
                raise CliError(f"cannot unwrap your share of bid {bid['bid_id']}: {exc}") from None
            shares.append({"bid_id": bid["bid_id"], "share": b64url(share)})
        response = client.post(f"/api/tenders/{args.tender}/hall/shares", json={"shares": shares})
        if response.status_code != 200:
            raise CliError(f"the shares were refused: {_error_text(response)}")
        result = response.json()
        print(f"released {result['released']} share(s); {result['opened']} bid(s) opened now")
    return 0


def add_commands(subparsers: Any) -> None:
    """Add `hall decrypt` and `hall release`."""
    hall = subparsers.add_parser("hall", help="take part in an opening: decrypt your bid, or release custodian shares")
    hall_sub = hall.add_subparsers(dest="hall_command", required=True, metavar="ACTION")
    decrypt = hall_sub.add_parser("decrypt", help="bidder: decrypt your bids in the decryption window")
    release = hall_sub.add_parser("release", help="custodian: release your shares of the bids waiting for custodians")
    for parser, func in ((decrypt, cmd_hall_decrypt), (release, cmd_hall_release)):
        _login_options(parser)
        parser.add_argument("--tender", required=True, help="the tender id")
        _keyfile_options(parser)
        parser.set_defaults(func=_guarded(func))
