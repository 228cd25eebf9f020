"""Public endpoints of the transparency log: key, tree heads, entries, proofs, and the /log page.

Everything here is PUBLIC: log entries hold no secrets, and anyone must be able to audit.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from tenderhall import log
from tenderhall.web import PUBLIC, ApiDoc, ApiError, json_ok, render, route

TAGS = ("transparency log",)
PAGE_SIZE = 50  # rows on the /log page

_HEX32 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
TREE_HEAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["log", "tree_size", "root_hash", "timestamp", "key_id", "signature"],
    "description": "Signed message: canonical JSON of {log, tree_size, root_hash, timestamp, key_id}; "
                   "signature is Ed25519, unpadded base64url.",
    "properties": {"log": {"const": "tenderhall"}, "tree_size": {"type": "integer", "minimum": 1},
                   "root_hash": _HEX32, "timestamp": {"type": "string", "format": "date-time"},
                   "key_id": _HEX32, "signature": {"type": "string"}},
}
ENTRY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["index", "kind", "time", "leaf_hash", "canonical", "entry"],
    "description": "leaf_hash = SHA-256(0x00 || UTF-8 bytes of canonical).",
    "properties": {"index": {"type": "integer"}, "kind": {"type": "string"}, "time": {"type": "string"},
                   "leaf_hash": _HEX32, "canonical": {"type": "string"},
                   "entry": {"type": "object", "required": ["kind", "index", "time", "body"]}},
}
KEY_SCHEMA = {"type": "object", "required": ["key_id", "public_key_pem", "algorithm"],
              "properties": {"key_id": _HEX32, "public_key_pem": {"type": "string"}, "algorithm": {"const": "Ed25519"}}}
ENTRIES_SCHEMA = {"type": "object", "required": ["entries", "tree_size", "next"],
                  "properties": {"entries": {"type": "array", "items": ENTRY_SCHEMA},
                                 "tree_size": {"type": "integer"}, "next": {"type": ["string", "null"]}}}
INCLUSION_SCHEMA = {"type": "object", "required": ["index", "tree_size", "leaf_hash", "proof", "tree_head"],
                    "properties": {"index": {"type": "integer"}, "tree_size": {"type": "integer"}, "leaf_hash": _HEX32,
                                   "proof": {"type": "array", "items": _HEX32}, "tree_head": TREE_HEAD_SCHEMA}}
CONSISTENCY_SCHEMA = {"type": "object", "required": ["old", "new", "proof", "old_tree_head", "new_tree_head"],
                      "properties": {"old": {"type": "integer"}, "new": {"type": "integer"},
                                     "proof": {"type": "array", "items": _HEX32},
                                     "old_tree_head": TREE_HEAD_SCHEMA, "new_tree_head": TREE_HEAD_SCHEMA}}


def int_param(request: Request, name: str, default: int | None = None, *, minimum: int = 0) -> int:
    """A non-negative integer query parameter; ApiError 400 naming the parameter otherwise."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if default is None:
            raise ApiError(400, "missing_parameter", f"the query parameter '{name}' is required")
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 16:
        raise ApiError(400, "invalid_parameter", f"'{name}' must be a non-negative integer, got {raw[:40]!r}")
    value = int(raw)
    if value < minimum:
        raise ApiError(400, "invalid_parameter", f"'{name}' must be at least {minimum}, got {value}")
    return value


def _log_error(exc: log.LogError) -> ApiError:
    return ApiError(400, "invalid_parameter", str(exc))


async def _latest_or_empty(conn: Any) -> log.TreeHead:
    head = await log.latest_tree_head(conn)
    if head is None:
        raise ApiError(404, "log_empty", "the log is empty; no tree head has been signed yet")
    return head


async def log_key(request: Request) -> Response:
    """The platform's public log key: check tree head signatures and receipts with it."""
    key = request.state.platform_key
    return json_ok({"key_id": key.key_id, "public_key_pem": key.public_pem, "algorithm": "Ed25519"},
                   headers={"Cache-Control": "public, max-age=3600"})


async def get_tree_head(request: Request) -> Response:
    """The latest signed tree head, or the one for ?size=."""
    async with request.state.pool.acquire() as conn:
        latest = await _latest_or_empty(conn)
        if "size" not in request.query_params:
            return json_ok(latest.as_json())
        size = int_param(request, "size", minimum=1)
        if size > latest.tree_size:
            raise ApiError(400, "invalid_parameter", f"size {size} is larger than the log ({latest.tree_size} entries)")
        head = await log.tree_head(conn, size)
    if head is None:
        raise ApiError(404, "not_found", f"no tree head was signed for size {size}")
    return json_ok(head.as_json())


async def list_entries(request: Request) -> Response:
    """Entries in index order from ?start= (default 0), at most ?limit= (1..100, default 100)."""
    start = int_param(request, "start", 0)
    limit = int_param(request, "limit", log.MAX_PAGE, minimum=1)
    if limit > log.MAX_PAGE:
        raise ApiError(400, "invalid_parameter", f"'limit' must be at most {log.MAX_PAGE}, got {limit}")
    async with request.state.pool.acquire() as conn:
        size = await log.current_size(conn)
        rows = await log.entries(conn, start, limit)
    following = start + len(rows)
    next_link = (f"/api/log/entries?{urlencode({'start': following, 'limit': limit})}"
                 if rows and following < size else None)
    return json_ok({"entries": [e.as_json() for e in rows], "tree_size": size, "next": next_link})


