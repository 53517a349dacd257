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

from .adapter import FulfillmentUpdate
from .adapter import PlatformOrderUpdate
from .errors import InvalidRequestError
from .errors import NotFoundError
from .errors import PaymentDeclinedError
from .errors import PaymentProviderError
from .models import Adjustment
from .models import CheckoutSession
from .models import Fulfillment
from .models import FulfillmentEvent
from .models import LineItemReference
from .models import Order
from .models import PaymentRecord
from .models import new_event
from .sessions import SessionAccess
from .settlement import Settlement

log = logging.getLogger("flask_acp")

#: order statuses after which nothing ships any more
_CLOSED = ("canceled", "completed")
#: order statuses of an order before anything ships
_BEFORE_SHIPPING = ("created", "confirmed", "manual_review", "processing")


class OrderService:
    """Report status changes, fulfillments and adjustments of orders.

    :param sessions: locked, fenced access to the sessions that hold the orders
        (shared with the checkout service: same locks, clock and event hand-off).
    :param settlement: captures, releases and refunds.
    """

    def __init__(self, sessions: SessionAccess, settlement: Settlement) -> None:
        self.sessions = sessions
        self.settlement = settlement

    def get(self, order_id: str) -> Order:
        """The order as stored.

        :raises NotFoundError: unknown order id.
        """
        return self.sessions.find_order(order_id)[1]

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

        With manual capture, the authorization is captured first (shipping is
        when the money is taken).

        :raises NotFoundError: unknown order. :raises InvalidRequestError: the
            order is canceled, or more units than remain unfulfilled.
        :raises UnavailableError: the capture could not be made now.
        """
        self._capture_if_authorized(order_id)

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
            if not targets:
                raise InvalidRequestError(f"Order {order.id} has not shipped anything yet.",
                                          code="nothing_shipped")
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
        """Cancel the order: every unfulfilled unit is removed. When nothing has
        shipped, the money goes back too: an uncaptured authorization is released,
        a captured payment is refunded in full (minus earlier refunds). After a
        partial shipment, refund what is due explicitly with :meth:`refund`.

        :raises NotFoundError: unknown order. :raises InvalidRequestError: already completed.
        :raises UnavailableError: the processor is unavailable (the order is
            canceled; run the command again to finish giving the money back).
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

        order = self._change(order_id, change)
        if all(line.fulfilled == 0 for line in order.line_items):
            order = self._give_back_payment(order_id)
        return order

    def refund(self, order_id: str, *, amount: int | None = None, refund_id: str | None = None,
               reason: str | None = None) -> Order:
        """Refund ``amount`` minor units (default: all that is not refunded yet)
        through the payment processor, recorded as a ``refund`` adjustment.

        Idempotent per ``refund_id`` (generated when omitted): the adjustment is
        written as ``pending`` before the processor is called, the processor call
        uses a key derived from it, and calling again with the same ``refund_id``
        after a failure finishes the same refund, never a second one.

        :raises NotFoundError: unknown order.
        :raises InvalidRequestError: amount below 1 or above what remains refundable,
            or a payment that is only authorized (cancel the order to release it).
        :raises UnavailableError: the processor is unavailable; retry with
            the same ``refund_id``.
        """
        refund_id = refund_id or _id("rf")
        session_id = self.sessions.order_session_id(order_id)
        with self.sessions.locked(session_id):
            session, order = self.sessions.find_order(order_id)
            payment = session.payment
            existing = next((a for a in order.adjustments if a.id == refund_id), None)
            if existing is not None and amount is not None and existing.amount != amount:
                raise InvalidRequestError(
                    f"Refund {refund_id} is for {existing.amount} minor units, not {amount}; "
                    "use a new refund id for another refund.", code="refund_id_reused")
            if existing is not None and existing.status != "pending":
                return order
            if payment is None or payment.payment_id is None:
                raise InvalidRequestError(f"Order {order_id} has no payment to refund.")
            if payment.capture_status == "authorized":
                raise InvalidRequestError(
                    f"Order {order_id}'s payment is authorized, not captured: cancel the order "
                    "to release it, or ship to capture it first.")
            taken = sum(a.amount or 0 for a in order.adjustments
                        if a.type == "refund" and a.status != "failed" and a.id != refund_id)
            refundable = (order.total or 0) - taken
            if existing is None and refundable < 1:
                raise InvalidRequestError(f"Order {order_id} is refunded in full; nothing is left to refund.",
                                          code="nothing_to_refund")
            amount = existing.amount if existing is not None and existing.amount else (
                refundable if amount is None else amount)
            if amount < 1 or amount > refundable:
                raise InvalidRequestError(
                    f"Order {order_id} can be refunded 1 to {refundable} minor units, not {amount}.")
            now = self.sessions.clock()
            pending = existing or Adjustment(
                id=refund_id, type="refund", occurred_at=now, status="pending", amount=amount,
                currency=order.currency, reason=reason)
            if existing is None:
                order = self._save(session, dataclasses.replace(
                    order, adjustments=order.adjustments + (pending,)), now)
                session, order = self.sessions.find_order(order_id)
            try:
                result = self.settlement.refund(
                    payment.payment_id, amount=amount,
                    idempotency_key=f"acp-{order_id}-refund-{refund_id}",
                    metadata={"acp_order_id": order_id, "acp_refund_id": refund_id})
                status = {"succeeded": "completed", "failed": "failed"}.get(result.status, "pending")
                description = f"Refund {result.id}"
            except (PaymentDeclinedError, PaymentProviderError) as exc:
                status, description = "failed", exc.user_message
            done = dataclasses.replace(pending, status=status, description=description)
            return self._save(session, _replace_adjustment(order, done), self.sessions.clock())

    def apply_platform_update(self, update: PlatformOrderUpdate, *, source: str) -> Order | None:
        """Apply what a platform reports (webhook or reconcile). Idempotent:
        fulfillments and adjustments are keyed by the platform's ids, refunds go
        through :meth:`refund` with refund id ``<source>-<platform refund id>``.

        The order is found by ``checkout_session_id``, else by ``platform_order_id``;
        when both are given they must agree (a platform order that merely copies
        our session id, e.g. a duplicate, is not ours).

        :param source: the platform name (``shopify``...), part of refund ids.
        :returns: the order, or None when it is not one of ours (ignored).
        :raises UnavailableError: a refund could not reach the processor yet.
        """
        session_id = update.checkout_session_id
        if session_id is None and update.platform_order_id:
            session_id = self.sessions.store.session_id_for_order(update.platform_order_id)
        session = self.sessions.store.get(session_id) if session_id else None
        if session is None or session.order is None:
            log.info("%s update about an order that is not ours (%s): ignored", source,
                     update.platform_order_id or update.checkout_session_id)
            return None
        known = session.order.platform_order_id
        if update.platform_order_id and known and update.platform_order_id != known:
            # e.g. an order duplicated on the platform, carrying our session id along
            log.warning("%s update about order %s names checkout %s, whose order is %s: ignored",
                        source, update.platform_order_id, session.id, known)
            return None
        order_id = session.order.id
        if update.fulfillments:
            self._capture_if_authorized(order_id)  # shipping is when the money is taken

        def change(order: Order, now: dt.datetime) -> Order:
            for reported in update.fulfillments:
                order = _apply_fulfillment(order, reported, now)
            if update.fulfillments and order.status not in _CLOSED \
                    and all(f.status in ("delivered", "canceled") for f in order.fulfillments) \
                    and all(line.fulfilled >= line.current for line in order.line_items):
                order = dataclasses.replace(order, status="completed")
            for adjustment in update.adjustments:
                existing = next((a for a in order.adjustments if a.id == adjustment.id), None)
                order = dataclasses.replace(order, adjustments=order.adjustments + (adjustment,)) \
                    if existing is None else _replace_adjustment(order, dataclasses.replace(
                        existing, status=adjustment.status))
            if update.canceled and order.status != "canceled":
                order = dataclasses.replace(
                    order, status="canceled",
                    line_items=tuple(dataclasses.replace(line, current=line.fulfilled)
                                     for line in order.line_items))
            elif update.status and order.status not in ("canceled",) and update.status != order.status \
                    and not (update.status in _BEFORE_SHIPPING and _has_shipped(order)):
                # a status from before shipping never undoes a shipment already reported
                order = dataclasses.replace(order, status=update.status)
            return order

        order = self._change(order_id, change)
        for refund in update.refunds:
            order = self.refund(order_id, amount=refund.amount, refund_id=f"{source}-{refund.id}",
                                reason=refund.reason)
        if update.canceled and all(line.fulfilled == 0 for line in order.line_items):
            # canceled on the platform before anything shipped: the money goes back
            # (the platform never held it), as with `flask acp orders cancel`; a refund
            # the platform reports as well finds nothing left to refund
            order = self._give_back_payment(order_id)
        return order

    def set_status(self, order_id: str, status: str) -> Order:
        """Set the order-level status as a platform reports it (open string:
        created, confirmed, manual_review, processing, shipped, completed, canceled)."""
        return self._change(order_id, lambda order, now: dataclasses.replace(order, status=status))

    def record_adjustment(self, order_id: str, adjustment: Adjustment) -> Order:
        """Add a refund, dispute, credit... or, when one with ``adjustment.id``
        exists, update its ``status`` (and ``amount`` if given). Idempotent: the
        same adjustment twice changes nothing.

        :raises NotFoundError: unknown order.
        """

        def change(order: Order, now: dt.datetime) -> Order:
            existing = next((a for a in order.adjustments if a.id == adjustment.id), None)
            if existing is None:
                return dataclasses.replace(order, adjustments=order.adjustments + (adjustment,))
            return _replace_adjustment(order, dataclasses.replace(
                existing, status=adjustment.status,
                amount=adjustment.amount if adjustment.amount is not None else existing.amount))

        return self._change(order_id, change)

    def record_refunded_total(self, order_id: str, *, refunded: int, reference: str,
                              currency: str | None = None) -> Order:
        """Catch up with refunds made outside this API (e.g. on the Stripe
        dashboard) from the processor's running total ``refunded`` (minor units
        refunded on the payment in all): what exceeds the ``refund`` adjustments
        already known (pending or completed) becomes one completed ``refund``
        adjustment, ``{reference}-refunded-{refunded}``. Idempotent.

        :raises NotFoundError: unknown order.
        """

        def change(order: Order, now: dt.datetime) -> Order:
            known = sum(a.amount or 0 for a in order.adjustments
                        if a.type == "refund" and a.status != "failed")
            if refunded <= known:
                return order
            return dataclasses.replace(order, adjustments=order.adjustments + (Adjustment(
                id=f"{reference}-refunded-{refunded}", type="refund", occurred_at=now,
                status="completed", amount=refunded - known, currency=currency or order.currency,
                description="Refunded at the payment processor"),))

        return self._change(order_id, change)

    # -- machinery -----------------------------------------------------------------

    def _change(self, order_id: str,
                change: cabc.Callable[[Order, dt.datetime], Order]) -> Order:
        with self.sessions.locked(self.sessions.order_session_id(order_id)):
            session, order = self.sessions.find_order(order_id)
            now = self.sessions.clock()
            updated = change(order, now)
            if updated == order:
                return order
            return self._save(session, updated, now)

    def _save(self, session: CheckoutSession, order: Order, now: dt.datetime,
              payment: PaymentRecord | None = None) -> Order:
        """Save the changed order with an ``order_update`` event (caller holds the lock)."""
        event = new_event(order, session, "order_update", now)
        self.sessions.save(session.replace(order=order, payment=payment or session.payment), events=(event,))
        log.info("order %s changed: status=%s (event %s)", order.id, order.status, event.id)
        return order

    def _capture_if_authorized(self, order_id: str) -> None:
        with self.sessions.locked(self.sessions.order_session_id(order_id)):
            session, order = self.sessions.find_order(order_id)
            payment = session.payment
            if payment is None or payment.capture_status != "authorized" or payment.payment_id is None:
                return
            self.settlement.capture(payment)
            self.sessions.save(session.replace(
                payment=dataclasses.replace(payment, capture_status="captured")))

    def _give_back_payment(self, order_id: str) -> Order:
        """Release the authorization, or refund what is left, of a canceled order."""
        with self.sessions.locked(self.sessions.order_session_id(order_id)):
            session, order = self.sessions.find_order(order_id)
            payment = session.payment
            if payment is None or payment.payment_id is None:
                return order
            if payment.capture_status == "authorized":
                self.settlement.void(payment)
                return self._save(session, order, self.sessions.clock(),
                                  dataclasses.replace(payment, capture_status="voided"))
        if payment.capture_status == "captured" and (order.total or 0) > order.amount_refunded:
            return self.refund(order_id, refund_id=f"rf_cancel_{order_id}", reason="order_canceled")
        return order


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def _apply_fulfillment(order: Order, reported: FulfillmentUpdate, now: dt.datetime) -> Order:
    """Add or update (by id) a fulfillment a platform reports."""
    existing = next((f for f in order.fulfillments if f.id == reported.id), None)
    if existing is not None and reported.updated_at is not None and existing.platform_updated_at is not None \
            and reported.updated_at < existing.platform_updated_at:
        return order  # an older report (a replay, or out of order): the newer state stands
    if existing is not None:
        was, now_canceled = existing.status == "canceled", reported.status == "canceled"
        if was != now_canceled:  # a canceled shipment's units are unfulfilled again (and back)
            sign = 1 if was else -1
            units = {ref.id: ref.quantity for ref in existing.line_items}
            order = dataclasses.replace(order, line_items=tuple(
                dataclasses.replace(line, fulfilled=max(0, min(line.current, line.fulfilled
                                                               + sign * units.get(line.id, 0))))
                for line in order.line_items))
        updated = dataclasses.replace(
            existing, status=reported.status,
            carrier=reported.carrier or existing.carrier,
            tracking_number=reported.tracking_number or existing.tracking_number,
            tracking_url=reported.tracking_url or existing.tracking_url,
            platform_updated_at=reported.updated_at or existing.platform_updated_at,
            events=existing.events if existing.status == reported.status else existing.events + (
                FulfillmentEvent(id=_id("fev"), type=reported.status, occurred_at=now),))
        return _replace_fulfillment(order, updated)
    remaining = {line.id: line.current - line.fulfilled for line in order.line_items}
    units = {k: min(v, remaining.get(k, 0)) for k, v in reported.line_items.items()}
    units = {k: v for k, v in units.items() if v > 0}
    if reported.status == "canceled":
        units = {}
    fulfillment = Fulfillment(
        id=reported.id, type="shipping", status=reported.status,
        line_items=tuple(LineItemReference(id=k, quantity=v) for k, v in units.items()),
        carrier=reported.carrier, tracking_number=reported.tracking_number,
        tracking_url=reported.tracking_url, platform_updated_at=reported.updated_at,
        events=(FulfillmentEvent(id=_id("fev"), type=reported.status, occurred_at=now),))
    lines = tuple(dataclasses.replace(line, fulfilled=line.fulfilled + units.get(line.id, 0))
                  for line in order.line_items)
    order = dataclasses.replace(order, line_items=lines, fulfillments=order.fulfillments + (fulfillment,))
    return dataclasses.replace(order, status=_status_after_shipping(order))


def _replace_adjustment(order: Order, adjustment: Adjustment) -> Order:
    return dataclasses.replace(order, adjustments=tuple(
        adjustment if a.id == adjustment.id else a for a in order.adjustments))


def _replace_fulfillment(order: Order, fulfillment: Fulfillment) -> Order:
    order = dataclasses.replace(order, fulfillments=tuple(
        fulfillment if f.id == fulfillment.id else f for f in order.fulfillments))
    return dataclasses.replace(order, status=_status_after_shipping(order)) \
        if order.status not in _CLOSED else order


def _has_shipped(order: Order) -> bool:
    return any(f.status not in ("pending", "canceled") for f in order.fulfillments)


def _status_after_shipping(order: Order) -> str:
    if order.status in _CLOSED:
        return order.status
    return "shipped" if _has_shipped(order) else order.status
