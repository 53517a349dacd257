"""Every ACP version on one endpoint: 2025-09-29 (and its alias 2025-09-12),
2025-12-12, 2026-01-16, 2026-01-30, 2026-04-17.

Every response is validated by the client against the JSON Schema of the
version the request named (``tests/conftest.py``); legacy order webhooks
against that version's webhook OpenAPI file, their signature with an
independent HMAC. The spec's own request examples of each version are
replayed unmodified against an app whose catalog matches them (``item_123``
at $3.00, 10 % tax in US-CA, shipping ``fulfillment_option_123`` $1.00 and
``fulfillment_option_456`` $5.00). 2026-04-17's examples have their own file
(``tests/test_spec_examples.py``).
"""

from __future__ import annotations

import collections.abc as cabc
import copy
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import pathlib
import threading
import time
import typing as t
import uuid

import pytest
from flask import Flask
from werkzeug.serving import make_server
from werkzeug.test import TestResponse
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from flask_acp.models import Adjustment
from flask_acp.models import FulfillmentOption
from flask_acp.models import Message
from flask_acp.models import Order
from flask_acp.models import SelectedFulfillmentOption
from flask_acp.models import Status
from flask_acp.testing import FakePaymentProcessor
from flask_acp.testing import acp_headers
from flask_acp.testing.storage_contract import make_session
from flask_acp.versions import VERSIONS
from tests.conftest import ADDRESS
from tests.conftest import AGENT_KEY
from tests.conftest import Agent
from tests.conftest import build_app
from tests.spec import examples
from tests.spec import validate
from tests.spec import validate_legacy_event

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment

OLDER = ["2025-09-29", "2025-12-12", "2026-01-16", "2026-01-30"]
ALL = [*OLDER, "2026-04-17"]
LEGACY = ["2025-09-29", "2025-12-12", "2026-01-16"]  # before capabilities and handlers
SECRET = "whsec_versions_secret_0001"
NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.timezone.utc)
CARD = {"handler_id": "card_tokenized", "instrument": {"type": "card", "credential": {"type": "spt"}}}


class VersionedAgent(Agent):
    """An agent that speaks one ``API-Version`` (and may send no Idempotency-Key)."""

    def __init__(self, app: Flask, version: str) -> None:
        super().__init__(app.test_client())
        self.version = version

    def headers(self, **extra: str) -> dict[str, str]:
        return acp_headers(self.key, version=self.version, **extra)

    def post(self, path: str, body: t.Any = None, *, key: str | None = None,  # type: ignore[override]
             idempotent: bool = True, **headers: str) -> TestResponse:
        h = acp_headers(self.key, version=self.version,
                        idempotency_key=(key or str(uuid.uuid4())) if idempotent else None, **headers)
        if not idempotent:
            h.pop("Idempotency-Key", None)
        return self.client.post(path, data=b"" if body is None else json.dumps(body), headers=h)

    def get(self, session_id: str) -> dict[str, t.Any]:
        response = self.client.get(f"/checkout_sessions/{session_id}", headers=self.headers())
        assert response.status_code == 200, response.get_json()
        return t.cast(dict[str, t.Any], response.get_json())

    # -- this version's request shapes ---------------------------------------------------

    def create_body(self, quantity: int = 1, address: bool = True) -> dict[str, t.Any]:
        if self.version in LEGACY:
            body: dict[str, t.Any] = {"items": [{"id": "item_123", "quantity": quantity}]}
            if address:
                body.update({"fulfillment_address": ADDRESS} if self.version == "2025-09-29"
                            else {"fulfillment_details": {"address": ADDRESS}})
            return body
        body = {"currency": "usd", "line_items": [{"id": "item_123", "quantity": quantity}],
                "capabilities": {}}
        if address:
            body["fulfillment_details"] = {"address": ADDRESS}
        return body

    def choose_body(self, option_id: str) -> dict[str, t.Any]:
        if self.version == "2025-09-29":
            return {"fulfillment_option_id": option_id}
        if self.version in LEGACY:
            return {"selected_fulfillment_options": [
                {"type": "shipping", "shipping": {"option_id": option_id, "item_ids": ["item_123"]}}]}
        return {"selected_fulfillment_options": [
            {"type": "shipping", "option_id": option_id, "item_ids": ["item_123"]}]}

    def payment_body(self, token: str) -> dict[str, t.Any]:
        if self.version in LEGACY:
            return {"payment_data": {"token": token, "provider": "stripe"}}
        payment = copy.deepcopy(CARD)
        payment["instrument"]["credential"]["token"] = token
        return {"payment_data": payment}

    def create(self, items: list[dict[str, t.Any]] | None = None, **fields: t.Any) -> TestResponse:
        return self.post("/checkout_sessions", self.create_body())

    def complete(self, session_id: str, token: str | None = None, *,  # type: ignore[override]
                 key: str | None = None, handler_id: str = "card_tokenized") -> TestResponse:
        return self.post(f"/checkout_sessions/{session_id}/complete",
                         self.payment_body(token or f"spt_{session_id}"), key=key)


