"""Expert draw end to end on a 100,000-expert pool: candidate query with every avoidance rule, the draw, the log.

A fresh embedded PostgreSQL (or DATABASE_URL) is migrated and filled with the demo pool
generator at --experts experts (valid ID numbers sealed like real ones, several cities,
weighted specialties, leave days, a few suspended). A published tender gets --avoided bidder
organisations, each the employer of experts in the pool (so the avoidance really removes
people), plus repeat pairings for some experts with the tenderer.

Two specialties are drawn from, chosen from the pool as seeded: the leaf of median size (a
typical draw) and the largest leaf (the worst case: 土建, about 5 % of the pool). For each,
timed --draws times: `draw_service.run` — one transaction that locks the draw, runs the
candidate query (specialty prefix, status, credit, leave, employers of tenderer/agent/bidders,
declared relations, repeat-pairing cap), derives the seed from the revealed secret and the
signed tree head, draws 9 members with region quotas 3/3/3 across three cities and 2 backups,
seals the seats, queues the notices and appends the log entries. Each draw is scheduled first,
untimed, as a requester would do hours before.

Baseline, same run, same database: the bare candidate rows (same specialty, no avoidance)
fetched with one SELECT, the floor any draw over this pool pays. Prints:

    specialty, candidates   the typical leaf, and its eligible experts per draw after avoidance
    draw_p50_ms: X          goal < 50
    draw_p99_ms: X
    largest_specialty, largest_candidates, largest_draw_p50_ms, largest_draw_p99_ms
    baseline_select_p50_ms: X   the typical leaf's bare rows
    draw_vs_select_ratio: X draw_p50 / baseline_select_p50

    python bench/draw.py [--experts 100000] [--draws 200] [--avoided 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluation import draw_service  # noqa: E402
from evaluation.demo_pool import seed_demo_pool  # noqa: E402
from evaluation.draw import commitment  # noqa: E402
from tenderhall import accounts, db  # noqa: E402
from tenderhall.canonical import b64url  # noqa: E402
from tenderhall.data_key import load_or_create as load_data_key  # noqa: E402
from tenderhall.platform_key import load_or_create  # noqa: E402
from tenderhall.settings import Settings  # noqa: E402

REGIONS = ("3501", "3502", "3505")  # Fuzhou (main venue), Xiamen and Quanzhou (sub-venues)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def _tender(conn, agent_id: uuid.UUID, avoided: int) -> uuid.UUID:
    """A published tender whose bidders are `avoided` organisations employing experts of the pool."""
    tender_id = uuid.uuid4()
    await conn.execute("""
        INSERT INTO tenders (id, code, name, tenderer, agent_id, budget, evaluation_method, deadline, decryption_minutes,
                             decryption_rule, threshold, status, summary_fields, published_at)
        VALUES ($1, 'BENCH-DRAW', '抽取基准项目', '基准招标人', $2, 1000000, 'comprehensive_scoring', now(), 30, 'void', 0,
                'published', '[]', now())""", tender_id, agent_id)
    await conn.execute("INSERT INTO lots (tender_id, code, name, budget, position) VALUES ($1, 'L1', '一标段', 1000000, 0)",
                       tender_id)
    employers = await conn.fetch("""SELECT employer_code, min(employer_name) AS name FROM experts
                                    GROUP BY employer_code ORDER BY count(*) DESC LIMIT $1""", avoided)
    for n, e in enumerate(employers):
        org = await accounts.create_organisation(conn, credit_code_text=e["employer_code"], name=e["name"], kind="bidder")
        user = uuid.uuid4()
        await conn.execute("""INSERT INTO users (id, username, display_name, password_hash, roles, organisation_id)
                              VALUES ($1, $2, $2, 'x', ARRAY['bidder'], $3)""", user, f"bidder{n:03d}", org)
        key_set, upload = uuid.uuid4(), uuid.uuid4()
        await conn.execute("""INSERT INTO key_sets (id, organisation_id, registered_by, sign_spki, sign_key_id,
                              decrypt_spki, decrypt_key_id) VALUES ($1, $2, $3, '\\x00', $4, '\\x00', $5)""",
                           key_set, org, user, f"s{n}", f"d{n}")
        await conn.execute("""INSERT INTO uploads (id, tender_id, lot_code, organisation_id, user_id, manifest,
                              manifest_sha256, signature, key_set_id, length, "offset", status)
                              VALUES ($1, $2, 'L1', $3, $4, '{}', $5, 'x', $6, 1, 1, 'complete')""",
                           upload, tender_id, org, user, upload.hex, key_set)
        await conn.execute("""INSERT INTO bids (id, upload_id, tender_id, lot_code, organisation_id, submitted_by,
                              ciphertext_sha256, size, manifest_sha256, tender_version, received_at, log_index, receipt)
                              VALUES ($1, $2, $3, 'L1', $4, $5, 'x', 1, $6, 1, now(), 0, '{}')""",
                           uuid.uuid4(), upload, tender_id, org, user, upload.hex)
    return tender_id


async def _timed_draws(deps: draw_service.Deps, user, tender_id: uuid.UUID, specialty: str,
                       count: int) -> tuple[list[float], int]:
    """`count` draws of 9 + 2 in `specialty`, each scheduled (untimed) then run (timed); (ms each, candidates)."""
    spec = {"groups": [{"specialty": specialty, "count": 9, "backups": 2,
                        "quotas": [{"region": r, "count": 3} for r in REGIONS]}]}
    timings = []
    for _ in range(count):
        secret = os.urandom(32)
        body = {"purpose": "evaluation", "tender_id": str(tender_id), "title": "基准抽取", "spec": spec,
                "needed_at": (datetime.now(timezone.utc) + timedelta(hours=20)).isoformat(),
                "commitment": commitment(secret)}
        scheduled = await draw_service.schedule(deps, user, body)
        started = time.perf_counter()
        drawn = await draw_service.run(deps, user, uuid.UUID(scheduled["id"]), b64url(secret))
        timings.append((time.perf_counter() - started) * 1000)
    async with deps.pool.acquire() as conn:
        record = await conn.fetchval("SELECT record FROM draws WHERE id = $1", uuid.UUID(drawn["draws"][-1]["id"]))
    return timings, len(json.loads(record)["candidates"])


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="tenderhall-bench-draw-", dir=args.tmp_root))
    embedded = None
    try:
        dsn = os.environ.get("DATABASE_URL")
        if not dsn:
            from tenderhall.embedded_pg import EmbeddedPostgres
            embedded = EmbeddedPostgres(root / "pg")
            dsn = await asyncio.to_thread(embedded.start)
        settings = Settings(database_url=dsn, data_dir=root)
        pool = await db.create_pool(dsn, 2, 4)
        data_key = load_data_key(settings.data_key_path)
        deps = draw_service.Deps(pool, settings, load_or_create(settings.platform_key_path), data_key)
        async with pool.acquire() as conn:
            await db.migrate(conn)
            started = time.perf_counter()
            counts = await seed_demo_pool(conn, data_key, experts=args.experts, intermediaries=0)
            print(f"seeded {counts['experts']} experts in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            agent_id = await accounts.create_user(conn, username="bench-agent", display_name="Agent", password="bench agent password",
                                                  roles=["agent"], scrypt_n=2**10)
            user = await accounts.get_user(conn, agent_id)
            tender_id = await _tender(conn, agent_id, args.avoided)
            repeat = await conn.fetch("SELECT id FROM experts ORDER BY id LIMIT 200")
            old = uuid.uuid4()
            await conn.execute("""INSERT INTO draws (id, purpose, subject, title, spec, needed_at, draw_after, commitment,
                                  requested_by, reply_minutes, scheduled_log_index, tender_id)
                                  VALUES ($1, 'evaluation', '{}', '历史', '{}', now() - interval '10 days',
                                          now() - interval '11 days', $2, $3, 15, 0, $4)""", old, "0" * 64, agent_id, tender_id)
            await conn.executemany("""INSERT INTO pairings (draw_id, expert_id, counterpart, met_at)
                                      VALUES ($1, $2, 'tenderer:基准招标人', now() - interval '10 days')""",
                                   [(old, r["id"]) for r in repeat])
            await conn.execute("VACUUM ANALYZE")  # what autovacuum does to a pool loaded in bulk

        async with pool.acquire() as conn:
            leaves = await conn.fetch("""SELECT specialty, count(*) AS n FROM expert_specialties
                                         GROUP BY specialty ORDER BY n, specialty""")
        typical = leaves[len(leaves) // 2]["specialty"]
        largest = leaves[-1]["specialty"]
        results = {}
        for label, specialty in (("", typical), ("largest_", largest)):
            results[label] = await _timed_draws(deps, user, tender_id, specialty, args.draws)
        async with pool.acquire() as conn:
            baseline = []
            for _ in range(max(20, args.draws // 4)):
                started = time.perf_counter()
                await conn.fetch("""SELECT e.id, e.region, array_agg(s.specialty) FROM expert_specialties s
                                    JOIN experts e ON e.id = s.expert_id
                                    WHERE s.specialty >= $1 AND s.specialty < $1 || '~'
                                    GROUP BY e.id, e.region""", typical)
                baseline.append((time.perf_counter() - started) * 1000)
        await pool.close()
        select_p50 = statistics.median(baseline)
        for label, specialty in (("", typical), ("largest_", largest)):
            timings, candidates = results[label]
            print(f"{label}specialty: {specialty}")
            print(f"{label}candidates: {candidates}")
            print(f"{label}draw_p50_ms: {statistics.median(timings):.1f}")
            print(f"{label}draw_p99_ms: {percentile(timings, 0.99):.1f}")
        print(f"baseline_select_p50_ms: {select_p50:.1f}")
        print(f"draw_vs_select_ratio: {statistics.median(results[''][0]) / select_p50:.2f}")
    finally:
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experts", type=int, default=100_000, help="pool size")
    parser.add_argument("--draws", type=int, default=200, help="timed draws")
    parser.add_argument("--avoided", type=int, default=50, help="bidder organisations to avoid")
    parser.add_argument("--tmp-root", default="/tmp", help="where the temporary data directory goes")
    asyncio.run(main(parser.parse_args()))
