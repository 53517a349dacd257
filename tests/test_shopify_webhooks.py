"""After the sale on Shopify: inbound webhooks, ``flask acp reconcile`` and
``flask acp cleanup``, end to end over real sockets, no mocks.

The merchant acts in the fake Shopify (fulfil with tracking, refund, cancel);
the fake sends signed REST-shaped webhooks to the app served on a loopback port
(``POST /webhooks/shopify``); the app applies them and sends the agent signed
``order_update`` webhooks, which an agent endpoint on another loopback port
verifies with Stripe's verifier (``Merchant-Signature`` uses the same
``t=,v1=`` scheme) and validates against the 2026-04-17 ``Order`` schema.
"""

from __future__ import annotations

import collections.abc as cabc
import datetime as dt
import hashlib
import json
import threading
import time
import typing as t

import pytest
import requests
import stripe
from flask import Flask
from werkzeug.serving import WSGIRequestHandler
from werkzeug.serving import make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from flask_acp.adapter import PlatformOrderUpdate
from flask_acp.adapter import PlatformRefund
from flask_acp.adapter import WebhookSignatureError
from flask_acp.models import line_item_id
from flask_acp.testing import FakePaymentProcessor
from flask_acp.testing.fake_shopify import FakeShopify
from flask_acp_adapters.shopify import SESSION_ATTRIBUTE
from flask_acp_adapters.shopify import ShopifyAdapter
from flask_acp_adapters.shopify import ShopifyClient
from flask_acp_adapters.shopify import webhooks
from tests.conftest import ADDRESS
from tests.conftest import AGENT_KEY
from tests.conftest import OTHER_KEY
from tests.conftest import Agent
from tests.conftest import serve_app
from tests.spec import validate
from tests.test_shopify import STORE
from tests.test_shopify import AppFactory
from tests.test_shopify import adapter_of
from tests.test_shopify import draft_of
from tests.test_shopify import make_app  # noqa: F401 - fixture
from tests.test_shopify import processor  # noqa: F401 - fixture
from tests.test_shopify import purchase
from tests.test_shopify import ready_session
from tests.test_shopify import server  # noqa: F401 - fixture
from tests.test_shopify import shop  # noqa: F401 - fixture

AGENT_SECRET = "whsec_agent_one_shopify_0001"
TEE, CAP = line_item_id("1001"), line_item_id("1004")
TRACKING_URL = "https://www.ups.com/track?tracknum=1Z999AA10123456784"


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class AgentEndpoint:
    """The agent's order-webhook endpoint on 127.0.0.1: ``Merchant-Signature``
    must verify with ``stripe.WebhookSignature.verify_header`` under the
    agent's secret (else 401); verified events are kept in arrival order."""

    path = "/agent/order_events"

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.events: list[dict[str, t.Any]] = []
        self.rejected = 0
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=_Quiet)
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

    @Request.application  # type: ignore[arg-type]
    def _app(self, request: Request) -> Response:
        body = request.get_data()
        try:
            stripe.WebhookSignature.verify_header(body, request.headers.get("Merchant-Signature"),
                                                  self.secret, tolerance=300)
        except stripe.SignatureVerificationError:
            with self._lock:
                self.rejected += 1
            return Response('{"error": "bad signature"}', status=401, mimetype="application/json")
        with self._lock:
            self.events.append(json.loads(body))
        return Response('{"received": true}', mimetype="application/json")

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, t.Any]]:
        """The first ``count`` events, once they have arrived."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if len(self.events) >= count:
                    return list(self.events)
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.events)} agent webhooks, expected {count}: {self.events}")
            time.sleep(0.02)


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def endpoint() -> cabc.Iterator[AgentEndpoint]:
    receiver = AgentEndpoint(AGENT_SECRET)
    yield receiver
    receiver.close()


@pytest.fixture
def app(make_app: AppFactory, endpoint: AgentEndpoint, shop: FakeShopify) -> cabc.Iterator[Flask]:  # noqa: F811
    app = make_app(
        ACP_AGENTS={"agent-one": {"api_keys": [AGENT_KEY], "webhook_url": endpoint.url,
                                  "webhook_secrets": [AGENT_SECRET]},
                    "agent-two": {"api_keys": [OTHER_KEY]}},
        SHOPIFY_WEBHOOK_SECRET=shop.webhook_secret, ACP_WEBHOOK_RETRY_INTERVALS=[1, 1],
        ACP_WEBHOOK_TIMEOUT=2.0)
    app.extensions["acp"].webhooks.thread.poll_interval = 0.05
    yield app
    app.extensions["acp"].webhooks.close()


@pytest.fixture
def url(app: Flask, shop: FakeShopify) -> cabc.Iterator[str]:  # noqa: F811
    """The app on a loopback port, with the fake's webhooks pointed at it."""
    with serve_app(app) as base:
        shop.subscribe_webhooks(f"{base}/webhooks/shopify")
        yield base
        shop.flush_webhooks()
        shop.subscribe_webhooks(None)


