"""Stripe's amount rules as data: which totals a PaymentIntent can be created
for, and in which units Stripe's ``amount`` fields count.

Source: Stripe, "Supported currencies" (https://docs.stripe.com/currencies),
sections "Three-decimal currencies", "Special cases" and "Minimum and maximum
charge amounts", as published in 2025-2026.

**Units.** The core counts every amount in ISO 4217 minor units (exponents
from the ``iso4217`` package). Stripe's ``amount`` fields count the same units
for every currency but those of :data:`STRIPE_EXPONENT` ("Special cases"):
ISK and UGX have no minor unit in ISO 4217 (exponent 0), yet Stripe takes them
as two-decimal values for backwards compatibility ("to charge 5 ISK, provide
an amount value of 500"), and such a value must be evenly divisible by 100.
:func:`to_stripe` and :func:`from_stripe` convert, with integers only; a
Stripe amount that is not a whole number of ISO minor units is an error
(:class:`StripeAmountError`), never rounded. The same section's HUF and TWD
rules concern payouts only (Stripe treats them as zero-decimal *for payouts*,
"even though you can charge two-decimal amounts"): their charge and refund
amounts are ISO's two-decimal minor units, so they need no conversion.
Every function here takes and returns ISO minor units unless its name says
``stripe``.

The rules, checked in this order by :func:`amount_problem`:

1. **Three-decimal currencies** (:data:`THREE_DECIMAL`: BHD, JOD, KWD, OMR,
   TND): the last digit must be 0 ("5.124 KWD must be rounded to 5120 or
   5130"), so the amount must be a multiple of :data:`THREE_DECIMAL_STEP`.
2. **Maximum**: the ``amount`` value has at most 8 digits (``99999999``) for
   every currency but IDR (12 digits), COP (10) and INR (9):
   :data:`MAX_DIGITS`. The digits count Stripe's units: ``99999999`` is
   999,999.99 ISK to Stripe, so the largest ISK (and UGX) total is
   ``999999`` ISO minor units. This is the documented limit of non-card payment
   methods; card payments may go higher (12 digits on most networks, 9 on
   American Express), but which network a Shared Payment Token will use is
   unknown when the session is quoted, and the 8-digit tier is below every
   card tier. (Amex charges of IDR or COP above 9 digits can still be
   refused by Stripe at charge time.)
3. **Minimum**: Stripe's minimum charge per *settlement* currency
   (:data:`MINIMUM_MAJOR`, e.g. 0.50 USD, 0.30 GBP, 50 JPY). It is applied to
   the charge currency: exact when the charge currency is the account's
   settlement currency, the usual single-currency shop. A charge in another
   currency must meet the settlement currency's minimum *after conversion*,
   which no table can check; Stripe then refuses at charge time
   (``amount_too_small``) and the payment port reports it as
   :class:`~flask_acp.errors.PaymentAmountError`. Currencies without a
   documented minimum only need a positive amount.
"""

from __future__ import annotations

import decimal

from iso4217 import Currency

from .base import AmountProblem

__all__ = [
    "MAX_DIGITS",
    "MINIMUM_MAJOR",
    "STRIPE_EXPONENT",
    "THREE_DECIMAL",
    "THREE_DECIMAL_STEP",
    "StripeAmountError",
    "amount_problem",
    "from_stripe",
    "maximum",
    "minimum",
    "stripe_factor",
    "to_stripe",
]

#: decimals of Stripe's ``amount`` where they differ from ISO 4217's exponent
#: ("Special cases": ISO gives ISK and UGX none, Stripe takes two, and the
#: value must be evenly divisible by 100). HUF and TWD are not here: their
#: special case is payouts only.
STRIPE_EXPONENT: dict[str, int] = {"ISK": 2, "UGX": 2}

#: currencies Stripe takes in thousandths whose last digit must be 0
THREE_DECIMAL: frozenset[str] = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
#: minor units: a three-decimal amount must be a multiple of this
THREE_DECIMAL_STEP = 10

#: Stripe's minimum charge per settlement currency, in major units as the
#: docs print them ("Use these minimum amounts by currency").
MINIMUM_MAJOR: dict[str, str] = {
    "USD": "0.50", "AED": "2.00", "ARS": "0.50", "AUD": "0.50",
    "BRL": "0.50", "CAD": "0.50", "CHF": "0.50", "COP": "0.50", "CZK": "15.00",
    "DKK": "2.50", "EUR": "0.50", "GBP": "0.30", "HKD": "4.00", "HUF": "175.00",
    "IDR": "0.50", "ILS": "0.50", "INR": "0.50", "JPY": "50", "KRW": "50",
    "MXN": "10", "MYR": "2.00", "NOK": "3.00", "NZD": "0.50", "PHP": "0.50",
    "PLN": "2.00", "RON": "2.00", "RUB": "0.50", "SEK": "3.00", "SGD": "0.50",
    "THB": "10", "ZAR": "0.50",
}

