"""flask_acp_adapters.shopify.mapping: pure conversions, no HTTP."""

from __future__ import annotations

import datetime as dt
import typing as t

import pytest

from flask_acp.models import FulfillmentOption
from flask_acp.models import PricedLine
from flask_acp.models import Quote
from flask_acp.models import SelectedFulfillmentOption
from flask_acp.models import Totals
from flask_acp_adapters.shopify import mapping


def bag(shop: str, shop_currency: str = "USD", presentment: str | None = None,
        presentment_currency: str | None = None) -> dict[str, t.Any]:
    return {"shopMoney": {"amount": shop, "currencyCode": shop_currency},
            "presentmentMoney": {"amount": presentment or shop,
                                 "currencyCode": presentment_currency or shop_currency}}


@pytest.mark.parametrize(("amount", "currency", "minor"), [
    ("29.99", "usd", 2999), ("10.0", "USD", 1000), ("10", "usd", 1000), ("0.1", "usd", 10),
    ("1500", "jpy", 1500), ("1500.0", "JPY", 1500), ("5.125", "kwd", 5125), ("7.5", "KWD", 7500),
    ("-3.50", "usd", -350), (" 4.20 ", "usd", 420),
])
def test_to_minor(amount: str, currency: str, minor: int) -> None:
    assert mapping.to_minor(amount, currency) == minor


@pytest.mark.parametrize(("amount", "currency"), [
    ("12.345", "usd"), ("0.5", "jpy"), ("1.0005", "kwd"), ("abc", "usd"), ("NaN", "usd"),
    ("Infinity", "usd"), ("", "usd"),
])
def test_amounts_the_currency_cannot_represent_are_refused(amount: str, currency: str) -> None:
    with pytest.raises(mapping.AmountNotRepresentableError) as info:
        mapping.to_minor(amount, currency)
    assert info.value.currency == currency.upper()
    assert isinstance(info.value, ValueError)


def test_unknown_currency() -> None:
    with pytest.raises(mapping.CurrencyMismatchError):
        mapping.exponent("ZZZ")
    assert [mapping.exponent(c) for c in ("usd", "JPY", "kwd", "BHD", "clp")] == [2, 0, 3, 3, 0]


def test_minor_to_decimal_string() -> None:
    assert mapping.minor_to_decimal_string(1999, "usd") == "19.99"
    assert mapping.minor_to_decimal_string(1500, "jpy") == "1500"
    assert mapping.minor_to_decimal_string(5120, "kwd") == "5.120"


def test_money_prefers_the_presentment_side_in_the_wanted_currency() -> None:
    both = bag("52.5", "USD", "15.750", "KWD")
    assert mapping.money(both, "kwd") == 15750
    assert mapping.money(both, "usd") == 5250
    with pytest.raises(mapping.CurrencyMismatchError):
        mapping.money(both, "eur")
    with pytest.raises(mapping.CurrencyMismatchError):
        mapping.money(None, "usd")
    assert mapping.money_v2({"amount": "800.0", "currencyCode": "JPY"}, "jpy") == 800
    with pytest.raises(mapping.CurrencyMismatchError):
        mapping.money_v2({"amount": "8.0", "currencyCode": "USD"}, "jpy")


@pytest.mark.parametrize(("item_id", "gid"), [
    ("4449", "gid://shopify/ProductVariant/4449"),
    ("00042", "gid://shopify/ProductVariant/42"),
    ("gid://shopify/ProductVariant/7", "gid://shopify/ProductVariant/7"),
    ("gid://shopify/Product/7", None), ("gid://shopify/ProductVariant/x", None), ("tee-m", None),
    ("\u0664\u0664", None), ("", None),
])
def test_variant_gid(item_id: str, gid: str | None) -> None:
    assert mapping.variant_gid(item_id) == gid


def test_gid_tail_and_option_ids() -> None:
    assert mapping.gid_tail("gid://shopify/Product/501") == "501"
    rate = {"handle": "h-1", "title": "Standard", "code": "STD", "source": "shopify"}
    assert mapping.option_id(rate) == mapping.option_id(dict(rate, handle="h-2"))  # handles change
    assert mapping.option_id(rate) != mapping.option_id(dict(rate, title="Express"))
    assert mapping.option_id(rate).startswith("ship_")


def test_address_input() -> None:
    acp = {"name": "Ada King Lovelace", "line_one": "1 Main St", "line_two": "", "city": "SF",
           "state": "CA", "country": "us", "postal_code": "94131", "company": "ACME"}
    assert mapping.address_input(acp, phone="+15555550100") == {
        "firstName": "Ada King", "lastName": "Lovelace", "address1": "1 Main St", "city": "SF",
        "provinceCode": "CA", "countryCode": "US", "zip": "94131", "company": "ACME",
        "phone": "+15555550100"}
    assert mapping.address_input({"name": "Cher", "country": "FR"}) == {
        "lastName": "Cher", "countryCode": "FR"}


