"""Redis failing under traffic, with real processes: an app instance
(gunicorn, 2 workers) on a Redis store, client threads buying in a loop
through the fake Stripe, and in the middle of it:

- the Redis server is killed (SIGKILL) and started again on its AOF file
  (``appendfsync always``);
- the Sentinel-monitored master is killed and a replica is promoted
  (``wait_replicas=1``: every write the app acknowledged is on a replica).

What must hold: requests in flight get 503 with ``Retry-After`` (or 409 while
a lease runs out), never a 500; every answer is schema-valid; after
recovery every purchase a client saw completed is still completed, with its
order and its ``order_create`` event; each client's retries finish its
purchase; and the fake Stripe charged each session at most once.
"""

from __future__ import annotations

import collections
import dataclasses
import pathlib
import threading
import time
import typing as t
import uuid

import pytest
import requests
import stripe

from flask_acp.store import open_storage
from flask_acp.testing import acp_headers
from flask_acp.testing.fake_stripe import FakeStripe
from flask_acp.testing.fakes.stripe.tokens import mint_granted_token
from tests.redis_app import AGENT_KEY
from tests.redis_app import MERCHANT
from tests.redis_app import Gunicorn
from tests.redis_servers import RedisServer
from tests.redis_servers import SentinelGroup
from tests.redis_servers import free_port
from tests.redis_servers import unique_prefix
from tests.spec import require_spec
from tests.spec import validate_response

CLIENTS = 6
ADDRESS = {"name": "Ada Lovelace", "line_one": "1 Main St", "city": "San Francisco",
           "state": "CA", "country": "US", "postal_code": "94131"}
#: seconds a client keeps retrying one request through the outage
PATIENCE = 90.0

pytestmark = pytest.mark.timeout(400)


@dataclasses.dataclass
class Traffic:
    """Client threads buying one item after another until :attr:`stop` is set."""

    url: str
    stripe_client: stripe.StripeClient
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    answers: list[tuple[str, int, dict[str, str], t.Any]] = dataclasses.field(default_factory=list)
    completed: dict[str, str] = dataclasses.field(default_factory=dict)  # session id -> order id
    errors: list[BaseException] = dataclasses.field(default_factory=list)
    threads: list[threading.Thread] = dataclasses.field(default_factory=list)

    def call(self, http: requests.Session, path: str, body: t.Any, key: str) -> tuple[int, t.Any]:
        """POST with one Idempotency-Key, retried (same key) on 503 and 409 as
        ``Retry-After`` says (capped at half a second here)."""
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                response = http.post(self.url + path, json=body, timeout=30,
                                     headers=acp_headers(AGENT_KEY, idempotency_key=key))
            except requests.ConnectionError:  # the app itself never goes away here
                raise
            payload = response.json()
            self.answers.append((path, response.status_code, dict(response.headers), payload))
            if response.status_code not in (409, 503) or time.monotonic() > deadline:
                return response.status_code, payload
            time.sleep(min(float(response.headers.get("Retry-After", "1")), 0.5))

    def buy(self, http: requests.Session) -> None:
        body = {"currency": "usd", "line_items": [{"id": "item_123", "quantity": 1}], "capabilities": {},
                "fulfillment_details": {"name": "Ada", "email": "ada@example.com", "address": ADDRESS}}
        status, session = self.call(http, "/checkout_sessions", body, str(uuid.uuid4()))
        assert status == 201, session
        assert session["status"] == "ready_for_payment", session
        total = next(int(line["amount"]) for line in session["totals"] if line["type"] == "total")
        token = mint_granted_token(self.stripe_client, currency="usd", max_amount=total)
        complete = {"payment_data": {"handler_id": "card_tokenized", "instrument": {
            "type": "card", "credential": {"type": "spt", "token": token}}}}
        status, done = self.call(http, f"/checkout_sessions/{session['id']}/complete", complete,
                                 str(uuid.uuid4()))
        assert status == 200, done
        assert done["status"] == "completed", done
        self.completed[session["id"]] = done["order"]["id"]

    def run(self) -> None:
        try:
            with requests.Session() as http:
                while not self.stop.is_set():
                    self.buy(http)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)

    def start(self) -> Traffic:
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(CLIENTS)]
        for thread in self.threads:
            thread.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(PATIENCE * 2 + 30)
        assert not any(thread.is_alive() for thread in self.threads)
        assert not self.errors, self.errors[:3]

    def count(self) -> int:
        return len(self.completed)


