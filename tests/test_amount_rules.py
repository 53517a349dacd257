"""The payment processor's amount rules, enforced by the checkout core for every adapter.

Stripe (docs.stripe.com/currencies) charges three-decimal currencies (BHD,
JOD, KWD, OMR, TND) only in amounts whose last digit is 0, and only between
its minimum (per settlement currency: 0.50 USD, 0.30 GBP, 50 JPY, ...) and
maximum (8 digits, 99999999, for most currencies) charge amounts. A session
whose total breaks a rule carries an error message on ``$.totals`` and stays
``not_ready_for_payment``: it is never charged.

The sessions run through the whole ACP API (the embedded catalog adapter on
files in tmp_path, a real SQLite file) with the schema-validating test client
(``tests.conftest.ValidatingClient``: every response body is checked against
the 2026-04-17 JSON Schema). The Stripe tests use the real ``stripe`` SDK
against :class:`~flask_acp.testing.fake_stripe.FakeStripe`. No mocks.
"""

from __future__ import annotations

import collections.abc as cabc
import json
import pathlib
import typing as t

import pytest
from flask import Flask

from flask_acp.payments.stripe import StripePaymentProcessor
from flask_acp.testing import FakePaymentProcessor
from flask_acp.testing.fake_stripe import FakeStripe
from flask_acp.testing.fake_stripe import mint_granted_token
from tests.conftest import ADDRESS
from tests.conftest import Agent
from tests.conftest import build_app

KW_ADDRESS = {"name": "Fatima Al-Sabah", "line_one": "Block 3, Street 12", "city": "Kuwait City",
              "state": "KU", "country": "KW", "postal_code": "13001"}
PI_PATH = "/v1/payment_intents"


def write_shop(directory: pathlib.Path, currency: str, prices: dict[str, int]) -> dict[str, str]:
    """A catalog selling ``prices`` (variant id -> minor units of ``currency``),
    no tax, free shipping everywhere: the session total is the items' total."""
    directory.mkdir(parents=True, exist_ok=True)
    feed = {"products": [{"id": "prod_x", "title": "X", "variants": [
        {"id": vid, "title": f"Item {vid}", "price": {"amount": amount, "currency": currency.upper()}}
        for vid, amount in prices.items()]}]}
    store = {"currency": currency.lower(), "order_url_template": "https://shop.test/orders/{order_number}",
             "default_stock": 100, "tax": [],
             "shipping_methods": [{"id": "free", "title": "Free", "amount": 0, "min_days": 2,
                                   "max_days": 4, "countries": ["*"]}]}
    (directory / "feed.json").write_text(json.dumps(feed))
    (directory / "store.json").write_text(json.dumps(store))
    return {"ACP_CATALOG_FILE": str(directory / "feed.json"),
            "ACP_STORE_FILE": str(directory / "store.json")}


class Shop:
    def __init__(self, app: Flask, processor: FakePaymentProcessor) -> None:
        self.app = app
        self.processor = processor
        self.agent = Agent(app.test_client())

    def create(self, items: dict[str, int], *, currency: str, address: dict[str, str] = ADDRESS
               ) -> dict[str, t.Any]:
        response = self.agent.create([{"id": i, "quantity": q} for i, q in items.items()],
                                     currency=currency, fulfillment_details={"address": address})
        assert response.status_code == 201, response.get_json()
        return t.cast(dict[str, t.Any], response.get_json())

    def update(self, session_id: str, items: dict[str, int]) -> dict[str, t.Any]:
        response = self.agent.post(f"/checkout_sessions/{session_id}", {
            "line_items": [{"id": i, "quantity": q} for i, q in items.items()]})
        assert response.status_code == 200, response.get_json()
        return t.cast(dict[str, t.Any], response.get_json())

    def complete(self, session_id: str) -> dict[str, t.Any]:
        response = self.agent.complete(session_id, "spt_ok")
        assert response.status_code == 200, response.get_json()
        return t.cast(dict[str, t.Any], response.get_json())


@pytest.fixture
def usd(tmp_path: pathlib.Path) -> Shop:
    processor = FakePaymentProcessor(str(tmp_path / "ledger.sqlite3"))
    files = write_shop(tmp_path / "usd", "usd", {"cheap": 30, "fifty": 50, "dear": 50_000_000,
                                                 "max": 99_999_999})
    return Shop(build_app(tmp_path, payment_processor=processor, **files), processor)


