"""flask_acp.testing.fake_shopify on its own: HTTP surface, Shopify-like
behaviour it promises in its docstring, seeds, control routes, standalone CLI."""

from __future__ import annotations

import base64
import collections.abc as cabc
import datetime as dt
import hashlib
import hmac
import json
import pathlib
import signal
import subprocess
import sys
import threading
import typing as t

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from flask_acp.testing.fake_shopify import DEMO_SEED
from flask_acp.testing.fake_shopify import FakeShopify
from tests.test_shopify import STORE

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOKEN = STORE["access_tokens"][0]
CREATE = """mutation C($input: DraftOrderInput!) { draftOrderCreate(input: $input) {
  draftOrder { id ready status totalPriceSet { shopMoney { amount currencyCode } } }
  userErrors { field message } } }"""
READ = "query R($id: ID!) { draftOrder(id: $id) { id ready status order { id name } } }"
COMPLETE = """mutation K($id: ID!) { draftOrderComplete(id: $id) {
  draftOrder { status order { id name tags } } userErrors { field message } } }"""
DELETE = """mutation D($input: DraftOrderDeleteInput!) {
  draftOrderDelete(input: $input) { deletedId userErrors { message } } }"""
VARIANT = """query V($id: ID!) {
  productVariant(id: $id) { sellableOnlineQuantity inventoryQuantity availableForSale } }"""


@pytest.fixture(scope="module")
def server() -> cabc.Iterator[FakeShopify]:
    with FakeShopify(STORE) as fake:
        yield fake


@pytest.fixture
def shop(server: FakeShopify) -> FakeShopify:
    server.reset(STORE)
    return server


@pytest.fixture
def http() -> cabc.Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def gql(http: requests.Session, shop: FakeShopify, query: str, variables: dict[str, t.Any] | None = None, *,
        version: str = "2026-10", token: str = TOKEN) -> requests.Response:
    return http.post(f"{shop.url}/admin/api/{version}/graphql.json",
                     json={"query": query, "variables": variables or {}},
                     headers={"X-Shopify-Access-Token": token}, timeout=5)


def data(response: requests.Response) -> dict[str, t.Any]:
    body = response.json()
    assert response.status_code == 200, body
    assert "errors" not in body, body
    return t.cast(dict[str, t.Any], body["data"])


def create(http: requests.Session, shop: FakeShopify, **changes: t.Any) -> dict[str, t.Any]:
    until = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=15)).isoformat()
    draft_input = {"lineItems": [{"variantId": "gid://shopify/ProductVariant/1002", "quantity": 1}],
                   "reserveInventoryUntil": until, **changes}
    return t.cast(dict[str, t.Any], data(gql(http, shop, CREATE, {"input": draft_input}))["draftOrderCreate"])


