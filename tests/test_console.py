"""The merchant console through Flask's test client: never open by default,
each protection (password, allow-list, the host app's hook), CSRF on every
POST, and the pages showing what the store holds (the funnel, orders, the
outbox, declines, stuck completions, rate-limited agents).

The real-browser test is ``tests/test_console_browser.py``.
"""

from __future__ import annotations

import datetime as dt
import html
import pathlib
import re
import secrets
import sys
import time
import typing as t

import pytest
from flask import Flask
from flask import redirect
from flask import request
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

from flask_acp import queries
from flask_acp.console.access import LOGIN_COOKIE
from flask_acp.console.views import money
from flask_acp.models import Status
from flask_acp.testing import FakePaymentProcessor
from tests.conftest import AGENT_KEY
from tests.conftest import Agent
from tests.conftest import build_app

PASSWORD = "correct horse battery staple"
HASH = generate_password_hash(PASSWORD)
SECRET_KEY = "console-test-secret-key-0123456789"


def console_app(tmp_path: pathlib.Path, **config: t.Any) -> Flask:
    config.setdefault("SECRET_KEY", SECRET_KEY)
    config.setdefault("ACP_CONSOLE_ENABLED", True)
    if not any(k in config for k in ("ACP_CONSOLE_AUTH", "ACP_CONSOLE_ALLOWED_IPS")):
        config.setdefault("ACP_CONSOLE_PASSWORD_HASH", HASH)
    return build_app(tmp_path, **config)


def csrf(page: bytes) -> str:
    found = re.search(rb'name="csrf_token" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1).decode()


def login(client: FlaskClient) -> None:
    page = client.get("/acp-console/login")
    response = client.post("/acp-console/login", data={"password": PASSWORD, "csrf_token": csrf(page.data)})
    assert response.status_code == 302, response.data


def text(response: t.Any) -> str:
    """The page's text, tags removed (what a person reads)."""
    return html.unescape(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)))


def buy(app: Flask) -> dict[str, t.Any]:
    agent = Agent(app.test_client())
    session = agent.ready_session()
    done = agent.complete(session["id"])
    assert done.status_code == 200, done.get_json()
    return t.cast(dict[str, t.Any], done.get_json())


# --------------------------------------------------------------------------- never open


def test_the_console_is_off_by_default(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, SECRET_KEY=SECRET_KEY)
    assert app.test_client().get("/acp-console/").status_code == 404
    assert "acp_console" not in app.blueprints


def test_enabled_without_any_protection_does_not_start(tmp_path: pathlib.Path) -> None:
    with pytest.raises(RuntimeError, match="ACP_CONSOLE_ENABLED: the console is never open"):
        build_app(tmp_path, SECRET_KEY=SECRET_KEY, ACP_CONSOLE_ENABLED=True)


def test_enabled_without_a_secret_key_does_not_start(tmp_path: pathlib.Path) -> None:
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        build_app(tmp_path, ACP_CONSOLE_ENABLED=True, ACP_CONSOLE_PASSWORD_HASH=HASH)


@pytest.mark.parametrize(("key", "value", "problem"), [
    ("ACP_CONSOLE_PASSWORD_HASH", PASSWORD, "must be a Werkzeug password hash"),
    ("ACP_CONSOLE_ALLOWED_IPS", ["10.0.0.0/8", "not-an-ip"], "not an IP address or network"),
    ("ACP_CONSOLE_AUTH", 42, "Not a callable"),
    ("ACP_CONSOLE_AUTH", "no_such_module_here:check", "cannot import"),
    ("ACP_CONSOLE_PREFIX", "console/", "absolute path"),
])
def test_bad_console_settings_are_named(tmp_path: pathlib.Path, key: str, value: t.Any, problem: str) -> None:
    config = {"ACP_CONSOLE_PASSWORD_HASH": HASH, key: value}
    with pytest.raises(RuntimeError, match=re.escape(key) + r".*" + re.escape(problem)):
        console_app(tmp_path, **config)


