"""Platform order updates: the webhook route, de-duplication, and how updates
change orders (the Shopify and WooCommerce adapters feed the same path)."""

from __future__ import annotations

import hashlib
import hmac
import json
import pathlib
import typing as t

from flask import Flask

from flask_acp.adapter import FulfillmentUpdate
from flask_acp.adapter import PlatformOrderUpdate
from flask_acp.adapter import PlatformRefund
from flask_acp.adapter import PlatformWebhook
from flask_acp.adapter import WebhookSignatureError
from flask_acp.catalog import CatalogAdapter
from flask_acp.testing import FakePaymentProcessor
from flask_acp.versions.v2026_04_17 import render_order
from tests.conftest import Agent
from tests.conftest import build_app
from tests.spec import validate

SECRET = b"platform-webhook-secret"


class HookedCatalog(CatalogAdapter):
    """The catalog adapter with a minimal signed webhook format:
    ``X-Test-Signature: hex(HMAC-SHA256(secret, body))``, body = one update."""

    name = "hooked"

    def parse_webhook(self, headers: t.Mapping[str, str], body: bytes) -> PlatformWebhook:
        expected = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(headers.get("X-Test-Signature", ""), expected):
            raise WebhookSignatureError("bad signature")
        data = json.loads(body)
        return PlatformWebhook(event_id=data["event_id"], updates=(PlatformOrderUpdate(
            checkout_session_id=data.get("session"), platform_order_id=data.get("order"),
            canceled=data.get("canceled", False),
            fulfillments=tuple(FulfillmentUpdate(**f) for f in data.get("fulfillments", [])),
            refunds=tuple(PlatformRefund(**r) for r in data.get("refunds", [])),
        ),))


def _post(client: t.Any, payload: dict[str, t.Any], *, signature: str | None = None) -> t.Any:
    body = json.dumps(payload).encode()
    sig = signature or hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    return client.post("/webhooks/hooked", data=body, headers={"X-Test-Signature": sig})


def _bought(tmp_path: pathlib.Path) -> tuple[Flask, FakePaymentProcessor, dict[str, t.Any]]:
    processor = FakePaymentProcessor()
    app = build_app(tmp_path, payment_processor=processor,
                    ACP_ADAPTER="tests.test_platform_updates:HookedCatalog")
    agent = Agent(app.test_client())
    session = agent.ready_session([{"id": "item_123", "quantity": 2}])
    done = agent.complete(session["id"]).get_json()
    assert done["status"] == "completed"
    return app, processor, done


def _order(app: Flask, order_id: str) -> dict[str, t.Any]:
    body = render_order(app.extensions["acp"].orders.get(order_id))
    data = dict(body)
    data.pop("type")
    validate(data, "Order")
    return body


def test_fulfillment_refund_and_duplicates(tmp_path: pathlib.Path) -> None:
    app, processor, done = _bought(tmp_path)
    client = app.test_client()
    line = done["line_items"][0]["id"]
    shipped = {"event_id": "e1", "session": done["id"], "fulfillments": [
        {"id": "F1", "status": "shipped", "line_items": {line: 1}, "carrier": "UPS",
         "tracking_number": "1Z1"}]}
    assert _post(client, shipped).status_code == 200
    order = _order(app, done["order"]["id"])
    assert order["status"] == "shipped"
    assert order["line_items"][0]["quantity"] == {"ordered": 2, "current": 2, "fulfilled": 1}
    assert order["fulfillments"][0]["tracking_number"] == "1Z1"
    # the same event again is ignored; the same fulfillment in a new event changes nothing
    assert _post(client, shipped).get_json()["duplicate"] is True
    assert _post(client, {**shipped, "event_id": "e2"}).status_code == 200
    assert _order(app, done["order"]["id"])["line_items"][0]["quantity"]["fulfilled"] == 1
    delivered = {"event_id": "e3", "order": done["order"]["id"], "fulfillments": [
        {"id": "F1", "status": "delivered"},
        {"id": "F2", "status": "delivered", "line_items": {line: 1}}]}
    assert _post(client, delivered).status_code == 200
    order = _order(app, done["order"]["id"])
    assert order["status"] == "completed"
    assert [f["status"] for f in order["fulfillments"]] == ["delivered", "delivered"]
    refund = {"event_id": "e4", "session": done["id"], "refunds": [{"id": "R1", "amount": 150}]}
    assert _post(client, refund).status_code == 200
    assert _post(client, {**refund, "event_id": "e5"}).status_code == 200  # same refund id
    assert [r["amount"] for r in processor.operations("refund")] == [150]
    assert _order(app, done["order"]["id"])["totals"][1]["amount"] == 150
    events = app.extensions["acp"].storage.outbox.entries(statuses=["pending", "delivered", "failed"])
    assert [e.type for e in events][0] == "order_create"
    # create, shipped, delivered, refund pending, refund completed (duplicates add nothing)
    assert len(events) == 5


def test_bad_signature_unknown_order_and_adapters_without_webhooks(tmp_path: pathlib.Path) -> None:
    app, _, done = _bought(tmp_path)
    client = app.test_client()
    response = _post(client, {"event_id": "x", "session": done["id"]}, signature="0" * 64)
    assert response.status_code == 401
    assert response.get_json()["code"] == "invalid_signature"
    assert _post(client, {"event_id": "y", "order": "gid://shop/Order/404"}).status_code == 200
    catalog = build_app(tmp_path / "plain").test_client()
    assert catalog.post("/webhooks/catalog", data=b"{}").status_code == 404


def test_platform_cancel(tmp_path: pathlib.Path) -> None:
    app, _, done = _bought(tmp_path)
    assert _post(app.test_client(), {"event_id": "c1", "session": done["id"],
                                     "canceled": True}).status_code == 200
    order = _order(app, done["order"]["id"])
    assert order["status"] == "canceled"
    assert order["line_items"][0]["status"] == "removed"
