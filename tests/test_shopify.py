"""The Shopify adapter end to end: the ACP API (validating test client, real
SQLite store, FakePaymentProcessor) -> ShopifyAdapter -> real HTTP -> FakeShopify.

No mocks: every platform call crosses a socket to the fake, which executes it
with graphql-core against its Admin schema subset and counts it per operation.
"""

from __future__ import annotations

import collections.abc as cabc
import copy
import datetime as dt
import json
import logging
import pathlib
import threading
import time
import typing as t

import pytest
from flask import Flask

from flask_acp.models import CheckoutSession
from flask_acp.testing import FakePaymentProcessor
from flask_acp.testing.fake_shopify import FakeShopify
from flask_acp.testing.fake_stripe import FakeStripe
from flask_acp.testing.fake_stripe import mint_granted_token
from flask_acp_adapters.shopify import SESSION_ATTRIBUTE
from flask_acp_adapters.shopify import ShopifyAdapter
from flask_acp_adapters.shopify import ShopifyClient
from flask_acp_adapters.shopify import mapping
from tests.conftest import ADDRESS
from tests.conftest import FROM_CONFIG
from tests.conftest import Agent
from tests.conftest import build_app

DATA = pathlib.Path(__file__).parent / "data"
STORE: dict[str, t.Any] = json.loads((DATA / "shopify_store.json").read_text())
KW_ADDRESS = {"name": "Ali Ahmad", "line_one": "Block 1, Street 2", "city": "Kuwait City", "state": "KU",
              "country": "KW", "postal_code": "13001"}
JP_ADDRESS = {"name": "Aiko Sato", "line_one": "1-1 Chiyoda", "city": "Tokyo", "state": "13",
              "country": "JP", "postal_code": "100-0001"}
DE_ADDRESS = {"name": "Erika Mustermann", "line_one": "Hauptstr. 1", "city": "Berlin", "state": "BE",
              "country": "DE", "postal_code": "10115"}
NY_ADDRESS = dict(ADDRESS, state="NY", city="New York", postal_code="10001")
FR_ADDRESS = {"name": "Jean Dupont", "line_one": "1 rue de Rivoli", "city": "Paris", "state": "IDF",
              "country": "FR", "postal_code": "75001"}
BUYER = {"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace"}


def store(**changes: t.Any) -> dict[str, t.Any]:
    """The test store seed with top-level keys replaced (``shop`` is merged)."""
    seed = copy.deepcopy(STORE)
    shop = changes.pop("shop", None)
    if shop:
        seed["shop"].update(shop)
    seed.update(changes)
    return seed


JPY_STORE = store(shop={"currency": "JPY", "presentment_currencies": {}}, tax_rates={"JP": "0.10"},
                  shipping_rates={"JP": [{"title": "Yamato", "code": "TA-Q-BIN", "source": "yamato",
                                          "price": "800"}]},
                  variants=[{"id": 2001, "product_title": "Tenugui", "title": "Indigo", "price": "1500",
                             "inventory": 5}])
KWD_STORE = store(shop={"currency": "KWD", "presentment_currencies": {}}, tax_rates={"KW": "0.10"},
                  shipping_rates={"KW": [{"title": "Local courier", "code": "COURIER", "source": "aramex",
                                          "price": "1.500"}]},
                  variants=[{"id": 3001, "product_title": "Dates box", "title": "500 g", "price": "4.250",
                             "inventory": 5},
                            {"id": 3002, "product_title": "Dates box", "title": "250 g", "price": "2.125",
                             "inventory": 5}])
EUR_INCLUSIVE_STORE = store(shop={"currency": "EUR", "taxes_included": True, "presentment_currencies": {}},
                            tax_rates={"DE": "0.19"},
                            shipping_rates={"DE": [{"title": "DHL Paket", "code": "DHL", "source": "dhl",
                                                    "price": "5.95"}]},
                            variants=[{"id": 4001, "product_title": "Notebook", "title": "A5",
                                       "price": "19.99", "inventory": 10}])


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> cabc.Iterator[FakeShopify]:
    with FakeShopify(STORE) as fake:
        yield fake


@pytest.fixture
def shop(server: FakeShopify) -> FakeShopify:
    server.reset(STORE)
    return server


@pytest.fixture
def processor() -> FakePaymentProcessor:
    return FakePaymentProcessor()


AppFactory = cabc.Callable[..., Flask]


@pytest.fixture
def make_app(tmp_path: pathlib.Path, shop: FakeShopify,
             processor: FakePaymentProcessor) -> cabc.Iterator[AppFactory]:
    """Build ACP apps on the Shopify adapter pointed at the fake (closed afterwards)."""
    made: list[Flask] = []

    def factory(**config: t.Any) -> Flask:
        settings: dict[str, t.Any] = {
            "ACP_ADAPTER": "shopify", "SHOPIFY_SHOP_URL": shop.url, "SHOPIFY_ACCESS_TOKEN": shop.access_token,
            "SHOPIFY_TIMEOUT": 2, "SHOPIFY_READY_TIMEOUT": 2,
        }
        settings.update(config)
        settings = {k: v for k, v in settings.items() if v is not None}
        app = build_app(tmp_path / f"app{len(made)}", payment_processor=processor, **settings)
        made.append(app)
        return app

    yield factory
    for app in made:
        app.extensions["acp"].adapter.close()


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app()


@pytest.fixture(scope="module")
def stripe_server() -> cabc.Iterator[FakeStripe]:
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def fake_stripe(stripe_server: FakeStripe) -> cabc.Iterator[FakeStripe]:
    stripe_server.reset()
    yield stripe_server
    assert stripe_server.server_errors == []


@pytest.fixture
def make_stripe_app(tmp_path: pathlib.Path, shop: FakeShopify,
                    fake_stripe: FakeStripe) -> cabc.Iterator[AppFactory]:
    """Build apps on the fake Shopify whose payments go to FakeStripe through the
    Stripe processor built from ``ACP_STRIPE_*`` (real HTTP both ways); no inline
    order-placement retries unless configured, so a failed placement answers 503
    at once (closed afterwards)."""
    made: list[Flask] = []

    def factory(**config: t.Any) -> Flask:
        settings: dict[str, t.Any] = {"ACP_ORDER_PLACEMENT_RETRIES": []}
        settings.update(config)
        app = build_app(tmp_path / f"stripe-app{len(made)}", payment_processor=FROM_CONFIG,
                        ACP_ADAPTER="shopify", SHOPIFY_SHOP_URL=shop.url,
                        SHOPIFY_ACCESS_TOKEN=shop.access_token, SHOPIFY_TIMEOUT=2, SHOPIFY_READY_TIMEOUT=2,
                        ACP_STRIPE_SECRET_KEY=fake_stripe.api_key, ACP_STRIPE_MERCHANT_ID="acct_test",
                        ACP_STRIPE_API_BASE=fake_stripe.url, **settings)
        made.append(app)
        return app

    yield factory
    for app in made:
        state = app.extensions["acp"]
        state.adapter.close()
        state.webhooks.close()


@pytest.fixture
def stripe_app(make_stripe_app: AppFactory) -> Flask:
    return make_stripe_app()


@pytest.fixture
def agent(app: Flask) -> Agent:
    return Agent(app.test_client())


# --- helpers --------------------------------------------------------------------------------


