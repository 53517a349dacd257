"""The WooCommerce adapter through the ACP API, against FakeWooCommerce over real sockets.

Every test builds the app with ``ACP_ADAPTER="woocommerce"`` and ``WOOCOMMERCE_*``
pointing at a loopback FakeWooCommerce, a FakePaymentProcessor, and drives it
with the schema-validating test client. No mocks.
"""

from __future__ import annotations

import collections.abc as cabc
import concurrent.futures
import dataclasses
import json
import pathlib
import subprocess
import sys
import typing as t

import pytest
from flask import Flask

from flask_acp.testing import FakePaymentProcessor
from flask_acp.testing.fake_woocommerce import DEMO_SEED
from flask_acp.testing.fake_woocommerce import FakeWooCommerce
from flask_acp_adapters.woocommerce import WooCommerceAdapter
from tests.conftest import ADDRESS
from tests.conftest import Agent
from tests.conftest import build_app

DATA = pathlib.Path(__file__).parent / "data"
BUYER = {"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace"}
JP_ADDRESS = {"name": "Hanako Yamada", "line_one": "1-1 Chiyoda", "city": "Tokyo", "state": "JP13",
              "country": "JP", "postal_code": "100-0001"}
KW_ADDRESS = {"name": "Fatima Al-Sabah", "line_one": "Block 3, Street 12", "city": "Kuwait City",
              "state": "KW", "country": "KW", "postal_code": "13001"}
DE_ADDRESS = {"name": "Erika Mustermann", "line_one": "Hauptstr. 1", "city": "Berlin", "state": "BE",
              "country": "DE", "postal_code": "10115"}
PUT_ORDER = "PUT /wc/v3/orders/{id}"
GET_ORDER = "GET /wc/v3/orders/{id}"


@dataclasses.dataclass
class Shop:
    """An app wired to a FakeWooCommerce, with an agent and the processor."""

    app: Flask
    woo: FakeWooCommerce
    processor: FakePaymentProcessor
    agent: Agent
    #: the calls made inside batches, as of the last :meth:`calls`
    batched: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def adapter(self) -> WooCommerceAdapter:
        adapter = self.app.extensions["acp"].adapter
        assert isinstance(adapter, WooCommerceAdapter)
        return adapter

    def create(self, items: list[dict[str, t.Any]], *, address: dict[str, str] | None = ADDRESS,
               currency: str = "usd", **fields: t.Any) -> dict[str, t.Any]:
        if address is not None:
            fields["fulfillment_details"] = {"name": address["name"], "address": address}
        fields.setdefault("buyer", BUYER)
        response = self.agent.create(items, currency=currency, **fields)
        assert response.status_code == 201, response.get_json()
        return t.cast(dict[str, t.Any], response.get_json())

    def update(self, sid: str, **body: t.Any) -> dict[str, t.Any]:
        response = self.agent.post(f"/checkout_sessions/{sid}", body)
        assert response.status_code == 200, response.get_json()
        return t.cast(dict[str, t.Any], response.get_json())

    def complete(self, sid: str, token: str = "spt_ok") -> dict[str, t.Any]:
        response = self.agent.complete(sid, token)
        assert response.status_code == 200, response.get_json()
        return t.cast(dict[str, t.Any], response.get_json())

    def cancel(self, sid: str) -> dict[str, t.Any]:
        response = self.agent.post(f"/checkout_sessions/{sid}/cancel", {})
        assert response.status_code == 200, response.get_json()
        return t.cast(dict[str, t.Any], response.get_json())

    def calls(self) -> dict[str, int]:
        """The fake's call counts since the last call of this method."""
        counts, self.batched = self.woo.counts, self.woo.batched_counts
        self.woo.reset_counts()
        return counts


@pytest.fixture
def seed() -> t.Any:
    """The store seed: the demo store unless a test overrides this fixture."""
    return DEMO_SEED


@pytest.fixture
def woo(seed: t.Any) -> cabc.Iterator[FakeWooCommerce]:
    with FakeWooCommerce(seed) as fake:
        yield fake
        assert fake.server_errors == []


def open_shop(tmp_path: pathlib.Path, woo: FakeWooCommerce, **config: t.Any) -> Shop:
    processor = FakePaymentProcessor(str(tmp_path / "ledger.sqlite3"))
    app = build_app(tmp_path, payment_processor=processor, **woo.config(**config))
    return Shop(app, woo, processor, Agent(app.test_client()))


@pytest.fixture
def shop(tmp_path: pathlib.Path, woo: FakeWooCommerce) -> cabc.Iterator[Shop]:
    opened = open_shop(tmp_path, woo)
    yield opened
    opened.adapter.close()


def total(session: dict[str, t.Any], kind: str = "total") -> int:
    return int(next((e["amount"] for e in session["totals"] if e["type"] == kind), 0))


def codes(session: dict[str, t.Any]) -> list[tuple[str, str | None]]:
    return [(m["type"], m.get("code")) for m in session["messages"]]


def line_total(line: dict[str, t.Any], kind: str) -> int:
    return int(next(e["amount"] for e in line["totals"] if e["type"] == kind))


