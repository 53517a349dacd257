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
"""

from __future__ import annotations

import copy
import decimal
import hashlib
import hmac
import json
import queue
import re
import threading
import time
import typing as t
import urllib.parse
import uuid

import jsonschema  # type: ignore[import-untyped]
import requests
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map
from werkzeug.routing import Rule
from werkzeug.serving import BaseWSGIServer
from werkzeug.serving import WSGIRequestHandler
from werkzeug.serving import make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from ..payments import stripe_amounts
from ..payments.base import format_minor
from ._wsgi import drop_connection

if t.TYPE_CHECKING:
    import stripe
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_SPT_API_VERSION",
    "SPT_PARAM",
    "TEST_PAYMENT_METHODS",
    "TOKEN_INVALID_CODE",
    "FakeStripe",
    "FaultKind",
    "RecordedRequest",
    "SandboxCard",
    "WebhookDelivery",
    "WireRequest",
    "mint_granted_token",
    "stripe_signature_header",
]

DEFAULT_API_KEY = "sk_test_fake"
#: Preview API version required on the SPT calls (stripe.md §0).
DEFAULT_SPT_API_VERSION = "2026-09-30.preview"
#: The account's default version, echoed when a request sends no ``Stripe-Version``.
ACCOUNT_API_VERSION = "2026-10-28.endive"
#: ``param`` of every token error on PaymentIntent create.
SPT_PARAM = "payment_method_data[shared_payment_granted_token]"
#: ``code`` of "token unusable" errors. Our choice: Stripe's real code is unconfirmed.
TOKEN_INVALID_CODE = "shared_payment_granted_token_invalid"  # noqa: S105

JSONDict = dict[str, t.Any]
FaultKind = t.Literal["500_before", "500_after", "429", "drop_after", "slow"]
_FAULT_KINDS = ("500_before", "500_after", "429", "drop_after", "slow")


class RecordedRequest(t.NamedTuple):
    """One request as the fake understood it (``params`` decoded and coerced)."""

    method: str
    path: str
    idempotency_key: str | None
    params: JSONDict


class WireRequest(t.NamedTuple):
    """One request exactly as received: query string and body undecoded."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: str


class WebhookDelivery(t.NamedTuple):
    """One webhook POST: ``status_code`` is ``None`` when the POST failed (see ``error``)."""

    url: str
    event: JSONDict
    status_code: int | None
    error: str | None


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

# --------------------------------------------------------------------------- schemas

_METADATA: JSONDict = {
    "type": "object",
    "maxProperties": 50,
    "propertyNames": {"maxLength": 40},
    "additionalProperties": {"type": "string", "maxLength": 500},
}
_EXPAND: JSONDict = {"type": "array", "items": {"type": "string"}}
_CURRENCY: JSONDict = {"type": "string", "pattern": "^[A-Za-z]{3}$"}
_ADDRESS: JSONDict = {
    "type": "object",
    "additionalProperties": False,
    "properties": {k: {"type": "string", "maxLength": 5000}
                   for k in ("city", "country", "line1", "line2", "postal_code", "state")},
}


def _obj(properties: JSONDict, required: t.Sequence[str] = (), **extra: t.Any) -> JSONDict:
    return {"type": "object", "additionalProperties": False, "properties": properties,
            "required": list(required), **extra}


_SCHEMAS: dict[str, JSONDict] = {
    "pi_create": _obj({
        "amount": {"type": "integer", "minimum": 1},
        "currency": _CURRENCY,
        "confirm": {"type": "boolean"},
        "capture_method": {"enum": ["automatic", "automatic_async", "manual"]},
        "payment_method_data": {**_obj(
            {
                "shared_payment_granted_token": {"type": "string", "maxLength": 5000},
                "type": {"type": "string"},
                "billing_details": _obj({
                    "address": _ADDRESS, "email": {"type": "string"},
                    "name": {"type": "string"}, "phone": {"type": "string"}}),
                "metadata": _METADATA,
            },
        ),
            # The spec requires ``type``; the documented SPT call omits it (stripe.md §2).
            "if": {"not": {"required": ["shared_payment_granted_token"]}},
            "then": {"required": ["type"]}},
        "automatic_payment_methods": _obj(
            {"enabled": {"type": "boolean"}, "allow_redirects": {"enum": ["always", "never"]}},
            ["enabled"]),
        "error_on_requires_action": {"type": "boolean"},
        "metadata": _METADATA,
        "description": {"type": "string", "maxLength": 1000},
        "receipt_email": {"type": "string"},
        "statement_descriptor_suffix": {"type": "string", "maxLength": 22},
        "customer": {"type": "string"},
        "shipping": _obj({
            "address": _ADDRESS, "name": {"type": "string"}, "phone": {"type": "string"},
            "carrier": {"type": "string"}, "tracking_number": {"type": "string"}},
            ["address", "name"]),
        "expand": _EXPAND,
    }, ["amount", "currency"]),
    "pi_capture": _obj({
        "amount_to_capture": {"type": "integer", "minimum": 1},
        "final_capture": {"type": "boolean"},
        "metadata": _METADATA,
        "statement_descriptor_suffix": {"type": "string", "maxLength": 22},
        "expand": _EXPAND,
    }),
    "pi_cancel": _obj({
        "cancellation_reason": {
            "enum": ["abandoned", "duplicate", "fraudulent", "requested_by_customer"]},
        "expand": _EXPAND,
    }),
    "refund_create": _obj({
        "payment_intent": {"type": "string"},
        "charge": {"type": "string"},
        "amount": {"type": "integer", "minimum": 1},
        "reason": {"enum": ["duplicate", "fraudulent", "requested_by_customer"]},
        "metadata": _METADATA,
        "expand": _EXPAND,
    }),
    "token_create": _obj({
        "payment_method": {"type": "string"},
        "customer": {"type": "string"},
        "usage_limits": _obj({
            "currency": _CURRENCY,
            "max_amount": {"type": "integer", "minimum": 1},
            "expires_at": {"type": "integer"},
        }, ["currency", "max_amount"]),
        "shared_metadata": _METADATA,
        "expand": _EXPAND,
    }, ["payment_method", "usage_limits"]),
    "pi_search": _obj({
        "query": {"type": "string"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 100},
        "page": {"type": "string"},
        "expand": _EXPAND,
    }, ["query"]),
}
_GET_SCHEMA = _obj({"expand": _EXPAND})
_VALIDATORS = {name: jsonschema.Draft202012Validator(schema) for name, schema in _SCHEMAS.items()}
_GET_VALIDATOR = jsonschema.Draft202012Validator(_GET_SCHEMA)

