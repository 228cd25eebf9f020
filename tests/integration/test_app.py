"""The app as a whole: health, readiness, the OpenAPI document, language switch, CLI basics."""

from __future__ import annotations

import re

import jsonschema
import pytest
from starlette.routing import Mount
from starlette.testclient import TestClient

from tenderhall import cli, db
from tenderhall.web import GuardedRoute, GuardedWebSocketRoute
from tests.factories import login, make_user


def test_healthz_and_readyz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_readyz_reports_pending_migrations(client: TestClient, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    extra = tmp_path / "migrations"
    extra.mkdir()
    for m in db.load_migrations():
        (extra / f"{m.version:04d}_{m.name}.sql").write_text(m.sql)
    (extra / "9999_future.sql").write_text("-- why\nSELECT 1;")
    monkeypatch.setattr(db, "MIGRATIONS_DIR", extra)
    monkeypatch.setattr(db.pending_migrations, "__defaults__", (extra,))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "9999_future" in response.json()["reason"]


def _api_routes(routes, prefix=""):  # type: ignore[no-untyped-def]
    for r in routes:
        if isinstance(r, Mount):
            yield from _api_routes(r.routes or [], prefix + r.path)
        elif isinstance(r, GuardedRoute) and (prefix + r.path).startswith(("/api/", "/.well-known/")):
            yield prefix + r.path, r


def test_openapi_document_lists_every_json_route_and_nothing_else(client: TestClient) -> None:
    doc = client.get("/api/openapi.json").json()
    jsonschema.Draft202012Validator.check_schema({"type": "object"})
    routes: dict[str, set[str]] = {}
    for raw_path, r in _api_routes(client.app.routes):
        path = re.sub(r"{([^}:]+):[^}]+}", r"{\1}", raw_path)
        assert r.doc is not None, f"{path} has no ApiDoc: the OpenAPI document would miss it"
        methods = {m.lower() for m in (r.methods or ()) if m != "HEAD" or "GET" not in (r.methods or ())}
        routes.setdefault(path, set()).update(methods)
    for path, methods in routes.items():
        assert path in doc["paths"], f"{path} missing from /api/openapi.json"
        assert set(doc["paths"][path]) == methods, path
    assert set(doc["paths"]) - {"/healthz", "/readyz"} <= set(routes), "document lists routes that do not exist"
    for path, item in doc["paths"].items():
        for op in item.values():
            for response in op["responses"].values():
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if schema:
                    jsonschema.Draft202012Validator.check_schema(schema)


def test_documented_responses_match_what_endpoints_return(client: TestClient, database_url: str) -> None:
    login(client, make_user(database_url, "agent"))
    doc = client.get("/api/openapi.json").json()
    checked = 0
    for path, item in doc["paths"].items():
        get = item.get("get")
        if not get or "{" in path or get.get("parameters"):
            continue
        schema = get["responses"].get("200", {}).get("content", {}).get("application/json", {}).get("schema")
        response = client.get(path)
        if schema is None or response.status_code != 200 or not response.headers["content-type"].startswith("application/json"):
            continue
        jsonschema.validate(response.json(), schema)
        checked += 1
    assert checked >= 3, "too few documented GET endpoints were checked"


def test_every_route_declares_access(client: TestClient) -> None:
    for r in client.app.routes:
        if isinstance(r, Mount) and r.path == "/static":
            continue
        assert isinstance(r, (GuardedRoute, GuardedWebSocketRoute)), f"{r} does not declare who may call it"


def test_language_switch_sets_cookie_and_translates(client: TestClient, database_url: str) -> None:
    page = client.get("/login")
    assert "登录" in page.text, "Chinese is the default"
    switched = client.get("/lang?to=en&next=/login", follow_redirects=False)
    assert switched.status_code == 303 and switched.headers["location"] == "/login"
    assert "Log in" in client.get("/login").text
    evil = client.get("/lang?to=en&next=//evil.example/", follow_redirects=False)
    assert evil.headers["location"] == "/"


def test_cli_migrate_dry_run_with_database_url(database_url: str, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert cli.main(["migrate", "--dry-run"]) == 0
    assert "database is up to date" in capsys.readouterr().out


def test_cli_reports_bad_configuration(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TENDERHALL_PORT", "eighty")
    assert cli.main(["migrate", "--dry-run"]) == 2
    assert "TENDERHALL_PORT must be an integer" in capsys.readouterr().err


def test_every_response_carries_security_headers(client: TestClient) -> None:
    for path in ("/login", "/api/tenders", "/static/tenderhall/style.css", "/no/such/page"):
        response = client.get(path)
        assert response.headers["content-security-policy"].startswith("default-src 'self'; script-src 'self'"), path
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "strict-transport-security" not in client.get("/login").headers
    assert client.get("https://testserver/healthz").headers["strict-transport-security"] == "max-age=31536000"


def test_periodic_jobs_run_at_once_then_again_and_survive_a_failure() -> None:
    import asyncio

    from tenderhall.app import run_periodically

    runs: list[str] = []

    async def flaky(app, state) -> None:  # type: ignore[no-untyped-def]
        runs.append("flaky")
        raise RuntimeError("boom")

    async def steady(app, state) -> None:  # type: ignore[no-untyped-def]
        runs.append("steady")

    async def main() -> None:
        task = asyncio.create_task(run_periodically(None, None, [flaky, steady], 0.01))  # type: ignore[arg-type]
        while runs.count("steady") < 2:
            await asyncio.sleep(0.005)
        task.cancel()

    asyncio.run(asyncio.wait_for(main(), 5))
    assert runs[:4] == ["flaky", "steady", "flaky", "steady"]


def test_error_pages_escape_what_the_request_carried(client: TestClient) -> None:
    response = client.get("/tenders/<img src=x onerror=alert(1)>")
    assert response.status_code == 404
    assert "<img src=x" not in response.text and "&lt;img src=x onerror=alert(1)&gt;" in response.text
    percent = client.get("/tenders/%25(x)s")
    assert percent.status_code == 404, "a '%' in a message is text, not a format directive"


def test_page_numbers_are_bounded_everywhere(client: TestClient, database_url: str) -> None:
    login(client, make_user(database_url, "admin"))
    for path in ("/api/tenders", "/tenders", "/api/users", "/api/organisations"):
        for page in ("999999999999999999999", "1000001", "0", "x", "²"):
            response = client.get(path, params={"page": page})
            assert response.status_code == 400, (path, page, response.status_code)
        assert client.get(path, params={"page": "1000000"}).status_code == 200