def update(agent: Agent, sid: str, **body: t.Any) -> t.Any:
    return agent.post(f"/checkout_sessions/{sid}", body)


def total_of(session: dict[str, t.Any], kind: str = "total") -> int:
    return int(next(e["amount"] for e in session["totals"] if e["type"] == kind))


def codes(session: dict[str, t.Any]) -> list[tuple[str, str | None, str | None]]:
    return [(m["type"], m.get("code"), m.get("param")) for m in session["messages"]]


def draft_of(shop: FakeShopify, sid: str) -> dict[str, t.Any]:
    for draft in shop.draft_list():
        if {"key": SESSION_ATTRIBUTE, "value": sid} in draft["customAttributes"]:
            return draft
    raise AssertionError(f"no draft for {sid}")


def adapter_of(app: Flask) -> ShopifyAdapter:
    adapter = app.extensions["acp"].adapter
    assert isinstance(adapter, ShopifyAdapter)
    return adapter


def stored(app: Flask, sid: str) -> CheckoutSession:
    session = app.extensions["acp"].storage.sessions.get(sid)
    assert session is not None
    return t.cast(CheckoutSession, session)


def mint(app: Flask, max_amount: int, currency: str = "usd") -> str:
    """A granted token for ``app``'s Stripe processor (minted at FakeStripe, as an agent's would be)."""
    payments = app.extensions["acp"].payments
    return mint_granted_token(payments.client, currency=currency, max_amount=max_amount,
                              spt_api_version=payments.spt_api_version)


def purchase(agent: Agent, shop: FakeShopify, items: list[dict[str, t.Any]], address: dict[str, t.Any],
             currency: str = "usd") -> tuple[dict[str, t.Any], dict[str, dict[str, int]]]:
    """create (no address) -> update (address, buyer) -> complete; returns the
    completed session and the fake's calls per ACP operation."""
    calls: dict[str, dict[str, int]] = {}
    shop.reset_counters()
    created = agent.create(items, currency=currency)
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["status"] == "not_ready_for_payment"
    assert ("error", "missing", "$.fulfillment_details.address") in codes(body)
    calls["create"] = dict(shop.calls)
    shop.reset_counters()
    updated = update(agent, body["id"], fulfillment_details={"address": address}, buyer=BUYER)
    assert updated.status_code == 200, updated.get_json()
    ready = updated.get_json()
    assert ready["status"] == "ready_for_payment", ready["messages"]
    calls["update"] = dict(shop.calls)
    # the ACP total is exactly the draft's totalPriceSet (presentment currency)
    assert total_of(ready) == mapping.money(draft_of(shop, body["id"])["totalPriceSet"], currency)
    shop.reset_counters()
    done = agent.complete(body["id"])
    assert done.status_code == 200, done.get_json()
    completed = done.get_json()
    assert completed["status"] == "completed", completed["messages"]
    assert total_of(completed) == total_of(ready)
    calls["complete"] = dict(shop.calls)
    return completed, calls


def assert_one_paid_order(shop: FakeShopify, processor: FakePaymentProcessor, session: dict[str, t.Any],
                          currency: str) -> None:
    orders = shop.order_list()
    charges = processor.charges()
    assert len(orders) == 1, orders
    assert len(charges) == 1, charges
    order, charge = orders[0], charges[0]
    assert session["order"]["id"] == order["id"]
    assert session["order"]["permalink_url"] == order["statusPageUrl"]
    assert session["order"]["order_number"] == order["name"]
    assert charge["amount"] == total_of(session) == mapping.money(order["totalPriceSet"], currency)
    assert charge["currency"] == currency
    assert f"payment:{charge['payment_id']}" in order["tags"]
    assert {"key": SESSION_ATTRIBUTE, "value": session["id"]} in order["customAttributes"]


# --- purchases in USD, JPY, KWD, tax-inclusive ---------------------------------------------------


def test_usd_purchase(shop: FakeShopify, agent: Agent, processor: FakePaymentProcessor) -> None:
    session, _ = purchase(agent, shop, [{"id": "1001", "quantity": 2}], ADDRESS)
    # 2 x 20.00 + 8.75 % CA tax 3.50; Standard 5.00 + tax 0.44 (0.4375 half-up)
    line = session["line_items"][0]
    assert line["unit_amount"] == 2000
    assert line["name"] == "Tee - Medium"
    assert line["sku"] == "TEE-M"
    assert [(x["type"], x["amount"]) for x in line["totals"]] == [
        ("items_base_amount", 4000), ("discount", 0), ("subtotal", 4000), ("tax", 350), ("total", 4350)]
    assert [(x["type"], x["amount"]) for x in session["totals"]] == [
        ("items_base_amount", 4000), ("subtotal", 4000), ("fulfillment", 500), ("tax", 394), ("total", 4894)]
    standard = next(o for o in session["fulfillment_options"] if o["title"] == "Standard")
    assert [(x["type"], x["amount"]) for x in standard["totals"]] == [
        ("subtotal", 500), ("tax", 44), ("total", 544)]
    express = next(o for o in session["fulfillment_options"] if o["title"] == "Express")
    assert express["carrier"] == "ups"
    assert express["totals"][-1]["amount"] == 1500
    assert session["selected_fulfillment_options"] == [
        {"type": "shipping", "option_id": standard["id"], "item_ids": ["1001"]}]
    assert_one_paid_order(shop, processor, session, "usd")
    assert shop.sellable(1001) == 8
    assert shop.variants[1001].inventory == 8


def test_jpy_purchase(shop: FakeShopify, agent: Agent, processor: FakePaymentProcessor) -> None:
    shop.reset(JPY_STORE)
    session, _ = purchase(agent, shop, [{"id": "2001", "quantity": 2}], JP_ADDRESS, currency="jpy")
    # JPY has no minor unit: 2 x 1500 + 10 % = 3300; shipping 800 + 80
    assert session["line_items"][0]["unit_amount"] == 1500
    assert [(x["type"], x["amount"]) for x in session["totals"]] == [
        ("items_base_amount", 3000), ("subtotal", 3000), ("fulfillment", 800), ("tax", 380), ("total", 4180)]
    assert_one_paid_order(shop, processor, session, "jpy")


def test_kwd_store_purchase(shop: FakeShopify, agent: Agent, processor: FakePaymentProcessor) -> None:
    shop.reset(KWD_STORE)
    session, _ = purchase(agent, shop, [{"id": "3001", "quantity": 2}], KW_ADDRESS, currency="kwd")
    # three decimals: 2 x 4.250 + 10 % = 9.350; courier 1.500 + 0.150 -> 11.000 KWD
    assert session["line_items"][0]["unit_amount"] == 4250
    assert [(x["type"], x["amount"]) for x in session["totals"]] == [
        ("items_base_amount", 8500), ("subtotal", 8500), ("fulfillment", 1500), ("tax", 1000),
        ("total", 11000)]
    assert_one_paid_order(shop, processor, session, "kwd")


