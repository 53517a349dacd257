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

Discount codes (discount extension, ``DiscountsRequest``): ``discounts.codes``
and the deprecated ``coupons`` alias; when both are sent ``discounts.codes``
wins. At most 20 codes of 1 to 256 characters each.

``affiliate_attribution`` (create: first touch; complete: last touch) is
validated by :mod:`flask_acp.versions.attribution` (400 ``pii_not_allowed``
for personal data) and kept write-only; ``marketing_consents`` (complete) are
``{channel, opted_in}`` decisions, one per channel.
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
from marshmallow import validates_schema

from ...inputs import CancelInput
from ...inputs import CartInput
from ...inputs import CompleteInput
from ...inputs import CreateInput
from ...inputs import UpdateInput
from ...models import LineItemRequest
from ...models import SelectedFulfillmentOption
from ..attribution import AffiliateAttributionSchema

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


class Base(Schema):
    """Unknown fields are ignored (forward compatibility)."""

    class Meta:
        unknown = EXCLUDE


class NonEmpty(fields.String):
    """A string of 1 to ``max`` (default 512) characters."""

    def __init__(self, **kwargs: t.Any) -> None:
        super().__init__(validate=validate.Length(min=1, max=kwargs.pop("max", 512)), **kwargs)


class ItemSchema(Base):
    id = NonEmpty(required=True, max=256)
    quantity = StrictInteger(load_default=1, validate=validate.Range(min=1, max=10_000))


class AddressSchema(Base):
    name = NonEmpty(required=True, max=256)
    line_one = NonEmpty(required=True)
    line_two = fields.String(validate=validate.Length(max=512))
    city = NonEmpty(required=True)
    state = fields.String(required=True, validate=validate.Length(max=512))  # "" where there are none
    country = fields.String(required=True, validate=validate.Regexp(
        r"^[A-Za-z]{2}\Z", error="Must be an ISO 3166-1 alpha-2 country code."))
    postal_code = NonEmpty(required=True, max=20)
    company = fields.String(validate=validate.Length(max=256))

    @post_load
    def _upper_country(self, data: dict[str, t.Any], **kwargs: t.Any) -> dict[str, t.Any]:
        data["country"] = data["country"].upper()
        return data


class BuyerSchema(Base):
    email = fields.Email(required=True)
    first_name = fields.String(validate=validate.Length(max=256))
    last_name = fields.String(validate=validate.Length(max=256))
    full_name = fields.String(validate=validate.Length(max=512))
    phone_number = fields.String(validate=validate.Length(max=32))
    customer_id = fields.String(validate=validate.Length(max=256))
    account_type = fields.String(validate=validate.OneOf(["guest", "registered", "business"]))


class FulfillmentDetailsSchema(Base):
    name = fields.String(validate=validate.Length(max=256))
    phone_number = fields.String(validate=validate.Length(max=32))
    email = fields.Email()
    address = fields.Nested(AddressSchema)


class InterventionsSchema(Base):
    supported = fields.List(fields.String())


class CapabilitiesSchema(Base):
    interventions = fields.Nested(InterventionsSchema)
    extensions = fields.List(fields.Raw())


class SelectedFulfillmentOptionSchema(Base):
    type = fields.String(required=True, validate=validate.OneOf(
        ["shipping", "digital", "pickup", "local_delivery"]))
    option_id = NonEmpty(required=True)
    item_ids = fields.List(NonEmpty(), load_default=list)


def line_requests(data: list[dict[str, t.Any]], field: str = "line_items") -> tuple[LineItemRequest, ...]:
    """Loaded ``{id, quantity}`` entries of the request member ``field`` as
    core line requests; an item id sent twice is refused (400 at
    ``$.<field>[i].id``)."""
    seen: dict[str, int] = {}
    for index, item in enumerate(data):
        if item["id"] in seen:
            raise ValidationError({index: {"id": [
                f"Duplicate item id; it is already {field}[{seen[item['id']]}]. "
                "Send one entry with the total quantity."]}}, field)
        seen[item["id"]] = index
    return tuple(LineItemRequest(id=i["id"], quantity=i["quantity"]) for i in data)


def discount_code_list() -> fields.List[str]:
    """A list of discount codes (``DiscountsRequest.codes``, ``coupons``)."""
    return fields.List(NonEmpty(max=256), validate=validate.Length(max=20))


class DiscountsRequestSchema(Base):
    codes = discount_code_list()


def discount_codes(data: dict[str, t.Any]) -> tuple[str, ...] | None:
    """The codes a loaded create/update request sends: ``discounts.codes``,
    else the deprecated ``coupons``; None when neither is sent (keep the
    session's), ``()`` to clear them."""
    discounts = data.get("discounts")
    if isinstance(discounts, dict) and "codes" in discounts:
        return tuple(discounts["codes"])
    if "coupons" in data:
        return tuple(data["coupons"])
    return None


