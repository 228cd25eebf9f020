"""Login, logout, sessions, CSRF and user administration, through the real app and database."""

from __future__ import annotations

import asyncio
import uuid

from starlette.testclient import TestClient

from tenderhall import accounts, db
from tenderhall.settings import Settings
from tests.factories import PASSWORD, login, make_organisation, make_user, new_credit_code, run_db


def _count(dsn: str, sql: str, *args: object) -> int:
    return run_db(dsn, lambda c: c.fetchval(sql, *args))


def _login_page_token(client: TestClient) -> str:
    """Open the login page; return the double-submit token it put in the form and cookie."""
    page = client.get("/login")
    assert page.status_code == 200
    token = client.cookies.get("th_csrf")
    assert token and f'value="{token}"' in page.text
    return token


# --- JSON login ------------------------------------------------------------------------------


def test_api_login_returns_user_and_csrf_token(client: TestClient, settings: Settings) -> None:
    user = make_user(settings.database_url, "agent")
    response = client.post("/api/session", json={"username": user.username, "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["user"]["username"] == user.username and body["user"]["roles"] == ["agent"]
    assert len(body["csrf_token"]) >= 32
    current = client.get("/api/session")
    assert current.status_code == 200 and current.json()["user"]["id"] == str(user.id)
    assert current.json()["csrf_token"] == body["csrf_token"]
    assert _count(settings.database_url, "SELECT count(*) FROM audit_events WHERE action = 'login' AND actor_id = $1",
                  user.id) == 1


def test_wrong_password_is_401_with_precise_message(client: TestClient, settings: Settings) -> None:
    user = make_user(settings.database_url, "agent")
    response = client.post("/api/session", json={"username": user.username, "password": "wrong password!"})
    assert response.status_code == 401
    assert response.json() == {"error": {"code": "login_failed", "message": "wrong username or password"}}
    assert "th_session" not in response.cookies
    assert client.get("/api/session").json()["error"]["code"] == "login_required"


def test_unknown_user_gets_the_same_answer_as_a_wrong_password(client: TestClient) -> None:
    response = client.post("/api/session", json={"username": "nobody-here", "password": "whatever123"})
    assert response.status_code == 401 and response.json()["error"]["code"] == "login_failed"


def test_api_login_requires_json(client: TestClient, settings: Settings) -> None:
    user = make_user(settings.database_url, "agent")
    response = client.post("/api/session", data={"username": user.username, "password": PASSWORD})
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_api_login_missing_field_is_400(client: TestClient) -> None:
    response = client.post("/api/session", json={"username": "someone"})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "password is required"


def test_rate_limit_gives_429_with_retry_after(client: TestClient, settings: Settings) -> None:
    user = make_user(settings.database_url, "agent")
    for _ in range(settings.login_failures_per_user):
        assert client.post("/api/session", json={"username": user.username, "password": "wrong password!"}).status_code == 401
    # Even the right password is refused now: the limit is checked before the password.
    response = client.post("/api/session", json={"username": user.username, "password": PASSWORD})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == str(settings.login_window_seconds)
    assert response.json()["error"]["code"] == "too_many_attempts"


def test_session_cookie_flags(client: TestClient, settings: Settings) -> None:
    user = make_user(settings.database_url, "agent")
    response = client.post("/api/session", json={"username": user.username, "password": PASSWORD})
    cookie = next(v for k, v in response.headers.multi_items() if k == "set-cookie" and v.startswith("th_session="))
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert "httponly" in flags
    assert "samesite=lax" in flags
    assert "path=/" in flags
    assert "secure" not in flags  # settings.cookie_secure is False in tests


def test_session_cookie_is_secure_when_configured(settings: Settings) -> None:
    from tenderhall.app import create_app

    user = make_user(settings.database_url, "agent")
    with TestClient(create_app(settings.with_(cookie_secure=True))) as secure_client:
        response = secure_client.post("/api/session", json={"username": user.username, "password": PASSWORD})
    cookie = next(v for k, v in response.headers.multi_items() if k == "set-cookie" and v.startswith("th_session="))
    assert "secure" in {part.strip().lower() for part in cookie.split(";")}


def test_logout_ends_the_session_on_the_server(client: TestClient, settings: Settings) -> None:
    user = make_user(settings.database_url, "agent")
    login(client, user)
    stolen = client.cookies.get("th_session")
    assert client.delete("/api/session").status_code == 200
    assert _count(settings.database_url, "SELECT count(*) FROM sessions WHERE user_id = $1", user.id) == 0
    # A copy of the old cookie is worthless now.
    client.cookies.set("th_session", stolen)
    assert client.get("/api/session").status_code == 401
    assert _count(settings.database_url, "SELECT count(*) FROM audit_events WHERE action = 'logout'") == 1


def test_login_replaces_an_earlier_session_from_the_same_browser(client: TestClient, settings: Settings) -> None:
    user = make_user(settings.database_url, "agent")
    login(client, user)
    login(client, user)
    assert _count(settings.database_url, "SELECT count(*) FROM sessions WHERE user_id = $1", user.id) == 1


def test_parallel_wrong_passwords_cannot_pass_the_limit_together(settings: Settings) -> None:
    """Guesses sent at once are counted one after another: at most the limit is ever checked."""
    user = make_user(settings.database_url, "agent")
    attempts = 12

    async def guess() -> str:
        conn = await db.connect(settings.database_url)
        try:
            await accounts.authenticate(conn, user.username, "wrong password!", "203.0.113.7", settings)
        except accounts.LoginThrottled:
            return "throttled"
        except accounts.LoginFailed:
            return "failed"
        finally:
            await conn.close()
        return "ok"

    async def main() -> list[str]:
        return await asyncio.gather(*(guess() for _ in range(attempts)))

    outcomes = asyncio.run(main())
    assert outcomes.count("failed") == settings.login_failures_per_user, outcomes
    assert outcomes.count("throttled") == attempts - settings.login_failures_per_user, outcomes
    assert _count(settings.database_url, "SELECT count(*) FROM login_attempts WHERE username = $1",
                  user.username) == settings.login_failures_per_user


def test_a_right_password_records_one_successful_attempt(client: TestClient, settings: Settings) -> None:
    user = make_user(settings.database_url, "agent")
    assert client.post("/api/session", json={"username": user.username, "password": PASSWORD}).status_code == 200
    rows = run_db(settings.database_url, lambda c: c.fetch(
        "SELECT succeeded FROM login_attempts WHERE username = $1", user.username))
    assert [r["succeeded"] for r in rows] == [True]


# --- page login ------------------------------------------------------------------------------


def test_form_login_redirects_to_a_local_next(client: TestClient, settings: Settings) -> None:
    user = make_user(settings.database_url, "agent")
    token = _login_page_token(client)
    response = client.post("/login", data={"username": user.username, "password": PASSWORD, "csrf_token": token,
                                           "next": "/keys"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/keys"
    assert client.get("/api/session").status_code == 200


def test_form_login_ignores_an_external_next(client: TestClient, settings: Settings) -> None:
    user = make_user(settings.database_url, "agent")
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        client.cookies.delete("th_session")
        token = _login_page_token(client)
        response = client.post("/login", data={"username": user.username, "password": PASSWORD, "csrf_token": token,
                                               "next": target}, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/", target


def test_form_login_failure_rerenders_with_401(client: TestClient, settings: Settings) -> None:
    user = make_user(settings.database_url, "agent")
    token = _login_page_token(client)
    client.cookies.set("lang", "en")
    response = client.post("/login", data={"username": user.username, "password": "wrong password!", "csrf_token": token})
    assert response.status_code == 401
    assert "Wrong username or password." in response.text
    assert "th_session" not in response.cookies


def test_form_login_failure_message_is_chinese_by_default(client: TestClient, settings: Settings) -> None:
    user = make_user(settings.database_url, "agent")
    token = _login_page_token(client)
    response = client.post("/login", data={"username": user.username, "password": "wrong password!", "csrf_token": token})
    assert response.status_code == 401
    assert "用户名或密码错误" in response.text


def test_form_login_throttled_is_429_with_retry_after(client: TestClient, settings: Settings) -> None:
    user = make_user(settings.database_url, "agent")
    token = _login_page_token(client)
    for _ in range(settings.login_failures_per_user):
        client.post("/login", data={"username": user.username, "password": "wrong password!", "csrf_token": token})
    response = client.post("/login", data={"username": user.username, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == str(settings.login_window_seconds)


def test_form_login_without_csrf_token_is_refused(client: TestClient, settings: Settings) -> None:
    user = make_user(settings.database_url, "agent")
    _login_page_token(client)
    response = client.post("/login", data={"username": user.username, "password": PASSWORD}, follow_redirects=False)
    assert response.status_code == 403
    assert 'data-code="csrf_failed"' in response.text
    assert _count(settings.database_url, "SELECT count(*) FROM sessions") == 0


def test_oversized_login_form_is_413_before_any_attempt(client: TestClient, settings: Settings) -> None:
    user = make_user(settings.database_url, "agent")
    token = _login_page_token(client)
    response = client.post("/login", data={"username": user.username, "password": "wrong password!",
                                           "csrf_token": token, "pad": "x" * 70_000})  # over the 64 KiB default
    assert response.status_code == 413
    assert 'data-code="too_large"' in response.text
    assert _count(settings.database_url, "SELECT count(*) FROM login_attempts") == 0


def test_oversized_login_form_without_length_is_cut_off(client: TestClient, settings: Settings) -> None:
    user = make_user(settings.database_url, "agent")
    token = _login_page_token(client)
    body = f"username={user.username}&password=wrong+password%21&csrf_token={token}&pad=".encode()

    def chunks():  # no Content-Length: the body arrives in pieces
        yield body
        for _ in range(80):
            yield b"x" * 1024

    response = client.post("/login", content=chunks(),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert response.status_code == 413
    assert _count(settings.database_url, "SELECT count(*) FROM login_attempts") == 0


def test_login_form_with_too_many_fields_is_refused(client: TestClient, settings: Settings) -> None:
    user = make_user(settings.database_url, "agent")
    token = _login_page_token(client)
    data = {"username": user.username, "password": "wrong password!", "csrf_token": token,
            **{f"f{i}": "1" for i in range(200)}}
    response = client.post("/login", data=data)
    assert response.status_code == 413
    assert _count(settings.database_url, "SELECT count(*) FROM login_attempts") == 0


def test_multipart_login_form_is_415(client: TestClient, settings: Settings) -> None:
    user = make_user(settings.database_url, "agent")
    token = _login_page_token(client)
    response = client.post("/login", data={"username": user.username, "password": PASSWORD, "csrf_token": token},
                           files={"upload": ("a.bin", b"\0" * 10, "application/octet-stream")},
                           follow_redirects=False)
    assert response.status_code == 415
    assert 'data-code="unsupported_media_type"' in response.text
    assert _count(settings.database_url, "SELECT count(*) FROM login_attempts") == 0
    assert _count(settings.database_url, "SELECT count(*) FROM sessions") == 0


def test_multipart_admin_form_is_415_even_with_a_csrf_header(client: TestClient, settings: Settings) -> None:
    admin = make_user(settings.database_url, "admin")
    login(client, admin)
    response = client.post("/admin/users", data={"form": "organisation", **_org_body()},
                           files={"upload": ("a.bin", b"\0", "application/octet-stream")}, follow_redirects=False)
    assert response.status_code == 415
    assert _count(settings.database_url, "SELECT count(*) FROM organisations") == 0


def test_form_logout_ends_session_and_clears_cookie(client: TestClient, settings: Settings) -> None:
    user = make_user(settings.database_url, "agent")
    token = login(client, user)
    response = client.post("/logout", data={"csrf_token": token}, headers={"X-CSRF-Token": ""}, follow_redirects=False)
    # An empty header counts as a wrong token; the form field is only read without a header.
    assert response.status_code == 403
    del client.headers["X-CSRF-Token"]
    response = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert any(k == "set-cookie" and v.startswith('th_session=""') or v.startswith("th_session=;")
               for k, v in response.headers.multi_items() if k == "set-cookie")
    assert _count(settings.database_url, "SELECT count(*) FROM sessions WHERE user_id = $1", user.id) == 0


def test_pages_send_anonymous_users_to_login(client: TestClient) -> None:
    response = client.get("/admin/users", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/admin/users"


# --- CSRF --------------------------------------------------------------------------------------


def _org_body() -> dict[str, str]:
    return {"credit_code": new_credit_code(), "name": "福建某某建设有限公司", "kind": "bidder"}


def test_post_with_session_but_no_csrf_token_is_refused(client: TestClient, settings: Settings) -> None:
    admin = make_user(settings.database_url, "admin")
    login(client, admin)
    del client.headers["X-CSRF-Token"]
    response = client.post("/api/organisations", json=_org_body())
    assert response.status_code == 403 and response.json()["error"]["code"] == "csrf_failed"
    assert _count(settings.database_url, "SELECT count(*) FROM organisations") == 0


def test_post_with_wrong_csrf_token_is_refused(client: TestClient, settings: Settings) -> None:
    admin = make_user(settings.database_url, "admin")
    login(client, admin)
    response = client.post("/api/organisations", json=_org_body(), headers={"X-CSRF-Token": "not-the-token"})
    assert response.status_code == 403 and response.json()["error"]["code"] == "csrf_failed"
    assert _count(settings.database_url, "SELECT count(*) FROM organisations") == 0


def test_another_sessions_csrf_token_is_refused(client: TestClient, settings: Settings) -> None:
    admin, other = make_user(settings.database_url, "admin"), make_user(settings.database_url, "admin")
    other_token = login(client, other)
    login(client, admin)
    response = client.post("/api/organisations", json=_org_body(), headers={"X-CSRF-Token": other_token})
    assert response.status_code == 403 and response.json()["error"]["code"] == "csrf_failed"


def test_cross_origin_request_is_refused(client: TestClient, settings: Settings) -> None:
    admin = make_user(settings.database_url, "admin")
    login(client, admin)
    response = client.post("/api/organisations", json=_org_body(), headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert response.json()["error"] == {"code": "csrf_failed", "message": "cross-origin request refused"}
    assert _count(settings.database_url, "SELECT count(*) FROM organisations") == 0


def test_same_origin_header_is_accepted(client: TestClient, settings: Settings) -> None:
    admin = make_user(settings.database_url, "admin")
    login(client, admin)
    response = client.post("/api/organisations", json=_org_body(), headers={"Origin": "http://testserver"})
    assert response.status_code == 201


def test_cross_origin_json_login_is_refused(client: TestClient, settings: Settings) -> None:
    user = make_user(settings.database_url, "agent")
    response = client.post("/api/session", json={"username": user.username, "password": PASSWORD},
                           headers={"Origin": "https://evil.example"})
    assert response.status_code == 403 and response.json()["error"]["code"] == "csrf_failed"
    assert _count(settings.database_url, "SELECT count(*) FROM sessions") == 0


# --- administration ----------------------------------------------------------------------------


def test_admin_creates_organisation_and_user(client: TestClient, settings: Settings) -> None:
    admin = make_user(settings.database_url, "admin")
    login(client, admin)
    org = client.post("/api/organisations", json=_org_body())
    assert org.status_code == 201, org.text
    org_id = org.json()["organisation"]["id"]
    user = client.post("/api/users", json={"username": "bidder.zhang", "display_name": "张三", "password": PASSWORD,
                                           "roles": ["bidder"], "organisation_id": org_id})
    assert user.status_code == 201, user.text
    assert user.json()["user"]["organisation_id"] == org_id
    actions = run_db(settings.database_url, lambda c: c.fetch("SELECT action FROM audit_events ORDER BY id"))
    assert [r["action"] for r in actions] == ["login", "organisation.created", "user.created"]
    # The new user can log in.
    fresh = client.post("/api/session", json={"username": "bidder.zhang", "password": PASSWORD})
    assert fresh.status_code == 200 and fresh.json()["user"]["organisation_name"] == "福建某某建设有限公司"


def test_bad_credit_code_check_character_is_400_with_reason(client: TestClient, settings: Settings) -> None:
    admin = make_user(settings.database_url, "admin")
    login(client, admin)
    response = client.post("/api/organisations", json={"credit_code": "91350100M000100Y44", "name": "某公司", "kind": "bidder"})
    assert response.status_code == 400
    assert response.json()["error"] == {"code": "invalid_credit_code", "message": "check character is 4 but should be 3"}
    assert _count(settings.database_url, "SELECT count(*) FROM organisations") == 0


def test_duplicate_credit_code_is_409(client: TestClient, settings: Settings) -> None:
    admin = make_user(settings.database_url, "admin")
    login(client, admin)
    body = _org_body()
    assert client.post("/api/organisations", json=body).status_code == 201
    response = client.post("/api/organisations", json=body)
    assert response.status_code == 409 and response.json()["error"]["code"] == "conflict"


def test_admin_page_shows_bad_credit_code(client: TestClient, settings: Settings) -> None:
    admin = make_user(settings.database_url, "admin")
    token = login(client, admin)
    del client.headers["X-CSRF-Token"]
    response = client.post("/admin/users", data={"csrf_token": token, "form": "organisation",
                                                 "credit_code": "91350100M000100Y44", "name": "某公司", "kind": "bidder"})
    assert response.status_code == 400
    assert "check character is 4 but should be 3" in response.text
    assert 'value="91350100M000100Y44"' in response.text  # the input is kept for correction
    assert _count(settings.database_url, "SELECT count(*) FROM organisations") == 0


def test_admin_page_form_creates_user(client: TestClient, settings: Settings) -> None:
    admin = make_user(settings.database_url, "admin")
    org_id = make_organisation(settings.database_url)
    token = login(client, admin)
    del client.headers["X-CSRF-Token"]
    response = client.post("/admin/users", data={"csrf_token": token, "form": "user", "username": "bidder.li",
                                                 "display_name": "李四", "password": PASSWORD, "roles": ["bidder"],
                                                 "organisation_id": str(org_id)}, follow_redirects=False)
    assert response.status_code == 303, response.text
    page = client.get(response.headers["location"])
    assert page.status_code == 200 and "bidder.li" in page.text


def test_user_validation_messages(client: TestClient, settings: Settings) -> None:
    admin = make_user(settings.database_url, "admin")
    tenderer = make_organisation(settings.database_url, kind="tenderer")
    login(client, admin)
    cases = [
        ({"username": "ab", "password": PASSWORD, "roles": ["agent"]}, 400, "a username has 3 to 64 characters"),
        ({"username": "weak.one", "password": "short", "roles": ["agent"]}, 400, "at least 10 characters"),
        ({"username": "norole", "password": PASSWORD, "roles": []}, 400, "unknown role(s): (none given)"),
        ({"username": "badrole", "password": PASSWORD, "roles": ["king"]}, 400, "unknown role(s): king"),
        ({"username": "lonely", "password": PASSWORD, "roles": ["bidder"]}, 400, "a bidder must belong to a bidder organisation"),
        ({"username": "wrongorg", "password": PASSWORD, "roles": ["bidder"], "organisation_id": str(tenderer)}, 400,
         "a bidder must belong to a bidder organisation"),
        ({"username": "ghostorg", "password": PASSWORD, "roles": ["agent"], "organisation_id": str(uuid.uuid4())}, 400,
         "no organisation has id"),
        ({"username": "mixed", "password": PASSWORD, "roles": ["bidder", "expert"], "organisation_id": None}, 400,
         "a bidder"),
        ({"username": admin.username, "password": PASSWORD, "roles": ["agent"]}, 409, "is taken"),
    ]
    for body, status, message in cases:
        response = client.post("/api/users", json=body)
        assert response.status_code == status, (body, response.text)
        assert message in response.json()["error"]["message"], (body, response.text)
    assert _count(settings.database_url, "SELECT count(*) FROM users") == 1


def test_non_admin_gets_role_forbidden(client: TestClient, settings: Settings) -> None:
    agent = make_user(settings.database_url, "agent")
    login(client, agent)
    for response in (client.post("/api/organisations", json=_org_body()), client.get("/api/users"),
                     client.post("/api/users", json={"username": "x-y-z", "password": PASSWORD, "roles": ["admin"]})):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "role_forbidden"
    assert _count(settings.database_url, "SELECT count(*) FROM users") == 1
    page = client.get("/admin/users")
    assert page.status_code == 403 and 'data-code="role_forbidden"' in page.text


def test_users_are_paginated(client: TestClient, settings: Settings) -> None:
    admin = make_user(settings.database_url, "admin", username="aaa-admin")
    for i in range(4):
        make_user(settings.database_url, "expert", username=f"expert-{i:02d}")
    login(client, admin)
    first = client.get("/api/users", params={"page": 1, "per_page": 2}).json()
    second = client.get("/api/users", params={"page": 2, "per_page": 2}).json()
    third = client.get("/api/users", params={"page": 3, "per_page": 2}).json()
    assert first["total"] == 5 and first["page"] == 1 and first["per_page"] == 2
    assert [u["username"] for u in first["users"]] == ["aaa-admin", "expert-00"]
    assert [u["username"] for u in second["users"]] == ["expert-01", "expert-02"]
    assert [u["username"] for u in third["users"]] == ["expert-03"]
    assert "password_hash" not in first["users"][0]
    assert client.get("/api/users").json()["per_page"] == 20


def test_pagination_bounds_are_precise(client: TestClient, settings: Settings) -> None:
    login(client, make_user(settings.database_url, "admin"))
    for params, message in [({"per_page": 101}, "per_page must be between 1 and 100"),
                            ({"per_page": 0}, "per_page must be between 1 and 100"),
                            ({"page": 0}, "page starts at 1"),
                            ({"page": "x"}, "page must be a positive whole number, got 'x'"),
                            ({"page": -1}, "page must be a positive whole number, got '-1'")]:
        response = client.get("/api/users", params=params)
        assert response.status_code == 400 and response.json()["error"]["message"] == message, params


def test_openapi_documents_the_account_routes(client: TestClient) -> None:
    paths = client.get("/api/openapi.json").json()["paths"]
    assert set(paths["/api/session"]) == {"get", "post", "delete"}
    assert paths["/api/users"]["get"]["x-roles"] == ["admin"]
    assert "429" in paths["/api/session"]["post"]["responses"]
    assert paths["/api/keys"]["post"]["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "sign_spki", "decrypt_spki"]