def test_kwd_presentment_purchase_on_a_usd_store(shop: FakeShopify, agent: Agent,
                                                 processor: FakePaymentProcessor) -> None:
    session, _ = purchase(agent, shop, [{"id": "1001", "quantity": 2}], KW_ADDRESS, currency="kwd")
    # presentment price 6.000 KWD; 5 % tax; the USD 10.00 rate is 3.000 KWD on the draft
    assert session["currency"] == "kwd"
    assert session["line_items"][0]["unit_amount"] == 6000
    assert [(x["type"], x["amount"]) for x in session["totals"]] == [
        ("items_base_amount", 12000), ("subtotal", 12000), ("fulfillment", 3000), ("tax", 750),
        ("total", 15750)]
    assert_one_paid_order(shop, processor, session, "kwd")
    order = shop.order_list()[0]
    assert order["presentmentCurrencyCode"] == "KWD"
    assert order["totalPriceSet"]["shopMoney"] == {"amount": "52.5", "currencyCode": "USD"}


def test_kwd_total_that_stripe_cannot_charge_is_not_payable(shop: FakeShopify, agent: Agent,
                                                             processor: FakePaymentProcessor) -> None:
    shop.reset(KWD_STORE)
    created = agent.create([{"id": "3002", "quantity": 1}], currency="kwd",
                           fulfillment_details={"address": KW_ADDRESS})
    body = created.get_json()
    # 2.125 + 0.2125 -> 0.213 tax + 1.650 shipping = 3.988 KWD: not a multiple of 0.010
    assert total_of(body) == 3988
    assert body["status"] == "not_ready_for_payment"
    assert ("error", "invalid", "$.totals") in codes(body)
    assert "multiple of 0.010" in body["messages"][-1]["content"]
    assert agent.complete(body["id"]).get_json()["status"] == "not_ready_for_payment"
    assert processor.charges() == []


def test_tax_inclusive_store(shop: FakeShopify, agent: Agent, processor: FakePaymentProcessor) -> None:
    shop.reset(EUR_INCLUSIVE_STORE)
    session, _ = purchase(agent, shop, [{"id": "4001", "quantity": 3}], DE_ADDRESS, currency="eur")
    # Shopify: 3 x 19.99 = 59.97 incl. 9.58 VAT; shipping 5.95 incl. 0.95 VAT; total 65.92.
    # ACP adds tax on top, so lines are net: 50.39 = 3 x 16.79 + 0.02 (the remainder joins the tax).
    line = session["line_items"][0]
    assert line["unit_amount"] == 1679
    assert [(x["type"], x["amount"]) for x in line["totals"]] == [
        ("items_base_amount", 5037), ("discount", 0), ("subtotal", 5037), ("tax", 960), ("total", 5997)]
    assert [(x["type"], x["amount"]) for x in session["totals"]] == [
        ("items_base_amount", 5037), ("subtotal", 5037), ("fulfillment", 500), ("tax", 1055),
        ("total", 6592)]
    assert_one_paid_order(shop, processor, session, "eur")


def test_order_level_tax_rounding_is_absorbed_without_changing_the_total(
        shop: FakeShopify, agent: Agent) -> None:
    shop.reset(store(tax_rounding="order"))
    created = agent.create([{"id": "1007"}, {"id": "1008"}], fulfillment_details={"address": NY_ADDRESS})
    body = created.get_json()
    assert body["status"] == "ready_for_payment", body["messages"]
    draft = draft_of(shop, body["id"])
    # lines 0.0125 -> 0.01 each, shipping 0.25, but Shopify's order tax is round(0.275) = 0.28
    assert draft["totalTaxSet"]["shopMoney"]["amount"] == "0.28"
    assert total_of(body) == 578 == mapping.money(draft["totalPriceSet"], "usd")
    assert total_of(body, "tax") == 28
    assert sorted(li["totals"][3]["amount"] for li in body["line_items"]) == [1, 2]


def test_calls_per_acp_operation(shop: FakeShopify, agent: Agent, capsys: pytest.CaptureFixture[str]) -> None:
    _, calls = purchase(agent, shop, [{"id": "1001", "quantity": 1}], ADDRESS)
    with capsys.disabled():
        print("\nShopify calls per ACP operation:", json.dumps(calls, sort_keys=True))
    assert calls["create"] == {"AcpVariants": 1, "AcpDraftOrderCreate": 1}
    assert calls["update"] == {"AcpDeliveryOptions": 1, "AcpDraftOrderUpdate": 1, "AcpDraftOrder": 1}
    # before the charge the draft's prices are fixed (draftOrderUpdate with priceOverride: the
    # only way to stop an open draft from following the catalog), and Shopify recalculates the
    # updated draft asynchronously, so it is read again once ready before its total is charged
    assert calls["complete"] == {"AcpDraftOrder": 2, "AcpDraftOrderUpdate": 1, "AcpDraftOrderStatus": 1,
                                 "AcpDraftOrderComplete": 1, "AcpTagsAdd": 1}
    assert [sum(c.values()) for c in calls.values()] == [2, 3, 6]


def test_client_credentials_grant(shop: FakeShopify, make_app: AppFactory,
                                  processor: FakePaymentProcessor) -> None:
    app = make_app(SHOPIFY_ACCESS_TOKEN=None, SHOPIFY_CLIENT_ID="acp-client",
                   SHOPIFY_CLIENT_SECRET="acp-client-secret")
    session, calls = purchase(Agent(app.test_client()), shop, [{"id": "1001"}], ADDRESS)
    assert calls["create"]["access_token"] == 1
    assert "access_token" not in calls["update"]
    assert "access_token" not in calls["complete"]
    assert_one_paid_order(shop, processor, session, "usd")


def test_digital_item_is_payable_without_an_address(shop: FakeShopify, agent: Agent,
                                                    processor: FakePaymentProcessor) -> None:
    created = agent.create([{"id": "1006"}], buyer=BUYER)
    body = created.get_json()
    assert body["status"] == "ready_for_payment", body["messages"]
    assert body["fulfillment_options"][0]["type"] == "digital"
    assert total_of(body) == 700
    done = agent.complete(body["id"]).get_json()
    assert done["status"] == "completed"
    assert_one_paid_order(shop, processor, done, "usd")


def test_agent_selects_another_rate(shop: FakeShopify, agent: Agent) -> None:
    body = agent.create([{"id": "1001"}], fulfillment_details={"address": ADDRESS}).get_json()
    express = next(o for o in body["fulfillment_options"] if o["title"] == "Express")
    updated = update(agent, body["id"], selected_fulfillment_options=[
        {"type": "shipping", "option_id": express["id"], "item_ids": ["1001"]}]).get_json()
    assert updated["status"] == "ready_for_payment"
    assert total_of(updated, "fulfillment") == 1500
    assert draft_of(shop, body["id"])["shippingLine"]["code"] == "EXPRESS"
    assert total_of(updated) == mapping.money(draft_of(shop, body["id"])["totalPriceSet"], "usd")
    bad = update(agent, body["id"], selected_fulfillment_options=[
        {"type": "shipping", "option_id": "ship_nope", "item_ids": []}]).get_json()
    assert ("error", "invalid", "$.selected_fulfillment_options[0].option_id") in codes(bad)


def test_discovery_lists_shop_and_presentment_currencies(shop: FakeShopify, app: Flask) -> None:
    body = app.test_client().get("/.well-known/acp.json").get_json()
    assert body["capabilities"]["supported_currencies"] == ["eur", "kwd", "usd"]


# --- business conditions as messages -----------------------------------------------------------


