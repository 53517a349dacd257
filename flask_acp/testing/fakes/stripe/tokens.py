"""Shared Payment Tokens (``shared_payment.granted_token``): the test helper
that mints them, retrieval, revocation, and the checks a charge makes.

The test payment method a token was minted with (:data:`TEST_PAYMENT_METHODS`)
decides the outcome of its charge, mirroring Stripe's sandbox cards.
"""

from __future__ import annotations

import time
import typing as t

from .webhooks import StripeWebhooks
from .wire import DEFAULT_SPT_API_VERSION
from .wire import SPT_PARAM
from .wire import TOKEN_INVALID_CODE
from .wire import JSONDict
from .wire import StripeError
from .wire import new_id

if t.TYPE_CHECKING:
    import stripe


class SandboxCard(t.NamedTuple):
    """Behaviour of a ``pm_card_*`` test payment method."""

    brand: str
    last4: str
    outcome: t.Literal["succeeded", "declined", "requires_action"]
    code: str | None = None
    decline_code: str | None = None
    message: str | None = None


_DECLINED = "Your card was declined."
TEST_PAYMENT_METHODS: dict[str, SandboxCard] = {
    "pm_card_visa": SandboxCard("visa", "4242", "succeeded"),
    "pm_card_mastercard": SandboxCard("mastercard", "4444", "succeeded"),
    "pm_card_chargeDeclined": SandboxCard(
        "visa", "0002", "declined", "card_declined", "generic_decline", _DECLINED),
    "pm_card_chargeDeclinedInsufficientFunds": SandboxCard(
        "visa", "9995", "declined", "card_declined", "insufficient_funds",
        "Your card has insufficient funds."),
    "pm_card_chargeDeclinedFraudulent": SandboxCard(
        "visa", "0019", "declined", "card_declined", "fraudulent", _DECLINED),
    "pm_card_chargeDeclinedLostCard": SandboxCard(
        "visa", "9987", "declined", "card_declined", "lost_card", _DECLINED),
    "pm_card_chargeDeclinedStolenCard": SandboxCard(
        "visa", "9979", "declined", "card_declined", "stolen_card", _DECLINED),
    "pm_card_chargeDeclinedExpiredCard": SandboxCard(
        "visa", "0069", "declined", "expired_card", "expired_card", "Your card has expired."),
    "pm_card_chargeDeclinedIncorrectCvc": SandboxCard(
        "visa", "0127", "declined", "incorrect_cvc", "incorrect_cvc",
        "Your card's security code is incorrect."),
    "pm_card_chargeDeclinedProcessingError": SandboxCard(
        "visa", "0119", "declined", "processing_error", "processing_error",
        "An error occurred while processing your card. Try again in a little bit."),
    "pm_card_authenticationRequired": SandboxCard("visa", "3184", "requires_action"),
}


