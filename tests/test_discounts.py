"""Discount codes (ACP discount extension, 2026-01-30+): applied by the platform.

The spec's own discount examples (``examples/discount-extension/``) are checked
against ``schema.discount.json`` and replayed against the embedded catalog
configured as each example's store; then every platform (the catalog, the
fake Shopify, the fake WooCommerce) sells with a percentage, a fixed-amount,
a stacked and an invalid code in USD, JPY and KWD, and the charge is the
platform's total. The validating test client checks every response against
the official schema of its version. No mocks.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import json
import pathlib
import typing as t

import jsonschema
import pytest
import referencing
from flask import Flask

from flask_acp.catalog.store_rules import load_store
from flask_acp.testing import FakePaymentProcessor
from flask_acp.testing.fake_shopify import FakeShopify
from flask_acp.testing.fake_woocommerce import FakeWooCommerce
from tests.conftest import ADDRESS
from tests.conftest import OTHER_KEY
from tests.conftest import Agent
from tests.conftest import build_app
from tests.spec import VERSION
from tests.spec import bundle
from tests.spec import require_spec

BUYER = {"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace"}
EXTENSIONS = {"extensions": ["discount"]}
JP_ADDRESS = {"name": "Hanako Yamada", "line_one": "1-1 Chiyoda", "city": "Tokyo", "state": "JP13",
              "country": "JP", "postal_code": "100-0001"}
KW_ADDRESS = {"name": "Fatima Al-Sabah", "line_one": "Block 3, Street 12", "city": "Kuwait City",
              "state": "KW", "country": "KW", "postal_code": "13001"}
ADDRESSES = {"usd": ADDRESS, "jpy": JP_ADDRESS, "kwd": KW_ADDRESS}
REASONS = ("discount_code_expired", "discount_code_invalid", "discount_code_already_applied",
           "discount_code_combination_disallowed", "discount_code_minimum_not_met",
           "discount_code_user_not_logged_in", "discount_code_user_ineligible",
           "discount_code_usage_limit_reached")


# --- helpers ---------------------------------------------------------------------------------


def totals(session: dict[str, t.Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for entry in session["totals"]:
        out[entry["type"]] = out.get(entry["type"], 0) + entry["amount"]
    return out


def check_discounts(session: dict[str, t.Any]) -> None:
    """The discount extension's invariants on a response: allocations sum to
    each applied amount; line allocations sum to the lines' discounts (the
    ``items_discount`` total), the others to the ``discount`` total; every
    rejected code is mirrored by a warning on its ``$.discounts.codes[i]``;
    the total is the signed sum of the parts."""
    discounts = session["discounts"]
    line_parts: dict[int, int] = {}
    order_part = 0
    for applied in discounts["applied"]:
        allocations = applied.get("allocations", [])
        assert sum(a["amount"] for a in allocations) == applied["amount"], applied
        for allocation in allocations:
            if allocation["path"].startswith("$.line_items["):
                index = int(allocation["path"][len("$.line_items["):-1])
                line_parts[index] = line_parts.get(index, 0) + allocation["amount"]
            else:
                order_part += allocation["amount"]
    for index, line in enumerate(session["line_items"]):
        line_discount = sum(e["amount"] for e in line["totals"] if e["type"] == "discount")
        assert line_parts.get(index, 0) == line_discount, (index, line_parts, line["totals"])
    sums = totals(session)
    assert sums.get("items_discount", 0) == sum(line_parts.values())
    assert sums.get("discount", 0) == order_part
    assert sums["total"] == (sums["subtotal"] - sums.get("discount", 0) + sums.get("fulfillment", 0)
                             + sums["tax"] + sums.get("fee", 0))
    codes = discounts["codes"]
    warnings = {(m["code"], m["param"]) for m in session["messages"] if m["type"] == "warning"
                and m["code"].startswith("discount_code_")}
    for rejected in discounts["rejected"]:
        assert rejected["reason"] in REASONS
        index = next(i for i, c in enumerate(codes) if c == rejected["code"])
        assert (rejected["reason"], f"$.discounts.codes[{index}]") in warnings


# --- the spec's examples ------------------------------------------------------------------------


EXAMPLES = ("automatic-discount", "order-level-discount", "percentage-discount-with-allocations",
            "rejected-discount-code", "stacked-discounts")


def discount_example(name: str) -> dict[str, t.Any]:
    path = require_spec() / VERSION / "examples" / "discount-extension" / f"{name}.json"
    return t.cast(dict[str, t.Any], json.loads(path.read_text()))


@functools.cache
def discount_validator(definition: str) -> jsonschema.Draft202012Validator:
    folder = require_spec() / VERSION / "json-schema"
    schema = json.loads((folder / "schema.discount.json").read_text())
    checkout = bundle(VERSION)
    registry = referencing.Registry().with_resources([
        (schema["$id"], referencing.Resource.from_contents(schema)),
        ("https://agentic-commerce-protocol.com/schemas/schema.agentic_checkout.json",
         referencing.Resource.from_contents(checkout,
                                            default_specification=referencing.jsonschema.DRAFT202012)),
    ])
    return jsonschema.Draft202012Validator({"$ref": f"{schema['$id']}#/$defs/{definition}"},
                                           registry=registry,
                                           format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def validate_discount(body: t.Any, definition: str) -> None:
    errors = list(discount_validator(definition).iter_errors(body))
    assert not errors, f"not a valid {definition}: {errors[0].message}"


#: each example's store: the feed prices, the coupons and the shipping method it implies
STORES: dict[str, dict[str, t.Any]] = {
    "automatic-discount": {
        "prices": {"item_123": 1899}, "shipping": ("shipping_standard", 599),
        "coupons": [{"id": "coupon_freeship50", "name": "Free shipping on orders over $50",
                     "amount_off": 599, "applies_to": "shipping", "minimum_subtotal": 5000}]},
    "order-level-discount": {
        "prices": {"item_123": 5000}, "shipping": ("shipping_standard", 599),
        "coupons": [{"id": "coupon_xyz", "name": "$10 Off Your Order", "code": "SAVE10",
                     "amount_off": 1000}]},
    "percentage-discount-with-allocations": {
        "prices": {"item_shirt": 2500, "item_pants": 6000}, "shipping": ("shipping_standard", 0),
        "coupons": [{"id": "coupon_summer", "name": "Summer Sale 20% Off", "code": "SUMMER20",
                     "percent_off": "20"}]},
    "rejected-discount-code": {
        "prices": {"item_123": 3999}, "shipping": ("shipping_standard", 499),
        "coupons": [{"id": "coupon_save10", "name": "$10 Off Your Order", "code": "SAVE10",
                     "amount_off": 1000},
                    {"id": "coupon_expired50", "name": "50% Off", "code": "EXPIRED50", "percent_off": "50",
                     "ends_at": "2025-12-01T00:00:00Z"}]},
    "stacked-discounts": {
        "prices": {"item_laptop": 199900, "item_mouse": 9900}, "shipping": ("shipping_express", 1999),
        "coupons": [{"id": "coupon_summer20", "name": "Summer Sale 20% Off", "code": "SUMMER20",
                     "percent_off": "20", "priority": 1},
                    {"id": "coupon_loyalty5", "name": "$5 Loyalty Reward", "code": "LOYALTY5",
                     "amount_off": 500, "priority": 2}]},
}


def write_store(directory: pathlib.Path, currency: str, prices: dict[str, int],
                coupons: list[dict[str, t.Any]],
                shipping: tuple[str, int] = ("standard", 0)) -> dict[str, str]:
    """Catalog files: ``prices`` (variant -> minor units), no tax, one shipping method everywhere."""
    directory.mkdir(parents=True, exist_ok=True)
    feed = {"products": [{"id": "prod_x", "title": "X", "variants": [
        {"id": vid, "title": f"Item {vid}", "price": {"amount": amount, "currency": currency.upper()}}
        for vid, amount in prices.items()]}]}
    store = {"currency": currency, "order_url_template": "https://shop.test/orders/{order_number}",
             "default_stock": 100, "tax": [], "coupons": coupons,
             "shipping_methods": [{"id": shipping[0], "title": "Standard", "amount": shipping[1],
                                   "min_days": 2, "max_days": 4, "countries": ["*"]}]}
    (directory / "feed.json").write_text(json.dumps(feed))
    (directory / "store.json").write_text(json.dumps(store))
    return {"ACP_CATALOG_FILE": str(directory / "feed.json"), "ACP_STORE_FILE": str(directory / "store.json")}


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_is_valid_against_the_discount_schema(name: str) -> None:
    example = discount_example(name)
    if "discounts" in example["request"]:
        validate_discount(example["request"]["discounts"], "discounts_request")
    validate_discount(example["response"]["discounts"], "discounts_response")
    for entry in example["response"]["capabilities"]["extensions"]:
        assert entry["name"] == "discount"
    with pytest.raises(AssertionError, match="discounts_response"):
        validate_discount({**example["response"]["discounts"], "total": 1}, "discounts_response")


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_replayed(tmp_path: pathlib.Path, name: str) -> None:
    """The example's request (plus the capabilities and address a create
    needs) against a catalog set up as its store: the same discounts
    applied and rejected, the same amounts and allocations, and the total the
    example shows less its tax (the store has none), charged as shown."""
    example = discount_example(name)
    store = STORES[name]
    processor = FakePaymentProcessor(str(tmp_path / "ledger.sqlite3"))
    app = build_app(tmp_path, payment_processor=processor,
                    **write_store(tmp_path / "shop", "usd", store["prices"], store["coupons"],
                                  store["shipping"]))
    agent = Agent(app.test_client())
    request = {**example["request"], "capabilities": EXTENSIONS, "buyer": BUYER,
               "fulfillment_details": {"address": ADDRESS}}
    response = agent.post("/checkout_sessions", request)
    assert response.status_code == 201, response.get_json()
    session = response.get_json()
    check_discounts(session)
    validate_discount(session["discounts"], "discounts_response")
    want = example["response"]
    assert session["status"] == "ready_for_payment"
    assert session["capabilities"]["extensions"] == [
        {"name": "discount", "extends": want["capabilities"]["extensions"][0]["extends"]}]
    assert session["discounts"]["codes"] == want["discounts"]["codes"]
    got_applied = session["discounts"]["applied"]
    assert [(a.get("code"), a["amount"], a["automatic"], a["coupon"]) for a in got_applied] == [
        (a.get("code"), a["amount"], a.get("automatic", False),
         {k: v for k, v in a["coupon"].items() if k != "duration"}) for a in want["discounts"]["applied"]]
    for got, expected in zip(got_applied, want["discounts"]["applied"], strict=True):
        if "allocations" in expected:
            assert got["allocations"] == expected["allocations"]
        if "priority" in expected:
            assert got["priority"] == expected["priority"]
    assert [(r["code"], r["reason"]) for r in session["discounts"].get("rejected", [])] == [
        (r["code"], r["reason"]) for r in want["discounts"].get("rejected", [])]
    assert [(m["type"], m.get("code"), m.get("param")) for m in session["messages"]] == [
        (m["type"], m.get("code"), m.get("param")) for m in want["messages"] if m["type"] != "info"]
    sums, wanted = totals(session), totals(want)
    assert sums["total"] == wanted["total"] - wanted.get("tax", 0)
    if name == "stacked-discounts":  # its discounts are all on the lines, as ours
        assert sums["subtotal"] == wanted["subtotal"]
    done = agent.complete(session["id"])
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["status"] == "completed", done.get_json()["messages"]
    assert [c["amount"] for c in processor.charges()] == [sums["total"]]


# --- purchases on every platform -------------------------------------------------------------

#: (currency, unit prices of items "a" and "b") - the same figures in every currency, so
#: every total ends in 0 (a KWD amount Stripe charges must)
CURRENCIES = ("usd", "jpy", "kwd")
PRICES = {"a": 2500, "b": 6000}
#: code -> the coupon each platform is seeded with
COUPONS: dict[str, dict[str, t.Any]] = {
    "SAVE20": {"name": "20% off", "percent_off": "20"},
    "TENOFF": {"name": "10 off", "amount_off": 1000},
}
#: case -> (codes sent, codes applied, (code, reason) rejected, the items' discount)
CASES: dict[str, tuple[list[str], list[str], list[tuple[str, str]], int]] = {
    "percentage": (["save20"], ["save20"], [], 1700),  # 20 % of 2500 and 6000
    "fixed": (["TENOFF"], ["TENOFF"], [], 1000),
    "stacked": (["SAVE20", "TENOFF"], ["SAVE20", "TENOFF"], [], 2700),  # 20 %, then 1000 of what is left
    "invalid": (["NOPE"], [], [("NOPE", "discount_code_invalid")], 0),
}


def catalog_coupons(currency: str) -> list[dict[str, t.Any]]:
    return [{"id": f"coupon_{code.lower()}", "code": code, **rule} for code, rule in COUPONS.items()]


def buy(agent: Agent, processor: FakePaymentProcessor, currency: str, case: str,
        items: list[dict[str, t.Any]]) -> dict[str, t.Any]:
    """Create with the case's codes, complete; check what was applied and charged."""
    sent, applied, rejected, discount = CASES[case]
    response = agent.create(items, currency=currency, capabilities=EXTENSIONS, buyer=BUYER,
                            fulfillment_details={"name": "Buyer", "address": ADDRESSES[currency]},
                            discounts={"codes": sent})
    assert response.status_code == 201, response.get_json()
    session = response.get_json()
    assert session["status"] == "ready_for_payment", session["messages"]
    check_discounts(session)
    assert session["discounts"]["codes"] == sent
    assert [a["code"] for a in session["discounts"]["applied"] if not a["automatic"]] == applied
    assert [(r["code"], r["reason"]) for r in session["discounts"]["rejected"]] == rejected
    sums = totals(session)
    assert sums["items_base_amount"] == 8500
    assert sums.get("items_discount", 0) + sums.get("discount", 0) == discount
    done = agent.complete(session["id"])
    assert done.status_code == 200, done.get_json()
    body = done.get_json()
    assert body["status"] == "completed", body["messages"]
    assert [(c["amount"], c["currency"]) for c in processor.charges()] == [(sums["total"], currency)]
    return t.cast(dict[str, t.Any], body)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("currency", CURRENCIES)
