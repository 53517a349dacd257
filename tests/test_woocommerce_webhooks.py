"""WooCommerce -> flask-acp -> agent: inbound WooCommerce webhooks and ``flask acp reconcile``.

End to end over real sockets, no mocks: the app (``ACP_ADAPTER="woocommerce"``)
is served on a loopback port; FakeWooCommerce delivers signed ``order.updated``
webhooks to ``{url}/webhooks/woocommerce`` when the merchant changes an order;
the agent's endpoint (``tests.test_webhooks.Receiver``) verifies every
``Merchant-Signature`` with ``stripe.WebhookSignature.verify_header`` and each
order it gets is validated against the 2026-04-17 ``Order`` schema. Then the
pure parts (signature, ping, de-duplication key, status mapping) from fixtures.
"""

from __future__ import annotations

import base64
import collections.abc as cabc
import dataclasses
import datetime as dt
import decimal
import hashlib
import hmac
import json
import pathlib
import time
import typing as t

import pytest
import requests
from flask import Flask

from flask_acp.adapter import FulfillmentUpdate
from flask_acp.adapter import PlatformRefund
from flask_acp.adapter import WebhookSignatureError
from flask_acp.models import line_item_id
from flask_acp.testing import FakePaymentProcessor
from flask_acp.testing.fake_woocommerce import DEMO_SEED
from flask_acp.testing.fake_woocommerce import FakeWooCommerce
from flask_acp.testing.fake_woocommerce import WebhookDelivery
from flask_acp_adapters.woocommerce import WooCommerceAdapter
from flask_acp_adapters.woocommerce.webhooks import event_key
from flask_acp_adapters.woocommerce.webhooks import is_ping
from flask_acp_adapters.woocommerce.webhooks import order_update
from flask_acp_adapters.woocommerce.webhooks import signature
from flask_acp_adapters.woocommerce.webhooks import signature_matches
from tests.conftest import ADDRESS
from tests.conftest import AGENT_KEY
from tests.conftest import Agent
from tests.conftest import build_app
from tests.conftest import serve_app
from tests.test_webhooks import Delivery
from tests.test_webhooks import Receiver
from tests.test_webhooks import check_event

AGENT_SECRET = "whsec_agent_one_primary_0001"
BUYER = {"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace"}
BEANIE = "10"  # demo seed: Beanie, 18.00, taxable, ships


# --------------------------------------------------------------------------- the shop


@dataclasses.dataclass
class Shop:
    """The app served on a loopback port, wired to a FakeWooCommerce whose
    ``order.updated`` webhook points at it, and the agent's receiver."""

    app: Flask
    url: str
    woo: FakeWooCommerce
    processor: FakePaymentProcessor
    receiver: Receiver
    agent: Agent
    hook: int

    @property
    def hook_url(self) -> str:
        return f"{self.url}/webhooks/woocommerce"

    def buy(self, quantity: int = 2) -> dict[str, t.Any]:
        """An order through the ACP API; returns the completed session once the
        agent has its ``order_create`` (an event carries the order as it is when
        sent, so a later change must not overtake it)."""
        created = self.agent.create([{"id": BEANIE, "quantity": quantity}], buyer=BUYER,
                                    fulfillment_details={"name": ADDRESS["name"], "address": ADDRESS})
        assert created.status_code == 201, created.get_json()
        session = created.get_json()
        assert session["status"] == "ready_for_payment", session["messages"]
        done = self.agent.complete(session["id"], "spt_ok")
        assert done.status_code == 200, done.get_json()
        body = t.cast(dict[str, t.Any], done.get_json())
        assert body["status"] == "completed"
        self.woo.flush_webhooks()
        self.settle()
        return body

    def outbox(self) -> list[t.Any]:
        return t.cast(list[t.Any], self.app.extensions["acp"].storage.outbox.entries(
            statuses=("pending", "delivered", "failed", "skipped")))

    def sent(self) -> list[WebhookDelivery]:
        """Deliveries of order changes the fake made (flushed), pings left out."""
        return [d for d in self.woo.flush_webhooks() if d.topic != "ping"]

    def order_event(self, check: t.Callable[[dict[str, t.Any]], bool],
                    timeout: float = 10.0) -> dict[str, t.Any]:
        """The first order event the agent received whose order passes ``check``
        (schema-validated); waits for it."""
        deadline = time.monotonic() + timeout
        while True:
            for delivery in self.receiver.delivered:
                event = check_event(delivery)
                if check(event["data"]):
                    return event
            if time.monotonic() > deadline:
                raise AssertionError(f"no such order event; received {events(self.receiver.delivered)}")
            time.sleep(0.02)

    def settle(self) -> None:
        """Wait until the outbox has nothing pending (every order event reached the agent)."""
        deadline = time.monotonic() + 10
        while any(row.status == "pending" for row in self.outbox()):
            assert time.monotonic() < deadline, self.outbox()
            time.sleep(0.02)

    def reconcile(self, *args: str) -> str:
        result = self.app.test_cli_runner().invoke(args=["acp", "reconcile", *args])
        assert result.exit_code == 0, result.output
        return result.output


