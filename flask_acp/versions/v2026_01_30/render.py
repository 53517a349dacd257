"""ACP 2026-01-30 sessions: the 2026-04-17 session without what 2026-04-17
added (message ``resolution``, handler ``display_name``/``display_order``,
``Address.company``, ``OrderConfirmation.order_notes``), ``protocol.version``
``2026-01-30``, and the order ``status`` in this version's closed enum
(``confirmed``, ``processing``, ``shipped``, ``delivered``).
"""

from __future__ import annotations

import collections.abc as cabc

from ...models import JSON
from ...models import CheckoutSession
from ...payments.base import PaymentHandler
from ..v2026_04_17 import render_session as newer_session

VERSION = "2026-01-30"

#: our order status -> ``Order.status`` of 2026-01-30 (absent when it has none)
ORDER_STATUS = {"created": "confirmed", "confirmed": "confirmed", "manual_review": "processing",
                "processing": "processing", "shipped": "shipped", "completed": "delivered",
                "delivered": "delivered"}


def render_session(
    session: CheckoutSession,
    *,
    handlers: cabc.Sequence[PaymentHandler],
    interventions: tuple[str, ...],
    links: tuple[dict[str, str], ...],
    language: str,
) -> dict[str, JSON]:
    """The ``CheckoutSession`` (or ``CheckoutSessionWithOrder``) of 2026-01-30;
    parameters as :func:`flask_acp.versions.v2026_04_17.render_session`."""
    body = newer_session(session, handlers=handlers, interventions=interventions, links=links,
                         language=language)
    body["protocol"] = {"version": VERSION}
    body.pop("marketing_consent_options", None)  # a 2026-04-17 addition
    body["messages"] = [{k: v for k, v in m.items() if k != "resolution"} for m in body["messages"]]
    payment = body["capabilities"]["payment"]
    payment["handlers"] = [{k: v for k, v in h.items() if k not in ("display_name", "display_order")}
                           for h in payment["handlers"]]
    details = body.get("fulfillment_details")
    if details and "address" in details:
        body["fulfillment_details"] = {
            **details, "address": {k: v for k, v in details["address"].items() if k != "company"}}
    order = body.get("order")
    if order is not None:
        order = {k: v for k, v in order.items() if k not in ("status", "confirmation")}
        status = ORDER_STATUS.get(session.order.status) if session.order else None
        if status:
            order["status"] = status
        body["order"] = order
    return body