#: digits of the largest ``amount`` per currency; every other currency has 8
MAX_DIGITS: dict[str, int] = {"IDR": 12, "COP": 10, "INR": 9}
DEFAULT_MAX_DIGITS = 8


def _exponent(code: str) -> int:
    member = Currency.__members__.get(code)
    if member is None or member.exponent is None:
        raise ValueError(f"{code!r} is not an ISO 4217 currency with minor units")
    return int(member.exponent)


def _to_minor(major: str, code: str) -> int:
    scaled = decimal.Decimal(major).scaleb(_exponent(code))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{major} {code} is not a whole number of minor units")
    return int(scaled)


class StripeAmountError(ValueError):
    """A Stripe amount that is not a whole number of ISO 4217 minor units of its
    currency (e.g. 50050 ISK, i.e. 500.50 ISK), or not an integer at all."""


def _factor(code: str) -> int:
    shift = STRIPE_EXPONENT[code] - _exponent(code)
    if shift < 0:  # Stripe would count coarser units than ISO: not a conversion of ints
        raise ValueError(f"Stripe's exponent of {code} is below ISO's")
    return int(10**shift)


#: Stripe units per ISO minor unit, for the currencies where they differ (``{"ISK": 100, "UGX": 100}``)
_FACTOR: dict[str, int] = {code: _factor(code) for code in STRIPE_EXPONENT}


def stripe_factor(currency: str) -> int:
    """How many of Stripe's ``amount`` units make one ISO 4217 minor unit of
    ``currency`` (any case): 100 for ISK and UGX, 1 for every other currency."""
    return _FACTOR.get(currency.upper(), 1)


def to_stripe(amount: int, currency: str) -> int:
    """``amount`` ISO minor units of ``currency`` as Stripe's ``amount`` value:
    ``(500, "isk") -> 50000``, ``(430, "usd") -> 430``. Exact (integers)."""
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise TypeError(f"an amount is an int of minor units, not {amount!r}")
    return amount * stripe_factor(currency)


def from_stripe(amount: int, currency: str) -> int:
    """A Stripe ``amount`` value of ``currency`` in ISO minor units:
    ``(50000, "isk") -> 500``, ``(430, "usd") -> 430``.

    :raises StripeAmountError: ``amount`` is not an integer, or not a whole
        number of ISO minor units (``(50050, "isk")``): never rounded.
    """
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise StripeAmountError(f"Stripe amount {amount!r} {currency} is not an integer")
    factor = stripe_factor(currency)
    units, rest = divmod(amount, factor)
    if rest:
        raise StripeAmountError(f"Stripe amount {amount} {currency} is not a whole number of "
                                f"{currency.upper()} minor units (a multiple of {factor})")
    return units


#: :data:`MINIMUM_MAJOR` in minor units (``{"USD": 50, "JPY": 50, "HUF": 17500, ...}``)
_MINIMUM: dict[str, int] = {code: _to_minor(major, code) for code, major in MINIMUM_MAJOR.items()}


def minimum(currency: str) -> int:
    """Smallest chargeable amount of ``currency`` (any case), in its minor
    units: the documented minimum, else 1."""
    return _MINIMUM.get(currency.upper(), 1)


def maximum(currency: str) -> int:
    """Largest chargeable amount of ``currency`` (any case), in its ISO minor
    units: ``99999999`` for most currencies (see :data:`MAX_DIGITS`); the
    digits count Stripe's units, so ISK's and UGX's is ``999999``."""
    digits: int = MAX_DIGITS.get(currency.upper(), DEFAULT_MAX_DIGITS)
    return int(10**digits - 1) // stripe_factor(currency)


def amount_problem(amount: int, currency: str) -> AmountProblem | None:
    """Why Stripe would refuse a PaymentIntent for ``amount`` ISO minor units of
    ``currency`` (ISO 4217 code, any case), or ``None`` when it is chargeable.
    The problem's ``amount`` and ``limit`` are ISO minor units too.

    Returns the first rule broken, in the module docstring's order: ``invalid``
    with ``limit`` = the step (three-decimal currencies), ``maximum_exceeded``
    with ``limit`` = the maximum, ``minimum_not_met`` with ``limit`` = the
    minimum. Pure: no network, no state.
    """
    code = currency.upper()
    if code in THREE_DECIMAL and amount % THREE_DECIMAL_STEP:
        return AmountProblem(code="invalid", amount=amount, currency=currency.lower(),
                             limit=THREE_DECIMAL_STEP)
    if amount > maximum(code):
        return AmountProblem(code="maximum_exceeded", amount=amount, currency=currency.lower(),
                             limit=maximum(code))
    if amount < minimum(code):
        return AmountProblem(code="minimum_not_met", amount=amount, currency=currency.lower(),
                             limit=minimum(code))
    return None