def events(deliveries: cabc.Iterable[Delivery]) -> list[tuple[str, str]]:
    return [(d.event["type"], d.event["data"]["status"]) for d in deliveries]


def refunded(order: dict[str, t.Any]) -> int:
    return int(next((x["amount"] for x in order.get("totals") or [] if x["type"] == "amount_refunded"), 0))


@pytest.fixture
def woo() -> cabc.Iterator[FakeWooCommerce]:
    with FakeWooCommerce(DEMO_SEED) as fake:
        yield fake
        assert fake.server_errors == []


@pytest.fixture
def receiver() -> cabc.Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def make_app(tmp_path: pathlib.Path, woo: FakeWooCommerce, receiver: Receiver, **config: t.Any
             ) -> tuple[Flask, FakePaymentProcessor]:
    processor = FakePaymentProcessor(str(tmp_path / "ledger.sqlite3"))
    agents = {"agent-one": {"api_keys": [AGENT_KEY], "webhook_url": receiver.url,
                            "webhook_secrets": [AGENT_SECRET]}}
    app = build_app(tmp_path, payment_processor=processor, ACP_AGENTS=agents,
                    ACP_WEBHOOK_RETRY_INTERVALS=[1, 1, 1], ACP_WEBHOOK_TIMEOUT=2.0, **woo.config(**config))
    return app, processor


@pytest.fixture
def shop(tmp_path: pathlib.Path, woo: FakeWooCommerce, receiver: Receiver) -> cabc.Iterator[Shop]:
    app, processor = make_app(tmp_path, woo, receiver)
    state = app.extensions["acp"]
    try:
        with serve_app(app) as url:
            hook = woo.add_webhook(f"{url}/webhooks/woocommerce")
            yield Shop(app, url, woo, processor, receiver, Agent(app.test_client()), hook)
            woo.flush_webhooks()
    finally:
        state.webhooks.close()
        state.adapter.close()


# --------------------------------------------------------------------------- end to end


