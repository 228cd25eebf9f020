"""The bidder's command-line client: `keys generate|register`, `bid seal|submit|status`.

Sealing happens on the bidder's machine with trading.sealing; the server only ever sees the
ciphertext, the signed manifest and public keys. `bid submit` uploads with the tus 1.0
protocol in 8 MiB PATCHes, each with an Upload-Checksum, resumes after a dropped connection
by asking the offset with HEAD, and verifies the platform-signed receipt before printing it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

import httpx

from tenderhall import keyfile
from tenderhall.platform_key import load_public_pem
from trading import receipts, sealing
from trading.seal_errors import SealError
from trading.tenders import TenderInvalid, check_summary

PATCH_BYTES = 8 << 20
SEALED_NAME = "bid.sealed"
MANIFEST_NAME = "manifest.json"
RECEIPT_NAME = "receipt.json"
PASSPHRASE_ENV = "TENDERHALL_KEY_PASSPHRASE"
PASSWORD_ENV = "TENDERHALL_PASSWORD"


class CliError(Exception):
    """A failure to report on one line to stderr with a non-zero exit code."""


# ---------------------------------------------------------------------------- helpers


def _secret(path: str | None, env: str, what: str) -> str:
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise CliError(f"cannot read the {what} file: {exc}") from None
    value = os.environ.get(env)
    if not value:
        raise CliError(f"give the {what} with --{what}-file or ${env}")
    return value


def _load_keys(args: argparse.Namespace) -> keyfile.KeyPairs:
    try:
        data = Path(args.keys).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read the key file: {exc}") from None
    try:
        return keyfile.decrypt_keyfile(data, _secret(args.passphrase_file, PASSPHRASE_ENV, "passphrase"))
    except keyfile.WrongPassphrase:
        raise CliError("wrong passphrase for the key file") from None
    except keyfile.KeyFileError as exc:
        raise CliError(f"bad key file: {exc}") from None


def _error_text(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{error['message']} ({error['code']}, HTTP {response.status_code})"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"


def _client(server: str) -> httpx.Client:
    return httpx.Client(base_url=server.rstrip("/"), timeout=httpx.Timeout(60.0, connect=10.0))


def _login(client: httpx.Client, args: argparse.Namespace) -> None:
    password = _secret(args.password_file, PASSWORD_ENV, "password")
    response = client.post("/api/session", json={"username": args.username, "password": password})
    if response.status_code != 200:
        raise CliError(f"login failed: {_error_text(response)}")
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]


def _platform_key(client: httpx.Client) -> Any:
    response = client.get("/.well-known/tenderhall-log-key")
    if response.status_code != 200:
        raise CliError(f"cannot fetch the platform key: {_error_text(response)}")
    return load_public_pem(response.json()["public_key_pem"])


def _tender_location(args: argparse.Namespace) -> tuple[str, str]:
    """(server, tender id) from --tender-url, or from --server and --tender."""
    if args.tender_url:
        parts = urlsplit(args.tender_url)
        segments = [s for s in parts.path.split("/") if s]
        if not parts.scheme or "tenders" not in segments or segments.index("tenders") + 1 >= len(segments):
            raise CliError("--tender-url must look like https://host/tenders/<id> or https://host/api/tenders/<id>")
        return f"{parts.scheme}://{parts.netloc}", segments[segments.index("tenders") + 1]
    if not (args.server and args.tender):
        raise CliError("give --tender-url, or --server and --tender")
    return args.server, args.tender


# ---------------------------------------------------------------------------- keys


def cmd_keys_generate(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists():
        raise CliError(f"{out} exists; choose another path (keys are never overwritten)")
    passphrase = _secret(args.passphrase_file, PASSPHRASE_ENV, "passphrase")
    if len(passphrase) < 12:
        raise CliError("the passphrase must have at least 12 characters")
    sign, decrypt = keyfile.generate_keys()
    data = keyfile.encrypt_keyfile(args.owner, sign, decrypt, passphrase, iterations=args.iterations)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    print(f"key file: {out}")
    print(f"signing key id:    {keyfile.key_id(sign.public_key())}")
    print(f"decryption key id: {keyfile.key_id(decrypt.public_key())}")
    return 0


def cmd_keys_register(args: argparse.Namespace) -> int:
    keys = _load_keys(args)
    with _client(args.server) as client:
        _login(client, args)
        response = client.post("/api/keys", json={"sign_spki": keyfile.public_key_spki_b64url(keys.sign),
                                                  "decrypt_spki": keyfile.public_key_spki_b64url(keys.decrypt)})
    if response.status_code != 201:
        raise CliError(f"registration refused: {_error_text(response)}")
    key_set = response.json()["key_set"]
    print(f"registered key set {key_set['id']} (log index {response.json().get('log_index')})")
    return 0


# ---------------------------------------------------------------------------- bid seal


def cmd_bid_seal(args: argparse.Namespace) -> int:
    server, tender_id = _tender_location(args)
    keys = _load_keys(args)
    organisation = args.organisation or keys.owner
    try:
        summary_raw = json.loads(Path(args.summary).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read the summary JSON: {exc}") from None
    if not isinstance(summary_raw, dict):
        raise CliError("the summary file must hold a JSON object")
    with _client(server) as client:
        response = client.get(f"/api/tenders/{tender_id}")
    if response.status_code != 200:
        raise CliError(f"cannot fetch the tender: {_error_text(response)}")
    tender = response.json()["tender"]
    if args.lot not in [lot["code"] for lot in tender["lots"]]:
        raise CliError(f"the tender has no lot {args.lot!r}; lots: {', '.join(l['code'] for l in tender['lots'])}")
    try:
        summary = check_summary(summary_raw, tender["summary_fields"])
    except TenderInvalid as exc:
        raise CliError(f"summary: {exc.message}") from None
    custodian_keys = [keyfile.load_public_key_spki_b64url(c["decrypt_spki"]) for c in tender["custodians"]]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    sealed_path = out_dir / SEALED_NAME
    handles = []
    try:
        for name in args.file:
            path = Path(name)
            handles.append((path.name, path.open("rb")))
        with sealed_path.open("wb") as out:
            sealed = sealing.seal_bid(
                summary=summary, files=handles, tender=tender["id"], lot=args.lot, organisation=organisation,
                upload_id=str(uuid.uuid4()), client_time=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                signing_key=keys.sign, bidder_public_key=keys.decrypt.public_key(), custodian_keys=custodian_keys,
                threshold=tender["threshold"], out=out)
    except OSError as exc:
        raise CliError(f"cannot read a file: {exc}") from None
    except SealError as exc:
        raise CliError(f"cannot seal: {exc}") from None
    finally:
        for _, handle in handles:
            handle.close()
    (out_dir / MANIFEST_NAME).write_text(json.dumps({
        "server": server, "tender": tender["id"], "lot": args.lot, **sealed.submission()}, indent=2), encoding="utf-8")
    print(f"sealed {sealed.manifest['ciphertext']['size']} bytes into {sealed_path}")
    print(f"manifest: {out_dir / MANIFEST_NAME}")
    return 0


# ---------------------------------------------------------------------------- bid submit


def _head_offset(client: httpx.Client, location: str) -> int:
    response = client.head(location, headers={"Tus-Resumable": "1.0.0"})
    if response.status_code != 200:
        raise CliError(f"cannot resume: {_error_text(response)}")
    return int(response.headers["Upload-Offset"])


def upload_file(client: httpx.Client, location: str, path: Path, length: int, *, retries: int = 10,
                progress: Callable[[int, int], None] | None = None, chunk_bytes: int = PATCH_BYTES,
                backoff: float = 0.5) -> dict[str, Any]:
    """PATCH `path` to `location` from the server's offset on; return the completing JSON (bid, receipt).

    Retries dropped connections, 5xx, 460 and offset mismatches (asking HEAD each time) up to
    `retries` times in a row; raises CliError for anything else.
    """
    offset = _head_offset(client, location)
    failures = 0
    with path.open("rb") as f:
        while True:
            f.seek(offset)
            body = f.read(min(chunk_bytes, length - offset))
            headers = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream",
                       "Upload-Offset": str(offset),
                       "Upload-Checksum": "sha256 " + base64.b64encode(hashlib.sha256(body).digest()).decode()}
            try:
                response = client.patch(location, content=body, headers=headers)
            except httpx.TransportError as exc:
                response, reason = None, str(exc) or type(exc).__name__
            if response is not None and response.status_code in (200, 204):
                offset = int(response.headers["Upload-Offset"])
                failures = 0
                if progress:
                    progress(offset, length)
                if response.status_code == 200:
                    return response.json()
                continue
            if response is not None:
                reason = _error_text(response)
                code = response.json().get("error", {}).get("code") if response.headers.get(
                    "content-type", "").startswith("application/json") else None
                if not (response.status_code >= 500 or response.status_code == 460 or code == "offset_mismatch"):
                    raise CliError(f"upload refused: {reason}")
            failures += 1
            if failures > retries:
                raise CliError(f"upload failed after {retries} retries: {reason}")
            print(f"connection problem ({reason}); resuming", file=sys.stderr)
            time.sleep(min(backoff * 2 ** (failures - 1), 30))  # back off before asking the server again
            offset = _head_offset(client, location)


def cmd_bid_submit(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    try:
        saved = json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {directory / MANIFEST_NAME}: {exc}") from None
    sealed_path = directory / SEALED_NAME
    manifest = saved["manifest"]
    length = manifest["ciphertext"]["size"]
    if not sealed_path.exists() or sealed_path.stat().st_size != length:
        raise CliError(f"{sealed_path} is missing or not {length} bytes")
    server = args.server or saved["server"]
    with _client(server) as client:
        _login(client, args)
        location = f"/api/uploads/{manifest['upload_id']}"
        response = client.post(f"/api/tenders/{saved['tender']}/lots/{saved['lot']}/uploads",
                               json={"manifest": manifest, "signature": saved["signature"]},
                               headers={"Tus-Resumable": "1.0.0"})
        if response.status_code == 409 and response.json()["error"]["code"] == "replayed_manifest":
            print("this bid was already started; resuming", file=sys.stderr)
        elif response.status_code != 201:
            raise CliError(f"submission refused: {_error_text(response)}")
        status = client.get(location)
        if status.status_code == 200 and status.json()["status"] == "complete":
            result = {"bid": status.json()["bid"], "receipt": status.json()["receipt"]}
        else:
            result = upload_file(client, location, sealed_path, length, retries=args.retries,
                                 progress=None if args.quiet else _print_progress)
        receipt = result["receipt"]
        try:
            receipts.verify_receipt(receipt, _platform_key(client))
        except receipts.ReceiptInvalid as exc:
            raise CliError(f"the server's receipt does NOT verify: {exc}") from None
    if receipt["ciphertext_sha256"] != manifest["ciphertext"]["sha256"]:
        raise CliError("the receipt names another ciphertext digest than the one sealed")
    receipt_path = directory / RECEIPT_NAME
    receipt_path.write_text(json.dumps(receipt, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"bid: {result['bid']}")
    print(f"log index: {receipt['log_index']}")
    print(f"receipt: {receipt_path} (verified)")
    return 0


def _print_progress(done: int, total: int) -> None:
    print(f"\r{done}/{total} bytes ({done * 100 // max(total, 1)}%)", end="\n" if done == total else "",
          file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- bid status


def cmd_bid_status(args: argparse.Namespace) -> int:
    with _client(args.server) as client:
        _login(client, args)
        response = client.get("/api/bids", params={"tender": args.tender} if args.tender else None)
        if response.status_code != 200:
            raise CliError(f"cannot list bids: {_error_text(response)}")
        key = _platform_key(client)
        bad = 0
        for bid in response.json()["bids"]:
            receipt = client.get(f"/api/bids/{bid['id']}/receipt").json()
            try:
                receipts.verify_receipt(receipt, key)
                check = "receipt verified"
            except receipts.ReceiptInvalid as exc:
                check, bad = f"RECEIPT INVALID: {exc}", bad + 1
            flag = " (needs re-confirmation)" if bid["needs_confirmation"] else ""
            print(f"{bid['id']}  lot {bid['lot']}  {bid['status']}{flag}  received {bid['received_at']}  "
                  f"log index {bid['log_index']}  {check}")
    return 1 if bad else 0


# ---------------------------------------------------------------------------- wiring


def _guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except CliError as exc:
            print(f"tenderhall: {exc}", file=sys.stderr)
            return 2
        except httpx.HTTPError as exc:
            print(f"tenderhall: cannot reach the server: {exc}", file=sys.stderr)
            return 3

    return run


def _login_options(parser: argparse.ArgumentParser, server_required: bool = True) -> None:
    parser.add_argument("--server", required=server_required, help="the platform's address, e.g. https://ggzy.example.cn")
    parser.add_argument("--username", required=True, help="your login name")
    parser.add_argument("--password-file", help=f"file holding your password (else ${PASSWORD_ENV})")


def _keyfile_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keys", required=True, help="your passphrase-protected key file (tenderhall-keys/1)")
    parser.add_argument("--passphrase-file", help=f"file holding the key file's passphrase (else ${PASSPHRASE_ENV})")


def add_commands(subparsers: Any) -> None:
    """Add `keys` and `bid` with their actions to an argparse subparsers object."""
    keys = subparsers.add_parser("keys", help="make and register your organisation's key pairs (bidders, custodians)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    generate = keys_sub.add_parser("generate", help="generate signing and decryption keys into a passphrase-protected file")
    generate.add_argument("--owner", required=True, help="whose keys: your organisation's credit code (or a label)")
    generate.add_argument("--out", required=True, help="path of the new key file (never overwritten)")
    generate.add_argument("--passphrase-file", help=f"file holding the new passphrase (else ${PASSPHRASE_ENV})")
    generate.add_argument("--iterations", type=int, default=keyfile.DEFAULT_ITERATIONS,
                          help="PBKDF2 iterations (default %(default)s)")
    generate.set_defaults(func=_guarded(cmd_keys_generate))
    register = keys_sub.add_parser("register", help="register the public half of a key file with the platform")
    _login_options(register)
    _keyfile_options(register)
    register.set_defaults(func=_guarded(cmd_keys_register))

    bid = subparsers.add_parser("bid", help="seal, submit and check sealed bids")
    bid_sub = bid.add_subparsers(dest="bid_command", required=True, metavar="ACTION")
    seal = bid_sub.add_parser("seal", help="encrypt and sign a bid on this machine")
    seal.add_argument("--tender-url", help="the tender's page or API address (instead of --server and --tender)")
    seal.add_argument("--server", help="the platform's address")
    seal.add_argument("--tender", help="the tender id")
    seal.add_argument("--lot", required=True, help="the lot code, e.g. L1")
    seal.add_argument("--summary", required=True, help="JSON file with the opening summary, e.g. {\"price\": \"123.45\"}")
    seal.add_argument("--file", action="append", required=True, help="a bid document (repeatable)")
    seal.add_argument("--organisation", help="your organisation's credit code (default: the key file's owner)")
    _keyfile_options(seal)
    seal.add_argument("--out", required=True, help=f"directory for {SEALED_NAME} and {MANIFEST_NAME}")
    seal.set_defaults(func=_guarded(cmd_bid_seal))
    submit = bid_sub.add_parser("submit", help="upload a sealed bid (resumable) and verify its receipt")
    _login_options(submit, server_required=False)
    submit.add_argument("--dir", required=True, help="the directory `bid seal` wrote")
    submit.add_argument("--retries", type=int, default=10, help="retries after a dropped connection (default %(default)s)")
    submit.add_argument("--quiet", action="store_true", help="no progress output")
    submit.set_defaults(func=_guarded(cmd_bid_submit))
    status = bid_sub.add_parser("status", help="list your organisation's bids and re-verify their receipts")
    _login_options(status)
    status.add_argument("--tender", help="only this tender's bids")
    status.set_defaults(func=_guarded(cmd_bid_status))


def main(argv: Sequence[str] | None = None) -> int:
    """Run these commands on their own (tests, or without the rest of the `tenderhall` command)."""
    parser = argparse.ArgumentParser(prog="tenderhall")
    add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