@pytest.fixture
def kwd(tmp_path: pathlib.Path) -> Shop:
    processor = FakePaymentProcessor(str(tmp_path / "ledger.sqlite3"))
    files = write_shop(tmp_path / "kwd", "kwd", {"odd": 5124, "even": 5120})
    return Shop(build_app(tmp_path, payment_processor=processor, **files), processor)


def total(session: dict[str, t.Any]) -> int:
    return int(next(e["amount"] for e in session["totals"] if e["type"] == "total"))


def errors(session: dict[str, t.Any]) -> list[tuple[str, str | None]]:
    return [(m["code"], m.get("param")) for m in session["messages"] if m["type"] == "error"]


def content(session: dict[str, t.Any], code: str) -> str:
    return str(next(m["content"] for m in session["messages"] if m.get("code") == code))


# --- three-decimal currencies ----------------------------------------------------------------


def test_kwd_total_not_ending_in_zero_stays_not_ready_and_is_never_charged(kwd: Shop) -> None:
    session = kwd.create({"odd": 1}, currency="kwd", address=KW_ADDRESS)
    assert total(session) == 5124
    assert session["status"] == "not_ready_for_payment"
    assert errors(session) == [("invalid", "$.totals")]
    assert content(session, "invalid") == (
        "The total of 5.124 KWD cannot be charged: KWD payments must be a multiple of 0.010.")
    done = kwd.complete(session["id"])
    assert done["status"] == "not_ready_for_payment"
    assert kwd.processor.charges() == []


def test_kwd_total_ending_in_zero_completes(kwd: Shop) -> None:
    session = kwd.create({"even": 1}, currency="kwd", address=KW_ADDRESS)
    assert (total(session), session["status"], errors(session)) == (5120, "ready_for_payment", [])
    done = kwd.complete(session["id"])
    assert done["status"] == "completed", done["messages"]
    assert [(c["amount"], c["currency"]) for c in kwd.processor.charges()] == [(5120, "kwd")]


def test_kwd_update_moves_the_total_in_and_out_of_the_rule(kwd: Shop) -> None:
    session = kwd.create({"even": 1}, currency="kwd", address=KW_ADDRESS)
    worse = kwd.update(session["id"], {"even": 1, "odd": 1})  # 10.244 KWD
    assert (total(worse), worse["status"], errors(worse)) == (10244, "not_ready_for_payment",
                                                              [("invalid", "$.totals")])
    better = kwd.update(session["id"], {"even": 2})  # 10.240 KWD
    assert (total(better), better["status"], errors(better)) == (10240, "ready_for_payment", [])
    assert kwd.complete(session["id"])["status"] == "completed"


# --- minimum and maximum charge amounts ------------------------------------------------------


def test_usd_total_below_the_minimum_gets_minimum_not_met(usd: Shop) -> None:
    session = usd.create({"cheap": 1}, currency="usd")  # 0.30 USD < 0.50 USD
    assert (total(session), session["status"]) == (30, "not_ready_for_payment")
    assert errors(session) == [("minimum_not_met", "$.totals")]
    assert content(session, "minimum_not_met") == (
        "The total of 0.30 USD is below the minimum payment of 0.50 USD.")
    assert usd.complete(session["id"])["status"] == "not_ready_for_payment"
    assert usd.processor.charges() == []
    # two units are 0.60 USD: payable
    fixed = usd.update(session["id"], {"cheap": 2})
    assert (total(fixed), fixed["status"], errors(fixed)) == (60, "ready_for_payment", [])


def test_usd_minimum_itself_is_chargeable(usd: Shop) -> None:
    session = usd.create({"fifty": 1}, currency="usd")
    assert (total(session), session["status"], errors(session)) == (50, "ready_for_payment", [])
    assert usd.complete(session["id"])["status"] == "completed"


def test_usd_total_above_the_maximum_gets_maximum_exceeded(usd: Shop) -> None:
    session = usd.create({"dear": 2}, currency="usd")  # 1,000,000.00 USD > 999,999.99 USD
    assert (total(session), session["status"]) == (100_000_000, "not_ready_for_payment")
    assert errors(session) == [("maximum_exceeded", "$.totals")]
    assert content(session, "maximum_exceeded") == (
        "The total of 1000000.00 USD is above the maximum payment of 999999.99 USD.")
    assert usd.complete(session["id"])["status"] == "not_ready_for_payment"
    assert usd.processor.charges() == []