def test_catalog_purchase(tmp_path: pathlib.Path, currency: str, case: str) -> None:
    processor = FakePaymentProcessor(str(tmp_path / "ledger.sqlite3"))
    app = build_app(tmp_path, payment_processor=processor,
                    **write_store(tmp_path / "shop", currency, PRICES, catalog_coupons(currency)))
    buy(Agent(app.test_client()), processor, currency, case, [{"id": "a"}, {"id": "b"}])


def decimal_string(amount: int, currency: str) -> str:
    """Minor units as a platform's decimal string (2500 -> "25.00" USD, "2500" JPY, "2.500" KWD)."""
    exponent = {"usd": 2, "jpy": 0, "kwd": 3}[currency]
    return str(decimal.Decimal(amount).scaleb(-exponent))


def woo_seed(currency: str) -> dict[str, t.Any]:
    """A WooCommerce store selling "1" and "2" at :data:`PRICES`, no tax, free shipping,
    with the coupons of :data:`COUPONS` (``percent`` and ``fixed_cart``)."""
    def price(amount: int) -> str:
        return decimal_string(amount, currency)
    return {
        "settings": {"currency": currency.upper(), "currency_symbol": currency.upper(),
                     "price_decimals": {"usd": 2, "jpy": 0, "kwd": 3}[currency], "prices_include_tax": False,
                     "base_location": {"country": "US", "state": "CA"}},
        "products": [{"id": 1, "name": "A", "sku": "A", "regular_price": price(PRICES["a"])},
                     {"id": 2, "name": "B", "sku": "B", "regular_price": price(PRICES["b"])}],
        "tax_rates": [],
        "shipping_zones": [],
        "rest_of_world_methods": [{"instance_id": 1, "method_id": "flat_rate", "title": "Courier",
                                   "cost": "0", "tax_status": "none"}],
        "coupons": [{"code": "SAVE20", "discount_type": "percent", "amount": "20"},
                    {"code": "TENOFF", "discount_type": "fixed_cart", "amount": price(1000)},
                    {"code": "BIG", "discount_type": "fixed_cart", "amount": price(100),
                     "minimum_amount": price(10000)}],
        "next_order_id": 500,
    }


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("currency", CURRENCIES)
def test_woocommerce_purchase(tmp_path: pathlib.Path, currency: str, case: str) -> None:
    with FakeWooCommerce(woo_seed(currency)) as woo:
        processor = FakePaymentProcessor(str(tmp_path / "ledger.sqlite3"))
        app = build_app(tmp_path, payment_processor=processor, **woo.config())
        try:
            done = buy(Agent(app.test_client()), processor, currency, case, [{"id": "1"}, {"id": "2"}])
            order = woo.order(int(done["order"]["id"]))
            assert sorted(c["code"].casefold() for c in order["coupon_lines"]) == sorted(
                c.casefold() for c in CASES[case][1])
            assert order["total"] == decimal_string(processor.charges()[0]["amount"], currency)
        finally:
            app.extensions["acp"].adapter.close()
        assert woo.server_errors == []


