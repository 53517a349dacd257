"""Property tests of the totals arithmetic on rendered sessions (ACP 2026-04-17).

Random carts (items, quantities, address, chosen shipping option) go through
the HTTP API; every rendered session must obey the arithmetic all consistent
spec examples follow (digest §8, "Arithmetic"):

- per line: ``subtotal == base - discount`` and ``total == subtotal + tax``;
- session: ``subtotal == items_base_amount - items_discount`` and
  ``total == subtotal - discount + fulfillment + tax + fee`` (absent = 0);
- the session sums its lines, and ``fulfillment`` / ``tax`` include the
  selected options; every amount is an integer.

The store (``tests/data/totals_store.json``) has unlimited stock, so carts
never run out; odd tax rates (7.25 %, 4 %, 13 %) and taxed shipping make the
rounding visible. Each session is canceled after the checks.
"""

from __future__ import annotations

import decimal
import typing as t

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from tests.conftest import DATA
from tests.conftest import Agent
from tests.conftest import build_app

#: item id -> unit price in the feed; ``None``: never purchasable.
PRICES: dict[str, int | None] = {
    "item_123": 300, "item_456": 1250, "last_unit": 4999, "ebook": 999,
    "sold_out": None, "no_such_item": None,
}
MAX_PER_ORDER = 10
ADDRESSES = {
    "US-CA": {"name": "Ada", "line_one": "1 Main St", "city": "San Francisco", "state": "CA",
              "country": "US", "postal_code": "94131"},
    "US-NY": {"name": "Ada", "line_one": "1 Broadway", "city": "New York", "state": "NY",
              "country": "US", "postal_code": "10004"},
    "CA": {"name": "Ada", "line_one": "1 Queen St", "city": "Toronto", "state": "ON",
           "country": "CA", "postal_code": "M5H 2N2"},
}
#: tax rates of totals_store.json by address key.
RATES = {"US-CA": decimal.Decimal("0.0725"), "US-NY": decimal.Decimal("0.04"),
         "CA": decimal.Decimal("0.13"), None: decimal.Decimal(0)}
SESSION_TYPES = {"items_base_amount", "items_discount", "subtotal", "discount", "fulfillment",
                 "tax", "fee", "total"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> FlaskClient:
    app: Flask = build_app(tmp_path_factory.mktemp("totals"),
                           ACP_STORE_FILE=str(DATA / "totals_store.json"))
    return app.test_client()


def half_up(amount: int, rate: decimal.Decimal) -> int:
    return int((amount * rate).quantize(decimal.Decimal(1), rounding=decimal.ROUND_HALF_UP))


def amounts(totals: list[dict[str, t.Any]]) -> dict[str, int]:
    types = [entry["type"] for entry in totals]
    assert len(types) == len(set(types)), f"duplicate total types: {types}"
    for entry in totals:
        assert type(entry["amount"]) is int, entry  # not float, not bool
        assert entry["amount"] >= 0, entry
        assert isinstance(entry["display_text"], str)
        assert entry["display_text"]
    return {entry["type"]: entry["amount"] for entry in totals}


def check_totals(session: dict[str, t.Any], cart: dict[str, int], region: str | None) -> None:
    rate = RATES[region]
    line_sums = {"base": 0, "discount": 0, "tax": 0}
    assert [li["item"]["id"] for li in session["line_items"]] == list(cart)
    for line in session["line_items"]:
        got = amounts(line["totals"])
        base = got["items_base_amount"] if "items_base_amount" in got else got["base_amount"]
        discount = got.get("discount", 0)
        assert got["subtotal"] == base - discount
        assert got["total"] == got["subtotal"] + got["tax"]
        assert type(line["quantity"]) is int
        assert type(line["unit_amount"]) is int
        item, quantity = line["item"]["id"], line["quantity"]
        assert quantity == cart[item]
        price = PRICES[item]
        if price is not None and quantity <= MAX_PER_ORDER:
            assert line["unit_amount"] == price
            assert base == price * quantity
            assert got["tax"] == half_up(got["subtotal"], rate)
        else:  # not purchasable: counts for nothing
            assert base == discount == got["tax"] == got["total"] == 0
        line_sums["base"] += base
        line_sums["discount"] += discount
        line_sums["tax"] += got["tax"]

    got = amounts(session["totals"])
    assert set(got) <= SESSION_TYPES, got
    assert {"items_base_amount", "subtotal", "tax", "total"} <= set(got)
    items_discount = got.get("items_discount", 0)
    assert got["subtotal"] == got["items_base_amount"] - items_discount
    assert got["total"] == (got["subtotal"] - got.get("discount", 0) + got.get("fulfillment", 0)
                            + got["tax"] + got.get("fee", 0))
    assert got["items_base_amount"] == line_sums["base"]
    assert items_discount == line_sums["discount"]

    # Fulfillment: the selected options' own amounts; their tax is in the session tax.
    options = {o["id"]: amounts(o["totals"]) for o in session["fulfillment_options"]}
    for option in options.values():
        assert option["total"] == option.get("subtotal", option["total"]) + option.get("tax", 0)
    chosen = [s["option_id"] for s in session.get("selected_fulfillment_options", [])]
    assert set(chosen) <= set(options), (chosen, list(options))
    fulfillment = sum(options[o].get("subtotal", options[o]["total"]) for o in set(chosen))
    option_tax = sum(options[o].get("tax", 0) for o in set(chosen))
    assert got.get("fulfillment", 0) == fulfillment
    assert ("fulfillment" in got) == bool(chosen)
    assert got["tax"] == line_sums["tax"] + option_tax
    for option_id in set(chosen):
        pre_tax = options[option_id].get("subtotal", options[option_id]["total"])
        assert options[option_id].get("tax", 0) == half_up(pre_tax, rate)


carts = st.dictionaries(st.sampled_from(sorted(PRICES)), st.integers(min_value=1, max_value=12),
                        min_size=1, max_size=4)
regions = st.sampled_from([None, "US-CA", "US-NY", "CA"])
choices = st.sampled_from([None, "fulfillment_option_123", "fulfillment_option_456", "intl"])


@settings(max_examples=50, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(cart=carts, region=regions, choice=choices, new_cart=st.none() | carts)
def test_rendered_totals_add_up(client: FlaskClient, cart: dict[str, int], region: str | None,
                                choice: str | None, new_cart: dict[str, int] | None) -> None:
    agent = Agent(client)
    fields: dict[str, t.Any] = {}
    if region is not None:
        fields["fulfillment_details"] = {"address": ADDRESSES[region]}
    response = agent.create([{"id": i, "quantity": q} for i, q in cart.items()], **fields)
    assert response.status_code == 201, response.get_json()
    session = response.get_json()
    check_totals(session, cart, region)
    sid = session["id"]

    update: dict[str, t.Any] = {}
    if choice is not None:
        update["selected_fulfillment_options"] = [{"type": "shipping", "option_id": choice}]
    if new_cart is not None:
        update["line_items"] = [{"id": i, "quantity": q} for i, q in new_cart.items()]
    if update:
        response = agent.post(f"/checkout_sessions/{sid}", update)
        assert response.status_code == 200, response.get_json()
        session = response.get_json()
        check_totals(session, new_cart or cart, region)
        if choice is not None and choice in {o["id"] for o in session["fulfillment_options"]}:
            assert choice in {s["option_id"] for s in session["selected_fulfillment_options"]}

    response = agent.post(f"/checkout_sessions/{sid}/cancel")
    assert response.status_code == 200
    canceled = response.get_json()
    assert canceled["status"] == "canceled"
    check_totals(canceled, new_cart or cart, region)
