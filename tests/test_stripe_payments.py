"""Payments through Stripe, end to end: the whole ACP API with the real
``stripe.StripeClient`` (built by the extension from ``ACP_STRIPE_*``) talking
HTTP to :class:`~flask_acp.testing.fake_stripe.FakeStripe`. No mocks.

Covers the must-have list of ``../shared/docs/stripe.md`` §8: the wire form of
the charge (§2), happy paths with automatic and manual capture, each decline
class, token problems with and without the pre-check, ``requires_action``,
Stripe faults before and after execution, dropped connections, ACP replays,
rate limits, a token reused for another total (``IdempotencyError``), refunds
(API, CLI, dashboard webhook), disputes, webhook signatures, and an order that
cannot be placed after the charge; and currencies Stripe counts in other units
than ISO 4217 (ISK, UGX: hundredths) end to end, next to JPY.

Every ACP response is validated against the official 2026-04-17 JSON Schema
by the test client (``tests.conftest.ValidatingClient``).
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import hashlib
import json
import pathlib
import time
import typing as t
import urllib.parse
import uuid

import pytest
import stripe
from flask import Flask
from flask import request as flask_request
from werkzeug.test import TestResponse

from flask_acp.catalog import CatalogAdapter
from flask_acp.errors import AdapterRejectedError
from flask_acp.errors import InvalidRequestError
from flask_acp.errors import PaymentTokenError
from flask_acp.models import CheckoutSession
from flask_acp.models import Order
from flask_acp.models import PaymentRecord
from flask_acp.payments.base import ChargeRequest
from flask_acp.payments.stripe import StripePaymentProcessor
from flask_acp.testing.fake_stripe import DEFAULT_SPT_API_VERSION
from flask_acp.testing.fake_stripe import FakeStripe
from flask_acp.testing.fake_stripe import WireRequest
from flask_acp.testing.fake_stripe import mint_granted_token
from flask_acp.testing.fake_stripe import stripe_signature_header
from flask_acp.versions.v2026_04_17 import render_order
from tests.conftest import ADDRESS
from tests.conftest import AGENT_KEY
from tests.conftest import FROM_CONFIG
from tests.conftest import Agent
from tests.conftest import build_app
from tests.conftest import serve_app
from tests.spec import validate

#: item_123 ($3.00) shipped Standard ($1.00) to CA (10 % tax): 300 + 30 + 100 minor units.
TOTAL = 430
#: the same with two units: 600 + 60 + 100.
TOTAL_TWO = 760
WHSEC = "whsec_fake_endpoint_secret_0123456789"
TOKEN_PARAM = "$.payment_data.instrument.credential.token"
PI_PATH = "/v1/payment_intents"
DECLINE_CLASSES = [
    "pm_card_chargeDeclined",
    "pm_card_chargeDeclinedInsufficientFunds",
    "pm_card_chargeDeclinedFraudulent",
    "pm_card_chargeDeclinedLostCard",
    "pm_card_chargeDeclinedStolenCard",
    "pm_card_chargeDeclinedExpiredCard",
]


class RejectingCatalogAdapter(CatalogAdapter):
    """The catalog adapter, except that the platform may refuse the paid order."""

    reject: str | None = None

    def place_order(self, session: CheckoutSession, payment: PaymentRecord) -> Order:
        if self.reject:
            raise AdapterRejectedError(self.reject)
        return super().place_order(session, payment)


# --------------------------------------------------------------------------- harness


@pytest.fixture
def fake() -> cabc.Iterator[FakeStripe]:
    with FakeStripe() as server:
        yield server
    assert server.server_errors == []


class Shop:
    """One app whose Stripe processor (built from config) talks to ``fake``,
    with an agent driving it through the validating test client."""

    def __init__(self, app: Flask, fake: FakeStripe) -> None:
        self.app = app
        self.fake = fake
        self.state = app.extensions["acp"]
        assert isinstance(self.state.payments, StripePaymentProcessor)
        self.payments: StripePaymentProcessor = self.state.payments
        self.agent = Agent(app.test_client())

    # -- Stripe side -------------------------------------------------------------------

    def mint(self, payment_method: str = "pm_card_visa", *, currency: str = "usd",
             max_amount: int = TOTAL, expires_in: int | None = 3600) -> str:
        """A test SharedPaymentGrantedToken, minted like the agent's would be."""
        return mint_granted_token(self.payments.client, payment_method=payment_method,
                                  currency=currency, max_amount=max_amount, expires_in=expires_in,
                                  spt_api_version=self.payments.spt_api_version)

    def pi_creates(self) -> list[WireRequest]:
        return [w for w in self.fake.wire_requests if w.method == "POST" and w.path == PI_PATH]

    def stripe_calls(self) -> int:
        return len(self.fake.requests)

    # -- ACP side ----------------------------------------------------------------------

    def session(self, session_id: str) -> dict[str, t.Any]:
        response = self.agent.client.get(f"/checkout_sessions/{session_id}",
                                         headers=self.agent.headers())
        assert response.status_code == 200, response.get_json()
        return t.cast(dict[str, t.Any], response.get_json())

    def buy(self, token: str | None = None) -> dict[str, t.Any]:
        session = self.agent.ready_session()
        done = self.agent.complete(session["id"], token or self.mint())
        assert done.status_code == 200, done.get_json()
        body = t.cast(dict[str, t.Any], done.get_json())
        assert body["status"] == "completed", body["messages"]
        return body

    def stored(self, session_id: str) -> CheckoutSession:
        session = self.state.storage.sessions.get(session_id)
        assert session is not None
        return t.cast(CheckoutSession, session)

    def outbox_types(self) -> list[str]:
        return [e.type for e in self.state.storage.outbox.entries(statuses=["pending"])]


MakeShop = t.Callable[..., Shop]


@pytest.fixture
def make_shop(tmp_path: pathlib.Path, fake: FakeStripe) -> cabc.Iterator[MakeShop]:
    shops: list[Shop] = []

    def make(**config: t.Any) -> Shop:
        settings: dict[str, t.Any] = {
            "ACP_STRIPE_SECRET_KEY": fake.api_key,
            "ACP_STRIPE_MERCHANT_ID": "acct_test",
            "ACP_STRIPE_API_BASE": fake.url,
            "ACP_STRIPE_WEBHOOK_SECRET": WHSEC,
            "ACP_ORDER_PLACEMENT_RETRIES": [],
        }
        settings.update(config)
        app = build_app(tmp_path / f"shop{len(shops)}", payment_processor=FROM_CONFIG, **settings)
        shops.append(Shop(app, fake))
        return shops[-1]

    yield make
    for shop in shops:
        shop.state.webhooks.close()


@pytest.fixture
def shop(make_shop: MakeShop) -> Shop:
    return make_shop()


def total_of(session: dict[str, t.Any]) -> int:
    return next(int(x["amount"]) for x in session["totals"] if x["type"] == "total")


def stripe_key(session_id: str, token: str) -> str:
    """The Stripe idempotency key of a charge: session id + token hash (stripe.md §5)."""
    return f"acp-{session_id}-{hashlib.sha256(token.encode()).hexdigest()[:32]}"


def only_message(body: dict[str, t.Any]) -> dict[str, t.Any]:
    assert len(body["messages"]) == 1, body["messages"]
    return t.cast(dict[str, t.Any], body["messages"][0])


def assert_order_valid(order: Order) -> dict[str, t.Any]:
    body = render_order(order)
    data = dict(body)
    assert data.pop("type") == "order"
    validate(data, "Order")
    return body