def totals(body: dict[str, t.Any]) -> dict[str, int]:
    return {entry["type"]: entry["amount"] for entry in body["totals"]}


def example(version: str, name: str) -> dict[str, t.Any]:
    return copy.deepcopy(examples(version)[name])


def create(agent: VersionedAgent, version: str) -> str:
    """A session from the version's create example; its id."""
    response = agent.post("/checkout_sessions", example(version, "create_checkout_session_request"))
    assert response.status_code == 201, response.get_json()
    return t.cast(str, response.get_json()["id"])


@pytest.fixture
def processor() -> FakePaymentProcessor:
    return FakePaymentProcessor()


@pytest.fixture
def app(tmp_path: pathlib.Path, processor: FakePaymentProcessor) -> Flask:
    return build_app(tmp_path, payment_processor=processor)


# --------------------------------------------------------------------------- a legacy receiver


class LegacyReceiver:
    """An agent's webhook endpoint that checks a legacy ``Merchant-Signature``
    (hex HMAC-SHA256 of the raw body, computed here with ``hmac`` directly)
    or, for 2026-04-17, the ``t=,v1=`` form; answers 401 when it fails."""

    path = "/agentic_checkout/webhooks/order_events"

    def __init__(self, *, timestamped: bool) -> None:
        self.timestamped = timestamped
        self.log: list[tuple[bytes, dict[str, str], int]] = []
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}{self.path}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _verified(self, body: bytes, header: str) -> bool:
        if self.timestamped:
            parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
            expected = hmac.new(SECRET.encode(), parts.get("t", "").encode() + b"." + body,
                                hashlib.sha256).hexdigest()
            return hmac.compare_digest(parts.get("v1", ""), expected)
        return hmac.compare_digest(header, hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest())

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> cabc.Iterable[bytes]:
        request = Request(environ)
        body = request.get_data()
        status = 200 if self._verified(body, request.headers.get("Merchant-Signature", "")) else 401
        with self._lock:
            self.log.append((body, dict(request.headers), status))
        answer = {"received": True} if status == 200 else {
            "type": "invalid_request", "code": "invalid_signature", "message": "bad signature"}
        response = Response(json.dumps(answer), status=status, mimetype="application/json")
        return response(environ, start_response)

    def wait_for(self, count: int, timeout: float = 15.0) -> list[tuple[bytes, dict[str, str], int]]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                delivered = [entry for entry in self.log if entry[2] == 200]
            if len(delivered) >= count:
                return delivered
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(delivered)} deliveries, expected {count}: {self.log}")
            time.sleep(0.02)


def webhook_app(tmp_path: pathlib.Path, version: str, url: str) -> Flask:
    return build_app(tmp_path, ACP_AGENTS={"agent-one": {
        "api_keys": [AGENT_KEY], "webhook_url": url, "webhook_secrets": [SECRET], "api_version": version}},
        ACP_WEBHOOK_RETRY_INTERVALS=[1, 1])


# --------------------------------------------------------------------------- a full purchase, every version


