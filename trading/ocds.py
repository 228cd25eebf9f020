"""Open data: one tender and its opening as an OCDS 1.1 release package (bids and lots extensions).

Pure module: no I/O; the publication time is passed in. Input is the tender as
`GET /api/tenders/{id}` gives it and, once there is one, the opening hall snapshot as the
host sees it (docs/hall.md). What the hall keeps secret stays out: before the bidder list is
published the package says nothing about bidders, and a bid's price appears only once it
has been read out (唱标).

Mappings (OCDS 1.1.5 codelists; the extensions' at their 1.1 versions):
- tender status: `active` until the opening ends, then `complete` (closed), `unsuccessful`
  (failed, 流标) or `cancelled`; a lot is `unsuccessful` when it failed.
- bid status (closed bidStatus codelist: invited, pending, valid, disqualified, withdrawn):
  `valid` for a bid admitted at the opening (deposit confirmed; opened, or in a lot that failed
  for too few bids: it counted as valid towards the minimum); `disqualified` for a bid excluded
  because its deposit was not confirmed; `withdrawn` for a bid that was not decrypted in time
  (void), as practice treats it; `pending` while it is still being decrypted. The evaluation
  that follows may disqualify a `valid` bid in a later release.
- award criteria: lowest evaluated price and reasonable low price → `priceOnly`, comprehensive
  scoring → `ratedCriteria`, with the Chinese method name in awardCriteriaDetails.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Mapping

OCID_PREFIX = "ocds-th0000"
OCDS_VERSION = "1.1"
CURRENCY = "CNY"
# Organisation identifier scheme of the unified social credit code (统一社会信用代码, GB 32100).
CREDIT_CODE_SCHEME = "CN-USCC"
EXTENSIONS = (
    "https://raw.githubusercontent.com/open-contracting-extensions/ocds_bid_extension/v1.1.5/extension.json",
    "https://raw.githubusercontent.com/open-contracting-extensions/ocds_lots_extension/v1.1.5/extension.json",
)
# Steps before the bidder list is published: bidders are still secret (docs/hall.md).
_BEFORE_LIST = frozenset({"locked", "waiting", "sign_in", "bidder_list"})
_AWARD_CRITERIA: dict[str, tuple[str, str]] = {
    "lowest_evaluated_price": ("priceOnly", "经评审的最低投标价法"),
    "reasonable_price": ("priceOnly", "合理低价法"),
    "comprehensive_scoring": ("ratedCriteria", "综合评估法"),
}
_BUYER_ID = "tenderer"
_AGENT_ID = "agent"


class OcdsError(ValueError):
    """The input cannot be published as OCDS (a draft, a naive time, an amount a JSON number cannot hold)."""


def release_package(tender: Mapping[str, Any], opening: Mapping[str, Any] | None, *, uri: str,
                    published_date: datetime, publisher_name: str,
                    agent: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The release package (one release) describing `tender` and, when given, its opening.

    `agent` is the agent's organisation ({"name", "credit_code"?}), published as the procuring
    entity. Amounts become JSON numbers: an int when whole, else a float only when it reads
    back as exactly the same decimal. Raises OcdsError for a draft tender, a naive
    `published_date`, or an amount that is negative or that a float cannot hold exactly.
    """
    if tender.get("status") == "draft":
        raise OcdsError("a draft tender is not published")
    if published_date.tzinfo is None:
        raise OcdsError("published_date must be timezone-aware")
    release = _release(tender, opening, published_date, agent)
    return {
        "uri": uri,
        "version": OCDS_VERSION,
        "extensions": list(EXTENSIONS),
        "publishedDate": rfc3339(published_date),
        "publisher": {"name": publisher_name},
        "releases": [release],
    }


def ocid(tender_id: str) -> str:
    """The open contracting id of a tender: the platform prefix and the tender's UUID."""
    return f"{OCID_PREFIX}-{tender_id}"


# ---------------------------------------------------------------------------- the release