def _check(traffic: Traffic, store_url: str, stripe_fake: FakeStripe, app_url: str) -> None:
    """What must hold once Redis is back (see the module docstring)."""
    statuses = collections.Counter(status for _, status, _, _ in traffic.answers)
    assert statuses[500] == 0, statuses
    for path, status, headers, body in traffic.answers:
        validate_response(path, status, body)
        if status >= 500:
            assert status == 503, (status, body)
            assert int(headers["Retry-After"]) > 0
    assert statuses[503] > 0, statuses  # the outage was felt
    storage = open_storage(store_url)
    events = {entry.order_id: entry.type for entry in storage.outbox.entries(
        statuses=["pending", "delivered", "failed", "skipped"], limit=10_000)}
    with requests.Session() as http:
        for session_id, order_id in traffic.completed.items():
            response = http.get(f"{app_url}/checkout_sessions/{session_id}", headers=acp_headers(AGENT_KEY),
                                timeout=30)
            assert response.status_code == 200
            body = response.json()
            assert (body["status"], body["order"]["id"]) == ("completed", order_id)
            assert events.get(order_id) == "order_create", order_id
    charged = collections.Counter(
        intent["metadata"]["acp_checkout_session_id"] for intent in stripe_fake.payment_intents.values()
        if intent["status"] in ("succeeded", "requires_capture"))
    assert max(charged.values(), default=0) == 1, charged  # never a double charge
    assert set(traffic.completed) <= set(charged)


def _wait_until(condition: t.Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_redis_restart_with_persistence_mid_traffic(tmp_path: pathlib.Path) -> None:
    require_spec()
    with RedisServer(persistence="aof") as server, FakeStripe(account_id=MERCHANT) as stripe_fake:
        store_url = f"{server.url}?key_prefix={unique_prefix()}&socket_timeout=2&connect_timeout=0.5"
        env = {"ACP_STORE_URL": store_url, "STRESS_STRIPE_URL": stripe_fake.url,
               "STRESS_STRIPE_KEY": stripe_fake.api_key, "ACP_INSTANCE": str(tmp_path)}
        client = stripe.StripeClient(stripe_fake.api_key, base_addresses={"api": stripe_fake.url})
        with Gunicorn(free_port(), env, workers=2, threads=4, log=tmp_path / "gunicorn.log") as app:
            traffic = Traffic(app.url, client).start()
            _wait_until(lambda: traffic.count() >= 5, 60, "no purchase before the fault")
            before = traffic.count()
            server.kill()  # mid-traffic: requests in flight lose their Redis
            time.sleep(1.5)
            server.start()  # same port, same AOF file
            _wait_until(lambda: traffic.count() >= before + 10, 90, "purchases did not resume")
            traffic.finish()
            _check(traffic, store_url, stripe_fake, app.url)


def test_sentinel_failover_mid_traffic(tmp_path: pathlib.Path) -> None:
    require_spec()
    group = SentinelGroup(replicas=2, sentinels=3, down_after_ms=1000)
    try:
        group.start()
    except RuntimeError as exc:
        pytest.fail(f"the Sentinel group did not start: {exc}")
    try:
        with FakeStripe(account_id=MERCHANT) as stripe_fake:
            store_url = group.url(key_prefix=unique_prefix(), wait_replicas="1", wait_timeout="1",
                                  socket_timeout="2", connect_timeout="0.5")
            env = {"ACP_STORE_URL": store_url, "STRESS_STRIPE_URL": stripe_fake.url,
                   "STRESS_STRIPE_KEY": stripe_fake.api_key, "ACP_INSTANCE": str(tmp_path)}
            client = stripe.StripeClient(stripe_fake.api_key, base_addresses={"api": stripe_fake.url})
            with Gunicorn(free_port(), env, workers=2, threads=4, log=tmp_path / "gunicorn.log") as app:
                traffic = Traffic(app.url, client).start()
                _wait_until(lambda: traffic.count() >= 5, 60, "no purchase before the failover")
                before = traffic.count()
                old = group.current_master_port()
                group.server_on(old).kill()  # the master dies mid-traffic
                _wait_until(lambda: group.current_master_port() != old, 60, "no replica was promoted")
                _wait_until(lambda: traffic.count() >= before + 10, 90, "purchases did not resume")
                traffic.finish()
                _check(traffic, store_url, stripe_fake, app.url)
    finally:
        group.stop()