@pytest.mark.parametrize("version", ALL)
def test_full_purchase_with_a_webhook_in_the_versions_shape(tmp_path: pathlib.Path, version: str) -> None:
    receiver = LegacyReceiver(timestamped=version == "2026-04-17")
    app = webhook_app(tmp_path, version, receiver.url)
    try:
        agent = VersionedAgent(app, version)
        response = agent.post("/checkout_sessions", agent.create_body(address=False))
        assert response.status_code == 201
        session = response.get_json()
        sid = session["id"]
        assert session["status"] == "not_ready_for_payment"
        address = {"fulfillment_address": ADDRESS} if version == "2025-09-29" \
            else {"fulfillment_details": {"address": ADDRESS}}
        session = agent.post(f"/checkout_sessions/{sid}", address).get_json()
        assert session["status"] == "ready_for_payment", session["messages"]
        chosen = agent.post(f"/checkout_sessions/{sid}", agent.choose_body("fulfillment_option_456"))
        session = chosen.get_json()
        assert totals(session) == {"items_base_amount": 300, "subtotal": 300, "fulfillment": 500,
                                   "tax": 30, "total": 830}
        done = agent.complete(sid).get_json()
        assert done["status"] == "completed"
        assert done["order"]["checkout_session_id"] == sid

        body, headers, _ = receiver.wait_for(1)[0]
        event = json.loads(body)
        assert event["type"] == "order_create"
        assert headers["Content-Type"] == "application/json"
        if version == "2026-04-17":
            assert event["data"]["id"] == done["order"]["id"]
            validate({k: v for k, v in event["data"].items() if k != "type"}, "Order")
        else:
            validate_legacy_event(event, version)
            assert event["data"] == {"type": "order", "checkout_session_id": sid, "status": "created",
                                     "permalink_url": done["order"]["permalink_url"], "refunds": []}
            assert len(headers["Merchant-Signature"]) == 64
            stamp = dt.datetime.fromisoformat(headers["Timestamp"].replace("Z", "+00:00"))
            assert abs(stamp.timestamp() - time.time()) < 60
    finally:
        app.extensions["acp"].webhooks.close()
        receiver.close()


def test_a_refund_reaches_a_legacy_agent_as_refunds(tmp_path: pathlib.Path,
                                                    processor: FakePaymentProcessor) -> None:
    receiver = LegacyReceiver(timestamped=False)
    app = webhook_app(tmp_path, "2025-12-12", receiver.url)
    try:
        agent = VersionedAgent(app, "2025-12-12")
        sid = agent.post("/checkout_sessions", agent.create_body()).get_json()["id"]
        done = agent.complete(sid).get_json()
        receiver.wait_for(1)
        with app.app_context():
            app.extensions["acp"].orders.refund(done["order"]["id"], amount=100)
        # the refund is recorded pending, then completed: two order_update events;
        # each carries the order as it stands when sent, so the last one has it
        events = [json.loads(body) for body, _, _ in receiver.wait_for(3)]
        for event in events:
            validate_legacy_event(event, "2025-12-12")
        assert [e["type"] for e in events] == ["order_create", "order_update", "order_update"]
        assert events[-1]["data"]["refunds"] == [{"type": "original_payment", "amount": 100}]
    finally:
        app.extensions["acp"].webhooks.close()
        receiver.close()


def test_an_unserved_webhook_version_is_a_configuration_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(RuntimeError, match=r"ACP_AGENTS\['agent-one'\]\.api_version"):
        build_app(tmp_path, ACP_API_VERSIONS=["2026-04-17"], ACP_AGENTS={"agent-one": {
            "api_keys": [AGENT_KEY], "api_version": "2025-09-29"}})


# --------------------------------------------------------------------------- the spec's examples


@pytest.mark.parametrize("version", OLDER)
def test_request_examples_are_valid_in_their_version(version: str) -> None:
    """The harness: each request example is valid against its own version's
    schema (2025-09-29: the as-published copy)."""
    definitions = {"create": "CheckoutSessionCreateRequest", "update": "CheckoutSessionUpdateRequest",
                   "complete": "CheckoutSessionCompleteRequest", "cancel": "CancelSessionRequest"}
    names = [n for n in examples(version) if n.endswith("_request")]
    assert names
    for name in names:
        operation = "complete" if "complete" in name else name.split("_")[0]
        validate(examples(version)[name], definitions[operation], version)


