"""The transparency log on the real database: appends, proofs, the public API, tamper detection."""

from __future__ import annotations

import asyncio
import io
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.testclient import TestClient

from tenderhall import audit, cli, db, log, merkle
from tenderhall.app import create_app
from tenderhall.canonical import canonical_json
from tenderhall.platform_key import PlatformKey, load_or_create, load_public_pem
from tenderhall.settings import Settings
from tests.factories import run_db


def new_key() -> PlatformKey:
    return PlatformKey(Ed25519PrivateKey.generate())


def append_many(dsn: str, key: PlatformKey, n: int, kind: str = "test.entry") -> list[log.AppendResult]:
    """Append n entries, each in its own committed transaction."""

    async def work(conn: asyncpg.Connection) -> list[log.AppendResult]:
        out = []
        for i in range(n):
            async with conn.transaction():
                out.append(await log.append_entry(conn, key, kind, {"n": i, "name": f"投标 {i}"}))
        return out

    return run_db(dsn, work)


def sql(dsn: str, *statements: str) -> None:
    async def work(conn: asyncpg.Connection) -> None:
        for statement in statements:
            await conn.execute(statement)

    run_db(dsn, work)


def verify(dsn: str, key: PlatformKey) -> audit.VerifyReport:
    return run_db(dsn, lambda conn: audit.verify_log(conn, key.public))


# --- service ------------------------------------------------------------------------------


def test_every_append_returns_a_receipt_that_verifies_against_its_signed_head(database_url: str) -> None:
    key = new_key()
    results = append_many(database_url, key, 23)
    assert [r.index for r in results] == list(range(23))
    for r in results:
        assert r.tree_head.tree_size == r.index + 1
        assert r.entry["index"] == r.index and r.entry["kind"] == "test.entry"
        assert r.entry["time"].endswith("Z")
        assert log.verify_receipt_proof(r.entry_bytes, r.index, r.tree_head.as_json(), r.inclusion_proof, key.public_pem)
        # The receipt JSON form carries hex proofs; it verifies the same way.
        receipt = r.receipt_json()
        assert log.verify_receipt_proof(canonical_json(receipt["entry"]), receipt["index"], receipt["tree_head"],
                                        receipt["inclusion_proof"], key.public)
    leaves = [r.leaf_hash for r in results]
    assert results[-1].tree_head.root_hash == merkle.root_from_leaves(leaves)


def test_receipt_check_refuses_a_wrong_key_entry_index_or_head(database_url: str) -> None:
    key = new_key()
    r = append_many(database_url, key, 6)[4]
    head = r.tree_head.as_json()
    assert not log.verify_receipt_proof(r.entry_bytes, r.index, head, r.inclusion_proof, new_key().public_pem)
    assert not log.verify_receipt_proof(r.entry_bytes.replace(b'"n":4', b'"n":5'), r.index, head, r.inclusion_proof, key.public)
    assert not log.verify_receipt_proof(r.entry_bytes, 3, head, r.inclusion_proof, key.public)
    assert not log.verify_receipt_proof(r.entry_bytes, r.index, {**head, "tree_size": 6}, r.inclusion_proof, key.public)
    assert not log.verify_receipt_proof(r.entry_bytes, r.index, {**head, "signature": "!!"}, r.inclusion_proof, key.public)
    assert not log.verify_receipt_proof(r.entry_bytes, r.index, head, ["zz"], key.public)


def test_stored_proofs_for_every_index_and_size_verify(database_url: str) -> None:
    key = new_key()
    n = 21
    append_many(database_url, key, n)

    async def work(conn: asyncpg.Connection) -> None:
        for size in range(1, n + 1):
            head = await log.tree_head(conn, size)
            assert head is not None and head.verify(key.public)
            for index in range(size):
                found = await log.entry(conn, index)
                assert found is not None
                proof = await log.inclusion_proof(conn, index, size)
                assert log.verify_receipt_proof(found.canonical.encode(), index, head.as_json(), proof, key.public)
        for old in range(1, n + 1):
            old_head = await log.tree_head(conn, old)
            for new in range(old, n + 1):
                new_head = await log.tree_head(conn, new)
                proof = await log.consistency_proof(conn, old, new)
                assert merkle.verify_consistency(old, new, old_head.root_hash, new_head.root_hash, proof), (old, new)
        with pytest.raises(log.LogError, match="size must be between 1 and the log size 21"):
            await log.inclusion_proof(conn, 0, 22)
        with pytest.raises(log.LogError, match="index must be between 0 and 4"):
            await log.inclusion_proof(conn, 5, 5)
        with pytest.raises(log.LogError, match="old must be between 1 and new"):
            await log.consistency_proof(conn, 9, 8)

    run_db(database_url, work)


