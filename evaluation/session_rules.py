"""Remote evaluation session rules (远程异地评标): steps, who may act, fault rules, media directions.

Pure module: no I/O, standard library only; times are passed in. The service runs these checks
inside its transactions; every refusal is a SessionRefused whose `code` is stable and whose
`status` is 409 (out of order), 403 (not allowed for this person) or 422 (bad input).

Readings of issue 5 and the rule it quotes (a centre's text under 发改办法规〔2025〕807号:
"超过评标开始时间2小时仍无法解除故障的，由招标人确定是否进行评标"; "在4小时以内解除故障的可继续评标"):
- Boundaries follow Civil Code art. 1259 (以内 includes the number, 超过 does not): a room still
  down at exactly start + 2 h is "delayed", the tenderer decides only after; a room down for
  exactly 4 h is still inside its window, "suspend" only after. Deadlines are therefore the last
  instant of a window; a job crosses the threshold at any moment after it.
- "The session survives any one room's drop; the room rejoins where it left off": the session
  is neither ended nor suspended while a room is inside its window, the other rooms stay and
  may go on with their own work in the current step, but no step is taken until the room is
  back, so it rejoins at the step it left (the quoted rule stops the evaluation meanwhile).
  Each room has its own window, so several rooms down at once are judged one by one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Literal, Mapping, Sequence

Step = Literal["scheduled", "sign_in", "declarations", "chair_election", "initial_review",
               "detailed_review", "consolidation", "report", "closed", "suspended", "failed"]
ORDER: tuple[Step, ...] = ("scheduled", "sign_in", "declarations", "chair_election", "initial_review",
                           "detailed_review", "consolidation", "report", "closed")
STEPS: tuple[Step, ...] = ORDER + ("suspended", "failed")
# The evaluation has started once the main venue opens the session (sign_in -> declarations).
STARTED: tuple[Step, ...] = ORDER[2:8]
FINAL: tuple[Step, ...] = ("closed", "failed")

Kind = Literal["expert", "chair", "supervisor", "room_staff", "main_staff"]
Action = Literal["watch", "sign_in", "declare", "vote", "review", "score", "explain_deviation",
                 "ask_clarification", "sign_report", "advance", "approve_clarification",
                 "confirm_room", "record_decision"]
_EXPERT = frozenset({"watch", "sign_in", "declare", "vote", "review", "score", "explain_deviation",
                     "ask_clarification", "sign_report"})
# The chair is an expert who also moves the session on; main-venue staff move it on before a
# chair exists and record the tenderer's decision; supervisors watch and may not evaluate.
PERMISSIONS: dict[str, frozenset[str]] = {
    "expert": _EXPERT,
    "chair": _EXPERT | {"advance"},
    "supervisor": frozenset({"watch", "approve_clarification"}),
    "room_staff": frozenset({"confirm_room"}),
    "main_staff": frozenset({"watch", "advance", "confirm_room", "record_decision"}),
}
_REVIEW = ("initial_review", "detailed_review", "consolidation")
ACTION_STEPS: dict[str, tuple[Step, ...]] = {
    "watch": STEPS, "sign_in": ("sign_in", "declarations"),  # replacements sign in during declarations
    "declare": ("declarations",), "vote": ("chair_election",), "review": ("initial_review",),
    "score": ("detailed_review",), "explain_deviation": ("consolidation",),
    "ask_clarification": _REVIEW, "approve_clarification": _REVIEW, "sign_report": ("report",),
    "advance": ORDER[:-1], "confirm_room": ("scheduled", "sign_in"), "record_decision": ("scheduled", "sign_in"),
}
MAX_DISSENT = 2000


class SessionRefused(Exception):
    """An act the session does not allow now, from this person, or with this input."""
    def __init__(self, message: str, *, code: str, status: int = 409, detail: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.status, self.detail = message, code, status, dict(detail or {})


def _bad(message: str, code: str = "invalid_input") -> SessionRefused:
    return SessionRefused(message, code=code, status=422)


def _names(items: Iterable[str], limit: int = 10) -> str:
    items = sorted(items)
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


# ---------------------------------------------------------------------------- roles


@dataclass(frozen=True)
class Participant:
    """Who is acting, as far as the rules care; `room` is the evaluation room they sit in, if any."""
    kind: Kind
    room: str | None = None


def require_role(participant: Participant, action: str, *, room: str | None = None) -> None:
    """Raise 403 not_allowed unless this kind of participant may `action`; for confirm_room,
    403 other_room unless `room` is the participant's own room."""
    if action not in ACTION_STEPS:
        raise _bad(f"unknown action {action!r}")
    if action not in PERMISSIONS.get(participant.kind, frozenset()):
        raise SessionRefused(f"a {participant.kind} may not {action.replace('_', ' ')}", code="not_allowed", status=403)
    if action == "confirm_room" and (room is None or room != participant.room):
        raise SessionRefused(f"only the staff of room {room!r} may confirm it ready", code="other_room", status=403)