class CreateRequestSchema(Base):
    line_items = fields.List(fields.Nested(ItemSchema), required=True,
                             validate=validate.Length(min=1, max=100))
    currency = fields.String(required=True)
    capabilities = fields.Nested(CapabilitiesSchema, required=True)
    buyer = fields.Nested(BuyerSchema)
    fulfillment_details = fields.Nested(FulfillmentDetailsSchema)
    locale = fields.String(validate=validate.Length(max=35))
    order_notes = fields.String(validate=validate.Length(max=5000))
    discounts = fields.Nested(DiscountsRequestSchema)
    coupons = discount_code_list()
    affiliate_attribution = fields.Nested(AffiliateAttributionSchema)

    @validates("currency")
    def _currency(self, value: str, **kwargs: t.Any) -> None:
        if len(value) != 3 or not value.isalpha() or Currency.__members__.get(value.upper()) is None:
            raise ValidationError("Must be an ISO 4217 currency code, e.g. 'usd'.")

    @post_load
    def _make(self, data: dict[str, t.Any], **kwargs: t.Any) -> CreateInput:
        return CreateInput(
            currency=data["currency"].lower(),
            line_items=line_requests(data["line_items"]),
            capabilities=data["capabilities"],
            buyer=data.get("buyer"),
            fulfillment_details=data.get("fulfillment_details"),
            locale=data.get("locale"),
            order_notes=data.get("order_notes"),
            discount_codes=discount_codes(data),
            affiliate_attribution=touch(data.get("affiliate_attribution"), "first"),
        )


def touch(attribution: dict[str, t.Any] | None, touchpoint: str) -> dict[str, t.Any] | None:
    """A loaded attribution with its ``touchpoint`` (the agent's, else ``touchpoint``)."""
    return None if attribution is None else {"touchpoint": touchpoint, **attribution}


class UpdateRequestSchema(Base):
    buyer = fields.Nested(BuyerSchema)
    line_items = fields.List(fields.Nested(ItemSchema), validate=validate.Length(min=1, max=100))
    fulfillment_details = fields.Nested(FulfillmentDetailsSchema)
    selected_fulfillment_options = fields.List(fields.Nested(SelectedFulfillmentOptionSchema))
    order_notes = fields.String(validate=validate.Length(max=5000))
    discounts = fields.Nested(DiscountsRequestSchema)
    coupons = discount_code_list()

    @post_load
    def _make(self, data: dict[str, t.Any], **kwargs: t.Any) -> UpdateInput:
        selected = data.get("selected_fulfillment_options")
        return UpdateInput(
            line_items=line_requests(data["line_items"]) if "line_items" in data else None,
            buyer=data.get("buyer"),
            fulfillment_details=data.get("fulfillment_details"),
            selected_fulfillment_options=None if selected is None else tuple(
                SelectedFulfillmentOption(type=s["type"], option_id=s["option_id"],
                                          item_ids=tuple(s["item_ids"])) for s in selected),
            order_notes=data.get("order_notes"),
            discount_codes=discount_codes(data),
        )


#: a delegated payment token: ``spt_`` (Stripe SharedPaymentToken, the spec's
#: examples) or ``vt_`` (delegate-payment responses) and an id of letters,
#: digits and underscores — never anything that could steer a processor URL
TOKEN_PATTERN = r"^(spt|vt)_[A-Za-z0-9_]{1,250}\Z"  # noqa: S105 - a pattern, not a secret


def token_field() -> fields.String:
    """A credential token (:data:`TOKEN_PATTERN`), required."""
    return fields.String(required=True, validate=validate.Regexp(
        TOKEN_PATTERN, error="Must be a delegated payment token: 'spt_' or 'vt_' followed by letters, "
                             "digits or underscores."))


class CredentialSchema(Base):
    """``{type, token}``; an ``spt`` token must match :data:`TOKEN_PATTERN`
    (other types are refused by the payment handler check, with their own error)."""

    type = NonEmpty(required=True)
    token = NonEmpty(required=True, max=4096)

    @validates_schema
    def _token_format(self, data: dict[str, t.Any], **kwargs: t.Any) -> None:
        if data.get("type") == "spt" and "token" in data:
            try:
                token_field().deserialize(data["token"])
            except ValidationError as exc:
                raise ValidationError(exc.messages, "token") from None


class InstrumentSchema(Base):
    type = NonEmpty(required=True)
    credential = fields.Nested(CredentialSchema, required=True)


class PaymentDataSchema(Base):
    handler_id = NonEmpty(required=True)
    instrument = fields.Nested(InstrumentSchema, required=True)
    billing_address = fields.Nested(AddressSchema)