def test_completed_then_partially_refunded_order_reaches_the_agent(shop: Shop) -> None:
    """The issue's scenario: tracking, completion, then a partial refund in
    WooCommerce, each reaching the agent as a signed, schema-valid order_update;
    the processor refunds exactly once, even when WooCommerce delivers again."""
    woo = shop.woo
    (ping,) = woo.deliveries
    assert (ping.topic, ping.status, ping.body) == ("ping", 200, f"webhook_id={shop.hook}".encode())
    done = shop.buy(quantity=2)
    order_id = done["order"]["id"]
    created = check_event(shop.receiver.wait_for(1)[0], "order_create")
    assert created["data"]["status"] == "confirmed"
    # the checkout's own saves (draft, pending, paid) were delivered too and changed nothing
    assert {d.status for d in shop.sent()} == {200}
    shop.settle()
    assert [row.type for row in shop.outbox()] == ["order_create"]

    tracking_id = woo.add_tracking(int(order_id), "USPS", "9400111899223197428490")
    shipped = shop.order_event(lambda o: o["status"] == "shipped")["data"]
    (fulfillment,) = shipped["fulfillments"]
    assert fulfillment == {**fulfillment, "id": f"wc-trk-{tracking_id}", "status": "shipped",
                           "carrier": "USPS", "tracking_number": "9400111899223197428490",
                           "tracking_url": "https://tools.usps.com/go/TrackConfirmAction?tLabels="
                                           "9400111899223197428490",
                           "line_items": [{"id": line_item_id(BEANIE), "quantity": 2}]}
    (line,) = shipped["line_items"]
    assert (line["quantity"], line["status"]) == ({"ordered": 2, "current": 2, "fulfilled": 2}, "fulfilled")

    woo.complete_order(int(order_id))
    completed = shop.order_event(lambda o: o["status"] == "completed")["data"]
    assert [f["id"] for f in completed["fulfillments"]] == [f"wc-trk-{tracking_id}"]  # tracked: no extra one
    assert shop.processor.operations("refund") == []

    refund_id = woo.refund(int(order_id), "5.00", "Box arrived dented")
    with_refund = shop.order_event(lambda o: refunded(o) == 500)["data"]
    assert with_refund["status"] == "completed"
    (adjustment,) = with_refund["adjustments"]
    assert adjustment == {**adjustment, "id": f"woocommerce-{refund_id}", "type": "refund",
                          "status": "completed", "amount": 500, "currency": "usd",
                          "reason": "Box arrived dented"}
    (operation,) = shop.processor.operations("refund")
    assert (operation["amount"], operation["payment_id"]) == (500, shop.processor.charges()[0]["payment_id"])

    # WooCommerce delivers the same change again (a resend, a second webhook): ignored
    shop.settle()
    before = len(shop.outbox())
    last = shop.sent()[-1]
    again = woo.redeliver(last.delivery_id)
    assert again.status == 200
    assert json.loads(again.response) == {"received": True, "duplicate": True}
    assert again.headers["X-WC-Webhook-Delivery-ID"] != last.headers["X-WC-Webhook-Delivery-ID"]
    assert len(shop.outbox()) == before
    assert len(shop.processor.operations("refund")) == 1
    assert woo.webhooks[0]["failure_count"] == 0


def test_ping_is_accepted_and_changes_nothing(shop: Shop) -> None:
    shop.buy()
    shop.settle()
    before = (len(shop.outbox()), shop.app.extensions["acp"].storage.sessions.get(
        shop.outbox()[0].session_id))
    ping = shop.woo.ping(shop.hook)
    assert (ping.status, ping.headers.get("X-WC-Webhook-Signature")) == (200, None)
    assert json.loads(ping.response) == {"received": True}
    # any digits, even a webhook id this store does not know
    answer = requests.post(shop.hook_url, data={"webhook_id": "987"}, timeout=5)
    assert answer.status_code == 200
    sessions = shop.app.extensions["acp"].storage.sessions
    assert (len(shop.outbox()), sessions.get(shop.outbox()[0].session_id)) == before


def test_bad_or_missing_signature_is_refused(shop: Shop) -> None:
    done = shop.buy()
    order_id = int(done["order"]["id"])
    shop.settle()
    wrong = shop.woo.add_webhook(shop.hook_url, secret="not-the-secret")  # its ping is unsigned: accepted
    shop.woo.cancel_order(order_id)
    by_hook = {d.webhook_id: d.status for d in shop.sent()[-2:]}
    assert by_hook == {shop.hook: 200, wrong: 401}
    canceled = shop.order_event(lambda o: o["status"] == "canceled")["data"]
    assert [line["quantity"]["current"] for line in canceled["line_items"]] == [0]
    # canceled before shipping: flask-acp gives the money back (WooCommerce never held it)
    total = next(x["amount"] for x in done["totals"] if x["type"] == "total")
    assert [r["amount"] for r in shop.processor.operations("refund")] == [total]

    last = shop.sent()[-1]
    tampered = last.body.replace(b'"cancelled"', b'"completed"')
    unsigned = {k: v for k, v in last.headers.items() if k != "X-WC-Webhook-Signature"}
    for headers, body in (({**last.headers}, tampered), (unsigned, last.body),
                          ({**last.headers, "X-WC-Webhook-Signature": "bm9wZQ=="}, last.body)):
        answer = requests.post(shop.hook_url, data=body, headers=headers, timeout=5)
        assert answer.status_code == 401, answer.text
        assert answer.json()["code"] == "invalid_signature"
    # a form body that is not exactly the ping is no ping
    answer = requests.post(shop.hook_url, data={"webhook_id": "1", "status": "completed"}, timeout=5)
    assert answer.status_code == 401
    shop.settle()
    assert all(d.event["data"]["status"] != "completed" for d in shop.receiver.delivered)