@pytest.mark.parametrize("version", OLDER)
def test_examples_create_update_complete(app: Flask, processor: FakePaymentProcessor, version: str) -> None:
    agent = VersionedAgent(app, version)
    response = agent.post("/checkout_sessions", example(version, "create_checkout_session_request"))
    assert response.status_code == 201
    session = response.get_json()
    sid = session["id"]
    assert session["status"] == "ready_for_payment", session["messages"]
    assert session["currency"] == "usd"
    assert totals(session) == {"items_base_amount": 300, "subtotal": 300, "fulfillment": 100, "tax": 30,
                               "total": 430}
    line = session["line_items"][0]
    if version in LEGACY:
        assert line["item"] == {"id": "item_123", "quantity": 1}
        assert (line["base_amount"], line["tax"], line["total"]) == (300, 30, 330)
    else:
        assert line["quantity"] == 1
        assert line["item"]["id"] == "item_123"
    response = agent.post(f"/checkout_sessions/{sid}", example(version, "update_checkout_session_request"))
    assert response.status_code == 200
    session = response.get_json()
    assert totals(session)["fulfillment"] == 500
    if version == "2025-09-29":
        assert session["fulfillment_option_id"] == "fulfillment_option_456"
    elif version in LEGACY:
        assert session["selected_fulfillment_options"] == [{"type": "shipping", "shipping": {
            "option_id": "fulfillment_option_456", "item_ids": ["item_123"]}}]
    response = agent.post(f"/checkout_sessions/{sid}/complete",
                          example(version, "complete_checkout_session_request"))
    assert response.status_code == 200
    done = response.get_json()
    assert done["status"] == "completed"
    assert set(done["order"]) >= {"id", "checkout_session_id", "permalink_url"}
    assert done["buyer"]["first_name"] == "John"
    assert [c["amount"] for c in processor.charges()] == [830]


@pytest.mark.parametrize("version", [v for v in OLDER if v != "2025-09-29"])
def test_examples_first_touch_create_then_last_touch_complete(app: Flask, processor: FakePaymentProcessor,
                                                              version: str) -> None:
    agent = VersionedAgent(app, version)
    response = agent.post("/checkout_sessions",
                          example(version, "create_checkout_session_request_with_first_touch_attribution"))
    assert response.status_code == 201
    session = response.get_json()
    assert session["status"] == "not_ready_for_payment"
    assert [(m["type"], m.get("code"), m.get("param")) for m in session["messages"]] == [
        ("error", "missing", "$.fulfillment_details.address")]
    details = example(version, "create_checkout_session_request")["fulfillment_details"]
    assert agent.post(f"/checkout_sessions/{session['id']}",
                      {"fulfillment_details": details}).get_json()["status"] == "ready_for_payment"
    done = agent.post(f"/checkout_sessions/{session['id']}/complete",
                      example(version, "complete_checkout_session_request_with_last_touch_attribution"))
    assert done.get_json()["status"] == "completed"
    assert "affiliate_attribution" not in done.get_json()
    assert len(processor.charges()) == 1


@pytest.mark.parametrize("version", OLDER)
def test_examples_cancel(app: Flask, version: str) -> None:
    agent = VersionedAgent(app, version)
    names = [n for n in examples(version) if n.startswith("cancel_") and n.endswith("_request")]
    bodies: list[t.Any] = [example(version, n) for n in names] or [None]  # 2025-09-29: no body
    for body in bodies:
        sid = create(agent, version)
        response = agent.post(f"/checkout_sessions/{sid}/cancel", body)
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["status"] == "canceled"
        assert "intent_trace" not in response.get_json()
        again = agent.post(f"/checkout_sessions/{sid}/cancel", body)
        assert again.status_code == 405


@pytest.mark.parametrize("version", ["2026-01-16", "2026-01-30"])
def test_examples_authentication_result_is_carried_to_the_processor(
        app: Flask, processor: FakePaymentProcessor, version: str) -> None:
    """The token of this example needs 3-D Secure (fake processor: ``spt_3ds``
    prefix); the agent's authentication result lets the charge through, and
    its outcome is on the charge."""
    agent = VersionedAgent(app, version)
    sid = create(agent, version)
    body = example(version, "complete_session_with_authentication_result_request")
    without = copy.deepcopy(body)
    del without["authentication_result"]
    refused = agent.post(f"/checkout_sessions/{sid}/complete", without).get_json()
    assert refused["status"] == "ready_for_payment"
    assert [m["code"] for m in refused["messages"]] == ["requires_3ds"]
    response = agent.post(f"/checkout_sessions/{sid}/complete", body)
    assert response.status_code == 200
    assert response.get_json()["status"] == "completed"
    (charge,) = processor.charges()
    assert charge["metadata"]["acp_authentication_outcome"] == "authenticated"


