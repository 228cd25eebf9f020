"""Opening by custodians: share release to the last read-out of many sealed bids, against raw AES-256-GCM + SHA-256.

One real server (bench/_server.py: the app under uvicorn, embedded PostgreSQL, a fresh
data directory under --tmp-root, removed at the end). Set-up, all over HTTP except the two
clock moves of tests/hall_world.py (bench/_hall_setup.py): an agent, three custodians with
keys, --bids bidder organisations with keys; a tender with custodians 2-of-3; one bid per
bidder with --size-mib MiB of random plaintext, sealed in worker processes and submitted
through the real upload API (tus POST + PATCH). The host walks the hall: start-sign-in,
the deadline moved into the past, close-submissions, every deposit confirmed,
publish-bidders, the window end moved into the past, close-window. No bidder decrypts, so
every bid waits for the custodians. Custodians 1 and 2 read their wraps from the hall and
decrypt their shares (their client's work, before the clock).

Timed: custodian 1 releases all its shares (one POST), custodian 2 releases all of its
(one POST: the server combines the shares and opens every bid before answering), then
the host calls read-next {"all": true} until every bid is read out; the clock stops when
the last read-out is answered. Afterwards, untimed, the hall is checked: step reading,
every bid opened by the custodians and read, its summary the one sealed.

Baseline, same run, same machine, same bytes: the server's stored ciphertext files read
in 1 MiB chunks (they sit in the page cache, as for the server), each chunk decrypted with
AES-256-GCM and hashed with SHA-256, nothing else, on one thread in one process — the same
baseline as bench/sealing.py. For reference it also runs with as many threads as the
server opens bids at once (os.cpu_count(), trading.hall_decryption.open_ready_bids); before and
after the timed part, the best run counts. Prints:

    opening_seconds: X        custodian 1's POST to the last read-out answered
    opening_mib_per_s: X      ciphertext MiB / opening_seconds
    baseline_mib_per_s: X     the same bytes through raw AES-256-GCM + SHA-256, one thread
    opening_ratio: X          opening_mib_per_s / baseline_mib_per_s (goal >= 0.8)

and the phases, CPU seconds of the server and of PostgreSQL, and the set-up times.

    python bench/opening.py [--bids 500] [--size-mib 4]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import psutil  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from bench._hall_setup import (  # noqa: E402
    Sealed, custodian_shares, price_of, publish_tender, seal_all, upload_all, walk_to_custodians,
)
from bench._harness import BenchError, Harness, Session, api_error_code  # noqa: E402
from tenderhall.settings import Settings  # noqa: E402
from trading import uploads  # noqa: E402
from trading.bid_format import CHUNK_SIZE, FULL_CT_CHUNK, TAG_SIZE, chunk_aad, chunk_nonce, ct_layout  # noqa: E402

TIMEOUT = httpx.Timeout(connect=15.0, read=1800.0, write=600.0, pool=60.0)
READ_OUT_GIVE_UP_S = 600.0  # after custodian 2's answer, the read-out must be done within this
POLL_S = 0.05  # between read-next calls while bids are still being opened (poll interval, not a wait)


# ---------------------------------------------------------------------------- the baseline


def decrypt_and_hash(path: Path, key: bytes, sha256: str) -> int:
    """Raw AES-256-GCM decryption of every chunk plus SHA-256 of the ciphertext; returns the bytes read."""
    size = path.stat().st_size
    layout = ct_layout(size)
    if layout is None:
        raise BenchError(f"{path} has an impossible ciphertext size {size}")
    n, last = layout
    aead, digest = AESGCM(key), hashlib.sha256()
    cipher, plain = bytearray(FULL_CT_CHUNK), bytearray(CHUNK_SIZE)
    cipher_view, plain_view = memoryview(cipher), memoryview(plain)
    with path.open("rb", buffering=0) as f:
        for i in range(n):
            final = i == n - 1
            want = last if final else FULL_CT_CHUNK
            view, got = cipher_view[:want], 0
            while got < want:
                count = f.readinto(view[got:])
                if not count:
                    raise BenchError(f"{path} ended early")
                got += count
            digest.update(view)
            aead.decrypt_into(chunk_nonce(i), view, chunk_aad(i, final), plain_view[:want - TAG_SIZE])
    if digest.hexdigest() != sha256:
        raise BenchError(f"{path}: the stored ciphertext is not the one sealed")
    return size


def baseline_seconds(items: Sequence[tuple[Path, bytes, str]], threads: int) -> float:
    """Seconds for every stored bid through decrypt_and_hash, `threads` bids at a time."""
    start = time.perf_counter()
    if threads == 1:
        for item in items:
            decrypt_and_hash(*item)
    else:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="baseline") as pool:
            list(pool.map(lambda item: decrypt_and_hash(*item), items))
    return time.perf_counter() - start


# ---------------------------------------------------------------------------- CPU accounting


def postgres_cpu_seconds(data_dir: Path) -> float:
    """user + system CPU of the embedded postmaster and its live children (backends, WAL writer...)."""
    try:
        pid = int((data_dir / "pgdata" / "postmaster.pid").read_text().split("\n", 1)[0])
        root = psutil.Process(pid)
        total = 0.0
        for p in [root, *root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total
    except (OSError, ValueError, psutil.Error):
        return float("nan")


def process_cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all its threads."""
    t = psutil.Process(pid).cpu_times()
    return t.user, t.system


