"""Rate limits (``ACP_RATE_LIMIT_*``) and the per-session payment cool-down
(``ACP_PAYMENT_FAILURE_LIMIT`` / ``ACP_PAYMENT_COOLDOWN``), over real HTTP.

Every response is validated against the official JSON Schema of the version
it answers. The cool-down is proved by counting the requests the fake Stripe
receives: none while a session's payments are paused.
"""

from __future__ import annotations

import collections.abc as cabc
import datetime as dt
import json
import logging
import pathlib
import typing as t
import uuid

import pytest
import requests
from flask import Flask

from flask_acp.testing import FakePaymentProcessor
from flask_acp.testing import acp_headers
from tests.conftest import ADDRESS
from tests.conftest import AGENT_KEY
from tests.conftest import OTHER_KEY
from tests.conftest import build_app
from tests.conftest import serve_app
from tests.spec import validate_response
from tests.test_stripe_payments import DECLINE_CLASSES
from tests.test_stripe_payments import MakeShop
from tests.test_stripe_payments import fake  # noqa: F401 - fixture
from tests.test_stripe_payments import make_shop  # noqa: F401 - fixture
from tests.test_webhooks import redis_server  # noqa: F401 - fixture
from tests.test_webhooks import redis_url  # noqa: F401 - fixture

CREATE = {"currency": "usd", "line_items": [{"id": "item_123"}], "capabilities": {},
          "fulfillment_details": {"address": ADDRESS}}
#: every limit off but the one a test sets
NO_LIMITS = {"ACP_RATE_LIMIT_PER_IP": "", "ACP_RATE_LIMIT_PER_AGENT": "",
             "ACP_RATE_LIMIT_COMPLETE_PER_AGENT": "", "ACP_RATE_LIMIT_COMPLETE_PER_SESSION": ""}


class Client:
    """An agent over real HTTP; every response is checked against the spec."""

    def __init__(self, base: str, key: str = AGENT_KEY, version: str = "2026-04-17") -> None:
        self.base = base
        self.key = key
        self.version = version

    def send(self, method: str, path: str, body: t.Any = None, *, key: str | None = None,
             idempotency_key: str | None = None) -> requests.Response:
        headers = acp_headers(key or self.key, idempotency_key=idempotency_key, version=self.version)
        response = requests.request(method, self.base + path, headers=headers, timeout=30,
                                    data=None if body is None else json.dumps(body))
        assert response.headers["Content-Type"].startswith("application/json")
        validate_response(path, response.status_code, response.json(), self.version)
        return response

    def create(self, **kwargs: t.Any) -> requests.Response:
        return self.send("POST", "/checkout_sessions", CREATE, **kwargs)

    def complete(self, session_id: str, token: str, **kwargs: t.Any) -> requests.Response:
        return self.send("POST", f"/checkout_sessions/{session_id}/complete", {"payment_data": {
            "handler_id": "card_tokenized",
            "instrument": {"type": "card", "credential": {"type": "spt", "token": token}}}}, **kwargs)


@pytest.fixture
def serve(tmp_path: pathlib.Path) -> cabc.Iterator[t.Callable[..., tuple[Flask, Client]]]:
    with_servers: list[t.Any] = []

    def make(**config: t.Any) -> tuple[Flask, Client]:
        app = build_app(tmp_path / f"app{len(with_servers)}", **{**NO_LIMITS, **config})
        server = serve_app(app)
        base = server.__enter__()
        with_servers.append(server)
        return app, Client(base)

    yield make
    for server in with_servers:
        server.__exit__(None, None, None)


def assert_limited(response: requests.Response) -> dict[str, t.Any]:
    """A 429 in the flat error shape with a Retry-After in whole seconds."""
    assert response.status_code == 429, response.text
    body = t.cast(dict[str, t.Any], response.json())
    assert body["type"] == "invalid_request"
    assert body["code"] == "rate_limit_exceeded"
    assert set(body) == {"type", "code", "message"}
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    return body


# --- the limits ---------------------------------------------------------------------------------


def test_per_ip_limit_counts_before_authentication(serve: t.Callable[..., tuple[Flask, Client]]) -> None:
    _, agent = serve(ACP_RATE_LIMIT_PER_IP="3/minute")
    for _ in range(3):
        refused = agent.send("GET", "/checkout_sessions/cs_x", key="not-a-key-of-any-agent-0000")
        assert refused.status_code == 401
    # the address is spent: even a valid key is refused now, and nothing is authenticated first
    assert_limited(agent.send("GET", "/checkout_sessions/cs_x"))
    assert_limited(agent.send("GET", "/checkout_sessions/cs_x", key="not-a-key-of-any-agent-0000"))