def _release(tender: Mapping[str, Any], opening: Mapping[str, Any] | None, published_date: datetime,
             agent: Mapping[str, Any] | None) -> dict[str, Any]:
    process = ocid(str(tender["id"]))
    cancelled = tender.get("status") == "cancelled"
    # The opening counts only once its bidder list is public; before that it adds nothing.
    listed = opening if opening is not None and opening.get("step") not in _BEFORE_LIST else None
    if listed is not None:
        # The hall's last event id versions the release: every change in the hall bumps it.
        stage = f"opening-{listed.get('step')}-{listed.get('last_event_id', 0)}"
        date = _latest((t.get("at") for t in listed.get("timeline") or ()), published_date)
    else:
        stage = f"tender-v{tender.get('version', 1)}"
        date = _latest([tender.get("published_at")] + [c.get("changed_at") for c in tender.get("changes") or ()],
                       published_date)
    if cancelled:
        stage, tag = f"cancelled-{stage}", ["tenderCancellation"]
    else:
        tag = ["tenderUpdate"] if listed is not None else ["tender"]

    parties: dict[str, dict[str, Any]] = {}
    _add_party(parties, {"id": _BUYER_ID, "name": tender["tenderer"], "roles": ["buyer"]})
    block = _tender(tender, listed, cancelled)
    release: dict[str, Any] = {
        "ocid": process,
        "id": f"{process}-{stage}",
        "date": date,
        "tag": tag,
        "initiationType": "tender",
        "language": "zh",
        "parties": [],
        "buyer": {"id": _BUYER_ID, "name": tender["tenderer"]},
        "tender": block,
    }
    if agent is not None:
        party = _organisation(agent.get("name"), agent.get("credit_code"), "procuringEntity", fallback_id=_AGENT_ID)
        _add_party(parties, party)
        block["procuringEntity"] = {"id": party["id"], "name": party["name"]}
    if listed is not None:
        bids, tenderers = _bids(listed, date)
        release["bids"] = bids
        for party in tenderers:
            _add_party(parties, party)
        block["tenderers"] = [{"id": p["id"], "name": p["name"]} for p in tenderers]
        block["numberOfTenderers"] = len(tenderers)
    release["parties"] = list(parties.values())
    return release


def _add_party(parties: dict[str, dict[str, Any]], party: dict[str, Any]) -> None:
    """Add a party, or its roles to the party with the same id (an agent may also bid elsewhere)."""
    known = parties.get(party["id"])
    if known is None:
        parties[party["id"]] = party
    else:
        known["roles"] += [r for r in party["roles"] if r not in known["roles"]]


def _tender(tender: Mapping[str, Any], opening: Mapping[str, Any] | None, cancelled: bool) -> dict[str, Any]:
    step = opening.get("step") if opening else None
    if cancelled:
        status = "cancelled"
    elif step == "closed":
        status = "complete"
    elif step == "failed":
        status = "unsuccessful"
    else:
        status = "active"
    block: dict[str, Any] = {
        "id": str(tender["code"]),
        "title": tender["name"],
        "status": status,
        "value": _value(tender["budget"]),
        "procurementMethod": "open",
        "procurementMethodDetails": "公开招标",
        "submissionMethod": ["electronicSubmission"],
        "tenderPeriod": _period(tender.get("published_at"), tender["deadline"]),
    }
    if step == "failed" and opening is not None and opening.get("failure_reason"):
        block["statusDetails"] = str(opening["failure_reason"])
    criteria = _AWARD_CRITERIA.get(str(tender.get("evaluation_method")))
    if criteria is not None:
        block["awardCriteria"], block["awardCriteriaDetails"] = criteria
    outcomes = {str(l.get("code")): l for l in (opening.get("lots") or ())} if opening else {}
    block["lots"] = [_lot(l, outcomes.get(str(l["code"])), status) for l in tender.get("lots") or ()]
    return block


def _lot(lot: Mapping[str, Any], outcome: Mapping[str, Any] | None, tender_status: str) -> dict[str, Any]:
    failed = outcome is not None and outcome.get("status") == "failed"
    status = "unsuccessful" if failed and tender_status != "cancelled" else tender_status
    entry: dict[str, Any] = {"id": str(lot["code"]), "title": lot.get("name"), "status": status}
    if lot.get("budget") not in (None, ""):
        entry["value"] = _value(lot["budget"])
    return entry


# ---------------------------------------------------------------------------- bids


def bid_status(status: str, deposit: str | None) -> str:
    """The OCDS bidStatus code of a hall bid status (see the module docstring for why)."""
    if status == "opened":
        return "valid"
    if status == "excluded":
        # Excluded either for the bidder's deposit or because its whole lot failed (流标);
        # only the first is a judgement on the bid.
        return "valid" if deposit == "confirmed" else "disqualified"
    if status in ("void", "failed"):
        return "withdrawn"
    return "pending"


