"""What the fake Stripe API reads and writes on the wire: constants, request
records, Stripe-shaped errors, form decoding and parameter validation."""

from __future__ import annotations

import decimal
import hashlib
import hmac
import json
import re
import time
import typing as t
import uuid

from ....payments import stripe_amounts
from ....payments.base import format_minor

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


class RecordedRequest(t.NamedTuple):
    """One request as the fake understood it (``params`` decoded and coerced)."""

    method: str
    path: str
    idempotency_key: str | None
    params: JSONDict


class WireRequest(t.NamedTuple):
    """One request exactly as received: path, query string and body undecoded."""

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


# --------------------------------------------------------------------------- errors


class StripeError(Exception):
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


def unit_error(amount: int, currency: str, param: str = "amount") -> StripeError | None:
    """Stripe's answer to an ``amount`` of ``currency`` (Stripe units) that is not
    a whole number of the currency's units (ISK, UGX: a multiple of 100), else ``None``."""
    step = stripe_amounts.stripe_factor(currency)
    if amount % step == 0:
        return None
    return StripeError(400, f"Invalid amount. Currency {currency.upper()} has become effectively "
                            f"zero-decimal and charged amounts must be evenly divisible by {step}. See "
                            "https://stripe.com/docs/currencies#zero-decimal for more information.",
                       code="invalid_charge_amount", param=param, saved=False)


def amount_error(amount: int, currency: str) -> StripeError | None:
    """Stripe's answer to a PaymentIntent for ``amount`` (Stripe units) of
    ``currency`` that breaks its amount rules (see :mod:`flask_acp.testing.fakes.stripe`),
    else ``None``."""
    refused = unit_error(amount, currency)
    if refused is not None:
        return refused
    problem = stripe_amounts.amount_problem(stripe_amounts.from_stripe(amount, currency), currency)
    if problem is None or problem.limit is None:
        return None
    shown = f"{_SYMBOLS.get(currency, '')}{decimal.Decimal(format_minor(problem.limit, currency)):,}"
    if problem.code == "minimum_not_met":
        return StripeError(400, f"Amount must be at least {shown} {currency}",
                           code="amount_too_small", param="amount", saved=False)
    if problem.code == "maximum_exceeded":
        return StripeError(400, f"Amount must be no more than {shown}",
                           code="amount_too_large", param="amount", saved=False)
    return StripeError(400, f"Invalid amount: {currency} amounts must be a multiple of "
                            f"{problem.limit} (the last digit must be 0); {amount} is not.",
                       code="invalid_charge_amount", param="amount", saved=False)



class Result(t.NamedTuple):
    status: int
    body: JSONDict
    headers: dict[str, str]
    saved: bool = True



class IdempotencyEntry:
    def __init__(self, fingerprint: str, request_id: str) -> None:
        self.fingerprint = fingerprint
        self.request_id = request_id
        self.result: Result | None = None  # None while running



# --------------------------------------------------------------------------- form decoding

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def decode_form(pairs: list[tuple[str, str]]) -> JSONDict:
    """``a[b][c]=1&e[]=x&e[1]=y`` -> ``{"a": {"b": {"c": "1"}}, "e": {"0": "x", "1": "y"}}``.
    Lists stay digit-keyed dicts until :func:`_coerce` sees the schema."""
    root: JSONDict = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if match is None:
            raise StripeError(400, f"Invalid parameter name: {key}", param=key, saved=False)
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for part in parts[:-1]:
            child = node.setdefault(part or str(len(node)), {})
            if not isinstance(child, dict):
                raise StripeError(400, f"Invalid parameter: {key} conflicts with another "
                                       "parameter", param=key, saved=False)
            node = child
        last = parts[-1] or str(len(node))
        if isinstance(node.get(last), dict):
            raise StripeError(400, f"Invalid parameter: {key} conflicts with another parameter",
                              param=key, saved=False)
        node[last] = value
    return root


def coerce(value: t.Any, schema: JSONDict) -> t.Any:
    """Turn form strings into booleans, integers and lists where the schema says so."""
    kind = schema.get("type")
    if kind == "object" and isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        out = {}
        for key, item in value.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            out[key] = coerce(item, sub) if sub else item
        return out
    if kind == "object" and value == "":
        return {}  # Stripe: an empty string clears a hash such as metadata
    if kind == "array" and isinstance(value, dict) and all(k.isdigit() for k in value):
        return [coerce(value[k], schema.get("items", {})) for k in sorted(value, key=int)]
    if kind == "boolean" and value in ("true", "false"):
        return value == "true"
    if kind == "integer" and isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    return value


def _param(path: t.Iterable[t.Any]) -> str:
    parts = [str(p) for p in path]
    return parts[0] + "".join(f"[{p}]" for p in parts[1:]) if parts else ""


_PRIORITY = {"additionalProperties": 0, "type": 1, "required": 2}


def validation_error(validator: t.Any, params: JSONDict) -> StripeError | None:
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
        return StripeError(400, f"Received unknown parameter: {param}", code="parameter_unknown",
                           param=param, saved=False)
    if kind == "required":
        param = _param([*path, next(k for k in error.validator_value if k not in instance)])
        return StripeError(400, f"Missing required param: {param}.", code="parameter_missing",
                           param=param, saved=False)
    if "propertyNames" in error.schema_path:
        param = _param([*path, instance])
        return StripeError(400, f"Metadata keys can have up to 40 characters; {instance!r} has "
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
    return StripeError(400, message, code=code, param=param, saved=False)


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


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


