"""flask_acp_adapters.woocommerce.mapping: money conversions and cart -> quote,
from JSON fixtures alone (no HTTP)."""

from __future__ import annotations

import copy
import decimal
import json
import pathlib
import typing as t

import pytest

from flask_acp.models import LineItemRequest
from flask_acp.models import Message
from flask_acp.models import Totals
from flask_acp_adapters.woocommerce.mapping import PriceNotRepresentable
from flask_acp_adapters.woocommerce.mapping import customer_payload
from flask_acp_adapters.woocommerce.mapping import iso_exponent
from flask_acp_adapters.woocommerce.mapping import minor_to_rest_amount
from flask_acp_adapters.woocommerce.mapping import parse_option_id
from flask_acp_adapters.woocommerce.mapping import plain_text
from flask_acp_adapters.woocommerce.mapping import quote_from_cart
from flask_acp_adapters.woocommerce.mapping import rest_amount
from flask_acp_adapters.woocommerce.mapping import store_amount

DATA = pathlib.Path(__file__).parent / "data"
LINES = (LineItemRequest(id="38", quantity=3), LineItemRequest(id="40", quantity=1))


@pytest.fixture
def cart() -> dict[str, t.Any]:
    return t.cast(dict[str, t.Any], json.loads((DATA / "woocommerce_cart_rounding.json").read_text()))


# --- money -------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "minor_unit", "currency", "expected"), [
    ("1800", 2, "USD", 1800),
    (1800, 2, "USD", 1800),
    ("5", 0, "USD", 500),  # a USD store set to 0 decimals
    ("1500", 0, "JPY", 1500),
    ("150000", 2, "JPY", 1500),  # a JPY store set to 2 decimals
    ("12500", 3, "KWD", 12500),
    ("1250", 2, "KWD", 12500),
    ("-100", 2, "USD", -100),
    ("0", 2, "EUR", 0),
])
def test_store_amount(value: t.Any, minor_unit: int, currency: str, expected: int) -> None:
    assert store_amount(value, minor_unit, currency) == expected


def test_store_amount_refuses_sub_units_the_currency_lacks() -> None:
    with pytest.raises(PriceNotRepresentable) as info:
        store_amount("15050", 2, "JPY")
    assert info.value.decimal_value == decimal.Decimal("150.50")
    assert (info.value.currency, info.value.amount) == ("JPY", "15050")
    assert "JPY 150.50" in str(info.value)
    with pytest.raises(PriceNotRepresentable):
        store_amount("12345", 4, "USD")


@pytest.mark.parametrize("value", ["18.00", 18.0, "", "1e3", None])
def test_store_amount_wants_integer_strings(value: t.Any) -> None:
    with pytest.raises(ValueError, match="not an integer string"):
        store_amount(value, 2, "USD")


@pytest.mark.parametrize(("value", "currency", "expected"), [
    ("18.00", "USD", 1800), ("18", "USD", 1800), ("0.5", "USD", 50), ("1500", "JPY", 1500),
    ("1500.00", "JPY", 1500), ("12.500", "KWD", 12500), ("-3.20", "EUR", -320),
])
def test_rest_amount(value: str, currency: str, expected: int) -> None:
    assert rest_amount(value, currency) == expected


def test_rest_amount_refuses_floats_and_excess_precision() -> None:
    with pytest.raises(PriceNotRepresentable):
        rest_amount("1500.50", "JPY")
    with pytest.raises(PriceNotRepresentable):
        rest_amount("10.005", "USD")
    for bad in (18.0, None, "abc", "NaN", "Infinity"):
        with pytest.raises(ValueError, match="not a decimal string"):
            rest_amount(bad, "USD")


def test_exponents_and_rest_strings() -> None:
    assert [iso_exponent(c) for c in ("usd", "JPY", "KWD", "CLP", "BHD")] == [2, 0, 3, 0, 3]
    with pytest.raises(ValueError, match="not an ISO 4217"):
        iso_exponent("ZZZ")
    with pytest.raises(ValueError, match="no minor unit"):
        iso_exponent("XAU")
    assert [minor_to_rest_amount(a, c) for a, c in ((1234, "USD"), (1500, "JPY"), (12500, "KWD"))] == [
        "12.34", "1500", "12.500"]


# --- small helpers -------------------------------------------------------------------------


def test_option_ids_and_text() -> None:
    assert parse_option_id("0:flat_rate:1") == (0, "flat_rate:1")
    assert parse_option_id("12:local_pickup:3") == (12, "local_pickup:3")
    assert [parse_option_id(v) for v in ("digital", "x:flat_rate:1", "0:", "")] == [None] * 4
    assert plain_text("You cannot add &quot;Beanie &amp; Scarf&quot; <b>now</b>") == (
        'You cannot add "Beanie & Scarf" now')


def test_customer_payload() -> None:
    address = {"name": "Ada King Lovelace", "line_one": "1 Main St", "line_two": "Apt 2", "city": "Austin",
               "state": "TX", "country": "us", "postal_code": "78701", "company": "Engines Ltd"}
    body = customer_payload({"address": address, "phone_number": "+15125550000"},
                            {"email": "ada@example.com", "first_name": "Augusta", "last_name": "King"})
    assert body == {
        "billing_address": {"first_name": "Augusta", "last_name": "King", "company": "Engines Ltd",
                            "address_1": "1 Main St", "address_2": "Apt 2", "city": "Austin", "state": "TX",
                            "postcode": "78701", "country": "US", "phone": "+15125550000",
                            "email": "ada@example.com"},
        "shipping_address": {"first_name": "Ada", "last_name": "King Lovelace", "company": "Engines Ltd",
                             "address_1": "1 Main St", "address_2": "Apt 2", "city": "Austin", "state": "TX",
                             "postcode": "78701", "country": "US", "phone": "+15125550000"},
    }
    assert customer_payload(None, {"email": "a@b.co"}) == {
        "billing_address": {"email": "a@b.co", "phone": ""}}
    assert customer_payload(None, None) is None
    assert customer_payload({"name": "x"}, None) is None


