"""Demo data: organisations, users of every role, custodians and bidders with keys, tenders in
several states and a few sealed bids, all made through the platform's own use cases.

Key files for the demo's bidders and custodians are written (passphrase-encrypted) to
`<data dir>/demo-keys/`, so a visitor can restore them on the /keys page or use the CLI.
"""

from __future__ import annotations

import asyncio
import io
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import AsyncIterator

import asyncpg

from tenderhall import accounts, credit_code, db, keyfile, keys
from tenderhall.app import resolve_dsn
from tenderhall.platform_key import load_or_create
from tenderhall.settings import Settings
from trading import sealing, service, submission, uploads

PASSWORD = "tenderhall-demo"
KEY_PASSPHRASE = "demo-keys-passphrase"
CENTRE_CODE = credit_code.make("12350100MB0000001")

ORGANISATIONS = [
    ("centre", CENTRE_CODE, "福州市公共资源交易中心"),
    ("agency", credit_code.make("91350100MA0000002"), "华信招标代理有限公司"),
    ("bidder", credit_code.make("91350100MA0000003"), "闽江建设集团有限公司"),
    ("bidder", credit_code.make("91350100MA0000004"), "海峡路桥工程有限公司"),
    ("bidder", credit_code.make("91350100MA0000005"), "榕城市政工程有限公司"),
    ("bidder", credit_code.make("91350100MA0000006"), "东南智能科技股份有限公司"),
    ("centre", credit_code.make("12350200MB0000007"), "厦门市公共资源交易中心"),
    ("centre", credit_code.make("12350500MB0000008"), "泉州市公共资源交易中心"),
]

# username, display name, roles, organisation index (None: none)
USERS = [
    ("admin", "系统管理员 Admin", ["admin"], 0),
    ("agent", "王代理 Agent Wang", ["agent"], 1),
    ("custodian-agent", "李密钥 (代理) Custodian Li", ["agent", "custodian"], 1),
    ("custodian-supervisor", "陈监督 (密钥) Custodian Chen", ["supervisor", "custodian"], 0),
    ("custodian-centre", "林中心 (密钥) Custodian Lin", ["custodian"], 0),
    ("supervisor", "赵监督 Supervisor Zhao", ["supervisor"], 0),
    ("expert", "周专家 Expert Zhou", ["expert"], None),
    ("bidder-minjiang", "闽江建设 投标人", ["bidder"], 2),
    ("bidder-haixia", "海峡路桥 投标人", ["bidder"], 3),
    ("bidder-rongcheng", "榕城市政 投标人", ["bidder"], 4),
    ("bidder-dongnan", "东南智能 投标人", ["bidder"], 5),
    # Sub-venue staff for remote evaluation: they confirm their centre's room ready (room staff are agents).
    ("staff-xiamen", "黄场务 (厦门副场) Venue staff Huang", ["agent"], 6),
    ("staff-quanzhou", "吴场务 (泉州副场) Venue staff Wu", ["agent"], 7),
]


@dataclass
class DemoWorld:
    users: dict[str, accounts.CurrentUser]
    private_keys: dict[str, keyfile.KeyPairs]  # by username of the key holder (bidder orgs: their first user)


def _print_logins() -> None:
    print("\nDemo logins (password for all: %s)" % PASSWORD)
    for username, name, roles, _ in USERS:
        print(f"  {username:<22} {'+'.join(roles):<20} {name}")