def test_batches_of_any_size_at_any_offset_make_the_same_tree(database_url: str) -> None:
    key = new_key()
    singles = append_many(database_url, key, 5)

    async def work(conn: asyncpg.Connection) -> list[list[log.AppendResult]]:
        out = []
        for n, count in enumerate((1, 2, 7, 37, 100, 3)):
            async with conn.transaction():
                out.append(await log.append_entries(conn, key, [("test.batch", {"batch": n, "i": i})
                                                                for i in range(count)]))
        return out

    batches = run_db(database_url, work)
    results = singles + [r for batch in batches for r in batch]
    assert [r.index for r in results] == list(range(len(results)))
    for batch in batches:
        assert [r.tree_head.tree_size for r in batch] == [r.index + 1 for r in batch]
        for r in batch:
            assert log.verify_receipt_proof(r.entry_bytes, r.index, r.tree_head.as_json(), r.inclusion_proof,
                                            key.public_pem)
    assert results[-1].tree_head.root_hash == merkle.root_from_leaves([r.leaf_hash for r in results])
    assert verify(database_url, key).ok

    async def empty(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await log.append_entries(conn, key, [])

    with pytest.raises(log.LogError):
        run_db(database_url, empty)


def test_append_costs_the_same_queries_at_any_size(database_url: str) -> None:
    """O(log n) per append: a constant number of queries, counted over 300 appends (not timed)."""
    key = new_key()

    async def work(conn: asyncpg.Connection) -> list[int]:
        counts = []
        seen: list[Any] = []
        conn.add_query_logger(seen.append)
        for i in range(300):
            seen.clear()
            async with conn.transaction():
                await log.append_entry(conn, key, "bid.received", {"bid": i})
            counts.append(len(seen))
        return counts

    counts = run_db(database_url, work)
    # The first append may also run asyncpg's one-off type introspection.
    assert len(set(counts[1:])) == 1, counts[:10]
    assert verify(database_url, key).ok


def test_append_refuses_to_run_outside_a_transaction_or_in_repeatable_read(database_url: str) -> None:
    key = new_key()

    async def work(conn: asyncpg.Connection) -> None:
        with pytest.raises(log.LogError, match="inside the caller's transaction"):
            await log.append_entry(conn, key, "x", {})
        with pytest.raises(log.LogError, match="READ COMMITTED"):
            async with conn.transaction(isolation="repeatable_read"):
                await log.append_entry(conn, key, "x", {})
        with pytest.raises(ValueError, match="floats are not allowed"):
            async with conn.transaction():
                await log.append_entry(conn, key, "x", {"price": 1.5})

    run_db(database_url, work)
    assert run_db(database_url, log.latest_tree_head) is None


def test_a_rolled_back_append_leaves_no_trace(database_url: str) -> None:
    key = new_key()
    append_many(database_url, key, 2)

    async def work(conn: asyncpg.Connection) -> None:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await log.append_entry(conn, key, "x", {})
                raise RuntimeError("caller fails after the append")

    run_db(database_url, work)
    r = append_many(database_url, key, 1)[0]
    assert r.index == 2
    assert verify(database_url, key).ok


def test_entry_time_comes_from_the_database_clock(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The log's times are the database's, like every other time: a wrong app clock does not show."""
    real = log.datetime

    class SkewedClock(real):  # type: ignore[misc, valid-type]
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return real.now(tz) + timedelta(hours=3)

    monkeypatch.setattr(log, "datetime", SkewedClock)
    key = new_key()

    async def work(conn: asyncpg.Connection) -> tuple[Any, log.AppendResult, Any, Any]:
        async with conn.transaction():
            before = await conn.fetchval("SELECT date_trunc('milliseconds', clock_timestamp())")
            result = await log.append_entry(conn, key, "x", {"n": 1})
            after = await conn.fetchval("SELECT clock_timestamp()")
        signed_at = await conn.fetchval("SELECT signed_at FROM log_tree_heads WHERE tree_size = 1")
        return before, result, after, signed_at

    before, result, after, signed_at = run_db(database_url, work)
    stamp = result.entry["time"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp), stamp
    assert log.iso_utc(before) <= stamp <= log.iso_utc(after)
    assert result.tree_head.timestamp == stamp and log.iso_utc(signed_at) == stamp
    stored = run_db(database_url, lambda conn: log.entry(conn, 0))
    assert stored is not None and stored.entry == result.entry
    assert verify(database_url, key).ok


def test_concurrent_appends_get_indexes_without_gaps_and_a_valid_tree(database_url: str) -> None:
    key = new_key()

    async def one(i: int) -> int:
        conn = await db.connect(database_url)
        try:
            async with conn.transaction():
                result = await log.append_entry(conn, key, "bid.received", {"bidder": i})
            return result.index
        finally:
            await conn.close()

    async def main() -> list[int]:
        return list(await asyncio.gather(*(one(i) for i in range(20))))

    indexes = asyncio.run(main())
    assert sorted(indexes) == list(range(20))
    report = verify(database_url, key)
    assert report.ok, report.lines()
    assert (report.entries, report.tree_heads) == (20, 20)


# --- tampering ----------------------------------------------------------------------------


def test_the_trigger_refuses_updates_and_deletes(database_url: str) -> None:
    append_many(database_url, new_key(), 3)
    for statement in ("UPDATE log_entries SET kind = 'x' WHERE idx = 1", "DELETE FROM log_entries WHERE idx = 2",
                      "UPDATE log_nodes SET hash = '\\x00'", "DELETE FROM log_tree_heads"):
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="append-only"):
            sql(database_url, statement)


def _tamper(dsn: str, table: str, trigger: str, statement: str) -> None:
    sql(dsn, f"ALTER TABLE {table} DISABLE TRIGGER {trigger}", statement, f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")


def test_verify_names_an_entry_whose_body_was_edited(database_url: str) -> None:
    key = new_key()
    append_many(database_url, key, 40)
    assert verify(database_url, key).ok
    _tamper(database_url, "log_entries", "log_entries_append_only",
            """UPDATE log_entries SET body = replace(body, '"n":17', '"n":71') WHERE idx = 17""")
    report = verify(database_url, key)
    assert not report.ok
    assert report.first_bad_entry == 17
    assert report.problems[0] == "entry 17: stored body does not hash to its leaf hash"


def test_verify_names_an_entry_whose_body_and_leaf_hash_were_rewritten(database_url: str) -> None:
    key = new_key()
    append_many(database_url, key, 40)
    _tamper(database_url, "log_entries", "log_entries_append_only",
            """UPDATE log_entries SET body = replace(body, '"n":17', '"n":71') WHERE idx = 17;
               UPDATE log_entries SET leaf_hash = sha256('\\x00'::bytea || convert_to(body, 'UTF8')) WHERE idx = 17""")
    report = verify(database_url, key)
    assert report.first_bad_entry == 17
    assert report.problems[0] == "entry 17: leaf hash differs from stored tree node (0, 17)"


def test_verify_names_the_entry_when_body_leaf_and_nodes_were_all_rewritten(database_url: str) -> None:
    """Only the signatures are out of the forger's reach: the earliest failing head names the entry."""
    key = new_key()
    append_many(database_url, key, 40)
    forged = {"kind": "test.entry", "index": 17, "time": "2020-01-01T00:00:00.000Z", "body": {"n": 71}}

    async def rewrite(conn: asyncpg.Connection) -> None:
        rows = await conn.fetch("SELECT idx, body FROM log_entries ORDER BY idx")
        leaves = [merkle.leaf_hash(r["body"].encode()) for r in rows]
        leaves[17] = merkle.leaf_hash(canonical_json(forged))
        await conn.execute("ALTER TABLE log_entries DISABLE TRIGGER log_entries_append_only")
        await conn.execute("ALTER TABLE log_nodes DISABLE TRIGGER log_nodes_append_only")
        await conn.execute("UPDATE log_entries SET body = $1, leaf_hash = $2 WHERE idx = 17",
                           canonical_json(forged).decode(), leaves[17])
        await conn.execute("DELETE FROM log_nodes")
        for i, leaf in enumerate(leaves):
            for level, index, h in merkle.completed_nodes(i, leaf, lambda lv, ix: stored[(lv, ix)]):
                stored[(level, index)] = h
        await conn.executemany("INSERT INTO log_nodes (level, idx, hash) VALUES ($1, $2, $3)",
                               [(lv, ix, h) for (lv, ix), h in stored.items()])
        await conn.execute("ALTER TABLE log_entries ENABLE TRIGGER log_entries_append_only")
        await conn.execute("ALTER TABLE log_nodes ENABLE TRIGGER log_nodes_append_only")

    stored: dict[tuple[int, int], bytes] = {}
    run_db(database_url, rewrite)
    report = verify(database_url, key)
    assert not report.ok
    assert report.problems[0] == "tree head 18: root does not match entries 0..17; first differing entry 17"
    assert report.first_bad_entry == 17


def test_verify_reports_a_deleted_entry_and_a_forged_head(database_url: str) -> None:
    key = new_key()
    append_many(database_url, key, 10)
    _tamper(database_url, "log_entries", "log_entries_append_only", "DELETE FROM log_entries WHERE idx = 6")
    report = verify(database_url, key)
    assert report.problems[0] == "entry 6 is missing (next stored entry is 7)"

    other = new_key()
    sql(database_url, "TRUNCATE log_entries, log_nodes, log_tree_heads")
    append_many(database_url, key, 4)
    append_many(database_url, other, 1)  # signed by a key that is not the platform's
    report = verify(database_url, key)
    assert report.problems[0].startswith("tree head 5: signed by key ")


# --- audit command ------------------------------------------------------------------------


def test_run_verify_exit_codes(database_url: str, settings: Settings, tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert asyncio.run(audit.run_verify(database_url, settings, out=out, err=err)) == 1
    assert "no platform key" in err.getvalue()

    key = load_or_create(settings.platform_key_path)
    append_many(database_url, key, 12)
    out = io.StringIO()
    assert asyncio.run(audit.run_verify(database_url, settings, out=out)) == 0
    assert out.getvalue().startswith("OK: 12 entries, 12 signed tree heads")

    pem = tmp_path / "log-key.pem"
    pem.write_text(key.public_pem)
    assert asyncio.run(audit.run_verify(database_url, settings, public_key=pem, out=io.StringIO())) == 0
    assert asyncio.run(audit.run_verify(database_url, settings, public_key=new_key().public_pem,
                                        out=io.StringIO())) == 1

    _tamper(database_url, "log_entries", "log_entries_append_only",
            "UPDATE log_entries SET body = body || ' ' WHERE idx = 3")
    out = io.StringIO()
    assert asyncio.run(audit.run_verify(database_url, settings, out=out)) == 1
    assert "entry 3: stored body does not hash to its leaf hash" in out.getvalue()


# --- HTTP API -----------------------------------------------------------------------------


@pytest.fixture
def log_client(settings: Settings) -> Any:
    """A client whose app signs with the key the test appends with (same data directory)."""
    key = load_or_create(settings.platform_key_path)
    with TestClient(create_app(settings)) as client:
        yield client, key


def test_empty_log_api_and_page(log_client: Any) -> None:
    client, _ = log_client
    response = client.get("/api/log/tree-head")
    assert response.status_code == 404 and response.json()["error"]["code"] == "log_empty"
    assert client.get("/api/log/entries").json() == {"entries": [], "tree_size": 0, "next": None}
    client.cookies.set("lang", "en")
    page = client.get("/log")
    assert page.status_code == 200
    assert "The log is empty" in page.text


def test_well_known_key_checks_the_tree_heads_the_api_serves(log_client: Any, database_url: str) -> None:
    client, key = log_client
    append_many(database_url, key, 13)
    published = client.get("/.well-known/tenderhall-log-key").json()
    assert published["algorithm"] == "Ed25519" and published["key_id"] == key.key_id
    public = load_public_pem(published["public_key_pem"])

    head = client.get("/api/log/tree-head").json()
    assert head["tree_size"] == 13
    assert log.TreeHead.from_json(head).verify(public)
    assert client.get("/api/log/tree-head?size=5").json()["tree_size"] == 5

    for size in (1, 7, 13):
        for index in range(size):
            body = client.get(f"/api/log/proof/inclusion?index={index}&size={size}").json()
            entry = client.get(f"/api/log/entries/{index}").json()
            assert log.verify_receipt_proof(entry["canonical"].encode(), index, body["tree_head"], body["proof"],
                                            published["public_key_pem"])
    body = client.get("/api/log/proof/consistency?old=4&new=13").json()
    old_head, new_head = log.TreeHead.from_json(body["old_tree_head"]), log.TreeHead.from_json(body["new_tree_head"])
    assert old_head.verify(public) and new_head.verify(public)
    assert merkle.verify_consistency(4, 13, old_head.root_hash, new_head.root_hash, [bytes.fromhex(p) for p in body["proof"]])
    assert client.get("/api/log/proof/consistency?old=13").json()["proof"] == []


def test_entries_are_paginated_with_a_next_link(log_client: Any, database_url: str) -> None:
    client, key = log_client
    append_many(database_url, key, 7)
    first = client.get("/api/log/entries?limit=3").json()
    assert [e["index"] for e in first["entries"]] == [0, 1, 2]
    assert first["next"] == "/api/log/entries?start=3&limit=3"
    second = client.get(first["next"]).json()
    third = client.get(second["next"]).json()
    assert [e["index"] for e in third["entries"]] == [6] and third["next"] is None
    entry = first["entries"][1]
    assert entry["entry"]["body"] == {"n": 1, "name": "投标 1"}
    assert merkle.leaf_hash(entry["canonical"].encode()).hex() == entry["leaf_hash"]
    assert client.get("/api/log/entries/99").status_code == 404
    client.cookies.set("lang", "en")
    page = client.get("/log")
    assert page.status_code == 200 and 'data-index="6"' in page.text


@pytest.mark.parametrize(("url", "message"), [
    ("/api/log/tree-head?size=8", "size 8 is larger than the log (5 entries)"),
    ("/api/log/tree-head?size=0", "'size' must be at least 1, got 0"),
    ("/api/log/tree-head?size=abc", "'size' must be a non-negative integer, got 'abc'"),
    ("/api/log/entries?limit=101", "'limit' must be at most 100, got 101"),
    ("/api/log/entries?limit=0", "'limit' must be at least 1, got 0"),
    ("/api/log/entries?start=-1", "'start' must be a non-negative integer, got '-1'"),
    ("/api/log/proof/inclusion", "the query parameter 'index' is required"),
    ("/api/log/proof/inclusion?index=5", "index 5 is not in a tree of size 5 (0..4)"),
    ("/api/log/proof/inclusion?index=1&size=6", "size 6 is larger than the log (5 entries)"),
    ("/api/log/proof/inclusion?index=2&size=2", "index 2 is not in a tree of size 2 (0..1)"),
    ("/api/log/proof/consistency?old=0", "'old' must be at least 1, got 0"),
    ("/api/log/proof/consistency?old=4&new=3", "old size 4 is larger than new size 3"),
    ("/api/log/proof/consistency?old=1&new=9", "new size 9 is larger than the log (5 entries)"),
])
def test_bad_parameters_get_a_400_that_says_what_is_wrong(log_client: Any, database_url: str, url: str, message: str) -> None:
    client, key = log_client
    append_many(database_url, key, 5)
    response = client.get(url)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] == message


def test_a_log_cut_back_is_caught_by_a_kept_tree_head(database_url: str, settings: Settings, tmp_path: Path) -> None:
    # Deleting the newest entries with their nodes and heads leaves a log consistent with itself;
    # only a tree head someone kept (a bidder's receipt) shows what went missing.
    key = load_or_create(settings.platform_key_path)
    results = append_many(database_url, key, 9)
    kept = tmp_path / "receipt.json"
    kept.write_text(json.dumps({"receipt": "any", "tree_head": results[7].tree_head.as_json()}))
    out = io.StringIO()
    assert asyncio.run(audit.run_verify(database_url, settings, known_heads=[kept], out=out)) == 0
    assert "1 known tree head(s) match the log" in out.getvalue()

    for table, trigger, where in (("log_entries", "log_entries_append_only", "idx >= 6"),
                                  ("log_tree_heads", "log_tree_heads_append_only", "tree_size > 6")):
        _tamper(database_url, table, trigger, f"DELETE FROM {table} WHERE {where}")
    _tamper(database_url, "log_nodes", "log_nodes_append_only",
            "DELETE FROM log_nodes WHERE (idx + 1) * (1::bigint << level) > 6")
    assert verify(database_url, key).ok, "the shortened log is consistent with itself"
    out = io.StringIO()
    assert asyncio.run(audit.run_verify(database_url, settings, known_heads=[kept], out=out)) == 1
    assert "known tree head 8: the log holds only 6 entries; entries 6..7 were removed" in out.getvalue()

    forged = results[7].tree_head.as_json() | {"tree_size": 5}
    kept.write_text(json.dumps(forged))
    out = io.StringIO()
    assert asyncio.run(audit.run_verify(database_url, settings, known_heads=[kept], out=out)) == 1
    assert "known tree head 5: its signature is not the platform key's" in out.getvalue()


def test_cli_audit_verify_takes_known_heads(database_url: str, settings: Settings, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    key = load_or_create(settings.platform_key_path)
    head = append_many(database_url, key, 3)[-1].tree_head.as_json()
    kept = tmp_path / "head.json"
    kept.write_text(json.dumps(head))
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert cli.main(["audit", "verify", "--data-dir", str(settings.data_dir), "--known-head", str(kept)]) == 0
    assert "1 known tree head(s) match the log" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("{}")
    assert cli.main(["audit", "verify", "--data-dir", str(settings.data_dir), "--known-head", str(tmp_path / "bad.json")]) == 1
    assert "not a signed tree head" in capsys.readouterr().err