def require_member(person: str, members: Iterable[str]) -> None:
    """Raise 403 not_on_committee unless `person` is on the committee."""
    if person not in frozenset(members):
        raise SessionRefused("you are not on this evaluation committee", code="not_on_committee", status=403)


# ---------------------------------------------------------------------------- steps


def _known(step: str) -> None:
    if step not in STEPS:
        raise _bad(f"unknown step {step!r}", "unknown_step")


def require_step(current: str, *allowed: str, doing: str = "do this") -> None:
    """Raise 409 wrong_step unless `current` is one of `allowed`."""
    _known(current)
    if current not in allowed:
        raise SessionRefused(f"cannot {doing} now: the session is at step {current!r}, this needs "
                             f"{' or '.join(map(repr, allowed))}", code="wrong_step")


def check_action(step: str, participant: Participant, action: str, *, room: str | None = None) -> None:
    """require_role, then require_step with the steps ACTION_STEPS allows for `action`."""
    require_role(participant, action, room=room)
    require_step(step, *ACTION_STEPS[action], doing=action.replace("_", " "))


@dataclass(frozen=True)
class SessionFacts:
    """What the transition checks need, read by the service: `members` is the committee as it stands
    (chair included, replaced experts out), `rooms` leaves out rooms the tenderer went on without;
    verdicts and scores are (expert, bidder, criterion) cells."""

    members: frozenset[str] = frozenset()
    rooms: frozenset[str] = frozenset()
    rooms_ready: frozenset[str] = frozenset()
    rooms_down: frozenset[str] = frozenset()
    signed_in: frozenset[str] = frozenset()
    declared: frozenset[str] = frozenset()      # declared no conflict
    conflicts: frozenset[str] = frozenset()     # declared a conflict: must be replaced
    ballots: tuple[tuple[str, str], ...] = ()   # (voter, candidate) of the current round
    bidders: tuple[str, ...] = ()
    initial_criteria: tuple[str, ...] = ()
    verdicts: frozenset[tuple[str, str, str]] = frozenset()
    passed_bidders: tuple[str, ...] = ()        # bidders through initial review
    detailed_criteria: tuple[str, ...] = ()
    scores: frozenset[tuple[str, str, str]] = frozenset()
    unexplained_deviations: int = 0
    signatures: frozenset[str] = frozenset()


def _missing_cells(what: str, code: str, members: frozenset[str], bidders: Sequence[str],
                   criteria: Sequence[str], done: frozenset[tuple[str, str, str]]) -> None:
    if not criteria:
        raise _bad(f"the tender defines no {what} criteria")
    per_expert = len(bidders) * len(criteria)
    missing = {e: sum((e, b, c) not in done for b in bidders for c in criteria) for e in members}
    missing = {e: n for e, n in missing.items() if n}
    if missing:
        listed = ", ".join(f"{e} ({n} of {per_expert})" for e, n in sorted(missing.items()))
        raise SessionRefused(f"{what} missing: {listed}", code=code, detail={"missing": missing})


