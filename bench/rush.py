"""The deadline rush: many bidders submitting sealed bids in the last minute, checked from the outside.

One real server (bench/_server.py: the app under uvicorn). First every bidder is set up
over HTTP (organisation, user, login, keys), 3 custodians register keys and an agent
publishes a tender (custodians 2-of-3) whose deadline leaves room to seal every bid and
then the --window; every bid (--mb MB of random plaintext) is sealed into a file. Then
each bidder, with its own httpx.AsyncClient and cookie session, starts its submission
(tus POST with the signed manifest, then one streaming PATCH of the ciphertext) at a
random moment of the last --window seconds (seeded by --seed); about 5 % (--late) start
deliberately too late to finish: in the last 200 ms or up to 300 ms after the deadline.
Each records its start, when its last byte was sent, the responses and its receipt, which
it verifies (platform signature, tree head signature, inclusion proof, and the entry
fetched from /api/log/entries/{idx}).

Afterwards, from the outside: every success's receipt is fetched again and verifies, its
log entry exists and matches, and its received_at is before the deadline; each bidder's
GET /api/bids?tender= shows exactly its successful bid active, and nothing for a refused
one; refusals carry the code deadline_passed. Prints, one per line:

    rush_lost: N              successes without a valid receipt/log entry or without their bid listed
                              active, + submissions refused or failed although their last byte (or, when
                              refused before any byte, the refusal) came > 1 s before the deadline,
                              + transport errors and timeouts (goal 0)
    rush_accepted: N
    rush_refused_late: N      refused with deadline_passed
    rush_receipt_p50_ms: X    from the start of a submission (POST) to holding its verified receipt
    rush_receipt_p99_ms: X
    rush_wall_s: X            the whole run, setup included

    python bench/rush.py [--bidders 300] [--mb 10] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from bench._harness import (  # noqa: E402
    TUS, BenchError, Harness, KeyOwner, RssSampler, api_error_code, file_body, gather_bounded, parse_iso,
    patch_headers, percentile, seal_to_file, verify_receipt,
)
from tenderhall.keyfile import public_key_spki_b64url  # noqa: E402
from trading.manifest import SealedBid  # noqa: E402

TIMEOUT = httpx.Timeout(connect=15.0, read=120.0, write=120.0, pool=60.0)
LATE_BEFORE_S = 0.2  # a deliberately late bidder starts at most this long before the deadline...
LATE_AFTER_S = 0.3  # ...and at most this long after it
ON_TIME_LAST_S = 0.2  # on-time bidders start before the last LATE_BEFORE_S
GRACE_S = 1.0  # refusals of bids whose last byte came earlier than this before the deadline are losses
AFTER_DEADLINE_S = 300.0  # every submission must be over this long after the deadline


@dataclass
class Attempt:
    """What one bidder did and saw."""

    index: int
    planned_start: float  # epoch seconds
    late: bool
    sealed: SealedBid | None = None
    path: Path | None = None
    start: float = 0.0  # epoch, when the POST went out
    post_status: int | None = None
    patch_status: int | None = None
    refusal: str | None = None  # the API error code of a refusal
    refused_at: float | None = None  # epoch, when the refusal came back
    last_byte_sent: float | None = None
    responded: float | None = None
    bid: str | None = None
    receipt: dict[str, Any] | None = None
    receipt_ms: float | None = None  # start of the submission to holding the verified receipt
    receipt_problem: str | None = None
    error: str | None = None  # transport error, timeout or unexpected answer
    marks: dict[str, float] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.patch_status == 200 and self.bid is not None


async def submit(h: Harness, bidder: KeyOwner, tender_id: str, a: Attempt) -> None:
    """One bidder's submission at its planned time: POST the manifest, PATCH the ciphertext, verify the receipt."""
    assert a.sealed is not None and a.path is not None
    http = bidder.session.http
    await asyncio.sleep(max(0.0, a.planned_start - time.time()))
    a.start = time.time()
    t0 = time.perf_counter()
    try:
        r = await http.post(f"/api/tenders/{tender_id}/lots/L1/uploads", json=a.sealed.submission(), headers=TUS)
        a.post_status = r.status_code
        if r.status_code != 201:
            a.refusal, a.refused_at = api_error_code(r) or f"http_{r.status_code}", time.time()
            return
        upload_id = r.json()["upload_id"]
        size = a.sealed.manifest["ciphertext"]["size"]
        r = await http.patch(f"/api/uploads/{upload_id}", content=file_body(a.path, a.marks),
                             headers=patch_headers(size))
        a.responded = time.time()
        a.last_byte_sent = a.marks.get("last_byte_sent")
        a.patch_status = r.status_code
        if r.status_code != 200:
            a.refusal, a.refused_at = api_error_code(r) or f"http_{r.status_code}", a.responded
            return
        done = r.json()
        a.bid, a.receipt = done.get("bid"), done.get("receipt")
        a.receipt_problem = await verify_receipt(h.public, h.platform_key, a.receipt, sealed=a.sealed,
                                                 bidder=bidder, bid_id=a.bid)
        if a.receipt_problem is None:
            a.receipt_ms = (time.perf_counter() - t0) * 1000
    except httpx.HTTPError as exc:
        a.error = f"{type(exc).__name__}: {exc}"
        a.last_byte_sent = a.last_byte_sent or a.marks.get("last_byte_sent")
    except (ValueError, KeyError) as exc:
        a.error = f"unexpected answer: {type(exc).__name__}: {exc}"