def test_woocommerce_codes_change_and_refusals(tmp_path: pathlib.Path) -> None:
    """Codes replaced on update are removed from the cart; WooCommerce's refusals
    are rejections with its words; a minimum reached later lets the code apply."""
    with FakeWooCommerce(woo_seed("usd")) as woo:
        processor = FakePaymentProcessor(str(tmp_path / "ledger.sqlite3"))
        app = build_app(tmp_path, payment_processor=processor, **woo.config())
        agent = Agent(app.test_client())
        try:
            response = agent.create([{"id": "1"}, {"id": "2"}], capabilities=EXTENSIONS, buyer=BUYER,
                                    fulfillment_details={"address": ADDRESS},
                                    discounts={"codes": ["save20", "BIG", "NOPE"]})
            session = response.get_json()
            check_discounts(session)
            assert [a["code"] for a in session["discounts"]["applied"]] == ["save20"]
            assert rejected(session) == [("BIG", "discount_code_minimum_not_met"),
                                         ("NOPE", "discount_code_invalid")]
            assert "does not exist" in session["discounts"]["rejected"][1]["message"]
            session = update(agent, session["id"], line_items=[{"id": "1"}, {"id": "2", "quantity": 2}],
                             discounts={"codes": ["BIG"]})
            check_discounts(session)
            assert [a["code"] for a in session["discounts"]["applied"]] == ["BIG"]
            assert totals(session)["total"] == 14500 - 100
            done = agent.complete(session["id"]).get_json()
            assert done["status"] == "completed"
            order = woo.order(int(done["order"]["id"]))
            assert [c["code"] for c in order["coupon_lines"]] == ["BIG"]
        finally:
            app.extensions["acp"].adapter.close()


