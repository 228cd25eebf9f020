"""An insider with the whole database and disk learns nothing of a sealed bid before the opening.

After several bids, dump every column of every row of every table and read every file under
the data directory (storage, the platform key) and the database's own files; none holds a
summary marker, the price, file plaintext or a content key; no private key on the server opens
a wrap (there is none); no 32-byte value scraped from anywhere decrypts a bid's first chunk.
Only the bidder's own key file opens its bid.
"""

from __future__ import annotations

import base64
import io
import re
import struct
from pathlib import Path
from typing import Any, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from starlette.testclient import TestClient

from tenderhall.canonical import b64url
from tenderhall.keyfile import decrypt_keyfile, encrypt_keyfile
from tenderhall.settings import Settings
from tests.factories import login, make_user, run_db
from tests.integration.test_submission import (
    SUMMARY, World, credit_code_of, make_world, register_keys, submit,
)
from trading import bid_format, key_wrap, seal_errors, sealing
from trading.manifest import validate_manifest

MARKERS = [b"MARKER-QUALITY", "合格-7f3a".encode(), b"98765432.10", b"MARKER-FILE-PLAINTEXT", b"MARKER-SECOND"]


async def _dump(conn: Any) -> str:
    tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
    lines = []
    for t in tables:
        # Every column of every row, as PostgreSQL's own text form (bytea as \x hex).
        rows = await conn.fetch(f'SELECT t::text AS row FROM "{t["tablename"]}" t')
        lines += [f"{t['tablename']}: {r['row']}" for r in rows]
    return "\n".join(lines)


def _files(*roots: Path) -> Iterator[tuple[Path, bytes]]:
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                try:
                    yield path, path.read_bytes()
                except (PermissionError, FileNotFoundError):
                    continue


