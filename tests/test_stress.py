"""Many app servers, one Redis: two app instances (gunicorn, 2 workers each,
on different ports, nothing in front of them) share one Redis store and
charge through one fake Stripe; 200 concurrent clients, released together,
race the same Idempotency-Keys, the last units of stock, and completes of the
same sessions sent to both instances.

What must hold: zero duplicate charges (counted at the fake Stripe, per
session), zero oversold units, the same key never creating two sessions,
every response schema-valid (official 2026-04-17 schema), no 5xx.
"""

from __future__ import annotations

import collections
import collections.abc as cabc
import threading
import typing as t
import uuid

import pytest
import requests
import stripe

from flask_acp.catalog.stock_redis import RedisStockLedger
from flask_acp.testing import acp_headers
from flask_acp.testing.fake_stripe import FakeStripe
from flask_acp.testing.fakes.stripe.tokens import mint_granted_token
from tests.redis_app import AGENT_KEY
from tests.redis_app import MERCHANT
from tests.redis_app import instances
from tests.redis_servers import RedisServer
from tests.redis_servers import free_port
from tests.redis_servers import unique_prefix
from tests.spec import require_spec
from tests.spec import validate_response

CLIENTS = 200
ADDRESS = {"name": "Ada Lovelace", "line_one": "1 Main St", "city": "San Francisco",
           "state": "CA", "country": "US", "postal_code": "94131"}
#: the item of the last-units race and its stock (tests/data/store.json)
SCARCE, SCARCE_STOCK = "item_456", 5

pytestmark = pytest.mark.timeout(600)


class Client:
    """One agent connection: every answer is checked (no 5xx, schema-valid)
    and recorded."""

    def __init__(self, base_urls: cabc.Sequence[str], log: list[tuple[str, int, t.Any]]) -> None:
        self.http = requests.Session()
        self.base_urls = base_urls
        self.log = log

    def call(self, instance: int, method: str, path: str, body: t.Any = None, *,
             key: str | None = None) -> tuple[int, t.Any]:
        headers = acp_headers(AGENT_KEY, idempotency_key=key or str(uuid.uuid4()))
        response = self.http.request(method, self.base_urls[instance % len(self.base_urls)] + path, json=body,
                                     headers=headers, timeout=120)
        payload = response.json()
        self.log.append((path, response.status_code, payload))
        return response.status_code, payload

    def retrying(self, instance: int, method: str, path: str, body: t.Any = None, *, key: str | None = None,
                 attempts: int = 20) -> tuple[int, t.Any]:
        """As an agent does: a 409 (busy, in flight) is retried, same key."""
        key = key or str(uuid.uuid4())
        for _ in range(attempts):
            status, payload = self.call(instance, method, path, body, key=key)
            if status != 409:
                return status, payload
            threading.Event().wait(0.2)
        return status, payload


def _create_body(item: str, quantity: int = 1) -> dict[str, t.Any]:
    return {"currency": "usd", "line_items": [{"id": item, "quantity": quantity}], "capabilities": {},
            "fulfillment_details": {"name": "Ada Lovelace", "email": "ada@example.com", "address": ADDRESS}}


def _complete_body(token: str) -> dict[str, t.Any]:
    return {"payment_data": {"handler_id": "card_tokenized", "instrument": {
        "type": "card", "credential": {"type": "spt", "token": token}}}}


