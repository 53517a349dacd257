"""A stateful fake of the small part of the Stripe API that an ACP merchant uses
to charge Shared Payment Tokens (SPTs), for tests that must not reach Stripe.

It is a real HTTP server on ``127.0.0.1`` (ephemeral port), so the real
``stripe.StripeClient`` talks to it unchanged::

    with FakeStripe() as fake:
        client = stripe.StripeClient(
            fake.api_key, base_addresses={"api": fake.url}, max_network_retries=2,
            http_client=stripe.RequestsClient(timeout=(2, 5)))
        spt = mint_granted_token(client, currency="usd", max_amount=830)
        pi = client.v1.payment_intents.create(
            params={"amount": 830, "currency": "usd", "confirm": True,
                    "payment_method_data": {"shared_payment_granted_token": spt}},
            options={"stripe_version": fake.spt_api_version})
        assert pi.status == "succeeded" and fake.charges_count() == 1

Needs the ``jsonschema`` package (request validation); ``stripe`` is only used
by :func:`mint_granted_token`'s type hints. Amounts are integers in minor units
(cents), currencies are lowercase ISO codes, timestamps are Unix seconds.

Endpoints (form-encoded bracket parameters, like Stripe; every POST body is
checked against a hand-written JSON Schema with ``additionalProperties: false``,
so an unknown or misspelt parameter fails like on Stripe, naming the ``param``):

* ``POST /v1/payment_intents``: create; with ``confirm=true`` and
  ``payment_method_data[shared_payment_granted_token]`` it charges the token
  (``payment_method_data[type]`` is not required next to the token). There is no
  separate confirm endpoint: without ``confirm`` the PI stays ``requires_confirmation``.
* ``GET /v1/payment_intents/{id}`` (``expand[]``: ``latest_charge``, ``payment_method``)
* ``POST /v1/payment_intents/{id}/capture``: ``amount_to_capture`` <= ``amount_capturable``
* ``POST /v1/payment_intents/{id}/cancel``: ``cancellation_reason``
* ``GET /v1/payment_intents/search``: only ``query=metadata['key']:'value'``
* ``POST /v1/refunds``, ``GET /v1/refunds/{id}``: refunds sum to <= ``amount_received``
* ``GET /v1/charges/{id}``
* ``GET /v1/account``: the key's account (``id`` = the ``account_id`` given, default
  ``acct_fake``), as ``flask acp doctor`` reads it
* ``GET /v1/shared_payment/granted_tokens/{id}``
* ``POST /v1/test_helpers/shared_payment/granted_tokens``: mint a token
  (``payment_method=pm_card_*``, ``usage_limits[currency|max_amount|expires_at]``,
  ``shared_metadata``, ``customer``)
* ``POST /v1/test_helpers/shared_payment/granted_tokens/{id}/revoke``

The token GET, the test helpers, and a PI create that carries
``payment_method_data[shared_payment_granted_token]`` require the header
``Stripe-Version: <spt_api_version>`` (else 400, ``param`` and ``code`` empty, and
nothing saved). Other calls accept any version.

Amounts on ``POST /v1/payment_intents`` follow Stripe's documented rules
(docs.stripe.com/currencies; the table is :mod:`flask_acp.payments.stripe_amounts`),
checked before anything else, with 400 ``invalid_request_error`` and
``param: amount``; nothing is created:

* below the currency's minimum charge amount: ``amount_too_small``, "Amount must
  be at least $0.50 usd" (Stripe's wording);
* above the maximum (8 digits, ``99999999``; IDR 12, COP 10, INR 9):
  ``amount_too_large``, "Amount must be no more than $999,999.99";
* a three-decimal currency (BHD, JOD, KWD, OMR, TND) whose last digit is not 0:
  ``invalid_charge_amount`` (a code from Stripe's list; the exact code and text
  Stripe sends for this case are not documented, so they are this fake's).
* ISK and UGX ("Special cases"): Stripe takes them as two-decimal values
  (``amount=500`` is 5 ISK) that must be evenly divisible by 100; any other
  value gets Stripe's text ("Invalid amount. Currency UGX has become
  effectively zero-decimal and charged amounts must be evenly divisible by
  100. ...", as merchants report it) with the code ``invalid_charge_amount``
  (this fake's: the code Stripe sends is not documented).
  The same rule applies to ``amount_to_capture`` and a refund's ``amount``.
  Minimum and maximum are checked on the amount in ISO units
  (``stripe_amounts.from_stripe``).

Amounts stored and answered are Stripe's, as on the wire (ISK in hundredths).

Test payment methods (``payment_method`` of the test helper) pick the outcome of
the charge, mirroring Stripe's sandbox cards (see :data:`TEST_PAYMENT_METHODS`):

* ``pm_card_visa``, ``pm_card_mastercard``: success.
* ``pm_card_chargeDeclined``: 402 ``card_declined`` / ``generic_decline``; the
  suffixes ``InsufficientFunds``, ``Fraudulent``, ``LostCard``, ``StolenCard`` give
  ``card_declined`` with that ``decline_code`` (``insufficient_funds``, ...);
  ``ExpiredCard``, ``IncorrectCvc``, ``ProcessingError`` give ``code`` =
  ``decline_code`` = ``expired_card``, ``incorrect_cvc``, ``processing_error``.
* ``pm_card_authenticationRequired``: PI ``requires_action`` with ``next_action``
  (3DS); with ``error_on_requires_action=true``, 402 ``authentication_required``.

Choices where Stripe's real behaviour is unknown (stripe.md §10) -- all are
this fake's, not Stripe's:

* An unusable token (amount over ``usage_limits.max_amount``, other currency,
  expired, revoked, already consumed) gives 400 ``invalid_request_error`` with
  ``code`` :data:`TOKEN_INVALID_CODE` (``"shared_payment_granted_token_invalid"``)
  and ``param`` :data:`SPT_PARAM`; the ``message`` names the reason. An unknown
  token gives 404 ``resource_missing`` with the same ``param``. No PaymentIntent
  is created in these cases.
* A successful confirm (``succeeded`` or ``requires_capture``) consumes the token
  (``deactivated_reason: "consumed"``). A decline or ``requires_action`` does not.
* ``usage_details.amount_captured`` grows when money is captured (at confirm
  with automatic capture, at capture with manual capture).
* An expired token reads back as ``deactivated_reason: "expired"``. The test
  helper refuses an ``expires_at`` in the past; use :meth:`FakeStripe.advance_clock`.
  Without ``usage_limits[expires_at]`` the token never expires.
* Revoking a token that is already deactivated returns it unchanged.
* Decline errors carry no ``param``. Over-capture and over-refund give 400
  ``amount_too_large``; refunding a fully refunded charge gives
  ``charge_already_refunded``; refunding an uncaptured PI gives
  ``charge_not_refundable``; capture/cancel in the wrong status gives
  ``payment_intent_unexpected_state``.
* 401 (wrong key) and 429 use Stripe's wire shape: ``type: invalid_request_error``
  (429 with ``code: rate_limit``); the SDK raises ``AuthenticationError`` /
  ``RateLimitError`` from the status code.
* A 500 that is saved under an idempotency key (fault ``"500_after"``) carries
  ``Stripe-Should-Retry: false``, so the SDK does not retry into the replay.
* Search is immediately consistent (Stripe's is not).
* The minimum is the charge currency's own (as if the account settled in every
  currency: no conversion to a settlement currency), and amount errors are not
  saved under the idempotency key (like parameter validation errors).

Idempotency (POST only, keyed by ``(api key, Idempotency-Key)``, never
required): the first request that starts executing saves its status and body;
the same key replays them with ``Idempotent-Replayed: true`` (also 402s, token
errors and saved 500s). Other parameters or path with the same key give 400
``idempotency_error``; a request arriving while the first one is still running
gives 409 ``idempotency_key_in_use`` (not saved). Requests rejected before
execution (401, parameter validation, ``Stripe-Version``, injected 429/500) are
not saved.

Test controls (the :mod:`flask_acp.testing.fakes` API): :meth:`FakeStripe.fail_next`
(``"500_before"``/``"500"``, ``"500_after"``, ``"429"``, ``"timeout"``, ``"drop_after"``,
``"slow"``; ``path_prefix`` matches), :meth:`~FakeStripe.advance_clock`,
:meth:`~FakeStripe.freeze_clock`, ``clock=``; webhooks: :meth:`~FakeStripe.send_webhook`,
:meth:`~FakeStripe.subscribe_webhooks` (alias ``auto_webhooks``),
:meth:`~FakeStripe.flush_webhooks`, :attr:`~FakeStripe.webhook_log`.
Standalone: ``python -m flask_acp.testing.fake_stripe --port 12111``.

Layout: :class:`FakeStripe` is assembled from one layer per concern, each
subclassing the one before: ``state`` (objects, logs, constructor) ->
``webhooks`` -> ``tokens`` -> ``payment_intents`` -> ``refunds`` -> ``search`` ->
``server`` (HTTP plumbing: authentication, versions, validation, idempotency,
faults). ``wire`` holds the errors and form decoding, ``schemas`` the request
schemas and URL map.
"""