def test_rotated_secret_is_accepted_while_both_are_configured(
        tmp_path: pathlib.Path, woo: FakeWooCommerce, receiver: Receiver) -> None:
    app, _processor = make_app(tmp_path, woo, receiver,
                               WOOCOMMERCE_WEBHOOK_SECRET=["new-secret", "old-secret"])
    state = app.extensions["acp"]
    try:
        with serve_app(app) as url:
            old = woo.add_webhook(f"{url}/webhooks/woocommerce", secret="old-secret")
            new = woo.add_webhook(f"{url}/webhooks/woocommerce", secret="new-secret")
            other = woo.add_webhook(f"{url}/webhooks/woocommerce", secret="third")
            agent = Agent(app.test_client())
            created = agent.create([{"id": BEANIE}], buyer=BUYER, fulfillment_details={"address": ADDRESS})
            order_id = int(agent.complete(created.get_json()["id"], "spt_ok").get_json()["order"]["id"])
            woo.flush_webhooks()
            woo.complete_order(order_id)
            statuses = {(d.webhook_id, d.status) for d in woo.flush_webhooks()[-3:]}
            assert statuses == {(old, 200), (new, 200), (other, 401)}
    finally:
        state.webhooks.close()
        state.adapter.close()


def test_unconfigured_secret_means_no_webhook_route(tmp_path: pathlib.Path, woo: FakeWooCommerce,
                                                    receiver: Receiver) -> None:
    app, _processor = make_app(tmp_path, woo, receiver, WOOCOMMERCE_WEBHOOK_SECRET=None)
    try:
        answer = app.test_client().post("/webhooks/woocommerce", data={"webhook_id": "1"})
        assert answer.status_code == 404
    finally:
        app.extensions["acp"].webhooks.close()
        app.extensions["acp"].adapter.close()


def test_reconcile_picks_up_a_change_whose_webhook_never_came(shop: Shop) -> None:
    done = shop.buy(quantity=1)
    order_id = done["order"]["id"]
    shop.settle()
    before_change = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=2)
    shop.woo.drop_next_deliveries(1)
    refund_id = shop.woo.refund(int(order_id), "4.00", "Late delivery")
    (lost,) = [d for d in shop.woo.flush_webhooks() if d.dropped]
    assert (lost.status, lost.resource_id) == (None, int(order_id))
    shop.settle()
    assert shop.processor.operations("refund") == []
    assert all(refunded(d.event["data"]) == 0 for d in shop.receiver.delivered)

    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S")
    assert shop.reconcile("--since", later) == "orders read=0 applied=0\n"
    assert shop.processor.operations("refund") == []

    shop.woo.reset_counts()
    assert shop.reconcile() == "orders read=1 applied=1\n"  # default: the last 7 days
    assert shop.woo.counts == {"GET /wc/v3/orders": 1}
    event = shop.order_event(lambda o: refunded(o) == 400)["data"]
    assert event["adjustments"][0]["id"] == f"woocommerce-{refund_id}"
    assert len(shop.processor.operations("refund")) == 1
    shop.settle()
    rows = len(shop.outbox())

    # running it again (or the webhook arriving after all) changes nothing
    since = before_change.strftime("%Y-%m-%dT%H:%M:%S")
    assert shop.reconcile("--since", since) == "orders read=1 applied=1\n"
    assert shop.woo.redeliver(lost.delivery_id).status == 200
    assert len(shop.processor.operations("refund")) == 1
    assert len(shop.outbox()) == rows