def job_may_have_run(server_pid: int, start: float, end: float) -> bool:
    """Whether the server's periodic jobs (open_bids_with_released_shares among them: it opens bids too)
    may have ticked between epoch `start` and `end`: they run at start-up and every job_interval_seconds."""
    born = psutil.Process(server_pid).create_time()
    interval = Settings.job_interval_seconds
    first, last = int((start - born) // interval), int((end - born) // interval) + 1
    return any(start - 10 <= born + k * interval <= end + 10 for k in range(max(first, 1), last + 1))


# ---------------------------------------------------------------------------- the timed part


async def read_out_all(agent: Session, url: str, expected: int) -> tuple[list[str], int]:
    """read-next {"all": true} until `expected` bids are read; (ids in read order, calls made)."""
    read: list[str] = []
    calls = 0
    give_up = time.monotonic() + READ_OUT_GIVE_UP_S
    while len(read) < expected:
        r = await agent.http.post(f"{url}/read-next", json={"all": True})
        calls += 1
        if r.status_code == 200:
            read += r.json()["read"]
            continue
        code = api_error_code(r)
        if r.status_code != 409 or code not in ("nothing_to_read", "wrong_step"):
            raise BenchError(f"read-next: HTTP {r.status_code} {r.text[:300]}")
        if time.monotonic() > give_up:
            raise BenchError(f"{len(read)} of {expected} bids read out after {READ_OUT_GIVE_UP_S:.0f} s ({code})")
        await asyncio.sleep(POLL_S)
    return read, calls


def check_hall(hall: dict[str, Any], index_of: dict[str, int], read: list[str]) -> list[str]:
    """Problems with the hall after the timed part (empty when everything is as it must be)."""
    problems = []
    if hall["step"] != "reading":
        problems.append(f"step is {hall['step']}, not reading")
    if sorted(read) != sorted(index_of) or len(set(read)) != len(read):
        problems.append(f"read out {len(read)} bids ({len(set(read))} distinct), expected {len(index_of)}")
    bids = {b["bid_id"]: b for b in hall["bids"]}
    for bid_id, i in index_of.items():
        b = bids.get(bid_id)
        if b is None:
            problems.append(f"bid {i} is not in the hall")
            continue
        if (b["status"], b["opened_by"]) != ("opened", "custodians") or b["read_order"] is None:
            problems.append(f"bid {i}: {b['status']} by {b['opened_by']}, read_order {b['read_order']}")
        elif (b["summary"] or {}).get("price") != price_of(i):
            problems.append(f"bid {i}: read out price {(b['summary'] or {}).get('price')}, sealed {price_of(i)}")
    orders = [bids[b]["read_order"] for b in read if b in bids]
    if orders != sorted(orders):
        problems.append("read-next answered bids out of their read order")
    return problems


async def run(args: argparse.Namespace) -> dict[str, str]:
    wall = time.perf_counter()
    plain_bytes = args.size_mib * 2**20
    workers = os.cpu_count() or 1
    async with Harness(keep=args.keep, tmp_root=args.tmp_root) as h:
        agent = await h.agent()
        custodians = await h.custodians(3)
        bidders = await h.bidders(args.bids, concurrency=args.setup_concurrency, timeout=TIMEOUT)
        for person in (agent, *(c.session for c in custodians)):
            person.http.timeout = TIMEOUT
        tender = await publish_tender(h, agent, custodians, args.bids)
        tender_id = tender["id"]
        setup_s = time.perf_counter() - wall
        h.note(f"{args.bids} bidders, 3 custodians, an agent and tender {tender_id} ready in {setup_s:.1f} s")

        started = time.perf_counter()
        sealed: list[Sealed] = await seal_all(h, bidders, tender, plain_bytes, args.seal_workers or workers)
        seal_s = time.perf_counter() - started
        h.note(f"{len(sealed)} bids sealed in {seal_s:.1f} s")
        started = time.perf_counter()
        done = await upload_all(bidders, sealed, tender_id, args.upload_concurrency)
        upload_s = time.perf_counter() - started
        h.note(f"{len(done)} bids uploaded in {upload_s:.1f} s")

        storage = h.data_dir / "storage"
        stored = [(uploads.bid_path(storage, uuid.UUID(tender_id), uuid.UUID(s.bid.manifest["upload_id"])),
                   s.content_key, s.bid.manifest["ciphertext"]["sha256"]) for s in sealed]
        total_bytes = sum(s.size for s in sealed)
        index_of = {d["bid"]: s.index for d, s in zip(done, sealed)}

        started = time.perf_counter()
        await walk_to_custodians(h, agent, tender_id, [b.organisation_id or "" for b in bidders],
                                 args.setup_concurrency)
        shares = [await custodian_shares(c, tender_id, args.bids) for c in custodians[:2]]
        h.note(f"hall walked to the custodian step, shares decrypted, in {time.perf_counter() - started:.1f} s")

        base_many = [await asyncio.to_thread(baseline_seconds, stored, workers)]
        base_one = [await asyncio.to_thread(baseline_seconds, stored, 1)]
        h.note(f"baseline before: {total_bytes / 2**20 / min(base_many):.0f} MiB/s ({workers} threads), "
               f"{total_bytes / 2**20 / min(base_one):.0f} MiB/s (1 thread)")

        # ---- timed: share release to the last read-out
        url = f"/api/tenders/{tender_id}/hall"
        server_cpu, pg_cpu = process_cpu_seconds(h.server.pid), postgres_cpu_seconds(h.data_dir)
        load_before = os.getloadavg()[0]
        epoch_start = time.time()
        t0 = time.perf_counter()
        first = await custodians[0].session.call("POST", f"{url}/shares", json={"shares": shares[0]})
        t1 = time.perf_counter()
        second = await custodians[1].session.call("POST", f"{url}/shares", json={"shares": shares[1]})
        t2 = time.perf_counter()
        read, calls = await read_out_all(agent, url, args.bids)
        t3 = time.perf_counter()
        user, system = (after - before for after, before in zip(process_cpu_seconds(h.server.pid), server_cpu))
        pg_cpu = postgres_cpu_seconds(h.data_dir) - pg_cpu
        load_after = os.getloadavg()[0]
        h.note(f"opened and read out in {t3 - t0:.2f} s")
        if job_may_have_run(h.server.pid, epoch_start, time.time()):
            print(f"# the server's periodic jobs (every {Settings.job_interval_seconds} s) may have run during the "
                  "timed part; one of them opens bids with released shares too", file=sys.stderr)

        base_many.append(await asyncio.to_thread(baseline_seconds, stored, workers))
        base_one.append(await asyncio.to_thread(baseline_seconds, stored, 1))

        hall = (await agent.call("GET", url))["hall"]
        problems = check_hall(hall, index_of, read)
        for p in problems[:20]:
            print(f"# check failed: {p}", file=sys.stderr)

        opening_s = t3 - t0
        mib = total_bytes / 2**20
        many, one = min(base_many), min(base_one)
        return {
            "opening_seconds": f"{opening_s:.2f} (custodian 1's share POST to the last read-out answered)",
            "opening_mib_per_s": f"{mib / opening_s:.0f} ({args.bids} bids, {mib:.0f} MiB of ciphertext)",
            "baseline_mib_per_s": (f"{mib / one:.0f} (raw AES-256-GCM decrypt + SHA-256 of the same stored files "
                                   f"in 1 MiB chunks, one thread, best of {len(base_one)})"),
            "opening_ratio": f"{one / opening_s:.3f} (goal >= 0.8)",
            "baseline_threads_mib_per_s": (f"{mib / many:.0f} ({workers} threads, as many bids at once as the "
                                           f"server opens; best of {len(base_many)})"),
            "opening_ratio_vs_threads": f"{many / opening_s:.3f}",
            "opening_release_1_s": f"{t1 - t0:.2f} (custodian 1: {first['released']} shares stored, "
                                   f"{first['opened']} opened)",
            "opening_release_2_s": f"{t2 - t1:.2f} (custodian 2: {second['released']} shares stored, "
                                   f"{second['opened']} bids combined and opened before the answer)",
            "opening_read_out_s": f"{t3 - t2:.2f} ({len(read)} bids read out in {calls} read-next call(s))",
            "opening_server_cpu_s": (f"{user + system:.2f} (user {user:.2f}, system {system:.2f}; uvicorn process, "
                                     "all threads, during the timed part)"),
            "opening_postgres_cpu_s": f"{pg_cpu:.2f} (postmaster and its backends, during the timed part)",
            "baseline_runs_mib_per_s": (f"{workers} threads {' / '.join(f'{mib / b:.0f}' for b in base_many)}, "
                                        f"1 thread {' / '.join(f'{mib / b:.0f}' for b in base_one)} "
                                        "(before / after the timed part: their spread is this machine's noise)"),
            "opening_load_average": (f"{load_before:.1f} before, {load_after:.1f} after the timed part "
                                     f"(1-minute load on {workers} CPUs; above {workers} other work shared them)"),
            "opening_checked": ("ok: every bid opened by the custodians, read out once, in order, with its sealed "
                                "summary" if not problems
                                else f"FAILED: {len(problems)} problem(s), first: {problems[0]}"),
            "opening_cpus": str(workers),
            "opening_setup_s": f"{setup_s:.1f}",
            "opening_seal_s": f"{seal_s:.1f} ({args.seal_workers or workers} processes)",
            "opening_upload_s": f"{upload_s:.1f}",
            "opening_wall_s": f"{time.perf_counter() - wall:.1f}",
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bids", type=int, default=500, help="bidder organisations, one sealed bid each (default 500)")
    parser.add_argument("--size-mib", type=int, default=4, help="plaintext file of each bid, in MiB (default 4)")
    parser.add_argument("--seal-workers", type=int, default=0,
                        help="processes that seal the bids (default: os.cpu_count())")
    parser.add_argument("--setup-concurrency", type=int, default=8,
                        help="bidders set up, and deposits recorded, at once (default 8)")
    parser.add_argument("--upload-concurrency", type=int, default=4, help="bids uploaded at once (default 4)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server log, data)")
    parser.add_argument("--tmp-root", default="/tmp",
                        help="where the temporary directory (data dir, bid files) goes (default /tmp; /dev/shm takes the disk out)")
    args = parser.parse_args()
    if args.bids < 1 or args.size_mib < 1 or args.seal_workers < 0 or args.upload_concurrency < 1 \
            or args.setup_concurrency < 1:
        parser.error("need --bids >= 1, --size-mib >= 1, --seal-workers >= 0 and concurrencies >= 1")
    figures = asyncio.run(run(args))
    for name, value in figures.items():
        print(f"{name}: {value}")
    if not figures["opening_checked"].startswith("ok"):
        sys.exit(1)


if __name__ == "__main__":
    main()