_URLS = Map([
    Rule("/v1/payment_intents", methods=["POST"], endpoint="pi_create"),
    Rule("/v1/payment_intents/search", methods=["GET"], endpoint="pi_search"),
    Rule("/v1/payment_intents/<pi_id>", methods=["GET"], endpoint="pi_retrieve"),
    Rule("/v1/payment_intents/<pi_id>/capture", methods=["POST"], endpoint="pi_capture"),
    Rule("/v1/payment_intents/<pi_id>/cancel", methods=["POST"], endpoint="pi_cancel"),
    Rule("/v1/refunds", methods=["POST"], endpoint="refund_create"),
    Rule("/v1/refunds/<refund_id>", methods=["GET"], endpoint="refund_retrieve"),
    Rule("/v1/charges/<charge_id>", methods=["GET"], endpoint="charge_retrieve"),
    Rule("/v1/shared_payment/granted_tokens/<spt>", methods=["GET"], endpoint="token_retrieve"),
    Rule("/v1/test_helpers/shared_payment/granted_tokens", methods=["POST"],
         endpoint="token_create"),
    Rule("/v1/test_helpers/shared_payment/granted_tokens/<spt>/revoke", methods=["POST"],
         endpoint="token_revoke"),
], strict_slashes=False)
_PREVIEW_ENDPOINTS = {"token_retrieve", "token_create", "token_revoke"}
_CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation",
               "requires_action", "processing")
_SEARCH_QUERY = re.compile(r"""^\s*metadata\[(['"])(.+?)\1\]\s*:\s*(['"])(.*)\3\s*$""")

# --------------------------------------------------------------------------- errors


class _StripeError(Exception):
    """An error response. ``saved=False``: rejected before execution began."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None, saved: bool = True,
                 headers: dict[str, str] | None = None, **extra: t.Any) -> None:
        super().__init__(message)
        error: JSONDict = {"type": type, "message": message}
        if code:
            error["code"] = code
            error["doc_url"] = "https://stripe.com/docs/error-codes/" + code.replace("_", "-")
        if param:
            error["param"] = param
        error.update(extra)
        self.status, self.body, self.saved = status, {"error": error}, saved
        self.headers = headers or {}


_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}


def _unit_error(amount: int, currency: str, param: str = "amount") -> _StripeError | None:
    """Stripe's answer to an ``amount`` of ``currency`` (Stripe units) that is not
    a whole number of the currency's units (ISK, UGX: a multiple of 100), else ``None``."""
    step = stripe_amounts.stripe_factor(currency)
    if amount % step == 0:
        return None
    return _StripeError(400, f"Invalid amount. Currency {currency.upper()} has become effectively "
                             f"zero-decimal and charged amounts must be evenly divisible by {step}. See "
                             "https://stripe.com/docs/currencies#zero-decimal for more information.",
                        code="invalid_charge_amount", param=param, saved=False)


def _amount_error(amount: int, currency: str) -> _StripeError | None:
    """Stripe's answer to a PaymentIntent for ``amount`` (Stripe units) of
    ``currency`` that breaks its amount rules (module docstring), else ``None``."""
    refused = _unit_error(amount, currency)
    if refused is not None:
        return refused
    problem = stripe_amounts.amount_problem(stripe_amounts.from_stripe(amount, currency), currency)
    if problem is None or problem.limit is None:
        return None
    shown = f"{_SYMBOLS.get(currency, '')}{decimal.Decimal(format_minor(problem.limit, currency)):,}"
    if problem.code == "minimum_not_met":
        return _StripeError(400, f"Amount must be at least {shown} {currency}",
                            code="amount_too_small", param="amount", saved=False)
    if problem.code == "maximum_exceeded":
        return _StripeError(400, f"Amount must be no more than {shown}",
                            code="amount_too_large", param="amount", saved=False)
    return _StripeError(400, f"Invalid amount: {currency} amounts must be a multiple of "
                             f"{problem.limit} (the last digit must be 0); {amount} is not.",
                        code="invalid_charge_amount", param="amount", saved=False)


class _DropConnection(Exception):
    pass


class _Result(t.NamedTuple):
    status: int
    body: JSONDict
    headers: dict[str, str]
    saved: bool = True


class _Fault:
    def __init__(self, kind: str, count: int, path_prefix: str | None, seconds: float) -> None:
        self.kind, self.count, self.path_prefix, self.seconds = kind, count, path_prefix, seconds


class _IdempotencyEntry:
    def __init__(self, fingerprint: str, request_id: str) -> None:
        self.fingerprint = fingerprint
        self.request_id = request_id
        self.result: _Result | None = None  # None while running


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


# --------------------------------------------------------------------------- form decoding

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def _decode_form(pairs: list[tuple[str, str]]) -> JSONDict:
    """``a[b][c]=1&e[]=x&e[1]=y`` -> ``{"a": {"b": {"c": "1"}}, "e": {"0": "x", "1": "y"}}``.
    Lists stay digit-keyed dicts until :func:`_coerce` sees the schema."""
    root: JSONDict = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if match is None:
            raise _StripeError(400, f"Invalid parameter name: {key}", param=key, saved=False)
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for part in parts[:-1]:
            child = node.setdefault(part or str(len(node)), {})
            if not isinstance(child, dict):
                raise _StripeError(400, f"Invalid parameter: {key} conflicts with another "
                                        "parameter", param=key, saved=False)
            node = child
        last = parts[-1] or str(len(node))
        if isinstance(node.get(last), dict):
            raise _StripeError(400, f"Invalid parameter: {key} conflicts with another parameter",
                               param=key, saved=False)
        node[last] = value
    return root


