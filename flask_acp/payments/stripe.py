"""Charge Stripe SharedPaymentTokens (SPT) with the merchant's own Stripe account.

One :class:`stripe.StripeClient` per app (never the module-global key), with
explicit retries and timeouts; the SPT preview API version is sent per request.
Calls (Stripe API reference; ``../shared/docs/stripe.md`` §2, §5):

- ``GET /v1/shared_payment/granted_tokens/{spt}``: optional pre-check of the
  token's ``usage_limits`` and deactivation, before any PaymentIntent exists;
- ``POST /v1/payment_intents`` with ``confirm=true`` and
  ``payment_method_data[shared_payment_granted_token]``, no redirects, for the
  session's own total, under an idempotency key derived from the session and
  the token (one token charges a session at most once);
- capture / cancel of PaymentIntents (manual capture), ``POST /v1/refunds``;
- ``GET /v1/payment_intents/search`` by metadata, to reconcile an attempt
  whose outcome was lost.

A charge answered from Stripe's idempotency store (``Idempotent-Replayed``,
or a consumed token whose charge the search finds) counts only while its money
is still held: a PaymentIntent canceled or refunded in full since (an order
that could not be placed) makes the token unusable, never a new "success".

Outcomes map to the payment port's exceptions as ``stripe.md`` §6 says: card
declines -> :class:`PaymentDeclinedError` (generic text, never a fraud reason);
token problems -> :class:`PaymentTokenError`; ``requires_action`` -> the
PaymentIntent is canceled and :class:`PaymentActionRequiredError`; rate limits,
connection errors and Stripe 5xx -> :class:`PaymentUnavailableError` (the
outcome may be unknown: the checkout reconciles before charging again);
authentication/permission/other request errors -> :class:`PaymentProviderError`
(our configuration is wrong; nothing was charged); an amount Stripe refuses
(``amount_too_small``, ``amount_too_large``, ``invalid_charge_amount`` on
``amount``) -> :class:`PaymentAmountError`.

Amount rules (:meth:`StripePaymentProcessor.amount_problem`): Stripe's
documented three-decimal rule, minimum and maximum charge amounts, from the
table in :mod:`flask_acp.payments.stripe_amounts`.

Amount units: the port speaks ISO 4217 minor units; Stripe's ``amount``
fields do too, except for the currencies Stripe takes in other units (ISK and
UGX: two decimals, ``amount=500`` is 5 ISK). This class converts at its edge,
with :func:`~flask_acp.payments.stripe_amounts.to_stripe` on every amount it
sends (the PaymentIntent's ``amount``, ``amount_to_capture``, a refund's
``amount``, the comparison with a token's ``usage_limits.max_amount``) and
:func:`~flask_acp.payments.stripe_amounts.from_stripe` on every amount it
reads back (:class:`ChargeResult` and :class:`RefundResult` amounts). A
Stripe amount that is not a whole number of ISO minor units raises
:class:`~flask_acp.payments.stripe_amounts.StripeAmountError` (logged at
error level), never a rounded amount. Capture and refund name no currency in
the port, so they first read the PaymentIntent's (one GET): Stripe reads
their amounts in it.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import logging
import time
import typing as t
import urllib.parse

import stripe
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import validate

from ..config import Section
from ..config import setting
from ..errors import PaymentActionRequiredError
from ..errors import PaymentDeclinedError
from ..errors import PaymentError
from ..errors import PaymentProviderError
from ..errors import PaymentTokenError
from ..errors import PaymentUnavailableError
from ..models import JSON
from . import stripe_amounts
from .base import AmountProblem
from .base import ChargeRequest
from .base import ChargeResult
from .base import PaymentAmountError
from .base import PaymentHandler
from .base import RefundResult
from .base import tokenized_card_handler

log = logging.getLogger("flask_acp.stripe")

SPT_PARAM = "payment_method_data[shared_payment_granted_token]"
_DECLINED_TEXT = "Your card was declined. Please try a different payment method."
#: buyer-safe texts for token refusals (Stripe's own messages name token ids and internals)
_TOKEN_TEXT = {"resource_missing": "the payment token does not exist"}
#: PaymentIntent statuses that hold the buyer's money (captured, authorized, settling)
_HELD = ("succeeded", "requires_capture", "processing")
#: Stripe error codes (on ``param: amount``) refusing the amount -> the ACP message code
_AMOUNT_CODES: dict[str, t.Literal["invalid", "minimum_not_met", "maximum_exceeded"]] = {
    "amount_too_small": "minimum_not_met",
    "amount_too_large": "maximum_exceeded",
    "invalid_charge_amount": "invalid",
}
_AMOUNT_TEXT = "The payment processor cannot charge this total."


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class StripeSettings:
    """The ``ACP_STRIPE_*`` keys: :meth:`StripePaymentProcessor.from_settings`
    builds the processor from them when ``ACP_STRIPE_SECRET_KEY`` is set."""

    secret_key: str | None = setting(
        "ACP_STRIPE_SECRET_KEY",
        fields.String(allow_none=True, validate=validate.Regexp(
            r"^(sk|rk)_(test|live)_", error="must be a Stripe secret key (sk_test_..., sk_live_...)")),
        None, doc="`sk_test_...`/`sk_live_...`; enables the Stripe processor (the default one).")
    merchant_id: str | None = setting(
        "ACP_STRIPE_MERCHANT_ID", fields.String(allow_none=True, validate=validate.Length(min=1)), None,
        doc="Your Stripe account id (`acct_...`), required with the key; advertised in the payment handler.")
    api_base: str | None = setting(
        "ACP_STRIPE_API_BASE", fields.Url(allow_none=True, require_tld=False), None, default_doc="Stripe's",
        doc="Stripe API base address (tests point it at the fake).")
    spt_api_version: str = setting(
        "ACP_STRIPE_SPT_API_VERSION", fields.String(validate=validate.Length(min=1)), "2026-09-30.preview",
        doc="`Stripe-Version` sent on the SPT calls.")
    max_network_retries: int = setting(
        "ACP_STRIPE_MAX_NETWORK_RETRIES", fields.Integer(strict=True, validate=validate.Range(min=0, max=10)),
        2, doc="SDK retries (connection errors, 409, 5xx; same idempotency key).")
    connect_timeout: float = setting(
        "ACP_STRIPE_CONNECT_TIMEOUT", fields.Float(validate=validate.Range(min=0.1)), 5.0, unit="seconds",
        doc="Per HTTP request to Stripe: connecting.")
    read_timeout: float = setting(
        "ACP_STRIPE_READ_TIMEOUT", fields.Float(validate=validate.Range(min=0.1)), 25.0, unit="seconds",
        doc="Per HTTP request to Stripe: waiting for the answer.")
    capture_method: str = setting(
        "ACP_STRIPE_CAPTURE_METHOD", fields.String(validate=validate.OneOf(["automatic", "manual"])),
        "automatic", doc='Or `"manual"`: capture at shipment.')
    token_preflight: bool = setting(
        "ACP_STRIPE_TOKEN_PREFLIGHT", fields.Boolean(), True,
        doc="Look the granted token up before charging.")
    token_expiry_margin: int = setting(
        "ACP_STRIPE_TOKEN_EXPIRY_MARGIN", fields.Integer(strict=True, validate=validate.Range(min=0)), 30,
        unit="seconds", doc="Refuse tokens expiring sooner.")
    webhook_secret: str | None = setting(
        "ACP_STRIPE_WEBHOOK_SECRET", fields.String(allow_none=True, validate=validate.Length(min=8)), None,
        doc="`whsec_...` of the endpoint `{prefix}/webhooks/stripe`; unset, the route answers 404.")
    handler_id: str = setting(
        "ACP_STRIPE_HANDLER_ID", fields.String(validate=validate.Length(min=1)), "card_tokenized",
        doc="`PaymentHandler.id` agents send back as `payment_data.handler_id`.")
    demo: bool = setting(
        "ACP_STRIPE_DEMO", fields.Boolean(), False,
        doc="A local demo: the payment handler's `config.api_base` names `ACP_STRIPE_API_BASE` (the fake "
            "Stripe `example_app.py` starts), so `flask acp demo-purchase` mints its test tokens where this "
            "server charges. Test keys only.")


def _merchant_with_key(settings: StripeSettings) -> None:
    if settings.secret_key and not settings.merchant_id:
        raise ValidationError("set it to your Stripe account id (acct_...) when ACP_STRIPE_SECRET_KEY is set",
                              "ACP_STRIPE_MERCHANT_ID")


def _demo_in_test_mode(settings: StripeSettings) -> None:
    if settings.demo and (settings.secret_key or "").startswith(("sk_live_", "rk_live_")):
        raise ValidationError("a demo advertises its Stripe: use a test key (sk_test_...) or unset it",
                              "ACP_STRIPE_DEMO")


#: the Stripe processor's keys (validated by ``init_app`` whichever processor the app uses).
STRIPE_SETTINGS = Section("stripe", StripeSettings, checks=(_merchant_with_key, _demo_in_test_mode))


def _replayed(obj: t.Any) -> bool:
    """Whether Stripe answered from its idempotency store (``Idempotent-Replayed``)."""
    response = getattr(obj, "last_response", None)
    headers = getattr(response, "headers", None) or {}
    return any(k.lower() == "idempotent-replayed" and str(v).lower() == "true"
               for k, v in headers.items())


def _iso(obj: t.Any, field: str = "amount") -> int:
    """``obj.<field>``, a Stripe amount of ``obj.currency``, in ISO minor units.

    :raises stripe_amounts.StripeAmountError: not a whole number of ISO minor
        units: logged at error level, never rounded.
    """
    try:
        return stripe_amounts.from_stripe(getattr(obj, field), str(obj.currency))
    except stripe_amounts.StripeAmountError as exc:
        log.error("Stripe %s %s: %s is not an amount in ISO minor units (%s)",
                  getattr(obj, "object", "object"), getattr(obj, "id", "?"), field, exc)
        raise


class StripePaymentProcessor:
    """The payment port on Stripe.

    :param secret_key: ``sk_test_...`` / ``sk_live_...``.
    :param merchant_id: the Stripe account id (``acct_...``) advertised in the
        handler's ``config.merchant_id``; the agent scopes tokens to it.
    :param spt_api_version: ``Stripe-Version`` for the SPT calls (a preview version).
    :param api_base: Stripe API base URL (tests point it at the fake server).
    :param max_network_retries: SDK retries of connection errors, 409 and 5xx.
    :param timeout: (connect, read) seconds per HTTP request.
    :param capture_method: ``automatic`` or ``manual`` (authorize at complete,
        capture when the order ships).
    :param preflight: look the granted token up before creating a PaymentIntent.
    :param expiry_margin: seconds; a token expiring sooner is refused.
    :param handler_id: ``PaymentHandler.id`` agents send as ``payment_data.handler_id``.
    :param demo: a local demo (``ACP_STRIPE_DEMO``): the handler's ``config.api_base``
        names ``api_base``, where ``flask acp demo-purchase`` mints its test tokens.
    :raises ValueError: ``demo`` with a live key, or an unknown ``capture_method``.
    """

    def __init__(
        self,
        secret_key: str,
        *,
        merchant_id: str,
        spt_api_version: str = "2026-09-30.preview",
        api_base: str | None = None,
        max_network_retries: int = 2,
        timeout: tuple[float, float] = (5.0, 25.0),
        capture_method: str = "automatic",
        preflight: bool = True,
        expiry_margin: int = 30,
        handler_id: str = "card_tokenized",
        demo: bool = False,
        clock: cabc.Callable[[], float] = time.time,
    ) -> None:
        if capture_method not in ("automatic", "manual"):
            raise ValueError("capture_method must be 'automatic' or 'manual'")
        self.merchant_id = merchant_id
        self.spt_api_version = spt_api_version
        self.capture_method = capture_method
        self.preflight = preflight
        self.expiry_margin = expiry_margin
        self.handler_id = handler_id
        self.clock = clock
        self.max_network_retries = max_network_retries
        self.timeout = timeout
        self.client = stripe.StripeClient(
            secret_key,
            max_network_retries=max_network_retries,
            http_client=stripe.RequestsClient(timeout=timeout),
            base_addresses={"api": api_base} if api_base else None,
        )
        self.test_mode = secret_key.startswith(("sk_test_", "rk_test_"))
        self._secret_key = secret_key
        if demo and not self.test_mode:
            raise ValueError("demo=True needs a test key (sk_test_...)")
        #: advertised as the handler's ``config.api_base`` (a local demo's fake Stripe)
        self.demo_api_base = (api_base or "https://api.stripe.com") if demo else None

    @classmethod
    def from_settings(cls, settings: StripeSettings) -> StripePaymentProcessor:
        """Build from the validated ``ACP_STRIPE_*`` keys.

        :raises ValueError: ``ACP_STRIPE_SECRET_KEY`` or ``ACP_STRIPE_MERCHANT_ID`` is not set.
        """
        if not settings.secret_key or not settings.merchant_id:
            raise ValueError("the Stripe processor needs ACP_STRIPE_SECRET_KEY and ACP_STRIPE_MERCHANT_ID")
        return cls(
            settings.secret_key,
            merchant_id=settings.merchant_id,
            spt_api_version=settings.spt_api_version,
            api_base=settings.api_base,
            max_network_retries=settings.max_network_retries,
            timeout=(settings.connect_timeout, settings.read_timeout),
            capture_method=settings.capture_method,
            preflight=settings.token_preflight,
            expiry_margin=settings.token_expiry_margin,
            handler_id=settings.handler_id,
            demo=settings.demo,
        )


    def pointed_at(self, api_base: str) -> StripePaymentProcessor:
        """The same key and account on another API base, without retries (the
        demo mints its tokens on the fake Stripe a server advertises)."""
        return StripePaymentProcessor(self._secret_key, merchant_id=self.merchant_id,
                                      spt_api_version=self.spt_api_version, api_base=api_base,
                                      max_network_retries=0, timeout=self.timeout)

    # -- the port ------------------------------------------------------------------

    def handlers(self) -> list[PaymentHandler]:
        """One ``dev.acp.tokenized.card`` handler with ``psp: stripe``. 3DS is not
        advertised: a Stripe merchant cannot import the agent's authentication
        (stripe.md §6.3)."""
        config: dict[str, JSON] = {"merchant_id": self.merchant_id, "psp": "stripe",
                                   "environment": "test" if self.test_mode else "production"}
        if self.demo_api_base:  # ACP_STRIPE_DEMO: where a demo agent mints its test tokens
            config["api_base"] = self.demo_api_base
        return [tokenized_card_handler(id=self.handler_id, psp="stripe", display_name="Card", config=config)]

    #: Stripe calls one charge makes at the most: token look-up, search or
    #: PaymentIntent create, and the re-read of a replayed PaymentIntent
    CHARGE_CALLS = 3
    #: the SDK's longest sleep between two retries (``stripe._http_client.MAX_DELAY``)
    RETRY_DELAY_MAX = 5.0

    def time_budget(self) -> float:
        """Worst case of one :meth:`charge`, in seconds: ``CHARGE_CALLS`` calls,
        each tried ``1 + max_network_retries`` times for up to connect + read
        timeout, with the SDK's back-off in between (300 s with the defaults)."""
        connect, read = self.timeout
        per_call = (self.max_network_retries + 1) * (connect + read) \
            + self.max_network_retries * self.RETRY_DELAY_MAX
        return self.CHARGE_CALLS * per_call

    def amount_problem(self, amount: int, currency: str) -> AmountProblem | None:
        """Stripe's documented amount rules for ``amount`` minor units of
        ``currency``: a three-decimal currency's amount must end in 0, and the
        amount must lie within Stripe's minimum and maximum charge amounts
        (:func:`flask_acp.payments.stripe_amounts.amount_problem`). No network call."""
        return stripe_amounts.amount_problem(amount, currency)

    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Create and confirm a PaymentIntent for ``request.amount`` (see module doc).
        An amount :meth:`amount_problem` refuses is never sent to Stripe.

        :raises PaymentDeclinedError, PaymentTokenError, PaymentActionRequiredError,
            PaymentUnavailableError, PaymentProviderError, PaymentAmountError:
        """
        problem = self.amount_problem(request.amount, request.currency)
        if problem is not None:
            raise PaymentAmountError(_AMOUNT_TEXT, problem=problem)
        if self.preflight:
            found = self._check_token(request)
            if found is not None:
                return found
        params: dict[str, t.Any] = {
            "amount": stripe_amounts.to_stripe(request.amount, request.currency),
            "currency": request.currency.lower(),
            "confirm": True,
            "payment_method_data": {"shared_payment_granted_token": request.token},
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            "capture_method": self.capture_method,
            "metadata": {
                **request.metadata,
                "acp_checkout_session_id": request.checkout_session_id,
                "acp_idempotency_key": request.idempotency_key,
            },
        }
        try:
            intent = self.client.v1.payment_intents.create(
                params=t.cast(t.Any, params),
                options={"idempotency_key": request.idempotency_key,
                         "stripe_version": self.spt_api_version},
            )
        except stripe.StripeError as exc:
            raise self._translate(exc, request) from exc
        if _replayed(intent) and str(intent.status) in _HELD:
            # Stripe replays the result saved under our key, however old: make
            # sure the money is still held (not refunded or released since).
            return self._still_held(intent.id)
        return self._result(intent, request.idempotency_key)

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        """The succeeded (or authorized) PaymentIntent created under
        ``idempotency_key``, found by its metadata (PaymentIntent search).

        :raises PaymentUnavailableError: Stripe cannot answer now.
        """
        query = f"metadata['acp_idempotency_key']:'{idempotency_key}'"
        try:
            found = self.client.v1.payment_intents.search(params={"query": query, "limit": 10})
        except stripe.StripeError as exc:
            raise self._unavailable(exc) from exc
        for intent in found.data:
            if intent.status in ("succeeded", "requires_capture", "processing"):
                return ChargeResult(payment_id=intent.id, amount=_iso(intent),
                                    currency=intent.currency, status=str(intent.status))
        return None

    def capture(self, payment_id: str, *, amount: int, idempotency_key: str) -> ChargeResult:
        currency = self._currency_of(payment_id)
        try:
            intent = self.client.v1.payment_intents.capture(
                payment_id, params={"amount_to_capture": stripe_amounts.to_stripe(amount, currency)},
                options={"idempotency_key": idempotency_key})
        except stripe.StripeError as exc:
            raise self._translate(exc, None) from exc
        return ChargeResult(payment_id=intent.id, amount=_iso(intent, "amount_received"),
                            currency=intent.currency, status=str(intent.status))

    def void(self, payment_id: str, *, idempotency_key: str) -> None:
        try:
            self.client.v1.payment_intents.cancel(
                payment_id, params={"cancellation_reason": "abandoned"},
                options={"idempotency_key": idempotency_key})
        except stripe.InvalidRequestError as exc:
            if exc.code == "payment_intent_unexpected_state":
                intent = self.client.v1.payment_intents.retrieve(payment_id)
                if intent.status == "canceled":
                    return
            raise self._translate(exc, None) from exc
        except stripe.StripeError as exc:
            raise self._translate(exc, None) from exc

    def refund(self, payment_id: str, *, amount: int, idempotency_key: str,
               metadata: dict[str, str]) -> RefundResult:
        currency = self._currency_of(payment_id)
        try:
            refund = self.client.v1.refunds.create(
                params={"payment_intent": payment_id, "amount": stripe_amounts.to_stripe(amount, currency),
                        "reason": "requested_by_customer", "metadata": metadata},
                options={"idempotency_key": idempotency_key})
        except stripe.StripeError as exc:
            raise self._translate(exc, None) from exc
        status = "succeeded" if refund.status == "succeeded" else (
            "failed" if refund.status in ("failed", "canceled") else "pending")
        return RefundResult(id=refund.id, amount=_iso(refund), currency=refund.currency, status=status)

    # -- helpers -------------------------------------------------------------------

    def _currency_of(self, payment_id: str) -> str:
        """The currency of PaymentIntent ``payment_id`` (a GET), in which Stripe
        reads the amounts sent about it.

        :raises PaymentError: as :meth:`_translate` says (never "outcome unknown": a read).
        """
        try:
            intent = self.client.v1.payment_intents.retrieve(payment_id)
        except stripe.StripeError as exc:
            error = self._translate(exc, None)
            if isinstance(error, PaymentUnavailableError):
                error.outcome_unknown = False
            raise error from exc
        return str(intent.currency)

    def granted_token(self, token: str) -> dict[str, t.Any]:
        """``GET /v1/shared_payment/granted_tokens/{token}`` (preview API), as a dict.
        The token is one quoted path segment: whatever it holds (``../``, ``?``,
        ``#``, ``%2F``) it can never name another Stripe resource.

        :raises stripe.StripeError: as the SDK raises it.
        """
        segment = urllib.parse.quote(token, safe="")
        response = self.client.raw_request("get", f"/v1/shared_payment/granted_tokens/{segment}",
                                           stripe_version=self.spt_api_version)
        return self.client.deserialize(response, api_mode="V1").to_dict()

    def _check_token(self, request: ChargeRequest) -> ChargeResult | None:
        """Refuse an unusable token before any PaymentIntent exists.

        A *consumed* token may have been consumed by this very charge (an
        earlier attempt whose answer was lost): return that charge if a search
        finds it and it still holds the money; else let the PaymentIntent
        create decide, since Stripe replays the outcome saved under our
        idempotency key (or refuses a token consumed elsewhere). Refusing it
        here would put the session back to ``ready_for_payment`` while it is paid.
        """
        try:
            token = self.granted_token(request.token)
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404 or exc.code == "resource_missing":
                raise PaymentTokenError("the payment token does not exist") from exc
            raise self._translate(exc, request) from exc
        except stripe.StripeError as exc:
            error = self._translate(exc, request)
            if isinstance(error, PaymentUnavailableError):  # a read: nothing was charged
                error.outcome_unknown = False
            raise error from exc
        limits = token.get("usage_limits") or {}
        if token.get("deactivated_at") or token.get("deactivated_reason"):
            reason = token.get("deactivated_reason") or "deactivated"
            if reason == "consumed":
                found = self.find_charge(request.idempotency_key)
                if found is None:
                    return None
                if (found.amount, found.currency.lower()) != (request.amount, request.currency.lower()):
                    # what Stripe answers the same key with other parameters (IdempotencyError)
                    raise PaymentTokenError("the payment token was already used for a different amount")
                return self._still_held(found.payment_id)
            raise PaymentTokenError(f"the payment token is {reason}")
        if str(limits.get("currency", request.currency)).lower() != request.currency.lower():
            raise PaymentTokenError(f"the payment token is for {limits.get('currency')}, "
                                    f"not {request.currency}")
        max_amount = limits.get("max_amount")  # Stripe units, like every Stripe amount
        if max_amount is not None \
                and int(max_amount) < stripe_amounts.to_stripe(request.amount, request.currency):
            allowed = int(max_amount) // stripe_amounts.stripe_factor(request.currency)
            raise PaymentTokenError(f"the payment token allows {allowed}, the total is {request.amount} "
                                    "(minor units)")
        expires_at = limits.get("expires_at")
        if expires_at is not None and int(expires_at) <= self.clock() + self.expiry_margin:
            raise PaymentTokenError("the payment token has expired or is about to")
        return None

    def _still_held(self, payment_id: str) -> ChargeResult:
        """The charge of an earlier attempt under our key, as it is now.

        :raises PaymentTokenError: its money went back (PaymentIntent canceled,
            or refunded in full): the token was used up by that attempt.
        :raises PaymentUnavailableError: Stripe cannot answer now.
        """
        try:
            intent = self.client.v1.payment_intents.retrieve(
                payment_id, params={"expand": ["latest_charge"]})
        except stripe.StripeError as exc:
            raise self._unavailable(exc) from exc
        status = str(intent.status)
        charge = intent.latest_charge
        refunded = getattr(charge, "amount_refunded", 0) if charge is not None else 0
        if status not in _HELD or (status == "succeeded" and refunded >= intent.amount_received):
            log.info("PaymentIntent %s of an earlier attempt is %s (refunded %s): not a charge",
                     intent.id, status, refunded)
            raise PaymentTokenError("the payment token was already used for a payment that was "
                                    "refunded or released")
        return ChargeResult(payment_id=intent.id, amount=_iso(intent), currency=intent.currency,
                            status=status)

    def _result(self, intent: t.Any, idempotency_key: str) -> ChargeResult:
        status = str(intent.status)
        if status in ("succeeded", "requires_capture", "processing"):
            return ChargeResult(payment_id=intent.id, amount=_iso(intent), currency=intent.currency,
                                status=status)
        if status == "requires_action":
            try:
                self.client.v1.payment_intents.cancel(
                    intent.id, params={"cancellation_reason": "abandoned"},
                    options={"idempotency_key": f"{idempotency_key}-cancel"})
            except stripe.StripeError:
                log.warning("could not cancel PaymentIntent %s left in requires_action", intent.id)
            raise PaymentActionRequiredError("The card requires authentication.")
        log.info("PaymentIntent %s ended in %s", intent.id, status)
        raise PaymentDeclinedError(_DECLINED_TEXT)

    def _translate(self, exc: stripe.StripeError, request: ChargeRequest | None) -> PaymentError:
        if isinstance(exc, stripe.CardError):
            decline = getattr(exc.error, "decline_code", None) if exc.error else None
            log.info("card declined: code=%s decline_code=%s request=%s", exc.code, decline,
                     exc.request_id)
            if exc.code == "authentication_required":
                return PaymentActionRequiredError("The card requires authentication.", decline_code=decline)
            return PaymentDeclinedError(_DECLINED_TEXT, decline_code=decline or exc.code)
        if isinstance(exc, stripe.IdempotencyError):
            return PaymentTokenError("the payment token was already used for a different amount")
        if isinstance(exc, stripe.InvalidRequestError) and request is not None \
                and exc.param == "amount" and str(exc.code) in _AMOUNT_CODES:
            log.info("Stripe refused the amount %s %s: %s (code=%s, request=%s)", request.amount,
                     request.currency, exc.user_message, exc.code, exc.request_id)
            code = _AMOUNT_CODES[str(exc.code)]
            known = self.amount_problem(request.amount, request.currency)
            if known is None or known.code != code:  # e.g. a minimum after conversion
                known = AmountProblem(code=code, amount=request.amount, currency=request.currency.lower())
            return PaymentAmountError(_AMOUNT_TEXT, problem=known)
        if isinstance(exc, stripe.InvalidRequestError):
            param = exc.param or ""
            if request is not None and (param.startswith(SPT_PARAM) or param == "shared_payment_granted_token"
                                        or exc.code == "resource_missing"):
                log.info("Stripe refused the token: %s (code=%s, request=%s)", exc.user_message, exc.code,
                         exc.request_id)
                return PaymentTokenError(
                    _TOKEN_TEXT.get(str(exc.code), "the payment token can no longer be used"))
            log.error("Stripe refused the request: %s (param=%s, request=%s)", exc.user_message, param,
                      exc.request_id)
            return PaymentProviderError("The payment could not be processed.")
        if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
            log.error("Stripe credentials rejected: %s", exc.user_message)
            return PaymentProviderError("The payment could not be processed.")
        return self._unavailable(exc)

    @staticmethod
    def _unavailable(exc: stripe.StripeError) -> PaymentUnavailableError:
        retry_after, unknown = 1, True
        if isinstance(exc, stripe.RateLimitError):  # refused before executing
            retry_after, unknown = 2, False
        log.warning("Stripe unavailable (%s): %s", type(exc).__name__, exc.user_message)
        return PaymentUnavailableError("The payment processor is unavailable.", retry_after=retry_after,
                                       outcome_unknown=unknown)
