"""Behaviour of the embedded catalog adapter (flask_acp.catalog), no mocks.

Real files in tmp_path, a real SQLite file, real processes for the races.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import multiprocessing
import pathlib
import typing as t

import pytest

from flask_acp.adapter import QuoteRequest
from flask_acp.catalog import MESSAGE_KEYS
from flask_acp.catalog import CatalogAdapter
from flask_acp.catalog import load_feed
from flask_acp.catalog import load_store
from flask_acp.catalog.adapter import DEMO_FEED
from flask_acp.catalog.adapter import DEMO_STORE
from flask_acp.errors import AdapterRejectedError
from flask_acp.models import CheckoutSession
from flask_acp.models import LineItemRequest
from flask_acp.models import Message
from flask_acp.models import PaymentRecord
from flask_acp.models import Quote
from flask_acp.models import SelectedFulfillmentOption
from flask_acp.models import Status
from flask_acp.models import Totals
from flask_acp.models import line_item_id

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)

SF = {"name": "Jane Doe", "line_one": "555 Golden Gate Ave", "city": "San Francisco",
      "state": "CA", "country": "US", "postal_code": "94102"}
NYC = {**SF, "city": "New York", "state": "NY", "postal_code": "10001"}
TORONTO = {**SF, "city": "Toronto", "state": "ON", "country": "CA", "postal_code": "M5V 2T6"}
PARIS = {**SF, "city": "Paris", "state": "IDF", "country": "FR", "postal_code": "75001"}


class Clock:
    """A settable clock for the adapter."""

    def __init__(self, now: dt.datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def request(*items: tuple[str, int], session: str = "cs_1", currency: str = "usd",
            address: dict[str, str] | None = None,
            selected: tuple[SelectedFulfillmentOption, ...] = (),
            expires_at: dt.datetime = NOW + dt.timedelta(hours=1)) -> QuoteRequest:
    return QuoteRequest(
        session_id=session,
        currency=currency,
        line_items=tuple(LineItemRequest(id=i, quantity=q) for i, q in items),
        fulfillment_details=None if address is None else {"name": "Jane Doe", "address": address},
        selected_fulfillment_options=selected,
        expires_at=expires_at,
        hold_until=expires_at,
    )


def session_of(req: QuoteRequest, quote: Quote) -> CheckoutSession:
    return CheckoutSession(
        id=req.session_id,
        agent="agent_test",
        api_version="2026-04-17",
        status=Status.READY_FOR_PAYMENT,
        currency=req.currency,
        line_items=req.line_items,
        quote=quote,
        created_at=NOW,
        updated_at=NOW,
        expires_at=req.expires_at,
        fulfillment_details=req.fulfillment_details,
        requested_fulfillment_options=req.selected_fulfillment_options,
    )


def payment(amount: int) -> PaymentRecord:
    return PaymentRecord(idempotency_key="idem_1", token_sha256="0" * 64, handler_id="card",
                         amount=amount, currency="usd", status="succeeded", payment_id="pi_1")


def write(path: pathlib.Path, data: t.Any) -> pathlib.Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def feed_doc(currency: str = "USD", **prices: t.Any) -> dict[str, t.Any]:
    return {"products": [{
        "id": "prod_x",
        "title": "X",
        "variants": [
            {"id": vid, "title": f"Item {vid}", "price": {"amount": amount, "currency": currency}}
            for vid, amount in prices.items()
        ],
    }]}


def store_doc(**overrides: t.Any) -> dict[str, t.Any]:
    doc: dict[str, t.Any] = {
        "currency": "usd",
        "order_url_template": "https://shop.test/orders/{order_number}",
        "default_stock": 100,
        "shipping_methods": [{"id": "std", "title": "Standard", "amount": 500,
                              "min_days": 2, "max_days": 4, "countries": ["*"]}],
        "tax": [{"country": "US", "region": "CA", "rate": "0.0875"}],
    }
    doc.update(overrides)
    return doc


@pytest.fixture
def demo(tmp_path: pathlib.Path) -> CatalogAdapter:
    return CatalogAdapter(DEMO_FEED, DEMO_STORE, tmp_path / "acp.sqlite3", clock=Clock())


def custom(tmp_path: pathlib.Path, feed: dict[str, t.Any], store: dict[str, t.Any],
           clock: Clock | None = None) -> CatalogAdapter:
    feed_path = write(tmp_path / "feed.json", feed)
    store_path = write(tmp_path / "store.json", store)
    return CatalogAdapter(feed_path, store_path, tmp_path / "acp.sqlite3", clock=clock or Clock())


def errors(quote: Quote) -> list[tuple[str | None, str | None]]:
    return [(m.code, m.param) for m in quote.messages if m.type == "error"]


# --- loading ----------------------------------------------------------------------


def test_demo_files_load_with_readable_ids(demo: CatalogAdapter) -> None:
    assert set(demo.items) == {"tee_red_m", "tee_red_l", "tee_navy_s", "mug_white",
                               "ebook_field_guide", "gift_card_50"}
    tee = demo.items["tee_red_m"]
    assert (tee.product_id, tee.unit_amount, tee.currency) == ("prod_classic_tee", 2500, "USD")
    assert tee.images == ("https://shop.example/img/classic-tee-red.jpg",)
    assert demo.items["mug_white"].images == ("https://shop.example/img/camp-mug.jpg",)  # product's
    assert demo.supported_currencies() == ["usd"]
    assert demo.store.exponent == 2


def test_from_config_defaults_and_required_key(tmp_path: pathlib.Path) -> None:
    adapter = CatalogAdapter.from_config({"ACP_SQLITE_PATH": str(tmp_path / "db.sqlite3")})
    assert adapter.name == "catalog"
    assert "tee_red_m" in adapter.items
    with pytest.raises(ValueError, match="ACP_SQLITE_PATH"):
        CatalogAdapter.from_config({})
    with pytest.raises(ValueError, match="ACP_STORE_FILE"):
        CatalogAdapter.from_config({"ACP_SQLITE_PATH": str(tmp_path / "db.sqlite3"),
                                    "ACP_STORE_FILE": str(tmp_path / "missing.json")})


def test_float_price_in_feed_is_rejected_naming_product_and_variant(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path / "feed.json", feed_doc(a=100, b=19.99))
    with pytest.raises(ValueError, match="must be an integer amount in minor units") as info:
        load_feed(path)
    assert 'product 0 (id "prod_x"), variant 1 (id "b"): price.amount' in str(info.value)
    assert "float 19.99" in str(info.value)


def test_jsonl_feed_loads_and_names_the_line(tmp_path: pathlib.Path) -> None:
    good = {"id": "p1", "variants": [{"id": "v1", "title": "V1",
                                      "price": {"amount": 100, "currency": "USD"}}]}
    bad = {"id": "p2", "variants": [{"id": "v2", "title": "V2",
                                     "price": {"amount": 1.5, "currency": "USD"}}]}
    path = tmp_path / "feed.jsonl"
    path.write_text(json.dumps(good) + "\n\n", encoding="utf-8")
    assert list(load_feed(path)) == ["v1"]
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r'product 1 \(line 3, id "p2"\), variant 0 \(id "v2"\)'):
        load_feed(path)


@pytest.mark.parametrize(("feed", "message"), [
    (feed_doc(a="100"), "must be an integer amount in minor units"),
    (feed_doc(a=-1), "greater than or equal to 0"),
    (feed_doc(currency="usd", a=100), "uppercase ISO 4217"),
    (feed_doc(currency="XYZ", a=100), "not an ISO 4217 currency"),
    ({"products": [{"id": "p", "variants": [{"id": "v"}]}]}, "title: Missing data"),
    ({"items": []}, "products: Missing data"),
])
def test_invalid_feeds(tmp_path: pathlib.Path, feed: dict[str, t.Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_feed(write(tmp_path / "feed.json", feed))


def test_duplicate_variant_ids_are_rejected(tmp_path: pathlib.Path) -> None:
    doc = feed_doc(a=100)
    doc["products"].append({"id": "prod_y", "variants": doc["products"][0]["variants"]})
    with pytest.raises(ValueError, match='variant id "a" is already used'):
        load_feed(write(tmp_path / "feed.json", doc))


@pytest.mark.parametrize(("change", "message"), [
    ({"shipping_methods": [{"id": "s", "title": "S", "amount": 5.99, "min_days": 1,
                            "max_days": 2, "countries": ["US"]}]},
     r"shipping_methods\[0\]\.amount: must be an integer amount in minor units .*float 5\.99"),
    ({"free_shipping_over": 50.0}, "free_shipping_over: must be an integer amount"),
    ({"tax": [{"country": "US", "rate": 0.0875}]},
     r'tax\[0\]\.rate: must be a decimal string like "0.0875", not the float'),
    ({"tax": [{"country": "US", "rate": "8.75"}]}, "fraction below 1"),
    ({"stock": {"a": 2.0}}, r"stock\.a\.value: must be an integer, not the float"),
    ({"currency": "xyz"}, "not an ISO 4217 currency"),
    ({"currency": "xau"}, "no minor unit"),
    ({"order_url_template": "https://x/{order}"}, "bad placeholder"),
    ({"prices_include_tax": True}, "not supported"),
    ({"shipping_methods": [{"id": "digital", "title": "D", "amount": 0, "min_days": 0,
                            "max_days": 0, "countries": ["*"]}]}, "reserved"),
    ({"shipping_methods": [{"id": "s", "title": "S", "amount": 1, "min_days": 5,
                            "max_days": 2, "countries": ["US"]}]}, "min_days must not exceed"),
    ({"shipping_methods": [{"id": "s", "title": "S", "amount": 1, "min_days": 1,
                            "max_days": 2, "countries": ["us"]}]},
     r"countries\[0\]: must be an uppercase"),
])
def test_invalid_store_files(tmp_path: pathlib.Path, change: dict[str, t.Any],
                             message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_store(write(tmp_path / "store.json", store_doc(**change)))


def test_feed_and_store_must_agree(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="priced in EUR but the store currency"):
        custom(tmp_path, feed_doc(currency="EUR", a=100), store_doc())
    with pytest.raises(ValueError, match=r"stock names unknown variants \['typo'\]"):
        custom(tmp_path, feed_doc(a=100), store_doc(stock={"typo": 1}))


# --- pricing and tax ----------------------------------------------------------------


def test_line_fields_and_half_up_tax(demo: CatalogAdapter) -> None:
    quote = demo.quote(request(("tee_red_m", 2), ("mug_white", 1), address=SF))
    tee, mug = quote.lines
    assert (tee.unit_amount, tee.quantity, tee.base_amount) == (2500, 2, 5000)
    assert tee.tax == 438  # 5000 * 0.0875 = 437.5 -> 438 (half up)
    assert mug.tax == 158  # 1800 * 0.0875 = 157.5 -> 158
    assert tee.name == "Classic Tee - Red / M"
    assert tee.description == "Classic Tee in red, size M."
    assert (tee.product_id, tee.variant_id) == ("prod_classic_tee", "tee_red_m")
    assert tee.availability_status == "in_stock"
    assert (tee.available_quantity, tee.max_quantity_per_order) == (25, 10)
    assert tee.purchasable
    assert tee.requires_shipping
    assert errors(quote) == []
    assert demo.quote(request(("tee_red_m", 1), address=NYC)).lines[0].tax == 150  # default US rate
    assert demo.quote(request(("tee_red_m", 1))).lines[0].tax == 0  # no address, no tax


def test_tax_uses_decimal_not_float(tmp_path: pathlib.Path) -> None:
    # 360 * 0.0875 is exactly 31.5 (-> 32); in floats it is 31.499999999999996 (-> 31).
    adapter = custom(tmp_path, feed_doc(a=360), store_doc())
    assert adapter.quote(request(("a", 1), address=SF)).lines[0].tax == 32


def test_jpy_store_has_no_decimals(tmp_path: pathlib.Path) -> None:
    store = store_doc(currency="jpy", tax=[{"country": "JP", "rate": "0.1"}], tax_shipping=True,
                      shipping_methods=[{"id": "yamato", "title": "Yamato", "amount": 505,
                                         "min_days": 1, "max_days": 2, "countries": ["JP"]}])
    adapter = custom(tmp_path, feed_doc(currency="JPY", a=105, b=999), store)
    assert adapter.store.exponent == 0
    tokyo = {**SF, "city": "Tokyo", "state": "13", "country": "JP", "postal_code": "100-0001"}
    quote = adapter.quote(request(("a", 1), ("b", 3), currency="jpy", address=tokyo))
    assert [line.tax for line in quote.lines] == [11, 300]  # 10.5 -> 11, 299.7 -> 300
    (option,) = quote.fulfillment_options
    assert (option.amount, option.tax) == (505, 51)  # 50.5 -> 51
    assert Totals.of(quote).total == 105 + 2997 + 11 + 300 + 505 + 51


def test_kwd_store_has_three_decimals(tmp_path: pathlib.Path) -> None:
    store = store_doc(currency="KWD", tax=[{"country": "KW", "rate": "0.05"}])
    adapter = custom(tmp_path, feed_doc(currency="KWD", a=12345, b=12350), store)
    assert adapter.store.exponent == 3
    kuwait = {**SF, "city": "Kuwait City", "state": "KU", "country": "KW", "postal_code": "13001"}
    quote = adapter.quote(request(("a", 1), ("b", 1), currency="kwd", address=kuwait))
    assert [line.tax for line in quote.lines] == [617, 618]  # 617.25 -> 617, 617.5 -> 618


def test_currency_mismatch_makes_every_line_unpurchasable(demo: CatalogAdapter) -> None:
    quote = demo.quote(request(("tee_red_m", 1), ("mug_white", 1), currency="eur", address=SF))
    assert errors(quote) == [("unsupported", "$.currency")]
    assert quote.messages[0].text_args == {"currency": "eur"}
    assert not any(line.purchasable for line in quote.lines)
    assert quote.fulfillment_options == ()
    assert demo.ledger.held("cs_1") == {}


# --- item problems ------------------------------------------------------------------


def test_unknown_item(demo: CatalogAdapter) -> None:
    quote = demo.quote(request(("tee_red_m", 1), ("nope", 2), address=SF))
    assert quote.lines[0].purchasable
    assert not quote.lines[1].purchasable
    (message,) = [m for m in quote.messages if m.type == "error"]
    assert (message.code, message.param, message.text_key, message.resolution) == (
        "not_found", "$.line_items[1].item.id", "item_not_found", "recoverable")
    assert message.text_args == {"item_id": "nope"}


def test_out_of_stock_from_feed_and_from_stock(tmp_path: pathlib.Path) -> None:
    feed = feed_doc(a=100, b=100)
    feed["products"][0]["variants"][0]["availability"] = {"available": False}
    adapter = custom(tmp_path, feed, store_doc(default_stock=0, stock={"a": 10}))
    quote = adapter.quote(request(("a", 1), ("b", 1), address=SF))
    assert errors(quote) == [("out_of_stock", "$.line_items[0].item.id"),
                             ("out_of_stock", "$.line_items[1].item.id")]
    assert [m.text_args for m in quote.messages] == [{"name": "Item a"}, {"name": "Item b"}]
    assert [line.availability_status for line in quote.lines] == ["out_of_stock", "out_of_stock"]
    assert not any(line.purchasable for line in quote.lines)


def test_demo_out_of_stock_variant(demo: CatalogAdapter) -> None:
    quote = demo.quote(request(("tee_navy_s", 1), address=SF))
    assert errors(quote) == [("out_of_stock", "$.line_items[0].item.id")]


def test_quantity_above_stock_or_per_order_max(demo: CatalogAdapter) -> None:
    quote = demo.quote(request(("tee_red_l", 4), address=SF))  # 3 on hand
    (message,) = quote.messages
    assert (message.code, message.param, message.text_key) == (
        "quantity_exceeded", "$.line_items[0].quantity", "quantity_exceeded")
    assert message.text_args == {"name": "Classic Tee - Red / L", "available": "3"}
    assert not quote.lines[0].purchasable
    assert quote.lines[0].quantity == 4  # not capped silently

    quote = demo.quote(request(("tee_red_m", 11), address=SF))  # 25 on hand, max 10
    assert errors(quote) == [("quantity_exceeded", "$.line_items[0].quantity")]
    assert quote.messages[0].text_args["available"] == "10"


def test_lines_of_the_same_item_share_the_stock(demo: CatalogAdapter) -> None:
    quote = demo.quote(request(("tee_red_l", 2), ("tee_red_l", 2), address=SF))
    assert errors(quote) == [("quantity_exceeded", "$.line_items[0].quantity"),
                             ("quantity_exceeded", "$.line_items[1].quantity")]


def test_low_stock_warning(demo: CatalogAdapter) -> None:
    quote = demo.quote(request(("tee_red_l", 1), address=SF))
    line = quote.lines[0]
    assert line.purchasable
    assert line.availability_status == "low_stock"
    (warning,) = quote.messages
    assert (warning.type, warning.code, warning.text_key) == ("warning", "low_stock", "low_stock")
    assert warning.text_args == {"name": "Classic Tee - Red / L", "available": "3"}


# --- fulfillment --------------------------------------------------------------------


def test_shipping_needs_an_address(demo: CatalogAdapter) -> None:
    quote = demo.quote(request(("tee_red_m", 1)))
    assert quote.needs_fulfillment_details
    assert quote.fulfillment_options == ()
    (message,) = quote.messages
    assert (message.type, message.code, message.param, message.text_key, message.resolution) == (
        "error", "missing", "$.fulfillment_details.address", "address_required",
        "requires_buyer_input")


def test_shipping_options_by_country(demo: CatalogAdapter) -> None:
    us = demo.quote(request(("tee_red_m", 1), address=SF))
    assert [(o.id, o.amount, o.carrier) for o in us.fulfillment_options] == [
        ("us_standard", 599, "USPS"), ("us_express", 1499, "UPS")]
    standard = us.fulfillment_options[0]
    assert standard.type == "shipping"
    assert standard.item_ids == ("tee_red_m",)
    assert standard.earliest_delivery_time == NOW + dt.timedelta(days=3)
    assert standard.latest_delivery_time == NOW + dt.timedelta(days=5)
    assert standard.earliest_delivery_time.tzinfo is not None
    assert standard.tax == 0  # tax_shipping is false in the demo
    assert not us.needs_fulfillment_details
    # cheapest option applied by default
    assert [(s.option_id, s.item_ids) for s in us.selected_fulfillment_options] == [
        ("us_standard", ("tee_red_m",))]
    assert Totals.of(us).total == 2500 + 219 + 599

    ca = demo.quote(request(("tee_red_m", 1), address=TORONTO))
    assert [o.id for o in ca.fulfillment_options] == ["ca_standard", "ca_express"]
    assert ca.lines[0].tax == 125  # 2500 * 0.05


def test_no_shipping_to_the_country(demo: CatalogAdapter) -> None:
    quote = demo.quote(request(("tee_red_m", 1), address=PARIS))
    assert quote.fulfillment_options == ()
    assert quote.needs_fulfillment_details
    (message,) = quote.messages
    assert (message.code, message.param, message.text_key, message.text_args) == (
        "region_restricted", "$.fulfillment_details.address.country", "no_shipping_to_address",
        {"country": "FR"})


def test_selected_option_and_invalid_selection(demo: CatalogAdapter) -> None:
    express = SelectedFulfillmentOption(type="shipping", option_id="us_express",
                                        item_ids=(line_item_id("tee_red_m"),))
    quote = demo.quote(request(("tee_red_m", 1), address=SF, selected=(express,)))
    assert [(s.option_id, s.item_ids) for s in quote.selected_fulfillment_options] == [
        ("us_express", ("tee_red_m",))]
    assert Totals.of(quote).fulfillment == 1499

    bogus = SelectedFulfillmentOption(type="shipping", option_id="teleport")
    quote = demo.quote(request(("tee_red_m", 1), address=SF, selected=(bogus,)))
    assert errors(quote) == [("invalid", "$.selected_fulfillment_options[0].option_id")]
    assert quote.messages[0].text_key == "fulfillment_option_invalid"


def test_free_shipping_over_threshold(demo: CatalogAdapter) -> None:
    quote = demo.quote(request(("tee_red_m", 4), address=SF))  # 10000 >= free_shipping_over
    assert {o.amount for o in quote.fulfillment_options} == {0}


def test_shipping_tax(tmp_path: pathlib.Path) -> None:
    adapter = custom(tmp_path, feed_doc(a=1000), store_doc(tax_shipping=True))
    (option,) = adapter.quote(request(("a", 1), address=SF)).fulfillment_options
    assert (option.amount, option.tax) == (500, 44)  # 43.75 -> 44


def test_digital_only_needs_no_address(demo: CatalogAdapter) -> None:
    quote = demo.quote(request(("ebook_field_guide", 1), ("gift_card_50", 2)))
    assert not quote.needs_fulfillment_details
    assert quote.messages == ()
    (option,) = quote.fulfillment_options
    assert (option.type, option.id, option.amount, option.title) == (
        "digital", "digital", 0, "Delivered by e-mail")
    assert option.item_ids == ("ebook_field_guide", "gift_card_50")
    assert [line.requires_shipping for line in quote.lines] == [False, False]
    assert [line.available_quantity for line in quote.lines] == [None, None]  # unlimited
    assert Totals.of(quote).total == 999 + 10000


def test_mixed_cart_gets_shipping_and_digital(demo: CatalogAdapter) -> None:
    quote = demo.quote(request(("tee_red_m", 1), ("ebook_field_guide", 1), address=SF))
    assert [(s.type, s.item_ids) for s in quote.selected_fulfillment_options] == [
        ("digital", ("ebook_field_guide",)), ("shipping", ("tee_red_m",))]


def test_message_keys_cover_what_the_adapter_says(demo: CatalogAdapter) -> None:
    keys = dict(MESSAGE_KEYS)
    quotes = [
        demo.quote(request(("nope", 1), ("tee_navy_s", 1), ("tee_red_l", 1), ("tee_red_m", 11))),
        demo.quote(request(("tee_red_m", 1), address=PARIS)),
        demo.quote(request(("tee_red_m", 1), currency="eur")),
        demo.quote(request(("tee_red_m", 1), address=SF,
                           selected=(SelectedFulfillmentOption(type="shipping", option_id="x"),))),
    ]
    seen: set[str] = set()
    for quote in quotes:
        for message in quote.messages:
            assert isinstance(message, Message)
            assert message.text_key in keys
            assert set(message.text_args) == set(keys[message.text_key])
            seen.add(message.text_key)
    assert seen == set(keys)


def test_line_item_id() -> None:
    assert line_item_id("tee_red_m") == "li_" + hashlib.sha256(b"tee_red_m").hexdigest()[:12]


# --- holds --------------------------------------------------------------------------


def test_quote_replaces_the_hold_of_its_session(demo: CatalogAdapter) -> None:
    assert demo.quote(request(("tee_red_l", 3), address=SF)).lines[0].purchasable
    assert demo.quote(request(("tee_red_l", 3), address=SF)).lines[0].purchasable  # not added
    assert demo.ledger.held("cs_1") == {"tee_red_l": 3}
    other = demo.quote(request(("tee_red_l", 1), session="cs_2", address=SF))
    assert errors(other) == [("out_of_stock", "$.line_items[0].item.id")]
    assert other.lines[0].available_quantity == 0

    demo.quote(request(("tee_red_l", 1), address=SF))  # cs_1 shrinks its hold
    assert demo.ledger.held("cs_1") == {"tee_red_l": 1}
    other = demo.quote(request(("tee_red_l", 2), session="cs_2", address=SF))
    assert other.lines[0].purchasable


def test_expired_hold_releases_stock(tmp_path: pathlib.Path) -> None:
    clock = Clock()
    adapter = CatalogAdapter(DEMO_FEED, DEMO_STORE, tmp_path / "db.sqlite3", clock=clock)
    adapter.quote(request(("tee_red_l", 3), address=SF, expires_at=NOW + dt.timedelta(minutes=10)))
    assert not adapter.quote(request(("tee_red_l", 1), session="cs_2")).lines[0].purchasable
    clock.now = NOW + dt.timedelta(minutes=10, seconds=1)
    assert adapter.quote(request(("tee_red_l", 3), session="cs_2", address=SF,
                                 expires_at=clock.now + dt.timedelta(hours=1))).lines[0].purchasable


def test_release_is_idempotent(demo: CatalogAdapter) -> None:
    req = request(("tee_red_l", 3), address=SF)
    session = session_of(req, demo.quote(req))
    demo.release(session)
    assert demo.ledger.held("cs_1") == {}
    demo.release(session)
    assert demo.quote(request(("tee_red_l", 3), session="cs_2", address=SF)).lines[0].purchasable


def _quote_worker(feed: str, store: str, db: str, session_id: str, quantity: int,
                  barrier: t.Any, results: t.Any) -> None:
    adapter = CatalogAdapter(feed, store, db)
    req = request(("a", quantity), session=session_id, address=SF,
                  expires_at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))
    barrier.wait()
    results.put((session_id, adapter.quote(req).lines[0].purchasable))


def _place_worker(feed: str, store: str, db: str, session_id: str,
                  barrier: t.Any, results: t.Any) -> None:
    adapter = CatalogAdapter(feed, store, db)
    # a hold that is already expired: every session sees the unit as free
    req = request(("a", 1), session=session_id, address=SF,
                  expires_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1))
    quote = adapter.quote(req)
    assert quote.lines[0].purchasable
    barrier.wait()
    try:
        order = adapter.place_order(session_of(req, quote), payment(1000))
    except AdapterRejectedError:
        results.put((session_id, None))
    else:
        results.put((session_id, order.id))


def _run(target: t.Callable[..., None], args: list[tuple[t.Any, ...]]) -> list[t.Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(args))
    results = ctx.Queue()
    processes = [ctx.Process(target=target, args=(*a, barrier, results)) for a in args]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return outcomes


def test_processes_racing_for_the_last_units(tmp_path: pathlib.Path) -> None:
    feed = str(write(tmp_path / "feed.json", feed_doc(a=1000)))
    store = str(write(tmp_path / "store.json", store_doc(stock={"a": 2})))
    db = str(tmp_path / "race.sqlite3")
    outcomes = _run(_quote_worker, [(feed, store, db, f"cs_{n}", 1) for n in range(6)])
    winners = [session for session, won in outcomes if won]
    assert len(winners) == 2
    ledger = CatalogAdapter(feed, store, db).ledger
    assert sum(sum(ledger.held(f"cs_{n}").values()) for n in range(6)) == 2


def test_processes_racing_to_place_orders_for_the_last_unit(tmp_path: pathlib.Path) -> None:
    feed = str(write(tmp_path / "feed.json", feed_doc(a=1000)))
    store = str(write(tmp_path / "store.json", store_doc(stock={"a": 1})))
    db = str(tmp_path / "race.sqlite3")
    outcomes = _run(_place_worker, [(feed, store, db, f"cs_{n}") for n in range(4)])
    orders = [order for _session, order in outcomes if order is not None]
    assert len(orders) == 1
    assert CatalogAdapter(feed, store, db).ledger.sold("a") == 1


# --- orders -------------------------------------------------------------------------


def test_place_order_is_idempotent(demo: CatalogAdapter) -> None:
    req = request(("tee_red_m", 2), address=SF)
    session = session_of(req, demo.prepare_order(session_of(req, demo.quote(req)), hold_until=NOW))
    first = demo.place_order(session, payment(Totals.of(session.quote).total))
    second = demo.place_order(session, payment(Totals.of(session.quote).total))
    assert first == second
    assert first.id.startswith("ord_")
    assert first.checkout_session_id == "cs_1"
    assert first.order_number == "#1001"
    assert first.permalink_url == f"https://shop.example/orders/{first.id}"
    assert demo.ledger.sold("tee_red_m") == 2
    assert demo.ledger.held("cs_1") == {}
    assert demo.quote(request(("tee_red_m", 1), session="cs_2")).lines[0].available_quantity == 23

    req2 = request(("mug_white", 1), session="cs_2", address=SF)
    order2 = demo.place_order(session_of(req2, demo.quote(req2)), payment(1000))
    assert order2.order_number == "#1002"
    assert order2.id != first.id


def test_place_order_after_hold_expired(tmp_path: pathlib.Path) -> None:
    clock = Clock()
    adapter = CatalogAdapter(DEMO_FEED, DEMO_STORE, tmp_path / "db.sqlite3", clock=clock)
    soon = NOW + dt.timedelta(minutes=5)
    late = request(("tee_red_l", 3), address=SF, expires_at=soon)
    late_session = session_of(late, adapter.quote(late))
    fine = request(("mug_white", 1), session="cs_fine", address=SF, expires_at=soon)
    fine_session = session_of(fine, adapter.quote(fine))

    clock.now = soon + dt.timedelta(seconds=1)
    rival = request(("tee_red_l", 3), session="cs_rival", address=SF,
                    expires_at=clock.now + dt.timedelta(hours=1))
    assert adapter.quote(rival).lines[0].purchasable  # the expired hold no longer counts
    with pytest.raises(AdapterRejectedError, match="tee_red_l"):
        adapter.place_order(late_session, payment(7500))
    assert adapter.ledger.sold("tee_red_l") == 0

    # the stock is still there for the other expired hold: the order goes through
    assert adapter.place_order(fine_session, payment(1800)).order_number == "#1001"
    assert adapter.ledger.sold("mug_white") == 1


def test_place_order_without_purchasable_lines_is_rejected(demo: CatalogAdapter) -> None:
    req = request(("nope", 1), address=SF)
    with pytest.raises(AdapterRejectedError):
        demo.place_order(session_of(req, demo.quote(req)), payment(0))


def test_prepare_order_requotes_stored_inputs(demo: CatalogAdapter) -> None:
    express = SelectedFulfillmentOption(type="shipping", option_id="us_express")
    req = request(("tee_red_m", 1), address=SF, selected=(express,))
    quote = demo.quote(req)
    assert demo.prepare_order(session_of(req, quote), hold_until=NOW) == quote


def test_jsonl_feed_with_broken_json_names_the_line(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "feed.ndjson"
    path.write_text('{"id": "p", "variants": []}\n{"id": oops}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: invalid JSON"):
        load_feed(path)


def test_prepare_order_holds_the_stock_until_the_charge_can_end(tmp_path: pathlib.Path) -> None:
    """A session completing just before it expires: ``prepare_order`` holds its
    units until ``hold_until`` (the end of the charge's budget), so a session
    created while the charge runs cannot take them (the buyer being charged
    then refunded for an item another took)."""
    clock = Clock()
    adapter = CatalogAdapter(DEMO_FEED, DEMO_STORE, tmp_path / "db.sqlite3", clock=clock)
    soon = NOW + dt.timedelta(seconds=30)
    mine = request(("tee_red_l", 3), address=SF, expires_at=soon)
    session = session_of(mine, adapter.quote(mine))
    prepared = adapter.prepare_order(session, hold_until=NOW + dt.timedelta(minutes=7))

    clock.now = soon + dt.timedelta(minutes=1)  # the session expired while its charge ran
    rival = request(("tee_red_l", 3), session="cs_rival", address=SF,
                    expires_at=clock.now + dt.timedelta(hours=1))
    assert not adapter.quote(rival).lines[0].purchasable
    assert adapter.place_order(session_of(mine, prepared), payment(7500)).order_number == "#1001"
    assert adapter.ledger.sold("tee_red_l") == 3