def next_step(current: str, facts: SessionFacts) -> Step:
    """The step the session moves to from `current`, or SessionRefused saying what is missing:
    sign_in -> declarations: every room ready (rooms_not_ready), every member signed in
    (not_signed_in). declarations -> chair_election: declaration_outcome is "complete", else
    replacement_needed or declarations_missing. chair_election -> initial_review: election_result
    has a winner, else no_chair. initial_review -> detailed_review: every member's verdict on every
    bidder and criterion (verdicts_missing); "failed" when no bidder passed. detailed_review ->
    consolidation: every member's score for every passed bidder and criterion (scores_missing).
    consolidation -> report: no unexplained deviation. report -> closed: every member signed.
    Once started, no step is taken while a room is down (room_down): the issue has the room
    "rejoin where it left off", and the rule it quotes stops the evaluation during a fault.
    """
    _known(current)
    if current in FINAL or current == "suspended":
        raise SessionRefused(f"the session is {current}; it has no next step", code="wrong_step")
    if current in STARTED and facts.rooms_down:
        raise SessionRefused(f"room(s) {_names(facts.rooms_down)} are down; the session stays at "
                             f"{current!r} until they rejoin", code="room_down")
    if current == "scheduled":
        return "sign_in"
    if not facts.members:
        raise _bad("the session has no committee")
    if current == "sign_in":
        if not facts.rooms:
            raise _bad("the session has no rooms")
        if facts.rooms - facts.rooms_ready:
            raise SessionRefused(f"rooms not ready: {_names(facts.rooms - facts.rooms_ready)}",
                                 code="rooms_not_ready")
    outcome = declaration_outcome(facts.members, facts.declared, facts.conflicts)
    if current == "declarations" and outcome.outcome == "replace":
        raise SessionRefused(f"{_names(outcome.experts)} declared a conflict of interest and must be "
                             f"replaced before the session can go on", code="replacement_needed",
                             detail={"experts": list(outcome.experts)})
    if current in ("sign_in", "declarations") and facts.members - facts.signed_in:
        raise SessionRefused(f"not signed in: {_names(facts.members - facts.signed_in)}", code="not_signed_in")
    if current == "sign_in":
        return "declarations"
    if current == "declarations":
        if outcome.outcome == "pending":
            raise SessionRefused(f"declarations missing: {_names(outcome.experts)}", code="declarations_missing")
        return "chair_election"
    if current == "chair_election":
        election = election_result(facts.ballots, facts.members)
        if election.winner is None:
            raise SessionRefused(election.message, code="no_chair")
        return "initial_review"
    if current == "initial_review":
        if not facts.bidders:
            raise _bad("the session has no bidders to review")
        if not set(facts.passed_bidders) <= set(facts.bidders):
            raise _bad("passed bidders must be bidders of this session")
        _missing_cells("verdicts", "verdicts_missing", facts.members, facts.bidders,
                       facts.initial_criteria, facts.verdicts)
        # Every bid rejected in the initial review: nothing is left to score (否决所有投标).
        return "detailed_review" if facts.passed_bidders else "failed"
    if current == "detailed_review":
        _missing_cells("scores", "scores_missing", facts.members, facts.passed_bidders,
                       facts.detailed_criteria, facts.scores)
        return "consolidation"
    if current == "consolidation":
        if facts.unexplained_deviations < 0:
            raise _bad("unexplained_deviations cannot be negative")
        if facts.unexplained_deviations:
            raise SessionRefused(f"{facts.unexplained_deviations} flagged deviation(s) have no written reason "
                                 f"yet", code="unexplained_deviations")
        return "report"
    unsigned = facts.members - facts.signatures
    if unsigned:
        raise SessionRefused(f"report not signed by: {_names(unsigned)}", code="signatures_missing")
    return "closed"


def suspend(current: str) -> Step:
    """A session whose fault outcome is "suspend" (or postponed by the tenderer): materials sealed."""
    require_step(current, *ORDER[:-1], doing="suspend the session")
    return "suspended"


def fail(current: str) -> Step:
    """End a session that cannot finish (e.g. suspended, a new committee to be formed)."""
    require_step(current, *(s for s in STEPS if s not in FINAL), doing="end the session as failed")
    return "failed"


# ---------------------------------------------------------------------------- declarations, vote, report


@dataclass(frozen=True)
class Declarations:
    outcome: Literal["complete", "pending", "replace"]
    experts: tuple[str, ...]    # who must be replaced, or who has not declared yet


def declaration_outcome(members: Iterable[str], declared: Iterable[str], conflicts: Iterable[str]) -> Declarations:
    """"replace" (conflicted members, the session cannot go on until the service replaces them),
    else "pending" (members still to declare), else "complete"."""
    members = frozenset(members)
    conflicted = members & frozenset(conflicts)
    if conflicted:
        return Declarations("replace", tuple(sorted(conflicted)))
    pending = members - frozenset(declared)
    return Declarations("pending", tuple(sorted(pending))) if pending else Declarations("complete", ())


def check_declaration(expert: str, members: Iterable[str], declared: Iterable[str], conflicts: Iterable[str]) -> None:
    """403 not_on_committee, 409 already_declared."""
    require_member(expert, members)
    if expert in frozenset(declared) | frozenset(conflicts):
        raise SessionRefused("you have already signed your declaration", code="already_declared")


@dataclass(frozen=True)
class Election:
    winner: str | None
    tally: Mapping[str, int]
    message: str