class AuthenticationOutcomeDetailsSchema(Base):
    three_ds_cryptogram = fields.String(required=True)
    electronic_commerce_indicator = fields.String(required=True)
    transaction_id = fields.String(required=True)
    version = fields.String(required=True)


class AuthenticationResultSchema(Base):
    """``AuthenticationResult`` (3-D Secure, 2025-12-12+). The ``outcome`` enum
    differs between versions (2026-01-16 has its own), so any non-empty string
    is carried; the processor decides what it means."""

    outcome = NonEmpty(required=True, max=64)
    outcome_details = fields.Nested(AuthenticationOutcomeDetailsSchema)


class StrictBoolean(fields.Boolean):
    """A JSON ``boolean``: ``true`` or ``false`` only (no ``"yes"``, no ``1``)."""

    def _deserialize(self, value: t.Any, attr: str | None, data: t.Any, **kwargs: t.Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class MarketingConsentSchema(Base):
    channel = NonEmpty(required=True, max=64)
    opted_in = StrictBoolean(required=True)


class CompleteRequestSchema(Base):
    payment_data = fields.Nested(PaymentDataSchema, required=True)
    buyer = fields.Nested(BuyerSchema)
    order_notes = fields.String(validate=validate.Length(max=5000))
    authentication_result = fields.Nested(AuthenticationResultSchema)
    affiliate_attribution = fields.Nested(AffiliateAttributionSchema)
    marketing_consents = fields.List(fields.Nested(MarketingConsentSchema), validate=validate.Length(max=20))

    @validates("marketing_consents")
    def _one_per_channel(self, value: list[dict[str, t.Any]], **kwargs: t.Any) -> None:
        seen: dict[str, int] = {}
        for index, consent in enumerate(value):
            channel = consent.get("channel")  # (an entry refused on its own is reported as such)
            if channel is None:
                continue
            if channel in seen:
                raise ValidationError({index: {"channel": [
                    f"Duplicate channel; it is already marketing_consents[{seen[channel]}]."]}})
            seen[channel] = index

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
            authentication_result=data.get("authentication_result"),
            affiliate_attribution=touch(data.get("affiliate_attribution"), "last"),
            marketing_consents=tuple((c["channel"], c["opted_in"])
                                     for c in data.get("marketing_consents", ())),
        )


class FlatMetadata(fields.Field[dict[str, t.Any]]):
    """``IntentTrace.metadata``: a flat object of strings, numbers and booleans."""

    def _deserialize(self, value: t.Any, attr: str | None, data: t.Any,
                     **kwargs: t.Any) -> dict[str, t.Any]:
        if not isinstance(value, dict):
            raise ValidationError("Not a valid mapping type.")
        for key, item in value.items():
            if isinstance(item, (dict, list)) or item is None:
                raise ValidationError({key: ["Not a valid metadata value: use a string, number or boolean."]})
        return value


class IntentTraceSchema(Base):
    reason_code = fields.String(required=True)
    trace_summary = fields.String(validate=validate.Length(max=500))
    metadata = FlatMetadata()


class CancelRequestSchema(Base):
    intent_trace = fields.Nested(IntentTraceSchema)

    @post_load
    def _make(self, data: dict[str, t.Any], **kwargs: t.Any) -> CancelInput:
        trace = data.get("intent_trace") or {}
        code = trace.get("reason_code")
        return CancelInput(
            reason_code=None if code is None else (code if code in _REASON_CODES else "other"),
            trace_summary=trace.get("trace_summary"),
        )


class CartRequestSchema(Base):
    """``CartCreateRequest`` / ``CartUpdateRequest`` (``schema.cart.json``):
    the cart's full desired state. ``locale`` is read on create only."""

    line_items = fields.List(fields.Nested(ItemSchema), required=True,
                             validate=validate.Length(min=1, max=100))
    buyer = fields.Nested(BuyerSchema)
    locale = fields.String(validate=validate.Length(max=35))

    @post_load
    def _make(self, data: dict[str, t.Any], **kwargs: t.Any) -> CartInput:
        return CartInput(line_items=line_requests(data["line_items"]), buyer=data.get("buyer"),
                         locale=data.get("locale"))


class CartUpdateRequestSchema(CartRequestSchema):
    class Meta(CartRequestSchema.Meta):
        exclude = ("locale",)


#: the Cart API's request schemas (operations ``cart_create``, ``cart_update``)
CART_SCHEMAS: dict[str, type[Schema]] = {
    "cart_create": CartRequestSchema,
    "cart_update": CartUpdateRequestSchema,
}


REQUEST_SCHEMAS: dict[str, type[Schema]] = {
    "create": CreateRequestSchema,
    "update": UpdateRequestSchema,
    "complete": CompleteRequestSchema,
    "cancel": CancelRequestSchema,
}