# --- carts -------------------------------------------------------------------------------


def test_quote_from_cart_keeps_woocommerce_total_and_absorbs_rounding(cart: dict[str, t.Any]) -> None:
    quote = quote_from_cart(cart, LINES)
    assert Totals.of(quote).total == 4126 == int(cart["totals"]["total_price"])
    beanie, hoodie = quote.lines
    # line_subtotal 1000 for 3 units: unit rounded up to 334, the 2 cents go to the discount
    assert (beanie.unit_amount, beanie.base_amount, beanie.discount, beanie.subtotal, beanie.tax) == (
        334, 1002, 102, 900, 90)
    assert beanie.name == "Beanie & Scarf"
    assert beanie.description == "Soft & warm"
    assert beanie.images == ("https://shop.example/38.jpg",)
    assert (beanie.availability_status, beanie.available_quantity) == ("low_stock", 2)
    # fee tax (10) and the subtotal-level rounding (1) land on the largest tax
    assert (hoodie.unit_amount, hoodie.discount, hoodie.tax) == (2500, 250, 225 + 11)
    assert quote.fee == 100
    assert [o.id for o in quote.fulfillment_options] == ["0:flat_rate:1", "0:local_pickup:2"]
    assert quote.fulfillment_options[1].description == "Main St store"
    assert [(s.option_id, s.item_ids) for s in quote.selected_fulfillment_options] == [
        ("0:flat_rate:1", ("38", "40"))]
    totals = Totals.of(quote)
    assert (totals.items_base_amount, totals.items_discount, totals.fulfillment, totals.tax) == (
        3502, 352, 500, 90 + 236 + 50)
    assert quote.messages == ()
    assert not quote.needs_fulfillment_details


def test_cart_errors_and_unrequested_items_become_messages(cart: dict[str, t.Any]) -> None:
    cart["errors"] = [
        {"code": "woocommerce_rest_product_partially_out_of_stock",
         "message": "There is not enough &quot;Hoodie&quot; in stock (0 remaining)."},
        {"code": "woocommerce_rest_cart_coupon_errors", "message": "Coupon &quot;take10&quot; has expired."},
    ]
    quote = quote_from_cart(cart, LINES[:1])  # the hoodie was not asked for
    contents = [(m.type, m.code, m.content) for m in quote.messages]
    assert ("error", "invalid", "The store added 'Hoodie' (quantity 1), which this checkout cannot show.") \
        in contents
    assert ("error", "out_of_stock", 'There is not enough "Hoodie" in stock (0 remaining).') in contents
    assert ("error", "coupon_invalid", 'Coupon "take10" has expired.') in contents
    # the hoodie's charge (2250 + 225) is left out of the target: only the fee tax
    # and the rounding (11) move to the beanie
    assert quote.lines[0].tax == 101


def test_refused_line_is_not_purchasable(cart: dict[str, t.Any]) -> None:
    msg = Message(type="error", code="out_of_stock", text_key="out_of_stock", text_args={"name": "Hoodie"})
    quote = quote_from_cart(cart, LINES, line_messages={"40": [msg]})
    assert [line.purchasable for line in quote.lines] == [True, False]
    assert quote.messages == (msg,)
    assert [s.item_ids for s in quote.selected_fulfillment_options] == [("38",)]


def test_address_needed_before_shipping_is_calculated(cart: dict[str, t.Any]) -> None:
    cart.update(has_calculated_shipping=False, shipping_rates=[])
    quote = quote_from_cart(cart, LINES)
    assert quote.needs_fulfillment_details
    assert [(m.code, m.text_key) for m in quote.messages] == [("missing", "address_required")]
    assert all(line.requires_shipping for line in quote.lines)


def test_package_without_rates_is_region_restricted(cart: dict[str, t.Any]) -> None:
    cart["shipping_rates"][0]["shipping_rates"] = []
    cart["shipping_rates"][0]["destination"]["country"] = "FR"
    quote = quote_from_cart(cart, LINES)
    assert quote.needs_fulfillment_details
    assert [(m.code, m.text_args) for m in quote.messages] == [("region_restricted", {"country": "FR"})]


def test_virtual_items_get_the_digital_option(cart: dict[str, t.Any]) -> None:
    cart["shipping_rates"][0]["items"] = [{"key": "b2", "name": "Hoodie", "quantity": 1}]
    quote = quote_from_cart(cart, LINES)
    assert [line.requires_shipping for line in quote.lines] == [False, True]
    assert [(s.type, s.option_id, s.item_ids) for s in quote.selected_fulfillment_options] == [
        ("shipping", "0:flat_rate:1", ("40",)), ("digital", "digital", ("38",))]


def test_amounts_the_currency_cannot_represent_refuse_the_cart(cart: dict[str, t.Any]) -> None:
    jpy = copy.deepcopy(cart)
    for node in [jpy["totals"], *[i["totals"] for i in jpy["items"]]]:
        node.update(currency_code="JPY", currency_minor_unit=2)
    quote = quote_from_cart(jpy, LINES)
    assert not any(line.purchasable for line in quote.lines)
    assert [line.name for line in quote.lines] == ["Beanie & Scarf", "Hoodie"]
    (message,) = quote.messages
    assert (message.type, message.code, message.param) == ("error", "invalid", "$.currency")
    assert message.content is not None
    assert "JPY 0.90" in message.content  # the first amount found: the beanie's tax
    assert "cannot be paid in JPY" in message.content
    assert Totals.of(quote).total == 0