def _bids(opening: Mapping[str, Any], date: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The bids extension's block and the tenderer parties, from the published bidder list."""
    deposits = {str(b.get("organisation_id")): b.get("deposit") for b in opening.get("bidders") or ()}
    details: list[dict[str, Any]] = []
    parties: dict[str, dict[str, Any]] = {}
    for b in opening.get("bids") or ():
        party = _organisation(b.get("bidder"), b.get("credit_code"), "tenderer",
                              fallback_id=f"org-{b.get('organisation_id')}")
        parties.setdefault(party["id"], party)
        detail: dict[str, Any] = {
            "id": str(b["bid_id"]),
            "status": bid_status(str(b.get("status")), deposits.get(str(b.get("organisation_id")))),
            "tenderers": [{"id": party["id"], "name": party["name"]}],
            "relatedLots": [str(b["lot"])],
        }
        if b.get("received_at"):
            detail["date"] = rfc3339(b["received_at"])
        price = _read_out_price(b)
        if price is not None:
            detail["value"] = _value(price)
        details.append(detail)
    lots = sorted({d["relatedLots"][0] for d in details})
    # Per lot; the whole tender too when there is more than one lot (else it would repeat the lot's).
    statistics = _statistics(details, None, date) if len(lots) != 1 else []
    for lot in lots:
        statistics += _statistics([d for d in details if d["relatedLots"][0] == lot], lot, date)
    return {"statistics": statistics, "details": details}, list(parties.values())


def _read_out_price(bid: Mapping[str, Any]) -> Any:
    # Only an opened bid that has been read out shows its price; the snapshot's summary is null before.
    if bid.get("status") != "opened" or not isinstance(bid.get("summary"), Mapping):
        return None
    return bid["summary"].get("price")


def _statistics(details: list[dict[str, Any]], lot: str | None, date: str) -> list[dict[str, Any]]:
    """bids, validBids, electronicBids and bidders (bidStatistics codelist) for one lot or the whole tender."""
    suffix = f"-{lot}" if lot is not None else ""
    counts = {
        "bids": len(details),
        "validBids": sum(1 for d in details if d["status"] == "valid"),
        "electronicBids": len(details),  # every bid on the platform is submitted electronically
        "bidders": len({d["tenderers"][0]["id"] for d in details}),
    }
    out = []
    for measure, value in counts.items():
        entry: dict[str, Any] = {"id": f"{measure}{suffix}", "measure": measure, "value": value, "date": date}
        if lot is not None:
            entry["relatedLot"] = lot
        out.append(entry)
    return out


def _organisation(name: Any, code: Any, role: str, *, fallback_id: str) -> dict[str, Any]:
    """A party; identified by its credit code when it has one."""
    party: dict[str, Any] = {"name": str(name) if name else None, "roles": [role]}
    if code:
        party["id"] = f"{CREDIT_CODE_SCHEME}-{code}"
        party["identifier"] = {"scheme": CREDIT_CODE_SCHEME, "id": str(code), "legalName": party["name"]}
    else:
        party["id"] = fallback_id
    return party


# ---------------------------------------------------------------------------- values


def json_amount(value: Decimal | str | int) -> int | float:
    """A money amount as a JSON number that reads back as exactly the same decimal.

    OCDS amounts are JSON numbers; money here is Decimal, so the conversion must not round.
    Raises OcdsError for text that is no decimal, a negative or non-finite amount, or one a
    double cannot hold exactly (past 2**53, or more than ~15 significant digits).
    """
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise OcdsError(f"not a decimal amount: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise OcdsError(f"not a publishable amount: {value!r}")
    # Readers parse JSON numbers as doubles (JavaScript, most JSON libraries): publish only
    # amounts a double holds exactly, whole ones as integers so that no ".0" appears.
    as_float = float(amount)
    if Decimal(repr(as_float)) != amount:
        raise OcdsError(f"{amount} cannot be published exactly as a JSON number")
    return int(amount) if amount == amount.to_integral_value() else as_float


def _value(amount: Any) -> dict[str, Any]:
    return {"amount": json_amount(amount), "currency": CURRENCY}


def _period(start: Any, end: Any) -> dict[str, Any]:
    period: dict[str, Any] = {"endDate": rfc3339(end)}
    if start:
        period["startDate"] = rfc3339(start)
    return period


def rfc3339(value: datetime | str) -> str:
    """UTC 'YYYY-MM-DDTHH:MM:SS[.ffffff]Z' from an aware datetime or ISO 8601 text with an offset.

    Raises OcdsError for a naive time: OCDS dates must carry their offset.
    """
    moment = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    if moment.tzinfo is None:
        raise OcdsError(f"a time without an offset: {value!r}")
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _latest(values: Iterable[Any], fallback: datetime) -> str:
    """The latest of the given ISO times, or `fallback` when none is given."""
    moments = [datetime.fromisoformat(v.replace("Z", "+00:00")) if isinstance(v, str) else v
               for v in values if v]
    return rfc3339(max(moments) if moments else fallback)
