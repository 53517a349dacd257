"""ACP 2026-04-17 request schemas (marshmallow): request bodies to core inputs.

Requests are validated against the shapes of
``schema.agentic_checkout.json`` 2026-04-17 for every field this merchant
uses; unknown fields are ignored (forward compatibility), ``null`` is refused
(no schema admits it). Deliberate leniencies, documented in the README:

- ``line_items[].quantity`` (integer >= 1, default 1) is accepted although the
  2026-04-17 ``Item`` forgot it (spec issue #264).
- ``intent_trace.reason_code`` outside the enum is read as ``other`` (intent
  traces RFC §5).
- ``selected_fulfillment_options[].item_ids`` may hold item ids or line item
  ids (spec defect #7).
"""

from __future__ import annotations

import typing as t

from iso4217 import Currency
from marshmallow import EXCLUDE
from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import post_load
from marshmallow import validate
from marshmallow import validates

from ...inputs import CancelInput
from ...inputs import CompleteInput
from ...inputs import CreateInput
from ...inputs import UpdateInput
from ...models import LineItemRequest
from ...models import SelectedFulfillmentOption

_REASON_CODES = (
    "price_sensitivity", "shipping_cost", "shipping_speed", "product_fit", "trust_security",
    "returns_policy", "payment_options", "comparison", "timing_deferred", "other",
)