# --- full purchases in several currencies ------------------------------------------------


def test_usd_purchase_create_update_complete_with_call_counts(shop: Shop) -> None:
    woo = shop.woo
    session = shop.create([{"id": "10", "quantity": 2}, {"id": "12"}])
    assert session["status"] == "ready_for_payment", session["messages"]
    assert shop.calls() == {"GET /wc/store/v1/cart": 1, "POST /wc/store/v1/batch": 1,
                            "GET /wc/store/v1/checkout": 1}
    assert shop.batched == {"POST /wc/store/v1/cart/add-item": 2,
                                  "POST /wc/store/v1/cart/update-customer": 1}
    beanie, album = session["line_items"]
    # Beanie 2 x 18.00, CA 8.25 % = 2.97; Album on sale 9.99 (+0.82 tax), digital
    assert (beanie["item"]["id"], beanie["unit_amount"], line_total(beanie, "tax")) == ("10", 1800, 297)
    assert (album["unit_amount"], line_total(album, "tax")) == (999, 82)
    options = {o["id"]: o for o in session["fulfillment_options"]}
    assert set(options) == {"0:flat_rate:1", "0:flat_rate:3", "digital"}
    assert options["0:flat_rate:1"]["type"] == "shipping"
    assert options["digital"]["type"] == "digital"
    selected = {s["option_id"]: s["item_ids"] for s in session["selected_fulfillment_options"]}
    assert selected == {"0:flat_rate:1": ["10"], "digital": ["12"]}
    # 3600 + 999 + flat rate 500 + tax (297 + 82 + 41) = 5519: WooCommerce's total_price
    assert total(session) == 5519
    assert woo.held(10) == 2

    session = shop.update(session["id"], selected_fulfillment_options=[
        {"type": "shipping", "option_id": "0:flat_rate:3", "item_ids": ["10"]}])
    assert session["status"] == "ready_for_payment"
    assert (total(session, "fulfillment"), total(session)) == (1500, 6602)
    assert shop.calls() == {"POST /wc/store/v1/batch": 1, "GET /wc/store/v1/checkout": 1}

    done = shop.complete(session["id"])
    assert done["status"] == "completed", done["messages"]
    assert shop.calls() == {"GET /wc/store/v1/cart": 1, "GET /wc/store/v1/checkout": 1,
                            GET_ORDER: 1, PUT_ORDER: 2, "DELETE /wc/store/v1/cart/items": 1}
    order_id = int(done["order"]["id"])
    order = woo.order(order_id)
    charge, = shop.processor.charges()
    assert (order["status"], order["total"], order["currency"]) == ("processing", "66.02", "USD")
    assert order["transaction_id"] == charge["payment_id"]
    assert charge["amount"] == 6602 == total(done)
    assert order["payment_method"] == "acp"
    assert order["date_paid"]
    meta = {m["key"]: m["value"] for m in order["meta_data"]}
    assert meta["_acp_checkout_session_id"] == session["id"]
    assert done["order"]["permalink_url"] == (
        f"{woo.url}/checkout/order-received/{order_id}/?key={order['order_key']}")
    assert done["order"]["order_number"] == str(order_id)
    assert (woo.stock(10), woo.held(10)) == (23, 0)


def test_jpy_store_with_zero_decimals(tmp_path: pathlib.Path) -> None:
    with FakeWooCommerce(DATA / "woocommerce_jpy0.json") as woo:
        shop = open_shop(tmp_path, woo)
        try:
            session = shop.create([{"id": "21"}, {"id": "22"}], address=JP_ADDRESS, currency="jpy")
            assert session["status"] == "ready_for_payment", session["messages"]
            # ¥1500 + 10 % = 150; ¥1234 + 8 % = 98.72 -> 99 (the store rounds); shipping 500 + 50
            assert [line["unit_amount"] for line in session["line_items"]] == [1500, 1234]
            assert total(session, "tax") == 150 + 99 + 50
            assert total(session) == 1500 + 1234 + 500 + 299
            done = shop.complete(session["id"])
            assert done["status"] == "completed"
            assert shop.processor.charges()[0]["amount"] == 3533
            assert woo.order(int(done["order"]["id"]))["total"] == "3533"
        finally:
            shop.adapter.close()


def test_jpy_store_misconfigured_with_two_decimals(tmp_path: pathlib.Path) -> None:
    """Store API says currency_minor_unit 2 for JPY: whole-yen amounts are rescaled
    and sold; a cart with sub-yen amounts (8 % of ¥1234 = ¥98.72) is refused."""
    with FakeWooCommerce(DATA / "woocommerce_jpy2.json") as woo:
        shop = open_shop(tmp_path, woo)
        try:
            session = shop.create([{"id": "21", "quantity": 2}], address=JP_ADDRESS, currency="jpy")
            assert session["status"] == "ready_for_payment", session["messages"]
            assert session["line_items"][0]["unit_amount"] == 1500  # "150000" at 2 decimals
            assert total(session) == 3000 + 300 + 500 + 50
            done = shop.complete(session["id"])
            assert done["status"] == "completed"
            assert shop.processor.charges()[0]["amount"] == 3850
            assert woo.order(int(done["order"]["id"]))["total"] == "3850.00"

            refused = shop.create([{"id": "22"}], address=JP_ADDRESS, currency="jpy")
            assert refused["status"] == "not_ready_for_payment"
            assert codes(refused) == [("error", "invalid")]
            message = refused["messages"][0]
            assert message["param"] == "$.currency"
            assert "JPY 98.72" in message["content"]
            assert "decimals" in message["content"]
            assert total(refused) == 0
            assert shop.agent.complete(refused["id"]).get_json()["status"] == "not_ready_for_payment"
            assert len(shop.processor.charges()) == 1
        finally:
            shop.adapter.close()