def test_example_seller_backed_handler_is_refused_in_2026_01_30(app: Flask,
                                                                 processor: FakePaymentProcessor) -> None:
    agent = VersionedAgent(app, "2026-01-30")
    sid = agent.post("/checkout_sessions",
                     example("2026-01-30", "create_checkout_session_request")).get_json()["id"]
    response = agent.post(f"/checkout_sessions/{sid}/complete",
                          example("2026-01-30", "complete_checkout_session_request_seller_backed"))
    assert response.status_code == 400
    assert response.get_json()["param"] == "$.payment_data.handler_id"
    assert processor.charges() == []


# --------------------------------------------------------------------------- across versions


def test_a_session_moves_between_versions(app: Flask, processor: FakePaymentProcessor) -> None:
    """Created in 2025-09-29, updated in 2026-04-17, read in every version,
    completed in 2026-01-30, cancel refused in 2025-12-12."""
    old = VersionedAgent(app, "2025-09-29")
    sid = old.post("/checkout_sessions", old.create_body(quantity=2)).get_json()["id"]
    new = VersionedAgent(app, "2026-04-17")
    session = new.post(f"/checkout_sessions/{sid}", {
        "buyer": {"email": "ada@example.com", "full_name": "Ada King Lovelace"},
        "selected_fulfillment_options": [{"type": "shipping", "option_id": "fulfillment_option_456"}],
    }).get_json()
    assert session["line_items"][0]["quantity"] == 2
    assert session["fulfillment_details"] == {"address": ADDRESS}
    expected_total = 600 + 60 + 500
    for version in [*ALL, "2025-09-12"]:
        read = VersionedAgent(app, version).get(sid)
        assert read["status"] == "ready_for_payment"
        assert totals(read)["total"] == expected_total
    legacy = VersionedAgent(app, "2025-09-29").get(sid)
    assert legacy["buyer"] == {"first_name": "Ada", "last_name": "King Lovelace", "email": "ada@example.com"}
    assert legacy["fulfillment_option_id"] == "fulfillment_option_456"
    assert legacy["fulfillment_address"] == ADDRESS
    assert legacy["line_items"][0]["item"] == {"id": "item_123", "quantity": 2}
    nested = VersionedAgent(app, "2026-01-16").get(sid)
    assert nested["selected_fulfillment_options"] == [
        {"type": "shipping", "shipping": {"option_id": "fulfillment_option_456", "item_ids": ["item_123"]}}]
    assert nested["fulfillment_options"][0]["totals"][-1]["type"] == "total"

    done = VersionedAgent(app, "2026-01-30").complete(sid).get_json()
    assert done["status"] == "completed"
    assert done["order"]["status"] == "confirmed"  # 2026-01-30's enum has no "created"
    assert [c["amount"] for c in processor.charges()] == [expected_total]
    refused = VersionedAgent(app, "2025-12-12").post(f"/checkout_sessions/{sid}/cancel", {})
    assert refused.status_code == 405
    assert VersionedAgent(app, "2025-09-29").get(sid)["order"]["id"] == done["order"]["id"]


def test_alias_2025_09_12_is_2025_09_29(app: Flask) -> None:
    agent = VersionedAgent(app, "2025-09-12")
    response = agent.post("/checkout_sessions", example("2025-09-29", "create_checkout_session_request"))
    assert response.status_code == 201  # validated against 2025-09-29 by the client
    body = response.get_json()
    assert body["payment_provider"] == {"provider": "stripe", "supported_payment_methods": ["card"]}
    assert "capabilities" not in body


def test_discovery_lists_exactly_the_served_versions(tmp_path: pathlib.Path) -> None:
    client = build_app(tmp_path, ACP_API_VERSIONS=["2025-09-12", "2026-01-30"]).test_client()
    protocol = client.get("/.well-known/acp.json").get_json()["protocol"]
    assert protocol["supported_versions"] == ["2025-09-29", "2026-01-30"]
    assert protocol["version"] == "2026-01-30"
    response = client.get("/checkout_sessions/cs_x", headers=acp_headers(AGENT_KEY, version="2026-04-17"))
    assert response.status_code == 400
    assert response.get_json()["supported_versions"] == ["2026-01-30", "2025-09-29"]
    ok = client.get("/checkout_sessions/cs_x", headers=acp_headers(AGENT_KEY, version="2025-09-12"))
    assert ok.status_code == 404


