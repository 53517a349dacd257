"""FakeWooCommerce itself: the WooCommerce behaviour the adapter tests rely on,
seen through plain HTTP (requests), and the standalone command."""

from __future__ import annotations

import base64
import collections.abc as cabc
import hashlib
import hmac
import json
import pathlib
import subprocess
import sys
import threading
import typing as t

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from flask_acp.testing.fake_woocommerce import DEMO_SEED
from flask_acp.testing.fake_woocommerce import TRACKING_META_KEY
from flask_acp.testing.fake_woocommerce import FakeWooCommerce

S = "/wp-json/wc/store/v1"
R = "/wp-json/wc/v3"
ADDRESS = {"country": "US", "state": "CA", "postcode": "94131", "city": "San Francisco",
           "address_1": "1 Main St"}


class Client:
    """A Store API shopper and a REST v3 admin, over real HTTP."""

    def __init__(self, woo: FakeWooCommerce) -> None:
        self.woo = woo
        self.http = requests.Session()
        self.headers: dict[str, str] = {}

    def store(self, method: str, path: str, body: t.Any = None, **headers: str) -> requests.Response:
        response = self.http.request(method, self.woo.url + S + path, json=body, timeout=5,
                                     headers={**self.headers, **headers})
        if "Cart-Token" in response.headers:
            self.headers = {"Cart-Token": response.headers["Cart-Token"], "Nonce": response.headers["Nonce"]}
        return response

    def rest(self, method: str, path: str, body: t.Any = None, **params: str) -> requests.Response:
        return self.http.request(method, self.woo.url + R + path, json=body, params=params, timeout=5,
                                 auth=(self.woo.consumer_key, self.woo.consumer_secret))

    def cart_with(self, *items: tuple[int, int],
                  address: dict[str, str] | None = ADDRESS) -> dict[str, t.Any]:
        self.store("GET", "/cart")
        for product_id, quantity in items:
            assert self.store("POST", "/cart/add-item", {"id": product_id, "quantity": quantity}).ok
        if address is not None:
            assert self.store("POST", "/cart/update-customer", {
                "billing_address": {**address, "email": "ada@example.com"}, "shipping_address": address}).ok
        return t.cast(dict[str, t.Any], self.store("GET", "/cart").json())


@pytest.fixture
def woo() -> cabc.Iterator[FakeWooCommerce]:
    with FakeWooCommerce() as fake:
        yield fake
        assert fake.server_errors == []


@pytest.fixture
def shopper(woo: FakeWooCommerce) -> cabc.Iterator[Client]:
    client = Client(woo)
    yield client
    client.http.close()


def test_cart_shape_and_money_strings(shopper: Client) -> None:
    cart = shopper.cart_with((10, 2), (11, 1))
    item = cart["items"][0]
    assert set(item) >= {"key", "id", "quantity", "quantity_limits", "name", "prices", "totals", "images"}
    # SPEND50 (automatic, fixed_cart 5.00) over 3600 + 4500: floor(222.2) + 1 leftover cent = 223
    assert item["totals"] == {**item["totals"], "line_subtotal": "3600", "line_total": "3377",
                              "line_total_tax": "279", "currency_minor_unit": 2, "currency_code": "USD"}
    totals = cart["totals"]
    assert (totals["total_items"], totals["total_discount"], totals["total_shipping"]) == (
        "8100", "500", "500")
    assert cart["coupons"][0]["code"] == "SPEND50"
    rates = cart["shipping_rates"][0]["shipping_rates"]
    assert [(r["rate_id"], r["price"], r["taxes"], r["selected"]) for r in rates] == [
        ("flat_rate:1", "500", "41", True), ("flat_rate:3", "1500", "124", False)]  # free needs 100.00
    parts = (int(totals["total_items"]) - int(totals["total_discount"]) + int(totals["total_shipping"])
             + int(totals["total_fees"]) + int(totals["total_tax"]))
    assert parts == int(totals["total_price"])


