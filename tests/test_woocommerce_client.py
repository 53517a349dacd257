"""WooCommerceClient against FakeWooCommerce over real sockets: auth, Store API
session headers, transport retries and error translation."""

from __future__ import annotations

import collections.abc as cabc
import socket
import time

import pytest

from flask_acp.errors import AdapterUnavailableError
from flask_acp.testing.fake_woocommerce import FakeWooCommerce
from flask_acp_adapters.woocommerce import CartSession
from flask_acp_adapters.woocommerce import WooCommerceClient
from flask_acp_adapters.woocommerce import WooCommerceError
from flask_acp_adapters.woocommerce import WooCommerceNoAnswerError
from flask_acp_adapters.woocommerce.client import is_loopback

CART = "/wc/store/v1/cart"
ADD = "/wc/store/v1/cart/add-item"


@pytest.fixture
def woo() -> cabc.Iterator[FakeWooCommerce]:
    with FakeWooCommerce() as fake:
        yield fake
        assert fake.server_errors == []


@pytest.fixture
def client(woo: FakeWooCommerce) -> cabc.Iterator[WooCommerceClient]:
    client = WooCommerceClient(woo.url, woo.consumer_key, woo.consumer_secret, timeout=0.5)
    yield client
    client.close()


def test_rest_calls_use_basic_auth(woo: FakeWooCommerce, client: WooCommerceClient) -> None:
    orders = client.request("GET", "/wc/v3/orders")
    assert (orders.status, orders.data, orders.headers["X-WP-Total"]) == (200, [], "0")
    wrong = WooCommerceClient(woo.url, woo.consumer_key, "cs_wrong")
    try:
        with pytest.raises(WooCommerceError) as info:
            wrong.request("GET", "/wc/v3/orders/1")
    finally:
        wrong.close()
    assert (info.value.status, info.value.code) == (401, "woocommerce_rest_authentication_error")
    assert info.value.message == "Consumer secret is invalid."
    with pytest.raises(WooCommerceError) as info:
        client.request("GET", "/wc/v3/orders/123456")
    assert (info.value.status, info.value.code) == (404, "woocommerce_rest_shop_order_invalid_id")


def test_store_api_session_headers(client: WooCommerceClient) -> None:
    cart = CartSession()
    with pytest.raises(WooCommerceError) as info:  # no Cart-Token, no Nonce
        client.request("POST", ADD, json={"id": 10, "quantity": 1}, cart=cart)
    assert (info.value.status, info.value.code) == (401, "woocommerce_rest_missing_nonce")
    assert cart.nonce  # learnt from the error answer
    client.request("GET", CART, cart=cart)
    first_token = cart.cart_token
    added = client.request("POST", ADD, json={"id": 10, "quantity": 2}, cart=cart)
    assert [(i["id"], i["quantity"]) for i in added.data["items"]] == [(10, 2)]
    assert cart.cart_token == first_token
    forged = CartSession(cart_token=first_token[:-2] + "xx", nonce="0000000000")
    with pytest.raises(WooCommerceError) as info:
        client.request("POST", ADD, json={"id": 10, "quantity": 1}, cart=forged)
    assert (info.value.status, info.value.code) == (403, "woocommerce_rest_invalid_nonce")
    fresh = client.request("GET", CART, cart=forged)  # a forged token gets a new, empty cart
    assert fresh.data["items"] == []
    assert forged.cart_token != first_token


def test_store_api_refusals_keep_woocommerce_codes(client: WooCommerceClient) -> None:
    cart = CartSession()
    client.request("GET", CART, cart=cart)
    with pytest.raises(WooCommerceError) as info:
        client.request("POST", ADD, json={"id": 15, "quantity": 1}, cart=cart)
    assert (info.value.status, info.value.code) == (400, "woocommerce_rest_product_out_of_stock")
    assert "&quot;Discontinued Cap&quot;" in info.value.message
    with pytest.raises(WooCommerceError) as info:
        client.request("POST", "/wc/store/v1/cart/remove-item", json={"key": "nope"}, cart=cart)
    assert (info.value.status, info.value.code) == (409, "woocommerce_rest_cart_invalid_key")
    assert info.value.data["cart"]["items"] == []  # conflicts carry the current cart
    with pytest.raises(WooCommerceError) as info:
        client.request("GET", "/wc/store/v1/nothing-here", cart=cart)
    assert (info.value.status, info.value.code) == (404, "rest_no_route")


def test_5xx_429_and_html_pages_are_unavailable(woo: FakeWooCommerce, client: WooCommerceClient) -> None:
    woo.fail_next("500", route="PUT /wc/v3/orders/{id}")
    with pytest.raises(AdapterUnavailableError, match="HTTP 500"):
        client.request("PUT", "/wc/v3/orders/1", json={"status": "pending"})
    woo.fail_next("429", route="GET /wc/store/v1/cart")
    with pytest.raises(AdapterUnavailableError) as info:
        client.request("GET", CART, cart=CartSession())
    assert info.value.retry_after == 2
    woo.fail_next("html_503", route="PUT /wc/v3/orders/{id}")
    with pytest.raises(AdapterUnavailableError, match="HTTP 503 '<!DOCTYPE html>") as info:
        client.request("PUT", "/wc/v3/orders/1", json={})
    assert info.value.retry_after == 3
    assert woo.counts["PUT /wc/v3/orders/{id}"] == 2  # PUT is never repeated by the transport