def signed(event_type: str, obj: dict[str, t.Any], *, secret: str = WHSEC,
           event_id: str | None = None, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    """A Stripe event body and its headers, as Stripe sends them."""
    payload = json.dumps({
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}", "object": "event",
        "api_version": DEFAULT_SPT_API_VERSION, "created": int(time.time()), "livemode": False,
        "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
        "type": event_type, "data": {"object": obj}}, indent=2)
    return payload.encode(), {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": stripe_signature_header(payload, secret, timestamp=timestamp)}


def post_event(shop: Shop, event_type: str, obj: dict[str, t.Any], **kwargs: t.Any) -> TestResponse:
    body, headers = signed(event_type, obj, **kwargs)
    return shop.app.test_client().post("/webhooks/stripe", data=body, headers=headers)


# --------------------------------------------------------------------------- wire form


def test_charge_wire_form_headers_and_handler(tmp_path: pathlib.Path) -> None:
    """stripe.md §2: the exact form body and headers of the charge, with the
    preview version taken from ACP_STRIPE_SPT_API_VERSION (not a default)."""
    version = "2026-04-22.preview"
    with FakeStripe(spt_api_version=version) as fake:
        app = build_app(tmp_path, payment_processor=FROM_CONFIG, ACP_STRIPE_SECRET_KEY=fake.api_key,
                        ACP_STRIPE_MERCHANT_ID="acct_test", ACP_STRIPE_API_BASE=fake.url,
                        ACP_STRIPE_SPT_API_VERSION=version)
        shop = Shop(app, fake)
        session = shop.agent.ready_session()
        assert session["capabilities"]["payment"]["handlers"][0]["config"] == {
            "merchant_id": "acct_test", "psp": "stripe", "environment": "test"}
        token = shop.mint()
        before = len(fake.wire_requests)
        done = shop.agent.complete(session["id"], token).get_json()
        assert done["status"] == "completed"

        lookup, create = fake.wire_requests[before:]
        assert (lookup.method, lookup.path) == ("GET", f"/v1/shared_payment/granted_tokens/{token}")
        assert lookup.headers["Stripe-Version"] == version
        assert (create.method, create.path) == ("POST", PI_PATH)
        key = stripe_key(session["id"], token)
        assert create.headers["Idempotency-Key"] == key
        assert create.headers["Stripe-Version"] == version
        assert create.headers["Authorization"] == f"Bearer {fake.api_key}"
        assert create.headers["Content-Type"] == "application/x-www-form-urlencoded"
        sent = urllib.parse.parse_qsl(create.body, keep_blank_values=True, strict_parsing=True)
        assert dict(sent) == {
            "amount": str(TOTAL),
            "currency": "usd",
            "confirm": "true",
            "payment_method_data[shared_payment_granted_token]": token,
            "automatic_payment_methods[enabled]": "true",
            "automatic_payment_methods[allow_redirects]": "never",
            "capture_method": "automatic",
            "metadata[checkout_session_id]": session["id"],
            "metadata[acp_agent]": "agent-one",
            "metadata[acp_checkout_session_id]": session["id"],
            "metadata[acp_idempotency_key]": key,
        }
        assert len(sent) == len(dict(sent))  # no parameter twice, no payment_method_data[type]
        [pi] = fake.payment_intents.values()
        assert (pi["status"], pi["amount"], pi["amount_received"]) == ("succeeded", TOTAL, TOTAL)
        app.extensions["acp"].webhooks.close()
        assert fake.server_errors == []


# --------------------------------------------------------------------------- happy paths


def test_automatic_capture_completes_with_one_charge(shop: Shop) -> None:
    done = shop.buy()
    order = done["order"]
    assert order["checkout_session_id"] == done["id"]
    assert shop.fake.charges_count() == 1
    [pi] = shop.fake.payment_intents.values()
    assert (pi["status"], pi["capture_method"], pi["amount_received"]) == ("succeeded", "automatic", TOTAL)
    assert pi["metadata"]["acp_checkout_session_id"] == done["id"]
    stored = shop.stored(done["id"])
    assert stored.payment is not None
    assert (stored.payment.payment_id, stored.payment.capture_status) == (pi["id"], "captured")
    token = next(iter(shop.fake.granted_tokens.values()))
    assert token["deactivated_reason"] == "consumed"
    assert token["usage_details"]["amount_captured"]["value"] == TOTAL
    assert shop.outbox_types() == ["order_create"]
    # completing again (another ACP key) is refused without any Stripe call
    calls = shop.stripe_calls()
    again = shop.agent.complete(done["id"], "spt_whatever")
    assert again.status_code == 405
    assert shop.stripe_calls() == calls


def test_manual_capture_authorizes_then_ship_captures(make_shop: MakeShop) -> None:
    shop = make_shop(ACP_STRIPE_CAPTURE_METHOD="manual")
    done = shop.buy()
    [pi] = shop.fake.payment_intents.values()
    assert dict(urllib.parse.parse_qsl(shop.pi_creates()[0].body))["capture_method"] == "manual"
    assert (pi["status"], pi["amount_capturable"], pi["amount_received"]) == ("requires_capture", TOTAL, 0)
    stored = shop.stored(done["id"])
    assert stored.payment is not None
    assert stored.payment.capture_status == "authorized"
    order_id = done["order"]["id"]
    with pytest.raises(InvalidRequestError, match="authorized, not captured"):
        shop.state.orders.refund(order_id, amount=100)
    assert shop.fake.refunds == {}

    order = shop.state.orders.ship(order_id, carrier="USPS", tracking_number="9400")
    assert order.status == "shipped"
    pi = shop.fake.payment_intents[pi["id"]]
    assert (pi["status"], pi["amount_received"], pi["amount_capturable"]) == ("succeeded", TOTAL, 0)
    [capture] = [w for w in shop.fake.wire_requests if w.path == f"{PI_PATH}/{pi['id']}/capture"]
    assert dict(urllib.parse.parse_qsl(capture.body)) == {"amount_to_capture": str(TOTAL)}
    assert capture.headers["Idempotency-Key"] == f"{stored.payment.idempotency_key}-capture"
    stored = shop.stored(done["id"])
    assert stored.payment is not None
    assert stored.payment.capture_status == "captured"
    # captured now: a refund goes through
    order = shop.state.orders.refund(order_id, amount=100, refund_id="rf_after_capture")
    assert order.amount_refunded == 100
    assert shop.fake.charges_count() == 1


def test_manual_capture_cancel_before_shipping_voids_the_authorization(make_shop: MakeShop) -> None:
    shop = make_shop(ACP_STRIPE_CAPTURE_METHOD="manual")
    done = shop.buy()
    [pi] = shop.fake.payment_intents.values()
    order = shop.state.orders.cancel(done["order"]["id"], reason="out of stock")
    assert order.status == "canceled"
    pi = shop.fake.payment_intents[pi["id"]]
    assert (pi["status"], pi["cancellation_reason"], pi["amount_received"]) == ("canceled", "abandoned", 0)
    assert shop.fake.refunds == {}  # released, not refunded
    stored = shop.stored(done["id"])
    assert stored.payment is not None
    assert stored.payment.capture_status == "voided"
    assert [a.type for a in order.adjustments] == ["cancellation"]
    # canceling again changes nothing and calls Stripe no more
    calls = shop.stripe_calls()
    assert shop.state.orders.cancel(done["order"]["id"]) == order
    assert shop.stripe_calls() == calls
    [cancel] = [w for w in shop.fake.wire_requests if w.path == f"{PI_PATH}/{pi['id']}/cancel"]
    assert dict(urllib.parse.parse_qsl(cancel.body)) == {"cancellation_reason": "abandoned"}
    assert_order_valid(order)


# --------------------------------------------------------------------------- declines


@pytest.mark.parametrize("payment_method", DECLINE_CLASSES)
def test_decline_keeps_session_payable_and_never_says_why(shop: Shop, payment_method: str) -> None:
    session = shop.agent.ready_session()
    declined = shop.agent.complete(session["id"], shop.mint(payment_method))
    assert declined.status_code == 200
    body = declined.get_json()
    assert body["status"] == "ready_for_payment"
    message = only_message(body)
    assert (message["type"], message["code"]) == ("error", "payment_declined")
    text = json.dumps(body).lower()
    for secret in ("fraud", "lost", "stolen", "insufficient", "expired_card", "decline_code"):
        assert secret not in text, (secret, message["content"])
    [pi] = shop.fake.payment_intents.values()
    assert pi["status"] == "requires_payment_method"
    assert shop.fake.charges_count() == 0
    assert shop.session(session["id"])["status"] == "ready_for_payment"

    done = shop.agent.complete(session["id"], shop.mint())
    assert done.get_json()["status"] == "completed"
    assert done.get_json()["messages"] == []
    assert shop.fake.charges_count() == 1
    assert len(shop.fake.payment_intents) == 2  # a new token gets a new PaymentIntent


# --------------------------------------------------------------------------- token problems


def _unusable_token(shop: Shop, problem: str) -> str:
    if problem == "expired":
        token = shop.mint(expires_in=60)
        shop.fake.advance_clock(120)
        return token
    if problem == "over_max_amount":
        return shop.mint(max_amount=TOTAL - 1)
    if problem == "currency_mismatch":
        return shop.mint(currency="eur", max_amount=10_000)
    assert problem == "revoked"
    token = shop.mint()
    shop.payments.client.raw_request(
        "post", f"/v1/test_helpers/shared_payment/granted_tokens/{token}/revoke",
        stripe_version=shop.payments.spt_api_version)
    return token


@pytest.mark.parametrize("preflight", [True, False], ids=["preflight", "stripe_error"])
@pytest.mark.parametrize("problem", ["expired", "over_max_amount", "currency_mismatch", "revoked"])
def test_unusable_token_is_an_invalid_message_on_the_token(make_shop: MakeShop, problem: str,
                                                           preflight: bool) -> None:
    shop = make_shop(ACP_STRIPE_TOKEN_PREFLIGHT=preflight)
    session = shop.agent.ready_session()
    token = _unusable_token(shop, problem)
    response = shop.agent.complete(session["id"], token)
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ready_for_payment"
    message = only_message(body)
    assert (message["type"], message["code"], message["param"]) == ("error", "invalid", TOKEN_PARAM)
    assert shop.fake.payment_intents == {}
    if preflight:
        assert shop.pi_creates() == []  # caught by the token lookup: no PaymentIntent call at all
    else:
        [attempt] = shop.pi_creates()  # Stripe refused it (400 on the token param)
        assert attempt.headers["Idempotency-Key"] == stripe_key(session["id"], token)
    # a fresh token pays
    done = shop.agent.complete(session["id"], shop.mint(expires_in=86_400))
    assert done.get_json()["status"] == "completed"
    assert shop.fake.charges_count() == 1


def test_token_expiring_within_the_margin_is_refused_before_charging(shop: Shop) -> None:
    session = shop.agent.ready_session()
    body = shop.agent.complete(session["id"], shop.mint(expires_in=10)).get_json()
    assert only_message(body)["param"] == TOKEN_PARAM
    assert shop.pi_creates() == []


def test_unknown_token_is_an_invalid_message(make_shop: MakeShop) -> None:
    for preflight in (True, False):
        shop = make_shop(ACP_STRIPE_TOKEN_PREFLIGHT=preflight)
        session = shop.agent.ready_session()
        body = shop.agent.complete(session["id"], "spt_does_not_exist").get_json()
        assert body["status"] == "ready_for_payment"
        assert (only_message(body)["code"], only_message(body)["param"]) == ("invalid", TOKEN_PARAM)
    assert shop.fake.payment_intents == {}


# --------------------------------------------------------------------------- 3DS


def test_requires_action_cancels_the_payment_intent(shop: Shop) -> None:
    session = shop.agent.ready_session()
    body = shop.agent.complete(session["id"], shop.mint("pm_card_authenticationRequired")).get_json()
    assert body["status"] == "ready_for_payment"
    message = only_message(body)
    assert (message["type"], message["code"]) == ("error", "requires_3ds")
    [pi] = shop.fake.payment_intents.values()
    assert (pi["status"], pi["cancellation_reason"]) == ("canceled", "abandoned")
    assert shop.fake.charges_count() == 0
    done = shop.agent.complete(session["id"], shop.mint()).get_json()
    assert done["status"] == "completed"


# --------------------------------------------------------------------------- Stripe faults


def test_pre_execution_500_is_retried_with_the_same_key(shop: Shop) -> None:
    session = shop.agent.ready_session()
    token = shop.mint()
    shop.fake.fail_next("500_before", path_prefix=PI_PATH)
    done = shop.agent.complete(session["id"], token).get_json()
    assert done["status"] == "completed"
    first, second = shop.pi_creates()
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] \
        == stripe_key(session["id"], token)
    assert first.body == second.body
    assert shop.fake.charges_count() == 1
    assert len(shop.fake.payment_intents) == 1


