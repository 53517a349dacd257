"""Order changes after the sale: the merchant-facing API behind ``flask acp orders``.

Every change loads the order's session under its lock, computes the new
order, and saves it together with an ``order_update`` outbox event in one
transaction; a change that alters nothing writes nothing (so repeating a
call, or receiving a platform webhook twice, is harmless). The agent then
receives the full order (ACP 2026-04-17 orders RFC), never a delta.

Sources of changes: this API and its CLI (``ship``, ``deliver``, ``cancel``),
platform webhooks (Shopify, WooCommerce) and payment events (refunds,
disputes) through :meth:`OrderService.record_adjustment`.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import datetime as dt
import logging
import secrets

from .checkout import CheckoutService
from .checkout import new_event
from .errors import InvalidRequestError
from .errors import NotFoundError
from .models import Adjustment
from .models import CheckoutSession
from .models import Fulfillment
from .models import FulfillmentEvent
from .models import LineItemReference
from .models import Order

log = logging.getLogger("flask_acp")

#: order statuses after which nothing ships any more
_CLOSED = ("canceled", "completed")


class OrderService:
    """Report status changes, fulfillments and adjustments of orders.

    :param checkout: the app's checkout service (store, clock, locks, events).
    """

    def __init__(self, checkout: CheckoutService) -> None:
        self.checkout = checkout

    def get(self, order_id: str) -> Order:
        """The order as stored.

        :raises NotFoundError: unknown order id.
        """
        return self._session(order_id)[1]

    def ship(
        self,
        order_id: str,
        *,
        carrier: str | None = None,
        tracking_number: str | None = None,
        tracking_url: str | None = None,
        line_items: cabc.Mapping[str, int] | None = None,
        fulfillment_id: str | None = None,
        status: str = "shipped",
    ) -> Order:
        """Record a shipment of ``line_items`` (order line id -> units; default:
        every unit not yet fulfilled). ``fulfillment_id`` makes the call
        idempotent and lets a later call update the same shipment (e.g. a
        platform's fulfillment id); a new one is generated when omitted.

        :raises NotFoundError: unknown order. :raises InvalidRequestError: the
            order is canceled, or more units than remain unfulfilled.
        """

        def change(order: Order, now: dt.datetime) -> Order:
            existing = next((f for f in order.fulfillments if f.id == fulfillment_id), None)
            if existing is not None:
                updated = dataclasses.replace(
                    existing,
                    status=status,
                    carrier=carrier or existing.carrier,
                    tracking_number=tracking_number or existing.tracking_number,
                    tracking_url=tracking_url or existing.tracking_url,
                    events=existing.events if existing.status == status else existing.events + (
                        FulfillmentEvent(id=_id("fev"), type=status, occurred_at=now),),
                )
                return _replace_fulfillment(order, updated)
            if order.status == "canceled":
                raise InvalidRequestError(f"Order {order.id} is canceled; it cannot ship.")
            remaining = {line.id: line.current - line.fulfilled for line in order.line_items}
            wanted = dict(line_items) if line_items is not None else {
                k: v for k, v in remaining.items() if v > 0}
            for line_id, units in wanted.items():
                if line_id not in remaining:
                    raise InvalidRequestError(f"Order {order.id} has no line {line_id!r}.")
                if units < 1 or units > remaining[line_id]:
                    raise InvalidRequestError(
                        f"Line {line_id!r} has {remaining[line_id]} unit(s) left to ship, not {units}.")
            if not wanted:
                raise InvalidRequestError(f"Order {order.id} has nothing left to ship.")
            fulfillment = Fulfillment(
                id=fulfillment_id or _id("ful"), type="shipping", status=status,
                line_items=tuple(LineItemReference(id=k, quantity=v) for k, v in wanted.items()),
                carrier=carrier, tracking_number=tracking_number, tracking_url=tracking_url,
                events=(FulfillmentEvent(id=_id("fev"), type=status, occurred_at=now),),
            )
            lines = tuple(dataclasses.replace(line, fulfilled=line.fulfilled + wanted.get(line.id, 0))
                          for line in order.line_items)
            order = dataclasses.replace(order, line_items=lines,
                                        fulfillments=order.fulfillments + (fulfillment,))
            return dataclasses.replace(order, status=_status_after_shipping(order))

        return self._change(order_id, change)

    def deliver(self, order_id: str, *, fulfillment_id: str | None = None) -> Order:
        """Mark one fulfillment (default: every shipped one) delivered; the order
        becomes ``completed`` once everything current is fulfilled and delivered.

        :raises NotFoundError: unknown order or fulfillment.
        """

        def change(order: Order, now: dt.datetime) -> Order:
            targets = [f for f in order.fulfillments
                       if (fulfillment_id is None or f.id == fulfillment_id) and f.status != "canceled"]
            if fulfillment_id is not None and not targets:
                raise NotFoundError(f"Order {order.id} has no fulfillment {fulfillment_id!r}.")
            for fulfillment in targets:
                if fulfillment.status != "delivered":
                    order = _replace_fulfillment(order, dataclasses.replace(
                        fulfillment, status="delivered", events=fulfillment.events + (
                            FulfillmentEvent(id=_id("fev"), type="delivered", occurred_at=now),)))
            all_delivered = all(f.status in ("delivered", "canceled") for f in order.fulfillments)
            all_fulfilled = all(line.fulfilled >= line.current for line in order.line_items)
            if order.status != "canceled" and all_delivered and all_fulfilled:
                order = dataclasses.replace(order, status="completed")
            return order

        return self._change(order_id, change)

    def cancel(self, order_id: str, *, reason: str | None = None) -> Order:
        """Cancel the order: every unfulfilled unit is removed. Refunding the
        money is a separate, explicit step (:meth:`record_adjustment`, or the
        payment processor's refund through the CLI).

        :raises NotFoundError: unknown order. :raises InvalidRequestError: already completed.
        """

        def change(order: Order, now: dt.datetime) -> Order:
            if order.status == "canceled":
                return order
            if order.status == "completed":
                raise InvalidRequestError(f"Order {order.id} is completed; refund it instead.")
            lines = tuple(dataclasses.replace(line, current=line.fulfilled) for line in order.line_items)
            adjustment = Adjustment(id=_id("adj"), type="cancellation", occurred_at=now, status="completed",
                                    reason=reason, description="Order canceled by the merchant")
            return dataclasses.replace(order, status="canceled", line_items=lines,
                                       adjustments=order.adjustments + (adjustment,))

        return self._change(order_id, change)

    def set_status(self, order_id: str, status: str) -> Order:
        """Set the order-level status as a platform reports it (open string:
        created, confirmed, manual_review, processing, shipped, completed, canceled)."""
        return self._change(order_id, lambda order, now: dataclasses.replace(order, status=status))

    def record_adjustment(self, order_id: str, adjustment: Adjustment) -> Order:
        """Add or update (by ``adjustment.id``) a refund, dispute, credit...
        Idempotent: the same adjustment twice changes nothing.

        :raises NotFoundError: unknown order.
        """

        def change(order: Order, now: dt.datetime) -> Order:
            others = tuple(a for a in order.adjustments if a.id != adjustment.id)
            if len(others) == len(order.adjustments):
                return dataclasses.replace(order, adjustments=order.adjustments + (adjustment,))
            return dataclasses.replace(order, adjustments=tuple(
                adjustment if a.id == adjustment.id else a for a in order.adjustments))

        return self._change(order_id, change)

    # -- machinery -----------------------------------------------------------------

    def _session(self, order_id: str) -> tuple[CheckoutSession, Order]:
        store = self.checkout.store
        session_id = store.session_id_for_order(order_id)
        session = store.get(session_id) if session_id else None
        if session is None or session.order is None:
            raise NotFoundError(f"Order '{order_id}' does not exist.", code="order_not_found")
        return session, session.order

    def _change(self, order_id: str,
                change: cabc.Callable[[Order, dt.datetime], Order]) -> Order:
        session_id = self.checkout.store.session_id_for_order(order_id)
        if session_id is None:
            raise NotFoundError(f"Order '{order_id}' does not exist.", code="order_not_found")
        with self.checkout.locked(session_id):
            session, order = self._session(order_id)
            now = self.checkout.clock()
            updated = change(order, now)
            if updated == order:
                return order
            event = new_event(updated, session, "order_update", now)
            self.checkout.store.save(session.replace(order=updated), events=(event,))
        log.info("order %s changed: status=%s (event %s)", order_id, updated.status, event.id)
        self.checkout.on_events((event,))
        return updated


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def _replace_fulfillment(order: Order, fulfillment: Fulfillment) -> Order:
    order = dataclasses.replace(order, fulfillments=tuple(
        fulfillment if f.id == fulfillment.id else f for f in order.fulfillments))
    return dataclasses.replace(order, status=_status_after_shipping(order)) \
        if order.status not in _CLOSED else order


def _status_after_shipping(order: Order) -> str:
    if order.status in _CLOSED:
        return order.status
    shipped = any(f.status not in ("pending", "canceled") for f in order.fulfillments)
    return "shipped" if shipped else order.status
