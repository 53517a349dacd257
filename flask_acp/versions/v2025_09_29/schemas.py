"""ACP 2025-09-29 request schemas (marshmallow): request bodies to core inputs.

Shapes of the as-published ``schema.agentic_checkout.json`` (the HEAD copy's
``quantity`` is invalid JSON Schema, see the README): ``items[] {id,
quantity}``, ``fulfillment_address``, ``fulfillment_option_id``, ``buyer
{first_name, last_name, email, phone_number}``, ``payment_data {token,
provider: "stripe", billing_address}``; cancel takes no body (one sent is
ignored). Unknown fields are ignored, as in every version.
"""

from __future__ import annotations

import typing as t

from marshmallow import Schema
from marshmallow import fields
from marshmallow import post_load
from marshmallow import validate

from ...inputs import CancelInput
from ...inputs import CompleteInput
from ...inputs import CreateInput
from ...inputs import UpdateInput
from ...models import SelectedFulfillmentOption
from ..v2026_04_17 import schemas as newer
from ..v2026_04_17.schemas import Base
from ..v2026_04_17.schemas import NonEmpty
from ..v2026_04_17.schemas import StrictInteger
from ..v2026_04_17.schemas import line_requests


class ItemSchema(Base):
    """``Item``: ``{id, quantity}``, both required (integer >= 1)."""

    id = NonEmpty(required=True, max=256)
    quantity = StrictInteger(required=True, validate=validate.Range(min=1, max=10_000))


class BuyerSchema(Base):
    """``Buyer`` before 2026-01-30: first and last name and email required."""

    first_name = NonEmpty(required=True, max=256)
    last_name = NonEmpty(required=True, max=256)
    email = fields.Email(required=True)
    phone_number = fields.String(validate=validate.Length(max=32))


class AddressSchema(newer.AddressSchema):
    """``Address`` without ``company`` (2026-04-17 added it)."""

    class Meta(newer.AddressSchema.Meta):
        exclude = ("company",)


def address_details(address: dict[str, t.Any] | None) -> dict[str, t.Any] | None:
    """A ``fulfillment_address`` as the core's fulfillment details."""
    return None if address is None else {"address": address}


class CreateRequestSchema(Base):
    items = fields.List(fields.Nested(ItemSchema), required=True, validate=validate.Length(min=1, max=100))
    buyer = fields.Nested(BuyerSchema)
    fulfillment_address = fields.Nested(AddressSchema)

    @post_load
    def _make(self, data: dict[str, t.Any], **kwargs: t.Any) -> CreateInput:
        return CreateInput(currency=None, line_items=line_requests(data["items"], "items"), capabilities={},
                           buyer=data.get("buyer"),
                           fulfillment_details=address_details(data.get("fulfillment_address")))


class UpdateRequestSchema(Base):
    items = fields.List(fields.Nested(ItemSchema), validate=validate.Length(min=1, max=100))
    buyer = fields.Nested(BuyerSchema)
    fulfillment_address = fields.Nested(AddressSchema)
    fulfillment_option_id = NonEmpty()

    @post_load
    def _make(self, data: dict[str, t.Any], **kwargs: t.Any) -> UpdateInput:
        option_id = data.get("fulfillment_option_id")
        return UpdateInput(
            line_items=line_requests(data["items"], "items") if "items" in data else None,
            buyer=data.get("buyer"),
            fulfillment_details=address_details(data.get("fulfillment_address")),
            selected_fulfillment_options=None if option_id is None else (
                SelectedFulfillmentOption(type=None, option_id=option_id),),
        )


class PaymentDataSchema(Base):
    token = newer.token_field()
    provider = fields.String(required=True, validate=validate.OneOf(["stripe"]))
    billing_address = fields.Nested(AddressSchema)


class CompleteRequestSchema(Base):
    payment_data = fields.Nested(PaymentDataSchema, required=True)
    buyer = fields.Nested(BuyerSchema)

    @post_load
    def _make(self, data: dict[str, t.Any], **kwargs: t.Any) -> CompleteInput:
        payment = data["payment_data"]
        return CompleteInput(handler_id=None, instrument_type=None, credential_type=None,
                             token=payment["token"], psp=payment["provider"],
                             billing_address=payment.get("billing_address"), buyer=data.get("buyer"),
                             authentication_result=data.get("authentication_result"))


class CancelRequestSchema(Base):
    """2025-09-29 cancel has no request body; whatever is sent is ignored."""

    @post_load
    def _make(self, data: dict[str, t.Any], **kwargs: t.Any) -> CancelInput:
        return CancelInput()


REQUEST_SCHEMAS: dict[str, type[Schema]] = {
    "create": CreateRequestSchema,
    "update": UpdateRequestSchema,
    "complete": CompleteRequestSchema,
    "cancel": CancelRequestSchema,
}