def test_usd_maximum_itself_is_chargeable(usd: Shop) -> None:
    session = usd.create({"max": 1}, currency="usd")
    assert (total(session), session["status"], errors(session)) == (99_999_999, "ready_for_payment", [])
    assert usd.complete(session["id"])["status"] == "completed"


def test_amount_message_in_the_buyers_language(usd: Shop) -> None:
    response = usd.agent.post("/checkout_sessions", {
        "currency": "usd", "line_items": [{"id": "cheap"}], "capabilities": {},
        "fulfillment_details": {"address": ADDRESS}}, **{"Accept-Language": "fr"})
    assert response.status_code == 201
    assert content(response.get_json(), "minimum_not_met") == (
        "Le total de 0.30 USD est inférieur au paiement minimum de 0.50 USD.")


# --- through Stripe ---------------------------------------------------------------------------


class NoAmountRules(StripePaymentProcessor):
    """Stripe without the local amount check: every amount reaches (fake) Stripe."""

    def amount_problem(self, amount: int, currency: str) -> None:
        return None


@pytest.fixture
def fake() -> cabc.Iterator[FakeStripe]:
    with FakeStripe() as server:
        yield server
    assert server.server_errors == []


def stripe_shop(tmp_path: pathlib.Path, fake: FakeStripe, currency: str, prices: dict[str, int],
                processor_class: type[StripePaymentProcessor] = StripePaymentProcessor
                ) -> tuple[Agent, StripePaymentProcessor]:
    processor = processor_class(fake.api_key, merchant_id="acct_test", api_base=fake.url,
                                max_network_retries=0)
    app = build_app(tmp_path, payment_processor=processor,
                    **write_shop(tmp_path / currency, currency, prices))
    return Agent(app.test_client()), processor


def pi_creates(fake: FakeStripe) -> int:
    return sum(1 for r in fake.requests if r.method == "POST" and r.path == PI_PATH)


def test_stripe_kwd_total_not_ending_in_zero_never_reaches_stripe(tmp_path: pathlib.Path,
                                                                   fake: FakeStripe) -> None:
    agent, processor = stripe_shop(tmp_path, fake, "kwd", {"odd": 5124})
    response = agent.create([{"id": "odd"}], currency="kwd", fulfillment_details={"address": KW_ADDRESS})
    session = response.get_json()
    assert (session["status"], errors(session)) == ("not_ready_for_payment", [("invalid", "$.totals")])
    token = mint_granted_token(processor.client, currency="kwd", max_amount=10_000)
    done = agent.complete(session["id"], token)
    assert (done.status_code, done.get_json()["status"]) == (200, "not_ready_for_payment")
    assert pi_creates(fake) == 0
    assert fake.charges_count() == 0


def test_stripe_refusing_the_amount_at_charge_time_is_a_message_not_a_500(tmp_path: pathlib.Path,
                                                                          fake: FakeStripe) -> None:
    """With the local check bypassed, the fake answers like Stripe (400
    ``amount_too_small``); the session goes back to not_ready_for_payment with
    ``minimum_not_met``, nothing is charged, and no 5xx reaches the agent."""
    agent, processor = stripe_shop(tmp_path, fake, "usd", {"cheap": 30}, NoAmountRules)
    session = agent.create([{"id": "cheap"}], fulfillment_details={"address": ADDRESS}).get_json()
    assert (total(session), session["status"]) == (30, "ready_for_payment")
    token = mint_granted_token(processor.client, currency="usd", max_amount=1000)
    done = agent.complete(session["id"], token)
    assert done.status_code == 200, done.get_json()
    body = done.get_json()
    assert (body["status"], errors(body)) == ("not_ready_for_payment", [("minimum_not_met", "$.totals")])
    assert content(body, "minimum_not_met") == "The payment processor cannot charge a total of 0.30 USD."
    assert pi_creates(fake) == 1
    assert fake.charges_count() == 0
    assert fake.payment_intents == {}
    assert fake.granted_tokens[token]["deactivated_reason"] is None  # the token is still usable