def test_kwd_store_three_decimals_with_digital_item(tmp_path: pathlib.Path) -> None:
    with FakeWooCommerce(DATA / "woocommerce_kwd.json") as woo:
        shop = open_shop(tmp_path, woo)
        try:
            session = shop.create([{"id": "31", "quantity": 2}, {"id": "32"}], address=KW_ADDRESS,
                                  currency="kwd")
            assert session["status"] == "ready_for_payment", session["messages"]
            assert [line["unit_amount"] for line in session["line_items"]] == [12500, 3750]
            assert total(session) == 25000 + 3750 + 2000
            done = shop.complete(session["id"])
            assert done["status"] == "completed"
            assert shop.processor.charges()[0]["amount"] == 30750
            assert woo.order(int(done["order"]["id"]))["total"] == "30.750"
        finally:
            shop.adapter.close()


def test_kwd_store_total_not_ending_in_zero_is_not_payable(tmp_path: pathlib.Path) -> None:
    """Stripe charges KWD only in amounts whose last digit is 0: a WooCommerce
    total of 30.755 KWD keeps the session not_ready_for_payment (the core's
    check, for every adapter) and is never charged; 30.750 KWD is payable."""
    with FakeWooCommerce(DATA / "woocommerce_kwd.json") as woo:
        woo.set_price(32, "3.755")
        shop = open_shop(tmp_path, woo)
        try:
            session = shop.create([{"id": "31", "quantity": 2}, {"id": "32"}], address=KW_ADDRESS,
                                  currency="kwd")
            assert total(session) == 25000 + 3755 + 2000
            assert session["status"] == "not_ready_for_payment"
            (error,) = [m for m in session["messages"] if m["type"] == "error"]
            assert (error["code"], error["param"]) == ("invalid", "$.totals")
            assert "30.755 KWD" in error["content"]
            assert "multiple of 0.010" in error["content"]
            assert shop.agent.complete(session["id"]).get_json()["status"] == "not_ready_for_payment"
            assert shop.processor.charges() == []
            woo.set_price(32, "3.750")
            fixed = shop.update(session["id"], line_items=[{"id": "31", "quantity": 2}, {"id": "32"}])
            assert (total(fixed), fixed["status"]) == (30750, "ready_for_payment"), fixed["messages"]
            assert shop.complete(session["id"])["status"] == "completed"
            assert shop.processor.charges()[0]["amount"] == 30750
        finally:
            shop.adapter.close()


def test_tax_inclusive_store_rounding_and_packages(tmp_path: pathlib.Path) -> None:
    """EUR, prices incl. 19 % VAT, tax rounded at subtotal, an automatic 15 % coupon,
    a taxable fee, two shipping packages: the session total is WooCommerce's."""
    with FakeWooCommerce(DATA / "woocommerce_eu_incl.json") as woo:
        shop = open_shop(tmp_path, woo)
        try:
            session = shop.create([{"id": "41", "quantity": 3}, {"id": "42"}, {"id": "43", "quantity": 7}],
                                  address=DE_ADDRESS, currency="eur")
            assert session["status"] == "ready_for_payment", session["messages"]
            cart = woo_cart_total(woo)
            assert total(session) == cart
            lines = session["line_items"]
            for line in lines:  # ACP invariants per line
                assert line_total(line, "items_base_amount") == line["unit_amount"] * line["quantity"]
                assert line_total(line, "subtotal") == (line_total(line, "items_base_amount")
                                                        - line_total(line, "discount"))
                assert line_total(line, "discount") > 0  # HERBST15 applied by the store
            packages = {o["id"].split(":")[0] for o in session["fulfillment_options"]}
            assert packages == {"0", "1"}  # letter and parcel
            chosen = {s["option_id"] for s in session["selected_fulfillment_options"]}
            assert chosen == {"0:flat_rate:1", "1:flat_rate:1"}
            session = shop.update(session["id"], selected_fulfillment_options=[
                {"type": "shipping", "option_id": "1:local_pickup:2", "item_ids": []}])
            assert {s["option_id"] for s in session["selected_fulfillment_options"]} == {
                "0:flat_rate:1", "1:local_pickup:2"}
            assert total(session) == woo_cart_total(woo)
            done = shop.complete(session["id"])
            assert done["status"] == "completed"
            assert shop.processor.charges()[0]["amount"] == total(session)
        finally:
            shop.adapter.close()