def test_an_auth_hook_that_cannot_be_imported_is_one_line(tmp_path: pathlib.Path) -> None:
    with pytest.raises(RuntimeError) as raised:
        console_app(tmp_path, ACP_CONSOLE_AUTH="no_such_module_here:check")
    problem = next(line for line in str(raised.value).splitlines() if "ACP_CONSOLE_AUTH" in line)
    assert problem.strip().endswith("No module named 'no_such_module_here'"), str(raised.value)
    assert "Debugged import" not in str(raised.value)  # werkzeug's multi-line report


def test_enabled_without_flask_wtf_names_the_extra(tmp_path: pathlib.Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "flask_wtf", None)
    with pytest.raises(RuntimeError, match=re.escape("pip install 'flask-acp[console]'")):
        console_app(tmp_path)


# --------------------------------------------------------------------------- password


def test_password_login_guards_every_page(tmp_path: pathlib.Path) -> None:
    client = console_app(tmp_path).test_client()
    for path in ("/acp-console/", "/acp-console/orders", "/acp-console/events"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/acp-console/login?next=")
    response = client.post("/acp-console/events/evt_x/replay")
    assert response.status_code == 400  # no CSRF token: refused before anything else


def test_wrong_password_is_refused_and_sets_no_login(tmp_path: pathlib.Path) -> None:
    client = console_app(tmp_path).test_client()
    page = client.get("/acp-console/login")
    response = client.post("/acp-console/login", data={"password": "guess", "csrf_token": csrf(page.data)})
    assert response.status_code == 401
    assert "Wrong password" in text(response)
    assert client.get_cookie(LOGIN_COOKIE, path="/acp-console") is None
    assert client.get("/acp-console/").status_code == 302


def test_password_guessing_is_refused_per_address(tmp_path: pathlib.Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    client = console_app(tmp_path, ACP_TRUSTED_PROXY_HOPS=1).test_client()
    token = csrf(client.get("/acp-console/login").data)
    # counters may be in a shared Redis: a /64 of this run's own
    address = f"2001:db8:{secrets.token_hex(2)}:{secrets.token_hex(2)}::1"
    guesser = {"X-Forwarded-For": address}
    with caplog.at_level("WARNING", logger="flask_acp"):
        for i in range(10):
            response = client.post("/acp-console/login", headers=guesser,
                                   data={"password": f"guess {i}", "csrf_token": token})
            assert response.status_code == 401
    assert f"console: wrong password from {address}" in caplog.text  # the client, not the proxy
    response = client.post("/acp-console/login", headers=guesser,
                           data={"password": PASSWORD, "csrf_token": token})
    assert response.status_code == 429  # even the right password: not checked any more
    assert 1 <= int(response.headers["Retry-After"]) <= 61
    assert "Too many wrong passwords" in text(response)
    assert client.get_cookie(LOGIN_COOKIE, path="/acp-console") is None
    other = address.replace("2001:db8:", "2001:db9:")
    response = client.post("/acp-console/login", headers={"X-Forwarded-For": other},
                           data={"password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302  # another address is not locked out


def test_password_guessing_from_many_addresses_of_one_ipv6_64_is_counted_once(
        tmp_path: pathlib.Path) -> None:
    """An IPv6 host picks its address from a whole /64: a new address per
    guess must not get a new allowance each time."""
    client = console_app(tmp_path, ACP_TRUSTED_PROXY_HOPS=1).test_client()
    token = csrf(client.get("/acp-console/login").data)
    prefix = f"2001:db8:{secrets.token_hex(2)}:{secrets.token_hex(2)}"
    statuses = [client.post("/acp-console/login", headers={"X-Forwarded-For": f"{prefix}::{i + 1:x}"},
                            data={"password": f"guess {i}", "csrf_token": token}).status_code
                for i in range(11)]
    assert statuses == [401] * 10 + [429]


def test_login_cookie_flags_and_redirect_back(tmp_path: pathlib.Path) -> None:
    client = console_app(tmp_path).test_client()
    page = client.get("/acp-console/login?next=/acp-console/orders")
    response = client.post("/acp-console/login?next=/acp-console/orders",
                           data={"password": PASSWORD, "csrf_token": csrf(page.data)})
    assert response.status_code == 302
    assert response.headers["Location"] == "/acp-console/orders"
    cookie = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith(LOGIN_COOKIE + "="))
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/acp-console" in cookie
    assert "Secure" not in cookie  # plain http in testing; over HTTPS the cookie is Secure
    assert client.get("/acp-console/orders").status_code == 200


def test_login_over_https_sets_a_secure_cookie(tmp_path: pathlib.Path) -> None:
    client = console_app(tmp_path).test_client()
    page = client.get("/acp-console/login", base_url="https://shop.example")
    response = client.post("/acp-console/login", base_url="https://shop.example",
                           data={"password": PASSWORD, "csrf_token": csrf(page.data)})
    cookie = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith(LOGIN_COOKIE + "="))
    assert "Secure" in cookie


def test_login_never_redirects_off_the_console(tmp_path: pathlib.Path) -> None:
    client = console_app(tmp_path).test_client()
    for target in ("https://evil.example/", "//evil.example/acp-console/", "/elsewhere"):
        page = client.get("/acp-console/login")
        response = client.post("/acp-console/login", query_string={"next": target},
                               data={"password": PASSWORD, "csrf_token": csrf(page.data)})
        assert response.headers["Location"] == "/acp-console/"


def test_a_new_password_ends_old_logins(tmp_path: pathlib.Path) -> None:
    app = console_app(tmp_path / "a")
    client = app.test_client()
    login(client)
    cookie = client.get_cookie(LOGIN_COOKIE, path="/acp-console")
    assert cookie is not None
    same = console_app(tmp_path / "b").test_client()  # another process of the same app: the login holds
    same.set_cookie(LOGIN_COOKIE, cookie.value, path="/acp-console")
    assert same.get("/acp-console/").status_code == 200
    other = console_app(tmp_path / "c", ACP_CONSOLE_PASSWORD_HASH=generate_password_hash("another one"))
    fresh = other.test_client()
    fresh.set_cookie(LOGIN_COOKIE, cookie.value, path="/acp-console")
    assert fresh.get("/acp-console/").status_code == 302
    forged = console_app(tmp_path / "d", SECRET_KEY="another-secret-key-0123456789").test_client()
    forged.set_cookie(LOGIN_COOKIE, cookie.value, path="/acp-console")
    assert forged.get("/acp-console/").status_code == 302


def test_login_and_logout_need_a_csrf_token(tmp_path: pathlib.Path) -> None:
    client = console_app(tmp_path).test_client()
    response = client.post("/acp-console/login", data={"password": PASSWORD})
    assert response.status_code == 400
    assert client.get_cookie(LOGIN_COOKIE, path="/acp-console") is None
    login(client)
    assert client.post("/acp-console/logout").status_code == 400
    assert client.get("/acp-console/").status_code == 200
    page = client.get("/acp-console/")
    assert client.post("/acp-console/logout", data={"csrf_token": csrf(page.data)}).status_code == 302
    assert client.get("/acp-console/").status_code == 302


# --------------------------------------------------------------------------- allow-list, hook


def test_allow_list_alone(tmp_path: pathlib.Path) -> None:
    app = console_app(tmp_path / "a", ACP_CONSOLE_ALLOWED_IPS=["127.0.0.0/8"])
    assert app.test_client().get("/acp-console/").status_code == 200
    app = console_app(tmp_path / "b", ACP_CONSOLE_ALLOWED_IPS=["10.0.0.0/8", "::1"])
    assert app.test_client().get("/acp-console/").status_code == 403


def test_allow_list_reads_the_address_through_trusted_proxies(tmp_path: pathlib.Path) -> None:
    app = console_app(tmp_path, ACP_CONSOLE_ALLOWED_IPS=["10.1.2.0/24"], ACP_TRUSTED_PROXY_HOPS=1)
    client = app.test_client()
    assert client.get("/acp-console/", headers={"X-Forwarded-For": "10.1.2.3"}).status_code == 200
    assert client.get("/acp-console/", headers={"X-Forwarded-For": "10.1.2.3, 192.0.2.7"}).status_code == 403
    assert client.get("/acp-console/").status_code == 403


def test_allow_list_and_password_both_apply(tmp_path: pathlib.Path) -> None:
    app = console_app(tmp_path, ACP_CONSOLE_ALLOWED_IPS=["127.0.0.1"], ACP_CONSOLE_PASSWORD_HASH=HASH)
    client = app.test_client()
    assert client.get("/acp-console/").status_code == 302
    login(client)
    assert client.get("/acp-console/").status_code == 200
    assert client.get("/acp-console/", environ_base={"REMOTE_ADDR": "192.0.2.1"}).status_code == 403


def host_check() -> t.Any:
    """The host app's own check (a ``module:function`` path in a test)."""
    who = request.headers.get("X-Test-User")
    if who == "admin":
        return True
    if who is None:
        return redirect("/host-login")
    return False


def test_the_host_apps_hook_decides(tmp_path: pathlib.Path) -> None:
    app = console_app(tmp_path, ACP_CONSOLE_AUTH="tests.test_console:host_check")
    client = app.test_client()
    assert client.get("/acp-console/", headers={"X-Test-User": "admin"}).status_code == 200
    assert client.get("/acp-console/", headers={"X-Test-User": "clerk"}).status_code == 403
    response = client.get("/acp-console/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/host-login"


def test_a_hook_returning_anything_but_true_refuses(tmp_path: pathlib.Path) -> None:
    app = console_app(tmp_path, ACP_CONSOLE_AUTH=lambda: "yes")
    assert app.test_client().get("/acp-console/").status_code == 403


def test_https_is_required_outside_testing(tmp_path: pathlib.Path) -> None:
    app = console_app(tmp_path, TESTING=False, ACP_CONSOLE_ALLOWED_IPS=["127.0.0.1"],
                      TRUSTED_HOSTS=["localhost"])
    client = app.test_client()
    assert client.get("/acp-console/").status_code == 403
    assert client.get("/acp-console/", base_url="https://localhost").status_code == 200


def test_the_prefix_is_configurable(tmp_path: pathlib.Path) -> None:
    app = console_app(tmp_path, ACP_CONSOLE_PREFIX="/ops/store", ACP_CONSOLE_ALLOWED_IPS=["127.0.0.1"])
    client = app.test_client()
    assert client.get("/ops/store/").status_code == 200
    assert client.get("/acp-console/").status_code == 404


def test_pages_are_not_cached_framed_or_scripted(tmp_path: pathlib.Path) -> None:
    app = console_app(tmp_path, ACP_CONSOLE_ALLOWED_IPS=["127.0.0.1"])
    response = app.test_client().get("/acp-console/")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert b"<script" not in response.data


# --------------------------------------------------------------------------- what it shows


@pytest.fixture
def open_app(tmp_path: pathlib.Path) -> Flask:
    return console_app(tmp_path, ACP_CONSOLE_ALLOWED_IPS=["127.0.0.1"])


def test_orders_show_payment_and_platform_state(open_app: Flask) -> None:
    done = buy(open_app)
    order = done["order"]
    page = text(open_app.test_client().get("/acp-console/orders"))
    session = open_app.extensions["acp"].storage.sessions.get(done["id"])
    assert order["id"] in page
    assert money(session.order.total, "usd") in page  # e.g. "33.00 USD", from minor units
    assert session.payment.payment_id in page
    assert "succeeded" in page
    assert "created" in page  # the order's status
    assert "agent-one" in page
    # filtered by another agent: not there
    assert order["id"] not in text(open_app.test_client().get("/acp-console/orders?agent=agent-two"))


def test_money_uses_the_currencys_exponent() -> None:
    assert money(1999, "usd") == "19.99 USD"
    assert money(500, "jpy") == "500 JPY"
    assert money(3988, "kwd") == "3.988 KWD"
    assert money(None, "usd") == "-"


def test_funnel_counts_sessions_per_agent_and_day(open_app: Flask) -> None:
    client = open_app.test_client()
    one, two = Agent(client), Agent(client, key="agent-two-key-0123456789")
    assert one.create().status_code == 201  # no address: not ready
    ready = one.ready_session()
    buy(open_app)
    canceled = two.ready_session()
    assert two.post(f"/checkout_sessions/{canceled['id']}/cancel").status_code == 200
    now = dt.datetime.now(dt.timezone.utc)
    rows = {r.agent: r for r in queries.funnel(open_app.extensions["acp"].storage.sessions, days=3, now=now)}
    assert rows["agent-one"].day == now.date()
    mine = rows["agent-one"]
    assert (mine.created, mine.reached_ready, mine["completed"]) == (3, 2, 1)
    assert rows["agent-one"]["not_ready_for_payment"] == 1
    assert rows["agent-one"]["ready_for_payment"] == 1
    assert (rows["agent-two"].created, rows["agent-two"]["canceled"]) == (1, 1)
    page = client.get("/acp-console/").get_data(as_text=True)
    row = re.search(r'<tr data-day="[^"]+" data-agent="agent-one">(.*?)</tr>', page, re.S)
    assert row is not None
    assert '<td class="num created">3</td>' in row.group(1)
    assert '<td class="num completed">1</td>' in row.group(1)
    assert ready["id"]  # used above


def test_funnel_leaves_out_days_before_the_window(open_app: Flask) -> None:
    buy(open_app)
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=5)
    assert queries.funnel(open_app.extensions["acp"].storage.sessions, days=3, now=later) == []
    assert len(queries.funnel(open_app.extensions["acp"].storage.sessions, days=6, now=later)) == 1


def test_stuck_completions_and_declines_are_listed(tmp_path: pathlib.Path) -> None:
    processor = FakePaymentProcessor()
    app = console_app(tmp_path, ACP_CONSOLE_ALLOWED_IPS=["127.0.0.1"], payment_processor=processor)
    client = app.test_client()
    agent = Agent(client)
    declined = agent.ready_session()
    response = agent.complete(declined["id"], token="spt_decline_1")
    assert response.status_code == 200
    assert response.get_json()["status"] != "completed", response.get_json()
    sessions = app.extensions["acp"].storage.sessions
    assert sessions.get(declined["id"]).payment_failures == 1
    stuck = agent.ready_session()
    stored = sessions.get(stuck["id"])
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    sessions.save(stored.replace(status=Status.COMPLETE_IN_PROGRESS, updated_at=old))
    page = client.get("/acp-console/").get_data(as_text=True)
    declines = re.search(r'id="declines-table">(.*?)</table>', page, re.S)
    assert declines is not None
    assert declined["id"] in declines.group(1)
    stuck_rows = re.search(r'id="stuck-table">(.*?)</table>', page, re.S)
    assert stuck_rows is not None
    assert stuck["id"] in stuck_rows.group(1)
    assert "interrupted: run flask acp sweep" in stuck_rows.group(1)


def test_rate_limited_agents_are_shown(tmp_path: pathlib.Path) -> None:
    app = console_app(tmp_path, ACP_CONSOLE_ALLOWED_IPS=["127.0.0.1"], ACP_RATE_LIMIT_PER_AGENT="2/minute",
                      ACP_RATE_LIMIT_STORAGE_URL="memory://")
    client = app.test_client()
    agent = Agent(client)
    statuses = [agent.create().status_code for _ in range(3)]
    assert statuses == [201, 201, 429]
    page = client.get("/acp-console/").get_data(as_text=True)
    refused = re.search(r'id="refused-table">(.*?)</table>', page, re.S)
    assert refused is not None
    assert re.search(r'<tr data-agent="agent-one"><td>agent-one</td><td>agent</td><td class="num">1</td>',
                     refused.group(1))
    windows = re.search(r'id="windows-table">(.*?)</table>', page, re.S)
    assert windows is not None
    assert "0: limited" in windows.group(1)
    assert AGENT_KEY not in page  # no secret on the page


def test_replay_needs_csrf_and_resets_the_event(open_app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    done = buy(open_app)
    outbox = open_app.extensions["acp"].storage.outbox
    [entry] = outbox.entries(statuses=["pending"])  # no webhook_url, no runner here: it waits
    assert entry.order_id == done["order"]["id"]
    # a runner gave up on it (as after a 4xx answer)
    assert outbox.claim(entry.event_id, owner="runner", now=time.time(), lease=30, due_only=False)
    assert outbox.record(entry.event_id, owner="runner", status="failed", attempts=1,
                         next_attempt_at=entry.next_attempt_at, delivered_at=None, last_status=410,
                         last_error="HTTP 410")
    entry = outbox.get(entry.event_id)
    client = open_app.test_client()
    refused = client.post(f"/acp-console/events/{entry.event_id}/replay", data={"csrf_token": "forged"})
    assert refused.status_code == 400
    assert outbox.get(entry.event_id) == entry  # untouched
    page = client.get("/acp-console/events")
    failed = re.search(r'id="failed-table">(.*?)</table>', page.get_data(as_text=True), re.S)
    assert failed is not None
    assert entry.event_id in failed.group(1)
    assert "HTTP 410" in failed.group(1)
    with caplog.at_level("INFO", logger="flask_acp"):  # flask-acp's logger: ACP_LOG_FORMAT applies
        response = client.post(f"/acp-console/events/{entry.event_id}/replay",
                               data={"csrf_token": csrf(page.data)}, follow_redirects=True)
    assert response.status_code == 200
    assert [r.name for r in caplog.records if "replayed" in r.getMessage()] == ["flask_acp"]
    assert f"{entry.event_id}: pending (no delivery runs in this app" in text(response)
    after = outbox.get(entry.event_id)
    assert (after.status, after.attempts, after.last_status) == ("pending", 0, None)  # reset: due now
    missing = client.post("/acp-console/events/evt_nope/replay", data={"csrf_token": csrf(page.data)},
                          follow_redirects=True)
    assert "No webhook event evt_nope" in text(missing)


def test_the_outbox_is_counted_per_agent_with_its_age(open_app: Flask) -> None:
    buy(open_app)
    buy(open_app)
    page = open_app.test_client().get("/acp-console/").get_data(as_text=True)
    row = re.search(r'<tr data-agent="agent-one" data-status="pending">(.*?)</tr>', page, re.S)
    assert row is not None
    assert '<td class="num count">2</td>' in row.group(1)
    assert " ago" in row.group(1)


def test_a_store_that_fails_is_a_503_page_not_a_500(tmp_path: pathlib.Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    app = console_app(tmp_path)
    client = app.test_client()
    login(client)
    page = client.get("/acp-console/events")
    assert page.status_code == 200
    token = csrf(page.data)

    def down(*args: t.Any, **kwargs: t.Any) -> t.Any:
        raise ConnectionError("redis://10.0.0.5:6379 refused")

    monkeypatch.setattr(app.extensions["acp"].storage.outbox, "entries", down)
    for response in (client.get("/acp-console/events"),
                     client.post("/acp-console/events/replay-failed", data={"csrf_token": token})):
        assert response.status_code == 503
        assert response.mimetype == "text/plain"
        assert "ConnectionError" in response.get_data(as_text=True)
        assert "10.0.0.5" not in response.get_data(as_text=True)


def test_a_login_starts_a_new_csrf_token(tmp_path: pathlib.Path) -> None:
    client = console_app(tmp_path).test_client()
    page = client.get("/acp-console/login")
    before = csrf(page.data)
    login(client)
    # the token of the page seen before logging in no longer passes
    stale = client.post("/acp-console/events/replay-failed", data={"csrf_token": before})
    assert stale.status_code == 400
    fresh = csrf(client.get("/acp-console/events").data)
    assert client.post("/acp-console/events/replay-failed", data={"csrf_token": fresh}).status_code == 302