def test_auth_versions_and_errors(shop: FakeShopify, http: requests.Session) -> None:
    denied = gql(http, shop, "query { shop { name } }", token="shpat_nope")
    assert denied.status_code == 401
    assert denied.json() == {
        "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
    current = gql(http, shop, "query { shop { name currencyCode } }")
    assert current.headers["X-Shopify-API-Version"] == "2026-10"
    assert data(current)["shop"] == {"name": "Test Store", "currencyCode": "USD"}
    assert current.json()["extensions"]["cost"]["throttleStatus"]["maximumAvailable"] == 1000
    old = gql(http, shop, "query { shop { name } }", version="2023-01")
    assert old.headers["X-Shopify-API-Version"] == "2025-07"  # falls forward to the oldest supported
    invalid = gql(http, shop, "query { shop { nope } }")
    assert invalid.status_code == 200
    assert "nope" in invalid.json()["errors"][0]["message"]
    assert http.post(f"{shop.url}/admin/api/2026-10/graphql.json", data=b"{", timeout=5,
                     headers={"X-Shopify-Access-Token": TOKEN}).status_code == 400
    assert http.get(f"{shop.url}/nowhere", timeout=5).status_code == 404


def test_client_credentials_endpoint(shop: FakeShopify, http: requests.Session) -> None:
    url = f"{shop.url}/admin/oauth/access_token"
    granted = http.post(url, data={"client_id": "acp-client", "client_secret": "acp-client-secret",
                                   "grant_type": "client_credentials"}, timeout=5).json()
    assert granted["expires_in"] == 86399
    assert granted["access_token"].startswith("shpat_")
    assert data(gql(http, shop, "query { shop { name } }", token=granted["access_token"]))
    shop.advance_clock(86400)
    assert gql(http, shop, "query { shop { name } }", token=granted["access_token"]).status_code == 401
    assert http.post(url, json={"client_id": "acp-client", "client_secret": "x",
                                "grant_type": "client_credentials"}, timeout=5).status_code == 401
    refused = http.post(url, json={"client_id": "acp-client", "grant_type": "password"}, timeout=5)
    assert refused.status_code == 400


def test_reservations_readiness_completion_and_deletion(shop: FakeShopify, http: requests.Session) -> None:
    variant = {"id": "gid://shopify/ProductVariant/1002"}
    payload = create(http, shop)
    draft = payload["draftOrder"]
    assert payload["userErrors"] == []
    assert draft["ready"] is False
    assert data(gql(http, shop, READ, {"id": draft["id"]}))["draftOrder"]["ready"] is True
    assert data(gql(http, shop, VARIANT, variant))["productVariant"] == {
        "sellableOnlineQuantity": 0, "inventoryQuantity": 0, "availableForSale": False}
    second = create(http, shop)["draftOrder"]  # Shopify does not refuse a reservation beyond stock
    assert shop.sellable(1002) == -1
    shop.advance_clock(16 * 60)  # both reservations lapse
    assert shop.sellable(1002) == 1
    shop.advance_clock(-16 * 60)
    done = data(gql(http, shop, COMPLETE, {"id": draft["id"]}))["draftOrderComplete"]
    assert done["userErrors"] == []
    assert done["draftOrder"]["status"] == "COMPLETED"
    assert done["draftOrder"]["order"]["name"] == "#1001"
    assert shop.variants[1002].inventory == 0
    assert shop.sellable(1002) == -1
    again = data(gql(http, shop, COMPLETE, {"id": draft["id"]}))["draftOrderComplete"]
    assert again["userErrors"]
    assert again["draftOrder"]["order"]["name"] == "#1001"
    assert data(gql(http, shop, DELETE, {"input": {"id": draft["id"]}}))["draftOrderDelete"]["userErrors"]
    assert data(gql(http, shop, DELETE, {"input": {"id": second["id"]}}))["draftOrderDelete"]["deletedId"]
    gone = data(gql(http, shop, DELETE, {"input": {"id": second["id"]}}))["draftOrderDelete"]
    assert gone == {"deletedId": None, "userErrors": [{"message": "Draft order does not exist"}]}
    assert shop.sellable(1002) == 0
    assert [e["topic"] for e in shop.events].count("orders/create") == 1


def test_lapsed_reservation_holds_nothing_and_completion_checks_no_stock(
        shop: FakeShopify, http: requests.Session) -> None:
    # like Shopify's draftOrderComplete ("verify inventory availability before completing")
    lapsed = create(http, shop)["draftOrder"]
    shop.advance_clock(16 * 60)  # its 15-minute reservation lapses: the last unit is free again
    assert shop.sellable(1002) == 1
    taker = create(http, shop, reserveInventoryUntil=(shop.now() + dt.timedelta(minutes=15)).isoformat())
    taken = data(gql(http, shop, COMPLETE, {"id": taker["draftOrder"]["id"]}))["draftOrderComplete"]
    assert taken["userErrors"] == []
    assert shop.variants[1002].inventory == 0
    oversold = data(gql(http, shop, COMPLETE, {"id": lapsed["id"]}))["draftOrderComplete"]
    assert oversold["userErrors"] == []
    assert oversold["draftOrder"]["status"] == "COMPLETED"
    assert shop.variants[1002].inventory == -1
    assert len(shop.order_list()) == 2


def test_price_change_reprices_open_drafts_only(shop: FakeShopify, http: requests.Session) -> None:
    done, open_ = create(http, shop)["draftOrder"], create(http, shop)["draftOrder"]
    data(gql(http, shop, COMPLETE, {"id": done["id"]}))
    shop.set_price(1002, "13.50")
    assert shop.draft(open_["id"])["totalPriceSet"]["shopMoney"]["amount"] == "13.5"
    assert shop.draft(done["id"])["totalPriceSet"]["shopMoney"]["amount"] == "12.0"
    assert shop.order_list()[0]["totalPriceSet"]["shopMoney"]["amount"] == "12.0"


LINES = """query L($id: ID!) { draftOrder(id: $id) { presentmentCurrencyCode
  totalPriceSet { shopMoney { amount } presentmentMoney { amount currencyCode } }
  lineItems(first: 10) { nodes { variant { id } priceOverride { amount currencyCode }
    originalUnitPriceSet { shopMoney { amount } presentmentMoney { amount currencyCode } } } } } }"""
UPDATE = """mutation U($id: ID!, $input: DraftOrderInput!) { draftOrderUpdate(id: $id, input: $input) {
  draftOrder { id } userErrors { field message } } }"""


def test_price_override_is_kept_whatever_the_catalog_does(shop: FakeShopify, http: requests.Session) -> None:
    def lines(draft_id: str) -> list[tuple[t.Any, str]]:
        nodes = data(gql(http, shop, LINES, {"id": draft_id}))["draftOrder"]["lineItems"]["nodes"]
        return [(n["priceOverride"], n["originalUnitPriceSet"]["presentmentMoney"]["amount"]) for n in nodes]

    fixed = {"variantId": "gid://shopify/ProductVariant/1002", "quantity": 1,
             "priceOverride": {"amount": "10.00", "currencyCode": "USD"}}
    catalog = {"variantId": "gid://shopify/ProductVariant/1001", "quantity": 1}
    draft = create(http, shop, lineItems=[fixed, catalog])["draftOrder"]
    assert lines(draft["id"]) == [({"amount": "10.0", "currencyCode": "USD"}, "10.0"), (None, "20.0")]
    shop.set_price(1002, "13.50")
    shop.set_price(1001, "21.00")  # the catalog line follows, the overridden one does not
    assert shop.draft(draft["id"])["totalPriceSet"]["shopMoney"]["amount"] == "31.0"
    # another presentment currency: the override is converted at the shop's rate (0.300 KWD per USD)
    data(gql(http, shop, UPDATE, {"id": draft["id"], "input": {"presentmentCurrencyCode": "KWD"}}))
    assert lines(draft["id"])[0] == ({"amount": "3.0", "currencyCode": "KWD"}, "3.0")
    data(gql(http, shop, UPDATE, {"id": draft["id"], "input": {"presentmentCurrencyCode": "USD"}}))
    done = data(gql(http, shop, COMPLETE, {"id": draft["id"]}))["draftOrderComplete"]
    assert done["userErrors"] == []
    assert shop.order_list()[0]["totalPriceSet"]["shopMoney"]["amount"] == "31.0"
    # lines sent again without priceOverride follow the catalog again
    other = create(http, shop, lineItems=[fixed])["draftOrder"]
    plain = {"lineItems": [dict(fixed, priceOverride=None)]}
    data(gql(http, shop, UPDATE, {"id": other["id"], "input": plain}))
    assert lines(other["id"]) == [(None, "13.5")]
    refused = gql(http, shop, UPDATE, {"id": other["id"], "input": {"lineItems": [
        dict(fixed, priceOverride={"amount": "-1.00", "currencyCode": "USD"})]}})
    assert data(refused)["draftOrderUpdate"]["userErrors"] == [
        {"field": ["lineItems", "0", "priceOverride"],
         "message": "Price override must be a non-negative amount in a currency of the shop"}]


def test_user_errors(shop: FakeShopify, http: requests.Session) -> None:
    unknown = create(http, shop, lineItems=[{"variantId": "gid://shopify/ProductVariant/9", "quantity": 1}])
    assert unknown == {"draftOrder": None, "userErrors": [
        {"field": ["lineItems", "0", "variantId"], "message": "Product variant does not exist"}]}
    currency = create(http, shop, presentmentCurrencyCode="JPY")
    assert currency["userErrors"][0]["field"] == ["presentmentCurrencyCode"]
    handle = create(http, shop, shippingLine={"shippingRateHandle": "made-up"})
    assert handle["userErrors"][0]["field"] == ["shippingLine", "shippingRateHandle"]


def test_money_is_rendered_like_shopify(shop: FakeShopify, http: requests.Session) -> None:
    draft = create(http, shop)["draftOrder"]
    assert draft["totalPriceSet"]["shopMoney"] == {"amount": "12.0", "currencyCode": "USD"}


def test_faults(shop: FakeShopify, http: requests.Session) -> None:
    shop.add_fault("status", operation="Q", status=503, retry_after="3")
    failed = gql(http, shop, "query Q { shop { name } }")
    assert failed.status_code == 503
    assert failed.headers["Retry-After"] == "3"
    shop.add_fault("throttled", currently_available=1, restore_rate=50, requested_cost=11)
    throttled = gql(http, shop, "query Q { shop { name } }").json()
    assert throttled["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert throttled["extensions"]["cost"]["throttleStatus"] == {
        "maximumAvailable": 1000, "currentlyAvailable": 1, "restoreRate": 50}
    assert "data" not in throttled
    assert shop.calls["Q"] == 2
    assert shop.executed["Q"] == 0
    shop.add_fault("drop", operation="Q")
    with pytest.raises(requests.ConnectionError):
        gql(http, shop, "query Q { shop { name } }")
    assert shop.executed["Q"] == 1


def test_bucket_refills_over_time(shop: FakeShopify, http: requests.Session) -> None:
    shop.reset(dict(STORE, bucket={"maximum_available": 10, "restore_rate": 1}))
    assert create(http, shop)["userErrors"] == []
    throttled = gql(http, shop, CREATE, {"input": {}}).json()
    assert throttled["errors"][0]["extensions"]["code"] == "THROTTLED"
    shop.advance_clock(10)
    assert "data" in gql(http, shop, "query { shop { name } }").json()


def test_control_routes(shop: FakeShopify, http: requests.Session) -> None:
    assert http.post(f"{shop.url}/__fake__/faults", json={"kind": "status", "status": 500, "operation": "Q"},
                     timeout=5).json() == {"ok": True}
    assert gql(http, shop, "query Q { shop { name } }").status_code == 500
    http.post(f"{shop.url}/__fake__/clock", json={"advance_seconds": 60}, timeout=5)
    state = http.get(f"{shop.url}/__fake__/state", timeout=5).json()
    assert state["calls"] == {"Q": 1}
    assert len(state["variants"]) == len(STORE["variants"])
    http.post(f"{shop.url}/__fake__/seed", json=dict(STORE, variants=[]), timeout=5)
    assert http.get(f"{shop.url}/__fake__/state", timeout=5).json()["variants"] == []


ORDERS = """query O($q: String) { orders(first: 10, query: $q, sortKey: UPDATED_AT) {
  nodes { id name cancelledAt cancelReason closed displayFulfillmentStatus displayFinancialStatus
          totalRefundedSet { presentmentMoney { amount currencyCode } }
          lineItems(first: 5) { nodes { id quantity unfulfilledQuantity variant { id } } }
          fulfillments(first: 5) { id status displayStatus trackingInfo(first: 1) { company number url }
                                   fulfillmentLineItems(first: 5) { nodes { quantity lineItem { id } } } }
          refunds(first: 5) { id note transactions(first: 2) {
                                nodes { kind status gateway amountSet { presentmentMoney { amount } } } } } }
  pageInfo { hasNextPage } } }"""


def test_merchant_events_send_signed_webhooks_over_control_routes(shop: FakeShopify,
                                                                  http: requests.Session) -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    @Request.application  # type: ignore[arg-type]
    def receiver(request: Request) -> Response:
        received.append((dict(request.headers), request.get_data()))
        return Response("{}", status=200 if len(received) > 1 else 503)  # the first is retried

    hook = make_server("127.0.0.1", 0, receiver, threaded=True)
    thread = threading.Thread(target=hook.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        draft = create(http, shop, tags=["acp"], customAttributes=[{"key": "k", "value": "v"}])["draftOrder"]
        completed = data(gql(http, shop, COMPLETE, {"id": draft["id"]}))["draftOrderComplete"]
        order = completed["draftOrder"]["order"]
        control = f"{shop.url}/__fake__"
        since = shop.now().replace(microsecond=0).isoformat().replace("+00:00", "Z")
        subscribed = http.post(f"{control}/webhooks", timeout=5, json={
            "url": f"http://127.0.0.1:{hook.server_port}/hooks", "secret": "hook-secret"})
        assert subscribed.json() == {"ok": True}
        fulfilled = http.post(f"{control}/events/fulfill", timeout=5, json={
            "order": order["id"], "lines": {"1002": 1}, "tracking_company": "UPS",
            "tracking_number": "1Z"}).json()
        assert http.post(f"{control}/events/fulfillment", timeout=5, json={
            "id": fulfilled["admin_graphql_api_id"], "shipment_status": "delivered"}).status_code == 200
        assert http.post(f"{control}/events/refund", timeout=5,
                         json={"order": order["name"], "amount": "1.00", "note": "dent"}).status_code == 200
        assert http.post(f"{control}/events/refund", timeout=5,
                         json={"order": order["id"], "amount": "999.00"}).status_code == 400
        assert http.post(f"{control}/events/cancel", timeout=5,
                         json={"order": order["id"], "reason": "staff"}).status_code == 200
        shop.flush_webhooks()
        sent = http.get(f"{control}/webhooks", timeout=5).json()
    finally:
        hook.shutdown()
        hook.server_close()
        thread.join()
    assert [d["topic"] for d in sent] == [
        "fulfillments/create", "orders/fulfilled", "orders/updated", "fulfillments/update", "orders/updated",
        "refunds/create", "orders/updated", "orders/cancelled", "orders/updated"]
    assert sent[0]["statuses"] == [503, 200]
    assert len(received) == len(sent) + 1
    for headers, body in received:
        digest = hmac.new(b"hook-secret", body, hashlib.sha256).digest()
        assert headers["X-Shopify-Hmac-Sha256"] == base64.b64encode(digest).decode()
        assert headers["X-Shopify-Shop-Domain"] == STORE["shop"]["domain"]
    assert len({h["X-Shopify-Event-Id"] for h, _ in received}) == len(sent)
    cancelled = json.loads(received[-2][1])
    assert (cancelled["cancel_reason"], cancelled["financial_status"], cancelled["fulfillment_status"]) == (
        "staff", "partially_refunded", "fulfilled")
    assert cancelled["note_attributes"] == [{"name": "k", "value": "v"}]
    assert cancelled["fulfillments"][0]["shipment_status"] == "delivered"
    assert cancelled["refunds"][0]["transactions"][0]["amount"] == "1.00"
    # the same state through GraphQL, and the order search
    for query, found in ((f"tag:acp updated_at:>='{since}'", 1), ("tag:acp status:open", 0),
                         ("status:cancelled", 1), ("tag:acp status:not_closed", 1), ("tag:other", 0),
                         ("updated_at:<'2020-01-01T00:00:00Z'", 0)):
        assert len(data(gql(http, shop, ORDERS, {"q": query}))["orders"]["nodes"]) == found, query
    (node,) = data(gql(http, shop, ORDERS, {"q": "tag:acp"}))["orders"]["nodes"]
    assert (node["cancelReason"], node["closed"], node["displayFulfillmentStatus"],
            node["displayFinancialStatus"]) == ("STAFF", False, "FULFILLED", "PARTIALLY_REFUNDED")
    assert node["totalRefundedSet"]["presentmentMoney"] == {"amount": "1.0", "currencyCode": "USD"}
    (fulfillment,) = node["fulfillments"]
    assert (fulfillment["status"], fulfillment["displayStatus"], fulfillment["trackingInfo"]) == (
        "SUCCESS", "DELIVERED", [{"company": "UPS", "number": "1Z", "url": None}])
    line = node["lineItems"]["nodes"][0]
    assert fulfillment["fulfillmentLineItems"]["nodes"][0]["lineItem"]["id"] == line["id"]
    assert (line["quantity"], line["unfulfilledQuantity"]) == (1, 0)
    assert node["refunds"][0]["transactions"]["nodes"] == [
        {"kind": "REFUND", "status": "SUCCESS", "gateway": "manual", "amountSet": {"presentmentMoney": {
            "amount": "1.0"}}}]


@pytest.mark.parametrize(("change", "message"), [
    ({"variants": [{"id": 1, "price": 1.5}]}, r"variants\[0\].price: give amounts"),
    ({"variants": [{"id": 1}]}, r"variants\[0\]: price is required"),
    ({"variants": [{"id": 1, "price": "1", "inventory_policy": "SOMETIMES"}]}, "inventory_policy"),
    ({"tax_rounding": "banker"}, "tax_rounding"),
    ({"shop": {"currency": "XYZ"}}, "unknown currency"),
])
def test_invalid_seeds(change: dict[str, t.Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FakeShopify(dict(STORE, **change))


def test_demo_seed_and_standalone_cli() -> None:
    demo = json.loads(DEMO_SEED.read_text())
    assert FakeShopify().variants.keys() == {v["id"] for v in demo["variants"]}
    command = [sys.executable, "-m", "flask_acp.testing.fake_shopify", "--port", "0", "--seed",
               str(ROOT / "tests" / "data" / "shopify_store.json")]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=ROOT) as process:
        try:
            assert process.stderr is not None
            line = process.stderr.readline()
            assert line.startswith("Fake Shopify on http://127.0.0.1:"), line
            url = line.split()[3]
            with requests.Session() as http:
                response = http.post(f"{url}/admin/api/2026-10/graphql.json", timeout=5,
                                     json={"query": "query { shop { currencyCode } }"},
                                     headers={"X-Shopify-Access-Token": TOKEN})
            assert response.json()["data"] == {"shop": {"currencyCode": "USD"}}
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(10)
