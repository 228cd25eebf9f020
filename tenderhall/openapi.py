"""Build the OpenAPI 3.1 document from the routes' own declarations, so it cannot drift."""

from __future__ import annotations

import re
from typing import Any, Iterable

from starlette.routing import BaseRoute, Mount

from tenderhall.web import PUBLIC, GuardedRoute

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message"],
                             "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
}


def _walk(routes: Iterable[BaseRoute], prefix: str = "") -> Iterable[tuple[str, GuardedRoute]]:
    for r in routes:
        if isinstance(r, Mount):
            yield from _walk(r.routes or [], prefix + r.path)
        elif isinstance(r, GuardedRoute) and r.doc is not None:
            yield prefix + r.path, r


def document(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for path, r in _walk(routes):
        params = re.findall(r"{([^}:]+)(?::[^}]+)?}", path)
        clean = re.sub(r"{([^}:]+):[^}]+}", r"{\1}", path)
        for method in sorted(r.methods or ()):
            if method == "HEAD" and "GET" in (r.methods or ()):
                continue
            doc = r.doc
            assert doc is not None
            op: dict[str, Any] = {
                "summary": doc.summary,
                "tags": list(doc.tags),
                "x-roles": "public" if r.access == PUBLIC else ("any user" if isinstance(r.access, str) else sorted(r.access)),
                "parameters": [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params],
                "responses": {
                    str(doc.status): {"description": "success",
                                      **({"content": {"application/json": {"schema": doc.response}}} if doc.response else {})},
                    **{str(code): {"description": text, "content": {"application/json": {"schema": ERROR_SCHEMA}}}
                       for code, text in doc.extra_responses.items()},
                },
            }
            if r.access != PUBLIC:
                op["security"] = [{"session": []}]
            if doc.request:
                op["requestBody"] = {"required": True, "content": {"application/json": {"schema": doc.request}}}
            paths.setdefault(clean, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tenderhall API", "version": "1"},
        "components": {"securitySchemes": {
            "session": {"type": "apiKey", "in": "cookie", "name": "th_session",
                        "description": "Session cookie from POST /api/session; state-changing calls also send X-CSRF-Token."}}},
        "paths": paths,
    }