def test_per_agent_limit_is_per_agent(serve: t.Callable[..., tuple[Flask, Client]]) -> None:
    _, agent = serve(ACP_RATE_LIMIT_PER_AGENT="2/minute")
    assert agent.create().status_code == 201
    assert agent.send("GET", "/checkout_sessions/cs_x").status_code == 404
    body = assert_limited(agent.create())
    assert "this agent" in body["message"]
    assert agent.create(key=OTHER_KEY).status_code == 201  # another agent has its own budget


def test_complete_limits_per_session_and_per_agent(serve: t.Callable[..., tuple[Flask, Client]]) -> None:
    _, agent = serve(ACP_RATE_LIMIT_COMPLETE_PER_SESSION="2/minute",
                     ACP_RATE_LIMIT_COMPLETE_PER_AGENT="4/minute")
    first, second = (agent.create().json()["id"] for _ in range(2))
    for _ in range(2):
        assert agent.complete(first, "spt_decline_1").status_code == 200
    assert "this checkout session" in assert_limited(agent.complete(first, "spt_decline_2"))["message"]
    assert agent.complete(second, f"spt_{second}").json()["status"] == "completed"
    # four completes of this agent counted (the refused one too): the agent's budget is spent
    third = agent.create().json()["id"]
    assert "complete requests of this agent" in assert_limited(agent.complete(third, "spt_ok"))["message"]
    assert agent.create().status_code == 201  # other operations are not complete's budget


def test_a_429_is_not_stored_under_its_idempotency_key(serve: t.Callable[..., tuple[Flask, Client]]) -> None:
    app, agent = serve(ACP_RATE_LIMIT_PER_AGENT="1/minute")
    assert agent.create().status_code == 201
    key = str(uuid.uuid4())
    assert_limited(agent.create(idempotency_key=key))
    app.extensions["acp"].pipeline.limits.storage.reset()  # the window passed
    retried = agent.create(idempotency_key=key)
    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried.headers


def test_limits_are_shared_through_redis(tmp_path: pathlib.Path, redis_url: str) -> None:  # noqa: F811
    """Two apps (as two worker processes) on one Redis count together: with
    ``ACP_REDIS_URL`` the counters go there, without any further key."""
    name = f"agent-{uuid.uuid4().hex[:8]}"
    config = {**NO_LIMITS, "ACP_REDIS_URL": redis_url, "ACP_WEBHOOK_DELIVERY_THREAD": False,
              "ACP_RATE_LIMIT_PER_AGENT": "3/minute", "ACP_AGENTS": {name: {"api_keys": [AGENT_KEY]}}}
    one, two = build_app(tmp_path / "one", **config), build_app(tmp_path / "two", **config)
    assert "Redis" in type(one.extensions["acp"].pipeline.limits.storage).__name__
    with serve_app(one) as base_one, serve_app(two) as base_two:
        a, b = Client(base_one), Client(base_two)
        assert [a.create().status_code, b.create().status_code, a.create().status_code] == [201] * 3
        assert_limited(b.create())