# --------------------------------------------------------------------------- idempotency per version


@pytest.mark.parametrize(("version", "status"), [(v, 409) for v in OLDER] + [("2026-04-17", 422)])
def test_idempotency_conflict_status_per_version(app: Flask, version: str, status: int) -> None:
    agent = VersionedAgent(app, version)
    key = str(uuid.uuid4())
    assert agent.post("/checkout_sessions", agent.create_body(), key=key).status_code == 201
    response = agent.post("/checkout_sessions", agent.create_body(quantity=2), key=key)
    assert response.status_code == status
    assert response.get_json()["code"] == "idempotency_conflict"
    replay = agent.post("/checkout_sessions", agent.create_body(), key=key)
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("version", OLDER)
def test_idempotency_key_is_optional_before_2026_04_17(app: Flask, processor: FakePaymentProcessor,
                                                       version: str) -> None:
    agent = VersionedAgent(app, version)
    response = agent.post("/checkout_sessions", agent.create_body(), idempotent=False)
    assert response.status_code == 201
    sid = response.get_json()["id"]
    body = agent.payment_body(f"spt_{sid}")
    first = agent.post(f"/checkout_sessions/{sid}/complete", body, idempotent=False)
    assert first.get_json()["status"] == "completed"
    # a keyless retry with the same token (its answer was lost) gets the completed session
    again = agent.post(f"/checkout_sessions/{sid}/complete", body, idempotent=False)
    assert again.status_code == 200
    assert again.get_json()["order"] == first.get_json()["order"]
    other = agent.post(f"/checkout_sessions/{sid}/complete", agent.payment_body("spt_another"),
                       idempotent=False)
    assert other.status_code == 405
    assert len(processor.charges()) == 1


def test_idempotency_key_is_required_from_2026_04_17(app: Flask) -> None:
    agent = VersionedAgent(app, "2026-04-17")
    response = agent.post("/checkout_sessions", agent.create_body(), idempotent=False)
    assert response.status_code == 400
    assert response.get_json()["code"] == "idempotency_key_required"


# --------------------------------------------------------------------------- single-use tokens


@pytest.mark.parametrize("version", ALL)
def test_a_token_pays_for_one_session_only(app: Flask, processor: FakePaymentProcessor, version: str) -> None:
    agent = VersionedAgent(app, version)
    first = agent.post("/checkout_sessions", agent.create_body()).get_json()["id"]
    second = agent.post("/checkout_sessions", agent.create_body()).get_json()["id"]
    assert agent.complete(first, "spt_shared_token").get_json()["status"] == "completed"
    refused = agent.complete(second, "spt_shared_token")
    assert refused.status_code == 200
    body = refused.get_json()
    assert body["status"] == "ready_for_payment"
    (message,) = body["messages"]
    assert message["type"] == "error"
    assert message["code"] == "invalid"
    assert message["param"] == ("$.payment_data.token" if version in LEGACY
                                else "$.payment_data.instrument.credential.token")
    assert "another checkout" in message["content"]
    assert len(processor.charges()) == 1
    # the same session retrying with its own token is not refused, and a fresh token pays
    assert agent.complete(second, "spt_fresh_token").get_json()["status"] == "completed"
    assert len(processor.charges()) == 2


# --------------------------------------------------------------------------- per-version values


@pytest.mark.parametrize("version", LEGACY)
def test_legacy_messages_use_only_the_versions_codes(app: Flask, version: str) -> None:
    """``not_found`` and ``quantity_exceeded`` do not exist before 2026-01-30:
    they read ``invalid``; the params follow the version's field names."""
    agent = VersionedAgent(app, version)
    body = agent.create_body()
    body["items"] = [{"id": "no_such_item", "quantity": 1}, {"id": "item_123", "quantity": 9999}]
    session = agent.post("/checkout_sessions", body).get_json()
    codes = {(m["type"], m.get("code"), m.get("param")) for m in session["messages"]}
    assert ("error", "invalid", "$.line_items[0].item.id") in codes
    assert ("error", "invalid", "$.line_items[1].item.quantity") in codes
    assert session["status"] == "not_ready_for_payment"