def woo_cart_total(woo: FakeWooCommerce) -> int:
    """The total of the checkout-draft order WooCommerce made for the last session."""
    order = woo.order(t.cast(int, woo.last_order_id()), dp=2)
    return int(order["total"].replace(".", ""))


# --- coupons, messages, stock -------------------------------------------------------------


def test_coupon_the_store_applies_automatically(shop: Shop) -> None:
    session = shop.create([{"id": "11", "quantity": 2}])  # 90.00 >= SPEND50's 50.00 minimum
    assert session["status"] == "ready_for_payment"
    hoodie, = session["line_items"]
    assert line_total(hoodie, "items_base_amount") == 9000
    assert line_total(hoodie, "discount") == 500
    assert total(session, "items_discount") == 500
    # (9000 - 500) * 8.25 % = 701.25 -> 701; flat rate 500 + 41
    assert total(session) == 8500 + 701 + 500 + 41
    done = shop.complete(session["id"])
    order = shop.woo.order(int(done["order"]["id"]))
    assert order["coupon_lines"][0]["code"] == "SPEND50"
    assert (order["discount_total"], order["total"]) == ("5.00", "97.42")

    below = shop.create([{"id": "10"}])  # 18.00: no automatic coupon
    assert total(below, "items_discount") == 0


def test_cart_errors_become_messages(shop: Shop) -> None:
    session = shop.create([{"id": "14", "quantity": 2}])
    assert session["status"] == "ready_for_payment"
    shop.woo.set_stock(14, 1)  # the merchant sold some elsewhere
    shop.woo.advance_clock(11 * 60)  # our hold ran out
    session = shop.update(session["id"], buyer=BUYER)
    assert session["status"] == "not_ready_for_payment"
    assert ("error", "out_of_stock") in codes(session)
    assert any("Sunglasses" in m["content"] for m in session["messages"])
    assert shop.agent.complete(session["id"]).get_json()["status"] == "not_ready_for_payment"
    assert shop.processor.charges() == []


def test_add_item_refusals_name_the_product_and_the_available_quantity(shop: Shop) -> None:
    session = shop.create([{"id": "14", "quantity": 5}, {"id": "15"}, {"id": "999"}, {"id": "cap"}])
    assert session["status"] == "not_ready_for_payment"
    by_param = {m["param"]: (m["code"], m["content"]) for m in session["messages"]}
    assert by_param["$.line_items[0].quantity"] == (
        "quantity_exceeded", "Only 3 of 'Sunglasses' can be ordered.")
    assert by_param["$.line_items[1].item.id"] == (
        "out_of_stock", "'Discontinued Cap' is currently out of stock.")
    assert by_param["$.line_items[2].item.id"] == ("not_found", "The item '999' does not exist.")
    assert by_param["$.line_items[3].item.id"] == ("not_found", "The item 'cap' does not exist.")
    assert total(session) == 0
    assert shop.calls()["GET /wc/store/v1/products"] == 1  # one look-up for the names

    session = shop.update(session["id"], line_items=[{"id": "14", "quantity": 3}])
    assert session["status"] == "ready_for_payment", session["messages"]
    assert total(session, "items_base_amount") == 27000


def test_currency_the_store_does_not_sell_in(shop: Shop) -> None:
    session = shop.create([{"id": "10"}], currency="eur")
    assert session["status"] == "not_ready_for_payment"
    assert session["messages"][0]["code"] == "unsupported"
    assert "'eur'" in session["messages"][0]["content"]
    assert shop.calls() == {"GET /wc/store/v1/cart": 1}


def test_address_required_then_given_then_unshippable(shop: Shop) -> None:
    session = shop.create([{"id": "10"}], address=None)
    assert session["status"] == "not_ready_for_payment"
    assert codes(session) == [("error", "missing")]
    assert session["messages"][0]["param"] == "$.fulfillment_details.address"
    session = shop.update(session["id"], fulfillment_details={"name": "Ada", "address": ADDRESS})
    assert session["status"] == "ready_for_payment", session["messages"]
    paris = {**ADDRESS, "country": "FR", "state": "IDF", "city": "Paris", "postal_code": "75001"}
    session = shop.update(session["id"], fulfillment_details={"name": "Ada", "address": paris})
    assert session["status"] == "not_ready_for_payment"
    assert codes(session) == [("error", "region_restricted")]
    assert session["messages"][0]["content"] == "This store does not ship to FR."


def test_digital_only_session_needs_no_address(shop: Shop) -> None:
    session = shop.create([{"id": "12", "quantity": 2}], address=None)
    assert session["status"] == "ready_for_payment", session["messages"]
    assert [o["id"] for o in session["fulfillment_options"]] == ["digital"]
    done = shop.complete(session["id"])
    assert shop.woo.order(int(done["order"]["id"]))["status"] == "completed"  # virtual + downloadable


def test_unknown_fulfillment_option(shop: Shop) -> None:
    session = shop.create([{"id": "10"}])
    session = shop.update(session["id"], selected_fulfillment_options=[
        {"type": "shipping", "option_id": "0:nope:9", "item_ids": []}])
    assert session["status"] == "not_ready_for_payment"
    assert codes(session) == [("error", "invalid")]
    assert session["messages"][0]["content"] == "The fulfillment option '0:nope:9' is not available."
    session = shop.update(session["id"], selected_fulfillment_options=[
        {"type": "shipping", "option_id": "0:flat_rate:3", "item_ids": []}])
    assert session["status"] == "ready_for_payment"


