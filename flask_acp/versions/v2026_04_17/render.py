"""ACP 2026-04-17 rendering: core objects to response and webhook bodies
(``schema.agentic_checkout.json``, orders RFC, discovery RFC)."""

from __future__ import annotations

import collections.abc as cabc
import decimal

from ...i18n import text
from ...models import DISCOUNT_EXTENSION
from ...models import JSON
from ...models import Adjustment
from ...models import AppliedDiscount
from ...models import CheckoutSession
from ...models import Fulfillment
from ...models import FulfillmentOption
from ...models import Message
from ...models import Order
from ...models import PricedLine
from ...models import RejectedDiscount
from ...models import Status
from ...models import extension_requested
from ...models import line_item_id
from ...payments.base import PaymentHandler
from ..common import line_amounts
from ..common import message_content
from ..common import session_totals
from ..common import time as _time
from ..common import total as _total

VERSION = "2026-04-17"


#: ``MessageError.code`` values of 2026-01-30 and 2026-04-17; any other reads ``invalid``
ERROR_CODES = frozenset({
    "missing", "invalid", "out_of_stock", "payment_declined", "requires_sign_in", "requires_3ds", "low_stock",
    "quantity_exceeded", "coupon_invalid", "coupon_expired", "minimum_not_met", "maximum_exceeded",
    "region_restricted", "age_verification_required", "approval_required", "unsupported", "not_found",
    "conflict", "rate_limited", "expired", "intervention_required"})
#: ``MessageWarning.code`` values; a warning with another code is sent as info
WARNING_CODES = frozenset({
    "low_stock", "high_demand", "shipping_delay", "price_change", "expiring_promotion",
    "limited_availability", "discount_code_expired", "discount_code_invalid",
    "discount_code_already_applied", "discount_code_combination_disallowed", "discount_code_minimum_not_met",
    "discount_code_user_not_logged_in", "discount_code_user_ineligible", "discount_code_usage_limit_reached"})


def _message(message: Message, language: str) -> dict[str, JSON]:
    """A message; a code the version does not define (adapters may report
    anything) becomes ``invalid`` for an error, and a warning without a
    defined code is sent as info."""
    kind = message.type
    if kind == "warning" and message.code not in WARNING_CODES:
        kind = "info"
    body: dict[str, JSON] = {"type": kind}
    if kind == "error":
        body["code"] = message.code if message.code in ERROR_CODES else "invalid"
    elif kind == "warning":
        body["code"] = message.code
    for name in ("param", "severity", "resolution"):
        value = getattr(message, name)
        if value is not None:
            body[name] = value
    body["content_type"] = "plain"
    body["content"] = message_content(message, language)
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


#: the discount extension's declaration in the response's ``capabilities.extensions``
DISCOUNT_DECLARATION: dict[str, JSON] = {
    "name": DISCOUNT_EXTENSION,
    "extends": ["$.CheckoutSessionCreateRequest.discounts", "$.CheckoutSessionUpdateRequest.discounts",
                "$.CheckoutSession.discounts"],
}


def _percent(value: str) -> int | float:
    """``Coupon.percent_off`` (a JSON number, not money): ``"20"`` -> 20, ``"12.5"`` -> 12.5."""
    number = decimal.Decimal(value)
    return int(number) if number == number.to_integral_value() else float(number)


def _applied(discount: AppliedDiscount, session: CheckoutSession) -> dict[str, JSON]:
    """An ``AppliedDiscount``: allocations to a line point at ``$.line_items[i]``,
    those off the shipping at ``$.totals.fulfillment`` (as the spec's
    automatic-discount example), other order-level ones at ``$.totals.discount``;
    both are counted in the ``discount`` total."""
    coupon: dict[str, JSON] = {"id": discount.coupon_id, "name": discount.name}
    if discount.percent_off is not None:
        coupon["percent_off"] = _percent(discount.percent_off)
    elif discount.amount_off is not None:
        coupon["amount_off"] = discount.amount_off
        coupon["currency"] = session.currency.lower()
    body: dict[str, JSON] = {"id": discount.id}
    if discount.code is not None and not discount.automatic:
        body["code"] = discount.code
    body.update({"coupon": coupon, "amount": discount.amount, "automatic": discount.automatic})
    if discount.starts_at is not None:
        body["start"] = _time(discount.starts_at)
    if discount.ends_at is not None:
        body["end"] = _time(discount.ends_at)
    if discount.method is not None:
        body["method"] = discount.method
    if discount.priority is not None:
        body["priority"] = discount.priority
    index: dict[str, int] = {}
    for position, line in enumerate(session.quote.lines):
        index.setdefault(line.item_id, position)
    allocations = []
    for allocation in discount.allocations:
        if allocation.fulfillment:
            allocations.append({"path": "$.totals.fulfillment", "amount": allocation.amount})
        elif allocation.item_id is None or allocation.item_id not in index:
            allocations.append({"path": "$.totals.discount", "amount": allocation.amount})
        else:
            allocations.append({"path": f"$.line_items[{index[allocation.item_id]}]",
                                "amount": allocation.amount})
    if allocations:
        body["allocations"] = allocations
    return body


