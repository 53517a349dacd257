"""ACP 2026-04-17: request schemas (marshmallow) and response rendering.

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

import datetime as dt
import typing as t

from iso4217 import Currency
from marshmallow import EXCLUDE
from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import post_load
from marshmallow import validate
from marshmallow import validates

from ..checkout import CancelInput
from ..checkout import CompleteInput
from ..checkout import CreateInput
from ..checkout import UpdateInput
from ..i18n import text
from ..models import JSON
from ..models import Adjustment
from ..models import CheckoutSession
from ..models import Fulfillment
from ..models import FulfillmentOption
from ..models import LineItemRequest
from ..models import Message
from ..models import Order
from ..models import SelectedFulfillmentOption
from ..models import Status
from ..models import Totals
from ..models import line_item_id

VERSION = "2026-04-17"

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


# --- rendering -------------------------------------------------------------------


def _time(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _total(kind: str, amount: int, label: str) -> dict[str, JSON]:
    return {"type": kind, "display_text": label, "amount": amount}


def _message(message: Message, language: str) -> dict[str, JSON]:
    body: dict[str, JSON] = {"type": message.type}
    if message.type != "info" and message.code:
        body["code"] = message.code
    for name in ("param", "severity", "resolution"):
        value = getattr(message, name)
        if value is not None:
            body[name] = value
    body["content_type"] = "plain"
    body["content"] = message.content or text(language, message.text_key or "", message.text_args)
    return body


def _option(option: FulfillmentOption, language: str) -> dict[str, JSON]:
    label = text(language, "option.total" if option.type == "shipping" else "option.digital")
    totals = [_total("total", option.amount + option.tax, label)]
    if option.tax:
        totals = [_total("subtotal", option.amount, text(language, "total.subtotal")),
                  _total("tax", option.tax, text(language, "total.tax"))] + totals
    body: dict[str, JSON] = {"type": option.type, "id": option.id, "title": option.title}
    if option.description:
        body["description"] = option.description
    if option.type == "shipping":
        if option.carrier:
            body["carrier"] = option.carrier
        if option.earliest_delivery_time:
            body["earliest_delivery_time"] = _time(option.earliest_delivery_time)
        if option.latest_delivery_time:
            body["latest_delivery_time"] = _time(option.latest_delivery_time)
    body["totals"] = totals
    return body


def render_session(
    session: CheckoutSession,
    *,
    handlers: list[dict[str, JSON]],
    interventions: tuple[str, ...],
    links: tuple[dict[str, str], ...],
    language: str,
) -> dict[str, JSON]:
    """The ``CheckoutSession`` (or ``CheckoutSessionWithOrder``) JSON object.

    :param handlers: ``PaymentHandler`` objects from the payment processor.
    :param interventions: interventions the merchant supports; the response
        carries their intersection with what the agent said it supports.
    :param language: language for ``display_text`` and message contents.
    """
    quote = session.quote
    lines = []
    for line in quote.lines:
        body: dict[str, JSON] = {"id": line_item_id(line.item_id), "item": {"id": line.item_id},
                                 "quantity": line.quantity}
        for name in ("name", "description", "product_id", "sku", "variant_id",
                     "availability_status", "available_quantity", "max_quantity_per_order"):
            value = getattr(line, name)
            if value is not None:
                body[name] = value
        if isinstance(body.get("available_quantity"), int):
            body["available_quantity"] = max(0, body["available_quantity"])  # spec minimum 0
        if line.images:
            body["images"] = list(line.images)
        body["unit_amount"] = line.unit_amount
        amounts = (line.base_amount, line.discount, line.subtotal, line.tax, line.total)
        if not line.purchasable:
            amounts = (0, 0, 0, 0, 0)
        body["totals"] = [
            _total(kind, amount, text(language, f"line.{kind}"))
            for kind, amount in zip(("items_base_amount", "discount", "subtotal", "tax", "total"),
                                    amounts, strict=True)
        ]
        lines.append(body)

    totals: Totals = session.totals
    session_totals = [_total("items_base_amount", totals.items_base_amount,
                             text(language, "total.items_base_amount"))]
    if totals.items_discount:
        session_totals.append(_total("items_discount", totals.items_discount,
                                     text(language, "total.items_discount")))
    session_totals.append(_total("subtotal", totals.subtotal, text(language, "total.subtotal")))
    if totals.discount:
        session_totals.append(_total("discount", totals.discount, text(language, "total.discount")))
    if quote.selected_fulfillment_options:
        session_totals.append(_total("fulfillment", totals.fulfillment,
                                     text(language, "total.fulfillment")))
    session_totals.append(_total("tax", totals.tax, text(language, "total.tax")))
    if totals.fee:
        session_totals.append(_total("fee", totals.fee, text(language, "total.fee")))
    session_totals.append(_total("total", totals.total, text(language, "total.total")))

    agent_interventions = (session.capabilities.get("interventions") or {}).get("supported") or []
    out: dict[str, JSON] = {
        "id": session.id,
        "protocol": {"version": VERSION},
        "capabilities": {
            "payment": {"handlers": handlers},
            "interventions": {
                "supported": [i for i in interventions if i in agent_interventions],
                "required": [],
                "enforcement": "conditional",
            },
        },
        "status": session.status.value,
        "currency": session.currency,
        "line_items": lines,
        "fulfillment_options": [_option(o, language) for o in quote.fulfillment_options],
        "totals": session_totals,
        "messages": [_message(m, language) for m in session.messages],
        "links": [dict(link) for link in links],
        "created_at": _time(session.created_at),
        "updated_at": _time(session.updated_at),
        "expires_at": _time(session.expires_at),
    }
    if session.buyer:
        out["buyer"] = session.buyer
    if session.fulfillment_details:
        out["fulfillment_details"] = session.fulfillment_details
    if quote.selected_fulfillment_options:
        out["selected_fulfillment_options"] = [
            {"type": s.type, "option_id": s.option_id, "item_ids": list(s.item_ids)}
            for s in quote.selected_fulfillment_options
        ]
    if session.locale:
        out["locale"] = session.locale
    # order_notes is request-only in 2026-04-17 (CheckoutSession has no such
    # field); it is echoed in order.confirmation.order_notes once completed.
    if session.order is not None and session.status is Status.COMPLETED:
        order: dict[str, JSON] = {
            "id": session.order.id,
            "checkout_session_id": session.order.checkout_session_id,
            "permalink_url": session.order.permalink_url,
            "status": session.order.status,
        }
        if session.order.order_number:
            order["order_number"] = session.order.order_number
        if session.order_notes:
            order["confirmation"] = {"order_notes": session.order_notes}
        out["order"] = order
    return out


def render_order(order: Order) -> dict[str, JSON]:
    """The full ``Order`` object for webhook ``data`` (``EventDataOrder``:
    ``type: "order"`` plus every field we know; orders RFC, 2026-04-17).
    ``totals`` carry the amount charged (``total``) and ``amount_refunded``."""
    body: dict[str, JSON] = {
        "type": "order",
        "id": order.id,
        "checkout_session_id": order.checkout_session_id,
        "permalink_url": order.permalink_url,
        "status": order.status,
    }
    if order.order_number:
        body["order_number"] = order.order_number
    if order.line_items:
        lines = []
        for line in order.line_items:
            item: dict[str, JSON] = {
                "id": line.id, "title": line.title,
                "quantity": {"ordered": line.ordered, "current": line.current,
                             "fulfilled": line.fulfilled},
                "status": line.status,
            }
            if line.product_id:
                item["product_id"] = line.product_id
            if line.image_url:
                item["image_url"] = line.image_url
            if line.unit_price is not None:
                item["unit_price"] = line.unit_price
                item["subtotal"] = line.unit_price * line.ordered
            lines.append(item)
        body["line_items"] = lines
    if order.fulfillments:
        body["fulfillments"] = [_fulfillment(f) for f in order.fulfillments]
    if order.adjustments:
        body["adjustments"] = [_adjustment(a) for a in order.adjustments]
    if order.total is not None:
        body["totals"] = [{"type": "total", "display_text": "Total", "amount": order.total},
                          {"type": "amount_refunded", "display_text": "Refunded",
                           "amount": order.amount_refunded}]
    return body


def _fulfillment(f: Fulfillment) -> dict[str, JSON]:
    body: dict[str, JSON] = {"id": f.id, "type": f.type, "status": f.status}
    if f.line_items:
        body["line_items"] = [{"id": r.id, "quantity": r.quantity} for r in f.line_items]
    for name in ("carrier", "tracking_number", "tracking_url"):
        value = getattr(f, name)
        if value:
            body[name] = value
    if f.events:
        body["events"] = [
            {k: v for k, v in (("id", e.id), ("type", e.type), ("occurred_at", _time(e.occurred_at)),
                               ("description", e.description), ("location", e.location)) if v}
            for e in f.events
        ]
    return body


def _adjustment(a: Adjustment) -> dict[str, JSON]:
    body: dict[str, JSON] = {"id": a.id, "type": a.type, "occurred_at": _time(a.occurred_at),
                             "status": a.status}
    if a.amount is not None:
        body["amount"] = a.amount
    if a.currency:
        body["currency"] = a.currency.lower()
    if a.description:
        body["description"] = a.description
    if a.reason:
        body["reason"] = a.reason
    if a.line_items:
        body["line_items"] = [{"id": r.id, "quantity": r.quantity} for r in a.line_items]
    return body


def render_event(event_type: str, order: Order) -> dict[str, JSON]:
    """A ``WebhookEvent``: ``{"type": "order_create"|"order_update", "data": Order}``."""
    return {"type": event_type, "data": render_order(order)}


def render_discovery(*, api_base_url: str, supported_versions: tuple[str, ...],
                     currencies: list[str], interventions: tuple[str, ...],
                     languages: tuple[str, ...]) -> dict[str, JSON]:
    """The ``DiscoveryResponse`` for ``/.well-known/acp.json`` (discovery RFC).

    :param supported_versions: newest first (reversed here: discovery lists oldest first).
    """
    capabilities: dict[str, JSON] = {"services": ["checkout"]}
    if interventions:
        capabilities["intervention_types"] = list(interventions)
    if currencies:
        capabilities["supported_currencies"] = sorted(c.lower() for c in currencies)
    capabilities["supported_locales"] = list(languages)
    return {
        "protocol": {"name": "acp", "version": supported_versions[0],
                     "supported_versions": sorted(supported_versions)},
        "api_base_url": api_base_url,
        "transports": ["rest"],
        "capabilities": capabilities,
    }


REQUEST_SCHEMAS: dict[str, type[Schema]] = {
    "create": CreateRequestSchema,
    "update": UpdateRequestSchema,
    "complete": CompleteRequestSchema,
    "cancel": CancelRequestSchema,
}