from __future__ import annotations

import typing as t

from .server import FakeStripe as FakeStripe
from .server import ensure_fake_stripe as ensure_fake_stripe
from .server import main as main
from .state import DEFAULT_WEBHOOK_SECRET as DEFAULT_WEBHOOK_SECRET
from .tokens import TEST_PAYMENT_METHODS as TEST_PAYMENT_METHODS
from .tokens import SandboxCard as SandboxCard
from .tokens import mint_granted_token as mint_granted_token
from .webhooks import WEBHOOK_EVENTS as WEBHOOK_EVENTS
from .wire import ACCOUNT_API_VERSION as ACCOUNT_API_VERSION
from .wire import DEFAULT_API_KEY as DEFAULT_API_KEY
from .wire import DEFAULT_SPT_API_VERSION as DEFAULT_SPT_API_VERSION
from .wire import SPT_PARAM as SPT_PARAM
from .wire import TOKEN_INVALID_CODE as TOKEN_INVALID_CODE
from .wire import JSONDict as JSONDict
from .wire import RecordedRequest as RecordedRequest
from .wire import WebhookDelivery as WebhookDelivery
from .wire import WireRequest as WireRequest
from .wire import stripe_signature_header as stripe_signature_header

__all__ = [
    "ACCOUNT_API_VERSION",
    "DEFAULT_API_KEY",
    "DEFAULT_SPT_API_VERSION",
    "DEFAULT_WEBHOOK_SECRET",
    "SPT_PARAM",
    "TEST_PAYMENT_METHODS",
    "TOKEN_INVALID_CODE",
    "WEBHOOK_EVENTS",
    "FakeStripe",
    "FaultKind",
    "RecordedRequest",
    "SandboxCard",
    "WebhookDelivery",
    "WireRequest",
    "ensure_fake_stripe",
    "main",
    "mint_granted_token",
    "stripe_signature_header",
]

#: the fault kinds of :meth:`FakeStripe.fail_next` (with the alias ``"500"``).
FaultKind = t.Literal["500", "500_before", "500_after", "429", "timeout", "drop_after", "slow"]