class StrictInteger(fields.Integer):
    """A JSON Schema ``integer``: a number with no fractional part (``2`` or
    ``2.0``); strings, booleans and ``2.5`` are refused."""

    def __init__(self, **kwargs: t.Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _validated(self, value: t.Any) -> int:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return super()._validated(value)


class _Base(Schema):
    class Meta:
        unknown = EXCLUDE


class _NonEmpty(fields.String):
    def __init__(self, **kwargs: t.Any) -> None:
        super().__init__(validate=validate.Length(min=1, max=kwargs.pop("max", 512)), **kwargs)


class ItemSchema(_Base):
    id = _NonEmpty(required=True, max=256)
    quantity = StrictInteger(load_default=1, validate=validate.Range(min=1, max=10_000))


class AddressSchema(_Base):
    name = _NonEmpty(required=True, max=256)
    line_one = _NonEmpty(required=True)
    line_two = fields.String(validate=validate.Length(max=512))
    city = _NonEmpty(required=True)
    state = fields.String(required=True, validate=validate.Length(max=512))  # "" where there are none
    country = fields.String(required=True, validate=validate.Regexp(
        r"^[A-Za-z]{2}$", error="Must be an ISO 3166-1 alpha-2 country code."))
    postal_code = _NonEmpty(required=True, max=20)
    company = fields.String(validate=validate.Length(max=256))

    @post_load
    def _upper_country(self, data: dict[str, t.Any], **kwargs: t.Any) -> dict[str, t.Any]:
        data["country"] = data["country"].upper()
        return data


class BuyerSchema(_Base):
    email = fields.Email(required=True)
    first_name = fields.String(validate=validate.Length(max=256))
    last_name = fields.String(validate=validate.Length(max=256))
    full_name = fields.String(validate=validate.Length(max=512))
    phone_number = fields.String(validate=validate.Length(max=32))
    customer_id = fields.String(validate=validate.Length(max=256))
    account_type = fields.String(validate=validate.OneOf(["guest", "registered", "business"]))


class FulfillmentDetailsSchema(_Base):
    name = fields.String(validate=validate.Length(max=256))
    phone_number = fields.String(validate=validate.Length(max=32))
    email = fields.Email()
    address = fields.Nested(AddressSchema)


class InterventionsSchema(_Base):
    supported = fields.List(fields.String())


class CapabilitiesSchema(_Base):
    interventions = fields.Nested(InterventionsSchema)
    extensions = fields.List(fields.Raw())


class SelectedFulfillmentOptionSchema(_Base):
    type = fields.String(required=True, validate=validate.OneOf(
        ["shipping", "digital", "pickup", "local_delivery"]))
    option_id = _NonEmpty(required=True)
    item_ids = fields.List(_NonEmpty(), load_default=list)


def _line_items(data: list[dict[str, t.Any]]) -> tuple[LineItemRequest, ...]:
    seen: dict[str, int] = {}
    for index, item in enumerate(data):
        if item["id"] in seen:
            raise ValidationError({index: {"id": [
                f"Duplicate item id; it is already line_items[{seen[item['id']]}]. "
                "Send one entry with the total quantity."]}}, "line_items")
        seen[item["id"]] = index
    return tuple(LineItemRequest(id=i["id"], quantity=i["quantity"]) for i in data)


class CreateRequestSchema(_Base):
    line_items = fields.List(fields.Nested(ItemSchema), required=True,
                             validate=validate.Length(min=1, max=100))
    currency = fields.String(required=True)
    capabilities = fields.Nested(CapabilitiesSchema, required=True)
    buyer = fields.Nested(BuyerSchema)
    fulfillment_details = fields.Nested(FulfillmentDetailsSchema)
    locale = fields.String(validate=validate.Length(max=35))
    order_notes = fields.String(validate=validate.Length(max=5000))

    @validates("currency")
    def _currency(self, value: str, **kwargs: t.Any) -> None:
        if len(value) != 3 or not value.isalpha() or Currency.__members__.get(value.upper()) is None:
            raise ValidationError("Must be an ISO 4217 currency code, e.g. 'usd'.")

    @post_load
    def _make(self, data: dict[str, t.Any], **kwargs: t.Any) -> CreateInput:
        return CreateInput(
            currency=data["currency"].lower(),
            line_items=_line_items(data["line_items"]),
            capabilities=data["capabilities"],
            buyer=data.get("buyer"),
            fulfillment_details=data.get("fulfillment_details"),
            locale=data.get("locale"),
            order_notes=data.get("order_notes"),
        )


class UpdateRequestSchema(_Base):
    buyer = fields.Nested(BuyerSchema)
    line_items = fields.List(fields.Nested(ItemSchema), validate=validate.Length(min=1, max=100))
    fulfillment_details = fields.Nested(FulfillmentDetailsSchema)
    selected_fulfillment_options = fields.List(fields.Nested(SelectedFulfillmentOptionSchema))
    order_notes = fields.String(validate=validate.Length(max=5000))

    @post_load
    def _make(self, data: dict[str, t.Any], **kwargs: t.Any) -> UpdateInput:
        selected = data.get("selected_fulfillment_options")
        return UpdateInput(
            line_items=_line_items(data["line_items"]) if "line_items" in data else None,
            buyer=data.get("buyer"),
            fulfillment_details=data.get("fulfillment_details"),
            selected_fulfillment_options=None if selected is None else tuple(
                SelectedFulfillmentOption(type=s["type"], option_id=s["option_id"],
                                          item_ids=tuple(s["item_ids"])) for s in selected),
            order_notes=data.get("order_notes"),
        )


class CredentialSchema(_Base):
    type = _NonEmpty(required=True)
    token = _NonEmpty(required=True, max=4096)


class InstrumentSchema(_Base):
    type = _NonEmpty(required=True)
    credential = fields.Nested(CredentialSchema, required=True)


class PaymentDataSchema(_Base):
    handler_id = _NonEmpty(required=True)
    instrument = fields.Nested(InstrumentSchema, required=True)
    billing_address = fields.Nested(AddressSchema)


class CompleteRequestSchema(_Base):
    payment_data = fields.Nested(PaymentDataSchema, required=True)
    buyer = fields.Nested(BuyerSchema)
    order_notes = fields.String(validate=validate.Length(max=5000))

    @post_load
    def _make(self, data: dict[str, t.Any], **kwargs: t.Any) -> CompleteInput:
        payment = data["payment_data"]
        return CompleteInput(
            handler_id=payment["handler_id"],
            instrument_type=payment["instrument"]["type"],
            credential_type=payment["instrument"]["credential"]["type"],
            token=payment["instrument"]["credential"]["token"],
            billing_address=payment.get("billing_address"),
            buyer=data.get("buyer"),
            order_notes=data.get("order_notes"),
        )


class _FlatMetadata(fields.Field[dict[str, t.Any]]):
    """``IntentTrace.metadata``: a flat object of strings, numbers and booleans."""

    def _deserialize(self, value: t.Any, attr: str | None, data: t.Any,
                     **kwargs: t.Any) -> dict[str, t.Any]:
        if not isinstance(value, dict):
            raise ValidationError("Not a valid mapping type.")
        for key, item in value.items():
            if isinstance(item, (dict, list)) or item is None:
                raise ValidationError({key: ["Not a valid metadata value: use a string, number or boolean."]})
        return value


class IntentTraceSchema(_Base):
    reason_code = fields.String(required=True)
    trace_summary = fields.String(validate=validate.Length(max=500))
    metadata = _FlatMetadata()


class CancelRequestSchema(_Base):
    intent_trace = fields.Nested(IntentTraceSchema)

    @post_load
    def _make(self, data: dict[str, t.Any], **kwargs: t.Any) -> CancelInput:
        trace = data.get("intent_trace") or {}
        code = trace.get("reason_code")
        return CancelInput(
            reason_code=None if code is None else (code if code in _REASON_CODES else "other"),
            trace_summary=trace.get("trace_summary"),
        )


REQUEST_SCHEMAS: dict[str, type[Schema]] = {
    "create": CreateRequestSchema,
    "update": UpdateRequestSchema,
    "complete": CompleteRequestSchema,
    "cancel": CancelRequestSchema,
}