def _after_500(shop: Shop) -> tuple[dict[str, t.Any], str, dict[str, t.Any]]:
    """Complete while Stripe charges and then answers 500 (saved under the key)."""
    session = shop.agent.ready_session()
    token = shop.mint()
    shop.fake.fail_next("500_after", path_prefix=PI_PATH)
    response = shop.agent.complete(session["id"], token)
    assert response.status_code == 503
    assert response.get_json()["type"] == "service_unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    assert shop.session(session["id"])["status"] == "complete_in_progress"
    assert shop.fake.charges_count() == 1  # Stripe did charge
    [pi] = shop.fake.payment_intents.values()
    return session, token, pi


def test_post_execution_500_stays_in_progress_then_webhook_completes(make_shop: MakeShop) -> None:
    shop = make_shop(ACP_STRIPE_TOKEN_PREFLIGHT=False)
    session, token, pi = _after_500(shop)
    # nobody retries; the session stays in progress and refuses other changes
    update = shop.agent.post(f"/checkout_sessions/{session['id']}", {"line_items": [{"id": "item_456"}]})
    assert update.status_code == 409
    assert shop.session(session["id"])["status"] == "complete_in_progress"
    # Stripe's payment_intent.succeeded event settles it (real HTTP from the fake)
    with serve_app(shop.app) as url:
        delivery = shop.fake.send_webhook(f"{url}/webhooks/stripe", "payment_intent.succeeded", pi,
                                          secret=WHSEC)
    assert delivery.status_code == 200, delivery
    done = shop.session(session["id"])
    assert done["status"] == "completed"
    assert done["order"]["checkout_session_id"] == session["id"]
    assert shop.fake.charges_count() == 1
    assert len(shop.fake.payment_intents) == 1
    stored = shop.stored(session["id"])
    assert stored.payment is not None
    assert stored.payment.payment_id == pi["id"]
    assert shop.outbox_types() == ["order_create"]
    # the agent's next retry gets an answer without a Stripe call
    calls = shop.stripe_calls()
    assert shop.agent.complete(session["id"], token).status_code == 405
    assert shop.stripe_calls() == calls


def test_post_execution_500_then_same_token_retry_finds_the_charge(shop: Shop) -> None:
    """Regression: the token lookup saw the token ``consumed`` (by this very
    charge) and answered "invalid token", putting the paid session back to
    ``ready_for_payment``: the agent's next token was charged a second time."""
    session, token, pi = _after_500(shop)
    retry = shop.agent.complete(session["id"], token)
    assert retry.status_code == 200
    assert retry.get_json()["status"] == "completed", retry.get_json()["messages"]
    assert shop.fake.charges_count() == 1
    assert len(shop.fake.payment_intents) == 1
    assert len(shop.pi_creates()) == 1  # found by the token lookup + search, not re-sent
    assert shop.stored(session["id"]).payment.payment_id == pi["id"]  # type: ignore[union-attr]
    assert shop.agent.complete(session["id"], shop.mint()).status_code == 405


def test_post_execution_500_reconciled_by_search_in_the_sweep(shop: Shop) -> None:
    session, _, pi = _after_500(shop)
    result = shop.app.test_cli_runner().invoke(args=["acp", "sweep", "--stuck-after", "0"])
    assert result.exit_code == 0, result.output
    assert "recovered=1" in result.output
    searches = [w for w in shop.fake.wire_requests if w.path == f"{PI_PATH}/search"]
    assert len(searches) == 1
    assert "acp_idempotency_key" in urllib.parse.unquote(searches[0].query)
    done = shop.session(session["id"])
    assert done["status"] == "completed"
    assert shop.stored(session["id"]).payment.payment_id == pi["id"]  # type: ignore[union-attr]
    assert shop.fake.charges_count() == 1
    assert len(shop.fake.payment_intents) == 1


def test_post_execution_500_then_another_token_reconciles_first(shop: Shop) -> None:
    session, _, pi = _after_500(shop)
    other = shop.mint()
    done = shop.agent.complete(session["id"], other).get_json()
    assert done["status"] == "completed"
    assert shop.fake.charges_count() == 1
    assert len(shop.fake.payment_intents) == 1
    assert shop.fake.granted_tokens[other]["deactivated_reason"] is None  # never charged
    assert shop.stored(session["id"]).payment.payment_id == pi["id"]  # type: ignore[union-attr]


def test_dropped_connection_is_retried_by_the_sdk_into_the_replay(shop: Shop) -> None:
    session = shop.agent.ready_session()
    token = shop.mint()
    shop.fake.fail_next("drop_after", path_prefix=PI_PATH)
    done = shop.agent.complete(session["id"], token).get_json()
    assert done["status"] == "completed"
    assert [w.headers["Idempotency-Key"] for w in shop.pi_creates()] == [stripe_key(session["id"], token)] * 2
    assert shop.fake.charges_count() == 1
    assert len(shop.fake.payment_intents) == 1