def shopify_seed(currency: str, *, combines: bool = True) -> dict[str, t.Any]:
    """A Shopify shop in ``currency`` selling variants 1 and 2 at :data:`PRICES`,
    no tax, free shipping everywhere, with the discount codes of :data:`COUPONS`."""
    def price(amount: int) -> str:
        return decimal_string(amount, currency)
    return {
        "shop": {"currency": currency.upper()},
        "variants": [{"id": 1, "product_title": "A", "price": price(PRICES["a"]), "inventory": 50},
                     {"id": 2, "product_title": "B", "price": price(PRICES["b"]), "inventory": 50}],
        "shipping_rates": {"*": [{"title": "Free", "code": "FREE", "price": "0"}]},
        "discount_codes": [
            {"code": "SAVE20", "title": "20% off", "percentage": "0.2", "combines": combines},
            {"code": "TENOFF", "title": "10 off", "amount": price(1000), "combines": combines},
            {"code": "OLD", "title": "Old", "percentage": "0.5", "ends_at": "2020-01-01T00:00:00Z"},
            {"code": "BIG", "title": "Big spender", "amount": price(100), "minimum_subtotal": price(10000)},
        ],
    }


def shopify_app(tmp_path: pathlib.Path, shop: FakeShopify, processor: FakePaymentProcessor) -> Flask:
    return build_app(tmp_path, payment_processor=processor, ACP_ADAPTER="shopify", SHOPIFY_SHOP_URL=shop.url,
                     SHOPIFY_ACCESS_TOKEN=shop.access_token, SHOPIFY_TIMEOUT=2, SHOPIFY_READY_TIMEOUT=2)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("currency", CURRENCIES)
def test_shopify_purchase(tmp_path: pathlib.Path, currency: str, case: str) -> None:
    with FakeShopify(shopify_seed(currency)) as shop:
        processor = FakePaymentProcessor(str(tmp_path / "ledger.sqlite3"))
        app = shopify_app(tmp_path, shop, processor)
        try:
            done = buy(Agent(app.test_client()), processor, currency, case, [{"id": "1"}, {"id": "2"}])
            (order,) = shop.orders.values()
            total = order.money["totalPriceSet"]["presentmentMoney"]
            charged = decimal.Decimal(decimal_string(processor.charges()[0]["amount"], currency))
            assert (decimal.Decimal(total["amount"]), total["currencyCode"]) == (charged, currency.upper())
            assert done["order"]["id"]
        finally:
            app.extensions["acp"].adapter.close()