def test_update_changes_quantities_and_removes_lines(shop: Shop) -> None:
    session = shop.create([{"id": "10"}, {"id": "11"}])
    shop.calls()
    session = shop.update(session["id"], line_items=[{"id": "10", "quantity": 4}, {"id": "14"}])
    assert session["status"] == "ready_for_payment"
    assert [(li["item"]["id"], li["quantity"]) for li in session["line_items"]] == [("10", 4), ("14", 1)]
    assert shop.calls() == {"POST /wc/store/v1/batch": 1, "GET /wc/store/v1/checkout": 1}
    assert shop.batched == {"POST /wc/store/v1/cart/remove-item": 1,
                                       "POST /wc/store/v1/cart/update-item": 1,
                                       "POST /wc/store/v1/cart/add-item": 1}
    assert (shop.woo.held(10), shop.woo.held(11), shop.woo.held(14)) == (4, 0, 1)


# --- completion safety -------------------------------------------------------------------


def test_concurrent_race_for_the_last_unit(shop: Shop) -> None:
    """Two agents buy the last poster at the same time: one order, one charge."""
    def buy(n: int) -> dict[str, t.Any]:
        agent = Agent(shop.app.test_client())
        response = agent.create([{"id": "13"}], fulfillment_details={"address": ADDRESS},
                                buyer={"email": f"buyer{n}@example.com"})
        session = response.get_json()
        if session["status"] != "ready_for_payment":
            return t.cast(dict[str, t.Any], session)
        return t.cast(dict[str, t.Any], agent.complete(session["id"], f"spt_{n}").get_json())

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(buy, range(2)))
    assert sorted(r["status"] for r in results) == ["completed", "not_ready_for_payment"]
    loser = next(r for r in results if r["status"] != "completed")
    assert ("error", "out_of_stock") in codes(loser)
    assert len(shop.processor.charges()) == 1
    paid = [o for o in shop.woo.orders.values() if o["status"] == "processing"]
    assert (len(paid), shop.woo.stock(13)) == (1, 0)


def test_expired_hold_lets_another_buyer_take_the_last_unit(shop: Shop) -> None:
    first = shop.create([{"id": "13"}])
    assert first["status"] == "ready_for_payment"
    shop.woo.advance_clock(11 * 60)  # WooCommerce's 10-minute hold is over
    second = shop.create([{"id": "13"}], buyer={"email": "bob@example.com"})
    assert second["status"] == "ready_for_payment"
    late = shop.agent.complete(first["id"]).get_json()
    assert late["status"] == "not_ready_for_payment"
    assert ("error", "out_of_stock") in codes(late)
    assert shop.processor.charges() == []
    assert shop.complete(second["id"])["status"] == "completed"
    assert len(shop.processor.charges()) == 1


def test_lost_set_paid_response_is_reread_not_repeated(shop: Shop) -> None:
    session = shop.create([{"id": "10"}])
    shop.calls()
    shop.woo.fail_next("drop_after", route=PUT_ORDER, after=1)  # the set_paid PUT, not "pending"
    done = shop.complete(session["id"])
    assert done["status"] == "completed"
    calls = shop.calls()
    assert (calls[PUT_ORDER], calls[GET_ORDER]) == (2, 2)  # pending, set_paid; check, re-read
    paid = [o for o in shop.woo.orders.values() if o["status"] == "processing"]
    assert (len(paid), len(shop.processor.charges())) == (1, 1)
    assert paid[0]["transaction_id"] == shop.processor.charges()[0]["payment_id"]
    assert shop.woo.stock(10) == 24


def test_lost_answer_when_setting_pending_leaves_no_second_order(shop: Shop) -> None:
    """The first order update (to ``pending``) is done but its answer is lost: the
    agent's retry gets a fresh draft; the first one is cancelled, holding no stock."""
    session = shop.create([{"id": "10"}])
    shop.woo.fail_next("drop_after", route=PUT_ORDER)  # the "pending" PUT
    response = shop.agent.complete(session["id"])
    assert response.status_code == 503
    done = shop.complete(session["id"])
    assert done["status"] == "completed"
    statuses = sorted(o["status"] for o in shop.woo.orders.values())
    assert statuses.count("processing") == 1
    assert "pending" not in statuses
    assert len(shop.processor.charges()) == 1
    assert shop.woo.stock(10) == 24


def test_lost_set_paid_then_outage_then_agent_retry(tmp_path: pathlib.Path, woo: FakeWooCommerce) -> None:
    shop = open_shop(tmp_path, woo, ACP_ORDER_PLACEMENT_RETRIES=[])  # no inline retry by the core
    session = shop.create([{"id": "10"}])
    shop.woo.fail_next("drop_after", route=PUT_ORDER, after=1)
    shop.woo.fail_next("500", route=GET_ORDER, after=1)  # the re-read fails too
    response = shop.agent.complete(session["id"])
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    shop.calls()
    done = shop.complete(session["id"])  # the agent retries: re-read first, no second set_paid
    assert done["status"] == "completed"
    assert shop.calls() == {GET_ORDER: 1, "DELETE /wc/store/v1/cart/items": 1}
    assert len(shop.processor.charges()) == 1
    assert [o["status"] for o in shop.woo.orders.values()] == ["processing"]
    shop.adapter.close()