def test_idempotent_reads_are_retried_by_the_transport(woo: FakeWooCommerce,
                                                       client: WooCommerceClient) -> None:
    woo.fail_next("html_503", route="GET /wc/store/v1/cart")
    assert client.request("GET", CART, cart=CartSession()).status == 200
    woo.fail_next("timeout", route="GET /wc/v3/orders", seconds=1.0)
    assert client.request("GET", "/wc/v3/orders").status == 200
    assert woo.counts == {"GET /wc/store/v1/cart": 2, "GET /wc/v3/orders": 2}
    woo.fail_next("html_503", route="GET /wc/store/v1/cart", count=3)
    with pytest.raises(AdapterUnavailableError):
        client.request("GET", CART, cart=CartSession())
    assert woo.counts["GET /wc/store/v1/cart"] == 5  # 1 + 2 retries


def test_timeouts_and_dropped_connections(woo: FakeWooCommerce, client: WooCommerceClient) -> None:
    woo.fail_next("timeout", route="PUT /wc/v3/orders/{id}", seconds=2.0)
    started = time.monotonic()
    with pytest.raises(AdapterUnavailableError, match="no answer within 0.5 s"):
        client.request("PUT", "/wc/v3/orders/1", json={})
    assert time.monotonic() - started < 1.5
    cart = CartSession()
    client.request("GET", CART, cart=cart)
    woo.fail_next("drop_after", route="POST /wc/store/v1/cart/add-item")
    with pytest.raises(AdapterUnavailableError, match="ConnectionError"):
        client.request("POST", ADD, json={"id": 10, "quantity": 1}, cart=cart)
    # it was done all the same: the answer was lost, not the request
    assert [i["quantity"] for i in client.request("GET", CART, cart=cart).data["items"]] == [1]


@pytest.mark.parametrize(("fault", "unknown", "no_answer"), [
    ("drop_after", True, True),  # done, the answer lost
    ("timeout", True, True),  # no answer in time: it may still run
    ("500", True, False),  # answered 5xx: PHP may have done the work first
    ("500_after", True, False),
    ("429", False, False),  # rate limited: nothing done
])
def test_outcome_unknown_marks_changes_that_may_have_been_made(
        woo: FakeWooCommerce, client: WooCommerceClient, fault: str, unknown: bool, no_answer: bool) -> None:
    woo.fail_next(fault, route="PUT /wc/v3/orders/{id}", seconds=1.0)
    with pytest.raises(AdapterUnavailableError) as info:
        client.request("PUT", "/wc/v3/orders/1", json={"status": "pending"})
    assert info.value.outcome_unknown is unknown
    assert isinstance(info.value, WooCommerceNoAnswerError) is no_answer
    # a read changes nothing: its failures never have an unknown outcome
    woo.fail_next(fault, route="GET /wc/v3/orders/{id}", count=3, seconds=1.0)
    with pytest.raises(AdapterUnavailableError) as info:
        client.request("GET", "/wc/v3/orders/1")
    assert info.value.outcome_unknown is False


def test_refused_connection_is_not_an_unknown_outcome(woo: FakeWooCommerce) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = WooCommerceClient(f"http://127.0.0.1:{port}", woo.consumer_key, woo.consumer_secret, timeout=0.5)
    try:
        with pytest.raises(AdapterUnavailableError, match="ConnectionError") as info:
            client.request("PUT", "/wc/v3/orders/1", json={"set_paid": True})
    finally:
        client.close()
    assert info.value.outcome_unknown is False  # nothing was sent
    assert not isinstance(info.value, WooCommerceNoAnswerError)


def test_https_is_required_except_for_loopback() -> None:
    with pytest.raises(ValueError, match="must use https"):
        WooCommerceClient("http://shop.example", "ck", "cs")
    with pytest.raises(ValueError, match="not an http"):
        WooCommerceClient("ftp://shop.example", "ck", "cs")
    with pytest.raises(ValueError, match="consumer key and secret"):
        WooCommerceClient("https://shop.example", "", "cs")
    with pytest.raises(ValueError, match="timeout"):
        WooCommerceClient("https://shop.example", "ck", "cs", timeout=0)
    WooCommerceClient("https://shop.example/store/", "ck", "cs").close()
    assert [is_loopback(h) for h in ("127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost")] == [True] * 5
    assert [is_loopback(h) for h in ("10.0.0.1", "shop.example", "0.0.0.0")] == [False] * 3  # noqa: S104


def test_cookies_are_never_kept(client: WooCommerceClient) -> None:
    response = client.request("GET", CART, cart=CartSession())
    assert "woocommerce_items_in_cart" in response.headers["Set-Cookie"]
    assert len(client.session.cookies) == 0  # carts never mix through a cookie jar


def test_rest_route_alias_and_unknown_routes(woo: FakeWooCommerce, client: WooCommerceClient) -> None:
    response = client.session.get(woo.url + "/?rest_route=/wc/store/v1/cart", timeout=1)
    assert response.json()["items"] == []  # the plain-permalink alias works too
    with pytest.raises(WooCommerceError, match="rest_no_route"):
        client.request("GET", "/wc/v2/anything")