@pytest.fixture
def agent(app: Flask) -> Agent:
    return Agent(app.test_client())


# --- helpers -------------------------------------------------------------------------------


def buy(agent: Agent, shop: FakeShopify, endpoint: AgentEndpoint) -> dict[str, t.Any]:  # noqa: F811
    """2 tees and 1 cap, delivered to the agent as ``order_create``."""
    done, _ = purchase(agent, shop, [{"id": "1001", "quantity": 2}, {"id": "1004"}], ADDRESS)
    (created,) = endpoint.wait_for(1)
    assert created["type"] == "order_create"
    return done


def order_of(event: dict[str, t.Any]) -> dict[str, t.Any]:
    """The event's order, valid against the 2026-04-17 ``Order`` schema."""
    assert event["type"] in ("order_create", "order_update")
    data = dict(event["data"])
    assert data.pop("type") == "order"
    validate(data, "Order")
    return data


def lines(order: dict[str, t.Any]) -> dict[str, dict[str, int]]:
    return {line["id"]: line["quantity"] for line in order["line_items"]}


def refunded(order: dict[str, t.Any]) -> int:
    return int(next(x["amount"] for x in order["totals"] if x["type"] == "amount_refunded"))


def outbox(app: Flask) -> list[str]:
    events = app.extensions["acp"].storage.outbox.entries(
        statuses=("pending", "delivered", "failed", "skipped"))
    return [e.type for e in events]


def settle(shop: FakeShopify, app: Flask, endpoint: AgentEndpoint) -> list[dict[str, t.Any]]:  # noqa: F811
    """Wait until Shopify's webhooks were answered and the agent received every
    event the app queued; returns the agent's events."""
    for delivery in shop.flush_webhooks():
        assert delivery.status == 200, (delivery.topic, delivery.statuses, delivery.error, delivery.answer)
    return endpoint.wait_for(len(outbox(app)))


def topics(shop: FakeShopify) -> list[str]:  # noqa: F811
    return [d.topic for d in shop.deliveries]


# --- the story -----------------------------------------------------------------------------


def test_order_fulfilled_then_refunded_on_shopify_reaches_the_agent(
        shop: FakeShopify, app: Flask, url: str, agent: Agent, endpoint: AgentEndpoint,  # noqa: F811
        processor: FakePaymentProcessor) -> None:  # noqa: F811
    done = buy(agent, shop, endpoint)
    order_id = done["order"]["id"]
    assert order_id.startswith("gid://shopify/Order/")
    shop.flush_webhooks()
    shop.deliveries.clear()  # orders/updated of the purchase's tagsAdd: nothing for the agent

    # the merchant ships both tees with UPS tracking; the cap waits
    shop.fulfill(order_id, {1001: 2}, tracking_company="UPS", tracking_number="1Z999AA10123456784",
                 tracking_url=TRACKING_URL)
    events = settle(shop, app, endpoint)
    assert topics(shop) == ["fulfillments/create", "orders/partially_fulfilled", "orders/updated"]
    assert [d.headers["X-Shopify-Topic"] for d in shop.deliveries] == topics(shop)
    assert [e["type"] for e in events] == ["order_create", "order_update"]  # three webhooks, one change
    shipped = order_of(events[1])
    assert shipped["status"] == "shipped"
    (fulfillment,) = shipped["fulfillments"]
    assert fulfillment["id"].startswith("gid://shopify/Fulfillment/")
    assert (fulfillment["status"], fulfillment["carrier"], fulfillment["tracking_number"],
            fulfillment["tracking_url"]) == ("shipped", "UPS", "1Z999AA10123456784", TRACKING_URL)
    assert fulfillment["line_items"] == [{"id": TEE, "quantity": 2}]
    assert lines(shipped) == {TEE: {"ordered": 2, "current": 2, "fulfilled": 2},
                              CAP: {"ordered": 1, "current": 1, "fulfilled": 0}}

    # a partial refund in the Shopify admin: the money goes back through the processor, once
    shop.deliveries.clear()
    refund = shop.refund(order_id, "5.00", note="scratched print")
    assert refund["transactions"][0]["amount"] == "5.00"
    events = settle(shop, app, endpoint)
    assert topics(shop) == ["refunds/create", "orders/updated"]  # both carry the refund
    assert [r["amount"] for r in processor.operations("refund")] == [500]
    final = order_of(events[-1])
    assert refunded(final) == 500
    (adjustment,) = final["adjustments"]
    assert (adjustment["type"], adjustment["status"], adjustment["amount"]) == ("refund", "completed", 500)
    assert adjustment["id"] == f"shopify-{refund['id']}"
    assert final["status"] == "shipped"
    assert endpoint.rejected == 0