@pytest.mark.parametrize("item_id", ["999999", "tee-medium", "1005", "1009"],
                         ids=["unknown", "not-a-variant-id", "unpublished", "archived"])
def test_unknown_or_unpublished_variant_is_not_found(shop: FakeShopify, agent: Agent, item_id: str) -> None:
    body = agent.create([{"id": item_id}], fulfillment_details={"address": ADDRESS}).get_json()
    assert body["status"] == "not_ready_for_payment"
    assert codes(body) == [("error", "not_found", "$.line_items[0].item.id")]
    assert body["messages"][0]["content"] == f"The item '{item_id}' does not exist."
    assert "AcpDraftOrderCreate" not in shop.calls
    assert shop.draft_list() == []


def test_unknown_item_next_to_a_known_one(shop: FakeShopify, agent: Agent) -> None:
    body = agent.create([{"id": "1001"}, {"id": "424242"}],
                        fulfillment_details={"address": ADDRESS}).get_json()
    assert body["status"] == "not_ready_for_payment"
    assert ("error", "not_found", "$.line_items[1].item.id") in codes(body)
    assert [n["variant"]["id"] for n in draft_of(shop, body["id"])["lineItems"]["nodes"]] == [
        "gid://shopify/ProductVariant/1001"]
    fixed = update(agent, body["id"], line_items=[{"id": "1001"}]).get_json()
    assert fixed["status"] == "ready_for_payment"


def test_the_same_variant_under_two_item_ids(shop: FakeShopify, agent: Agent) -> None:
    body = agent.create([{"id": "1001"}, {"id": "gid://shopify/ProductVariant/1001"}],
                        fulfillment_details={"address": ADDRESS}).get_json()
    assert codes(body) == [("error", "invalid", "$.line_items[1].item.id")]
    assert "same product variant as line_items[0]" in body["messages"][0]["content"]


def test_out_of_stock_and_quantity_capped(shop: FakeShopify, agent: Agent) -> None:
    body = agent.create([{"id": "1003"}, {"id": "1004", "quantity": 5}],
                        fulfillment_details={"address": ADDRESS}).get_json()
    assert codes(body) == [("error", "out_of_stock", "$.line_items[0].item.id"),
                           ("error", "quantity_exceeded", "$.line_items[1].quantity")]
    assert body["messages"][1]["content"] == "Only 3 of 'Cap - One size' can be ordered."
    assert body["line_items"][0]["availability_status"] == "out_of_stock"
    fixed = update(agent, body["id"], line_items=[{"id": "1004", "quantity": 3}]).get_json()
    assert fixed["status"] == "ready_for_payment", fixed["messages"]
    assert shop.sellable(1004) == 0
    # raising the quantity again counts the units this session already holds
    more = update(agent, body["id"], line_items=[{"id": "1004", "quantity": 4}]).get_json()
    assert ("error", "quantity_exceeded", "$.line_items[0].quantity") in codes(more)
    assert more["messages"][0]["content"] == "Only 3 of 'Cap - One size' can be ordered."


def test_no_delivery_option_for_the_address(shop: FakeShopify, agent: Agent) -> None:
    body = agent.create([{"id": "1001"}], fulfillment_details={"address": FR_ADDRESS}).get_json()
    assert body["status"] == "not_ready_for_payment"
    assert codes(body) == [("error", "region_restricted", "$.fulfillment_details.address.country")]
    assert body["messages"][0]["content"] == "This store does not ship to FR."
    assert body["fulfillment_options"] == []


def test_unsupported_currency(shop: FakeShopify, agent: Agent) -> None:
    body = agent.create([{"id": "1001"}], currency="jpy").get_json()
    assert ("error", "unsupported", "$.currency") in codes(body)
    assert shop.draft_list() == []


# --- completion: price changes, exactly once ---------------------------------------------------------


def ready_session(agent: Agent, items: list[dict[str, t.Any]] | None = None,
                  address: dict[str, t.Any] = ADDRESS) -> dict[str, t.Any]:
    created = agent.create(items or [{"id": "1001"}], fulfillment_details={"address": address}, buyer=BUYER)
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["status"] == "ready_for_payment", body["messages"]
    return t.cast(dict[str, t.Any], body)


def test_price_change_between_update_and_complete_is_not_charged(
        shop: FakeShopify, agent: Agent, processor: FakePaymentProcessor) -> None:
    body = ready_session(agent)
    assert total_of(body) == 2000 + 175 + 500 + 44
    shop.set_price(1001, "22.00")  # Shopify re-prices the draft asynchronously
    first = agent.complete(body["id"]).get_json()
    assert first["status"] == "ready_for_payment"
    assert ("warning", "price_change", "$.totals") in codes(first)
    assert total_of(first) == 2200 + 193 + 500 + 44
    assert processor.charges() == []
    assert shop.order_list() == []
    second = agent.complete(body["id"]).get_json()
    assert second["status"] == "completed"
    assert processor.charges()[0]["amount"] == total_of(first)


def test_price_change_while_the_draft_is_completed_orders_at_the_charged_price(
        shop: FakeShopify, app: Flask, processor: FakePaymentProcessor) -> None:
    """The check-then-act race: the total is checked, then draftOrderComplete runs
    separately; a price change in between must not change the order (the lines
    were frozen with priceOverride before the charge)."""
    body = ready_session(Agent(app.test_client()))
    paid = total_of(body)
    assert paid == 2000 + 175 + 500 + 44
    shop.add_fault("delay", operation="AcpDraftOrderComplete", seconds=1.0)
    results: dict[str, t.Any] = {}

    def complete() -> None:
        results["done"] = Agent(app.test_client()).complete(body["id"]).get_json()

    thread = threading.Thread(target=complete)
    thread.start()
    deadline = time.monotonic() + 10
    while not shop.calls["AcpDraftOrderComplete"] and time.monotonic() < deadline:
        time.sleep(0.01)
    # charged, the total checked; Shopify holds draftOrderComplete while the merchant raises the price
    assert (shop.calls["AcpDraftOrderComplete"], shop.executed["AcpDraftOrderComplete"]) == (1, 0)
    assert len(processor.charges()) == 1
    shop.set_price(1001, "22.00")
    thread.join(30)
    assert not thread.is_alive()
    done = results["done"]
    assert done["status"] == "completed", done["messages"]
    [order] = shop.order_list()
    [charge] = processor.charges()
    assert charge["amount"] == paid == total_of(done) == mapping.money(order["totalPriceSet"], "usd")
    assert processor.operations("refund") == []
    assert_one_paid_order(shop, processor, done, "usd")
    # the catalog price applies to the next checkout
    assert total_of(ready_session(Agent(app.test_client()))) == 2200 + 193 + 500 + 44


def test_complete_response_lost_completes_once(shop: FakeShopify, agent: Agent,
                                               processor: FakePaymentProcessor) -> None:
    body = ready_session(agent)
    shop.add_fault("drop", operation="AcpDraftOrderComplete")
    done = agent.complete(body["id"]).get_json()
    assert done["status"] == "completed"
    assert shop.executed["AcpDraftOrderComplete"] == 1
    assert_one_paid_order(shop, processor, done, "usd")