async def _exists(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM organisations WHERE credit_code = $1", CENTRE_CODE))


async def _reset(conn: asyncpg.Connection, settings: Settings) -> None:
    tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'")
    await conn.execute("TRUNCATE " + ", ".join(f'"{r["tablename"]}"' for r in tables) + " RESTART IDENTITY CASCADE")
    import shutil

    shutil.rmtree(settings.storage_dir, ignore_errors=True)


async def _people(pool: asyncpg.Pool, settings: Settings) -> dict[str, accounts.CurrentUser]:
    async with pool.acquire() as conn:
        async with conn.transaction():
            org_ids = [await accounts.create_organisation(conn, credit_code_text=code, name=name, kind=kind)
                       for kind, code, name in ORGANISATIONS]
            users = {}
            for username, name, roles, org in USERS:
                user_id = await accounts.create_user(
                    conn, username=username, display_name=name, password=PASSWORD, roles=roles,
                    organisation_id=org_ids[org] if org is not None else None, scrypt_n=settings.scrypt_n)
                users[username] = await accounts.get_user(conn, user_id)
    return users  # type: ignore[return-value]


async def _register_keys(pool: asyncpg.Pool, settings: Settings, signer, users) -> dict[str, keyfile.KeyPairs]:  # type: ignore[no-untyped-def]
    out_dir = settings.data_dir / "demo-keys"
    out_dir.mkdir(parents=True, exist_ok=True)
    held: dict[str, keyfile.KeyPairs] = {}
    for username, user in users.items():
        if not user.has("bidder", "custodian"):
            continue
        sign, decrypt = keyfile.generate_keys()
        owner = keys.Owner(organisation_id=user.organisation_id) if user.has("bidder") else keys.Owner(custodian_id=user.id)
        key_input = keys.validate_key_set({"sign_spki": keyfile.public_key_spki_b64url(sign),
                                           "decrypt_spki": keyfile.public_key_spki_b64url(decrypt)})
        await keys.register_logged(pool, signer, owner, user.id, key_input)
        data = await asyncio.to_thread(keyfile.encrypt_keyfile, username, sign, decrypt, KEY_PASSPHRASE)
        path = out_dir / f"{username}.keys.json"
        path.write_bytes(data)
        path.chmod(0o600)
        held[username] = keyfile.KeyPairs(owner=username, sign=sign, decrypt=decrypt)
    return held


def _tender(code: str, name: str, deadline: datetime, *, custodians: list[uuid.UUID], lots: int = 1) -> dict:
    return {
        "code": code, "name": name, "tenderer": "福州市城市建设投资集团有限公司",
        "budget": "12800000.00", "control_price": "12500000.00",
        "evaluation_method": "comprehensive_scoring", "deadline": deadline.isoformat(),
        "decryption_minutes": 30,
        "decryption_rule": "custodians" if custodians else "void",
        "custodians": [str(c) for c in custodians], "threshold": 2 if custodians else 0,
        "lots": [{"code": f"L{i}", "name": f"第{i}标段", "budget": "6400000.00"} for i in range(1, lots + 1)],
    }


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _submit(deps: service.Deps, user: accounts.CurrentUser, held: keyfile.KeyPairs, tender: dict, lot: str,
                  price: str, now: datetime) -> None:
    custodian_keys = [keyfile.load_public_key_spki_b64url(c["decrypt_spki"]) for c in tender["custodians"]]
    out = io.BytesIO()
    sealed = sealing.seal_bid(
        summary={"price": price, "duration_days": 365, "quality": "合格"},
        files=[("商务标.txt", f"{user.organisation_name} 投标文件(演示)\n报价 {price} 元\n".encode() * 200),
               ("技术标.txt", "施工组织设计(演示)\n".encode() * 500)],
        tender=tender["id"], lot=lot, organisation=await _credit_code(deps, user), upload_id=str(uuid.uuid4()),
        client_time=now.strftime("%Y-%m-%dT%H:%M:%SZ"), signing_key=held.sign, bidder_public_key=held.decrypt.public_key(),
        custodian_keys=custodian_keys, threshold=tender["threshold"], out=out,
    )
    body = {"manifest": sealed.manifest, "signature": sealed.signature}
    created = await submission.create_upload(deps, user, uuid.UUID(tender["id"]), lot, body)
    data = out.getvalue()
    await submission.patch_upload(deps, user, uuid.UUID(created["upload_id"]), offset_header="0",
                               content_type=uploads.OFFSET_CONTENT_TYPE, content_length=str(len(data)),
                               checksum=None, chunks=_one_chunk(data))


async def _credit_code(deps: service.Deps, user: accounts.CurrentUser) -> str:
    async with deps.pool.acquire() as conn:
        return await conn.fetchval("SELECT credit_code FROM organisations WHERE id = $1", user.organisation_id)


async def _tenders(deps: service.Deps, users, held) -> list[str]:  # type: ignore[no-untyped-def]
    agent = users["agent"]
    custodians = [users[u].id for u in ("custodian-agent", "custodian-supervisor", "custodian-centre")]
    now = datetime.now(timezone.utc)
    lines = []

    async def published(code: str, name: str, deadline: datetime, **kw) -> dict:  # type: ignore[no-untyped-def]
        draft = await service.create_tender(deps, agent, _tender(code, name, deadline, **kw))
        return await service.publish_tender(deps, agent, uuid.UUID(draft["id"]))

    closing = await published("FZ-2026-GC-003", "水厂设备采购及安装", now + timedelta(seconds=45), custodians=custodians)
    for username, price in (("bidder-minjiang", "5980000.00"), ("bidder-haixia", "6120500.50"),
                            ("bidder-rongcheng", "6033000.00")):
        await _submit(deps, users[username], held[username], closing, "L1", price, now)
    lines.append(f"  {closing['code']}  {closing['name']}: 3 sealed bids, deadline {closing['deadline']} (past it in 45 s)")

    open_tender = await published("FZ-2026-GC-001", "城区道路改造工程施工", now + timedelta(days=3), custodians=custodians, lots=2)
    await _submit(deps, users["bidder-minjiang"], held["bidder-minjiang"], open_tender, "L1", "6250000.00", now)
    await _submit(deps, users["bidder-dongnan"], held["bidder-dongnan"], open_tender, "L2", "6190000.00", now)
    lines.append(f"  {open_tender['code']}  {open_tender['name']}: open for bids, 2 lots, 2 sealed bids")

    void_rule = await published("FZ-2026-FW-002", "智慧交易平台运维服务采购", now + timedelta(days=7), custodians=[])
    lines.append(f"  {void_rule['code']}  {void_rule['name']}: open for bids, no custodians (undecrypted bids are void)")

    draft = await service.create_tender(deps, agent, _tender("FZ-2026-HW-004", "办公设备采购(草稿)", now + timedelta(days=10),
                                                             custodians=custodians))
    lines.append(f"  {draft['code']}  {draft['name']}: draft, not yet published")
    return lines


async def _pool_and_draws(pool: asyncpg.Pool, settings: Settings, signer, users) -> list[str]:  # type: ignore[no-untyped-def]
    """Thousands of experts and sixty intermediaries across Fujian, then two draws for the tender
    closing now: one already drawn (its notices are in the outbox), one scheduled whose secret is
    printed so a visitor can reveal it on the draw's page."""
    from evaluation import draw_replies, draw_service
    from evaluation.demo_pool import seed_demo_pool
    from evaluation.draw import commitment
    from tenderhall.canonical import b64url
    from tenderhall.data_key import load_or_create as load_data_key

    data_key = load_data_key(settings.data_key_path)
    async with pool.acquire() as conn:
        counts = await seed_demo_pool(conn, data_key, experts=3000, intermediaries=60,
                                      recorded_by=users["supervisor"].id, expert_user_id=users["expert"].id)
        tender_id = await conn.fetchval("SELECT id FROM tenders WHERE code = 'FZ-2026-GC-003'")
    deps = draw_service.Deps(pool, settings, signer, data_key)
    agent = users["agent"]
    needed = (datetime.now(timezone.utc) + timedelta(hours=3)).isoformat()
    lines = [f"  {counts['experts']} experts, {counts['intermediaries']} intermediaries (/experts, /intermediaries)"]
    drawn_secret = os.urandom(32)
    drawn = await draw_service.schedule(deps, agent, {
        "purpose": "evaluation", "tender_id": str(tender_id), "title": "水厂设备采购及安装 评标委员会（技术）",
        "needed_at": needed, "commitment": commitment(drawn_secret),
        "spec": {"groups": [{"specialty": "A04", "count": 5, "backups": 2,
                             "quotas": [{"region": "3501", "count": 3}, {"region": "3502", "count": 1}]}]}})
    await draw_service.run(deps, agent, uuid.UUID(drawn["id"]), b64url(drawn_secret))
    await draw_replies.deliver_pending(deps)
    lines.append(f"  drawn: /draws/{drawn['id']} (verify: /draws/{drawn['id']}/verify; notices with their one-time "
                 f"links in {settings.notification_outbox_path})")
    secret = os.urandom(32)
    scheduled = await draw_service.schedule(deps, agent, {
        "purpose": "evaluation", "tender_id": str(tender_id), "title": "水厂设备采购及安装 评标委员会（经济）",
        "needed_at": needed, "commitment": commitment(secret),
        "spec": {"groups": [{"specialty": "A08", "count": 2, "backups": 2}]}})
    lines.append(f"  scheduled: /draws/{scheduled['id']} — reveal this secret there to draw: {b64url(secret)}")
    return lines


async def _venues(pool: asyncpg.Pool, settings: Settings, signer, users) -> list[str]:  # type: ignore[no-untyped-def]
    """Fujian's centres as venues with evaluation rooms, and the evaluation session for the drawn tender."""
    from evaluation.demo_venues import seed_and_describe
    from evaluation.draw_service import Deps
    from tenderhall.data_key import load_or_create as load_data_key

    deps = Deps(pool, settings, signer, load_data_key(settings.data_key_path))
    return await seed_and_describe(deps, admin=users["admin"], agent=users["agent"],
                                   staff=[users["staff-xiamen"], users["staff-quanzhou"]],
                                   supervisor=users["supervisor"], tender_code="FZ-2026-GC-003")


async def _venue_floor(pool: asyncpg.Pool, signer, users) -> list[str]:  # type: ignore[no-untyped-def]
    """The main venue's evaluation floor (FZ-3F) with its positioning transform, as the admin."""
    from venue.demo_floor import describe

    async with pool.acquire() as conn:
        return await describe(conn, signer, users["admin"].id)


async def seed(settings: Settings, *, reset: bool = False) -> None:
    """Seed the demo data once (or again with reset, which empties the database first)."""
    dsn, embedded = await resolve_dsn(settings)
    pool = await db.create_pool(dsn, 1, 4)
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn)
            if await _exists(conn):
                if not reset:
                    print("Demo data is already there (use --reset to seed it again).")
                    _print_logins()
                    return
                await _reset(conn, settings)
        settings.storage_dir.mkdir(parents=True, exist_ok=True)
        signer = load_or_create(settings.platform_key_path)
        deps = service.Deps(pool=pool, settings=settings, signer=signer, registry=uploads.UploadRegistry())
        users = await _people(pool, settings)
        held = await _register_keys(pool, settings, signer, users)
        lines = await _tenders(deps, users, held)
        print("Demo tenders:")
        print("\n".join(lines))
        print("\nExpert pool and draws:")
        print("\n".join(await _pool_and_draws(pool, settings, signer, users)))
        print("\nRemote evaluation (远程异地评标) venues and sessions:")
        print("\n".join(await _venues(pool, settings, signer, users)))
        print("\nThe evaluation floor (venue supervision):")
        print("\n".join(await _venue_floor(pool, signer, users)))
        print(f"\nKey files of the demo's bidders and custodians: {settings.data_dir / 'demo-keys'} "
              f"(passphrase: {KEY_PASSPHRASE}); restore one on the /keys page.")
        _print_logins()
    finally:
        await pool.close()
        if embedded is not None:
            embedded.stop()