def test_duplicate_deliveries_are_ignored(shop: FakeShopify, app: Flask, url: str, agent: Agent,  # noqa: F811
                                          endpoint: AgentEndpoint,
                                          processor: FakePaymentProcessor) -> None:  # noqa: F811
    done = buy(agent, shop, endpoint)
    shop.refund(done["order"]["id"], "3.00")
    settle(shop, app, endpoint)
    before = outbox(app)
    original = shop.webhooks("refunds/create")[0]
    assert original.answer == {"received": True}
    # the same event again: for a second subscription (new webhook id) and as a retry
    again = shop.redeliver(original)
    retry = shop.redeliver(original, new_webhook_id=False)
    shop.flush_webhooks()
    assert again.headers["X-Shopify-Event-Id"] == retry.headers["X-Shopify-Event-Id"] == original.event_id
    assert again.webhook_id != original.webhook_id == retry.webhook_id
    assert again.answer == retry.answer == {"received": True, "duplicate": True}
    assert len(processor.operations("refund")) == 1
    assert outbox(app) == before


def test_bad_signature_is_401_and_changes_nothing(shop: FakeShopify, app: Flask, url: str,  # noqa: F811
                                                  agent: Agent, endpoint: AgentEndpoint,
                                                  processor: FakePaymentProcessor) -> None:  # noqa: F811
    done = buy(agent, shop, endpoint)
    with shop.suppress_webhooks():  # the merchant cancels; a forger replays it with a twist
        shop.cancel(done["order"]["id"], refund=True)
    body = json.dumps(shop.order(done["order"]["id"])).encode()
    signed = shop.flush_webhooks()[0].headers  # a genuine delivery's headers (orders/updated)
    headers = {**signed, "X-Shopify-Topic": "orders/cancelled", "X-Shopify-Event-Id": "forged-1"}
    target = f"{url}/webhooks/shopify"
    for attempt in (
        {**headers, "X-Shopify-Hmac-Sha256": webhooks.signature("not-the-secret", body)},  # wrong key
        headers,  # another body's signature
        {k: v for k, v in headers.items() if k != "X-Shopify-Hmac-Sha256"},  # none
    ):
        answer = requests.post(target, data=body, headers=attempt, timeout=5)
        assert answer.status_code == 401, answer.text
        assert answer.json()["code"] == "invalid_signature"
    assert outbox(app) == ["order_create"]
    assert processor.operations("refund") == []
    # the same body correctly signed is applied
    answer = requests.post(target, data=body, timeout=5, headers={
        **headers, "X-Shopify-Hmac-Sha256": webhooks.signature(shop.webhook_secret, body)})
    assert answer.status_code == 200
    assert order_of(endpoint.wait_for(2)[1])["status"] == "canceled"


@pytest.mark.parametrize("with_refund", [False, True])
def test_cancel_on_shopify(shop: FakeShopify, app: Flask, url: str, agent: Agent,  # noqa: F811
                           endpoint: AgentEndpoint, processor: FakePaymentProcessor,  # noqa: F811
                           with_refund: bool) -> None:
    done = buy(agent, shop, endpoint)
    total = int(next(x["amount"] for x in done["totals"] if x["type"] == "total"))
    shop.cancel(done["order"]["id"], reason="inventory", refund=with_refund)
    events = settle(shop, app, endpoint)
    assert topics(shop)[-2:] == ["orders/cancelled", "orders/updated"]
    final = order_of(events[-1])
    assert final["status"] == "canceled"
    assert {line["status"] for line in final["line_items"]} == {"removed"}
    # canceled before shipping: the money goes back exactly once, with or without a
    # refund recorded in Shopify (Shopify never held it)
    assert [r["amount"] for r in processor.operations("refund")] == [total]
    assert refunded(final) == total