def test_stock_holds_expire_and_other_orders_count(woo: FakeWooCommerce) -> None:
    first, second = Client(woo), Client(woo)
    try:
        first.cart_with((13, 1))
        draft = first.store("GET", "/checkout").json()
        assert draft["status"] == "checkout-draft"
        assert woo.held(13) == 1
        second.store("GET", "/cart")
        refused = second.store("POST", "/cart/add-item", {"id": 13, "quantity": 1})
        assert refused.status_code == 400
        assert refused.json() == {"code": "woocommerce_rest_product_out_of_stock", "message": refused.json()[
            "message"], "data": {"status": 400}}
        woo.advance_clock(10 * 60 + 1)
        assert woo.held(13) == 0
        assert second.store("POST", "/cart/add-item", {"id": 13, "quantity": 1}).ok
        assert second.store("GET", "/checkout").ok  # second holds it now
        again = first.store("GET", "/checkout")
        assert (again.status_code, again.json()["code"]) == (403, "woocommerce_product_out_of_stock")
        errors = first.store("GET", "/cart").json()["errors"]
        assert [e["code"] for e in errors] == ["woocommerce_rest_product_out_of_stock"]
    finally:
        first.http.close()
        second.http.close()


def test_set_paid_only_acts_on_pending_orders(woo: FakeWooCommerce, shopper: Client) -> None:
    shopper.cart_with((10, 1))
    order_id = shopper.store("GET", "/checkout").json()["order_id"]
    draft = shopper.rest("PUT", f"/orders/{order_id}", {"set_paid": True, "transaction_id": "pi_1"}).json()
    assert (draft["status"], draft["date_paid"], draft["transaction_id"]) == ("checkout-draft", None, "pi_1")
    paid = shopper.rest("PUT", f"/orders/{order_id}", {"status": "pending", "set_paid": True,
                                                       "transaction_id": "pi_1"}).json()
    assert paid["status"] == "processing"
    assert paid["date_paid"]
    assert woo.stock(10) == 24
    again = shopper.rest("PUT", f"/orders/{order_id}", {"set_paid": True, "transaction_id": "pi_1"}).json()
    assert (again["status"], again["date_paid"]) == ("processing", paid["date_paid"])
    assert woo.stock(10) == 24  # not reduced twice
    assert isinstance(paid["line_items"][0]["price"], float)  # WooCommerce's float: never used
    assert paid["total"] == "24.90"  # 18.00 + 1.49 tax + 5.00 shipping + 0.41 tax
    assert [e["topic"] for e in woo.webhook_events][-1] == "order.updated"


def test_rest_orders_create_list_and_dp(woo: FakeWooCommerce, shopper: Client) -> None:
    created = shopper.rest("POST", "/orders", {
        "status": "pending", "billing": {**ADDRESS, "email": "ada@example.com"}, "shipping": ADDRESS,
        "line_items": [{"product_id": 11, "quantity": 2}],
        "shipping_lines": [{"method_id": "flat_rate", "method_title": "Flat rate", "total": "5.00"}],
        "set_paid": True, "transaction_id": "pi_rest"})
    assert created.status_code == 201
    order = created.json()
    assert (order["created_via"], order["status"], order["total"]) == ("rest-api", "processing", "102.84")
    for n in range(3):
        shopper.rest("POST", "/orders", {"line_items": [{"product_id": 10, "quantity": n + 1}]})
    page = shopper.rest("GET", "/orders", per_page="2", page="1", orderby="id", order="asc")
    assert [o["id"] for o in page.json()] == [order["id"], order["id"] + 1]
    assert (page.headers["X-WP-Total"], page.headers["X-WP-TotalPages"]) == ("4", "2")
    assert 'rel="next"' in page.headers["Link"]
    assert shopper.rest("GET", f"/orders/{order['id']}", dp="0").json()["total"] == "103"
    pending = shopper.rest("GET", "/orders", status="pending").json()
    assert len(pending) == 3


def test_checkout_post_needs_a_gateway_and_missing_nonce(shopper: Client) -> None:
    shopper.cart_with((10, 1))
    refused = shopper.store("POST", "/checkout", {"payment_method": "acp"})
    assert refused.json()["code"] == "woocommerce_rest_checkout_invalid_payment_method"
    anonymous = requests.post(shopper.woo.url + S + "/cart/add-item", json={"id": 10}, timeout=5)
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "woocommerce_rest_missing_nonce")


