"""Server-side open-and-verify throughput of a sealed bid against raw AES-256-GCM + SHA-256.

Both runs read the same ciphertext bytes from memory in the same process: the baseline
decrypts every chunk with AES-256-GCM and hashes the ciphertext with SHA-256, nothing
else; the measured run is `trading.sealing.open_bid` (chunk framing, container parsing,
per-file hashes, digest and size checks). Prints `open_verify_ratio: X` (goal >= 0.8).

    python bench/sealing.py [--mib 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from trading import bid_format, sealing  # noqa: E402
from trading.manifest import Manifest, validate_manifest  # noqa: E402


def seal(mib: int) -> tuple[bytes, bytes, Manifest]:
    signing, decrypting = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    key = os.urandom(32)
    out = io.BytesIO()
    sealed = sealing.seal_bid(
        summary={"price": "12345678.90", "duration_days": 365, "quality": "合格"},
        files=[("technical.pdf", os.urandom(mib * 2**20))],
        tender=str(uuid.uuid4()), lot="L1", organisation="91350100M000100Y43", upload_id=str(uuid.uuid4()),
        client_time="2026-11-21T00:00:00Z", signing_key=signing, bidder_public_key=decrypting.public_key(),
        custodian_keys=[], threshold=0, out=out, content_key=key,
    )
    return out.getvalue(), key, validate_manifest(sealed.manifest)


def baseline(ciphertext: bytes, key: bytes) -> None:
    """Raw AES-256-GCM over the same chunks plus SHA-256 of the ciphertext: the floor."""
    aead, digest, view = AESGCM(key), hashlib.sha256(), memoryview(ciphertext)
    step = bid_format.CHUNK_SIZE + 16
    count = (len(ciphertext) + step - 1) // step
    for i in range(count):
        chunk = view[i * step:(i + 1) * step]
        digest.update(chunk)
        aead.decrypt(bid_format.chunk_nonce(i), chunk, bid_format.chunk_aad(i, i == count - 1))
    digest.hexdigest()


def measured(ciphertext: bytes, key: bytes, manifest: Manifest) -> None:
    sealing.open_bid(io.BytesIO(ciphertext), key, manifest)


def best_of(rounds: int, fn, *args) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="size of the bid's file in MiB")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each; the best counts")
    args = parser.parse_args()
    ciphertext, key, manifest = seal(args.mib)
    base = best_of(args.rounds, baseline, ciphertext, key)
    ours = best_of(args.rounds, measured, ciphertext, key, manifest)
    mib = len(ciphertext) / 2**20
    print(f"baseline_mib_per_s: {mib / base:.0f} (AES-256-GCM + SHA-256, same bytes)")
    print(f"open_verify_mib_per_s: {mib / ours:.0f}")
    print(f"open_verify_ratio: {base / ours:.2f} (goal >= 0.8)")


if __name__ == "__main__":
    main()