def test_delivery_progress_completes_the_order(shop: FakeShopify, app: Flask, url: str,  # noqa: F811
                                               agent: Agent, endpoint: AgentEndpoint) -> None:
    done = buy(agent, shop, endpoint)
    order_id = done["order"]["id"]
    first = shop.fulfill(order_id, {1001: 2}, tracking_company="UPS", tracking_number="1Z1")
    second = shop.fulfill(order_id, tracking_company="USPS", tracking_number="9400")  # the rest
    assert shop.webhooks("orders/fulfilled")
    shop.update_fulfillment(first["id"], shipment_status="in_transit")
    shop.update_fulfillment(first["id"], shipment_status="out_for_delivery")
    events = settle(shop, app, endpoint)
    statuses = {f["tracking_number"]: f["status"] for f in order_of(events[-1])["fulfillments"]}
    assert statuses == {"1Z1": "out_for_delivery", "9400": "shipped"}
    shop.update_fulfillment(first["id"], shipment_status="delivered")
    shop.update_fulfillment(second["id"], shipment_status="delivered")
    final = order_of(settle(shop, app, endpoint)[-1])
    assert final["status"] == "completed"
    assert [f["status"] for f in final["fulfillments"]] == ["delivered", "delivered"]
    events_of_first = next(f for f in final["fulfillments"] if f["tracking_number"] == "1Z1")["events"]
    assert [e["type"] for e in events_of_first] == ["shipped", "in_transit", "out_for_delivery", "delivered"]
    assert {line["status"] for line in final["line_items"]} == {"fulfilled"}


def test_a_replayed_or_older_shipment_report_never_moves_a_delivery_back(
        shop: FakeShopify, app: Flask, url: str, agent: Agent, endpoint: AgentEndpoint) -> None:  # noqa: F811
    """The event-id headers are not signed: a captured signed body replayed
    with a fresh event id is the same delivery (de-duplicated on the body), and
    a report older (``updated_at``) than the one applied changes nothing."""
    done = buy(agent, shop, endpoint)
    fulfillment = shop.fulfill(done["order"]["id"], tracking_company="UPS", tracking_number="1Z1")
    shop.update_fulfillment(fulfillment["id"], shipment_status="in_transit")
    shop.clock.advance(2)  # Shopify's updated_at has whole seconds
    shop.update_fulfillment(fulfillment["id"], shipment_status="delivered")
    settle(shop, app, endpoint)
    count = len(outbox(app))
    in_transit = next(d for d in shop.webhooks("fulfillments/update")
                      if json.loads(d.body)["shipment_status"] == "in_transit")
    target = f"{url}/webhooks/shopify"
    replay = requests.post(target, data=in_transit.body, timeout=5, headers={
        **in_transit.headers, "X-Shopify-Event-Id": "fresh-event-id", "X-Shopify-Webhook-Id": "fresh"})
    assert replay.json() == {"received": True, "duplicate": True}
    # an older report with another body (as a late, out-of-order delivery would be)
    older = {**json.loads(in_transit.body), "note": "late"}
    late = shop.send_webhook(target, "fulfillments/update", older)
    assert late.answer == {"received": True}
    assert len(outbox(app)) == count  # nothing changed, nothing told to the agent
    session = app.extensions["acp"].storage.sessions.get(done["id"])
    assert [f.status for f in session.order.fulfillments] == ["delivered"]