class Tokens(StripeWebhooks):
    """The token endpoints (a layer of :class:`~flask_acp.testing.fakes.stripe.FakeStripe`)."""

    def _token(self, spt: str, param: str = "id", status: int = 404) -> JSONDict:
        token = self._tokens.get(spt)
        if token is None:
            raise StripeError(status, f"No such shared_payment.granted_token: '{spt}'",
                              code="resource_missing", param=param)
        expires_at = token["usage_limits"].get("expires_at")
        if token["deactivated_at"] is None and expires_at is not None and expires_at <= self.now():
            token.update(deactivated_at=expires_at, deactivated_reason="expired")
        return token

    def _do_token_create(self, params: JSONDict) -> tuple[int, JSONDict]:
        pm_name = params["payment_method"]
        card = TEST_PAYMENT_METHODS.get(pm_name)
        if card is None:
            raise StripeError(400, f"No such PaymentMethod: '{pm_name}' (FakeStripe knows "
                                   f"{', '.join(TEST_PAYMENT_METHODS)})",
                              code="resource_missing", param="payment_method")
        limits = params["usage_limits"]
        expires_at = limits.get("expires_at")
        if expires_at is not None and expires_at <= self.now():
            raise StripeError(400, "usage_limits[expires_at] must be in the future.",
                              code="parameter_invalid_integer", param="usage_limits[expires_at]")
        currency = limits["currency"].lower()
        fraud_score = 80 if card.decline_code in ("fraudulent", "stolen_card", "lost_card") else 5
        token: JSONDict = {
            "id": new_id("spt"), "object": "shared_payment.granted_token",
            "created": self.now(), "livemode": False,
            "agent_details": {"network_business_profile": "profile_fake_agent"},
            "deactivated_at": None, "deactivated_reason": None,
            "payment_method_details": {
                "type": "card",
                "billing_details": {"address": None, "email": None, "name": None, "phone": None},
                "card": {"brand": card.brand, "last4": card.last4, "exp_month": 12,
                         "exp_year": time.gmtime().tm_year + 3, "funding": "credit",
                         "country": "US"},
            },
            "risk_details": {"insights": {
                "bot": {"score": 0.01, "recommended_action": "continue"},
                "card_issuer_decline": {"score": 0.9 if card.outcome == "declined" else 0.05,
                                        "recommended_action": "continue"},
                "card_testing": {"score": 0.01, "recommended_action": "continue"},
                "fraudulent_dispute": {"score": fraud_score, "recommended_action": "continue"},
                "stolen_card": {"score": fraud_score, "recommended_action": "continue"},
            }},
            "shared_metadata": params.get("shared_metadata") or {},
            "usage_details": {"amount_captured": {"value": 0, "currency": currency}},
            "usage_limits": {"currency": currency, "max_amount": limits["max_amount"],
                             "expires_at": expires_at},
        }
        self._tokens[token["id"]] = token
        self._token_pm[token["id"]] = pm_name
        return 200, self._token_view(token)

    def _do_token_retrieve(self, params: JSONDict, spt: str) -> tuple[int, JSONDict]:
        return 200, self._token_view(self._token(spt))

    def _do_token_revoke(self, params: JSONDict, spt: str) -> tuple[int, JSONDict]:
        token = self._token(spt)
        if token["deactivated_at"] is None:
            token.update(deactivated_at=self.now(), deactivated_reason="revoked")
        return 200, self._token_view(token)

    def _usable_token(self, spt: str, amount: int, currency: str) -> JSONDict:
        token = self._token(spt, SPT_PARAM, 404)
        limits = token["usage_limits"]
        problem = None
        if token["deactivated_reason"] == "expired":
            problem = f"has expired (usage_limits.expires_at {limits['expires_at']})"
        elif token["deactivated_reason"] == "consumed":
            problem = "has already been used (consumed)"
        elif token["deactivated_reason"] is not None:
            problem = f"has been deactivated ({token['deactivated_reason']})"
        elif currency != limits["currency"]:
            problem = f"is limited to currency {limits['currency']}, not {currency}"
        elif amount > limits["max_amount"]:
            problem = f"is limited to max_amount {limits['max_amount']}; {amount} is more"
        if problem is not None:
            raise StripeError(400, f"The SharedPaymentGrantedToken {spt} {problem}.",
                              code=TOKEN_INVALID_CODE, param=SPT_PARAM)
        return token


def mint_granted_token(client: stripe.StripeClient, *, payment_method: str = "pm_card_visa",
                       currency: str, max_amount: int, expires_in: int | None = 3600,
                       shared_metadata: dict[str, str] | None = None,
                       spt_api_version: str = DEFAULT_SPT_API_VERSION) -> str:
    """Create a test-mode SharedPaymentGrantedToken and return its id (``spt_…``).

    Calls ``POST /v1/test_helpers/shared_payment/granted_tokens`` through
    ``client.raw_request`` with ``Stripe-Version: spt_api_version``, so it works against
    :class:`FakeStripe` and against a real Stripe sandbox alike.

    :param payment_method: a test PaymentMethod (``pm_card_visa``, ``pm_card_chargeDeclined``,
        … see :data:`TEST_PAYMENT_METHODS`); it decides the outcome of the charge.
    :param currency: ``usage_limits[currency]`` (lowercase ISO code).
    :param max_amount: ``usage_limits[max_amount]``, a Stripe amount (minor units; ISK and
        UGX in hundredths: :func:`flask_acp.payments.stripe_amounts.to_stripe`).
    :param expires_in: seconds from now for ``usage_limits[expires_at]``; ``None`` omits it.
    :raises stripe.StripeError: as the API answers (e.g. ``InvalidRequestError``).
    """
    limits: dict[str, t.Any] = {"currency": currency, "max_amount": max_amount}
    if expires_in is not None:
        limits["expires_at"] = int(time.time()) + expires_in
    params: dict[str, t.Any] = {"payment_method": payment_method, "usage_limits": limits}
    if shared_metadata:
        params["shared_metadata"] = shared_metadata
    response = client.raw_request("post", "/v1/test_helpers/shared_payment/granted_tokens",
                                  stripe_version=spt_api_version, **params)
    return str(client.deserialize(response, api_mode="V1")["id"])
