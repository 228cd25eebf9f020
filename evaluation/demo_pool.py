"""A realistic, deterministic demo pool: thousands of experts across several cities, and intermediaries.

Plausible Chinese names, valid GB 11643 ID numbers (sealed like real ones), valid credit codes
for a few hundred employers, mobile numbers, titles, one to three leaf specialties each weighted
as real pools are (building works and cost engineering are common, medical devices rare), a few
suspended or retired, some leave days and credit deductions. Loaded with COPY in batches, so
100,000 experts (the draw benchmark) keep memory flat. Demo data, not acts: nothing is logged.
"""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import date, timedelta
from typing import Any

import asyncpg

from evaluation import id_number, pool_service, pool_store
from evaluation.specialty_tree import INTERMEDIARY_ROOT, TREE
from tenderhall import credit_code
from tenderhall.data_key import DataKey

BATCH = 5000

# (division code, city, share of the pool): the demo centre is Fuzhou's, with sub-venues across Fujian.
REGIONS = (
    ("350102", "福州", 9), ("350103", "福州", 6), ("350104", "福州", 7), ("350111", "福州", 5),
    ("350203", "厦门", 8), ("350206", "厦门", 6), ("350502", "泉州", 6), ("350503", "泉州", 6),
    ("350602", "漳州", 5), ("350302", "莆田", 4), ("350702", "南平", 3), ("350404", "三明", 3),
)
SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁"
            "任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴")
GIVEN = ("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志红文斌宇浩凯健俊峰鹏辉琳玲燕萍晨博海波鑫亮"
         "春晓雪梅松林彬兵东旭阳光荣新立云飞德成永宏")
TITLES = (("高级工程师", 40), ("正高级工程师", 10), ("工程师", 8), ("高级经济师", 8), ("注册造价工程师", 10),
          ("注册建造师", 6), ("高级会计师", 5), ("副主任医师", 3), ("主任医师", 2), ("教授", 3), ("副教授", 3),
          ("律师", 2))
# Relative weight of a leaf's branch (its first three characters).
BRANCH_WEIGHT = {"A01": 10, "A02": 6, "A03": 5, "A04": 3, "A05": 2, "A06": 1, "A07": 1, "A08": 9, "A09": 3,
                 "B01": 4, "B02": 2, "B03": 2, "B04": 1, "B05": 1, "B06": 2, "B07": 1,
                 "C01": 4, "C02": 2, "C03": 1, "C04": 1, "C05": 1, "C06": 1, "C07": 1, "D01": 4, "D02": 2}
EMPLOYER_WORDS = ("华建", "中润", "金陵", "恒信", "宏达", "锦程", "天成", "东方", "中科", "博远", "苏源", "长江", "瑞丰",
                  "新城", "大洋", "汇通", "正德", "明德", "华泰", "永安")
EMPLOYER_KINDS = ("建设集团有限公司", "工程咨询有限公司", "建筑设计研究院有限公司", "工程造价咨询有限公司",
                  "信息技术股份有限公司", "市政工程有限公司", "交通规划设计院有限公司", "水利勘测设计院有限公司",
                  "会计师事务所（特殊普通合伙）", "律师事务所", "医疗器械有限公司", "物业服务有限公司")
PHONE_PREFIXES = ("133", "135", "136", "137", "138", "139", "150", "151", "152", "158", "159", "177", "180", "181",
                  "186", "187", "188", "189", "199")


def _leaves() -> tuple[list[str], list[int]]:
    codes = {c for c, _ in TREE}
    leaves = [c for c, _ in TREE if not c.startswith(INTERMEDIARY_ROOT) and len(c) > 1
              and not any(o != c and o.startswith(c) for o in codes)]
    return leaves, [BRANCH_WEIGHT.get(c[:3], 1) for c in leaves]


def _employers(rng: random.Random, count: int) -> list[tuple[str, str, str]]:
    """(name, credit code, region) of `count` employers spread over the cities."""
    regions = [r for r, _, _ in REGIONS]
    cities = {r: c for r, c, _ in REGIONS}
    made = []
    for n in range(count):
        region = regions[n % len(regions)]
        name = f"{cities[region]}{rng.choice(EMPLOYER_WORDS)}{rng.choice(EMPLOYER_KINDS)}"
        made.append((name, credit_code.make(f"91{region}MA{n + 1:07d}"), region))
    return made


def _id_number(rng: random.Random, region: str, taken: set[str]) -> str:
    while True:
        born = date(1958, 1, 1) + timedelta(days=rng.randrange(32 * 365))
        number = id_number.make(f"{region}{born:%Y%m%d}{rng.randrange(1000):03d}")
        if number not in taken:
            taken.add(number)
            return number