def test_reconcile_picks_up_a_fulfillment_whose_webhook_never_came(
        shop: FakeShopify, app: Flask, url: str, agent: Agent, endpoint: AgentEndpoint,  # noqa: F811
        processor: FakePaymentProcessor) -> None:  # noqa: F811
    done = buy(agent, shop, endpoint)
    settle(shop, app, endpoint)
    since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")
    sent = len(shop.deliveries)
    with shop.suppress_webhooks():
        shop.fulfill(done["order"]["id"], {1004: 1}, tracking_company="DHL", tracking_number="JD01")
        shop.refund(done["order"]["id"], "2.50")
    assert len(shop.deliveries) == sent  # Shopify never told the app
    assert outbox(app) == ["order_create"]
    runner = app.test_cli_runner()
    result = runner.invoke(args=["acp", "reconcile", "--since", since])
    assert result.exit_code == 0, result.output
    assert "orders read=1 applied=1" in result.output
    final = order_of(settle(shop, app, endpoint)[-1])
    (fulfillment,) = final["fulfillments"]
    assert (fulfillment["carrier"], fulfillment["tracking_number"]) == ("DHL", "JD01")
    assert lines(final)[CAP]["fulfilled"] == 1
    assert refunded(final) == 250
    assert [r["amount"] for r in processor.operations("refund")] == [250]
    # running it again (or without --since) changes nothing
    count = len(outbox(app))
    for args in (["acp", "reconcile", "--since", since], ["acp", "reconcile"]):
        again = runner.invoke(args=args)
        assert again.exit_code == 0, again.output
        assert "orders read=1" in again.output
    assert len(outbox(app)) == count
    assert len(processor.operations("refund")) == 1
    assert shop.calls["AcpOrdersChanged"] == 3


