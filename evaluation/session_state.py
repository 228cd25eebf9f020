"""A session's evaluation as it stands, read in one go: the facts the step checks need, the
initial review, the consolidation and the report, computed by the pure scoring rules."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping

import asyncpg

from evaluation import session_rules as rules
from evaluation import session_store as ss
from evaluation.price_score import Dissent, report_json
from evaluation.scoring import Consolidation, ReviewResult, Scheme, ScoringError, Verdict, consolidate, initial_review, \
    parse_scheme, passed_bidders, unexplained
from tenderhall.canonical import canonical_json

REPORT_FORMAT = "tenderhall.evaluation-report/1"


def report_signature_message(session_id: uuid.UUID | str, sha256: str) -> bytes:
    """What each expert signs (ECDSA P-256, SHA-256) to sign the report."""
    return f"tenderhall evaluation report\nsession {session_id}\nsha256 {sha256}\n".encode()


def declaration_message(session_id: uuid.UUID | str, conflict: bool, statement: str) -> bytes:
    """What an expert signs for the conflict-of-interest declaration (回避声明)."""
    digest = hashlib.sha256(statement.encode()).hexdigest()
    return (f"tenderhall conflict declaration\nsession {session_id}\nconflict {'yes' if conflict else 'no'}\n"
            f"statement-sha256 {digest}\n").encode()


@dataclass
class State:
    session: asyncpg.Record
    scheme: Scheme
    rooms: list[asyncpg.Record]
    members: list[asyncpg.Record]           # active (not replaced)
    declarations: dict[str, asyncpg.Record]
    ballots: list[tuple[str, str]]
    bids: list[asyncpg.Record]
    verdicts: dict[str, dict[str, dict[str, Verdict]]]
    scores: dict[str, dict[str, dict[str, Decimal]]]
    reasons: dict[tuple[str, str, str], str]
    signatures: dict[str, asyncpg.Record]
    clarifications: list[asyncpg.Record]

    @property
    def member_ids(self) -> frozenset[str]:
        return frozenset(str(m["user_id"]) for m in self.members)

    @property
    def bidders(self) -> tuple[str, ...]:
        return tuple(str(b["organisation_id"]) for b in self.bids)

    @property
    def prices(self) -> dict[str, Any]:
        return {str(b["organisation_id"]): str((b["summary"] or {}).get("price", "")) for b in self.bids}

    def review(self) -> dict[str, ReviewResult] | None:
        """The initial review once every member judged every bidder on every criterion, else None."""
        if not self.members:
            return None
        verdicts = {m: self.verdicts.get(m, {}) for m in self.member_ids}
        try:
            return initial_review(self.scheme, self.bidders, verdicts)
        except ScoringError:
            return None

    def passed(self) -> tuple[str, ...]:
        review = self.review()
        return passed_bidders(review) if review else ()

    def consolidation(self) -> Consolidation | None:
        """The score summary once every member scored every passed bidder on every criterion."""
        passed = self.passed()
        if not passed or not self.members:
            return None
        wanted = {c.id for c in self.scheme.criteria}
        table = {m: {b: self.scores.get(m, {}).get(b, {}) for b in passed} for m in self.member_ids}
        if any(set(table[m][b]) != wanted for m in table for b in passed):
            return None
        return consolidate(self.scheme, table)

    def unexplained(self) -> int:
        summary = self.consolidation()
        return len(unexplained(summary.flags, self.reasons)) if summary else 0

    def facts(self) -> rules.SessionFacts:
        live = [r for r in self.rooms if not r["left_out"]]
        members = self.member_ids
        return rules.SessionFacts(
            members=members,
            rooms=frozenset(str(r["room_id"]) for r in live),
            rooms_ready=frozenset(str(r["room_id"]) for r in live if r["ready_at"] is not None),
            rooms_down=frozenset(str(r["room_id"]) for r in live if r["down_since"] is not None),
            signed_in=members,
            declared=frozenset(u for u, d in self.declarations.items() if not d["conflict"] and u in members),
            conflicts=frozenset(u for u, d in self.declarations.items() if d["conflict"] and u in members),
            ballots=tuple(self.ballots),
            bidders=self.bidders,
            initial_criteria=tuple(c.id for c in self.scheme.review_criteria),
            verdicts=frozenset((e, b, c) for e, by_b in self.verdicts.items() if e in members
                               for b, by_c in by_b.items() for c in by_c),
            passed_bidders=self.passed(),
            detailed_criteria=tuple(c.id for c in self.scheme.criteria),
            scores=frozenset((e, b, c) for e, by_b in self.scores.items() if e in members
                             for b, by_c in by_b.items() for c in by_c),
            unexplained_deviations=self.unexplained(),
            signatures=frozenset(u for u in self.signatures if u in members),
        )

    def report(self, generated_at: str) -> dict[str, Any]:
        """The evaluation report (评标报告) as canonical-JSON-ready content."""
        review = self.review()
        if review is None:
            raise rules.SessionRefused("the initial review is not complete", code="verdicts_missing")
        names = {str(b["organisation_id"]): b["organisation_name"] for b in self.bids}
        experts = {str(m["user_id"]): m["display_name"] for m in self.members}
        content = report_json(self.scheme, review, self.prices, consolidation=self.consolidation(),
                              reasons=self.reasons)
        s = self.session
        return {"format": REPORT_FORMAT, "session": str(s["id"]), "tender": {"id": str(s["tender_id"]),
                "title": s["tender_title"], "lot": s["lot_code"]}, "generated_at": generated_at,
                "chair": str(s["chair_id"]) if s["chair_id"] else None,
                "committee": [{"id": e, "name": experts[e]} for e in sorted(experts)],
                "bidders": [{"id": b, "name": names[b]} for b in self.bidders],
                "clarifications": [{"bidder": str(c["organisation_id"]), "question": c["question"],
                                    "answer": c["answer"], "status": c["status"]}
                                   for c in self.clarifications if c["status"] in ("approved", "answered")],
                **content}


def report_bytes(report: Mapping[str, Any]) -> tuple[bytes, str]:
    data = canonical_json(dict(report))
    return data, hashlib.sha256(data).hexdigest()


def dissent_of(signatures: Mapping[str, asyncpg.Record]) -> list[Dissent]:
    return [Dissent(u, s["dissent"]) for u, s in sorted(signatures.items()) if s["dissent"]]


async def load(conn: asyncpg.Connection, session: asyncpg.Record) -> State:
    sid = session["id"]
    members = [m for m in await ss.members(conn, sid) if m["replaced_at"] is None]
    verdicts: dict[str, dict[str, dict[str, Verdict]]] = {}
    for v in await ss.verdicts(conn, sid):
        verdicts.setdefault(str(v["user_id"]), {}).setdefault(str(v["organisation_id"]), {})[v["criterion"]] = \
            Verdict(v["passed"], v["reason"])
    scores: dict[str, dict[str, dict[str, Decimal]]] = {}
    for r in await ss.scores(conn, sid):
        scores.setdefault(str(r["user_id"]), {}).setdefault(str(r["organisation_id"]), {})[r["criterion"]] = r["score"]
    return State(
        session=session, scheme=parse_scheme(session["scheme"]), rooms=await ss.session_rooms(conn, sid),
        members=members, declarations={str(d["user_id"]): d for d in await ss.declarations(conn, sid)},
        ballots=[(str(b["voter_id"]), str(b["candidate_id"])) for b in await ss.ballots(conn, sid, session["election_round"])],
        bids=await ss.opened_bids(conn, session["tender_id"], session["lot_code"]),
        verdicts=verdicts, scores=scores,
        reasons={(str(r["user_id"]), str(r["organisation_id"]), r["criterion"]): r["reason"]
                 for r in await ss.deviation_reasons(conn, sid)},
        signatures={str(s["user_id"]): s for s in await ss.signatures(conn, sid)},
        clarifications=await ss.clarifications(conn, sid),
    )