async def get_entry(request: Request) -> Response:
    """One entry by index."""
    index: int = request.path_params["idx"]
    async with request.state.pool.acquire() as conn:
        found = await log.entry(conn, index)
    if found is None:
        raise ApiError(404, "not_found", f"there is no entry {index}")
    return json_ok(found.as_json())


async def get_inclusion_proof(request: Request) -> Response:
    """RFC 9162 inclusion proof of entry ?index= in the tree of ?size= (default: latest)."""
    index = int_param(request, "index")
    async with request.state.pool.acquire() as conn:
        latest = await _latest_or_empty(conn)
        size = int_param(request, "size", latest.tree_size, minimum=1)
        if size > latest.tree_size:
            raise ApiError(400, "invalid_parameter", f"size {size} is larger than the log ({latest.tree_size} entries)")
        if index >= size:
            raise ApiError(400, "invalid_parameter", f"index {index} is not in a tree of size {size} (0..{size - 1})")
        try:
            proof = await log.inclusion_proof(conn, index, size)
        except log.LogError as exc:
            raise _log_error(exc) from None
        head = latest if size == latest.tree_size else await log.tree_head(conn, size)
        found = await log.entry(conn, index)
    if head is None or found is None:
        raise ApiError(404, "not_found", f"no signed tree head for size {size}")
    return json_ok({"index": index, "tree_size": size, "leaf_hash": found.leaf_hash.hex(),
                    "proof": [p.hex() for p in proof], "tree_head": head.as_json()})


async def get_consistency_proof(request: Request) -> Response:
    """RFC 9162 consistency proof between tree sizes ?old= and ?new= (default: latest)."""
    old = int_param(request, "old", minimum=1)
    async with request.state.pool.acquire() as conn:
        latest = await _latest_or_empty(conn)
        new = int_param(request, "new", latest.tree_size, minimum=1)
        if new > latest.tree_size:
            raise ApiError(400, "invalid_parameter", f"new size {new} is larger than the log ({latest.tree_size} entries)")
        if old > new:
            raise ApiError(400, "invalid_parameter", f"old size {old} is larger than new size {new}")
        try:
            proof = await log.consistency_proof(conn, old, new)
        except log.LogError as exc:
            raise _log_error(exc) from None
        old_head = await log.tree_head(conn, old)
        new_head = latest if new == latest.tree_size else await log.tree_head(conn, new)
    if old_head is None or new_head is None:
        raise ApiError(404, "not_found", "no signed tree head for one of the sizes")
    return json_ok({"old": old, "new": new, "proof": [p.hex() for p in proof],
                    "old_tree_head": old_head.as_json(), "new_tree_head": new_head.as_json()})


async def log_page(request: Request) -> Response:
    """The transparency log for people: the latest signed head and the entries, newest first."""
    page = int_param(request, "page", 1, minimum=1)
    async with request.state.pool.acquire() as conn:
        head = await log.latest_tree_head(conn)
        size = head.tree_size if head else 0
        pages = max(1, -(-size // PAGE_SIZE))
        page = min(page, pages)
        end = size - (page - 1) * PAGE_SIZE
        start = max(0, end - PAGE_SIZE)
        rows = await log.entries(conn, start, end - start) if end > start else []
    return render(request, "log.html", {
        "head": head, "entries": list(reversed(rows)), "page": page, "pages": pages, "size": size,
        "key_id": request.state.platform_key.key_id,
    })


_BAD = {400: "invalid or out-of-range parameter", 404: "the log is empty or the item does not exist"}

ROUTES = [
    route("/.well-known/tenderhall-log-key", log_key, access=PUBLIC,
          doc=ApiDoc("The platform's Ed25519 log key", response=KEY_SCHEMA, tags=TAGS)),
    route("/api/log/tree-head", get_tree_head, access=PUBLIC,
          doc=ApiDoc("Latest signed tree head, or ?size=", response=TREE_HEAD_SCHEMA, tags=TAGS, extra_responses=_BAD)),
    route("/api/log/entries", list_entries, access=PUBLIC,
          doc=ApiDoc("Entries from ?start=, at most ?limit= (≤ 100), with a next link",
                     response=ENTRIES_SCHEMA, tags=TAGS, extra_responses={400: _BAD[400]})),
    route("/api/log/entries/{idx:int}", get_entry, access=PUBLIC,
          doc=ApiDoc("One log entry", response=ENTRY_SCHEMA, tags=TAGS, extra_responses={404: "no such entry"})),
    route("/api/log/proof/inclusion", get_inclusion_proof, access=PUBLIC,
          doc=ApiDoc("Inclusion proof of ?index= in the tree of ?size=", response=INCLUSION_SCHEMA, tags=TAGS,
                     extra_responses=_BAD)),
    route("/api/log/proof/consistency", get_consistency_proof, access=PUBLIC,
          doc=ApiDoc("Consistency proof between tree sizes ?old= and ?new=", response=CONSISTENCY_SCHEMA, tags=TAGS,
                     extra_responses=_BAD)),
    route("/log", log_page, access=PUBLIC),
]