def _coerce(value: t.Any, schema: JSONDict) -> t.Any:
    """Turn form strings into booleans, integers and lists where the schema says so."""
    kind = schema.get("type")
    if kind == "object" and isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        out = {}
        for key, item in value.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            out[key] = _coerce(item, sub) if sub else item
        return out
    if kind == "object" and value == "":
        return {}  # Stripe: an empty string clears a hash such as metadata
    if kind == "array" and isinstance(value, dict) and all(k.isdigit() for k in value):
        return [_coerce(value[k], schema.get("items", {})) for k in sorted(value, key=int)]
    if kind == "boolean" and value in ("true", "false"):
        return value == "true"
    if kind == "integer" and isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    return value


def _param(path: t.Iterable[t.Any]) -> str:
    parts = [str(p) for p in path]
    return parts[0] + "".join(f"[{p}]" for p in parts[1:]) if parts else ""


_PRIORITY = {"additionalProperties": 0, "type": 1, "required": 2}


def _validation_error(validator: t.Any, params: JSONDict) -> _StripeError | None:
    """The first schema violation, worded and ``param``-named as Stripe does."""
    errors = list(validator.iter_errors(params))
    if not errors:
        return None
    error = min(errors, key=lambda e: (_PRIORITY.get(e.validator, 3), len(e.absolute_path)))
    path = list(error.absolute_path)
    kind, instance = error.validator, error.instance
    if kind == "additionalProperties":
        known = error.schema.get("properties", {})
        param = _param([*path, sorted(k for k in instance if k not in known)[0]])
        return _StripeError(400, f"Received unknown parameter: {param}", code="parameter_unknown",
                            param=param, saved=False)
    if kind == "required":
        param = _param([*path, next(k for k in error.validator_value if k not in instance)])
        return _StripeError(400, f"Missing required param: {param}.", code="parameter_missing",
                            param=param, saved=False)
    if "propertyNames" in error.schema_path:
        param = _param([*path, instance])
        return _StripeError(400, f"Metadata keys can have up to 40 characters; {instance!r} has "
                                 f"{len(instance)}.", param=param, saved=False)
    param = _param(path)
    if kind == "type":
        code = {"integer": "parameter_invalid_integer"}.get(error.validator_value)
        shown = instance if isinstance(instance, str) else json.dumps(instance)
        message = f"Invalid {error.validator_value}: {shown}"
    elif kind == "enum":
        code, message = None, (f"Invalid {param}: must be one of "
                               + ", ".join(map(str, error.validator_value)))
    elif kind in ("minimum", "maximum"):
        sign = ">=" if kind == "minimum" else "<="
        code, message = "parameter_invalid_integer", (
            f"Invalid {param}: this value must be {sign} {error.validator_value}.")
    elif kind == "maxProperties":
        code, message = None, f"Invalid {param}: it can have at most {error.validator_value} keys."
    elif kind == "maxLength" and path and path[0] in ("metadata", "shared_metadata"):
        code, message = None, (f"Metadata values can have up to 500 characters, but you passed "
                               f"in a value that is {len(instance)} characters.")
    else:
        code, message = None, f"Invalid {param}: {error.message}"
    return _StripeError(400, message, code=code, param=param, saved=False)


# --------------------------------------------------------------------------- signatures