def test_reconcile_reads_every_page_and_only_our_orders(shop: Shop) -> None:
    done = shop.buy(quantity=1)
    # 120 orders made in the store by others (no session meta), modified later than ours
    for _ in range(120):
        created = requests.post(f"{shop.woo.url}/wp-json/wc/v3/orders", json={
            "status": "processing", "line_items": [{"product_id": 11, "quantity": 1}]},
            auth=(shop.woo.consumer_key, shop.woo.consumer_secret), timeout=5)
        assert created.status_code == 201
    shop.woo.set_order_status(int(done["order"]["id"]), "on-hold")
    shop.sent()
    shop.woo.reset_counts()
    adapter = shop.app.extensions["acp"].adapter
    (update,) = adapter.reconcile_orders(None)
    assert shop.woo.counts == {"GET /wc/v3/orders": 2}
    assert (update.platform_order_id, update.status) == (done["order"]["id"], "manual_review")
    assert update.checkout_session_id == done["id"]


def test_on_hold_is_manual_review_and_back_to_confirmed(shop: Shop) -> None:
    done = shop.buy()
    order_id = int(done["order"]["id"])
    shop.woo.advance_clock(2)  # date_modified has one-second resolution (see test_same_state_...)
    shop.woo.set_order_status(order_id, "on-hold")
    shop.order_event(lambda o: o["status"] == "manual_review")
    shop.woo.advance_clock(2)
    shop.woo.set_order_status(order_id, "processing")
    shop.sent()
    shop.settle()
    assert events(shop.receiver.delivered) == [
        ("order_create", "confirmed"), ("order_update", "manual_review"), ("order_update", "confirmed")]


def test_same_state_again_within_a_second_is_a_duplicate_until_reconcile(shop: Shop) -> None:
    """The de-duplication key is the order state (date_modified has one-second
    resolution, plus a digest of the body): an order that returns to the very
    same state within the same second looks like a repeated delivery. The
    documented limit; the next reconcile (which never de-duplicates) heals it."""
    shop.woo.freeze_clock()  # everything below happens within one WooCommerce second
    done = shop.buy()
    order_id = int(done["order"]["id"])
    shop.woo.set_order_status(order_id, "on-hold")
    shop.order_event(lambda o: o["status"] == "manual_review")
    shop.woo.set_order_status(order_id, "processing")  # the paid order's body, byte for byte
    last = shop.sent()[-1]
    assert json.loads(last.response) == {"received": True, "duplicate": True}
    shop.settle()
    assert events(shop.receiver.delivered)[-1] == ("order_update", "manual_review")
    assert shop.reconcile() == "orders read=1 applied=1\n"
    shop.settle()
    assert events(shop.receiver.delivered) == [
        ("order_create", "confirmed"), ("order_update", "manual_review"), ("order_update", "confirmed")]


def test_completed_without_tracking_marks_every_unit_fulfilled(shop: Shop) -> None:
    done = shop.buy(quantity=3)
    order_id = int(done["order"]["id"])
    shop.woo.complete_order(order_id)
    order = shop.order_event(lambda o: o["status"] == "completed")["data"]
    (fulfillment,) = order["fulfillments"]
    assert {k: fulfillment.get(k) for k in ("id", "status", "tracking_number", "line_items")} == {
        "id": f"wc-{order_id}-completed", "status": "shipped", "tracking_number": None,
        "line_items": [{"id": line_item_id(BEANIE), "quantity": 3}]}
    assert order["line_items"][0]["status"] == "fulfilled"


def test_full_refund_in_woocommerce_gives_all_the_money_back_once(shop: Shop) -> None:
    done = shop.buy()
    order_id = int(done["order"]["id"])
    total = shop.woo.order(order_id)["total"]
    shop.woo.refund(order_id, "10.00", "Partial")
    shop.woo.refund(order_id, str(decimal.Decimal(total) - 10), "The rest")  # e.g. "28.97"
    assert shop.woo.order(order_id)["status"] == "refunded"
    charged = shop.processor.charges()[0]["amount"]
    order = shop.order_event(lambda o: refunded(o) == charged)["data"]
    assert order["status"] == "confirmed"  # WooCommerce's "refunded" moves no status
    amounts = sorted(op["amount"] for op in shop.processor.operations("refund"))
    assert amounts == sorted([1000, charged - 1000])