def _decodings(text: str) -> Iterator[bytes]:
    """Every hex and base64/base64url token of a text, decoded."""
    for token in re.findall(r"[0-9a-fA-F]{64,}", text):
        yield bytes.fromhex(token[: len(token) // 2 * 2])
    for token in re.findall(r"[A-Za-z0-9_\-+/]{43,}", text):
        for decode in (base64.urlsafe_b64decode, base64.b64decode):
            try:
                yield decode(token + "=" * (-len(token) % 4))
            except ValueError:
                pass


def _windows(data: bytes) -> Iterator[bytes]:
    for i in range(0, max(0, len(data) - 31)):
        yield data[i:i + 32]


def _first_chunk_opens(key: bytes, manifest: dict[str, Any], blob: bytes) -> bool:
    n = max(1, -(-manifest["ciphertext"]["size"] // (bid_format.CHUNK_SIZE + bid_format.TAG_SIZE)))
    first = blob[: bid_format.CHUNK_SIZE + bid_format.TAG_SIZE]
    aad = bid_format.CHUNK_AAD_PREFIX + struct.pack(">Q", 0) + (b"\x01" if n == 1 else b"\x00")
    try:
        AESGCM(key).decrypt(b"\x00" * 4 + struct.pack(">Q", 0), first, aad)
    except InvalidTag:
        return False
    return True


def test_insider_with_database_and_disk_cannot_open_bids(client: TestClient, database_url: str,
                                                         settings: Settings, tmp_path: Path) -> None:
    world = make_world(client, database_url)
    second = make_user(database_url, "bidder")
    second_keys = register_keys(client, second)
    world2 = World(database_url, world.agent, second, second_keys, world.custodian_keys, world.tender,
                   credit_code_of(database_url, second.organisation_id))
    login(client, world.bidder)
    bids = [submit(client, world, lot="L1", files=[("标书.txt", b"MARKER-FILE-PLAINTEXT one")]),
            submit(client, world, lot="L2", files=[("b.txt", b"MARKER-FILE-PLAINTEXT two")])]
    login(client, second)
    bids.append(submit(client, world2, summary={**SUMMARY, "quality": "MARKER-SECOND"},
                       files=[("c.txt", b"MARKER-FILE-PLAINTEXT three")]))
    owners = [world.bidder_keys, world.bidder_keys, second_keys]
    content_keys = [key_wrap.unwrap_bidder_key(b["sealed"].manifest["bidder_wrap"]["enc"], k.decrypt)
                    for b, k in zip(bids, owners)]

    # --- everything the insider can read
    dump = run_db(database_url, _dump)
    pgdata = Path(run_db(database_url, lambda c: c.fetchval("SHOW data_directory")))
    run_db(database_url, lambda c: c.execute("CHECKPOINT"))  # what is in memory reaches the files
    disk = list(_files(settings.data_dir))
    assert any(p.name == settings.platform_key_path.name for p, _ in disk)
    assert any(p.suffix == ".bin" for p, _ in disk)
    dump_bytes = dump.encode()

    secrets = MARKERS + [k for k in content_keys] + [k.hex().encode() for k in content_keys] + \
              [b64url(k).encode() for k in content_keys] + [base64.b64encode(k) for k in content_keys]
    for secret in secrets:
        assert secret not in dump_bytes
        for path, data in disk:
            assert secret not in data, path
    for path, data in _files(pgdata):  # the database's own files, WAL included
        for marker in MARKERS:
            assert marker not in data, path
        for key in content_keys:
            assert key not in data, path

    # --- no private key on the server side can unwrap anything
    private_keys = []
    blobs = [data for _, data in disk] + list(_decodings(dump))
    for data in blobs:
        for pem in re.findall(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----.+?-----END [A-Z ]*PRIVATE KEY-----", data, re.S):
            private_keys.append(serialization.load_pem_private_key(pem, password=None))
        try:
            private_keys.append(serialization.load_der_private_key(data, password=None))
        except (ValueError, TypeError):
            pass
    ec_keys = [k for k in private_keys if isinstance(k, ec.EllipticCurvePrivateKey)]
    assert private_keys, "the platform's own (Ed25519) key should have been found"
    assert ec_keys == []  # nothing that could open an HPKE wrap exists on the server
    for key in ec_keys:  # kept for clarity should the assertion above ever be relaxed
        for b in bids:
            try:
                key_wrap.unwrap_bidder_key(b["sealed"].manifest["bidder_wrap"]["enc"], key)
                raise AssertionError("a server-side key opened a bid")
            except seal_errors.WrapInvalid:
                pass

    # --- no 32-byte value scraped from the database or the disk decrypts a first chunk
    candidates: set[bytes] = set()
    for data in [dump_bytes, *blobs]:
        candidates.update(_windows(data))
    for decoded in _decodings(dump + "\n".join(d.decode("latin-1") for _, d in disk)):
        candidates.update(_windows(decoded))
    assert len(candidates) > 1000
    stored = {p.stem: data for p, data in disk if p.suffix == ".bin"}
    for b in bids:
        blob = stored[b["upload_id"]]
        assert blob == b["blob"]
        assert not any(_first_chunk_opens(c, b["sealed"].manifest, blob) for c in candidates)
    assert _first_chunk_opens(content_keys[0], bids[0]["sealed"].manifest, stored[bids[0]["upload_id"]])

    # --- only the bidder's key file opens its bid
    keyfile = tmp_path / "bidder.keys"  # on the bidder's machine, not the server's
    keyfile.write_bytes(encrypt_keyfile("organisation", world.bidder_keys.sign, world.bidder_keys.decrypt,
                                        "a long passphrase", iterations=1000))
    opened_keys = decrypt_keyfile(keyfile.read_bytes(), "a long passphrase")
    manifest = bids[0]["sealed"].manifest
    k = key_wrap.unwrap_bidder_key(manifest["bidder_wrap"]["enc"], opened_keys.decrypt)
    opened = sealing.open_bid(io.BytesIO(stored[bids[0]["upload_id"]]), k, validate_manifest(manifest))
    assert opened.summary == SUMMARY
    try:
        key_wrap.unwrap_bidder_key(bids[2]["sealed"].manifest["bidder_wrap"]["enc"], opened_keys.decrypt)
        raise AssertionError("one bidder's key opened another's bid")
    except seal_errors.WrapInvalid:
        pass