def variant(sellable: int, *, tracked: bool = True, policy: str = "DENY",
            available: bool = True) -> dict[str, t.Any]:
    return {"sellableOnlineQuantity": sellable, "inventoryPolicy": policy, "availableForSale": available,
            "inventoryItem": {"tracked": tracked}}


@pytest.mark.parametrize(("node", "quantity", "held", "expected"), [
    (variant(5), 3, 0, ("ok", 5, "in_stock")),
    (variant(5), 6, 0, ("quantity_exceeded", 5, "low_stock")),
    (variant(0), 1, 0, ("out_of_stock", 0, "out_of_stock")),
    (variant(-1), 1, 0, ("out_of_stock", 0, "out_of_stock")),
    (variant(0), 2, 2, ("ok", 2, "in_stock")),  # the session's own reservation
    (variant(0, policy="CONTINUE"), 4, 0, ("ok", None, "backorder")),
    (variant(0, tracked=False), 4, 0, ("ok", None, "in_stock")),
    (variant(0, tracked=False, available=False), 1, 0, ("out_of_stock", 0, "out_of_stock")),
])
def test_stock_verdict(node: dict[str, t.Any], quantity: int, held: int,
                       expected: tuple[str, int | None, str]) -> None:
    verdict = mapping.stock_verdict(node, quantity, held)
    assert (verdict.status, verdict.available, verdict.availability_status) == expected


DELIVERY = {
    "availableShippingRates": [
        {"handle": "a-1", "title": "Standard", "code": "STD", "source": "shopify",
         "price": {"amount": "5.0", "currencyCode": "USD"}},
        {"handle": "b-1", "title": "Express", "code": "EXP", "source": "ups",
         "price": {"amount": "15.00", "currencyCode": "USD"}},
        {"handle": "a-2", "title": "Standard", "code": "STD", "source": "shopify",
         "price": {"amount": "5.0", "currencyCode": "USD"}},  # duplicate: dropped
    ],
    "availableLocalDeliveryRates": [
        {"handle": "c-1", "title": "Bike courier", "code": "BIKE", "source": "local",
         "price": {"amount": "3.5", "currencyCode": "USD"}}],
}


def test_rate_options() -> None:
    options, rates = mapping.rate_options(DELIVERY, currency="usd", item_ids=["1", "2"])
    assert [(o.type, o.title, o.amount, o.carrier, o.item_ids) for o in options] == [
        ("shipping", "Standard", 500, None, ("1", "2")),
        ("shipping", "Express", 1500, "ups", ("1", "2")),
        ("local_delivery", "Bike courier", 350, "local", ("1", "2"))]
    assert rates[options[0].id]["handle"] == "a-1"
    assert mapping.rate_options(None, currency="usd", item_ids=["1"]) == ([], {})


def test_rates_in_another_currency_are_estimated_with_the_draft_rate() -> None:
    options, _ = mapping.rate_options(DELIVERY, currency="kwd", item_ids=["1"], fx="0.3")
    assert [o.amount for o in options] == [1500, 4500, 1050]
    price = {"amount": "10.0", "currencyCode": "USD"}
    assert mapping.rate_amount(price, "kwd", "0.307") == 3070
    assert mapping.rate_amount(price, "jpy", None) == 10  # no rate yet: keeps the order only
    with pytest.raises(mapping.AmountNotRepresentableError):
        mapping.rate_amount({"amount": "10.001", "currencyCode": "USD"}, "kwd", "0.3")


def test_implied_fx() -> None:
    assert mapping.implied_fx({"subtotalPriceSet": bag("40.0", "USD", "12.0", "KWD")}, "kwd") == "0.3"
    assert mapping.implied_fx({"subtotalPriceSet": bag("40.0")}, "usd") is None
    assert mapping.implied_fx({"subtotalPriceSet": bag("0.0", "USD", "0.0", "KWD")}, "kwd") is None
    assert mapping.implied_fx({}, "kwd") is None