def test_a_shipment_reported_by_the_merchant_is_not_undone_by_a_later_webhook(shop: Shop) -> None:
    """The merchant's integration ships through the order service; WooCommerce
    still says ``processing``, and a refund there sends that status again. (The
    CLI refuses: orders of platform adapters are changed on the platform.)"""
    done = shop.buy()
    order_id = done["order"]["id"]
    result = shop.app.test_cli_runner().invoke(
        args=["acp", "orders", "ship", order_id, "--carrier", "UPS", "--tracking-number", "1Z999"])
    assert result.exit_code == 1
    assert "managed in woocommerce" in result.output
    shop.app.extensions["acp"].orders.ship(order_id, carrier="UPS", tracking_number="1Z999")
    shop.woo.refund(int(order_id), "1.00")
    order = shop.order_event(lambda o: refunded(o) == 100)["data"]
    assert order["status"] == "shipped"


def test_orders_that_are_not_ours_are_acknowledged_and_not_recorded(shop: Shop) -> None:
    created = requests.post(f"{shop.woo.url}/wp-json/wc/v3/orders", json={
        "status": "processing", "set_paid": True, "line_items": [{"product_id": 10, "quantity": 1}]},
        auth=(shop.woo.consumer_key, shop.woo.consumer_secret), timeout=5).json()
    shop.woo.complete_order(created["id"])
    assert [d.status for d in shop.sent()] == [200]
    inbound = shop.app.extensions["acp"].storage.inbound
    body = shop.sent()[-1].body
    assert not inbound.seen("woocommerce", event_key(json.loads(body), body))


# --------------------------------------------------------------------------- pure parts


def _order(**changes: t.Any) -> dict[str, t.Any]:
    order: dict[str, t.Any] = {
        "id": 120, "status": "processing", "currency": "USD", "date_modified_gmt": "2026-05-01T10:00:00",
        "meta_data": [{"id": 7, "key": "_acp_checkout_session_id", "value": "cs_1"}],
        "line_items": [{"id": 1, "product_id": 10, "variation_id": 0, "quantity": 2},
                       {"id": 2, "product_id": 20, "variation_id": 23, "quantity": 1},
                       {"id": 3, "product_id": 10, "variation_id": 0, "quantity": 1}],
        "refunds": [],
    }
    order.update(changes)
    return order


def _tracking(*items: dict[str, str]) -> list[dict[str, t.Any]]:
    return [{"id": 7, "key": "_acp_checkout_session_id", "value": "cs_1"},
            {"id": 8, "key": "_wc_shipment_tracking_items", "value": list(items)}]


def test_signature_is_base64_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"id":1}'
    expected = base64.b64encode(hmac.new(b"s3cret", body, hashlib.sha256).digest()).decode()
    assert signature("s3cret", body) == expected
    assert signature_matches(["other", "s3cret"], body, expected)
    assert not signature_matches(["s3cret"], body + b" ", expected)
    assert not signature_matches(["s3cret"], body, expected.lower())
    # WooCommerce keys the HMAC with wp_specialchars_decode(secret): both forms are accepted
    decoded = base64.b64encode(hmac.new(b"a&b", body, hashlib.sha256).digest()).decode()
    assert signature("a&amp;b", body) == decoded
    assert signature_matches(["a&amp;b"], body, decoded)
    assert signature_matches(["a&b"], body, decoded)


@pytest.mark.parametrize(("body", "ping"), [
    (b"webhook_id=12", True), (b"webhook_id=", False), (b"webhook_id=1&webhook_id=2", False),
    (b"webhook_id=1&x=2", False), (b'{"webhook_id": 1}', False), (b"\xff", False), (b"", False),
])
def test_ping_detection(body: bytes, ping: bool) -> None:
    assert is_ping(body) is ping


