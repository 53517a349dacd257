"""The request schemas and the URL map of the fake Stripe API.

Every POST body is checked against a hand-written JSON Schema with
``additionalProperties: false``, so an unknown or misspelt parameter fails like
on Stripe, naming the ``param``.
"""

from __future__ import annotations

import typing as t

import jsonschema  # type: ignore[import-untyped]
from werkzeug.routing import Map
from werkzeug.routing import Rule

JSONDict = dict[str, t.Any]

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


SCHEMAS: dict[str, JSONDict] = {
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
GET_SCHEMA = _obj({"expand": _EXPAND})
VALIDATORS = {name: jsonschema.Draft202012Validator(schema) for name, schema in SCHEMAS.items()}
GET_VALIDATOR = jsonschema.Draft202012Validator(GET_SCHEMA)

URLS = Map([
    Rule("/v1/account", methods=["GET"], endpoint="account_retrieve"),
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
PREVIEW_ENDPOINTS = {"token_retrieve", "token_create", "token_revoke"}
_CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation",
               "requires_action", "processing")