def test_lost_set_paid_and_failed_reread_are_retried_inline_by_the_core(shop: Shop) -> None:
    session = shop.create([{"id": "10"}])
    shop.woo.fail_next("drop_after", route=PUT_ORDER, after=1)
    shop.woo.fail_next("500", route=GET_ORDER, after=1)
    shop.calls()
    done = shop.complete(session["id"])
    assert done["status"] == "completed"
    calls = shop.calls()
    assert calls[PUT_ORDER] == 2  # "pending" and one set_paid: the retry re-reads instead
    assert len(shop.processor.charges()) == 1
    assert [o["status"] for o in shop.woo.orders.values()] == ["processing"]


def test_lost_set_paid_and_failed_reread_past_the_deadline_is_never_refunded(
        tmp_path: pathlib.Path, woo: FakeWooCommerce) -> None:
    """set_paid ran (the order is paid) but its answer was lost, and the re-read
    failed: the order may be paid, so even past ACP_ORDER_PLACEMENT_DEADLINE the
    payment is kept (503); the retry finds the paid order and completes."""
    shop = open_shop(tmp_path, woo, ACP_ORDER_PLACEMENT_RETRIES=[], ACP_ORDER_PLACEMENT_DEADLINE=0)
    try:
        session = shop.create([{"id": "10"}])
        woo.fail_next("drop_after", route=PUT_ORDER, after=1)  # the set_paid PUT: done, answer lost
        woo.fail_next("500", route=GET_ORDER, after=1)  # the re-read fails
        response = shop.agent.complete(session["id"])
        assert response.status_code == 503, response.get_json()
        assert response.get_json()["type"] == "service_unavailable"
        assert shop.processor.operations("refund") == []
        [order] = [o for o in woo.orders.values() if o["status"] == "processing"]  # paid in WooCommerce
        done = shop.complete(session["id"])
        assert done["status"] == "completed", done["messages"]
        assert int(done["order"]["id"]) == order["id"]
        [charge] = shop.processor.charges()
        assert order["transaction_id"] == charge["payment_id"]
        assert shop.processor.operations("refund") == []
        assert woo.stock(10) == 24
    finally:
        shop.adapter.close()


def test_unknown_set_paid_then_store_unreachable_is_never_refunded(
        tmp_path: pathlib.Path, woo: FakeWooCommerce) -> None:
    """After a set_paid whose outcome is unknown, a later attempt that cannot even
    connect (nothing sent) still must not refund: the first one may have paid."""
    shop = open_shop(tmp_path, woo, ACP_ORDER_PLACEMENT_RETRIES=[], ACP_ORDER_PLACEMENT_DEADLINE=0)
    try:
        session = shop.create([{"id": "10"}])
        woo.fail_next("drop_after", route=PUT_ORDER, after=1)
        woo.fail_next("500", route=GET_ORDER, after=1)
        assert shop.agent.complete(session["id"]).status_code == 503
        port = woo.port
        woo.stop()  # connection refused from now on
        try:
            refused = shop.agent.complete(session["id"])
            assert refused.status_code == 503, refused.get_json()
            assert shop.processor.operations("refund") == []
        finally:
            woo.start(port=port)
        done = shop.complete(session["id"])
        assert done["status"] == "completed", done["messages"]
        assert shop.processor.operations("refund") == []
        assert [o["status"] for o in woo.orders.values()] == ["processing"]
    finally:
        shop.adapter.close()


def test_set_paid_with_no_answer_while_the_order_stays_unpaid_is_never_refunded(
        tmp_path: pathlib.Path, woo: FakeWooCommerce) -> None:
    """Every set_paid times out and the order still reads pending: they may still be
    running, so the deadline does not refund; a later retry pays the order."""
    shop = open_shop(tmp_path, woo, ACP_ORDER_PLACEMENT_RETRIES=[], ACP_ORDER_PLACEMENT_DEADLINE=0,
                     WOOCOMMERCE_TIMEOUT=0.3)
    try:
        session = shop.create([{"id": "10"}])
        woo.fail_next("timeout", route=PUT_ORDER, after=1, count=3, seconds=0.6)  # nothing done
        response = shop.agent.complete(session["id"])
        assert response.status_code == 503, response.get_json()
        assert shop.processor.operations("refund") == []
        assert [o["status"] for o in woo.orders.values()] == ["pending"]
        done = shop.complete(session["id"])
        assert done["status"] == "completed", done["messages"]
        assert [o["status"] for o in woo.orders.values()] == ["processing"]
        assert shop.processor.operations("refund") == []
    finally:
        shop.adapter.close()