def test_shopify_rejections_and_stacking_rules(tmp_path: pathlib.Path) -> None:
    """Shopify skips what it cannot apply and warns: each is a rejection with
    Shopify's words; codes that do not combine are not stacked."""
    with FakeShopify(shopify_seed("usd", combines=False)) as shop:
        processor = FakePaymentProcessor(str(tmp_path / "ledger.sqlite3"))
        app = shopify_app(tmp_path, shop, processor)
        agent = Agent(app.test_client())
        try:
            session = create(agent, ["save20", "TENOFF", "OLD", "BIG", "NOPE"],
                             items=[{"id": "1"}, {"id": "2"}])
            check_discounts(session)
            assert [a["code"] for a in session["discounts"]["applied"]] == ["save20"]
            assert rejected(session) == [("TENOFF", "discount_code_combination_disallowed"),
                                         ("OLD", "discount_code_expired"),
                                         ("BIG", "discount_code_minimum_not_met"),
                                         ("NOPE", "discount_code_invalid")]
            assert session["discounts"]["rejected"][1]["message"] == "Discount code OLD has expired."
            assert totals(session)["total"] == 6800
            session = update(agent, session["id"], discounts={"codes": []})
            assert totals(session)["total"] == 8500
            assert shop.draft(1)["discountCodes"] == []  # type: ignore[index]
        finally:
            app.extensions["acp"].adapter.close()


def test_woocommerce_code_expired_before_complete_is_not_charged(tmp_path: pathlib.Path) -> None:
    seed = woo_seed("usd")
    with FakeWooCommerce(seed) as woo:
        seed["coupons"].append({"code": "SOON", "discount_type": "percent", "amount": "50",
                                "date_expires": woo.now() + 60})
        woo.reset(seed)
        processor = FakePaymentProcessor(str(tmp_path / "ledger.sqlite3"))
        app = build_app(tmp_path, payment_processor=processor, **woo.config())
        agent = Agent(app.test_client())
        try:
            session = create(agent, ["SOON"], items=[{"id": "1"}, {"id": "2"}])
            assert totals(session)["total"] == 4250
            woo.advance_clock(120)
            body = agent.complete(session["id"]).get_json()
            assert body["status"] == "ready_for_payment"
            assert processor.charges() == []
            assert ("price_change", "$.totals") in [(m.get("code"), m.get("param")) for m in body["messages"]]
            assert rejected(body) == [("SOON", "discount_code_expired")]
            assert totals(body)["total"] == 8500
            again = update(agent, session["id"], buyer=BUYER)  # still rejected, for the same reason
            assert rejected(again) == [("SOON", "discount_code_expired")]
            assert agent.complete(session["id"]).get_json()["status"] == "completed"
            assert [c["amount"] for c in processor.charges()] == [8500]
        finally:
            app.extensions["acp"].adapter.close()


def test_shopify_code_expired_before_complete_is_not_charged(tmp_path: pathlib.Path) -> None:
    seed = shopify_seed("usd")
    with FakeShopify(seed) as shop:
        soon = (shop.now() + dt.timedelta(seconds=60)).isoformat()
        seed["discount_codes"].append({"code": "SOON", "title": "Half off", "percentage": "0.5",
                                       "ends_at": soon})
        shop.reset(seed)
        processor = FakePaymentProcessor(str(tmp_path / "ledger.sqlite3"))
        app = shopify_app(tmp_path, shop, processor)
        agent = Agent(app.test_client())
        try:
            session = create(agent, ["SOON"], items=[{"id": "1"}, {"id": "2"}])
            assert totals(session)["total"] == 4250
            shop.advance_clock(120)
            body = agent.complete(session["id"]).get_json()
            assert body["status"] == "ready_for_payment"
            assert processor.charges() == []
            assert ("price_change", "$.totals") in [(m.get("code"), m.get("param")) for m in body["messages"]]
            assert rejected(body) == [("SOON", "discount_code_expired")]
            assert totals(body)["total"] == 8500
            assert agent.complete(session["id"]).get_json()["status"] == "completed"
            assert [c["amount"] for c in processor.charges()] == [8500]
        finally:
            app.extensions["acp"].adapter.close()


# --- the catalog's rules, negotiation, rate limit ------------------------------------------------


@pytest.fixture
def catalog(tmp_path: pathlib.Path) -> tuple[Flask, FakePaymentProcessor]:
    now = dt.datetime.now(dt.timezone.utc)
    coupons = catalog_coupons("usd") + [
        {"id": "c_old", "code": "OLD", "name": "Old", "percent_off": "5",
         "ends_at": (now - dt.timedelta(days=1)).isoformat()},
        {"id": "c_soon", "code": "SOON", "name": "Soon", "percent_off": "5",
         "starts_at": (now + dt.timedelta(days=1)).isoformat()},
        {"id": "c_big", "code": "BIG", "name": "Big spender", "amount_off": 100, "minimum_subtotal": 10000},
        {"id": "c_solo", "code": "SOLO", "name": "Alone", "percent_off": "50", "combinable": False},
        {"id": "c_b", "code": "BONLY", "name": "B only", "percent_off": "10", "items": ["b"]},
    ]
    processor = FakePaymentProcessor(str(tmp_path / "ledger.sqlite3"))
    app = build_app(tmp_path, payment_processor=processor,
                    **write_store(tmp_path / "shop", "usd", PRICES, coupons))
    return app, processor


