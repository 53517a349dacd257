"""Stripe's documented amount rules (flask_acp.payments.stripe_amounts) and the
Stripe processor's own use of them: an amount Stripe would refuse is never sent.

Values from docs.stripe.com/currencies ("Three-decimal currencies", "Minimum and
maximum charge amounts"), in ISO 4217 minor units. No mocks: the processor talks
HTTP to FakeStripe, which must see no request at all.
"""

from __future__ import annotations

import collections.abc as cabc

import pytest

from flask_acp.payments import stripe_amounts
from flask_acp.payments.base import ChargeRequest
from flask_acp.payments.base import PaymentAmountError
from flask_acp.payments.stripe import StripePaymentProcessor
from flask_acp.testing.fake_stripe import FakeStripe


@pytest.mark.parametrize(("currency", "minimum"), [
    ("usd", 50), ("EUR", 50), ("gbp", 30), ("jpy", 50), ("krw", 50), ("huf", 17500), ("mxn", 1000),
    ("thb", 1000), ("czk", 1500), ("aed", 200), ("xof", 1),
])
def test_documented_minimums_in_minor_units(currency: str, minimum: int) -> None:
    assert stripe_amounts.minimum(currency) == minimum
    assert stripe_amounts.amount_problem(minimum, currency) is None
    if minimum > 1:
        problem = stripe_amounts.amount_problem(minimum - 1, currency)
        assert problem is not None
        assert (problem.code, problem.limit, problem.currency) == ("minimum_not_met", minimum,
                                                                   currency.lower())


@pytest.mark.parametrize(("currency", "maximum"), [
    ("usd", 99_999_999), ("jpy", 99_999_999), ("kwd", 99_999_999), ("idr", 999_999_999_999),
    ("cop", 9_999_999_999), ("inr", 999_999_999),
])
def test_documented_maximums_in_minor_units(currency: str, maximum: int) -> None:
    assert stripe_amounts.maximum(currency) == maximum
    problem = stripe_amounts.amount_problem(maximum + 1, currency)
    assert problem is not None
    assert (problem.code, problem.limit) == ("maximum_exceeded", maximum)


@pytest.mark.parametrize("currency", ["bhd", "JOD", "kwd", "omr", "tnd"])
def test_three_decimal_currencies_need_a_last_digit_of_zero(currency: str) -> None:
    assert stripe_amounts.amount_problem(5120, currency) is None
    problem = stripe_amounts.amount_problem(5124, currency)
    assert problem is not None
    assert (problem.code, problem.amount, problem.limit) == ("invalid", 5124, 10)
    assert stripe_amounts.amount_problem(5124, "usd") is None  # two decimals: any digit


# --- units: ISO 4217 minor units <-> Stripe's ``amount`` ("Special cases") ---------------


@pytest.mark.parametrize(("currency", "iso", "stripe"), [
    ("isk", 500, 50_000), ("ISK", 1, 100), ("ugx", 3_700, 370_000),
    ("usd", 430, 430), ("jpy", 500, 500), ("kwd", 5_120, 5_120), ("huf", 17_500, 17_500),
    ("twd", 3_000, 3_000),
])
def test_stripe_units_differ_from_iso_only_for_isk_and_ugx(currency: str, iso: int, stripe: int) -> None:
    """5 ISK is ``amount=500`` for Stripe; HUF and TWD are special for payouts
    only, so their charges count ISO's two decimals like USD."""
    assert stripe_amounts.to_stripe(iso, currency) == stripe
    assert stripe_amounts.from_stripe(stripe, currency) == iso
    assert stripe_amounts.STRIPE_EXPONENT == {"ISK": 2, "UGX": 2}


@pytest.mark.parametrize(("amount", "currency"), [
    (50_050, "isk"), (99, "ISK"), (1, "ugx"), (500.0, "usd"), ("500", "jpy"), (True, "usd"),
])
def test_a_stripe_amount_that_does_not_convert_exactly_is_an_error(amount: object, currency: str) -> None:
    with pytest.raises(stripe_amounts.StripeAmountError):
        stripe_amounts.from_stripe(amount, currency)  # type: ignore[arg-type]


def test_amounts_sent_to_stripe_are_ints() -> None:
    with pytest.raises(TypeError):
        stripe_amounts.to_stripe(5.0, "isk")  # type: ignore[arg-type]


@pytest.mark.parametrize("currency", ["isk", "UGX"])
def test_maximum_counts_stripes_digits(currency: str) -> None:
    """99999999 is 999,999.99 ISK to Stripe: the largest ISK total is 999999."""
    assert stripe_amounts.maximum(currency) == 999_999
    assert stripe_amounts.amount_problem(999_999, currency) is None
    problem = stripe_amounts.amount_problem(1_000_000, currency)
    assert problem is not None
    assert (problem.code, problem.amount, problem.limit) == ("maximum_exceeded", 1_000_000, 999_999)
    assert stripe_amounts.amount_problem(1, currency) is None  # no documented minimum


@pytest.fixture
def fake() -> cabc.Iterator[FakeStripe]:
    with FakeStripe() as server:
        yield server
    assert server.server_errors == []


def test_stripe_processor_refuses_locally_before_any_request(fake: FakeStripe) -> None:
    processor = StripePaymentProcessor(fake.api_key, merchant_id="acct_test", api_base=fake.url)
    assert processor.amount_problem(5120, "kwd") is None
    with pytest.raises(PaymentAmountError) as exc:
        processor.charge(ChargeRequest(idempotency_key="k1", amount=5124, currency="kwd", token="spt_x",
                                       handler_id="card_tokenized", checkout_session_id="cs_1"))
    problem = exc.value.problem
    assert (problem.code, problem.amount, problem.limit) == ("invalid", 5124, 10)
    assert fake.requests == []