def test_parse_webhook_headers_topics_and_keys() -> None:
    adapter = WooCommerceAdapter("https://shop.example", "ck", "cs", webhook_secrets=["k"])
    body = json.dumps(_order()).encode()
    headers = {"X-Wc-Webhook-Topic": "order.updated", "X-Wc-Webhook-Resource": "order",
               "X-Wc-Webhook-Signature": signature("k", body)}  # header names in any case
    webhook = adapter.parse_webhook(headers, body)
    assert webhook.event_id == event_key(_order(), body)
    assert webhook.event_id.startswith("order:120:2026-05-01T10:00:00:")
    assert [u.status for u in webhook.updates] == ["confirmed"]
    # the same order state under another webhook or delivery id is the same event; another state is not
    other = json.dumps(_order(status="completed")).encode()
    assert event_key(_order(), body) != event_key(_order(status="completed"), other)
    ignored = adapter.parse_webhook({**headers, "X-Wc-Webhook-Topic": "action.woocommerce_x",
                                     "X-Wc-Webhook-Resource": "action"}, body)
    assert (ignored.event_id, ignored.updates, ignored.products) == (None, (), ())
    # a product topic names the product for the feed (a variation: its parent), and no order update
    variation = json.dumps({"id": 22, "parent_id": 20, "name": "T-Shirt - L"}).encode()
    product = adapter.parse_webhook({**headers, "X-Wc-Webhook-Topic": "product.updated",
                                     "X-Wc-Webhook-Resource": "product",
                                     "X-Wc-Webhook-Signature": signature("k", variation)}, variation)
    assert (product.updates, product.products) == ((), ("20",))
    assert product.event_id is not None
    assert product.event_id.startswith("product:20:")
    deleted = b'{"id":120}'
    assert adapter.parse_webhook({**headers, "X-Wc-Webhook-Signature": signature("k", deleted)},
                                 deleted).updates == ()
    assert adapter.parse_webhook({}, b"webhook_id=3").event_id is None
    with pytest.raises(WebhookSignatureError, match="missing"):
        adapter.parse_webhook({"X-Wc-Webhook-Topic": "order.updated"}, body)
    with pytest.raises(NotImplementedError):
        WooCommerceAdapter("https://shop.example", "ck", "cs").parse_webhook({}, b"webhook_id=3")
    adapter.close()


@pytest.mark.parametrize(("status", "acp_status", "canceled"), [
    ("processing", "confirmed", False), ("on-hold", "manual_review", False),
    ("completed", "completed", False), ("cancelled", None, True), ("refunded", None, False),
    ("wc-shipped-by-plugin", None, False),
])
def test_status_mapping(status: str, acp_status: str | None, canceled: bool) -> None:
    update = order_update(_order(status=status))
    assert update is not None
    assert (update.status, update.canceled) == (acp_status, canceled)
    assert (update.checkout_session_id, update.platform_order_id) == ("cs_1", "120")


@pytest.mark.parametrize("status", ["checkout-draft", "pending", "failed", "trash"])
def test_unpaid_orders_and_orders_of_others_give_no_update(status: str) -> None:
    assert order_update(_order(status=status)) is None
    assert order_update(_order(meta_data=[])) is None
    assert order_update(_order(meta_data=[{"id": 1, "key": "_acp_checkout_session_id", "value": ""}])) is None


def test_completed_without_tracking_is_one_untracked_fulfillment_of_every_unit() -> None:
    update = order_update(_order(status="completed"))
    assert update is not None
    assert update.fulfillments == (FulfillmentUpdate(
        id="wc-120-completed", status="shipped",
        line_items={line_item_id("10"): 3, line_item_id("23"): 1}),)  # variation id, simple product id