def create(agent: Agent, codes: list[str], capabilities: dict[str, t.Any] = EXTENSIONS,
           items: list[dict[str, t.Any]] | None = None) -> dict[str, t.Any]:
    response = agent.create(items or [{"id": "a"}, {"id": "b"}], capabilities=capabilities, buyer=BUYER,
                            fulfillment_details={"address": ADDRESS}, discounts={"codes": codes})
    assert response.status_code == 201, response.get_json()
    return t.cast(dict[str, t.Any], response.get_json())


def update(agent: Agent, sid: str, **body: t.Any) -> dict[str, t.Any]:
    response = agent.post(f"/checkout_sessions/{sid}", body)
    assert response.status_code == 200, response.get_json()
    return t.cast(dict[str, t.Any], response.get_json())


def rejected(session: dict[str, t.Any]) -> list[tuple[str, str]]:
    return [(r["code"], r["reason"]) for r in session["discounts"]["rejected"]]


def test_catalog_rejection_reasons(catalog: tuple[Flask, FakePaymentProcessor]) -> None:
    agent = Agent(catalog[0].test_client())
    session = create(agent, ["OLD", "SOON", "BIG", "save20", "SAVE20", "SOLO"])
    check_discounts(session)
    assert rejected(session) == [("OLD", "discount_code_expired"), ("SOON", "discount_code_invalid"),
                                 ("BIG", "discount_code_minimum_not_met"),
                                 ("SAVE20", "discount_code_already_applied"),
                                 ("SOLO", "discount_code_combination_disallowed")]
    assert [a["code"] for a in session["discounts"]["applied"]] == ["save20"]
    warnings = [(m["code"], m["param"], m["resolution"]) for m in session["messages"]]
    assert warnings == [("discount_code_expired", "$.discounts.codes[0]", "recoverable"),
                        ("discount_code_invalid", "$.discounts.codes[1]", "recoverable"),
                        ("discount_code_minimum_not_met", "$.discounts.codes[2]", "recoverable"),
                        ("discount_code_already_applied", "$.discounts.codes[4]", "recoverable"),
                        ("discount_code_combination_disallowed", "$.discounts.codes[5]", "recoverable")]
    assert session["status"] == "ready_for_payment"  # rejected codes are warnings, not errors
    # a minimum reached later: the same code applies on the next update
    session = update(agent, session["id"], line_items=[{"id": "a"}, {"id": "b", "quantity": 2}],
                     discounts={"codes": ["BIG"]})
    assert [a["code"] for a in session["discounts"]["applied"]] == ["BIG"]
    assert rejected(session) == []
    assert session["messages"] == []


def test_catalog_item_restricted_code(catalog: tuple[Flask, FakePaymentProcessor]) -> None:
    agent = Agent(catalog[0].test_client())
    session = create(agent, ["BONLY"])
    check_discounts(session)
    (applied,) = session["discounts"]["applied"]
    assert applied["allocations"] == [{"path": "$.line_items[1]", "amount": 600}]
    assert applied["coupon"] == {"id": "c_b", "name": "B only", "percent_off": 10}
    assert rejected(create(agent, ["BONLY"], items=[{"id": "a"}])) == [("BONLY", "discount_code_invalid")]


def test_codes_replace_clear_and_coupons_alias(catalog: tuple[Flask, FakePaymentProcessor]) -> None:
    agent = Agent(catalog[0].test_client())
    session = create(agent, ["SAVE20"])
    sid = session["id"]
    assert totals(session)["total"] == 6800
    session = update(agent, sid, buyer=BUYER)  # codes not sent: kept
    assert session["discounts"]["codes"] == ["SAVE20"]
    assert totals(session)["total"] == 6800
    session = update(agent, sid, coupons=["TENOFF"])  # the deprecated alias replaces them
    assert session["discounts"]["codes"] == ["TENOFF"]
    assert totals(session)["total"] == 7500
    session = update(agent, sid, coupons=["TENOFF"], discounts={"codes": ["SAVE20"]})  # discounts wins
    assert session["discounts"]["codes"] == ["SAVE20"]
    session = update(agent, sid, discounts={"codes": []})  # [] clears
    assert session["discounts"] == {"codes": [], "applied": [], "rejected": []}
    assert totals(session)["total"] == 8500
    bad = agent.post(f"/checkout_sessions/{sid}", {"discounts": {"codes": [""]}})
    assert bad.status_code == 400
    assert bad.get_json()["param"] == "$.discounts.codes[0]"


def test_codes_without_the_extension_are_not_applied(catalog: tuple[Flask, FakePaymentProcessor]) -> None:
    agent = Agent(catalog[0].test_client())
    session = create(agent, ["SAVE20"], capabilities={})
    assert "discounts" not in session
    assert "extensions" not in session["capabilities"]
    assert totals(session)["total"] == 8500
    assert [(m["type"], m["param"]) for m in session["messages"]] == [("info", "$.discounts.codes")]
    dated = create(agent, ["SAVE20"], capabilities={"extensions": ["discount@2026-01-27", "other"]})
    assert totals(dated)["total"] == 6800