def stripe_signature_header(payload: str | bytes, secret: str, *,
                            timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` value for ``payload``: ``t=<unix>,v1=<hex HMAC-SHA256 of
    "<t>.<payload>" keyed with the whole secret>`` (same as
    ``stripe.WebhookSignature.generate_signature_header``)."""
    if isinstance(payload, bytes):
        payload = payload.decode("utf-8")
    stamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode("utf-8"), f"{stamp}.{payload}".encode(),
                      hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


# --------------------------------------------------------------------------- the server


class FakeStripe:
    """A stateful, thread-safe fake Stripe API server (see the module docstring).

    :param api_key: the only secret key accepted (``Authorization: Bearer <key>`` or Basic
        auth); any other key gets 401, which the SDK raises as ``AuthenticationError``.
    :param spt_api_version: the ``Stripe-Version`` that SPT calls must send.

    Use as a context manager, or call :meth:`start` / :meth:`stop`. All inspection
    attributes return copies and are safe to read while requests are served.
    """

    def __init__(self, *, api_key: str = DEFAULT_API_KEY,
                 spt_api_version: str = DEFAULT_SPT_API_VERSION) -> None:
        self.api_key = api_key
        self.spt_api_version = spt_api_version
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._webhook_target: tuple[str, str] | None = None
        self._webhook_queue: queue.Queue[tuple[str, JSONDict] | None] = queue.Queue()
        self._webhook_thread: threading.Thread | None = None
        self.reset()

    # ----------------------------------------------------------------- lifecycle

    def start(self, port: int = 0) -> FakeStripe:
        """Start serving on ``127.0.0.1:port`` (0: an ephemeral port) in a daemon
        thread; returns self.

        :raises OSError: the port is taken.
        """
        if self._server is not None:
            return self
        self._stopping.clear()
        server = make_server("127.0.0.1", port, self._wsgi, threaded=True,
                             request_handler=_QuietHandler)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="FakeStripe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the server; interrupts ``"slow"`` sleeps; turns :meth:`auto_webhooks` off."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self._webhook_target = None
        if self._webhook_thread is not None:
            self._webhook_queue.put(None)
            self._webhook_thread.join(5)
            self._webhook_thread = None

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base address for ``StripeClient(base_addresses={"api": fake.url})``,
        e.g. ``"http://127.0.0.1:54321"``."""
        if self._server is None:
            raise RuntimeError("FakeStripe is not running; call start()")
        return f"http://127.0.0.1:{self._server.server_port}"

    def reset(self) -> None:
        """Forget all objects, saved idempotent results, faults and logs."""
        with self._lock:
            self._payment_intents: dict[str, JSONDict] = {}
            self._charges: dict[str, JSONDict] = {}
            self._payment_methods: dict[str, JSONDict] = {}
            self._refunds: dict[str, JSONDict] = {}
            self._tokens: dict[str, JSONDict] = {}
            self._token_pm: dict[str, str] = {}  # spt id -> pm_card_* name
            self._pi_token: dict[str, str] = {}  # charged PI id -> spt id
            self._charged: set[str] = set()  # PIs that authorized or captured money
            self._idempotency: dict[tuple[str, str], _IdempotencyEntry] = {}
            self._faults: list[_Fault] = []
            self._requests: list[RecordedRequest] = []
            self._wire: list[WireRequest] = []
            self._webhook_log: list[WebhookDelivery] = []
            self._server_errors: list[BaseException] = []
            self._clock_offset = 0.0

    # ----------------------------------------------------------------- test controls

    def fail_next(self, kind: FaultKind, *, count: int = 1, path_prefix: str | None = None,
                  seconds: float = 2.0) -> None:
        """Inject a fault into the next ``count`` requests whose path starts with
        ``path_prefix`` (any request when ``None``) and that pass authentication (and, for
        the ``*_after`` kinds and ``"slow"``, parameter validation). Faults queue up in order:

        * ``"500_before"``: 500 ``api_error``; nothing executed, nothing saved.
        * ``"500_after"``: executed, then 500 ``api_error`` (``Stripe-Should-Retry: false``),
          saved under the idempotency key, so the same key replays the 500.
        * ``"429"``: 429 rate limit; nothing executed, nothing saved.
        * ``"drop_after"``: executed and saved, then the TCP connection is closed without a
          response (the SDK sees ``APIConnectionError``).
        * ``"slow"``: executed, then the answer waits ``seconds`` (while the idempotency key
          is still "in flight", so a concurrent duplicate gets 409).
        """
        if kind not in _FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {_FAULT_KINDS}")
        if count < 1:
            raise ValueError("count must be >= 1")
        with self._lock:
            self._faults.append(_Fault(kind, count, path_prefix, seconds))

    def advance_clock(self, seconds: float) -> None:
        """Move the fake's clock forward (token expiry, ``created`` stamps)."""
        with self._lock:
            self._clock_offset += seconds

    def now(self) -> int:
        """The fake's current Unix time in seconds."""
        return int(time.time() + self._clock_offset)

    # ----------------------------------------------------------------- inspection

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in order: ``(method, path, idempotency_key, params)``."""
        with self._lock:
            return list(self._requests)

    @property
    def wire_requests(self) -> list[WireRequest]:
        """Every request received, undecoded (exact body and headers)."""
        with self._lock:
            return list(self._wire)

    @property
    def payment_intents(self) -> dict[str, JSONDict]:
        """PaymentIntent objects by id (copies)."""
        with self._lock:
            return copy.deepcopy(self._payment_intents)

    @property
    def refunds(self) -> dict[str, JSONDict]:
        """Refund objects by id (copies)."""
        with self._lock:
            return copy.deepcopy(self._refunds)

    @property
    def granted_tokens(self) -> dict[str, JSONDict]:
        """``shared_payment.granted_token`` objects by id (copies)."""
        with self._lock:
            return {k: self._token_view(v) for k, v in self._tokens.items()}

    @property
    def webhook_log(self) -> list[WebhookDelivery]:
        """Every webhook sent by :meth:`send_webhook` or :meth:`auto_webhooks`."""
        with self._lock:
            return list(self._webhook_log)

    @property
    def server_errors(self) -> list[BaseException]:
        """Unexpected exceptions inside the fake (answered as 500); should stay empty."""
        with self._lock:
            return list(self._server_errors)

    def charges_count(self) -> int:
        """Number of PaymentIntents that authorized or captured money (a later cancel or
        refund does not lower it). Idempotent replays do not count again."""
        with self._lock:
            return len(self._charged)

    # ----------------------------------------------------------------- webhooks

    def send_webhook(self, url: str, event_type: str, data_object: JSONDict, *, secret: str,
                     api_version: str | None = None, timeout: float = 10.0) -> WebhookDelivery:
        """POST a signed Stripe ``event`` (``{id: "evt_…", object: "event", type, created,
        api_version, livemode: false, data: {object: data_object}}``, JSON indented like
        Stripe's) to ``url`` with ``Stripe-Signature`` computed with ``secret`` (a
        ``whsec_…`` string). Never raises for HTTP problems: see the returned delivery,
        also appended to :attr:`webhook_log`."""
        event = {
            "id": _new_id("evt"), "object": "event",
            "api_version": api_version or self.spt_api_version,
            "created": self.now(), "livemode": False, "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type, "data": {"object": data_object},
        }
        payload = json.dumps(event, indent=2)
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                   "Stripe-Signature": stripe_signature_header(payload, secret)}
        try:
            response = requests.post(url, data=payload.encode("utf-8"), headers=headers,
                                     timeout=timeout)
            delivery = WebhookDelivery(url, event, response.status_code, None)
        except requests.RequestException as exc:
            delivery = WebhookDelivery(url, event, None, repr(exc))
        with self._lock:
            self._webhook_log.append(delivery)
        return delivery

    def auto_webhooks(self, url: str | None, secret: str = "") -> None:
        """From now on, send events to ``url`` (from a background thread, in order) after
        each action: ``payment_intent.succeeded``, ``payment_intent.amount_capturable_updated``,
        ``payment_intent.payment_failed``, ``payment_intent.requires_action``,
        ``payment_intent.canceled``, ``charge.refunded``, ``refund.created`` and
        ``shared_payment.granted_token.used``. ``None`` turns this off."""
        with self._lock:
            self._webhook_target = None if url is None else (url, secret)
            if url is not None and self._webhook_thread is None:
                self._webhook_thread = threading.Thread(
                    target=self._webhook_worker, name="FakeStripe-webhooks", daemon=True)
                self._webhook_thread.start()

    def flush_webhooks(self, timeout: float = 10.0) -> None:
        """Wait until every automatic webhook queued so far has been sent."""
        deadline = time.monotonic() + timeout
        while self._webhook_queue.unfinished_tasks:
            if time.monotonic() > deadline:
                raise TimeoutError("webhooks still queued")
            time.sleep(0.01)

    def _webhook_worker(self) -> None:
        while True:
            item = self._webhook_queue.get()
            try:
                if item is None:
                    return
                target = self._webhook_target
                if target is not None:
                    self.send_webhook(target[0], item[0], item[1], secret=target[1])
            finally:
                self._webhook_queue.task_done()

    def _emit(self, event_type: str, obj: JSONDict) -> None:
        if self._webhook_target is not None:
            self._webhook_queue.put((event_type, copy.deepcopy(obj)))

    # ----------------------------------------------------------------- HTTP plumbing

    def _wsgi(self, environ: WSGIEnvironment, start_response: StartResponse) -> t.Iterable[bytes]:
        request = Request(environ)
        try:
            result = self._handle(request)
        except _DropConnection:
            drop_connection(environ, "FakeStripe drop_after fault")
        headers = {"Stripe-Version": request.headers.get("Stripe-Version", ACCOUNT_API_VERSION),
                   **result.headers}
        if request.method == "POST" and "Idempotency-Key" in request.headers:
            headers["Idempotency-Key"] = request.headers["Idempotency-Key"]
        response = Response(json.dumps(result.body, indent=2), result.status, headers,
                            mimetype="application/json")
        return response(environ, start_response)

    def _handle(self, request: Request) -> _Result:
        method, path = request.method, request.path
        raw = (request.get_data(as_text=True) if method == "POST"
               else request.query_string.decode("latin-1"))
        pairs = urllib.parse.parse_qsl(raw, keep_blank_values=True)
        try:
            endpoint, args = _URLS.bind("fake").match(path, method)
        except HTTPException:
            endpoint, args = None, {}
        decode_error: _StripeError | None = None
        try:
            params = _decode_form(pairs)
        except _StripeError as exc:
            params, decode_error = dict(pairs), exc
        schema = None if endpoint is None else _SCHEMAS.get(endpoint, _GET_SCHEMA)
        if schema is not None and decode_error is None:
            params = _coerce(params, schema)
        key = request.headers.get("Idempotency-Key")
        with self._lock:
            self._requests.append(RecordedRequest(method, path, key, params))
            self._wire.append(WireRequest(method, path, request.query_string.decode("latin-1"),
                                          dict(request.headers), raw if method == "POST" else ""))
        request_id = _new_id("req")
        try:
            api_key = self._authenticate(request)
            if endpoint is None:
                raise _StripeError(404, f"Unrecognized request URL ({method}: {path}). Please see "
                                        "https://stripe.com/docs or we can help at "
                                        "https://support.stripe.com/.", saved=False)
            fault = self._take_fault(path, ("429", "500_before"))
            if fault is not None and fault.kind == "429":
                raise _StripeError(429, "Request rate limit exceeded. Learn more about rate "
                                        "limits here https://stripe.com/docs/rate-limits.",
                                   code="rate_limit", saved=False)
            if fault is not None and fault.kind == "500_before":
                raise _StripeError(500, "An unknown error occurred (FakeStripe fault 500_before).",
                                   type="api_error", saved=False)
            if decode_error is not None:
                raise decode_error
            invalid = _validation_error(_VALIDATORS.get(endpoint, _GET_VALIDATOR), params)
            if invalid is not None:
                raise invalid
            self._check_version(endpoint, request, params)
        except _StripeError as exc:
            return _Result(exc.status, exc.body, {"Request-Id": request_id, **exc.headers}, False)
        fault = self._take_fault(path, ("500_after", "drop_after", "slow"))

        entry: _IdempotencyEntry | None = None
        answer: _Result | None = None  # replay, 409 or idempotency_error: no execution
        scope = (api_key, key) if method == "POST" and key else None
        if scope is not None:
            fingerprint = json.dumps([method, path, params], sort_keys=True)
            with self._lock:
                found = self._idempotency.get(scope)
                if found is None:
                    entry = self._idempotency[scope] = _IdempotencyEntry(fingerprint, request_id)
                elif found.result is None:
                    answer = self._error_result(request_id, _StripeError(
                        409, "There is currently another in-progress request using this "
                             f"Idempotent Key (that probably means you submitted twice, and the "
                             f"other request is still going through): {key}. Please try again "
                             "later.", code="idempotency_key_in_use"))
                elif found.fingerprint != fingerprint:
                    answer = self._error_result(request_id, _StripeError(
                        400, "Keys for idempotent requests can only be used with the same "
                             "parameters they were first used with. Try using a key other than "
                             f"'{key}' if you meant to execute a different request.",
                        type="idempotency_error"))
                else:
                    stored = found.result
                    answer = _Result(stored.status, stored.body, {
                        **stored.headers, "Request-Id": request_id,
                        "Idempotent-Replayed": "true", "Original-Request": found.request_id})
        try:
            if answer is not None:
                result = answer
            else:
                result = self._execute(endpoint, args, params, request, request_id)
            if fault is not None and fault.kind == "500_after":
                result = self._error_result(request_id, _StripeError(
                    500, "An unknown error occurred (FakeStripe fault 500_after).",
                    type="api_error", headers={"Stripe-Should-Retry": "false"}))
            if fault is not None and fault.kind == "slow":
                self._stopping.wait(fault.seconds)
            if entry is not None and scope is not None:
                with self._lock:
                    if result.saved:
                        entry.result = result
                    else:
                        del self._idempotency[scope]
                entry = None
            if fault is not None and fault.kind == "drop_after":
                raise _DropConnection
            return result
        finally:
            if entry is not None and scope is not None:  # unexpected failure: forget the key
                with self._lock:
                    self._idempotency.pop(scope, None)

    @staticmethod
    def _error_result(request_id: str, exc: _StripeError) -> _Result:
        return _Result(exc.status, exc.body, {"Request-Id": request_id, **exc.headers}, exc.saved)

    def _authenticate(self, request: Request) -> str:
        auth = request.authorization
        given = None
        if auth is not None:
            given = auth.token if auth.type == "bearer" else auth.username
        if not given:
            raise _StripeError(401, "You did not provide an API key. You need to provide your "
                                    "API key in the Authorization header, using Bearer auth "
                                    "(e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
                               saved=False, headers={"WWW-Authenticate": 'Bearer realm="Stripe"'})
        if not hmac.compare_digest(given.encode(), self.api_key.encode()):
            raise _StripeError(401, f"Invalid API Key provided: {given[:8]}****{given[-4:]}",
                               saved=False, headers={"WWW-Authenticate": 'Bearer realm="Stripe"'})
        return given

    def _take_fault(self, path: str, kinds: tuple[str, ...]) -> _Fault | None:
        """Consume the first fault armed for ``path`` if it is one of ``kinds`` (the faults
        of this stage of the request: before or after validation)."""
        with self._lock:
            fault = next((f for f in self._faults
                          if f.path_prefix is None or path.startswith(f.path_prefix)), None)
            if fault is None or fault.kind not in kinds:
                return None
            fault.count -= 1
            if fault.count == 0:
                self._faults.remove(fault)
            return fault

    def _check_version(self, endpoint: str, request: Request, params: JSONDict) -> None:
        if endpoint in _PREVIEW_ENDPOINTS:
            what = "Shared payment token endpoints"
        elif endpoint == "pi_create" and "shared_payment_granted_token" in (
                params.get("payment_method_data") or {}):
            what = f"The parameter {SPT_PARAM}"
        else:
            return
        got = request.headers.get("Stripe-Version")
        if got != self.spt_api_version:
            raise _StripeError(
                400, f"{what} need the preview API version: send the header 'Stripe-Version: "
                     f"{self.spt_api_version}' (got {got!r}). With stripe-python pass "
                     f"options={{'stripe_version': ...}} (or stripe_version=... to raw_request).",
                saved=False)

    def _execute(self, endpoint: str, args: t.Mapping[str, str], params: JSONDict, request: Request,
                 request_id: str) -> _Result:
        handler = getattr(self, "_do_" + endpoint)
        params = copy.deepcopy(params)  # objects must not share dicts with self.requests
        try:
            with self._lock:
                status, body = handler(params, **args)
        except _StripeError as exc:
            return self._error_result(request_id, exc)
        except Exception as exc:  # a bug in the fake: answer like Stripe, keep it for tests
            with self._lock:
                self._server_errors.append(exc)
            return self._error_result(request_id, _StripeError(
                500, f"FakeStripe internal error: {exc!r}", type="api_error"))
        return _Result(status, body, {"Request-Id": request_id})

    # ----------------------------------------------------------------- objects

    def _pi(self, pi_id: str) -> JSONDict:
        pi = self._payment_intents.get(pi_id)
        if pi is None:
            raise _StripeError(404, f"No such payment_intent: '{pi_id}'", code="resource_missing",
                               param="intent")
        return pi

    def _token(self, spt: str, param: str = "id", status: int = 404) -> JSONDict:
        token = self._tokens.get(spt)
        if token is None:
            raise _StripeError(status, f"No such shared_payment.granted_token: '{spt}'",
                               code="resource_missing", param=param)
        expires_at = token["usage_limits"].get("expires_at")
        if token["deactivated_at"] is None and expires_at is not None and expires_at <= self.now():
            token.update(deactivated_at=expires_at, deactivated_reason="expired")
        return token

    @staticmethod
    def _token_view(token: JSONDict) -> JSONDict:
        return copy.deepcopy(token)

    def _expanded(self, obj: JSONDict, params: JSONDict) -> JSONDict:
        out = copy.deepcopy(obj)
        for path in params.get("expand") or []:
            if out.get("object") == "payment_intent" and path == "latest_charge":
                out["latest_charge"] = copy.deepcopy(self._charges.get(obj["latest_charge"] or ""))
            elif out.get("object") == "payment_intent" and path == "payment_method":
                out["payment_method"] = copy.deepcopy(
                    self._payment_methods.get(obj["payment_method"] or ""))
            else:
                raise _StripeError(400, f"This property cannot be expanded ({path}).",
                                   param="expand")
        return out

    def _new_charge(self, pi: JSONDict, pm: JSONDict, *, paid: bool, captured: bool,
                    failure: SandboxCard | None = None) -> JSONDict:
        charge = {
            "id": _new_id("ch"), "object": "charge", "amount": pi["amount"],
            "amount_captured": pi["amount"] if captured else 0, "amount_refunded": 0,
            "captured": captured, "created": self.now(), "currency": pi["currency"],
            "failure_code": failure.code if failure else None,
            "failure_message": failure.message if failure else None,
            "livemode": False, "metadata": dict(pi["metadata"]),
            "outcome": {"type": "issuer_declined" if failure else "authorized",
                        "network_status": ("declined_by_network" if failure
                                           else "approved_by_network"),
                        "reason": failure.decline_code if failure else None,
                        "seller_message": "The bank did not return any further details with "
                                          "this decline." if failure else "Payment complete."},
            "paid": paid, "payment_intent": pi["id"], "payment_method": pm["id"],
            "refunded": False, "status": "failed" if failure else "succeeded",
        }
        self._charges[charge["id"]] = charge
        return charge

    def _capture_money(self, pi: JSONDict, amount: int) -> None:
        pi.update(status="succeeded", amount_received=amount, amount_capturable=0)
        charge = self._charges[pi["latest_charge"]]
        charge.update(captured=True, amount_captured=amount)
        spt = self._pi_token.get(pi["id"])
        if spt is not None:
            self._tokens[spt]["usage_details"]["amount_captured"]["value"] += amount
        self._emit("payment_intent.succeeded", pi)

    # ----------------------------------------------------------------- endpoints

    def _do_token_create(self, params: JSONDict) -> tuple[int, JSONDict]:
        pm_name = params["payment_method"]
        card = TEST_PAYMENT_METHODS.get(pm_name)
        if card is None:
            raise _StripeError(400, f"No such PaymentMethod: '{pm_name}' (FakeStripe knows "
                                    f"{', '.join(TEST_PAYMENT_METHODS)})",
                               code="resource_missing", param="payment_method")
        limits = params["usage_limits"]
        expires_at = limits.get("expires_at")
        if expires_at is not None and expires_at <= self.now():
            raise _StripeError(400, "usage_limits[expires_at] must be in the future.",
                               code="parameter_invalid_integer", param="usage_limits[expires_at]")
        currency = limits["currency"].lower()
        fraud_score = 80 if card.decline_code in ("fraudulent", "stolen_card", "lost_card") else 5
        token: JSONDict = {
            "id": _new_id("spt"), "object": "shared_payment.granted_token",
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
            raise _StripeError(400, f"The SharedPaymentGrantedToken {spt} {problem}.",
                               code=TOKEN_INVALID_CODE, param=SPT_PARAM)
        return token

    def _do_pi_create(self, params: JSONDict) -> tuple[int, JSONDict]:
        amount, currency = params["amount"], params["currency"].lower()
        refused = _amount_error(amount, currency)
        if refused is not None:
            raise refused
        pmd = params.get("payment_method_data")
        spt = (pmd or {}).get("shared_payment_granted_token")
        if pmd is not None and spt is None:
            raise _StripeError(400, "FakeStripe only supports payment_method_data with "
                                    "shared_payment_granted_token.", param="payment_method_data")
        token = self._usable_token(spt, amount, currency) if spt is not None else None
        confirm = params.get("confirm", False)
        if confirm and token is None:
            raise _StripeError(400, "You cannot confirm this PaymentIntent because it's missing a "
                                    "payment method.", code="payment_intent_unexpected_state")
        pi_id = _new_id("pi")
        pi: JSONDict = {
            "id": pi_id, "object": "payment_intent", "amount": amount,
            "amount_capturable": 0, "amount_received": 0,
            "automatic_payment_methods": params.get("automatic_payment_methods"),
            "canceled_at": None, "cancellation_reason": None,
            "capture_method": params.get("capture_method", "automatic"),
            "client_secret": f"{pi_id}_secret_{uuid.uuid4().hex[:24]}",
            "confirmation_method": "automatic", "created": self.now(), "currency": currency,
            "customer": params.get("customer"), "description": params.get("description"),
            "last_payment_error": None, "latest_charge": None, "livemode": False,
            "metadata": params.get("metadata") or {}, "next_action": None,
            "payment_method": None, "payment_method_types": ["card"],
            "receipt_email": params.get("receipt_email"), "shipping": params.get("shipping"),
            "status": "requires_confirmation" if token else "requires_payment_method",
        }
        self._payment_intents[pi_id] = pi
        if token is None or not confirm:
            return 200, self._expanded(pi, params)

        card = TEST_PAYMENT_METHODS[self._token_pm[token["id"]]]
        details = token["payment_method_details"]
        pm = {"id": _new_id("pm"), "object": "payment_method", "type": "card",
              "billing_details": copy.deepcopy(details["billing_details"]),
              "card": copy.deepcopy(details["card"]), "created": self.now(), "customer": None,
              "livemode": False, "metadata": {}}
        self._payment_methods[pm["id"]] = pm
        pi["payment_method"] = pm["id"]
        if card.outcome == "requires_action" and params.get("error_on_requires_action"):
            card = SandboxCard(card.brand, card.last4, "declined", "authentication_required",
                                     "authentication_required",
                                     "Your card was declined. This transaction requires "
                                     "authentication.")
        if card.outcome == "declined":
            charge = self._new_charge(pi, pm, paid=False, captured=False, failure=card)
            error = {"type": "card_error", "code": card.code, "decline_code": card.decline_code,
                     "message": card.message, "charge": charge["id"],
                     "doc_url": "https://stripe.com/docs/error-codes/"
                                + str(card.code).replace("_", "-"),
                     "payment_method": copy.deepcopy(pm)}
            pi.update(status="requires_payment_method", latest_charge=charge["id"],
                      last_payment_error=error, payment_method=None)
            self._emit("payment_intent.payment_failed", pi)
            raise _StripeError(402, str(card.message), type="card_error", code=card.code,
                               decline_code=card.decline_code, charge=charge["id"],
                               payment_intent=copy.deepcopy(pi), payment_method=copy.deepcopy(pm))
        if card.outcome == "requires_action":
            pi.update(status="requires_action", next_action={
                "type": "use_stripe_sdk",
                "use_stripe_sdk": {"type": "three_d_secure_redirect",
                                   "stripe_js": "https://hooks.stripe.com/fake/3ds",
                                   "source": _new_id("src")}})
            self._emit("payment_intent.requires_action", pi)
            return 200, self._expanded(pi, params)

        manual = pi["capture_method"] == "manual"
        charge = self._new_charge(pi, pm, paid=True, captured=not manual)
        pi["latest_charge"] = charge["id"]
        self._pi_token[pi_id] = token["id"]
        self._charged.add(pi_id)
        token.update(deactivated_at=self.now(), deactivated_reason="consumed")
        self._emit("shared_payment.granted_token.used", token)
        if manual:
            pi.update(status="requires_capture", amount_capturable=amount)
            self._emit("payment_intent.amount_capturable_updated", pi)
        else:
            self._capture_money(pi, amount)
        return 200, self._expanded(pi, params)

    def _do_pi_retrieve(self, params: JSONDict, pi_id: str) -> tuple[int, JSONDict]:
        return 200, self._expanded(self._pi(pi_id), params)

    def _do_pi_capture(self, params: JSONDict, pi_id: str) -> tuple[int, JSONDict]:
        intent = self._pi(pi_id)
        if intent["status"] != "requires_capture":
            raise _StripeError(400, f"This PaymentIntent could not be captured because it has a "
                                    f"status of {intent['status']}. Only a PaymentIntent with one "
                                    "of the following statuses may be captured: requires_capture.",
                               code="payment_intent_unexpected_state")
        amount: int = params.get("amount_to_capture") or intent["amount_capturable"]
        refused = _unit_error(amount, intent["currency"], "amount_to_capture")
        if refused is not None:
            raise refused
        if amount > intent["amount_capturable"]:
            raise _StripeError(400, f"The amount to capture ({amount}) must be less than or equal "
                                    f"to the amount capturable ({intent['amount_capturable']}).",
                               code="amount_too_large", param="amount_to_capture")
        intent["metadata"].update(params.get("metadata") or {})
        self._capture_money(intent, amount)
        return 200, self._expanded(intent, params)

    def _do_pi_cancel(self, params: JSONDict, pi_id: str) -> tuple[int, JSONDict]:
        intent = self._pi(pi_id)
        if intent["status"] not in _CANCELABLE:
            raise _StripeError(400, f"You cannot cancel this PaymentIntent because it has a status "
                                    f"of {intent['status']}. Only a PaymentIntent with one of the "
                                    f"following statuses may be canceled: {', '.join(_CANCELABLE)}.",
                               code="payment_intent_unexpected_state")
        intent.update(status="canceled", canceled_at=self.now(), amount_capturable=0,
                      next_action=None,
                      cancellation_reason=params.get("cancellation_reason"))
        self._emit("payment_intent.canceled", intent)
        return 200, self._expanded(intent, params)

    def _do_pi_search(self, params: JSONDict) -> tuple[int, JSONDict]:
        match = _SEARCH_QUERY.match(params["query"])
        if match is None:
            raise _StripeError(400, "FakeStripe only supports search queries of the form "
                                    "metadata['key']:'value'.", param="query")
        key, value = match.group(2), match.group(4)
        found = [pi for pi in reversed(list(self._payment_intents.values()))
                 if pi["metadata"].get(key) == value]
        found.sort(key=lambda pi: -pi["created"])
        limit = params.get("limit", 10)
        return 200, {"object": "search_result", "url": "/v1/payment_intents/search",
                     "has_more": len(found) > limit, "next_page": None,
                     "data": [self._expanded(pi, params) for pi in found[:limit]]}

    def _do_refund_create(self, params: JSONDict) -> tuple[int, JSONDict]:
        if "payment_intent" in params:
            intent = self._pi(params["payment_intent"])
        elif "charge" in params:
            charge = self._charges.get(params["charge"])
            if charge is None:
                raise _StripeError(400, f"No such charge: '{params['charge']}'",
                                   code="resource_missing", param="charge")
            intent = self._pi(charge["payment_intent"])
        else:
            raise _StripeError(400, "One of the following params should be provided for this "
                                    "request: payment_intent or charge.",
                               code="parameter_missing", param="payment_intent")
        if intent["amount_received"] <= 0:
            raise _StripeError(400, f"This PaymentIntent ({intent['id']}) does not have a "
                                    "successful charge to refund.", code="charge_not_refundable",
                               param="payment_intent")
        charge = self._charges[intent["latest_charge"]]
        remaining = intent["amount_received"] - charge["amount_refunded"]
        if remaining <= 0:
            raise _StripeError(400, f"Charge {charge['id']} has already been refunded.",
                               code="charge_already_refunded")
        amount = params.get("amount", remaining)
        refused = _unit_error(amount, intent["currency"])
        if refused is not None:
            raise refused
        if amount > remaining:
            raise _StripeError(400, f"Refund amount ({amount}) is greater than unrefunded amount "
                                    f"on charge ({remaining})", code="amount_too_large",
                               param="amount")
        refund = {"id": _new_id("re"), "object": "refund", "amount": amount,
                  "balance_transaction": None, "charge": charge["id"], "created": self.now(),
                  "currency": intent["currency"], "metadata": params.get("metadata") or {},
                  "payment_intent": intent["id"], "reason": params.get("reason"),
                  "status": "succeeded"}
        self._refunds[refund["id"]] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= intent["amount_received"]
        self._emit("refund.created", refund)
        self._emit("charge.refunded", charge)
        return 200, copy.deepcopy(refund)

    def _do_refund_retrieve(self, params: JSONDict, refund_id: str) -> tuple[int, JSONDict]:
        refund = self._refunds.get(refund_id)
        if refund is None:
            raise _StripeError(404, f"No such refund: '{refund_id}'", code="resource_missing", param="id")
        return 200, self._expanded(refund, params)

    def _do_charge_retrieve(self, params: JSONDict, charge_id: str) -> tuple[int, JSONDict]:
        charge = self._charges.get(charge_id)
        if charge is None:
            raise _StripeError(404, f"No such charge: '{charge_id}'", code="resource_missing",
                               param="id")
        return 200, self._expanded(charge, params)


_shared: FakeStripe | None = None


def ensure_fake_stripe(port: int, *, api_key: str = DEFAULT_API_KEY) -> str:
    """Serve one :class:`FakeStripe` on ``127.0.0.1:port`` for this machine and
    return its URL: when a fake Stripe already answers there (e.g. the running
    example app, while a CLI command of the same app runs), use it; otherwise
    start one in this process.

    :raises RuntimeError: the port is taken by something that is not a fake Stripe.
    """
    global _shared
    if _shared is not None:
        return _shared.url
    url = f"http://127.0.0.1:{port}"
    try:
        probe = requests.get(f"{url}/v1/payment_intents/pi_probe", timeout=2,
                             headers={"Authorization": f"Bearer {api_key}"})
        if "error" in probe.json():
            return url
        raise RuntimeError(f"port {port} is taken by something that is not a fake Stripe")
    except requests.ConnectionError:
        pass
    except (requests.RequestException, ValueError):
        raise RuntimeError(f"port {port} is taken by something that is not a fake Stripe") from None
    _shared = FakeStripe(api_key=api_key).start(port)
    return _shared.url


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