@pytest.mark.parametrize("fault", ["429", "500"], ids=["throttled", "answered-500-still-pending"])
def test_set_paid_that_certainly_did_not_pay_is_refunded_past_the_deadline(
        tmp_path: pathlib.Path, woo: FakeWooCommerce, fault: str) -> None:
    shop = open_shop(tmp_path, woo, ACP_ORDER_PLACEMENT_RETRIES=[], ACP_ORDER_PLACEMENT_DEADLINE=0)
    try:
        session = shop.create([{"id": "10"}])
        woo.fail_next(fault, route=PUT_ORDER, after=1, count=3)  # every set_paid, nothing done
        done = shop.complete(session["id"])
        assert done["status"] == "not_ready_for_payment"
        assert [r["amount"] for r in shop.processor.operations("refund")] == [total(session)]
        assert "processing" not in [o["status"] for o in woo.orders.values()]
    finally:
        shop.adapter.close()


def test_set_paid_timeout_is_retried_after_a_reread(tmp_path: pathlib.Path, woo: FakeWooCommerce) -> None:
    shop = open_shop(tmp_path, woo, WOOCOMMERCE_TIMEOUT=0.3)
    try:
        session = shop.create([{"id": "10"}])
        woo.fail_next("timeout", route=PUT_ORDER, after=1, seconds=0.6)  # nothing done
        done = shop.complete(session["id"])
        assert done["status"] == "completed"
        assert len(shop.processor.charges()) == 1
        assert [o["status"] for o in woo.orders.values()] == ["processing"]
    finally:
        shop.adapter.close()


def test_declined_payment_then_new_token_leaves_no_stale_pending_order(shop: Shop) -> None:
    """The declined charge's order goes back to the cart's checkout draft (the
    hold given back after a failed payment re-reads the cart); the next token's
    completion places one order, and none is left pending."""
    session = shop.create([{"id": "13"}])
    declined = shop.complete(session["id"], token="spt_decline")
    assert declined["status"] == "ready_for_payment"
    first_order = t.cast(int, shop.woo.last_order_id())
    assert shop.woo.order(first_order)["status"] != "pending"
    done = shop.complete(session["id"], token="spt_good")
    assert done["status"] == "completed"
    statuses = {o["id"]: o["status"] for o in shop.woo.orders.values()}
    assert "pending" not in statuses.values()
    assert [i for i, s in statuses.items() if s == "processing"] == [int(done["order"]["id"])]
    assert (len(shop.processor.charges()), shop.woo.stock(13)) == (1, 0)


def test_declined_payment_whose_record_fails_then_another_card(tmp_path: pathlib.Path,
                                                               woo: FakeWooCommerce) -> None:
    """The store fails to record the decline (503): the attempt stays pending
    and another card resumes it without re-preparing, so the pending order must
    still be there -- not cancelled by the hold's give-back -- or that card is
    charged and refunded."""
    from flask_acp.errors import StorageUnavailableError

    shop = open_shop(tmp_path, woo, ACP_PAYMENT_RECONCILE_WINDOW=0)
    try:
        sessions = shop.app.extensions["acp"].storage.sessions
        save, failed = sessions.save, []

        def failing_save(session: t.Any, *args: t.Any, **kwargs: t.Any) -> t.Any:
            if session.payment is not None and session.payment.status == "failed" and not failed:
                failed.append(session.id)
                raise StorageUnavailableError()
            return save(session, *args, **kwargs)

        sessions.save = failing_save
        sid = shop.create([{"id": "13"}])["id"]
        assert shop.agent.complete(sid, "spt_decline").status_code == 503
        done = shop.complete(sid, token="spt_good")
        assert done["status"] == "completed", done["messages"]
        assert (len(shop.processor.charges()), shop.processor.operations("refund")) == (1, [])
        assert [o["status"] for o in shop.woo.orders.values()] == ["processing"]
    finally:
        shop.adapter.close()


def test_declined_payment_whose_hold_cannot_be_given_back(shop: Shop) -> None:
    """WooCommerce cannot answer the re-read that gives the hold back after a
    declined charge: the decline is still answered, and the next token's
    completion places one order, charged once, none left pending."""
    session = shop.create([{"id": "13"}])
    # the prepare's cart read succeeds, the give-back's do not (nor its retries)
    shop.woo.fail_next("500", route="GET /wc/store/v1/cart", after=1, count=10)
    declined = shop.complete(session["id"], token="spt_decline")
    assert declined["status"] == "ready_for_payment"
    assert "payment_declined" in [m.get("code") for m in declined["messages"]]
    shop.woo.clear_faults()
    done = shop.complete(session["id"], token="spt_good")
    assert done["status"] == "completed"
    statuses = {o["id"]: o["status"] for o in shop.woo.orders.values()}
    assert "pending" not in statuses.values()
    assert [i for i, s in statuses.items() if s == "processing"] == [int(done["order"]["id"])]
    assert (len(shop.processor.charges()), shop.woo.stock(13)) == (1, 0)