def test_a_failing_limit_store_lets_requests_through(serve: t.Callable[..., tuple[Flask, Client]],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    _, agent = serve(ACP_RATE_LIMIT_STORAGE_URL="redis://127.0.0.1:1/0", ACP_RATE_LIMIT_PER_AGENT="1/minute")
    with caplog.at_level(logging.WARNING, logger="flask_acp"):
        assert [agent.create().status_code for _ in range(3)] == [201] * 3
    assert [r.message for r in caplog.records if "rate limits not applied" in r.message]


@pytest.mark.parametrize(("key", "value"), [("ACP_RATE_LIMIT_PER_AGENT", "many per minute"),
                                            ("ACP_RATE_LIMIT_STORAGE_URL", "nosuchstore://x")])
def test_bad_limit_settings_stop_the_app(tmp_path: pathlib.Path, key: str, value: str) -> None:
    with pytest.raises(RuntimeError, match=key):
        build_app(tmp_path, **{key: value})


def test_limits_over_mcp(serve: t.Callable[..., tuple[Flask, Client]]) -> None:
    """The endpoint counts the client address per HTTP request (429 before any
    JSON-RPC is read); tool calls count against the agent's limits."""
    _, agent = serve(ACP_MCP_ENABLED=True, ACP_RATE_LIMIT_PER_IP="3/minute",
                     ACP_RATE_LIMIT_PER_AGENT="1/minute")
    headers = {"Authorization": f"Bearer {AGENT_KEY}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}

    def call() -> requests.Response:
        return requests.post(agent.base + "/mcp", headers=headers, timeout=30, json={
            "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
                "name": "get_checkout_session",
                "arguments": {"meta": {"api_version": "2026-04-17"}, "id": "cs_none"}}})

    assert call().json()["error"]["data"]["code"] == "checkout_session_not_found"
    limited = call().json()["error"]
    assert limited["code"] == -32000
    assert limited["data"]["code"] == "rate_limit_exceeded"
    validate_response("/mcp", 429, limited["data"])
    assert call().status_code == 200  # third request of this address: still in its budget
    refused = call()
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["data"]["code"] == "rate_limit_exceeded"


# --- the payment cool-down ------------------------------------------------------------------------


def test_failed_payments_pause_the_session_without_calling_stripe(make_shop: MakeShop) -> None:  # noqa: F811
    """Card testing: 20 declined tokens on one session reach Stripe only
    ``ACP_PAYMENT_FAILURE_LIMIT`` times; during the pause even a good token is
    answered with a ``rate_limited`` message and no Stripe request at all."""
    shop = make_shop(ACP_PAYMENT_FAILURE_LIMIT=3, ACP_PAYMENT_COOLDOWN=600, **NO_LIMITS)
    session_id = shop.agent.ready_session()["id"]
    declined = [shop.mint(DECLINE_CLASSES[i % len(DECLINE_CLASSES)]) for i in range(20)]
    good = shop.mint()
    calls_before = shop.stripe_calls()
    bodies = [shop.agent.complete(session_id, token).get_json() for token in declined]
    assert len(shop.pi_creates()) == 3
    assert [b["messages"][0]["code"] for b in bodies[:3]] == ["payment_declined"] * 3
    for body in bodies[3:]:
        assert body["status"] == "ready_for_payment"
        (message,) = body["messages"]
        assert message["code"] == "rate_limited"
        assert message["param"] == "$.payment_data"
        assert message["resolution"] == "recoverable"
        assert "600 seconds" in message["content"]
    stripe_calls = shop.stripe_calls()
    assert stripe_calls - calls_before == 3 * 2  # per attempt: the token look-up and the PaymentIntent

    paused = shop.agent.complete(session_id, good).get_json()
    assert paused["messages"][0]["code"] == "rate_limited"
    assert shop.stripe_calls() == stripe_calls
    assert shop.stored(session_id).payment_failures == 3

    # after the pause the good token pays; the order is placed once
    service = shop.state.service
    later = service.clock() + dt.timedelta(seconds=601)
    service.clock = lambda: later
    done = shop.agent.complete(session_id, good).get_json()
    assert done["status"] == "completed"
    assert shop.fake.charges_count() == 1


def test_each_failure_past_the_limit_starts_a_new_pause(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, ACP_PAYMENT_FAILURE_LIMIT=2, ACP_PAYMENT_COOLDOWN=60, **NO_LIMITS)
    processor = app.extensions["acp"].payments
    assert isinstance(processor, FakePaymentProcessor)
    calls: list[str] = []
    charge = processor.charge
    processor.charge = lambda request: (calls.append(request.token), charge(request))[1]  # type: ignore[method-assign]
    service = app.extensions["acp"].service
    now = service.clock()
    service.clock = lambda: now
    with serve_app(app) as base:
        agent = Client(base)
        session_id = agent.create().json()["id"]

        def code(token: str) -> str:
            return t.cast(str, agent.complete(session_id, token).json()["messages"][0]["code"])

        assert [code("spt_decline_1"), code("spt_expired_2"), code("spt_decline_3")] == \
            ["payment_declined", "invalid", "rate_limited"]
        now += dt.timedelta(seconds=61)
        assert code("spt_decline_4") == "payment_declined"  # one more attempt...
        assert code("spt_decline_5") == "rate_limited"     # ...and a new pause at once
        assert calls == ["spt_decline_1", "spt_expired_2", "spt_decline_4"]


@pytest.mark.parametrize("version", ["2025-09-29", "2026-01-16"])
def test_the_pause_in_versions_without_the_rate_limited_code(tmp_path: pathlib.Path, version: str) -> None:
    """Before 2026-01-30 ``MessageError.code`` has no ``rate_limited``: the
    message reads ``invalid``, with the same text."""
    app = build_app(tmp_path, ACP_PAYMENT_FAILURE_LIMIT=1, **NO_LIMITS)
    with serve_app(app) as base:
        agent = Client(base, version=version)
        body = {"items": [{"id": "item_123", "quantity": 1}], "fulfillment_address": ADDRESS} \
            if version == "2025-09-29" else {"items": [{"id": "item_123", "quantity": 1}],
                                             "fulfillment_details": {"address": ADDRESS}}
        session_id = agent.send("POST", "/checkout_sessions", body).json()["id"]
        token = {"payment_data": {"token": "spt_decline", "provider": "stripe"}}
        path = f"/checkout_sessions/{session_id}/complete"
        assert agent.send("POST", path, token).json()["messages"][0]["code"] == "payment_declined"
        (message,) = agent.send("POST", path, token).json()["messages"]
        assert message["code"] == "invalid"
        assert "Too many payment attempts failed" in message["content"]