def test_complete_response_lost_and_shopify_down_then_retry(
        shop: FakeShopify, make_app: AppFactory, processor: FakePaymentProcessor) -> None:
    agent = Agent(make_app(ACP_ORDER_PLACEMENT_RETRIES=[0.0, 0.0]).test_client())
    body = ready_session(agent)
    shop.add_fault("drop", operation="AcpDraftOrderComplete")
    # the re-read after the lost response fails, and so do the core's two inline retries
    shop.add_fault("status", operation="AcpDraftOrderStatus", status=503, skip=1, times=3)
    failed = agent.complete(body["id"])
    assert failed.status_code == 503
    assert failed.get_json()["type"] == "service_unavailable"
    assert len(shop.order_list()) == 1
    assert len(processor.charges()) == 1
    retried = agent.complete(body["id"], token="spt_other")  # a new request, another token even
    assert retried.status_code == 200
    done = retried.get_json()
    assert done["status"] == "completed"
    assert shop.executed["AcpDraftOrderComplete"] == 1
    assert_one_paid_order(shop, processor, done, "usd")


def test_lost_completion_answer_and_failed_reread_past_the_deadline_is_never_refunded(
        shop: FakeShopify, fake_stripe: FakeStripe, make_stripe_app: AppFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    """draftOrderComplete ran but its answer was lost, and the re-read failed: the
    order may exist, so even past ACP_ORDER_PLACEMENT_DEADLINE the payment is kept
    (503, logged at error level); once Shopify answers, a retry completes the
    session with that order."""
    app = make_stripe_app(ACP_ORDER_PLACEMENT_DEADLINE=0)
    agent = Agent(app.test_client())
    body = ready_session(agent)
    token = mint(app, total_of(body))
    shop.add_fault("drop", operation="AcpDraftOrderComplete")  # executed, answer lost
    shop.add_fault("status", operation="AcpDraftOrderStatus", status=503, skip=1)  # the re-read fails
    with caplog.at_level(logging.ERROR, "flask_acp"):
        failed = agent.complete(body["id"], token)
    assert failed.status_code == 503, failed.get_json()
    assert failed.get_json()["type"] == "service_unavailable"
    assert "the order may exist" in caplog.text
    [order] = shop.order_list()  # Shopify completed the draft: the order is there, paid
    assert order["displayFinancialStatus"] == "PAID"
    [intent] = fake_stripe.payment_intents.values()
    assert (intent["status"], fake_stripe.refunds) == ("succeeded", {})
    assert stored(app, body["id"]).status.value == "complete_in_progress"
    # Shopify answers again: the retry finds the completed draft and records its order
    retried = agent.complete(body["id"], token)
    assert retried.status_code == 200, retried.get_json()
    done = retried.get_json()
    assert done["status"] == "completed", done["messages"]
    assert done["order"]["id"] == order["id"]
    assert shop.executed["AcpDraftOrderComplete"] == 1
    assert (len(shop.draft_list()), len(shop.order_list())) == (1, 1)  # no second draft, no second order
    assert fake_stripe.refunds == {}
    assert mapping.money(order["totalPriceSet"], "usd") == intent["amount_received"] == total_of(done)


def test_unknown_completion_then_shopify_unreachable_is_never_refunded(
        shop: FakeShopify, make_app: AppFactory, processor: FakePaymentProcessor) -> None:
    """After a completion whose outcome is unknown, a later attempt that cannot
    even connect (nothing sent) still must not refund: the first one may have
    placed the order."""
    app = make_app(ACP_ORDER_PLACEMENT_DEADLINE=0, ACP_ORDER_PLACEMENT_RETRIES=[])
    agent = Agent(app.test_client())
    body = ready_session(agent)
    shop.add_fault("drop", operation="AcpDraftOrderComplete")
    shop.add_fault("status", operation="AcpDraftOrderStatus", status=503, skip=1)
    assert agent.complete(body["id"]).status_code == 503
    port = shop.port
    shop.stop()  # connection refused from now on
    try:
        refused = agent.complete(body["id"])
        assert refused.status_code == 503, refused.get_json()
        assert processor.operations("refund") == []
    finally:
        shop.start(port=port)
    done = agent.complete(body["id"]).get_json()
    assert done["status"] == "completed", done["messages"]
    assert_one_paid_order(shop, processor, done, "usd")
    assert processor.operations("refund") == []


def test_completion_with_no_answer_on_a_draft_still_open_is_never_refunded(
        shop: FakeShopify, make_app: AppFactory, processor: FakePaymentProcessor) -> None:
    """draftOrderComplete timed out and the draft reads open: the completion may
    still be running at Shopify, so the deadline does not refund it."""
    app = make_app(ACP_ORDER_PLACEMENT_DEADLINE=0, ACP_ORDER_PLACEMENT_RETRIES=[], SHOPIFY_TIMEOUT=0.5)
    agent = Agent(app.test_client())
    body = ready_session(agent)
    shop.add_fault("timeout", operation="AcpDraftOrderComplete", seconds=1.0)  # held, then dropped
    assert agent.complete(body["id"]).status_code == 503
    assert processor.operations("refund") == []
    assert shop.order_list() == []
    done = agent.complete(body["id"]).get_json()
    assert done["status"] == "completed", done["messages"]
    assert_one_paid_order(shop, processor, done, "usd")
    assert processor.operations("refund") == []


@pytest.mark.parametrize(("operation", "fault"), [
    ("AcpDraftOrderStatus", {"status": 503}),  # the first read fails: nothing was attempted
    ("AcpDraftOrderComplete", {"status": 429, "retry_after": "30"}),  # throttled: not executed
    ("AcpDraftOrderComplete", {"status": 503}),  # answered with an error, the draft reads open
], ids=["status-read-503", "complete-throttled", "complete-503-still-open"])
def test_completion_that_certainly_did_not_happen_is_refunded_past_the_deadline(
        shop: FakeShopify, make_app: AppFactory, processor: FakePaymentProcessor, operation: str,
        fault: dict[str, t.Any]) -> None:
    app = make_app(ACP_ORDER_PLACEMENT_DEADLINE=0, ACP_ORDER_PLACEMENT_RETRIES=[])
    agent = Agent(app.test_client())
    body = ready_session(agent)
    shop.add_fault("status", operation=operation, **fault)
    response = agent.complete(body["id"])
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "not_ready_for_payment"
    assert [r["amount"] for r in processor.operations("refund")] == [total_of(body)]
    assert shop.order_list() == []
    assert shop.executed["AcpDraftOrderComplete"] == 0


def test_order_tagging_failure_does_not_fail_the_purchase(shop: FakeShopify, agent: Agent,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    body = ready_session(agent)
    shop.add_fault("status", operation="AcpTagsAdd", status=500, times=3)
    with caplog.at_level(logging.WARNING, "flask_acp.shopify"):
        done = agent.complete(body["id"]).get_json()
    assert done["status"] == "completed"
    assert not any(tag.startswith("payment:") for tag in shop.order_list()[0]["tags"])
    assert "could not tag Shopify order" in caplog.text


def test_draft_shopify_refuses_to_complete_is_refunded(shop: FakeShopify, agent: Agent, app: Flask,
                                                      processor: FakePaymentProcessor) -> None:
    body = ready_session(agent)
    shop.add_fault("status", operation="AcpDraftOrderComplete", status=200,
                   body={"data": {"draftOrderComplete": {"draftOrder": None, "userErrors": [
                       {"field": ["id"], "message": "Draft order cannot be completed"}]}}})
    done = agent.complete(body["id"]).get_json()
    assert done["status"] == "not_ready_for_payment"
    assert "Draft order cannot be completed" in done["messages"][-1]["content"]
    assert shop.order_list() == []
    assert len(processor.operations("refund")) == 1


def _charged_then_completion_failed(shop: FakeShopify, fake_stripe: FakeStripe, stripe_app: Flask,
                                    ) -> tuple[Agent, dict[str, t.Any], str, dict[str, t.Any]]:
    """A session charged at Stripe whose draftOrderComplete then failed (503: not
    executed): the session waits. Returns the agent, the session, the token and the intent."""
    agent = Agent(stripe_app.test_client())
    body = ready_session(agent)
    paid = total_of(body)
    assert paid == 2000 + 175 + 500 + 44
    token = mint(stripe_app, paid)
    shop.add_fault("status", operation="AcpDraftOrderComplete", status=503)
    failed = agent.complete(body["id"], token)
    assert failed.status_code == 503, failed.get_json()
    [intent] = fake_stripe.payment_intents.values()
    assert (intent["status"], intent["amount_received"]) == ("succeeded", paid)
    assert shop.order_list() == []
    return agent, body, token, intent


def test_retry_after_a_failed_completion_orders_at_the_price_paid(
        shop: FakeShopify, fake_stripe: FakeStripe, stripe_app: Flask) -> None:
    agent, body, token, intent = _charged_then_completion_failed(shop, fake_stripe, stripe_app)
    # the merchant changes the price: the draft's lines were fixed with priceOverride before the charge
    shop.set_price(1001, "22.00")
    assert mapping.money(draft_of(shop, body["id"])["totalPriceSet"], "usd") == total_of(body)
    retried = agent.complete(body["id"], token)
    assert retried.status_code == 200, retried.get_json()
    done = retried.get_json()
    assert done["status"] == "completed", done["messages"]
    [order] = shop.order_list()
    assert mapping.money(order["totalPriceSet"], "usd") == intent["amount_received"] == total_of(body)
    assert fake_stripe.refunds == {}


def test_retry_after_a_failed_completion_never_orders_at_a_changed_total(
        shop: FakeShopify, fake_stripe: FakeStripe, stripe_app: Flask) -> None:
    agent, body, token, intent = _charged_then_completion_failed(shop, fake_stripe, stripe_app)
    paid = total_of(body)
    # what priceOverride does not fix: the tax rate changes, Shopify recalculates the open draft
    shop.set_tax_rate("US-CA", "0.10")
    assert mapping.money(draft_of(shop, body["id"])["totalPriceSet"], "usd") == 2000 + 200 + 500 + 50
    retried = agent.complete(body["id"], token)
    assert retried.status_code == 200, retried.get_json()
    done = retried.get_json()
    assert done["status"] == "not_ready_for_payment"
    assert "order" not in done
    assert done["messages"][-1]["type"] == "error"
    assert "total changed after the payment (now 27.50 USD, 27.19 USD was paid)" in \
        done["messages"][-1]["content"]
    # no Shopify order at a total the buyer was not charged; the payment went back in full
    assert shop.order_list() == []
    assert shop.calls["AcpDraftOrderComplete"] == 1
    [refund] = fake_stripe.refunds.values()
    assert (refund["payment_intent"], refund["amount"], refund["status"]) == (intent["id"], paid, "succeeded")
    assert len(fake_stripe.payment_intents) == 1
    assert stored(stripe_app, body["id"]).payment is not None
    assert stored(stripe_app, body["id"]).payment.capture_status == "refunded"  # type: ignore[union-attr]


def test_draft_completed_elsewhere_is_not_charged(shop: FakeShopify, agent: Agent, app: Flask,
                                                  processor: FakePaymentProcessor) -> None:
    body = ready_session(agent)
    client = adapter_of(app).client
    client.execute("mutation C($id: ID!) { draftOrderComplete(id: $id) { userErrors { message } } }",
                   {"id": draft_of(shop, body["id"])["id"]}, operation_name="C")
    done = agent.complete(body["id"]).get_json()
    assert done["status"] == "not_ready_for_payment"
    assert processor.charges() == []


# --- stock holds --------------------------------------------------------------------------------


def test_concurrent_sessions_race_for_the_last_unit(shop: FakeShopify, app: Flask,
                                                    processor: FakePaymentProcessor) -> None:
    # both sessions see the unit available, then both reserve it: the later
    # reservation finds sellableOnlineQuantity < 0 and backs off
    shop.add_fault("delay", operation="AcpDraftOrderCreate", times=2, seconds=0.2)
    barrier = threading.Barrier(2)
    results: list[dict[str, t.Any]] = []

    def buyer() -> None:
        agent = Agent(app.test_client())
        barrier.wait()
        created = agent.create([{"id": "1002"}], fulfillment_details={"address": ADDRESS}, buyer=BUYER)
        results.append(created.get_json())

    threads = [threading.Thread(target=buyer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert shop.calls["AcpVariants"] == 2
    assert sorted(r["status"] for r in results) == ["not_ready_for_payment", "ready_for_payment"]
    loser = next(r for r in results if r["status"] == "not_ready_for_payment")
    assert codes(loser) == [("error", "out_of_stock", "$.line_items[0].item.id")]
    agent = Agent(app.test_client())
    outcomes = sorted(agent.complete(r["id"]).get_json()["status"] for r in results)
    assert outcomes == ["completed", "not_ready_for_payment"]
    assert len(shop.order_list()) == 1
    assert len(processor.charges()) == 1
    assert shop.variants[1002].inventory == 0


def test_sequential_sessions_and_the_last_unit(shop: FakeShopify, agent: Agent) -> None:
    first = ready_session(agent, [{"id": "1002"}])
    assert shop.sellable(1002) == 0
    second = agent.create([{"id": "1002"}], fulfillment_details={"address": ADDRESS}).get_json()
    assert codes(second) == [("error", "out_of_stock", "$.line_items[0].item.id")]
    assert agent.post(f"/checkout_sessions/{first['id']}/cancel", {}).status_code == 200
    assert shop.sellable(1002) == 1
    retried = update(agent, second["id"], line_items=[{"id": "1002"}]).get_json()
    assert retried["status"] == "ready_for_payment"


def test_last_unit_is_not_sold_twice_when_its_hold_would_lapse_during_a_slow_charge(
        shop: FakeShopify, fake_stripe: FakeStripe, stripe_app: Flask) -> None:
    # one clock for everything: Shopify's reservations, the sessions' expiry, the adapter
    state = stripe_app.extensions["acp"]
    state.service.clock = shop.now
    adapter_of(stripe_app).clock = shop.now
    budget = state.service.charge_time_budget()  # Stripe's worst case (300 s) + placement margin
    assert budget == 360
    first = ready_session(Agent(stripe_app.test_client()), [{"id": "1002"}])  # the last unit
    token = mint(stripe_app, total_of(first))
    # two minutes before the session expires: its reservation (until the expiry) would end mid-charge
    shop.advance_clock(3600 - 120)
    fake_stripe.fail_next("slow", path_prefix="/v1/payment_intents", seconds=5)
    results: dict[str, t.Any] = {}

    def complete_first() -> None:
        results["first"] = Agent(stripe_app.test_client()).complete(first["id"], token).get_json()

    thread = threading.Thread(target=complete_first)
    thread.start()
    deadline = time.monotonic() + 10
    while not fake_stripe.payment_intents and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake_stripe.payment_intents, "the first charge never reached Stripe"
    # Stripe is still answering; meanwhile the session's original expiry passes
    shop.advance_clock(180)
    agent = Agent(stripe_app.test_client())
    second = agent.create([{"id": "1002"}], fulfillment_details={"address": ADDRESS}, buyer=BUYER).get_json()
    if second["status"] == "ready_for_payment":
        results["second"] = agent.complete(second["id"], mint(stripe_app, total_of(second))).get_json()
    assert thread.is_alive(), "the slow charge was answered before the second buyer was done"
    thread.join(30)
    assert not thread.is_alive()

    # the unit is sold once, to the buyer whose hold was extended over the charge
    assert shop.variants[1002].inventory == 0
    [order] = shop.order_list()
    assert results["first"]["status"] == "completed", results["first"]["messages"]
    assert results["first"]["order"]["id"] == order["id"]
    assert second["status"] == "not_ready_for_payment"
    assert codes(second) == [("error", "out_of_stock", "$.line_items[0].item.id")]
    assert "second" not in results
    [intent] = fake_stripe.payment_intents.values()  # the second buyer was never charged
    assert intent["metadata"]["acp_checkout_session_id"] == first["id"]
    assert fake_stripe.refunds == {}


def test_completion_near_expiry_extends_the_reservation_past_the_charge(
        shop: FakeShopify, agent: Agent, app: Flask, processor: FakePaymentProcessor) -> None:
    body = ready_session(agent, [{"id": "1002"}])
    session = stored(app, body["id"])
    draft_id = draft_of(shop, body["id"])["id"]
    # reserved until the end of the hold window (ACP_STOCK_HOLD_TTL), not the session's expiry
    assert session.stock_hold_deadline is not None
    assert session.stock_hold_deadline < session.expires_at
    assert mapping.parse_datetime(shop.draft(draft_id)["reserveInventoryUntil"]) \
        == session.stock_hold_deadline.replace(microsecond=0)
    hold_until = session.expires_at + dt.timedelta(minutes=6, microseconds=1)  # the charge may outlast it
    shop.reset_counters()
    quote = adapter_of(app).prepare_order(session, hold_until=hold_until)
    reported = mapping.parse_datetime(shop.draft(draft_id)["reserveInventoryUntil"])
    assert reported == hold_until.replace(microsecond=0) + dt.timedelta(seconds=1)  # rounded up, not down
    assert quote.stock_held_until == reported
    assert not any(m.blocks_payment for m in quote.messages)
    assert shop.calls == {"AcpDraftOrder": 2, "AcpDraftOrderUpdate": 1}
    # a hold long enough already is left alone
    shop.reset_counters()
    again = adapter_of(app).prepare_order(stored(app, body["id"]), hold_until=hold_until)
    assert again.stock_held_until == reported
    assert shop.calls == {"AcpDraftOrder": 1}
    # through the API: the core charges only on a hold that covers the charge
    done = agent.complete(body["id"]).get_json()
    assert done["status"] == "completed"
    assert_one_paid_order(shop, processor, done, "usd")


def test_lapsed_hold_whose_unit_another_session_took_is_out_of_stock_and_given_back(
        shop: FakeShopify, agent: Agent, app: Flask, processor: FakePaymentProcessor) -> None:
    first = ready_session(agent, [{"id": "1002"}])
    # the merchant drops the first draft's reservation in the admin; a second buyer reserves the unit
    adapter_of(app).client.execute(
        "mutation U($id: ID!, $input: DraftOrderInput!) { draftOrderUpdate(id: $id, input: $input) {"
        " userErrors { message } } }",
        {"id": draft_of(shop, first["id"])["id"], "input": {"reserveInventoryUntil": None}},
        operation_name="U")
    second = ready_session(agent, [{"id": "1002"}])
    assert shop.sellable(1002) == 0
    refused = agent.complete(first["id"]).get_json()
    assert refused["status"] == "not_ready_for_payment"
    assert ("error", "out_of_stock", "$.line_items[0].item.id") in codes(refused)
    assert processor.charges() == []
    # the first draft re-reserved the unit to check it, then gave it back: the holder can buy it
    assert draft_of(shop, first["id"])["reserveInventoryUntil"] is None
    assert shop.sellable(1002) == 0
    done = agent.complete(second["id"]).get_json()
    assert done["status"] == "completed", done["messages"]
    assert_one_paid_order(shop, processor, done, "usd")
    assert shop.variants[1002].inventory == 0


def test_units_taken_by_another_draft_are_not_charged(shop: FakeShopify, agent: Agent, app: Flask,
                                                      processor: FakePaymentProcessor) -> None:
    body = ready_session(agent, [{"id": "1002"}])
    # a merchant's own draft reserves the same last unit (Shopify allows it)
    until = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).isoformat()
    adapter_of(app).client.execute(
        "mutation C($input: DraftOrderInput!) { draftOrderCreate(input: $input) { userErrors { message } } }",
        {"input": {"lineItems": [{"variantId": "gid://shopify/ProductVariant/1002", "quantity": 1}],
                   "reserveInventoryUntil": until}}, operation_name="C")
    assert shop.sellable(1002) == -1
    done = agent.complete(body["id"]).get_json()
    assert done["status"] == "not_ready_for_payment"
    assert ("error", "out_of_stock", "$.line_items[0].item.id") in codes(done)
    assert processor.charges() == []
    assert shop.order_list() == []


def test_cancel_releases_the_stock(shop: FakeShopify, agent: Agent, app: Flask) -> None:
    body = ready_session(agent, [{"id": "1002"}])
    assert shop.sellable(1002) == 0
    shop.reset_counters()
    canceled = agent.post(f"/checkout_sessions/{body['id']}/cancel", {})
    assert canceled.get_json()["status"] == "canceled"
    assert shop.calls == {"AcpDraftOrderDelete": 1}
    assert shop.sellable(1002) == 1
    assert shop.draft_list() == []
    # releasing again (e.g. expiry racing cancel) is harmless
    adapter_of(app).release(stored(app, body["id"]))
    assert shop.calls["AcpDraftOrderDelete"] == 2


def test_cancel_while_shopify_is_down_still_cancels(shop: FakeShopify, agent: Agent,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    body = ready_session(agent, [{"id": "1002"}])
    shop.add_fault("status", operation="AcpDraftOrderDelete", status=503, times=3)
    with caplog.at_level(logging.WARNING, "flask_acp.shopify"):
        canceled = agent.post(f"/checkout_sessions/{body['id']}/cancel", {})
    assert canceled.get_json()["status"] == "canceled"
    assert "could not delete Shopify draft order" in caplog.text
    # the hold lapses with the session's expiry; cleanup_abandoned_drafts deletes the draft later
    assert shop.sellable(1002) == 0
    shop.advance_clock(3601)
    assert shop.sellable(1002) == 1


def test_expiry_releases_the_stock(shop: FakeShopify, agent: Agent, app: Flask) -> None:
    body = ready_session(agent, [{"id": "1002"}])
    service = app.extensions["acp"].service
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
    service.clock = lambda: later
    assert service.sweep().expired == 1
    assert stored(app, body["id"]).status.value == "expired"
    assert shop.sellable(1002) == 1
    assert shop.draft_list() == []


def test_draft_deleted_in_shopify_is_recreated(shop: FakeShopify, agent: Agent, app: Flask) -> None:
    body = ready_session(agent)
    old = draft_of(shop, body["id"])["id"]
    adapter_of(app).client.execute(
        "mutation D($input: DraftOrderDeleteInput!) { draftOrderDelete(input: $input) { deletedId } }",
        {"input": {"id": old}}, operation_name="D")
    updated = update(agent, body["id"], buyer=dict(BUYER, email="new@example.com")).get_json()
    assert updated["status"] == "ready_for_payment"
    draft = draft_of(shop, body["id"])
    assert draft["id"] != old
    assert draft["email"] == "new@example.com"


def test_draft_deleted_before_complete_is_recreated_with_fixed_prices(
        shop: FakeShopify, agent: Agent, app: Flask, processor: FakePaymentProcessor) -> None:
    body = ready_session(agent)
    old = draft_of(shop, body["id"])["id"]
    adapter_of(app).client.execute(
        "mutation D($input: DraftOrderDeleteInput!) { draftOrderDelete(input: $input) { deletedId } }",
        {"input": {"id": old}}, operation_name="D")
    done = agent.complete(body["id"]).get_json()
    assert done["status"] == "completed", done["messages"]
    assert_one_paid_order(shop, processor, done, "usd")
    [draft] = shop.draft_list()
    assert draft["id"] != old
    assert [n["priceOverride"] for n in draft["lineItems"]["nodes"]] == [
        {"amount": "20.0", "currencyCode": "USD"}]


def test_cleanup_abandoned_drafts(shop: FakeShopify, agent: Agent, app: Flask) -> None:
    abandoned = draft_of(shop, ready_session(agent)["id"])["id"]
    completed = ready_session(agent)
    assert agent.complete(completed["id"]).get_json()["status"] == "completed"
    client = adapter_of(app).client
    client.execute(  # a merchant's draft, tagged but without a session id
        "mutation C($input: DraftOrderInput!) { draftOrderCreate(input: $input) { userErrors { message } } }",
        {"input": {"lineItems": [{"variantId": "gid://shopify/ProductVariant/1001", "quantity": 1}],
                   "tags": ["acp"]}}, operation_name="C")
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
    janitor = ShopifyAdapter(ShopifyClient(shop.url, access_token=shop.access_token), clock=lambda: later)
    try:
        assert janitor.cleanup_abandoned_drafts(3 * 3600) == []
        deleted = janitor.cleanup_abandoned_drafts(3600)
    finally:
        janitor.close()
    assert deleted == [abandoned]
    remaining = {d["id"] for d in shop.draft_list()}
    assert abandoned not in remaining
    assert len(remaining) == 2


# --- platform failures -------------------------------------------------------------------------------


def test_throttled_call_succeeds_after_back_off(shop: FakeShopify, agent: Agent) -> None:
    body = agent.create([{"id": "1001"}]).get_json()
    # THROTTLED with 5 points available, 10 requested, 100 restored per second: wait 0.05 s
    shop.add_fault("throttled", operation="AcpDraftOrderUpdate", currently_available=5, restore_rate=100,
                   requested_cost=10)
    updated = update(agent, body["id"], fulfillment_details={"address": ADDRESS})
    assert updated.status_code == 200
    assert updated.get_json()["status"] == "ready_for_payment"
    assert shop.calls["AcpDraftOrderUpdate"] == 2
    assert shop.executed["AcpDraftOrderUpdate"] == 1


def test_real_bucket_exhaustion_is_waited_out(shop: FakeShopify, agent: Agent) -> None:
    shop.reset(store(bucket={"maximum_available": 12, "restore_rate": 100}))
    body = agent.create([{"id": "1001"}]).get_json()  # 1 + 10 points: 1 left
    updated = update(agent, body["id"], fulfillment_details={"address": ADDRESS})
    assert updated.get_json()["status"] == "ready_for_payment"
    assert shop.calls["AcpDraftOrderUpdate"] >= 1


def test_throttled_beyond_the_wait_budget_is_503(shop: FakeShopify, agent: Agent) -> None:
    body = agent.create([{"id": "1001"}]).get_json()
    shop.add_fault("throttled", operation="AcpDeliveryOptions", currently_available=0, restore_rate=1,
                   requested_cost=100)
    response = update(agent, body["id"], fulfillment_details={"address": ADDRESS})
    assert response.status_code == 503
    assert response.get_json()["type"] == "service_unavailable"
    assert response.headers["Retry-After"] == "100"
    assert shop.calls["AcpDeliveryOptions"] == 1


def test_http_429_is_retried_after_retry_after(shop: FakeShopify, agent: Agent) -> None:
    shop.add_fault("status", operation="AcpVariants", status=429, retry_after="0.1")
    assert agent.create([{"id": "1001"}]).status_code == 201
    assert shop.calls["AcpVariants"] == 2


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_503_and_the_session_is_unchanged(shop: FakeShopify, agent: Agent, status: int) -> None:
    body = agent.create([{"id": "1001"}]).get_json()
    shop.add_fault("status", operation="AcpDeliveryOptions", status=status)
    response = update(agent, body["id"], fulfillment_details={"address": ADDRESS})
    assert response.status_code == 503
    assert response.get_json()["type"] == "service_unavailable"
    assert "Retry-After" in response.headers
    again = update(agent, body["id"], fulfillment_details={"address": ADDRESS})
    assert again.get_json()["status"] == "ready_for_payment"


def test_timeout_is_503(shop: FakeShopify, make_app: AppFactory) -> None:
    agent = Agent(make_app(SHOPIFY_TIMEOUT=0.3).test_client())
    body = agent.create([{"id": "1001"}]).get_json()
    shop.add_fault("timeout", operation="AcpDraftOrderUpdate", seconds=0.6)
    response = update(agent, body["id"], fulfillment_details={"address": ADDRESS})
    assert response.status_code == 503
    assert response.get_json()["type"] == "service_unavailable"


def test_create_fails_503_when_shopify_is_down(shop: FakeShopify, agent: Agent) -> None:
    shop.add_fault("status", status=500, times=5)
    response = agent.create([{"id": "1001"}])
    assert response.status_code == 503
    assert response.get_json()["type"] == "service_unavailable"


def test_unsupported_api_version_falls_forward_with_a_warning(shop: FakeShopify, make_app: AppFactory,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    agent = Agent(make_app(SHOPIFY_API_VERSION="2024-01").test_client())
    with caplog.at_level(logging.WARNING, "flask_acp.shopify"):
        assert agent.create([{"id": "1001"}]).status_code == 201
    assert "API version 2025-07 instead of 2024-01" in caplog.text


def test_draft_not_ready_in_time_is_503(shop: FakeShopify, make_app: AppFactory) -> None:
    agent = Agent(make_app(SHOPIFY_READY_TIMEOUT=0.3).test_client())
    shop.ready_delay_reads = 50
    response = agent.create([{"id": "1001"}], fulfillment_details={"address": ADDRESS})
    assert response.status_code == 503