@pytest.mark.parametrize("same_token", [True, False], ids=["same_token", "new_token"])
def test_dropped_connection_then_agent_retry_with_another_key_charges_once(
        make_shop: MakeShop, same_token: bool) -> None:
    shop = make_shop(ACP_STRIPE_MAX_NETWORK_RETRIES=0)
    session = shop.agent.ready_session()
    token = shop.mint()
    shop.fake.fail_next("drop_after", path_prefix=PI_PATH)
    lost = shop.agent.complete(session["id"], token, key="acp-key-1")
    assert lost.status_code == 503
    assert "Retry-After" in lost.headers
    assert shop.fake.charges_count() == 1  # Stripe charged; we never heard back
    assert shop.session(session["id"])["status"] == "complete_in_progress"

    retry_token = token if same_token else shop.mint()
    done = shop.agent.complete(session["id"], retry_token, key="acp-key-2")
    assert done.status_code == 200
    assert done.headers.get("Idempotent-Replayed") is None
    assert done.get_json()["status"] == "completed"
    assert shop.fake.charges_count() == 1
    [pi] = shop.fake.payment_intents.values()
    assert shop.stored(session["id"]).payment.payment_id == pi["id"]  # type: ignore[union-attr]
    if not same_token:
        assert shop.fake.granted_tokens[retry_token]["deactivated_reason"] is None
        assert len(shop.pi_creates()) == 1  # reconciled by search, nothing charged again


def test_same_acp_key_replay_makes_no_stripe_call(shop: Shop) -> None:
    session = shop.agent.ready_session()
    token = shop.mint()
    first = shop.agent.complete(session["id"], token, key="complete-once")
    calls = shop.stripe_calls()
    replay = shop.agent.complete(session["id"], token, key="complete-once")
    assert shop.stripe_calls() == calls
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert (replay.status_code, replay.get_json()) == (first.status_code, first.get_json())
    assert shop.fake.charges_count() == 1


def test_same_acp_key_replay_of_a_decline_makes_no_stripe_call(shop: Shop) -> None:
    session = shop.agent.ready_session()
    token = shop.mint("pm_card_chargeDeclined")
    first = shop.agent.complete(session["id"], token, key="decline-once")
    calls = shop.stripe_calls()
    replay = shop.agent.complete(session["id"], token, key="decline-once")
    assert shop.stripe_calls() == calls
    assert replay.get_json() == first.get_json()
    assert only_message(replay.get_json())["code"] == "payment_declined"


def test_rate_limit_is_503_and_not_stored(shop: Shop) -> None:
    session = shop.agent.ready_session()
    token = shop.mint()
    shop.fake.fail_next("429", path_prefix=PI_PATH)
    limited = shop.agent.complete(session["id"], token, key="rate-limited")
    assert limited.status_code == 503
    assert limited.get_json()["type"] == "service_unavailable"
    assert int(limited.headers["Retry-After"]) >= 1
    assert len(shop.pi_creates()) == 1  # the SDK does not retry a 429
    assert shop.fake.charges_count() == 0
    # the same ACP key is processed again, not replayed
    done = shop.agent.complete(session["id"], token, key="rate-limited")
    assert done.status_code == 200
    assert done.headers.get("Idempotent-Replayed") is None
    assert done.get_json()["status"] == "completed"
    assert shop.fake.charges_count() == 1


def test_token_reused_after_the_total_changed_is_invalid(shop: Shop) -> None:
    """A declined token sent again for a new total: Stripe answers the same
    idempotency key with other parameters with ``idempotency_error``."""
    session = shop.agent.ready_session()
    token = shop.mint("pm_card_chargeDeclined", max_amount=10_000)
    declined = shop.agent.complete(session["id"], token).get_json()
    assert only_message(declined)["code"] == "payment_declined"
    updated = shop.agent.post(f"/checkout_sessions/{session['id']}",
                              {"line_items": [{"id": "item_123", "quantity": 2}]}).get_json()
    assert (updated["status"], total_of(updated)) == ("ready_for_payment", TOTAL_TWO)

    body = shop.agent.complete(session["id"], token).get_json()
    assert body["status"] == "ready_for_payment"
    message = only_message(body)
    assert (message["code"], message["param"]) == ("invalid", TOKEN_PARAM)
    first, second = shop.pi_creates()
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert dict(urllib.parse.parse_qsl(second.body))["amount"] == str(TOTAL_TWO)
    assert len(shop.fake.payment_intents) == 1  # nothing new was created

    done = shop.agent.complete(session["id"], shop.mint(max_amount=TOTAL_TWO)).get_json()
    assert done["status"] == "completed"
    [paid] = [pi for pi in shop.fake.payment_intents.values() if pi["status"] == "succeeded"]
    assert paid["amount"] == TOTAL_TWO


@pytest.mark.parametrize("preflight", [True, False], ids=["preflight", "stripe_error"])
def test_processor_same_key_other_amount_is_a_token_error(make_shop: MakeShop, preflight: bool) -> None:
    shop = make_shop(ACP_STRIPE_TOKEN_PREFLIGHT=preflight)
    token = shop.mint(max_amount=10_000)
    request = ChargeRequest(idempotency_key="acp-direct-1", amount=TOTAL, currency="usd", token=token,
                            handler_id="card_tokenized", checkout_session_id="cs_direct")
    first = shop.payments.charge(request)
    assert shop.payments.charge(request) == first  # the same charge, whichever way it is found
    with pytest.raises(PaymentTokenError, match="different amount"):
        shop.payments.charge(dataclasses.replace(request, amount=TOTAL + 1))
    assert shop.fake.charges_count() == 1
    assert len(shop.fake.payment_intents) == 1


def test_stripe_rejecting_our_credentials_is_a_processing_error(make_shop: MakeShop) -> None:
    shop = make_shop(ACP_STRIPE_SECRET_KEY="sk_test_wrong_key")
    session = shop.agent.ready_session()
    response = shop.agent.complete(session["id"], "spt_anything")
    assert response.status_code == 500
    assert response.get_json()["type"] == "processing_error"
    assert shop.session(session["id"])["status"] == "ready_for_payment"


# --------------------------------------------------------------------------- refunds


@pytest.fixture
def dashboard(fake: FakeStripe) -> cabc.Iterator[stripe.StripeClient]:
    """The merchant's Stripe dashboard: another client on the same account."""
    http = stripe.RequestsClient(timeout=5)
    yield stripe.StripeClient(fake.api_key, base_addresses={"api": fake.url}, http_client=http)
    http.close()  # type: ignore[no-untyped-call]


