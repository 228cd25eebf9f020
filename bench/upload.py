"""Upload throughput and server memory of one large sealed bid against a discard endpoint, over loopback.

One real server (bench/_server.py: the app under uvicorn) serves both runs in the same
process. A bidder seals a bid of --mib MiB (plaintext written from os.urandom in 1 MiB
chunks to disk, sealed file to file: client memory flat) and sends the ciphertext in one
streaming PATCH (httpx, 1 MiB file reads, Content-Length) to /api/uploads/{id}: the
measured run, which ends with the bid recorded and its receipt returned. The baseline
streams the same ciphertext bytes the same way to `PATCH /bench/discard`, a plain route
that reads the body and drops it; it runs before and after the upload and the faster run
counts. Prints:

    upload_ratio: X            upload throughput / discard throughput (goal >= 0.5)
    upload_mib_per_s: X
    discard_mib_per_s: X
    disk_durable_mib_per_s: X  the same bytes copied on the same disk with fdatasync every 32 MiB
    upload_vs_disk_ratio: X    upload throughput / that durable-copy throughput
    upload_rss_growth_mib: X   peak server RSS (sampled every 50 ms) during the PATCH minus RSS just before (goal < 64)
    upload_receipt_valid: true/false

    python bench/upload.py [--mib 2048]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from bench._harness import (  # noqa: E402
    BenchError, Harness, RssSampler, api_error_code, file_body, patch_headers, seal_to_file, verify_receipt,
)

CHUNK = 1 << 20
TIMEOUT = httpx.Timeout(connect=15.0, read=600.0, write=600.0, pool=60.0)


def durable_copy_seconds(source: Path, target: Path) -> float:
    """Seconds to copy the file with an fdatasync every 32 MiB, as the server must: the disk's floor."""
    start = time.perf_counter()
    with source.open("rb") as src, target.open("wb") as dst:
        since_sync = 0
        while block := src.read(4 * CHUNK):
            dst.write(block)
            since_sync += len(block)
            if since_sync >= 32 * CHUNK:
                dst.flush()
                os.fdatasync(dst.fileno())
                since_sync = 0
        dst.flush()
        os.fdatasync(dst.fileno())
    elapsed = time.perf_counter() - start
    target.unlink()
    return elapsed


def write_random(path: Path, mib: int) -> None:
    with path.open("wb") as f:
        for _ in range(mib):
            f.write(os.urandom(CHUNK))


async def discard_run(http: httpx.AsyncClient, path: Path, size: int) -> float:
    """Seconds to stream the file to /bench/discard and get its 204."""
    start = time.perf_counter()
    r = await http.patch("/bench/discard", content=file_body(path), headers=patch_headers(size))
    elapsed = time.perf_counter() - start
    if r.status_code != 204 or r.headers.get("x-bench-received") != str(size):
        raise BenchError(f"discard: HTTP {r.status_code}, received {r.headers.get('x-bench-received')} of {size}")
    return elapsed


async def run(mib: int, keep: bool, tmp_root: str) -> dict[str, str]:
    async with Harness(keep=keep, tmp_root=tmp_root) as h:
        agent = await h.agent()
        custodians = await h.custodians(3)
        (bidder,) = await h.bidders(1, timeout=TIMEOUT)
        tender = await h.publish_tender(agent, custodians, deadline=time.time() + 4 * 3600)

        plain, sealed_path = h.files / "plain.bin", h.files / "sealed.bin"
        started = time.perf_counter()
        await asyncio.to_thread(write_random, plain, mib)
        with plain.open("rb") as source:
            sealed = await asyncio.to_thread(seal_to_file, bidder, tender, [("technical.bin", source)], sealed_path)
        plain.unlink()
        size = sealed.manifest["ciphertext"]["size"]
        if sealed_path.stat().st_size != size:
            raise BenchError(f"sealed file is {sealed_path.stat().st_size} bytes, manifest says {size}")
        h.note(f"sealed {size / 2**20:.0f} MiB in {time.perf_counter() - started:.1f} s")

        http = bidder.session.http
        base_1 = await discard_run(http, sealed_path, size)
        h.note(f"discard run 1: {size / 2**20 / base_1:.0f} MiB/s")

        created = await bidder.session.call("POST", f"/api/tenders/{tender['id']}/lots/L1/uploads",
                                            json=sealed.submission(), headers={"Tus-Resumable": "1.0.0"})
        upload_id = created["upload_id"]
        rss_before = h.server.rss()
        with RssSampler(h.server.rss, 0.05) as sampler:
            start = time.perf_counter()
            r = await http.patch(f"/api/uploads/{upload_id}", content=file_body(sealed_path),
                                 headers=patch_headers(size))
            upload_s = time.perf_counter() - start
        if r.status_code != 200:
            raise BenchError(f"upload PATCH: HTTP {r.status_code} ({api_error_code(r)}) {r.text[:300]}")
        done = r.json()
        h.note(f"upload: {size / 2**20 / upload_s:.0f} MiB/s, {sampler.samples} RSS samples")

        base_2 = await discard_run(http, sealed_path, size)
        h.note(f"discard run 2: {size / 2**20 / base_2:.0f} MiB/s")

        problem = await verify_receipt(h.public, h.platform_key, done.get("receipt"), sealed=sealed, bidder=bidder,
                                       bid_id=done.get("bid"))
        if problem is None:
            # The receipt the bids API keeps must be the one the PATCH answered.
            kept = await bidder.session.call("GET", f"/api/bids/{done['bid']}/receipt")
            problem = None if kept == done["receipt"] else "GET /api/bids/{id}/receipt differs from the PATCH's"
        if problem:
            print(f"# receipt check failed: {problem}", file=sys.stderr)

        # Where the server keeps bids: how fast this disk takes the same bytes durably.
        disk_s = await asyncio.to_thread(durable_copy_seconds, sealed_path, h.files / "durable-copy.bin")
        base = min(base_1, base_2)
        mib_total = size / 2**20
        return {
            "upload_ratio": f"{base / upload_s:.2f} (goal >= 0.5)",
            "upload_mib_per_s": f"{mib_total / upload_s:.0f}",
            "discard_mib_per_s": f"{mib_total / base:.0f} (best of 2, same bytes, same server)",
            "disk_durable_mib_per_s": f"{mib_total / disk_s:.0f} (same bytes copied with fdatasync every 32 MiB, same disk)",
            "upload_vs_disk_ratio": f"{disk_s / upload_s:.2f} (a durable receipt cannot beat the disk)",
            "upload_rss_growth_mib": f"{max(0, sampler.peak - rss_before) / 2**20:.1f} (goal < 64)",
            "upload_receipt_valid": "true" if problem is None else "false",
            "upload_bytes": str(size),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=2048, help="size of the bid's plaintext file in MiB (default 2048)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server log, files)")
    parser.add_argument("--tmp-root", default="/tmp",
                        help="where the temporary directory (data dir, bid files) goes (default /tmp; /dev/shm takes the disk out)")
    args = parser.parse_args()
    if args.mib < 1:
        parser.error("--mib must be at least 1")
    started = time.perf_counter()
    figures = asyncio.run(run(args.mib, args.keep, args.tmp_root))
    for name, value in figures.items():
        print(f"{name}: {value}")
    print(f"upload_wall_s: {time.perf_counter() - started:.1f}")


if __name__ == "__main__":
    main()