def test_legacy_quantity_must_be_a_whole_number(app: Flask) -> None:
    """2025-09-29's HEAD schema allows 2.5; we sell whole units (the
    as-published schema's integer >= 1)."""
    agent = VersionedAgent(app, "2025-09-29")
    response = agent.post("/checkout_sessions", {"items": [{"id": "item_123", "quantity": 2.5}]})
    assert response.status_code == 400
    assert response.get_json()["param"] == "$.items[0].quantity"


def test_an_expired_session_reads_canceled_in_legacy_versions(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, ACP_SESSION_TTL=60)
    agent = VersionedAgent(app, "2025-12-12")
    sid = agent.post("/checkout_sessions", agent.create_body()).get_json()["id"]
    state = app.extensions["acp"]
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=120)
    state.service.clock = lambda: later
    assert agent.get(sid)["status"] == "canceled"
    assert VersionedAgent(app, "2026-01-30").get(sid)["status"] == "expired"


def test_legacy_links_are_mapped_or_left_out(tmp_path: pathlib.Path) -> None:
    links = [{"type": "terms_of_use", "url": "https://shop.example/terms"},
             {"type": "return_policy", "url": "https://shop.example/returns"},
             {"type": "faq", "url": "https://shop.example/faq"}]
    app = build_app(tmp_path, ACP_LINKS=links)
    for version, expected in (
        ("2025-09-29", [("terms_of_use", "/terms"), ("seller_shop_policies", "/returns")]),
        ("2025-12-12", [("terms_of_use", "/terms"), ("return_policy", "/returns")]),
        ("2026-01-30", [("terms_of_use", "/terms"), ("return_policy", "/returns"), ("faq", "/faq")]),
    ):
        agent = VersionedAgent(app, version)
        session = agent.post("/checkout_sessions", agent.create_body()).get_json()
        got = [(link["type"], link["url"].removeprefix("https://shop.example")) for link in session["links"]]
        assert got == expected


def test_legacy_payment_provider_names_the_merchant_in_2026_01_16(app: Flask) -> None:
    agent = VersionedAgent(app, "2026-01-16")
    provider = agent.post("/checkout_sessions", agent.create_body()).get_json()["payment_provider"]
    assert provider == {"provider": "stripe", "merchant_id": "acct_fake", "supported_payment_methods": [
        {"type": "card", "supported_card_networks": ["amex", "discover", "mastercard", "visa"]}]}


# --------------------------------------------------------------------------- never a value a version lacks

#: every message the core and the adapters produce (type, code), plus one code nobody defines
MESSAGES = [("error", code) for code in (
    "missing", "invalid", "out_of_stock", "payment_declined", "requires_3ds", "not_found",
    "quantity_exceeded", "unsupported", "region_restricted", "minimum_not_met", "maximum_exceeded",
    "no_such_code")] + [
    ("warning", "low_stock"), ("warning", "price_change"), ("info", None)]
PARAMS = ["$.line_items[0].quantity", "$.fulfillment_details.address.country", "$.payment_data.handler_id",
          "$.selected_fulfillment_options[0].option_id", "$.payment_data.instrument.credential.token", None]


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("status", list(Status))
def test_every_status_and_message_renders_valid_in_every_version(version: str, status: Status) -> None:
    """Each core status and every message code we emit, rendered in each
    version, is valid against that version's schema (mapped where the version
    lacks the value: e.g. ``expired`` -> ``canceled``, ``not_found`` -> ``invalid``)."""
    order = Order(id="ord_1", checkout_session_id="cs_1", permalink_url="https://shop.example/o/1",
                  status="shipped")
    messages = tuple(Message(type=kind, code=code, param=PARAMS[i % len(PARAMS)], content="x",
                             resolution="recoverable", severity="low")
                     for i, (kind, code) in enumerate(MESSAGES))
    session = make_session("cs_1", status=status, order=order if status is Status.COMPLETED else None)
    option = FulfillmentOption(type="shipping", id="ship_1", title="Standard", item_ids=("item_1",),
                               amount=500, tax=50, description="2-3 days", carrier="UPS")
    session = session.replace(
        extra_messages=messages,
        buyer={"email": "ada@example.com", "account_type": "guest"},
        fulfillment_details={"name": "Ada", "email": "ada@example.com",
                             "address": {**ADDRESS, "company": "Analytical Engines Ltd"}},
        quote=dataclasses.replace(session.quote, fulfillment_options=(option,), selected_fulfillment_options=(
            SelectedFulfillmentOption(type="shipping", option_id="ship_1", item_ids=("item_1",)),)))
    links = tuple({"type": kind, "url": f"https://shop.example/{kind}"} for kind in (
        "terms_of_use", "privacy_policy", "return_policy", "shipping_policy", "contact_us", "about_us", "faq",
        "support"))
    body = VERSIONS[version].render_session(
        session, handlers=FakePaymentProcessor().handlers(), interventions=("3ds",), links=links,
        language="en")
    validate(body, "CheckoutSessionWithOrder" if "order" in body else "CheckoutSession", version)
    assert len(body["messages"]) == len(MESSAGES)
    assert {m["type"] for m in body["messages"]} <= ({"error", "info"} if version in LEGACY
                                                     else {"error", "warning", "info"})