def test_older_version_has_no_discounts(catalog: tuple[Flask, FakePaymentProcessor]) -> None:
    agent = Agent(catalog[0].test_client())
    response = agent.post("/checkout_sessions", {"items": [{"id": "a", "quantity": 1}],
                                                 "fulfillment_address": ADDRESS, "coupons": ["SAVE20"]},
                          **{"API-Version": "2025-12-12"})
    assert response.status_code == 201, response.get_json()
    assert "discounts" not in response.get_json()


def test_2026_01_30_applies_codes(catalog: tuple[Flask, FakePaymentProcessor]) -> None:
    agent = Agent(catalog[0].test_client())
    response = agent.post("/checkout_sessions", {
        "line_items": [{"id": "a"}], "currency": "usd", "capabilities": EXTENSIONS,
        "fulfillment_details": {"address": ADDRESS}, "discounts": {"codes": ["SAVE20", "NOPE"]}},
        **{"API-Version": "2026-01-30"})
    assert response.status_code == 201, response.get_json()
    session = response.get_json()
    check_discounts(session)
    assert totals(session)["total"] == 2000
    assert rejected(session) == [("NOPE", "discount_code_invalid")]


def test_discovery_lists_the_discount_extension(tmp_path: pathlib.Path) -> None:
    """The seller supports the discount extension on every session: discovery
    says so (``DiscoveryCapabilities.extensions``, "Extensions the seller supports")."""
    body = build_app(tmp_path).test_client().get("/.well-known/acp.json").get_json()
    assert {"name": "discount"} in body["capabilities"]["extensions"]


def test_code_guessing_is_paused(catalog: tuple[Flask, FakePaymentProcessor]) -> None:
    """``ACP_DISCOUNT_CODE_REJECTION_LIMIT`` (5) rejected codes: new codes are
    no longer tried on this session; codes it sent before still work."""
    agent = Agent(catalog[0].test_client())
    session = create(agent, ["SAVE20"])
    sid = session["id"]
    for guess in ("G1", "G2", "G3", "G4", "G5"):
        session = update(agent, sid, discounts={"codes": ["SAVE20", guess]})
        assert rejected(session) == [(guess, "discount_code_invalid")]
    session = update(agent, sid, discounts={"codes": ["SAVE20", "TENOFF"]})  # valid, but paused
    assert rejected(session) == [("TENOFF", "discount_code_invalid")]
    assert "Too many discount codes" in session["discounts"]["rejected"][0]["message"]
    assert [a["code"] for a in session["discounts"]["applied"]] == ["SAVE20"]
    # the same guess again is not a new guess: rejected as before, not counted
    session = update(agent, sid, discounts={"codes": ["TENOFF"]})
    assert "Too many discount codes" in session["discounts"]["rejected"][0]["message"]
    # another session of the same agent is not paused
    assert [a["code"] for a in create(agent, ["TENOFF"])["discounts"]["applied"]] == ["TENOFF"]


def test_code_guessing_is_bounded_per_agent(tmp_path: pathlib.Path) -> None:
    """``ACP_RATE_LIMIT_DISCOUNT_REJECTIONS_PER_AGENT``: an agent spreading its
    guesses over new sessions is paused on all of them, without the platform
    being asked; a code a session had applied keeps applying; another agent
    is not paused."""
    app = build_app(tmp_path, ACP_RATE_LIMIT_DISCOUNT_REJECTIONS_PER_AGENT="3/hour",
                    **write_store(tmp_path / "shop", "usd", PRICES, catalog_coupons("usd")))
    agent = Agent(app.test_client())
    kept = create(agent, ["SAVE20"])
    for guess in ("G1", "G2", "G3"):  # one guess per session: the session's own limit (5) never trips
        assert rejected(create(agent, [guess])) == [(guess, "discount_code_invalid")]
    fresh = create(agent, ["TENOFF"])  # a valid code, but the agent is paused
    assert rejected(fresh) == [("TENOFF", "discount_code_invalid")]
    assert "this agent's checkouts" in fresh["discounts"]["rejected"][0]["message"]
    assert fresh["discounts"]["applied"] == []
    assert totals(fresh)["total"] == 8500
    # the session that had SAVE20 applied still has it on its next update
    session = update(agent, kept["id"], buyer=BUYER)
    assert [a["code"] for a in session["discounts"]["applied"]] == ["SAVE20"]
    # sent again on the paused session, the code is still not tried (and not counted)
    assert rejected(update(agent, fresh["id"], buyer=BUYER)) == [("TENOFF", "discount_code_invalid")]
    other = Agent(app.test_client(), key=OTHER_KEY)
    assert [a["code"] for a in create(other, ["TENOFF"])["discounts"]["applied"]] == ["TENOFF"]


def test_code_guessing_limit_holds_within_one_request(catalog: tuple[Flask, FakePaymentProcessor]) -> None:
    """One request carrying many new codes tries no more of them than the
    session has rejections left: 19 guesses then a valid code in one update
    must not reach the platform past the 5th."""
    agent = Agent(catalog[0].test_client())
    guesses = [f"G{i}" for i in range(1, 20)]
    session = create(agent, [*guesses, "TENOFF"])
    check_discounts(session)
    assert session["discounts"]["applied"] == []  # TENOFF was not tried
    reasons = session["discounts"]["rejected"]
    assert [r["code"] for r in reasons] == [*guesses, "TENOFF"]
    assert all(r["reason"] == "discount_code_invalid" for r in reasons)
    tried = [f"The discount code 'G{i}' is not valid." for i in range(1, 6)]
    assert [r["message"] for r in reasons[:5]] == tried
    assert all("was not tried" in r["message"] for r in reasons[5:])
    # the session is now paused: TENOFF (never tried) is still new, so it waits
    session = update(agent, session["id"], discounts={"codes": ["TENOFF"]})
    assert "Too many discount codes" in session["discounts"]["rejected"][0]["message"]
    # below the limit, codes sent together are all tried
    session = create(agent, ["NOPE", "SAVE20"])
    assert [a["code"] for a in session["discounts"]["applied"]] == ["SAVE20"]