def test_two_instances_one_redis_200_clients(tmp_path_factory: pytest.TempPathFactory) -> None:
    require_spec()
    directory = tmp_path_factory.mktemp("stress")
    with RedisServer() as redis_server, FakeStripe(account_id=MERCHANT) as stripe_fake:
        env = {"ACP_STORE_URL": f"{redis_server.url}?key_prefix={unique_prefix()}",
               "STRESS_STRIPE_URL": stripe_fake.url, "STRESS_STRIPE_KEY": stripe_fake.api_key,
               "ACP_INSTANCE": str(directory), "ACP_LOCK_WAIT": "20"}
        stripe_client = stripe.StripeClient(stripe_fake.api_key, base_addresses={"api": stripe_fake.url})
        with instances(2, [free_port(), free_port()], env, workers=2, threads=16,
                       log=directory / "gunicorn.log") as servers:
            urls = [server.url for server in servers]
            log: list[tuple[str, int, t.Any]] = []
            setup = Client(urls, log)

            # sessions completed from both instances at once (item_123: plenty of stock)
            shared = []
            for n in range(7):
                status, session = setup.call(n, "POST", "/checkout_sessions", _create_body("item_123", 2))
                assert status == 201, session
                assert session["status"] == "ready_for_payment", session
                shared.append(session)

            def mint(amount: int) -> str:
                return mint_granted_token(stripe_client, currency="usd", max_amount=amount)

            shared_tokens = {s["id"]: mint(_total(s)) for s in shared}
            create_keys = [f"create-{uuid.uuid4()}" for _ in range(10)]
            outcomes: dict[str, list[t.Any]] = collections.defaultdict(list)
            barrier = threading.Barrier(CLIENTS)
            errors: list[BaseException] = []

            def idempotent_create(i: int, client: Client) -> None:
                key = create_keys[i % len(create_keys)]  # 5 clients per key, on both instances
                barrier.wait(60)
                status, body = client.retrying(i, "POST", "/checkout_sessions", _create_body("item_123"),
                                               key=key)
                outcomes[key].append((status, body.get("id")))

            def last_units(i: int, client: Client) -> None:
                barrier.wait(60)
                status, session = client.retrying(i, "POST", "/checkout_sessions", _create_body(SCARCE))
                assert status == 201, session
                if session["status"] != "ready_for_payment":
                    outcomes["scarce-refused"].append(session["id"])
                    return
                token = mint(_total(session))
                status, done = client.retrying(i + 1, "POST", f"/checkout_sessions/{session['id']}/complete",
                                               _complete_body(token))
                outcomes["scarce"].append((status, done.get("status"), session["id"]))

            def same_session(i: int, client: Client) -> None:
                session = shared[i % len(shared)]  # 10 clients per session, on both instances
                token = shared_tokens[session["id"]] if i % 2 else mint(_total(session))
                barrier.wait(60)
                status, done = client.retrying(i, "POST", f"/checkout_sessions/{session['id']}/complete",
                                               _complete_body(token))
                outcomes["shared"].append((status, done.get("status") or done.get("code"), session["id"]))

            def run(i: int) -> None:
                client = Client(urls, log)
                try:
                    if i < 50:
                        idempotent_create(i, client)
                    elif i < 130:
                        last_units(i, client)
                    else:
                        same_session(i, client)
                except BaseException as exc:  # reported below
                    errors.append(exc)
                    barrier.abort()

            threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(CLIENTS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(480)
            assert not errors, errors[:3]
            assert not any(thread.is_alive() for thread in threads)

            # every answer: no 5xx, valid against the official schema
            assert [(p, s) for p, s, _ in log if s >= 500] == []
            for path, status, body in log:
                validate_response(path, status, body)

            # the same Idempotency-Key never made two sessions (and every client got one)
            for key in create_keys:
                ids = {session_id for status, session_id in outcomes[key] if status == 201}
                assert len(ids) == 1, outcomes[key]
                assert all(status == 201 for status, _ in outcomes[key]), outcomes[key]

            # the last units: never oversold
            sold = [sid for status, state, sid in outcomes["scarce"] if state == "completed"]
            assert len(sold) <= SCARCE_STOCK
            assert len(sold) + len(outcomes["scarce-refused"]) == 80
            assert len(sold) == SCARCE_STOCK  # the stock was all bought: holds were released to buyers
            assert RedisStockLedger(env["ACP_STORE_URL"]).sold(SCARCE) == SCARCE_STOCK

            # the shared sessions: each completed once
            checker = Client(urls, log)
            for session in shared:
                status, current = checker.call(1, "GET", f"/checkout_sessions/{session['id']}")
                assert (status, current["status"]) == (200, "completed"), current
            for status, state, _ in outcomes["shared"]:
                assert (status, state) in ((200, "completed"), (405, "checkout_session_completed")), (
                    status, state)

        # at the fake Stripe: exactly one charge per completed session, none for the others
        charged: dict[str, int] = collections.Counter(
            intent["metadata"]["acp_checkout_session_id"] for intent in stripe_fake.payment_intents.values()
            if intent["status"] in ("succeeded", "requires_capture"))
        completed = {s["id"] for s in shared} | set(sold)
        assert dict(charged) == {sid: 1 for sid in completed}
        assert stripe_fake.charges_count() == len(completed)


def _total(session: dict[str, t.Any]) -> int:
    return next(int(line["amount"]) for line in session["totals"] if line["type"] == "total")
