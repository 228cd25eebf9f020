"""Re-verify a draw from what was published: its record, its two log entries and the log's public key.

`check_published` is pure: the record is recomputed (draw_record.verify_record) and then tied
to the log — the commitment was logged before the tree head that entered the seed, the draw's
own entry is the very next one after that head (so no head could be tried and discarded),
and every value in that entry is the record's. The page, the API and `tenderhall draw verify`
all call it; only where the three inputs come from differs.
"""

from __future__ import annotations

import uuid
from typing import Any, Mapping

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from evaluation.draw_record import Verification, verify_record
from evaluation.draw_store import draw_record
from tenderhall import log
from tenderhall.log import TreeHead

SAME_FIELDS = ("spec_sha256", "candidates_sha256", "commitment", "secret", "seed", "result", "tree_head")


def check_published(record: Any, scheduled: Mapping[str, Any] | None, drawn: Mapping[str, Any] | None,
                    public_key: Ed25519PublicKey | None) -> Verification:
    """Every problem found, or ok. `scheduled`/`drawn` are the log entries ({kind, index, body});
    without a public key the tree head's signature is reported as unchecked."""
    problems = list(verify_record(record).problems)
    if not isinstance(record, Mapping):
        return Verification(False, tuple(problems))
    try:
        head = TreeHead.from_json(record.get("tree_head") or {})
    except (KeyError, TypeError, ValueError) as exc:
        return Verification(False, (*problems, f"the tree head is malformed: {exc}"))
    if public_key is None:
        problems.append("the tree head's signature was not checked: no platform public key given")
    elif not head.verify(public_key):
        problems.append("the tree head is not signed by the platform's log key")
    draw_id = record.get("draw")
    if not scheduled or scheduled.get("kind") != "draw.scheduled" or scheduled["body"].get("draw") != draw_id:
        problems.append("the log holds no draw.scheduled entry for this draw at the given index")
    else:
        if scheduled["body"].get("commitment") != record.get("commitment"):
            problems.append("the commitment published when the draw was scheduled is not the record's")
        if scheduled["body"].get("spec_sha256") != record.get("spec_sha256"):
            problems.append("the spec published when the draw was scheduled is not the record's")
        if scheduled["index"] >= head.tree_size:
            problems.append("the tree head in the seed does not include the commitment: it was not fixed in advance")
    if not drawn or drawn.get("kind") != "draw.drawn" or drawn["body"].get("draw") != draw_id:
        problems.append("the log holds no draw.drawn entry for this draw at the given index")
    else:
        if drawn["index"] != head.tree_size:
            problems.append("the draw's log entry does not immediately follow the tree head its seed used")
        for name in SAME_FIELDS:
            if drawn["body"].get(name) != record.get(name):
                problems.append(f"the logged {name} differs from the record's")
    return Verification(not problems, tuple(problems))


async def verify_draw(conn: asyncpg.Connection, draw_id: uuid.UUID, public_key: Ed25519PublicKey) -> Verification | None:
    """check_published over this server's own copy; None when no run draw has this id."""
    record = await draw_record(conn, draw_id)
    if record is None:
        return None
    return check_published(record, await _entry(conn, record["scheduled_log_index"]),
                           await _entry(conn, record["drawn_log_index"]), public_key)


async def _entry(conn: asyncpg.Connection, index: int | None) -> dict[str, Any] | None:
    found = await log.entry(conn, index) if index is not None else None
    return found.entry if found else None