async def seed_demo_pool(conn: asyncpg.Connection, data_key: DataKey, *, experts: int = 3000,
                         intermediaries: int = 60, seed: int = 2024, today: date | None = None,
                         recorded_by: uuid.UUID | None = None, expert_user_id: uuid.UUID | None = None,
                         ) -> dict[str, Any]:
    """Fill an empty pool; a pool that already holds experts is left alone (`skipped` says so).

    `recorded_by` (a supervisor's user id) lets the demo record credit deductions as events;
    without it none are made. `expert_user_id` links the first expert to a demo expert login.
    Returns counts: experts, intermediaries, employers, leave_days, credit_events, skipped.
    """
    today = today or date.today()
    counts = {"experts": 0, "intermediaries": 0, "employers": 0, "leave_days": 0, "credit_events": 0,
              "skipped": False}
    async with conn.transaction():
        await pool_service.ensure_specialty_tree(conn)
        if await pool_store.count_all_experts(conn) > 0:
            counts["skipped"] = True
            return counts
        rng = random.Random(seed)
        employers = _employers(rng, max(20, min(400, experts // 10)))
        counts["employers"] = len(employers)
        leaves, weights = _leaves()
        region_codes = [r for r, _, _ in REGIONS]
        region_weights = [w for _, _, w in REGIONS]
        titles, title_weights = [t for t, _ in TITLES], [w for _, w in TITLES]
        leaf_cum = list(itertools.accumulate(weights))
        by_city: dict[str, list[tuple[str, str, str]]] = {}
        for e in employers:
            by_city.setdefault(e[2][:4], []).append(e)
        taken: set[str] = set()
        for start in range(0, experts, BATCH):
            records, specialties, leave, credit = [], [], [], []
            for n in range(start, min(experts, start + BATCH)):
                expert_id = uuid.UUID(int=rng.getrandbits(128), version=4)
                region = rng.choices(region_codes, region_weights)[0]
                # Most experts work in their own city's organisations.
                employer = rng.choice(by_city.get(region[:4]) or employers)
                number = _id_number(rng, region, taken)
                sealed, index, masked = pool_service.seal_id_number(data_key, expert_id, number)
                status = rng.choices(("active", "suspended", "retired"), (96, 2, 2))[0]
                name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))
                records.append((
                    expert_id, name, sealed, index, masked, rng.choice(PHONE_PREFIXES) + f"{rng.randrange(10**8):08d}",
                    f"expert{n + 1:06d}@example.com" if rng.random() < 0.3 else None, employer[0], employer[1],
                    region, rng.choices(titles, title_weights)[0], status,
                    expert_user_id if n == 0 else None))
                for code in sorted(set(rng.choices(leaves, cum_weights=leaf_cum, k=rng.choice((1, 1, 2, 2, 3))))):
                    specialties.append((expert_id, code))
                if rng.random() < 0.05:
                    first = today + timedelta(days=rng.randrange(1, 60))
                    leave += [(expert_id, first + timedelta(days=d)) for d in range(rng.randrange(1, 6))]
                if recorded_by is not None and rng.random() < 0.03:
                    credit.append((expert_id, -rng.choice((5, 10, 10, 20, 30, 45))))
            await pool_store.copy_experts(conn, records, specialties)
            await conn.copy_records_to_table("expert_leave", records=leave, columns=["expert_id", "day"])
            for expert_id, delta in credit:
                score = 100 + delta
                await pool_store.set_score(conn, "expert", expert_id, score)
                await pool_store.insert_credit(conn, "expert", expert_id, delta, score, _REASONS[delta % 4],
                                               "演示数据", recorded_by, None)
            counts["experts"] += len(records)
            counts["leave_days"] += len(leave)
            counts["credit_events"] += len(credit)
        if not await pool_store.count_all_intermediaries(conn):
            counts["intermediaries"] = await _seed_intermediaries(conn, rng, intermediaries)
    return counts


_REASONS = ("无故缺席评标", "评审意见前后矛盾", "评标迟到", "未按规定回避")


async def _seed_intermediaries(conn: asyncpg.Connection, rng: random.Random, count: int) -> int:
    categories = [(c, name) for c, name in TREE if c.startswith(INTERMEDIARY_ROOT) and len(c) > 1]
    records, chosen = [], []
    for n in range(count):
        region, city, _ = REGIONS[n % len(REGIONS)]
        picked = sorted(set(rng.choices(categories, k=rng.choice((1, 1, 2, 3)))))
        agency_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        name = f"{city}{rng.choice(EMPLOYER_WORDS)}{picked[0][1]}有限公司"
        contact = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)
        status = "suspended" if n % 25 == 24 else "active"
        records.append((agency_id, name, credit_code.make(f"91{region}MB{n + 1:07d}"), region, contact,
                        rng.choice(PHONE_PREFIXES) + f"{rng.randrange(10**8):08d}", None, status))
        chosen += [(agency_id, code) for code, _ in picked]
    await pool_store.copy_intermediaries(conn, records, chosen)
    return len(records)