def _rejected(rejected: RejectedDiscount, language: str) -> dict[str, JSON]:
    message = Message(type="warning", content=rejected.content, text_key=rejected.text_key or rejected.reason,
                      text_args={"code": rejected.code, **rejected.text_args})
    return {"code": rejected.code, "reason": rejected.reason, "message": message_content(message, language)}


def render_discounts(session: CheckoutSession, language: str) -> dict[str, JSON] | None:
    """The ``DiscountsResponse`` (``codes`` echoed as sent, ``applied``,
    ``rejected``), or None when the agent did not negotiate the discount
    extension (``capabilities.extensions``; discount extension, digest §18.2)."""
    if not extension_requested(session.capabilities, DISCOUNT_EXTENSION):
        return None
    return {
        "codes": list(session.discount_codes),
        "applied": [_applied(d, session) for d in session.quote.applied_discounts],
        "rejected": [_rejected(r, language) for r in session.quote.rejected_discounts],
    }


def render_handler(handler: PaymentHandler) -> dict[str, JSON]:
    """A ``PaymentHandler`` object (``capabilities.payment.handlers[]``)."""
    body: dict[str, JSON] = {"id": handler.id, "name": handler.name}
    if handler.display_name:
        body["display_name"] = handler.display_name
    body.update({
        "version": handler.version,
        "spec": handler.spec,
        "requires_delegate_payment": handler.requires_delegate_payment,
        "requires_pci_compliance": handler.requires_pci_compliance,
        "psp": handler.psp,
    })
    if handler.config_schema:
        body["config_schema"] = handler.config_schema
    body["instrument_schemas"] = list(handler.instrument_schemas)
    body["config"] = dict(handler.config)
    return body


_LINE_FIELDS = ("name", "description", "product_id", "sku", "variant_id", "availability_status",
                "available_quantity", "max_quantity_per_order")
_LINE_TOTALS = ("items_base_amount", "discount", "subtotal", "tax", "total")


def line_body(line: PricedLine, amounts: cabc.Sequence[int], language: str) -> dict[str, JSON]:
    """One ``LineItem`` object (of a session or a cart): the item, its display
    fields, ``unit_amount`` and ``totals`` (``amounts``: minor units of
    items_base_amount, discount, subtotal, tax, total)."""
    body: dict[str, JSON] = {"id": line_item_id(line.item_id), "item": {"id": line.item_id},
                             "quantity": line.quantity}
    for name in _LINE_FIELDS:
        value = getattr(line, name)
        if value is not None:
            body[name] = value
    if isinstance(body.get("available_quantity"), int):
        body["available_quantity"] = max(0, body["available_quantity"])  # spec minimum 0
    if line.images:
        body["images"] = list(line.images)
    body["unit_amount"] = line.unit_amount
    body["totals"] = [_total(kind, amount, text(language, f"line.{kind}"))
                      for kind, amount in zip(_LINE_TOTALS, amounts, strict=True)]
    return body


def render_session(
    session: CheckoutSession,
    *,
    handlers: cabc.Sequence[PaymentHandler],
    interventions: tuple[str, ...],
    links: tuple[dict[str, str], ...],
    language: str,
) -> dict[str, JSON]:
    """The ``CheckoutSession`` (or ``CheckoutSessionWithOrder``) JSON object.

    :param handlers: the payment processor's handlers (rendered as ``PaymentHandler``).
    :param interventions: interventions the merchant supports; the response
        carries their intersection with what the agent said it supports.
    :param language: language for ``display_text`` and message contents.
    """
    quote = session.quote
    lines = [line_body(line, amounts, language)
             for line, amounts in zip(quote.lines, line_amounts(session), strict=True)]

    agent_interventions = (session.capabilities.get("interventions") or {}).get("supported") or []
    out: dict[str, JSON] = {
        "id": session.id,
        "protocol": {"version": VERSION},
        "capabilities": {
            "payment": {"handlers": [render_handler(h) for h in handlers]},
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
        "totals": session_totals(session, language),
        "messages": [_message(m, language) for m in session.messages],
        "links": [dict(link) for link in links],
        "created_at": _time(session.created_at),
        "updated_at": _time(session.updated_at),
        "expires_at": _time(session.expires_at),
    }
    discounts = render_discounts(session, language)
    if discounts is not None:
        out["capabilities"]["extensions"] = [dict(DISCOUNT_DECLARATION)]
        out["discounts"] = discounts
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
    if session.marketing_consent_options:
        # is_subscribed is left out (false): the merchant's subscription lists are not read
        out["marketing_consent_options"] = [dict(option) for option in session.marketing_consent_options]
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
    # every session can negotiate the discount extension (README "Discount codes")
    capabilities["extensions"] = [{"name": DISCOUNT_EXTENSION}]
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