def test_partial_and_full_refunds_through_the_api_and_the_cli(shop: Shop,
                                                            dashboard: stripe.StripeClient) -> None:
    done = shop.buy()
    order_id = done["order"]["id"]
    [pi] = shop.fake.payment_intents.values()
    orders = shop.state.orders

    order = orders.refund(order_id, amount=100, refund_id="rf_1", reason="damaged")
    assert [(a.id, a.type, a.status, a.amount) for a in order.adjustments] == [
        ("rf_1", "refund", "completed", 100)]
    assert order.amount_refunded == 100
    [refund] = shop.fake.refunds.values()
    assert (refund["amount"], refund["payment_intent"], refund["status"]) == (100, pi["id"], "succeeded")
    assert refund["metadata"] == {"acp_order_id": order_id, "acp_refund_id": "rf_1"}
    [wire] = [w for w in shop.fake.wire_requests if w.path == "/v1/refunds"]
    assert wire.headers["Idempotency-Key"] == f"acp-{order_id}-refund-rf_1"
    # the same refund id again: nothing new anywhere
    calls = shop.stripe_calls()
    assert orders.refund(order_id, amount=100, refund_id="rf_1") == order
    assert shop.stripe_calls() == calls
    assert len(shop.fake.refunds) == 1

    runner = shop.app.test_cli_runner()
    result = runner.invoke(args=["acp", "orders", "refund", order_id, "--amount", "30",
                                 "--refund-id", "rf_cli"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert {"type": "amount_refunded", "display_text": "Refunded", "amount": 130} in printed["totals"]
    result = runner.invoke(args=["acp", "orders", "refund", order_id, "--refund-id", "rf_rest"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(args=["acp", "orders", "refund", order_id, "--refund-id", "rf_rest"]).exit_code == 0
    assert sorted(r["amount"] for r in shop.fake.refunds.values()) == [30, 100, TOTAL - 130]
    over = runner.invoke(args=["acp", "orders", "refund", order_id, "--amount", "1"])
    assert over.exit_code == 1
    assert "nothing is left to refund" in over.output
    assert len(shop.fake.refunds) == 3

    order = orders.get(order_id)
    assert order.amount_refunded == TOTAL
    body = assert_order_valid(order)
    assert [(a["id"], a["status"], a["amount"]) for a in body["adjustments"]] == [
        ("rf_1", "completed", 100), ("rf_cli", "completed", 30), ("rf_rest", "completed", TOTAL - 130)]
    assert dashboard.v1.charges.retrieve(pi["latest_charge"]).amount_refunded == TOTAL
    assert shop.outbox_types() == ["order_create"] + ["order_update"] * 6  # pending + done, 3 refunds


def test_cancel_refunds_a_captured_order_once(shop: Shop) -> None:
    done = shop.buy()
    order = shop.state.orders.cancel(done["order"]["id"])
    assert order.amount_refunded == TOTAL
    assert shop.state.orders.cancel(done["order"]["id"]) == order
    assert [r["amount"] for r in shop.fake.refunds.values()] == [TOTAL]


def test_dashboard_refund_arrives_as_charge_refunded_webhook(shop: Shop,
                                                             dashboard: stripe.StripeClient) -> None:
    done = shop.buy()
    order_id = done["order"]["id"]
    [pi] = shop.fake.payment_intents.values()
    shop.state.orders.refund(order_id, amount=50, refund_id="rf_ours")
    with serve_app(shop.app) as url:
        shop.fake.auto_webhooks(f"{url}/webhooks/stripe", WHSEC)
        dashboard.v1.refunds.create(params={"payment_intent": pi["id"], "amount": 120})
        shop.fake.flush_webhooks()
        shop.fake.auto_webhooks(None)
    deliveries = [d for d in shop.fake.webhook_log if d.event["type"] == "charge.refunded"]
    assert [d.status_code for d in deliveries] == [200]
    order = shop.state.orders.get(order_id)
    refunds = [(a.type, a.status, a.amount) for a in order.adjustments]
    assert refunds == [("refund", "completed", 50), ("refund", "completed", 120)]
    assert order.amount_refunded == 170
    assert_order_valid(order)
    # what is left to refund takes the dashboard refund into account
    with pytest.raises(InvalidRequestError, match=f"1 to {TOTAL - 170}"):
        shop.state.orders.refund(order_id, amount=TOTAL)
    # the same event delivered again changes nothing
    event = deliveries[0].event
    body = json.dumps(event).encode()
    again = shop.app.test_client().post("/webhooks/stripe", data=body, headers={
        "Stripe-Signature": stripe_signature_header(body, WHSEC)})
    assert again.status_code == 200
    assert again.get_json()["duplicate"] is True
    assert shop.state.orders.get(order_id) == order


def test_charge_refunded_for_our_own_refund_adds_nothing(shop: Shop) -> None:
    done = shop.buy()
    order_id = done["order"]["id"]
    [pi] = shop.fake.payment_intents.values()
    shop.state.orders.refund(order_id, amount=100, refund_id="rf_1")
    before = shop.state.orders.get(order_id)
    charge = {"id": pi["latest_charge"], "object": "charge", "amount": TOTAL,
              "amount_refunded": 100, "currency": "usd", "payment_intent": pi["id"],
              "refunded": False}
    assert post_event(shop, "charge.refunded", charge).status_code == 200
    assert shop.state.orders.get(order_id) == before


def test_charge_refunded_with_the_refund_list_uses_our_refund_ids(shop: Shop) -> None:
    """Older API versions (and expanded charges) list the refunds in the event."""
    done = shop.buy()
    order_id = done["order"]["id"]
    [pi] = shop.fake.payment_intents.values()
    refund = {"id": "re_listed", "object": "refund", "amount": 80, "currency": "usd",
              "status": "succeeded", "payment_intent": pi["id"], "created": int(time.time()),
              "metadata": {}, "reason": "requested_by_customer"}
    charge = {"id": pi["latest_charge"], "object": "charge", "amount": TOTAL, "amount_refunded": 80,
              "currency": "usd", "payment_intent": pi["id"], "refunds": {"object": "list",
                                                                        "data": [refund]}}
    assert post_event(shop, "charge.refunded", charge).status_code == 200
    order = shop.state.orders.get(order_id)
    assert [(a.id, a.status, a.amount) for a in order.adjustments] == [("re_listed", "completed", 80)]


def test_dispute_webhook_records_a_dispute_adjustment(shop: Shop) -> None:
    done = shop.buy()
    order_id = done["order"]["id"]
    [pi] = shop.fake.payment_intents.values()
    dispute = {"id": "dp_1", "object": "dispute", "amount": TOTAL, "currency": "usd",
               "charge": pi["latest_charge"], "payment_intent": pi["id"], "reason": "fraudulent",
               "status": "needs_response", "created": int(time.time())}
    first = post_event(shop, "charge.dispute.created", dispute, event_id="evt_dispute_1")
    assert (first.status_code, first.get_json()) == (200, {"received": True})
    order = shop.state.orders.get(order_id)
    assert [(a.id, a.type, a.status, a.amount) for a in order.adjustments] == [
        ("dp_1", "dispute", "pending", TOTAL)]
    assert order.amount_refunded == 0
    assert_order_valid(order)
    events = shop.outbox_types()
    duplicate = post_event(shop, "charge.dispute.created", dispute, event_id="evt_dispute_1")
    assert duplicate.get_json() == {"received": True, "duplicate": True}
    assert shop.state.orders.get(order_id) == order
    assert shop.outbox_types() == events


def test_webhook_signature_good_bad_stale(shop: Shop) -> None:
    obj = {"id": "pi_unknown", "object": "payment_intent", "status": "succeeded", "metadata": {}}
    assert post_event(shop, "payment_intent.succeeded", obj).status_code == 200
    bad = post_event(shop, "payment_intent.succeeded", obj, secret="whsec_someone_else_000000")
    assert (bad.status_code, bad.get_json()["code"]) == (400, "invalid_signature")
    stale = post_event(shop, "payment_intent.succeeded", obj, timestamp=int(time.time()) - 301)
    assert (stale.status_code, stale.get_json()["code"]) == (400, "invalid_signature")
    body, headers = signed("payment_intent.succeeded", obj)
    tampered = shop.app.test_client().post("/webhooks/stripe", data=body.replace(b"pi_unknown", b"pi_other"),
                                           headers=headers)
    assert tampered.status_code == 400
    missing = shop.app.test_client().post("/webhooks/stripe", data=body,
                                          headers={"Content-Type": "application/json"})
    assert missing.status_code == 400
    # an unknown event type is acknowledged and ignored
    assert post_event(shop, "customer.created", {"id": "cus_1", "object": "customer"}).status_code == 200


def test_webhook_route_is_off_without_a_secret(make_shop: MakeShop) -> None:
    shop = make_shop(ACP_STRIPE_WEBHOOK_SECRET=None)
    body, headers = signed("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent"})
    assert shop.app.test_client().post("/webhooks/stripe", data=body, headers=headers).status_code == 404


def test_webhook_for_a_busy_session_is_not_acknowledged(make_shop: MakeShop) -> None:
    """A session lock held elsewhere is transient: Stripe must deliver the event
    again (non-2xx), and it must not be recorded as processed."""
    shop = make_shop(ACP_LOCK_WAIT=0.05)
    session, _, pi = _after_500(shop)
    with shop.state.service.locked(session["id"]):
        busy = post_event(shop, "payment_intent.succeeded", pi, event_id="evt_busy")
    assert busy.status_code == 409
    assert shop.session(session["id"])["status"] == "complete_in_progress"
    again = post_event(shop, "payment_intent.succeeded", pi, event_id="evt_busy")
    assert again.get_json() == {"received": True}
    assert shop.session(session["id"])["status"] == "completed"


def test_webhook_about_an_earlier_attempt_does_not_settle_the_current_one(make_shop: MakeShop) -> None:
    shop = make_shop(ACP_STRIPE_MAX_NETWORK_RETRIES=0)
    session = shop.agent.ready_session()
    declined = shop.agent.complete(session["id"], shop.mint("pm_card_chargeDeclined")).get_json()
    assert only_message(declined)["code"] == "payment_declined"
    [failed_pi] = shop.fake.payment_intents.values()
    shop.fake.fail_next("500_before", path_prefix=PI_PATH)  # outcome unknown: stays pending
    assert shop.agent.complete(session["id"], shop.mint()).status_code == 503
    # the declined attempt's event arrives late: it says nothing about the pending one
    assert post_event(shop, "payment_intent.payment_failed", failed_pi).status_code == 200
    assert shop.session(session["id"])["status"] == "complete_in_progress"


def test_signed_succeeded_event_settles_before_search_sees_the_charge(make_shop: MakeShop) -> None:
    """Stripe's search is eventually consistent: a signed "succeeded" event is
    the charge's own evidence, whether or not the search can see it yet."""
    shop = make_shop(ACP_STRIPE_MAX_NETWORK_RETRIES=0)
    session = shop.agent.ready_session()
    shop.fake.fail_next("500_before", path_prefix=PI_PATH)  # a 5xx: outcome unknown to us
    assert shop.agent.complete(session["id"], shop.mint()).status_code == 503
    assert shop.session(session["id"])["status"] == "complete_in_progress"
    key = shop.stored(session["id"]).payment.idempotency_key  # type: ignore[union-attr]
    unseen = {"id": "pi_not_indexed_yet", "object": "payment_intent", "status": "succeeded",
              "amount": TOTAL, "currency": "usd",
              "metadata": {"acp_checkout_session_id": session["id"], "acp_idempotency_key": key}}
    assert post_event(shop, "payment_intent.succeeded", unseen, event_id="evt_lagging").status_code == 200
    done = shop.session(session["id"])
    assert done["status"] == "completed"
    assert shop.stored(session["id"]).payment.payment_id == "pi_not_indexed_yet"  # type: ignore[union-attr]


def test_rate_limited_charge_leaves_the_session_payable(shop: Shop) -> None:
    """A 429 is never executed by Stripe: nothing to reconcile, the session stays payable."""
    session = shop.agent.ready_session()
    shop.fake.fail_next("429", path_prefix=PI_PATH)
    response = shop.agent.complete(session["id"], shop.mint())
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert shop.session(session["id"])["status"] == "ready_for_payment"
    assert shop.agent.complete(session["id"], shop.mint()).get_json()["status"] == "completed"
    assert shop.fake.charges_count() == 1


def test_manual_capture_lost_outcome_settled_by_amount_capturable_updated(make_shop: MakeShop) -> None:
    shop = make_shop(ACP_STRIPE_CAPTURE_METHOD="manual", ACP_STRIPE_TOKEN_PREFLIGHT=False)
    session, _, pi = _after_500(shop)
    assert pi["status"] == "requires_capture"
    with serve_app(shop.app) as url:
        delivery = shop.fake.send_webhook(f"{url}/webhooks/stripe",
                                          "payment_intent.amount_capturable_updated", pi, secret=WHSEC)
    assert delivery.status_code == 200
    assert shop.session(session["id"])["status"] == "completed"
    stored = shop.stored(session["id"])
    assert stored.payment is not None
    assert stored.payment.capture_status == "authorized"


def test_payment_intent_canceled_webhook_cancels_an_authorized_order(make_shop: MakeShop) -> None:
    shop = make_shop(ACP_STRIPE_CAPTURE_METHOD="manual")
    done = shop.buy()
    [pi] = shop.fake.payment_intents.values()
    expired = {**pi, "status": "canceled", "cancellation_reason": "automatic"}
    assert post_event(shop, "payment_intent.canceled", expired).status_code == 200
    order = shop.state.orders.get(done["order"]["id"])
    assert order.status == "canceled"


# --------------------------------------------------------------------------- unplaceable order


@pytest.mark.parametrize("capture", ["automatic", "manual"])
def test_paid_order_the_platform_refuses_gives_the_money_back(make_shop: MakeShop, capture: str) -> None:
    shop = make_shop(ACP_ADAPTER=f"{__name__}:RejectingCatalogAdapter", ACP_STRIPE_CAPTURE_METHOD=capture)
    adapter = shop.state.adapter
    assert isinstance(adapter, RejectingCatalogAdapter)
    adapter.reject = "the warehouse is closed for inventory"
    session = shop.agent.ready_session()
    response = shop.agent.complete(session["id"], shop.mint())
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] != "completed"
    assert "order" not in body
    message = only_message(body)
    assert message["type"] == "error"
    assert "the warehouse is closed for inventory" in message["content"]
    [pi] = shop.fake.payment_intents.values()
    assert shop.fake.charges_count() == 1
    if capture == "automatic":
        [refund] = shop.fake.refunds.values()
        assert (refund["amount"], refund["payment_intent"]) == (TOTAL, pi["id"])
        assert refund["metadata"]["acp_checkout_session_id"] == session["id"]
    else:
        assert shop.fake.refunds == {}
        assert shop.fake.payment_intents[pi["id"]]["status"] == "canceled"
    stored = shop.stored(session["id"])
    assert stored.payment is not None
    assert stored.payment.status == "failed"
    assert shop.outbox_types() == []


@pytest.mark.parametrize("preflight", [True, False], ids=["preflight", "stripe_replay"])
@pytest.mark.parametrize("capture", ["automatic", "manual"])
def test_token_of_a_payment_given_back_cannot_pay_again(make_shop: MakeShop, capture: str,
                                                        preflight: bool) -> None:
    """Regression: after the money of an unplaceable order went back, the same
    token again (same Stripe key) got Stripe's replay of the old success (or the
    search found the refunded PaymentIntent): the order was placed unpaid."""
    shop = make_shop(ACP_ADAPTER=f"{__name__}:RejectingCatalogAdapter", ACP_STRIPE_CAPTURE_METHOD=capture,
                     ACP_STRIPE_TOKEN_PREFLIGHT=preflight)
    adapter = shop.state.adapter
    assert isinstance(adapter, RejectingCatalogAdapter)
    adapter.reject = "the warehouse is closed for inventory"
    session = shop.agent.ready_session()
    token = shop.mint()
    assert shop.agent.complete(session["id"], token).get_json()["status"] == "not_ready_for_payment"
    adapter.reject = None
    updated = shop.agent.post(f"/checkout_sessions/{session['id']}", {"line_items": [{"id": "item_123"}]})
    assert updated.get_json()["status"] == "ready_for_payment"

    again = shop.agent.complete(session["id"], token).get_json()
    assert again["status"] == "ready_for_payment"
    message = only_message(again)
    assert (message["code"], message["param"]) == ("invalid", TOKEN_PARAM)
    done = shop.agent.complete(session["id"], shop.mint()).get_json()
    assert done["status"] == "completed"
    refunded = {r["payment_intent"] for r in shop.fake.refunds.values() if r["amount"] == TOTAL}
    held = [pi["id"] for pi in shop.fake.payment_intents.values()
            if pi["status"] in ("succeeded", "requires_capture") and pi["id"] not in refunded]
    assert held == [shop.stored(session["id"]).payment.payment_id]  # type: ignore[union-attr]
    assert shop.fake.charges_count() == 2  # the given-back one, and the new token's


def test_stray_charge_of_a_completed_session_is_refunded_by_its_event(shop: Shop) -> None:
    """A second PaymentIntent of a completed session (a worker frozen past its
    lease whose charge landed late) reaches us only as Stripe's signed
    ``payment_intent.succeeded``: it is refunded in full at Stripe, once, and
    the order and its own payment stay as they are. A PaymentIntent without
    our metadata (the merchant's other sales) is left alone."""
    done = shop.buy()
    session_id = done["id"]
    own = shop.stored(session_id).payment.payment_id  # type: ignore[union-attr]
    stray = shop.payments.charge(ChargeRequest(
        idempotency_key=stripe_key(session_id, "late"), amount=TOTAL, currency="usd", token=shop.mint(),
        handler_id="card_tokenized", checkout_session_id=session_id))
    assert stray.payment_id != own
    pi = shop.fake.payment_intents[stray.payment_id]
    assert post_event(shop, "payment_intent.succeeded", pi).get_json() == {"received": True}
    assert post_event(shop, "payment_intent.succeeded", pi).get_json() == {"received": True}
    refunds = [r for r in shop.fake.refunds.values() if r["payment_intent"] == stray.payment_id]
    assert [r["amount"] for r in refunds] == [TOTAL]
    assert not [r for r in shop.fake.refunds.values() if r["payment_intent"] == own]
    assert shop.session(session_id)["status"] == "completed"

    foreign = dict(pi, id="pi_not_ours", metadata={})
    assert post_event(shop, "payment_intent.succeeded", foreign).get_json() == {"received": True}


# --------------------------------------------------------------------------- Stripe's own units: ISK, UGX

#: Stripe ``amount`` units per ISO 4217 minor unit (docs.stripe.com/currencies, "Special cases"):
#: ISO gives ISK and UGX no minor unit, Stripe takes them as two-decimal values ("to charge
#: 5 ISK, provide an amount value of 500"). JPY is zero-decimal for both: sent as it is.
STRIPE_UNITS = {"isk": 100, "ugx": 100, "jpy": 1}
#: one sweater, shipped by post, with 10 % Californian tax on the sweater (whole units)
SWEATER, POST, SWEATER_TAX = 24_990, 1_500, 2_499
FOREIGN_TOTAL = SWEATER + SWEATER_TAX + POST  # 28,989 ISK (ISO minor units = krónur)
HOOK_SECRET = "whsec_agent_one_orders_0001"


def foreign_shop(make_shop: MakeShop, tmp_path: pathlib.Path, currency: str, **config: t.Any) -> Shop:
    """A shop whose catalog sells in ``currency``: a sweater, and a jeep above
    Stripe's 8-digit maximum once counted in Stripe's units."""
    folder = tmp_path / f"catalog_{currency}"
    folder.mkdir()
    variants = [{"id": vid, "title": title, "price": {"amount": amount, "currency": currency.upper()},
                 "availability": {"available": True, "status": "in_stock"}}
                for vid, title, amount in (("sweater", "Lopapeysa", SWEATER), ("jeep", "Jeep", 1_000_000))]
    feed = {"products": [{"id": "prod_wool", "title": "Wool and wheels", "variants": variants}]}
    store = {"currency": currency, "order_url_template": "https://shop.example/orders/{order_id}",
             "stock": {"sweater": 100, "jeep": 1}, "max_quantity_per_order": 10,
             "shipping_methods": [{"id": "post", "title": "Post", "carrier": "Post", "amount": POST,
                                   "min_days": 3, "max_days": 6, "countries": ["US"]}],
             "tax": [{"country": "US", "region": "CA", "rate": "0.1"}], "tax_shipping": False}
    (folder / "feed.json").write_text(json.dumps(feed))
    (folder / "store.json").write_text(json.dumps(store))
    return make_shop(ACP_CATALOG_FILE=str(folder / "feed.json"), ACP_STORE_FILE=str(folder / "store.json"),
                     **config)


def foreign_session(shop: Shop, currency: str, item: str = "sweater") -> dict[str, t.Any]:
    created = shop.agent.create([{"id": item}], currency=currency, fulfillment_details={"address": ADDRESS})
    assert created.status_code == 201, created.get_json()
    return t.cast(dict[str, t.Any], created.get_json())


def buy_in(shop: Shop, currency: str) -> dict[str, t.Any]:
    """Buy the sweater, with a token whose ``max_amount`` is the total in Stripe's units."""
    session = foreign_session(shop, currency)
    assert (session["status"], session["currency"]) == ("ready_for_payment", currency), session["messages"]
    assert total_of(session) == FOREIGN_TOTAL
    token = shop.mint(currency=currency, max_amount=FOREIGN_TOTAL * STRIPE_UNITS[currency])
    done = shop.agent.complete(session["id"], token)
    assert done.status_code == 200, done.get_json()
    body = t.cast(dict[str, t.Any], done.get_json())
    assert body["status"] == "completed", body["messages"]
    return body


@pytest.mark.parametrize("currency", ["isk", "ugx", "jpy"])
def test_purchase_is_charged_in_stripes_units_and_shown_in_iso_units(make_shop: MakeShop,
                                                                     tmp_path: pathlib.Path,
                                                                     currency: str) -> None:
    """Regression (a money bug): a 28,989 ISK session was sent as ``amount=28989``,
    which Stripe reads as 289.89 ISK. Stripe gets ``amount=2898900`` now, and
    the session, the order and the agent's order webhook keep saying 28989 (ISO
    minor units: krónur). JPY, zero-decimal for both, goes as it is."""
    units = STRIPE_UNITS[currency]
    received: list[dict[str, t.Any]] = []
    agent_endpoint = Flask("agent_endpoint")

    @agent_endpoint.post("/order_events")
    def order_events() -> dict[str, t.Any]:
        received.append(t.cast(dict[str, t.Any], flask_request.get_json()))
        return {"received": True}

    with serve_app(agent_endpoint) as hooks:
        shop = foreign_shop(make_shop, tmp_path, currency, ACP_WEBHOOK_DELIVERY_THREAD=False, ACP_AGENTS={
            "agent-one": {"api_keys": [AGENT_KEY], "webhook_url": f"{hooks}/order_events",
                          "webhook_secrets": [HOOK_SECRET]}})
        done = buy_in(shop, currency)
        [entry] = shop.state.storage.outbox.entries(statuses=["pending"])
        assert shop.state.webhooks.deliver(entry.event_id).result == "delivered"

    # Stripe's side: its units
    [create] = shop.pi_creates()
    sent = dict(urllib.parse.parse_qsl(create.body))
    assert (sent["amount"], sent["currency"]) == (str(FOREIGN_TOTAL * units), currency)
    [pi] = shop.fake.payment_intents.values()
    assert (pi["status"], pi["amount"], pi["amount_received"]) == (
        "succeeded", FOREIGN_TOTAL * units, FOREIGN_TOTAL * units)
    [token] = shop.fake.granted_tokens.values()
    assert token["usage_details"]["amount_captured"] == {"value": FOREIGN_TOTAL * units, "currency": currency}
    # ours: ISO minor units
    assert total_of(done) == total_of(shop.session(done["id"])) == FOREIGN_TOTAL
    payment = shop.stored(done["id"]).payment
    assert payment is not None
    assert (payment.amount, payment.currency, payment.payment_id) == (FOREIGN_TOTAL, currency, pi["id"])
    order = assert_order_valid(shop.state.orders.get(done["order"]["id"]))
    assert total_of(order) == FOREIGN_TOTAL
    [event] = received
    data = dict(event["data"])
    assert (event["type"], data.pop("type")) == ("order_create", "order")
    validate(data, "Order")
    assert (data["id"], total_of(data)) == (done["order"]["id"], FOREIGN_TOTAL)


def test_isk_manual_capture_captures_in_stripes_units(make_shop: MakeShop, tmp_path: pathlib.Path) -> None:
    shop = foreign_shop(make_shop, tmp_path, "isk", ACP_STRIPE_CAPTURE_METHOD="manual")
    done = buy_in(shop, "isk")
    [pi] = shop.fake.payment_intents.values()
    assert (pi["status"], pi["amount_capturable"]) == ("requires_capture", FOREIGN_TOTAL * 100)
    shop.state.orders.ship(done["order"]["id"], carrier="Post", tracking_number="RR123IS")
    [capture] = [w for w in shop.fake.wire_requests if w.path == f"{PI_PATH}/{pi['id']}/capture"]
    assert dict(urllib.parse.parse_qsl(capture.body)) == {"amount_to_capture": str(FOREIGN_TOTAL * 100)}
    pi = shop.fake.payment_intents[pi["id"]]
    assert (pi["status"], pi["amount_received"]) == ("succeeded", FOREIGN_TOTAL * 100)
    payment = shop.stored(done["id"]).payment
    assert payment is not None
    assert (payment.capture_status, payment.amount) == ("captured", FOREIGN_TOTAL)


@pytest.mark.parametrize("preflight", [True, False], ids=["preflight", "stripe_error"])
def test_isk_token_limit_is_compared_in_stripes_units(make_shop: MakeShop, tmp_path: pathlib.Path,
                                                      preflight: bool) -> None:
    """``usage_limits.max_amount`` is a Stripe amount: a token for 28,989 (i.e.
    289.89 ISK) cannot pay a 28,989 ISK total, nor one a króna short of it."""
    shop = foreign_shop(make_shop, tmp_path, "isk", ACP_STRIPE_TOKEN_PREFLIGHT=preflight)
    session = foreign_session(shop, "isk")
    for max_amount in (FOREIGN_TOTAL, FOREIGN_TOTAL * 100 - 100):
        body = shop.agent.complete(session["id"], shop.mint(currency="isk", max_amount=max_amount)).get_json()
        assert body["status"] == "ready_for_payment"
        message = only_message(body)
        assert (message["code"], message["param"]) == ("invalid", TOKEN_PARAM)
    assert shop.fake.charges_count() == 0
    assert len(shop.pi_creates()) == (0 if preflight else 2)
    done = shop.agent.complete(session["id"], shop.mint(currency="isk", max_amount=FOREIGN_TOTAL * 100))
    assert done.get_json()["status"] == "completed"


def test_isk_total_above_stripes_maximum_is_refused_when_quoted(make_shop: MakeShop,
                                                                tmp_path: pathlib.Path) -> None:
    """Stripe's 8-digit maximum counts its own units: 99999999 is 999,999.99 ISK,
    so a 1,000,000 ISK jeep (``amount=100000000``) cannot be charged."""
    shop = foreign_shop(make_shop, tmp_path, "isk")
    session = foreign_session(shop, "isk", item="jeep")
    assert session["status"] == "not_ready_for_payment"
    message = only_message(session)
    assert (message["code"], message["param"]) == ("maximum_exceeded", "$.totals")
    assert "999999 ISK" in message["content"]
    assert shop.fake.requests == []


def test_isk_partial_and_full_refunds_round_trip(make_shop: MakeShop, tmp_path: pathlib.Path,
                                                 dashboard: stripe.StripeClient) -> None:
    shop = foreign_shop(make_shop, tmp_path, "isk")
    done = buy_in(shop, "isk")
    order_id = done["order"]["id"]
    [pi] = shop.fake.payment_intents.values()
    orders = shop.state.orders

    order = orders.refund(order_id, amount=4_990, refund_id="rf_1", reason="too small")
    assert [(a.id, a.status, a.amount, a.currency) for a in order.adjustments] == [
        ("rf_1", "completed", 4_990, "isk")]
    assert order.amount_refunded == 4_990
    [refund] = shop.fake.refunds.values()
    assert (refund["amount"], refund["currency"], refund["payment_intent"]) == (499_000, "isk", pi["id"])
    [wire] = [w for w in shop.fake.wire_requests if w.path == "/v1/refunds"]
    assert dict(urllib.parse.parse_qsl(wire.body))["amount"] == "499000"

    order = orders.refund(order_id, refund_id="rf_rest")  # all that is left
    assert [(a.id, a.status, a.amount) for a in order.adjustments] == [
        ("rf_1", "completed", 4_990), ("rf_rest", "completed", FOREIGN_TOTAL - 4_990)]
    assert order.amount_refunded == FOREIGN_TOTAL
    assert sorted(r["amount"] for r in shop.fake.refunds.values()) == [499_000, (FOREIGN_TOTAL - 4_990) * 100]
    assert dashboard.v1.charges.retrieve(pi["latest_charge"]).amount_refunded == FOREIGN_TOTAL * 100
    body = assert_order_valid(order)
    assert {"type": "amount_refunded", "display_text": "Refunded", "amount": FOREIGN_TOTAL} in body["totals"]
    with pytest.raises(InvalidRequestError, match="nothing is left to refund"):
        orders.refund(order_id, amount=1)


def test_isk_charge_refunded_events_land_in_iso_units(make_shop: MakeShop, tmp_path: pathlib.Path,
                                                      dashboard: stripe.StripeClient) -> None:
    """Stripe's ``charge.refunded`` carries ``amount_refunded`` in its units: our
    own 1,000 ISK refund (100000) adds nothing, a 1,200 ISK dashboard refund
    (``amount_refunded`` 220000) becomes a 1,200 ISK adjustment."""
    shop = foreign_shop(make_shop, tmp_path, "isk")
    done = buy_in(shop, "isk")
    order_id = done["order"]["id"]
    [pi] = shop.fake.payment_intents.values()
    with serve_app(shop.app) as url:
        shop.fake.auto_webhooks(f"{url}/webhooks/stripe", WHSEC)
        shop.state.orders.refund(order_id, amount=1_000, refund_id="rf_ours")
        dashboard.v1.refunds.create(params={"payment_intent": pi["id"], "amount": 120_000})
        shop.fake.flush_webhooks()
        shop.fake.auto_webhooks(None)
    deliveries = [d for d in shop.fake.webhook_log if d.event["type"] == "charge.refunded"]
    assert [(d.status_code, d.event["data"]["object"]["amount_refunded"]) for d in deliveries] == [
        (200, 100_000), (200, 220_000)]
    order = shop.state.orders.get(order_id)
    assert [(a.type, a.status, a.amount, a.currency) for a in order.adjustments] == [
        ("refund", "completed", 1_000, "isk"), ("refund", "completed", 1_200, "isk")]
    assert order.amount_refunded == 2_200
    assert_order_valid(order)
    with pytest.raises(InvalidRequestError, match=f"1 to {FOREIGN_TOTAL - 2_200} "):
        shop.state.orders.refund(order_id, amount=FOREIGN_TOTAL)


def test_isk_dispute_and_listed_refund_events_land_in_iso_units(make_shop: MakeShop,
                                                                tmp_path: pathlib.Path) -> None:
    shop = foreign_shop(make_shop, tmp_path, "isk")
    done = buy_in(shop, "isk")
    order_id = done["order"]["id"]
    [pi] = shop.fake.payment_intents.values()
    refund = {"id": "re_listed", "object": "refund", "amount": 80_000, "currency": "isk",
              "status": "succeeded", "payment_intent": pi["id"], "created": int(time.time()),
              "metadata": {}, "reason": "requested_by_customer"}
    charge = {"id": pi["latest_charge"], "object": "charge", "amount": FOREIGN_TOTAL * 100,
              "amount_refunded": 80_000, "currency": "isk", "payment_intent": pi["id"],
              "refunds": {"object": "list", "data": [refund]}}
    assert post_event(shop, "charge.refunded", charge).status_code == 200
    dispute = {"id": "dp_isk", "object": "dispute", "amount": FOREIGN_TOTAL * 100, "currency": "isk",
               "charge": pi["latest_charge"], "payment_intent": pi["id"], "reason": "fraudulent",
               "status": "needs_response", "created": int(time.time())}
    assert post_event(shop, "charge.dispute.created", dispute).status_code == 200
    order = shop.state.orders.get(order_id)
    assert [(a.id, a.type, a.amount, a.currency) for a in order.adjustments] == [
        ("re_listed", "refund", 800, "isk"), ("dp_isk", "dispute", FOREIGN_TOTAL, "isk")]
    assert order.amount_refunded == 800
    assert_order_valid(order)


def test_isk_event_amount_in_fractions_of_a_krona_is_an_error_not_a_rounding(
        make_shop: MakeShop, tmp_path: pathlib.Path) -> None:
    """``amount_refunded=120050`` (1,200.50 ISK) is no whole number of krónur:
    500, nothing recorded, and the event is not marked processed (Stripe sends
    it again)."""
    shop = foreign_shop(make_shop, tmp_path, "isk")
    done = buy_in(shop, "isk")
    order_id = done["order"]["id"]
    [pi] = shop.fake.payment_intents.values()
    before = shop.state.orders.get(order_id)
    charge = {"id": pi["latest_charge"], "object": "charge", "amount": FOREIGN_TOTAL * 100,
              "amount_refunded": 120_050, "currency": "isk", "payment_intent": pi["id"]}
    for _ in range(2):
        response = post_event(shop, "charge.refunded", charge, event_id="evt_fractional")
        assert response.status_code == 500
        assert response.get_json()["code"] == "invalid_amount"
    assert shop.state.orders.get(order_id) == before
    assert not shop.state.storage.inbound.seen("stripe", "evt_fractional")


def test_isk_stray_charge_is_refunded_in_full(make_shop: MakeShop, tmp_path: pathlib.Path) -> None:
    """A stray ISK charge reaches us as ``payment_intent.succeeded`` with Stripe's
    ``amount``: it is refunded in full (that same Stripe amount), not a hundredfold."""
    shop = foreign_shop(make_shop, tmp_path, "isk")
    done = buy_in(shop, "isk")
    stray = shop.payments.charge(ChargeRequest(
        idempotency_key=stripe_key(done["id"], "late"), amount=FOREIGN_TOTAL, currency="isk",
        token=shop.mint(currency="isk", max_amount=FOREIGN_TOTAL * 100), handler_id="card_tokenized",
        checkout_session_id=done["id"]))
    assert (stray.amount, stray.currency) == (FOREIGN_TOTAL, "isk")
    pi = shop.fake.payment_intents[stray.payment_id]
    assert pi["amount"] == FOREIGN_TOTAL * 100
    assert post_event(shop, "payment_intent.succeeded", pi).get_json() == {"received": True}
    assert [r["amount"] for r in shop.fake.refunds.values()] == [FOREIGN_TOTAL * 100]
    assert shop.session(done["id"])["status"] == "completed"


# --------------------------------------------------------------------------- hostile credentials


@pytest.mark.parametrize("token", ["../../balance", "spt_x/../../balance", "spt_x?expand[]=data",
                                   "spt_x#frag", "spt_x%2F..%2Fbalance", "spt_ x", "sk_live_123",
                                   "spt_" + "a" * 251, "", "spt_x\n"])
def test_a_malformed_credential_is_a_400_and_reaches_no_processor(shop: Shop, token: str) -> None:
    session = shop.agent.ready_session()
    response = shop.agent.complete(session["id"], token or " ")
    assert response.status_code == 400
    assert response.get_json()["param"] == "$.payment_data.instrument.credential.token"
    assert shop.stripe_calls() == 0
    assert shop.session(session["id"])["status"] == "ready_for_payment"


@pytest.mark.parametrize("token", ["../../balance", "spt_x/../../balance", "spt_x?limit=1", "spt_x#y",
                                   "spt_x%2F..%2F..%2Fbalance"])
def test_the_token_lookup_never_leaves_its_path_segment(shop: Shop, token: str) -> None:
    """Even called directly, the processor quotes the token into one path
    segment: Stripe sees a missing token, never ``/v1/balance``."""
    with pytest.raises(stripe.InvalidRequestError):
        shop.payments.granted_token(token)
    (wire,) = shop.fake.wire_requests
    assert wire.path == "/v1/shared_payment/granted_tokens/" + urllib.parse.quote(token, safe="")
    assert wire.query == ""