async def seal_all(h: Harness, bidders: list[KeyOwner], tender: dict[str, Any], plain_bytes: int) -> list[
        tuple[SealedBid, Path]]:
    def work() -> list[tuple[SealedBid, Path]]:
        out = []
        for i, bidder in enumerate(bidders):
            path = h.files / f"bid-{i:04d}.bin"
            out.append((seal_to_file(bidder, tender, [("technical.bin", os.urandom(plain_bytes))], path), path))
        return out
    return await asyncio.to_thread(work)


def trial_seal_seconds(h: Harness, bidder: KeyOwner, custodians: list[KeyOwner], plain_bytes: int) -> float:
    """Time to make and seal one bid, with a stand-in tender shaped like the real one."""
    fake = {"id": str(uuid.uuid4()), "threshold": 2, "custodians": [
        {"position": i, "decrypt_spki": public_key_spki_b64url(c.decrypt)} for i, c in enumerate(custodians)]}
    path = h.files / "trial.bin"
    start = time.perf_counter()
    seal_to_file(bidder, fake, [("technical.bin", os.urandom(plain_bytes))], path)
    elapsed = time.perf_counter() - start
    path.unlink()
    return elapsed


async def run(args: argparse.Namespace) -> dict[str, str]:
    wall = time.perf_counter()
    plain_bytes = int(args.mb * 10**6)
    async with Harness(keep=args.keep, tmp_root=args.tmp_root) as h:
        agent = await h.agent()
        custodians = await h.custodians(3)
        bidders = await h.bidders(args.bidders, concurrency=args.setup_concurrency, timeout=TIMEOUT)
        setup_s = time.perf_counter() - wall
        h.note(f"{len(bidders)} bidders, 3 custodians and an agent set up in {setup_s:.1f} s")

        per_bid = await asyncio.to_thread(trial_seal_seconds, h, bidders[0], custodians, plain_bytes)
        margin = per_bid * len(bidders) * 1.5 + args.margin
        deadline_wanted = time.time() + margin + args.window
        tender = await h.publish_tender(agent, custodians, deadline=deadline_wanted)
        deadline = parse_iso(tender["deadline"])
        h.note(f"tender {tender['id']} published; deadline in {deadline - time.time():.1f} s "
               f"(sealing estimated at {per_bid * len(bidders):.1f} s)")

        seal_start = time.perf_counter()
        sealed = await seal_all(h, bidders, tender, plain_bytes)
        seal_s = time.perf_counter() - seal_start
        window_opens = deadline - args.window
        if time.time() > window_opens - 0.5:
            raise BenchError(f"sealing took {seal_s:.1f} s and ran into the submission window; raise --margin")
        h.note(f"{len(sealed)} bids sealed in {seal_s:.1f} s; the window opens in {window_opens - time.time():.1f} s")

        rng = random.Random(args.seed)
        late = set(rng.sample(range(len(bidders)), round(len(bidders) * args.late)))
        attempts = []
        for i, (s, path) in enumerate(sealed):
            if i in late:
                start = deadline + rng.uniform(-LATE_BEFORE_S, LATE_AFTER_S)
            else:
                start = deadline + rng.uniform(-args.window, -ON_TIME_LAST_S)
            attempts.append(Attempt(i, start, i in late, s, path))

        rss_before = h.server.rss()
        with RssSampler(h.server.rss, 0.05) as sampler:
            tasks = [asyncio.ensure_future(submit(h, b, tender["id"], a)) for b, a in zip(bidders, attempts)]
            budget = deadline + AFTER_DEADLINE_S - time.time()
            finished, pending = await asyncio.wait(tasks, timeout=budget)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for a, t in zip(attempts, tasks):
            if t in pending:
                a.error = f"still running {AFTER_DEADLINE_S:.0f} s after the deadline; cancelled"
            elif t.exception() is not None:
                a.error = f"{type(t.exception()).__name__}: {t.exception()}"
        # Check from the outside once the deadline has passed (bounded: it is at most --window away).
        await asyncio.sleep(max(0.0, deadline + 0.5 - time.time()))
        h.note(f"rush over (deadline {time.time() - deadline:+.1f} s); checking from the outside")

        # ---- from the outside, after the deadline
        async def listed(b: KeyOwner) -> list[dict[str, Any]] | str:
            r = await b.session.http.get("/api/bids", params={"tender": tender["id"]})
            return r.json()["bids"] if r.status_code == 200 else f"HTTP {r.status_code}"

        listings = await gather_bounded([listed(b) for b in bidders], 16)

        async def recheck(b: KeyOwner, a: Attempt) -> str | None:
            if not a.accepted:
                return None
            r = await b.session.http.get(f"/api/bids/{a.bid}/receipt")
            if r.status_code != 200 or r.json() != a.receipt:
                return f"GET /api/bids/{a.bid}/receipt: HTTP {r.status_code} or differs from the PATCH's"
            problem = await verify_receipt(h.public, h.platform_key, r.json(), sealed=a.sealed, bidder=b, bid_id=a.bid)
            if problem is None and parse_iso(a.receipt["received_at"]) >= deadline:  # type: ignore[index]
                problem = f"received_at {a.receipt['received_at']} is not before the deadline"  # type: ignore[index]
            return problem

        rechecks = await gather_bounded([recheck(b, a) for b, a in zip(bidders, attempts)], 16)
        tender_after = (await h.public.get(f"/api/tenders/{tender['id']}")).json()["tender"]

        lost: dict[int, str] = {}
        phantom = 0
        for a, listing, again in zip(attempts, listings, rechecks):
            if a.error:
                lost[a.index] = f"error: {a.error}"
                continue
            if a.accepted:
                if a.receipt_problem or again:
                    lost[a.index] = f"receipt: {a.receipt_problem or again}"
                elif isinstance(listing, str) or [(x["id"], x["status"]) for x in listing] != [(a.bid, "active")]:
                    lost[a.index] = f"GET /api/bids does not show exactly its bid active: {listing}"
                continue
            finished_at = a.last_byte_sent if a.last_byte_sent is not None else a.refused_at
            if finished_at is not None and finished_at < deadline - GRACE_S:
                lost[a.index] = (f"refused ({a.refusal}) although its last byte went out "
                                 f"{deadline - finished_at:.2f} s before the deadline")
            if not isinstance(listing, str) and listing:
                phantom += 1
                lost.setdefault(a.index, f"refused ({a.refusal}) yet GET /api/bids lists {listing}")

        accepted = [a for a in attempts if a.accepted and a.index not in lost]
        refusals = collections.Counter(a.refusal for a in attempts if a.refusal and not a.error)
        late_accepted = sum(1 for a in attempts if a.late and a.accepted)
        times = [a.receipt_ms for a in accepted if a.receipt_ms is not None]
        for index, why in sorted(lost.items())[:20]:
            print(f"# lost bidder {index} (planned {attempts[index].planned_start - deadline:+.3f} s): {why}",
                  file=sys.stderr)
        if tender_after["bids_received"] != sum(1 for a in attempts if a.accepted):
            print(f"# the tender counts {tender_after['bids_received']} bids; "
                  f"{sum(1 for a in attempts if a.accepted)} were accepted", file=sys.stderr)
        last_bytes = [a.last_byte_sent - deadline for a in attempts if a.accepted and a.last_byte_sent]
        return {
            "rush_lost": f"{len(lost)} (goal 0)",
            "rush_accepted": str(sum(1 for a in attempts if a.accepted)),
            "rush_refused_late": (f"{refusals.get('deadline_passed', 0)} "
                                  f"({sum(1 for a in attempts if a.refusal == 'deadline_passed' and a.patch_status is None)}"
                                  f" at POST, {sum(1 for a in attempts if a.refusal == 'deadline_passed' and a.patch_status)}"
                                  " at PATCH)"),
            "rush_refused_other": f"{sum(n for code, n in refusals.items() if code != 'deadline_passed')} "
                                  f"{dict((c, n) for c, n in refusals.items() if c != 'deadline_passed')}",
            "rush_errors": str(sum(1 for a in attempts if a.error)),
            "rush_late_started": f"{len(late)} ({late_accepted} of them still accepted)",
            "rush_refused_but_listed": str(phantom),
            "rush_tender_bids_received": str(tender_after["bids_received"]),
            "rush_latest_accepted_last_byte_ms": (f"{max(last_bytes) * 1000:+.0f} (relative to the deadline)"
                                                  if last_bytes else "n/a"),
            "rush_receipt_p50_ms": f"{percentile(times, 50):.0f} # start of submission (POST) to verified receipt in hand",
            "rush_receipt_p99_ms": f"{percentile(times, 99):.0f} # start of submission (POST) to verified receipt in hand",
            "rush_receipt_max_ms": f"{max(times) if times else float('nan'):.0f}",
            "rush_server_rss_growth_mib": f"{max(0, sampler.peak - rss_before) / 2**20:.1f}",
            "rush_setup_s": f"{setup_s:.1f}",
            "rush_seal_s": f"{seal_s:.1f}",
            "rush_wall_s": f"{time.perf_counter() - wall:.1f}",
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bidders", type=int, default=300, help="number of bidders (default 300)")
    parser.add_argument("--mb", type=float, default=10, help="plaintext size of each bid in MB of 10^6 bytes (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the start times and of who is late (default 1)")
    parser.add_argument("--window", type=float, default=60.0, help="seconds before the deadline in which bidders start")
    parser.add_argument("--late", type=float, default=0.05, help="share of bidders that start too late (default 0.05)")
    parser.add_argument("--margin", type=float, default=15.0,
                        help="seconds added to 1.5x the estimated sealing time before the window opens (default 15)")
    parser.add_argument("--setup-concurrency", type=int, default=8, help="bidders set up at once (default 8)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server log, files)")
    parser.add_argument("--tmp-root", default="/tmp",
                        help="where the temporary directory (data dir, bid files) goes (default /tmp; /dev/shm takes the disk out)")
    args = parser.parse_args()
    if args.bidders < 1 or args.mb <= 0 or args.window < 1 or not 0 <= args.late < 1:
        parser.error("need --bidders >= 1, --mb > 0, --window >= 1 and 0 <= --late < 1")
    figures = asyncio.run(run(args))
    for name, value in figures.items():
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