def test_batch_limits(shopper: Client) -> None:
    shopper.store("GET", "/cart")
    many = {"requests": [{"path": "/wc/store/v1/cart/add-item", "method": "POST",
                          "body": {"id": 10, "quantity": 1}}] * 26}
    assert shopper.store("POST", "/batch", many).status_code == 400
    wrong = {"requests": [{"path": "/wc/v3/orders", "method": "POST", "body": {}}]}
    assert shopper.store("POST", "/batch", wrong).json()["code"] == "woocommerce_rest_invalid_path"


def test_demo_seed_runs_standalone(tmp_path: pathlib.Path) -> None:
    seed = json.loads(DEMO_SEED.read_text())
    seed["settings"]["currency"] = "CAD"
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(seed))
    process = subprocess.Popen(
        [sys.executable, "-m", "flask_acp.testing.fake_woocommerce", "--port", "0", "--seed", str(path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("FakeWooCommerce at http://127.0.0.1:")
        url = first.split()[2].removesuffix("/wp-json")
        lines = [process.stdout.readline().strip() for _ in range(3)]
        assert lines[0] == f"WOOCOMMERCE_URL={url}"
        assert lines[1] == f"WOOCOMMERCE_CONSUMER_KEY={seed['consumer_key']}"
        with requests.get(url + S + "/cart", timeout=5) as response:
            assert response.json()["totals"]["currency_code"] == "CAD"
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


# --- merchant actions and webhooks ---------------------------------------------------------


class Hooks:
    """A webhook endpoint on 127.0.0.1 that records requests and answers ``status``."""

    def __init__(self) -> None:
        self.status = 200
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_port}/hooks"

    @Request.application  # type: ignore[arg-type]
    def _app(self, request: Request) -> Response:
        self.requests.append((dict(request.headers), request.get_data()))
        return Response("{}", self.status, mimetype="application/json")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def hooks() -> cabc.Iterator[Hooks]:
    endpoint = Hooks()
    yield endpoint
    endpoint.close()


def paid_order(woo: FakeWooCommerce, shopper: Client) -> int:
    shopper.cart_with((10, 2))
    order_id = int(shopper.store("GET", "/checkout").json()["order_id"])
    paid = shopper.rest("PUT", f"/orders/{order_id}", {"status": "pending", "set_paid": True,
                                                       "transaction_id": "pi_1"}).json()
    assert paid["status"] == "processing"
    return order_id


def test_webhook_ping_then_signed_deliveries(woo: FakeWooCommerce, shopper: Client, hooks: Hooks) -> None:
    order_id = paid_order(woo, shopper)
    hook = woo.add_webhook(hooks.url, secret="s3cr&amp;t")
    (ping_headers, ping_body), = hooks.requests
    assert ping_body == f"webhook_id={hook}".encode()
    assert ping_headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert not any(k.lower().startswith("x-wc-webhook") for k in ping_headers)
    assert ping_headers["User-Agent"].startswith("WooCommerce/")
    woo.complete_order(order_id)
    ping, delivery = woo.flush_webhooks()
    assert (ping.topic, ping.status, delivery.topic, delivery.status) == ("ping", 200, "order.updated", 200)
    headers, body = hooks.requests[1]
    assert body == delivery.body
    order = json.loads(body)
    assert (order["id"], order["status"]) == (order_id, "completed")
    expected = base64.b64encode(hmac.new(b"s3cr&t", body, hashlib.sha256).digest()).decode()  # decoded key
    assert {k: headers[k] for k in ("X-Wc-Webhook-Topic", "X-Wc-Webhook-Resource", "X-Wc-Webhook-Event",
                                    "X-Wc-Webhook-Id", "X-Wc-Webhook-Signature", "X-Wc-Webhook-Source")} == {
        "X-Wc-Webhook-Topic": "order.updated", "X-Wc-Webhook-Resource": "order",
        "X-Wc-Webhook-Event": "updated", "X-Wc-Webhook-Id": str(hook), "X-Wc-Webhook-Signature": expected,
        "X-Wc-Webhook-Source": woo.url + "/"}
    assert headers["X-Wc-Webhook-Delivery-Id"] == delivery.delivery_id
    again = woo.redeliver(delivery.delivery_id)
    assert again.body == body
    assert again.delivery_id != delivery.delivery_id
    assert hooks.requests[2][0]["X-Wc-Webhook-Signature"] == expected


def test_merchant_refunds_tracking_and_cancel(woo: FakeWooCommerce, shopper: Client) -> None:
    order_id = paid_order(woo, shopper)  # 2 x 18.00 + 2.97 tax + 5.00 + 0.41 = 44.38
    first = woo.refund(order_id, "5.00", "Dented")
    second = woo.refund(order_id, "0.38")
    order = woo.order(order_id)
    assert order["refunds"] == [{"id": second, "reason": "", "total": "-0.38"},
                                {"id": first, "reason": "Dented", "total": "-5.00"}]
    assert order["status"] == "processing"
    with pytest.raises(ValueError, match="39.00"):
        woo.refund(order_id, "39.01")
    with pytest.raises(ValueError, match="not 0"):
        woo.refund(order_id, "0")
    known = woo.add_tracking(order_id, "USPS", "9400")
    woo.add_tracking(order_id, "Local Courier", "LC-1", link="https://lc.example/LC-1")
    (meta,) = [m for m in woo.order(order_id)["meta_data"] if m["key"] == TRACKING_META_KEY]
    assert [{k: v for k, v in item.items() if k != "date_shipped"} for item in meta["value"]] == [
        {"tracking_provider": "usps", "custom_tracking_provider": "", "custom_tracking_link": "",
         "tracking_number": "9400", "tracking_id": known},
        {"tracking_provider": "", "custom_tracking_provider": "Local Courier",
         "custom_tracking_link": "https://lc.example/LC-1", "tracking_number": "LC-1",
         "tracking_id": meta["value"][1]["tracking_id"]}]
    stock = woo.stock(10)
    assert woo.cancel_order(order_id)["status"] == "cancelled"
    assert woo.stock(10) == (stock or 0) + 2
    woo.set_order_status(order_id, "processing")
    woo.refund(order_id, "39.00")
    assert woo.order(order_id)["status"] == "refunded"  # nothing left to refund
    assert [e["topic"] for e in woo.webhook_events][-7:] == ["order.updated"] * 7


def test_failed_deliveries_disable_the_webhook_and_drops_are_never_sent(
        woo: FakeWooCommerce, shopper: Client, hooks: Hooks) -> None:
    order_id = paid_order(woo, shopper)
    hook = woo.add_webhook(hooks.url)
    woo.drop_next_deliveries(1)
    woo.set_order_status(order_id, "on-hold")
    (dropped,) = [d for d in woo.flush_webhooks() if d.topic != "ping"]
    assert (dropped.dropped, dropped.status, len(hooks.requests)) == (True, None, 1)
    assert json.loads(dropped.body)["status"] == "on-hold"
    hooks.status = 500
    for status in ["processing", "on-hold"] * 4:
        woo.set_order_status(order_id, status)
        woo.flush_webhooks()
    # more than 5 consecutive failures: disabled on the 7th, nothing sent after
    assert [d.status for d in woo.deliveries if d.topic != "ping" and not d.dropped] == [500] * 7
    assert woo.webhooks[0]["status"] == "disabled"
    hooks.status = 200
    woo.set_webhook(hook, status="active")
    woo.set_order_status(order_id, "processing")
    assert woo.flush_webhooks()[-1].status == 200
    assert woo.webhooks[0]["failure_count"] == 0
    # an unreachable URL is a failure without a status
    woo.set_webhook(hook, delivery_url="http://127.0.0.1:9/closed")
    woo.complete_order(order_id)
    last = woo.flush_webhooks()[-1]
    assert (last.status, last.ok, bool(last.error)) == (None, False, True)