def test_cleanup_command_deletes_an_abandoned_draft(shop: FakeShopify, app: Flask,  # noqa: F811
                                                    agent: Agent, endpoint: AgentEndpoint) -> None:
    abandoned = draft_of(shop, ready_session(agent)["id"])["id"]
    buy(agent, shop, endpoint)  # its draft is completed: never touched
    runner = app.test_cli_runner()
    result = runner.invoke(args=["acp", "cleanup", "--older-than", "3600"])
    assert result.output.splitlines() == ["removed=0"]  # the draft still holds its stock
    adapter_of(app).clock = lambda: dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
    result = runner.invoke(args=["acp", "cleanup", "--older-than", "3600"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["removed=1", abandoned]
    assert abandoned not in {d["id"] for d in shop.draft_list()}
    assert [d["status"] for d in shop.draft_list()] == ["COMPLETED"]


# --- our orders only -----------------------------------------------------------------------


def test_an_order_that_only_copies_our_session_attribute_is_not_ours(
        shop: FakeShopify, app: Flask, url: str, agent: Agent, endpoint: AgentEndpoint) -> None:  # noqa: F811
    done = buy(agent, shop, endpoint)
    # the merchant duplicates the order in the admin: same note attributes, another order
    client = adapter_of(app).client
    created = client.execute(
        "mutation C($input: DraftOrderInput!) { draftOrderCreate(input: $input) { draftOrder { id } } }",
        {"input": {"lineItems": [{"variantId": "gid://shopify/ProductVariant/1001", "quantity": 2}],
                   "tags": ["acp"], "customAttributes": [{"key": SESSION_ATTRIBUTE, "value": done["id"]}]}},
        operation_name="C")
    draft_id = created["draftOrderCreate"]["draftOrder"]["id"]
    completed = client.execute(
        "mutation D($id: ID!) { draftOrderComplete(id: $id) { draftOrder { order { id } } } }",
        {"id": draft_id}, operation_name="D")
    duplicate = completed["draftOrderComplete"]["draftOrder"]["order"]["id"]
    assert duplicate != done["order"]["id"]
    shop.fulfill(duplicate, tracking_number="DUP1")
    shop.cancel(duplicate)
    settle(shop, app, endpoint)
    assert outbox(app) == ["order_create"]
    assert app.extensions["acp"].orders.get(done["order"]["id"]).status == "created"


def test_fulfillment_cancelled_on_shopify_gives_its_units_back(
        shop: FakeShopify, app: Flask, url: str, agent: Agent, endpoint: AgentEndpoint) -> None:  # noqa: F811
    done = buy(agent, shop, endpoint)
    wrong = shop.fulfill(done["order"]["id"], {1001: 2}, tracking_number="WRONG")
    shop.update_fulfillment(wrong["id"], status="cancelled")
    shop.fulfill(done["order"]["id"], {1001: 2}, tracking_number="RIGHT")
    final = order_of(settle(shop, app, endpoint)[-1])
    by_number = {f["tracking_number"]: f for f in final["fulfillments"]}
    assert by_number["WRONG"]["status"] == "canceled"
    assert by_number["RIGHT"]["line_items"] == [{"id": TEE, "quantity": 2}]
    assert lines(final)[TEE]["fulfilled"] == 2
    assert final["status"] == "shipped"


# --- the adapter on its own ----------------------------------------------------------------


def _adapter(shop_url: str = "https://acp-test.myshopify.com", **config: t.Any) -> ShopifyAdapter:
    return ShopifyAdapter.from_config({"SHOPIFY_SHOP_URL": shop_url, "SHOPIFY_ACCESS_TOKEN": "shpat_x",
                                       **config})


def _signed(secret: str, topic: str, payload: t.Any, **headers: str) -> tuple[dict[str, str], bytes]:
    body = json.dumps(payload).encode()
    return {"X-Shopify-Topic": topic, "X-Shopify-Hmac-Sha256": webhooks.signature(secret, body),
            "X-Shopify-Event-Id": "e1", "X-Shopify-Shop-Domain": "acp-test.myshopify.com", **headers}, body


def test_webhook_secret_configuration() -> None:
    assert _adapter().webhook_secrets == ()
    assert _adapter(SHOPIFY_WEBHOOK_SECRET="k1").webhook_secrets == ("k1",)
    assert _adapter(SHOPIFY_WEBHOOK_SECRET=["new", "old"]).webhook_secrets == ("new", "old")
    credentials = ShopifyAdapter.from_config({
        "SHOPIFY_SHOP_URL": "https://acp-test.myshopify.com", "SHOPIFY_CLIENT_ID": "id",
        "SHOPIFY_CLIENT_SECRET": "app-secret"})
    assert credentials.webhook_secrets == ("app-secret",)  # Shopify signs with the client secret
    for bad in ("", [], ["ok", ""], 42):
        with pytest.raises(ValueError, match="SHOPIFY_WEBHOOK_SECRET"):
            _adapter(SHOPIFY_WEBHOOK_SECRET=bad)


def test_parse_webhook_edge_cases() -> None:
    adapter = _adapter(SHOPIFY_WEBHOOK_SECRET=["new", "old"])
    order = {"id": 7, "admin_graphql_api_id": "gid://shopify/Order/7", "cancelled_at": "2026-11-29T10:00:00Z",
             "tags": "acp, payment:pi_1", "note_attributes": [{"name": SESSION_ATTRIBUTE, "value": "cs_1"}],
             "presentment_currency": "KWD", "refunds": [{"id": 9, "note": "late", "transactions": [
                 {"kind": "refund", "status": "success", "amount": "1.250", "currency": "KWD"},
                 {"kind": "refund", "status": "failure", "amount": "9.000", "currency": "KWD"}]}]}
    headers, body = _signed("old", "orders/cancelled", order)  # the previous key still verifies
    parsed = adapter.parse_webhook(headers, body)
    assert parsed.event_id == "orders/cancelled:" + hashlib.sha256(body).hexdigest()
    assert parsed.updates == (PlatformOrderUpdate(
        checkout_session_id="cs_1", platform_order_id="gid://shopify/Order/7", canceled=True,
        refunds=(PlatformRefund(id="9", amount=1250, reason="late"),)),)
    # another shop, another topic, someone else's order, no JSON: acknowledged, nothing to do
    for topic, payload, extra in (
        ("orders/cancelled", order, {"X-Shopify-Shop-Domain": "other.myshopify.com"}),
        ("products/update", {"id": 1}, {}),
        ("orders/updated", {"id": 8, "tags": "", "note_attributes": []}, {}),
        ("orders/updated", [1, 2], {}),
    ):
        headers, body = _signed("new", topic, payload, **extra)
        assert adapter.parse_webhook(headers, body).updates == ()
    with pytest.raises(WebhookSignatureError):
        adapter.parse_webhook({**headers, "X-Shopify-Hmac-Sha256": "AAAA"}, body)
    with pytest.raises(NotImplementedError):
        _adapter().parse_webhook(headers, body)


def test_refund_in_another_currency_than_the_order_is_not_read() -> None:
    order = {"id": 7, "tags": "acp", "presentment_currency": "EUR", "refunds": [{"id": 9, "transactions": [
        {"kind": "refund", "status": "success", "amount": "1.00", "currency": "USD"}]}]}
    update = webhooks.rest_order_update(order)
    assert update is not None
    assert update.refunds == ()
    jpy = {"order_id": 7, "id": 3, "transactions": [
        {"kind": "refund", "status": "success", "amount": "1500", "currency": "JPY"}]}
    (only,) = webhooks.webhook_updates("refunds/create", jpy)
    assert only.refunds[0].amount == 1500
    assert webhooks.webhook_updates("refunds/create", {**jpy, "transactions": [
        {"kind": "refund", "status": "success", "amount": "0.5", "currency": "JPY"}]}) == ()


@pytest.mark.parametrize(("status", "shipment", "acp"), [
    ("success", None, "shipped"), ("success", "label_printed", "shipped"),
    ("success", "confirmed", "shipped"),
    ("success", "in_transit", "in_transit"), ("success", "attempted_delivery", "in_transit"),
    ("success", "out_for_delivery", "out_for_delivery"), ("success", "delivered", "delivered"),
    ("success", "failure", "failed"), ("cancelled", "in_transit", "canceled"), ("error", None, "failed"),
    ("pending", None, "pending"), ("open", None, "pending"),
    ("SUCCESS", "FULFILLED", "shipped"), ("SUCCESS", "MARKED_AS_FULFILLED", "shipped"),
    ("SUCCESS", "IN_TRANSIT", "in_transit"), ("SUCCESS", "PICKED_UP", "delivered"),
    ("SUCCESS", "NOT_DELIVERED", "failed"), ("CANCELLED", "CANCELED", "canceled"),
])
def test_fulfillment_status_mapping(status: str, shipment: str | None, acp: str) -> None:
    assert webhooks.fulfillment_status(status, shipment) == acp


def test_fake_webhooks_are_signed_like_shopify() -> None:
    with FakeShopify(STORE) as fake:
        fake.subscribe_webhooks("http://127.0.0.1:9/nowhere")  # nothing listens: retried, then given up
        client = ShopifyClient(fake.url, access_token=fake.access_token)
        try:
            draft = client.execute(
                "mutation C($input: DraftOrderInput!) "
                "{ draftOrderCreate(input: $input) { draftOrder { id } } }",
                {"input": {"lineItems": [{"variantId": "gid://shopify/ProductVariant/1001", "quantity": 1}]}},
                operation_name="C")["draftOrderCreate"]["draftOrder"]["id"]
            client.execute("mutation D($id: ID!) { draftOrderComplete(id: $id) { draftOrder { id } } }",
                           {"id": draft}, operation_name="D")
        finally:
            client.close()
        (order,) = fake.order_list()
        fake.refund(order["id"], "1.00")
        (delivery, _) = fake.flush_webhooks()
    assert delivery.topic == "refunds/create"
    assert delivery.statuses == [None, None, None]
    assert delivery.error
    assert delivery.headers["X-Shopify-Hmac-Sha256"] == webhooks.signature(fake.webhook_secret, delivery.body)
    assert fake.webhook_secret == STORE["clients"]["acp-client"]["secret"]
    assert {"X-Shopify-Topic", "X-Shopify-Event-Id", "X-Shopify-Webhook-Id", "X-Shopify-Shop-Domain",
            "X-Shopify-API-Version", "X-Shopify-Triggered-At"} <= set(delivery.headers)
    assert delivery.payload["transactions"][0]["amount"] == "1.00"


def test_a_signed_body_replayed_under_another_topic_changes_nothing(
        shop: FakeShopify, app: Flask, url: str, agent: Agent, endpoint: AgentEndpoint) -> None:  # noqa: F811
    """``X-Shopify-Topic`` is not signed either: a captured ``refunds/create``
    body re-sent as ``fulfillments/create`` must not become a shipment."""
    done = buy(agent, shop, endpoint)
    shop.refund(done["order"]["id"], "1.00", note="goodwill")
    settle(shop, app, endpoint)
    count = len(outbox(app))
    (delivery,) = shop.webhooks("refunds/create")
    for topic in ("fulfillments/create", "fulfillments/update", "orders/cancelled"):
        replay = requests.post(f"{url}/webhooks/shopify", data=delivery.body, timeout=5, headers={
            **delivery.headers, "X-Shopify-Topic": topic, "X-Shopify-Event-Id": f"fresh-{topic}"})
        assert replay.status_code == 200, replay.text
    session = app.extensions["acp"].storage.sessions.get(done["id"])
    assert len(outbox(app)) == count  # nothing told to the agent
    assert session.order.fulfillments == ()