def draft(lines: list[tuple[str, int, str, str, str]], *, shipping: str = "0.0", shipping_tax: str = "0.0",
          total: str, tax: str = "0.0", included: bool = False, currency: str = "USD") -> dict[str, t.Any]:
    """lines: (variant id, quantity, original total, discounted total, tax)."""

    def bag(amount: str) -> dict[str, t.Any]:
        return {"shopMoney": {"amount": amount, "currencyCode": currency},
                "presentmentMoney": {"amount": amount, "currencyCode": currency}}

    return {
        "taxesIncluded": included,
        "lineItems": {"nodes": [
            {"quantity": q, "variant": {"id": f"gid://shopify/ProductVariant/{v}"},
             "originalTotalSet": bag(o), "discountedTotalSet": bag(d),
             "taxLines": [{"priceSet": bag(x)}] if x != "0.0" else []}
            for v, q, o, d, x in lines]},
        "shippingLine": {"taxLines": [{"priceSet": bag(shipping_tax)}]} if shipping != "0.0" else None,
        "totalShippingPriceSet": bag(shipping),
        "totalPriceSet": bag(total),
        "totalTaxSet": bag(tax),
    }


def acp_total(amounts: mapping.DraftAmounts) -> int:
    """What the core computes (Totals.of) from a quote built on these amounts."""
    lines = tuple(PricedLine(item_id=x.variant_id, quantity=x.quantity, unit_amount=x.unit_amount,
                             discount=x.discount, tax=x.tax) for x in amounts.lines.values())
    option = FulfillmentOption(type="shipping", id="s", title="S", item_ids=(), amount=amounts.shipping,
                               tax=amounts.shipping_tax)
    quote = Quote(lines=lines, fulfillment_options=(option,), discount=amounts.discount, fee=amounts.fee,
                  selected_fulfillment_options=(SelectedFulfillmentOption(type="shipping", option_id="s"),))
    return Totals.of(quote).total


def test_draft_amounts_tax_exclusive() -> None:
    amounts = mapping.draft_amounts(draft([("1", 2, "40.0", "36.0", "3.15")], shipping="5.0",
                                          shipping_tax="0.44", total="44.59", tax="3.59"), "usd")
    line = amounts.lines["gid://shopify/ProductVariant/1"]
    assert (line.unit_amount, line.discount, line.tax) == (2000, 400, 315)
    assert (amounts.shipping, amounts.shipping_tax, amounts.discount, amounts.fee) == (500, 44, 0, 0)
    assert amounts.total == acp_total(amounts) == 4459


def test_draft_amounts_tax_inclusive_reports_net_lines() -> None:
    amounts = mapping.draft_amounts(draft([("1", 3, "59.97", "59.97", "9.58")], shipping="5.95",
                                          shipping_tax="0.95", total="65.92", tax="10.53", included=True,
                                          currency="EUR"), "eur")
    line = amounts.lines["gid://shopify/ProductVariant/1"]
    # net 50.39 over 3 units: 16.79 each, the 0.02 remainder joins the line's tax
    assert (line.unit_amount, line.tax) == (1679, 960)
    assert (amounts.shipping, amounts.shipping_tax) == (500, 95)
    assert acp_total(amounts) == amounts.total == 6592


def test_small_rounding_difference_goes_into_the_largest_tax() -> None:
    stickers = [("1", 1, "0.25", "0.25", "0.01"), ("2", 1, "0.25", "0.25", "0.02")]
    amounts = mapping.draft_amounts(draft(stickers,
                                          shipping="5.0", shipping_tax="0.25", total="5.79", tax="0.29"),
                                    "usd")
    assert amounts.lines["gid://shopify/ProductVariant/2"].tax == 3
    assert amounts.lines["gid://shopify/ProductVariant/1"].tax == 1
    assert acp_total(amounts) == 579


def test_larger_differences_become_an_order_discount_or_a_fee() -> None:
    discounted = mapping.draft_amounts(draft([("1", 1, "100.0", "100.0", "0.0")], total="90.0"), "usd")
    assert (discounted.discount, discounted.fee) == (1000, 0)
    assert acp_total(discounted) == 9000
    fee = mapping.draft_amounts(draft([("1", 1, "100.0", "100.0", "0.0")], total="102.5"), "usd")
    assert (fee.discount, fee.fee) == (0, 250)
    assert acp_total(fee) == 10250


def test_unrepresentable_draft_amount_is_refused() -> None:
    with pytest.raises(mapping.AmountNotRepresentableError):
        mapping.draft_amounts(draft([("1", 1, "100.5", "100.5", "0.0")], total="100.5", currency="JPY"),
                              "jpy")


def test_times() -> None:
    when = dt.datetime(2026, 11, 29, 12, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert mapping.reserve_until(when) == "2026-11-29T11:00:00Z"
    assert mapping.parse_datetime("2026-11-29T11:00:00Z") == when.replace(microsecond=0)
    naive = mapping.parse_datetime("2026-11-29T11:00:00")
    assert naive == dt.datetime(2026, 11, 29, 11, tzinfo=dt.timezone.utc)
    assert mapping.parse_datetime("yesterday") is None
    assert mapping.parse_datetime(None) is None