def election_result(ballots: Sequence[tuple[str, str]], members: Iterable[str]) -> Election:
    """The chair once one candidate holds a strict majority of the committee (not of the votes cast).
    No winner while the majority is still reachable ("waiting"), else "tie: vote again" when the
    leaders are level, "no majority: vote again" otherwise; a new round starts with no ballots.
    Refuses a voter off the committee (403), a vote for a non-member (422), a second vote (409).
    """
    members = frozenset(members)
    voters: set[str] = set()
    for voter, candidate in ballots:
        require_member(voter, members)
        if candidate not in members:
            raise _bad(f"{candidate!r} is not on the committee and cannot be chair", "not_a_candidate")
        if voter in voters:
            raise SessionRefused(f"{voter} has already voted in this round", code="already_voted")
        voters.add(voter)
    tally = Counter(candidate for _, candidate in ballots)
    needed, remaining = len(members) // 2 + 1, len(members) - len(ballots)
    ranked = tally.most_common()
    top = ranked[0][1] if ranked else 0
    if top >= needed:
        return Election(ranked[0][0], dict(tally), f"{ranked[0][0]} elected with {top} of {len(members)} votes")
    if top + remaining >= needed:
        return Election(None, dict(tally), f"{len(ballots)} of {len(members)} votes cast; a chair needs {needed}")
    if len(ranked) > 1 and ranked[1][1] == top:
        return Election(None, dict(tally), "tie: vote again")
    return Election(None, dict(tally), f"no majority ({needed} of {len(members)} needed): vote again")


def check_vote(ballots: Sequence[tuple[str, str]], voter: str, candidate: str, members: Iterable[str]) -> None:
    """Whether `voter` may vote for `candidate` now: election_result's refusals, and 409
    election_over when this round already has a chair."""
    if election_result(ballots, members).winner is not None:
        raise SessionRefused("the chair is already elected", code="election_over")
    election_result(tuple(ballots) + ((voter, candidate),), members)


def check_report_signature(expert: str, members: Iterable[str], signatures: Iterable[str],
                           dissent: str | None = None) -> str | None:
    """The dissent to record with the signature (None when the expert agrees).
    403 not_on_committee, 409 already_signed, 422 dissent_invalid for an empty or too long reason.
    """
    require_member(expert, members)
    if expert in frozenset(signatures):
        raise SessionRefused("you have already signed this report", code="already_signed")
    if dissent is None:
        return None
    dissent = dissent.strip()
    if not dissent or len(dissent) > MAX_DISSENT:
        raise _bad(f"a dissent needs a written reason of 1 to {MAX_DISSENT} characters", "dissent_invalid")
    return dissent


# ---------------------------------------------------------------------------- fault rules


@dataclass(frozen=True)
class FaultRules:
    """Defaults as quoted in the issue (发改办法规〔2025〕807号 and the centres' rules under it)."""
    start_delay_max: timedelta = timedelta(hours=2)
    rejoin_window: timedelta = timedelta(hours=4)

    def __post_init__(self) -> None:
        if self.start_delay_max <= timedelta(0) or self.rejoin_window <= timedelta(0):
            raise _bad("fault rule durations must be positive")


NATIONAL = FaultRules()

RoomStateName = Literal["up", "not_joined", "delaying", "tenderer_decides", "down", "lost"]
Outcome = Literal["on_time", "delayed", "tenderer_decides", "continue", "suspend"]
Decision = Literal["continue_without", "postpone"]


@dataclass(frozen=True)
class RoomFacts:
    room: str
    up: bool                            # connected and ready now
    dropped_at: datetime | None = None  # when it went down after the start (None before the start)


@dataclass(frozen=True)
class RoomState:
    room: str
    state: RoomStateName
    deadline: datetime | None   # last instant the state holds; any later `now` crosses it


def room_state(room: RoomFacts, now: datetime, *, scheduled_start: datetime, started: bool,
               rules: FaultRules = NATIONAL) -> RoomState:
    """One room against the fault rules; both windows include their last instant (module docstring)."""
    if room.up:
        return RoomState(room.room, "up", None)
    if not started:
        if now <= scheduled_start:
            return RoomState(room.room, "not_joined", scheduled_start)
        limit = scheduled_start + rules.start_delay_max
        return RoomState(room.room, "delaying", limit) if now <= limit else RoomState(room.room, "tenderer_decides", None)
    if room.dropped_at is None or room.dropped_at > now:
        raise _bad(f"room {room.room} is down during the evaluation: its drop time must be known and past")
    limit = room.dropped_at + rules.rejoin_window
    return RoomState(room.room, "down", limit) if now <= limit else RoomState(room.room, "lost", None)


