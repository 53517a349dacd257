"""Rendering for the versions before capabilities and payment handlers
(2025-09-29, 2025-12-12, 2026-01-16), and the legacy order webhook that every
version before 2026-04-17 sends.

The three sessions differ in a handful of places, named by :class:`Shape`;
everything else (flat line-item amounts, ``payment_provider``, the five or six
statuses, the six message codes, no warnings) they share. Never a value the
version does not define: statuses, message codes, link types and fields are
mapped or left out as documented on each function and in the README.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import re

from ..i18n import text
from ..models import JSON
from ..models import CheckoutSession
from ..models import FulfillmentOption
from ..models import Message
from ..models import Order
from ..models import Status
from ..models import line_item_id
from ..payments.base import PaymentHandler
from .base import RenderSession
from .common import legacy_order_status
from .common import line_amounts
from .common import message_content
from .common import session_totals
from .common import time
from .common import total

#: ``MessageError.code`` before 2026-01-30; any other code of ours reads ``invalid``
ERROR_CODES = frozenset({"missing", "invalid", "out_of_stock", "payment_declined", "requires_sign_in",
                         "requires_3ds"})
#: the card networks ``PaymentMethod.supported_card_networks`` may name (2025-12-12, 2026-01-16)
CARD_NETWORKS = ("amex", "discover", "mastercard", "visa")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Shape:
    """What sets one legacy version's session apart.

    :ivar version: the ``API-Version``.
    :ivar by_address: ``fulfillment_address`` + ``fulfillment_option_id``
        (2025-09-29), else ``fulfillment_details`` + nested
        ``selected_fulfillment_options``.
    :ivar option_totals: fulfillment options carry ``totals[]`` (2026-01-16),
        else flat ``subtotal``/``tax``/``total``.
    :ivar line_display: line items carry ``name``/``description``/``images``/
        ``unit_amount`` (2025-12-12+).
    :ivar card_networks: ``supported_payment_methods`` are ``{type: card,
        supported_card_networks}`` objects (2025-12-12+), else ``["card"]``.
    :ivar provider_merchant_id: ``payment_provider.merchant_id`` (2026-01-16).
    :ivar statuses: the session statuses the version defines.
    :ivar link_types: link type -> the version's type for it (absent: left out).
    """

    version: str
    by_address: bool
    option_totals: bool
    line_display: bool
    card_networks: bool
    provider_merchant_id: bool
    statuses: frozenset[str]
    link_types: cabc.Mapping[str, str]


def status(shape: Shape, value: Status) -> str:
    """The session status in ``shape``'s enum: ``complete_in_progress`` reads
    ``in_progress``; ``expired`` reads ``canceled`` (closed for good, and a
    cancel answers 405 as for a canceled one)."""
    name = {Status.COMPLETE_IN_PROGRESS: "in_progress", Status.EXPIRED: "canceled"}.get(value, value.value)
    return name if name in shape.statuses else "not_ready_for_payment"


_QUANTITY = re.compile(r"^\$\.line_items\[(\d+)\]\.quantity")


def param(shape: Shape, path: str | None) -> str | None:
    """A message's JSONPath (written against 2026-04-17 names) in ``shape``'s
    names: ``$.line_items[i].quantity`` -> ``$.line_items[i].item.quantity``;
    payment paths -> ``$.payment_data.token`` / ``.provider``; in 2025-09-29
    ``$.fulfillment_details[.address]...`` -> ``$.fulfillment_address...`` and
    ``$.selected_fulfillment_options...`` -> ``$.fulfillment_option_id``."""
    if path is None:
        return None
    path = _QUANTITY.sub(r"$.line_items[\1].item.quantity", path)
    if path.startswith("$.payment_data.instrument"):
        return "$.payment_data.token"
    if path == "$.payment_data.handler_id":
        return "$.payment_data.provider"
    if path.startswith("$.capabilities"):
        return None
    if shape.by_address:
        if path.startswith("$.fulfillment_details"):
            rest = path.removeprefix("$.fulfillment_details")
            return "$.fulfillment_address" + rest.removeprefix(".address") if rest.startswith(".address") \
                else "$.fulfillment_address"
        if path.startswith("$.selected_fulfillment_options"):
            return "$.fulfillment_option_id"
    return re.sub(r"^(\$\.selected_fulfillment_options\[\d+\])\.(option_id|item_ids).*$", r"\1", path)


def message(shape: Shape, value: Message, language: str) -> dict[str, JSON]:
    """A ``MessageInfo`` or ``MessageError``: warnings read as info (there are
    none before 2026-01-30); an error code the version lacks reads ``invalid``
    (``not_found``, ``quantity_exceeded``, ``region_restricted``...)."""
    body: dict[str, JSON] = {"type": "error" if value.type == "error" else "info"}
    if value.type == "error":
        body["code"] = value.code if value.code in ERROR_CODES else "invalid"
    where = param(shape, value.param)
    if where is not None:
        body["param"] = where
    body["content_type"] = "plain"
    body["content"] = message_content(value, language)
    return body


def payment_provider(shape: Shape, handlers: cabc.Sequence[PaymentHandler]) -> dict[str, JSON] | None:
    """``payment_provider`` from the first delegated-token card handler whose
    PSP the version names (only ``stripe``); None when there is none (the
    session then has no ``payment_provider`` and complete answers 400)."""
    for handler in handlers:
        if handler.psp == "stripe" and handler.requires_delegate_payment \
                and "card" in handler.instrument_types:
            body: dict[str, JSON] = {"provider": "stripe"}
            if shape.provider_merchant_id:
                body["merchant_id"] = str(handler.config.get("merchant_id") or handler.id)
            if shape.card_networks:
                brands = handler.config.get("accepted_brands")
                networks = [n for n in CARD_NETWORKS if not isinstance(brands, list) or n in brands]
                body["supported_payment_methods"] = [{"type": "card", "supported_card_networks": networks}]
            else:
                body["supported_payment_methods"] = ["card"]
            return body
    return None


def buyer(value: dict[str, JSON]) -> dict[str, JSON]:
    """``Buyer {first_name, last_name, email, phone_number}``: names missing
    from a buyer given in a later version come from ``full_name`` (split at
    its first space) or are empty strings, since this ``Buyer`` requires them."""
    first, last = value.get("first_name"), value.get("last_name")
    if not first and not last:
        full = str(value.get("full_name") or "").strip()
        first, _, last = full.partition(" ")
    body: dict[str, JSON] = {"first_name": first or "", "last_name": last or "",
                             "email": value.get("email", "")}
    if value.get("phone_number"):
        body["phone_number"] = value["phone_number"]
    return body


def _address(value: dict[str, JSON]) -> dict[str, JSON]:
    return {k: v for k, v in value.items() if k != "company"}


def _option(shape: Shape, option: FulfillmentOption, language: str) -> dict[str, JSON]:
    body: dict[str, JSON] = {"type": option.type, "id": option.id, "title": option.title}
    if option.description:
        body["description" if shape.option_totals else "subtitle"] = option.description
    if option.type == "shipping":
        if option.carrier:
            body["carrier"] = option.carrier
        if option.earliest_delivery_time:
            body["earliest_delivery_time"] = time(option.earliest_delivery_time)
        if option.latest_delivery_time:
            body["latest_delivery_time"] = time(option.latest_delivery_time)
    if shape.option_totals:
        label = text(language, "option.total" if option.type == "shipping" else "option.digital")
        totals = [total("total", option.amount + option.tax, label)]
        if option.tax:
            totals = [total("subtotal", option.amount, text(language, "total.subtotal")),
                      total("tax", option.tax, text(language, "total.tax"))] + totals
        body["totals"] = totals
    else:
        body.update(subtotal=option.amount, tax=option.tax, total=option.amount + option.tax)
    return body


def render_session(
    shape: Shape,
    session: CheckoutSession,
    *,
    handlers: cabc.Sequence[PaymentHandler],
    links: tuple[dict[str, str], ...],
    language: str,
) -> dict[str, JSON]:
    """The legacy ``CheckoutSession`` (with ``order`` once completed). Amounts
    in minor units; ``totals`` as :func:`~flask_acp.versions.common.session_totals`.
    In 2025-09-29 (one ``fulfillment_option_id``) a session whose items ship
    several ways names the first shipping option and adds an info message
    listing every option and its items, which the ``fulfillment`` total sums."""
    quote = session.quote
    lines = []
    for line, amounts in zip(quote.lines, line_amounts(session), strict=True):
        body: dict[str, JSON] = {"id": line_item_id(line.item_id),
                                 "item": {"id": line.item_id, "quantity": line.quantity}}
        body.update(zip(("base_amount", "discount", "subtotal", "tax", "total"), amounts, strict=True))
        if shape.line_display:
            if line.name:
                body["name"] = line.name
            if line.description:
                body["description"] = line.description
            if line.images:
                body["images"] = list(line.images)
            body["unit_amount"] = line.unit_amount
        lines.append(body)
    out: dict[str, JSON] = {"id": session.id}
    if session.buyer:
        out["buyer"] = buyer(session.buyer)
    provider = payment_provider(shape, handlers)
    if provider is not None:
        out["payment_provider"] = provider
    out.update(status=status(shape, session.status), currency=session.currency, line_items=lines)
    details = session.fulfillment_details or {}
    selected = quote.selected_fulfillment_options
    if shape.by_address:
        if details.get("address"):
            out["fulfillment_address"] = _address(details["address"])
    elif details:
        out["fulfillment_details"] = {k: (_address(v) if k == "address" else v) for k, v in details.items()
                                      if k in ("name", "phone_number", "email", "address")}
    out["fulfillment_options"] = [_option(shape, o, language) for o in quote.fulfillment_options]
    messages = list(session.messages)
    if selected and shape.by_address:
        # one option for the whole session: the shipping one when there is one
        first = next((s for s in selected if s.type == "shipping"), selected[0])
        out["fulfillment_option_id"] = first.option_id
        if len(selected) > 1:  # the items travel in several ways: say which, the total counts them all
            titles = {o.id: o.title for o in quote.fulfillment_options}
            split = "; ".join(f"{titles.get(s.option_id, s.option_id)}: {', '.join(s.item_ids)}"
                              for s in selected)
            messages.append(Message(type="info", param="$.fulfillment_option_id",
                                    text_key="fulfillment_split", text_args={"options": split}))
    elif selected:
        out["selected_fulfillment_options"] = [
            {"type": s.type, s.type: {"option_id": s.option_id, "item_ids": list(s.item_ids)}}
            for s in selected if s.type in ("shipping", "digital")]
    out["totals"] = session_totals(session, language)
    out["messages"] = [message(shape, m, language) for m in messages]
    out["links"] = [{"type": shape.link_types[link["type"]], "url": link["url"]}
                    for link in _first_of_each(shape, links)]
    if session.order is not None and session.status is Status.COMPLETED:
        out["order"] = {"id": session.order.id, "checkout_session_id": session.order.checkout_session_id,
                        "permalink_url": session.order.permalink_url}
    return out


def _first_of_each(shape: Shape, links: tuple[dict[str, str], ...]) -> list[dict[str, str]]:
    """The links whose type the version has (mapped), one per mapped type."""
    seen: set[str] = set()
    out = []
    for link in links:
        kind = shape.link_types.get(link["type"])
        if kind is not None and kind not in seen:
            seen.add(kind)
            out.append(link)
    return out


def session_renderer(shape: Shape) -> RenderSession:
    """:func:`render_session` for ``shape``, with the plug-in signature
    (``interventions`` do not exist before 2026-01-30 and are ignored)."""

    def render(session: CheckoutSession, *, handlers: cabc.Sequence[PaymentHandler],
               interventions: tuple[str, ...], links: tuple[dict[str, str], ...],
               language: str) -> dict[str, JSON]:
        return render_session(shape, session, handlers=handlers, links=links, language=language)

    return render


def render_order(order: Order) -> dict[str, JSON]:
    """The legacy ``EventDataOrder`` (2025-09-29 ... 2026-01-30): ``{type:
    "order", checkout_session_id, permalink_url, status, refunds[]}`` — no
    order id (agents correlate by ``checkout_session_id``). ``status`` per
    :data:`~flask_acp.versions.common.LEGACY_ORDER_STATUS`; ``refunds`` are the
    completed refund (``original_payment``) and credit (``store_credit``)
    adjustments, amounts in minor units."""
    refunds: list[JSON] = [
        {"type": "store_credit" if a.type == "credit" else "original_payment", "amount": a.amount}
        for a in order.adjustments
        if a.type in ("refund", "credit") and a.status == "completed" and a.amount is not None
    ]
    return {"type": "order", "checkout_session_id": order.checkout_session_id,
            "permalink_url": order.permalink_url, "status": legacy_order_status(order.status),
            "refunds": refunds}


def render_event(event_type: str, order: Order) -> dict[str, JSON]:
    """A legacy ``WebhookEvent``: ``{"type": "order_create"|"order_update", "data": EventDataOrder}``."""
    return {"type": event_type, "data": render_order(order)}


#: the statuses of 2025-09-29 (2025-12-12 adds ``authentication_required``)
STATUSES_2025_09_29 = frozenset({"not_ready_for_payment", "ready_for_payment", "completed", "canceled",
                                 "in_progress"})

__all__ = ["Shape", "render_event", "render_order", "render_session", "session_renderer", "status"]