def test_price_change_before_complete_is_not_charged(shop: Shop) -> None:
    session = shop.create([{"id": "10"}])
    shop.woo.set_price(10, "20.00")
    changed = shop.complete(session["id"])
    assert changed["status"] == "ready_for_payment"
    assert ("warning", "price_change") in codes(changed)
    assert total(changed) == 2000 + 165 + 500 + 41
    assert shop.processor.charges() == []
    assert all(o["status"] == "checkout-draft" for o in shop.woo.orders.values())
    done = shop.complete(session["id"])
    assert done["status"] == "completed"
    assert shop.processor.charges()[0]["amount"] == 2706


def test_cancel_releases_the_stock_and_the_draft_order(shop: Shop) -> None:
    session = shop.create([{"id": "13"}])
    assert shop.woo.held(13) == 1
    other = shop.create([{"id": "13"}], buyer={"email": "bob@example.com"})
    assert other["status"] == "not_ready_for_payment"  # held by the first session
    shop.calls()
    canceled = shop.cancel(session["id"])
    assert canceled["status"] == "canceled"
    assert shop.calls() == {"DELETE /wc/store/v1/cart/items": 1, GET_ORDER: 1, PUT_ORDER: 1}
    assert shop.woo.held(13) == 0
    assert [o["status"] for o in shop.woo.orders.values()] == ["cancelled"]
    other = shop.update(other["id"], buyer={"email": "bob@example.com"})
    assert other["status"] == "ready_for_payment", other["messages"]


def test_expired_cart_token_is_rebuilt_from_the_session(shop: Shop) -> None:
    session = shop.create([{"id": "10", "quantity": 2}])
    before = total(session)
    shop.woo.advance_clock(49 * 3600)  # Cart-Token lifetime is 48 h
    shop.calls()
    session = shop.update(session["id"], line_items=[{"id": "10", "quantity": 3}])
    assert session["status"] == "ready_for_payment", session["messages"]
    assert total(session, "items_base_amount") == 5400
    assert total(session) > before
    assert shop.calls()["POST /wc/store/v1/batch"] == 2  # the stale key, then the rebuild
    assert shop.complete(session["id"])["status"] == "completed"


def test_store_outage_is_a_503_with_retry_after(shop: Shop) -> None:
    shop.woo.fail_next("500", route="POST /wc/store/v1/batch")
    response = shop.agent.create([{"id": "10"}], fulfillment_details={"address": ADDRESS})
    assert response.status_code == 503
    assert response.get_json()["type"] == "service_unavailable"
    assert response.headers["Retry-After"] == "1"
    shop.woo.fail_next("429", route="POST /wc/store/v1/batch")
    response = shop.agent.create([{"id": "10"}], fulfillment_details={"address": ADDRESS})
    assert (response.status_code, response.headers["Retry-After"]) == (503, "2")


def test_maintenance_page_on_a_read_is_retried_by_the_transport(shop: Shop) -> None:
    shop.woo.fail_next("html_503", route="GET /wc/store/v1/cart")
    session = shop.create([{"id": "10"}])
    assert session["status"] == "ready_for_payment"
    assert shop.calls()["GET /wc/store/v1/cart"] == 2


def test_discovery_lists_the_store_currency(shop: Shop) -> None:
    response = shop.agent.client.get("/.well-known/acp.json")
    assert response.status_code == 200
    assert response.get_json()["capabilities"]["supported_currencies"] == ["usd"]


# --- configuration -------------------------------------------------------------------------


def test_from_config_keys_and_errors() -> None:
    base = {"WOOCOMMERCE_URL": "https://shop.example", "WOOCOMMERCE_CONSUMER_KEY": "ck_x",
            "WOOCOMMERCE_CONSUMER_SECRET": "cs_x"}
    adapter = WooCommerceAdapter.from_config(base)
    assert (adapter.client.url, adapter.client.timeout) == ("https://shop.example", 10.0)
    adapter.close()
    adapter = WooCommerceAdapter.from_config({**base, "WOOCOMMERCE_TIMEOUT": "2.5"})
    assert adapter.client.timeout == 2.5
    adapter.close()
    for key in base:
        with pytest.raises(ValueError, match=key):
            WooCommerceAdapter.from_config({k: v for k, v in base.items() if k != key})
    for bad in (0, -1, True, "soon"):
        with pytest.raises(ValueError, match="WOOCOMMERCE_TIMEOUT"):
            WooCommerceAdapter.from_config({**base, "WOOCOMMERCE_TIMEOUT": bad})
    with pytest.raises(ValueError, match="WOOCOMMERCE_URL.*must use https"):
        WooCommerceAdapter.from_config({**base, "WOOCOMMERCE_URL": "http://shop.example"})
    for loopback in ("http://127.0.0.1:8080", "http://localhost", "http://[::1]:9"):
        WooCommerceAdapter.from_config({**base, "WOOCOMMERCE_URL": loopback}).close()


def test_call_budget_per_operation_benchmark() -> None:
    """benchmarks/bench_woocommerce_calls.py prints the calls per ACP operation
    and fails when a target (create 3, update 3, complete 6) is missed."""
    script = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "bench_woocommerce_calls.py"
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    print(result.stdout)
    assert counts == {"create": 2, "update (address + buyer)": 2, "update (shipping choice)": 2,
                      "update (quantities)": 2, "complete": 6, "create (second session)": 3, "cancel": 3}
