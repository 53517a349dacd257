"""ACP 2025-12-12 request schemas (also 2026-01-16's, whose requests are the
same): 2025-09-29's with ``fulfillment_details`` instead of
``fulfillment_address``, ``selected_fulfillment_options[] {type, shipping |
digital: {option_id, item_ids}}`` instead of ``fulfillment_option_id``, the
3-D Secure ``authentication_result`` on complete and the intent trace on
cancel. ``affiliate_attribution`` (create: first touch, complete: last touch)
is validated and kept as in 2026-04-17 (:mod:`flask_acp.versions.attribution`;
write-only).
"""

from __future__ import annotations

import dataclasses
import typing as t

from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import post_load
from marshmallow import validate
from marshmallow import validates_schema

from ...inputs import CompleteInput
from ...inputs import CreateInput
from ...inputs import UpdateInput
from ...models import SelectedFulfillmentOption
from ..attribution import AffiliateAttributionSchema
from ..v2025_09_29 import schemas as older
from ..v2026_04_17 import schemas as newer
from ..v2026_04_17.schemas import Base
from ..v2026_04_17.schemas import NonEmpty
from ..v2026_04_17.schemas import line_requests


class FulfillmentDetailsSchema(newer.FulfillmentDetailsSchema):
    address = fields.Nested(older.AddressSchema)


class OptionReferenceSchema(Base):
    option_id = NonEmpty(required=True)
    item_ids = fields.List(NonEmpty(), load_default=list)


class SelectedFulfillmentOptionSchema(Base):
    """``{type: "shipping", shipping: {option_id, item_ids}}`` or the same
    with ``digital``."""

    type = fields.String(required=True, validate=validate.OneOf(["shipping", "digital"]))
    shipping = fields.Nested(OptionReferenceSchema)
    digital = fields.Nested(OptionReferenceSchema)

    @validates_schema
    def _member_of_type(self, data: dict[str, t.Any], **kwargs: t.Any) -> None:
        if data.get("type") in ("shipping", "digital") and data["type"] not in data:
            raise ValidationError(f"Missing data for required field (type is {data['type']!r}).",
                                  data["type"])


class CreateRequestSchema(Base):
    items = fields.List(fields.Nested(older.ItemSchema), required=True,
                        validate=validate.Length(min=1, max=100))
    buyer = fields.Nested(older.BuyerSchema)
    fulfillment_details = fields.Nested(FulfillmentDetailsSchema)
    affiliate_attribution = fields.Nested(AffiliateAttributionSchema)

    @post_load
    def _make(self, data: dict[str, t.Any], **kwargs: t.Any) -> CreateInput:
        return CreateInput(currency=None, line_items=line_requests(data["items"], "items"), capabilities={},
                           buyer=data.get("buyer"), fulfillment_details=data.get("fulfillment_details"),
                           affiliate_attribution=newer.touch(data.get("affiliate_attribution"), "first"))


class UpdateRequestSchema(Base):
    items = fields.List(fields.Nested(older.ItemSchema), validate=validate.Length(min=1, max=100))
    buyer = fields.Nested(older.BuyerSchema)
    fulfillment_details = fields.Nested(FulfillmentDetailsSchema)
    selected_fulfillment_options = fields.List(fields.Nested(SelectedFulfillmentOptionSchema))

    @post_load
    def _make(self, data: dict[str, t.Any], **kwargs: t.Any) -> UpdateInput:
        selected = data.get("selected_fulfillment_options")
        return UpdateInput(
            line_items=line_requests(data["items"], "items") if "items" in data else None,
            buyer=data.get("buyer"),
            fulfillment_details=data.get("fulfillment_details"),
            selected_fulfillment_options=None if selected is None else tuple(
                SelectedFulfillmentOption(type=s["type"], option_id=s[s["type"]]["option_id"],
                                          item_ids=tuple(s[s["type"]]["item_ids"])) for s in selected),
        )


class CompleteRequestSchema(older.CompleteRequestSchema):
    authentication_result = fields.Nested(newer.AuthenticationResultSchema)
    affiliate_attribution = fields.Nested(AffiliateAttributionSchema)

    @post_load
    def _make(self, data: dict[str, t.Any], **kwargs: t.Any) -> CompleteInput:
        made: CompleteInput = super()._make(data, **kwargs)
        return dataclasses.replace(made, affiliate_attribution=newer.touch(data.get("affiliate_attribution"),
                                                                           "last"))


REQUEST_SCHEMAS: dict[str, type[Schema]] = {
    "create": CreateRequestSchema,
    "update": UpdateRequestSchema,
    "complete": CompleteRequestSchema,
    "cancel": newer.CancelRequestSchema,
}
