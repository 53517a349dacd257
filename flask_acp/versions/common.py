"""Rendering helpers every wire version shares: timestamps, ``Total`` entries,
the session's totals, message texts and order-status names. Nothing here
knows a version's field set; each version's ``render`` module composes them.
"""

from __future__ import annotations

import datetime as dt

from ..i18n import text
from ..models import JSON
from ..models import CheckoutSession
from ..models import Message


def time(value: dt.datetime) -> str:
    """RFC 3339, UTC, ``Z`` suffix (``2026-04-17T10:00:00Z``)."""
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def total(kind: str, amount: int, label: str) -> dict[str, JSON]:
    """A ``Total`` entry: ``{type, display_text, amount}`` (amount in minor units)."""
    return {"type": kind, "display_text": label, "amount": amount}


def session_totals(session: CheckoutSession, language: str) -> list[dict[str, JSON]]:
    """The session's ``totals[]``, minor units, in the order agents show them.

    Always ``items_base_amount``, ``subtotal``, ``tax`` and ``total``;
    ``items_discount``, ``discount`` and ``fee`` when not zero; ``fulfillment``
    once an option is selected. Every type is one of the eight that every
    version defines (``total = subtotal - discount + fulfillment + tax + fee``).
    """
    totals = session.totals
    out = [total("items_base_amount", totals.items_base_amount, text(language, "total.items_base_amount"))]
    if totals.items_discount:
        out.append(total("items_discount", totals.items_discount, text(language, "total.items_discount")))
    out.append(total("subtotal", totals.subtotal, text(language, "total.subtotal")))
    if totals.discount:
        out.append(total("discount", totals.discount, text(language, "total.discount")))
    if session.quote.selected_fulfillment_options:
        out.append(total("fulfillment", totals.fulfillment, text(language, "total.fulfillment")))
    out.append(total("tax", totals.tax, text(language, "total.tax")))
    if totals.fee:
        out.append(total("fee", totals.fee, text(language, "total.fee")))
    out.append(total("total", totals.total, text(language, "total.total")))
    return out


def message_content(message: Message, language: str) -> str:
    """A message's text: the platform's own words, else ours in ``language``."""
    return message.content or text(language, message.text_key or "", message.text_args)


def line_amounts(session: CheckoutSession) -> list[tuple[int, int, int, int, int]]:
    """Per line: ``(base_amount, discount, subtotal, tax, total)`` in minor units;
    zeros for a line that cannot be bought (it counts in no total)."""
    return [(line.base_amount, line.discount, line.subtotal, line.tax, line.total)
            if line.purchasable else (0, 0, 0, 0, 0) for line in session.quote.lines]


#: order status (ours, the 2026-04-17 names) -> the ``EventDataOrder.status``
#: enum of 2025-09-29 ... 2026-01-30 (created, manual_review, confirmed,
#: canceled, shipped, fulfilled)
LEGACY_ORDER_STATUS = {
    "created": "created",
    "manual_review": "manual_review",
    "confirmed": "confirmed",
    "processing": "confirmed",
    "shipped": "shipped",
    "completed": "fulfilled",
    "delivered": "fulfilled",
    "canceled": "canceled",
}


def legacy_order_status(status: str) -> str:
    """``status`` in the legacy enum (an unknown status reads ``confirmed``:
    the order exists and is not yet shipped)."""
    return LEGACY_ORDER_STATUS.get(status, "confirmed")