@pytest.mark.parametrize("version", OLDER)
@pytest.mark.parametrize("status", ["created", "confirmed", "manual_review", "processing", "shipped",
                                    "completed", "canceled", "something_new"])
def test_every_order_status_renders_a_valid_legacy_event(version: str, status: str) -> None:
    order = Order(id="ord_1", checkout_session_id="cs_1", permalink_url="https://shop.example/o/1",
                  status=status, adjustments=(
                      Adjustment(id="a1", type="refund", occurred_at=NOW, status="completed", amount=250),
                      Adjustment(id="a2", type="credit", occurred_at=NOW, status="completed", amount=100),
                      Adjustment(id="a3", type="refund", occurred_at=NOW, status="pending", amount=999)))
    event = VERSIONS[version].render_event("order_update", order)
    validate_legacy_event(event, version)
    assert event["data"]["refunds"] == [{"type": "original_payment", "amount": 250},
                                        {"type": "store_credit", "amount": 100}]


@pytest.mark.parametrize("version", ["2025-09-29", "2026-01-16"])
def test_a_legacy_token_that_could_steer_a_url_is_refused(app: Flask, processor: FakePaymentProcessor,
                                                          version: str) -> None:
    agent = VersionedAgent(app, version)
    sid = agent.post("/checkout_sessions", agent.create_body()).get_json()["id"]
    response = agent.post(f"/checkout_sessions/{sid}/complete", agent.payment_body("../../v1/balance"))
    assert response.status_code == 400
    assert response.get_json()["param"] == "$.payment_data.token"
    assert processor.charges() == []


def test_a_key_reused_in_another_version_is_a_conflict_not_a_replay(app: Flask) -> None:
    """A stored response is in the version it was made in: replaying it to an
    agent that asked for another version would hand it a body it cannot read."""
    key = str(uuid.uuid4())
    new = VersionedAgent(app, "2026-04-17")
    body = new.create_body()
    assert new.post("/checkout_sessions", body, key=key).status_code == 201
    for version, status in (("2026-01-30", 409), ("2025-09-29", 409)):
        response = VersionedAgent(app, version).post("/checkout_sessions", body, key=key)
        assert response.status_code == status
        assert response.get_json()["code"] == "idempotency_conflict"
    assert new.post("/checkout_sessions", body, key=key).headers["Idempotent-Replayed"] == "true"


def test_items_shipped_several_ways_are_explained_in_2025_09_29(app: Flask) -> None:
    """2025-09-29 has one ``fulfillment_option_id``: when the items travel in
    several ways (chosen in a later version) the total counts every option, and
    an info message says which option carries which items."""
    new = VersionedAgent(app, "2026-04-17")
    body = new.create_body()
    body["line_items"] = [{"id": "item_123"}, {"id": "item_456"}]
    sid = new.post("/checkout_sessions", body).get_json()["id"]
    new.post(f"/checkout_sessions/{sid}", {"selected_fulfillment_options": [
        {"type": "shipping", "option_id": "fulfillment_option_456", "item_ids": ["item_123"]}]})
    legacy = VersionedAgent(app, "2025-09-29").get(sid)
    assert totals(legacy)["fulfillment"] == 500 + 100
    assert legacy["fulfillment_option_id"] == "fulfillment_option_456"
    (info,) = [m for m in legacy["messages"] if m["type"] == "info"]
    assert info["param"] == "$.fulfillment_option_id"
    assert "Express: item_123" in info["content"]
    assert "Standard: item_456" in info["content"]
    assert not [m for m in VersionedAgent(app, "2026-04-17").get(sid)["messages"] if m["type"] == "info"]