def test_code_that_expired_before_complete_is_not_charged(catalog: tuple[Flask, FakePaymentProcessor],
                                                          tmp_path: pathlib.Path) -> None:
    """A code valid at update and expired at complete: the re-pricing before the
    charge finds a higher total; nothing is charged, the agent is told."""
    app, processor = catalog
    agent = Agent(app.test_client())
    session = create(agent, ["SAVE20"])
    store_file = pathlib.Path(app.config["ACP_STORE_FILE"])
    store = json.loads(store_file.read_text())
    for coupon in store["coupons"]:
        if coupon["code"] == "SAVE20":
            coupon["ends_at"] = "2020-01-01T00:00:00Z"
    adapter = app.extensions["acp"].adapter
    store_file.write_text(json.dumps(store))
    adapter.store = load_store(store_file)
    done = agent.complete(session["id"])
    assert done.status_code == 200
    body = done.get_json()
    assert body["status"] == "ready_for_payment"
    assert processor.charges() == []
    assert ("price_change", "$.totals") in [(m.get("code"), m.get("param")) for m in body["messages"]]
    assert rejected(body) == [("SAVE20", "discount_code_expired")]
    assert totals(body)["total"] == 8500


@pytest.mark.parametrize(("coupon", "problem"), [
    ({"id": "c", "name": "C", "code": "X", "percent_off": 20.0}, 'not the float 20.0'),
    ({"id": "c", "name": "C", "code": "X", "percent_off": "120"}, "at most 100"),
    ({"id": "c", "name": "C", "code": "X", "percent_off": "20", "amount_off": 100}, "exactly one"),
    ({"id": "c", "name": "C", "code": "X"}, "exactly one"),
    ({"id": "c", "name": "C", "code": "X", "amount_off": 1.5}, "not the float 1.5"),
    ({"id": "c", "name": "C", "code": "X", "amount_off": 100, "ends_at": "2026-01-01T00:00:00"}, "ends_at"),
    ({"id": "c", "name": "C", "code": "X", "amount_off": 100, "applies_to": "tip"}, "applies_to"),
])
def test_store_file_coupon_errors(tmp_path: pathlib.Path, coupon: dict[str, t.Any], problem: str) -> None:
    files = write_store(tmp_path, "usd", PRICES, [coupon])
    with pytest.raises(ValueError, match="coupons") as caught:
        load_store(files["ACP_STORE_FILE"])
    assert problem in str(caught.value)


def test_store_file_duplicate_codes(tmp_path: pathlib.Path) -> None:
    coupons = [{"id": "a", "name": "A", "code": "SAVE", "percent_off": "5"},
               {"id": "b", "name": "B", "code": "save", "percent_off": "9"}]
    files = write_store(tmp_path, "usd", PRICES, coupons)
    with pytest.raises(ValueError, match=r"duplicate codes \['save'\]"):
        load_store(files["ACP_STORE_FILE"])


def test_demo_store_codes(tmp_path: pathlib.Path) -> None:
    """The demo store's codes, as the README lists them."""
    processor = FakePaymentProcessor(str(tmp_path / "ledger.sqlite3"))
    app = build_app(tmp_path, payment_processor=processor, ACP_CATALOG_FILE=None, ACP_STORE_FILE=None)
    agent = Agent(app.test_client())
    response = agent.create([{"id": "mug_white", "quantity": 2}], capabilities=EXTENSIONS,
                            fulfillment_details={"address": ADDRESS},
                            discounts={"codes": ["welcome10", "MUG5", "FREESHIP"]})
    session = response.get_json()
    check_discounts(session)
    assert [(a["code"], a["allocations"][0]["path"]) for a in session["discounts"]["applied"]] == [
        ("welcome10", "$.line_items[0]"), ("MUG5", "$.line_items[0]"), ("FREESHIP", "$.totals.fulfillment")]
    sums = totals(session)
    assert sums["discount"] == sums["fulfillment"] > 0


def test_one_request_tries_no_more_new_codes_than_the_agent_has_left(tmp_path: pathlib.Path) -> None:
    """``ACP_RATE_LIMIT_DISCOUNT_REJECTIONS_PER_AGENT`` within one request: an
    agent with 3 rejections left sends 5 new codes at once; only 3 reach the
    platform (as the session's own limit within one request)."""
    app = build_app(tmp_path, ACP_RATE_LIMIT_DISCOUNT_REJECTIONS_PER_AGENT="3/hour",
                    **write_store(tmp_path / "shop", "usd", PRICES, catalog_coupons("usd")))
    agent = Agent(app.test_client())
    session = create(agent, ["G1", "G2", "G3", "G4", "G5"])
    check_discounts(session)
    messages = [r["message"] for r in session["discounts"]["rejected"]]
    assert messages[:3] == [f"The discount code 'G{i}' is not valid." for i in (1, 2, 3)]
    assert all("was not tried" in m for m in messages[3:]), messages