def test_tracking_items_become_shipped_fulfillments() -> None:
    meta = _tracking(
        {"tracking_provider": "fedex", "custom_tracking_provider": "", "custom_tracking_link": "",
         "tracking_number": "7489 12", "date_shipped": "1777600000", "tracking_id": "abc"},
        {"tracking_provider": "", "custom_tracking_provider": "Local &amp; Fast",
         "custom_tracking_link": "https://track.example/LF1", "tracking_number": "LF1", "tracking_id": "def"},
        {"tracking_provider": "", "custom_tracking_provider": "Courier",
         "custom_tracking_link": "javascript:x", "tracking_number": "C9"})
    update = order_update(_order(meta_data=meta))
    assert update is not None
    assert update.status is None  # the shipments make it "shipped"
    units = {line_item_id("10"): 3, line_item_id("23"): 1}
    first, second, third = update.fulfillments
    assert first == FulfillmentUpdate(id="wc-trk-abc", status="shipped", line_items=units, carrier="FedEx",
                                      tracking_number="7489 12",
                                      tracking_url="https://www.fedex.com/fedextrack/?trknbr=7489%2012")
    assert (second.carrier, second.tracking_url) == ("Local & Fast", "https://track.example/LF1")
    assert (third.carrier, third.tracking_url, third.id.startswith("wc-trk-")) == ("Courier", None, True)
    completed = order_update(_order(status="completed", meta_data=meta))
    assert completed is not None
    assert [f.id for f in completed.fulfillments] == [f.id for f in update.fulfillments]


@pytest.mark.parametrize(("currency", "refunds", "expected"), [
    ("USD", [{"id": 131, "reason": "Dented", "total": "-5.00"}, {"id": 130, "reason": "", "total": "-0.99"}],
     (PlatformRefund(id="130", amount=99), PlatformRefund(id="131", amount=500, reason="Dented"))),
    ("JPY", [{"id": 9, "reason": "", "total": "-1500"}], (PlatformRefund(id="9", amount=1500),)),
    ("JPY", [{"id": 9, "reason": "", "total": "-1500.00"}], (PlatformRefund(id="9", amount=1500),)),
    ("KWD", [{"id": 9, "reason": "", "total": "-1.250"}], (PlatformRefund(id="9", amount=1250),)),
    # restock-only (0), not representable (half a yen), malformed: skipped
    ("JPY", [{"id": 1, "total": "-0"}, {"id": 2, "total": "-10.5"}, {"id": 3, "total": -5.0},
             {"id": 4, "total": "abc"}, {"total": "-1"}], ()),
])
def test_refunds_in_minor_units(currency: str, refunds: list[dict[str, t.Any]],
                                expected: tuple[PlatformRefund, ...]) -> None:
    update = order_update(_order(currency=currency, refunds=refunds, status="refunded"))
    assert update is not None
    assert update.refunds == expected


def test_from_config_webhook_secret_and_reconcile_window() -> None:
    base = {"WOOCOMMERCE_URL": "https://shop.example", "WOOCOMMERCE_CONSUMER_KEY": "ck_x",
            "WOOCOMMERCE_CONSUMER_SECRET": "cs_x"}
    adapter = WooCommerceAdapter.from_config(base)
    assert (adapter.webhook_secrets, adapter.reconcile_window) == ((), 7 * 24 * 3600.0)
    adapter.close()
    adapter = WooCommerceAdapter.from_config({**base, "WOOCOMMERCE_WEBHOOK_SECRET": "s",
                                              "WOOCOMMERCE_RECONCILE_WINDOW": "3600"})
    assert (adapter.webhook_secrets, adapter.reconcile_window) == (("s",), 3600.0)
    adapter.close()
    adapter = WooCommerceAdapter.from_config({**base, "WOOCOMMERCE_WEBHOOK_SECRET": ["new", "old"]})
    assert adapter.webhook_secrets == ("new", "old")
    adapter.close()
    for bad in (3, [""], ["ok", 4], "  "):
        with pytest.raises(ValueError, match="WOOCOMMERCE_WEBHOOK_SECRET"):
            WooCommerceAdapter.from_config({**base, "WOOCOMMERCE_WEBHOOK_SECRET": bad})
    for bad_window in (0, -5, True, "week"):
        with pytest.raises(ValueError, match="WOOCOMMERCE_RECONCILE_WINDOW"):
            WooCommerceAdapter.from_config({**base, "WOOCOMMERCE_RECONCILE_WINDOW": bad_window})