@dataclass(frozen=True)
class FaultDecision:
    """The tenderer's recorded choice once a room is still down 2 h after the scheduled start."""
    choice: Decision
    rooms: tuple[str, ...]
    decided_at: datetime


@dataclass(frozen=True)
class FaultOutcome:
    """The outcome, the rooms it concerns, and when each of their windows ends (for the jobs)."""
    outcome: Outcome
    rooms: tuple[str, ...]                              # the rooms concerned
    deadlines: Mapping[str, datetime] = field(default_factory=dict)  # room -> last instant of its window

    @property
    def next_deadline(self) -> datetime | None:
        """When a job should look again (any moment after this instant)."""
        return min(self.deadlines.values(), default=None)


def session_fault_outcome(rooms: Sequence[RoomFacts], scheduled_start: datetime, now: datetime,
                          rules: FaultRules = NATIONAL, *, step: str,
                          decision: FaultDecision | None = None) -> FaultOutcome:
    """What the fault rules say for the session now.
    Before the start (steps scheduled, sign_in): "on_time" up to and including the scheduled start
    (rooms not yet joined listed, deadline the start), "delayed" up to and including start + 2 h,
    "tenderer_decides" after that; once decided, "postpone" gives "suspend" (the quoted rule: seal
    the materials, form a new committee) and "continue_without" leaves those rooms out. After the
    start: "continue" while every down room is within 4 h of its drop (inclusive), naming them
    and their deadlines; "suspend" naming the rooms down longer. Each room is judged on its own
    window, so the session survives one room's drop, or several inside their windows.
    """
    _known(step)
    if step in FINAL or step == "suspended":
        raise SessionRefused(f"the session is {step}; fault rules no longer apply", code="wrong_step")
    started = step in STARTED
    if decision is not None:
        if decision.choice == "postpone":
            if started:
                raise _bad("a postponed session cannot have started")
            return FaultOutcome("suspend", decision.rooms)
        rooms = [r for r in rooms if r.room not in decision.rooms]
    states = [room_state(r, now, scheduled_start=scheduled_start, started=started, rules=rules) for r in rooms]

    def pick(outcome: Outcome, *names: str) -> FaultOutcome:
        chosen = [s for s in states if s.state in names]
        return FaultOutcome(outcome, tuple(sorted(s.room for s in chosen)),
                            {s.room: s.deadline for s in chosen if s.deadline is not None})

    for outcome, name in (("suspend", "lost"), ("tenderer_decides", "tenderer_decides"), ("delayed", "delaying")):
        if any(s.state == name for s in states):
            return pick(outcome, name)  # type: ignore[arg-type]
    return pick("continue" if started else "on_time", "down", "not_joined")


def record_decision(outcome: FaultOutcome, choice: str, now: datetime) -> FaultDecision:
    """Record the tenderer's choice: 409 no_decision_due unless the outcome is tenderer_decides,
    422 for a choice other than continue_without or postpone."""
    if outcome.outcome != "tenderer_decides":
        raise SessionRefused(f"no decision is due: the fault outcome is {outcome.outcome!r}", code="no_decision_due")
    if choice not in ("continue_without", "postpone"):
        raise _bad("the tenderer decides continue_without (the rooms concerned) or postpone", "invalid_decision")
    return FaultDecision(choice, outcome.rooms, now)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- media


MediaRole = Literal["send_receive", "receive_only"]
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")  # RFC 8866 §6.7


def media_role(participant: Participant) -> MediaRole:
    """Supervisors and anyone not seated in an evaluation room (viewers) receive only; a room's
    terminal (an expert, the chair or the room's staff, seated in the room) sends and receives."""
    if participant.kind == "supervisor" or participant.room is None:
        return "receive_only"
    return "send_receive"


def check_offer_directions(role: str, directions: Sequence[str]) -> None:
    """Refuse (403 receive_only) a receive-only participant's offer that would send any media;
    422 bad_direction for a value that is not an SDP direction attribute."""
    if role not in ("send_receive", "receive_only"):
        raise _bad(f"unknown media role {role!r}")
    for direction in directions:
        if direction not in DIRECTIONS:
            raise _bad(f"{direction!r} is not an SDP media direction", "bad_direction")
    if role == "receive_only" and any(d in ("sendrecv", "sendonly") for d in directions):
        raise SessionRefused("you may receive media only: offer recvonly (or inactive) for every track",
                             code="receive_only", status=403)
