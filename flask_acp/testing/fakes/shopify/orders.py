"""Orders: what the merchant does to them in the admin (fulfil, track, refund,
cancel: each emits the topics Shopify sends), their GraphQL views, their REST
payloads (the webhook bodies) and ``orders(query:)``."""

from __future__ import annotations

import collections.abc as cabc
import datetime as dt
import decimal
import shlex
import typing as t

from .inventory import Inventory
from .model import D
from .model import Fulfillment
from .model import Order
from .model import OrderLine
from .model import Refund
from .model import compare_time
from .model import connection
from .model import gid
from .model import iso
from .model import parse_gid
from .model import round_money


class Orders(Inventory):
    """Orders (a layer of :class:`~flask_acp.testing.fakes.shopify.FakeShopify`)."""

    # -- merchant actions (emit webhooks) -------------------------------------------------------

    def fulfill(self, order: str | int, lines: cabc.Mapping[int, int] | None = None, *,
                tracking_company: str | None = None, tracking_number: str | None = None,
                tracking_url: str | None = None, shipment_status: str | None = None) -> dict[str, t.Any]:
        """Fulfil ``lines`` (variant id -> units; default: every unit not fulfilled
        yet) of ``order`` (GID, number or name), as the merchant does in the
        admin. Emits ``fulfillments/create``, ``orders/partially_fulfilled`` or
        ``orders/fulfilled``, then ``orders/updated``.

        :returns: the fulfillment's REST payload.
        :raises ValueError: unknown order or variant, nothing left, too many units.
        """
        with self._lock:
            target = self._order_of(order)
            if target.cancelled_at is not None:
                raise ValueError(f"order {target.name} is cancelled")
            done = self._fulfilled_units(target)
            left = {line.id: line.quantity - done.get(line.id, 0) for line in target.lines}
            by_variant = {line.variant_id: line.id for line in target.lines}
            if lines is None:
                wanted = {k: v for k, v in left.items() if v > 0}
            else:
                wanted = {}
                for variant_id, units in lines.items():
                    line_id = by_variant.get(int(variant_id))
                    if line_id is None or units < 1 or units > left[line_id]:
                        raise ValueError(
                            f"order {target.name}: cannot fulfil {units} of variant {variant_id}")
                    wanted[line_id] = units
            if not wanted:
                raise ValueError(f"order {target.name} has nothing left to fulfil")
            now = self.now()
            fulfillment = Fulfillment(
                id=self._new_id(), order=target.number, name=f"{target.name}.{len(target.fulfillments) + 1}",
                lines=wanted, created_at=now, updated_at=now, shipment_status=shipment_status,
                tracking_company=tracking_company, tracking_number=tracking_number, tracking_url=tracking_url)
            self._track(fulfillment, now)
            target.fulfillments.append(fulfillment)
            target.updated_at = now
            payload = self._fulfillment_rest(target, fulfillment)
            self.emit("fulfillments/create", payload)
            complete = self._fulfillment_state(target) == "fulfilled"
            self.emit("orders/fulfilled" if complete else "orders/partially_fulfilled",
                      self._order_rest(target))
            self.emit("orders/updated", self._order_rest(target))
            return payload

    def update_fulfillment(self, fulfillment_id: str | int, *, shipment_status: str | None = None,
                           status: str | None = None, tracking_company: str | None = None,
                           tracking_number: str | None = None,
                           tracking_url: str | None = None) -> dict[str, t.Any]:
        """Change a fulfillment (GID or number): its carrier ``shipment_status``
        (``in_transit``, ``out_for_delivery``, ``delivered``, ``failure``...),
        its ``status`` (``cancelled``) or its tracking. Emits
        ``fulfillments/update`` then ``orders/updated``.

        :returns: the fulfillment's REST payload.
        :raises ValueError: unknown fulfillment.
        """
        number = fulfillment_id if isinstance(fulfillment_id, int) else (parse_gid(fulfillment_id)
                                                                         or ("", int(str(fulfillment_id))))[1]
        with self._lock:
            found = next(((o, f) for o in self.orders.values() for f in o.fulfillments if f.id == number),
                         None)
            if found is None:
                raise ValueError(f"no fulfillment {fulfillment_id!r}")
            target, fulfillment = found
            now = self.now()
            if shipment_status is not None:
                fulfillment.shipment_status = shipment_status
            if status is not None:
                fulfillment.status = status
            for attr, value in (("tracking_company", tracking_company), ("tracking_number", tracking_number),
                                ("tracking_url", tracking_url)):
                if value is not None:
                    setattr(fulfillment, attr, value)
            self._track(fulfillment, now)
            fulfillment.updated_at = target.updated_at = now
            payload = self._fulfillment_rest(target, fulfillment)
            self.emit("fulfillments/update", payload)
            self.emit("orders/updated", self._order_rest(target))
            return payload

    def refund(self, order: str | int, amount: str | None = None, *,
               note: str | None = None) -> dict[str, t.Any]:
        """Refund ``amount`` (a decimal string in the order's presentment currency;
        default: all that is not refunded yet) on ``order``, as the merchant does
        in the admin: one ``refund`` transaction on the ``manual`` gateway (the
        order was paid outside Shopify). Emits ``refunds/create`` then
        ``orders/updated``.

        :returns: the refund's REST payload.
        :raises ValueError: unknown order, or an amount of 0 or above what is left.
        """
        with self._lock:
            target = self._order_of(order)
            payload = self._add_refund(target, amount, note)
            self.emit("refunds/create", payload)
            self.emit("orders/updated", self._order_rest(target))
            return payload

    def cancel(self, order: str | int, *, reason: str = "customer", refund: bool = False,
               note: str | None = None) -> dict[str, t.Any]:
        """Cancel ``order`` as the merchant does in the admin (``reason``: customer,
        declined, fraud, inventory, other, staff); with ``refund``, everything not
        refunded yet is refunded first (``refunds/create``). Emits
        ``orders/cancelled`` then ``orders/updated``.

        :returns: the order's REST payload.
        :raises ValueError: unknown order, or already cancelled.
        """
        with self._lock:
            target = self._order_of(order)
            if target.cancelled_at is not None:
                raise ValueError(f"order {target.name} is already cancelled")
            if refund and self._refundable(target) > 0:
                self.emit("refunds/create", self._add_refund(target, None, note))
            target.cancelled_at = target.updated_at = self.now()
            target.cancel_reason = reason.upper()
            payload = self._order_rest(target)
            self.emit("orders/cancelled", payload)
            self.emit("orders/updated", payload)
            return payload

    def order(self, order: str | int) -> dict[str, t.Any]:
        """An order's REST payload (what its ``orders/updated`` webhook carries)."""
        with self._lock:
            return self._order_rest(self._order_of(order))

    def _order_of(self, order: str | int) -> Order:
        text = str(order)
        parsed = parse_gid(text)
        number = parsed[1] if parsed and parsed[0] == "Order" else \
            int(text.lstrip("#")) if text.lstrip("#").isdigit() else None
        found = self.orders.get(number) if number is not None else None
        if found is None:
            raise ValueError(f"no order {order!r}")
        return found

    def _track(self, fulfillment: Fulfillment, now: dt.datetime) -> None:
        if fulfillment.shipment_status in ("in_transit", "out_for_delivery", "delivered") \
                and fulfillment.in_transit_at is None:
            fulfillment.in_transit_at = now
        if fulfillment.shipment_status == "delivered" and fulfillment.delivered_at is None:
            fulfillment.delivered_at = now

    def _refundable(self, order: Order) -> decimal.Decimal:
        total = D(str(order.money["totalPriceSet"]["presentmentMoney"]["amount"]))
        return total - sum((r.amount[order.presentment] for r in order.refunds), D(0))

    def _add_refund(self, order: Order, amount: str | None, note: str | None) -> dict[str, t.Any]:
        left = self._refundable(order)
        value = left if amount is None else D(str(amount))
        if value <= 0 or value > left or value != round_money(value, order.presentment):
            raise ValueError(f"order {order.name}: cannot refund {value} {order.presentment} "
                             f"({left} refundable)")
        amounts = {order.presentment: value}
        if order.presentment != self.currency:
            amounts[self.currency] = round_money(value / self.fx[order.presentment], self.currency)
        refund = Refund(id=self._new_id(), transaction_id=self._new_id(), order=order.number,
                        amount=amounts, created_at=self.now(), note=note)
        order.refunds.append(refund)
        order.updated_at = refund.created_at
        return self._refund_rest(order, refund)

    # -- views ---------------------------------------------------------------------------------

    def order_list(self) -> list[dict[str, t.Any]]:
        with self._lock:
            return [self._order_view(o) for o in self.orders.values()]

    def _order_view(self, order: Order) -> dict[str, t.Any]:
        cur = order.presentment
        currencies = [self.currency] + ([cur] if cur != self.currency else [])
        refunded = {c: sum((r.amount[c] for r in order.refunds), D(0)) for c in currencies}
        state = self._fulfillment_state(order)
        return {
            "__typename": "Order",
            "id": gid("Order", order.number),
            "legacyResourceId": str(order.number),
            "name": order.name,
            "createdAt": iso(order.created_at),
            "updatedAt": iso(order.updated_at or order.created_at),
            "cancelledAt": iso(order.cancelled_at) if order.cancelled_at else None,
            "cancelReason": order.cancel_reason,
            "closed": order.closed_at is not None,
            "closedAt": iso(order.closed_at) if order.closed_at else None,
            "email": order.email,
            "currencyCode": self.currency,
            "presentmentCurrencyCode": order.presentment,
            "displayFinancialStatus": self._financial_status(order).upper(),
            "displayFulfillmentStatus": {"fulfilled": "FULFILLED", "partial": "PARTIALLY_FULFILLED"}.get(
                state or "", "UNFULFILLED"),
            "statusPageUrl": f"{self.url}/73011/orders/{order.token}/authenticate?key={order.token[:16]}",
            "tags": list(order.tags),
            "customAttributes": [dict(a) for a in order.attributes],
            "lineItems": connection([self._line_view(order, line) for line in order.lines],
                                     lambda n: str(n["id"])),
            "fulfillments": [self._fulfillment_view(order, f) for f in order.fulfillments],
            "refunds": [self._refund_view(order, r) for r in order.refunds],
            "totalRefundedSet": self._bag(refunded, cur),
            **order.money,
        }

    def _line_view(self, order: Order, line: OrderLine) -> dict[str, t.Any]:
        variant = self.variants.get(line.variant_id)
        fulfilled = self._fulfilled_units(order).get(line.id, 0)
        return {"__typename": "LineItem", "id": gid("LineItem", line.id), "name": self._line_name(line),
                "title": line.title, "variantTitle": line.variant_title, "sku": line.sku,
                "quantity": line.quantity, "currentQuantity": line.quantity,
                "unfulfilledQuantity": max(0, line.quantity - fulfilled) if order.cancelled_at is None else 0,
                "requiresShipping": line.requires_shipping, "customAttributes": [],
                "variant": self._variant_view(variant) if variant is not None else None}

    def _fulfillment_view(self, order: Order, fulfillment: Fulfillment) -> dict[str, t.Any]:
        lines = {line.id: line for line in order.lines}
        display = (fulfillment.shipment_status or "fulfilled").upper()
        if fulfillment.status in ("cancelled", "error", "failure"):
            display = "CANCELED" if fulfillment.status == "cancelled" else "FAILURE"
        tracking = [{"company": fulfillment.tracking_company, "number": fulfillment.tracking_number,
                     "url": fulfillment.tracking_url}] \
            if fulfillment.tracking_number or fulfillment.tracking_company else []
        items = [{"__typename": "FulfillmentLineItem",
                  "id": gid("FulfillmentLineItem", fulfillment.id * 100 + i),
                  "quantity": units, "lineItem": self._line_view(order, lines[line_id])}
                 for i, (line_id, units) in enumerate(fulfillment.lines.items())]
        return {"__typename": "Fulfillment", "id": gid("Fulfillment", fulfillment.id),
                "legacyResourceId": str(fulfillment.id), "name": fulfillment.name,
                "status": fulfillment.status.upper(), "displayStatus": display,
                "createdAt": iso(fulfillment.created_at), "updatedAt": iso(fulfillment.updated_at),
                "inTransitAt": iso(fulfillment.in_transit_at) if fulfillment.in_transit_at else None,
                "deliveredAt": iso(fulfillment.delivered_at) if fulfillment.delivered_at else None,
                "totalQuantity": sum(fulfillment.lines.values()), "trackingInfo": tracking,
                "fulfillmentLineItems": connection(items, lambda n: str(n["id"]))}

    def _refund_view(self, order: Order, refund: Refund) -> dict[str, t.Any]:
        bag = self._bag(refund.amount, order.presentment)
        transaction = {"__typename": "OrderTransaction",
                       "id": gid("OrderTransaction", refund.transaction_id), "kind": "REFUND",
                       "status": "SUCCESS", "gateway": "manual", "amountSet": bag,
                       "createdAt": iso(refund.created_at), "processedAt": iso(refund.created_at)}
        return {"__typename": "Refund", "id": gid("Refund", refund.id), "legacyResourceId": str(refund.id),
                "note": refund.note, "createdAt": iso(refund.created_at),
                "updatedAt": iso(refund.created_at),
                "totalRefundedSet": bag,
                "transactions": connection([transaction], lambda n: str(n["id"]))}

    # -- REST payloads (webhook bodies: snake_case, numeric ids, amounts as strings) -----------

    def _rest_amount(self, value: decimal.Decimal, currency: str) -> str:
        return str(round_money(value, currency))

    def _rest_set(self, amounts: cabc.Mapping[str, decimal.Decimal], presentment: str) -> dict[str, t.Any]:
        return {"shop_money": {"amount": self._rest_amount(amounts[self.currency], self.currency),
                               "currency_code": self.currency},
                "presentment_money": {"amount": self._rest_amount(amounts[presentment], presentment),
                                      "currency_code": presentment}}

    @staticmethod
    def _bag_amounts(bag: cabc.Mapping[str, t.Any]) -> dict[str, decimal.Decimal]:
        sides = (bag["shopMoney"], bag["presentmentMoney"])
        return {side["currencyCode"]: D(str(side["amount"])) for side in sides}

    @staticmethod
    def _line_name(line: OrderLine) -> str:
        return f"{line.title} - {line.variant_title}" if line.variant_title else line.title

    def _fulfilled_units(self, order: Order) -> dict[int, int]:
        done: dict[int, int] = {}
        for fulfillment in order.fulfillments:
            if fulfillment.status in ("success", "pending", "open"):
                for line_id, units in fulfillment.lines.items():
                    done[line_id] = done.get(line_id, 0) + units
        return done

    def _fulfillment_state(self, order: Order) -> str | None:
        """REST ``fulfillment_status``: ``None`` (nothing), ``partial`` or ``fulfilled``."""
        done = self._fulfilled_units(order)
        shipped = sum(done.values())
        if not shipped:
            return None
        complete = all(done.get(line.id, 0) >= line.quantity for line in order.lines)
        return "fulfilled" if complete else "partial"

    def _financial_status(self, order: Order) -> str:
        if not order.refunds:
            return "paid"
        return "refunded" if self._refundable(order) <= 0 else "partially_refunded"

    def _line_rest(self, order: Order, line: OrderLine, quantity: int | None = None) -> dict[str, t.Any]:
        variant = self.variants.get(line.variant_id)
        fulfilled = self._fulfilled_units(order).get(line.id, 0)
        unit = line.unit[order.presentment]
        amounts = {c: v for c, v in line.unit.items()}
        return {"id": line.id, "admin_graphql_api_id": gid("LineItem", line.id),
                "variant_id": line.variant_id, "product_id": variant.product_id if variant else None,
                "title": line.title, "variant_title": line.variant_title, "name": self._line_name(line),
                "sku": line.sku, "quantity": line.quantity if quantity is None else quantity,
                "current_quantity": line.quantity,
                "fulfillable_quantity": 0 if order.cancelled_at else max(0, line.quantity - fulfilled),
                "fulfillment_status": None if not fulfilled else
                "fulfilled" if fulfilled >= line.quantity else "partial",
                "requires_shipping": line.requires_shipping, "taxable": bool(variant and variant.taxable),
                "gift_card": False, "properties": [],
                "price": self._rest_amount(unit, order.presentment),
                "price_set": self._rest_set(amounts, order.presentment)}

    def _fulfillment_rest(self, order: Order, fulfillment: Fulfillment) -> dict[str, t.Any]:
        lines = {line.id: line for line in order.lines}
        return {
            "id": fulfillment.id, "admin_graphql_api_id": gid("Fulfillment", fulfillment.id),
            "order_id": order.number, "name": fulfillment.name, "status": fulfillment.status,
            "shipment_status": fulfillment.shipment_status, "service": "manual", "location_id": 1,
            "created_at": iso(fulfillment.created_at), "updated_at": iso(fulfillment.updated_at),
            "tracking_company": fulfillment.tracking_company, "tracking_number": fulfillment.tracking_number,
            "tracking_numbers": [fulfillment.tracking_number] if fulfillment.tracking_number else [],
            "tracking_url": fulfillment.tracking_url,
            "tracking_urls": [fulfillment.tracking_url] if fulfillment.tracking_url else [],
            "origin_address": {}, "receipt": {},
            "line_items": [self._line_rest(order, lines[line_id], units)
                           for line_id, units in fulfillment.lines.items()],
        }

    def _refund_rest(self, order: Order, refund: Refund) -> dict[str, t.Any]:
        cur = order.presentment
        return {
            "id": refund.id, "admin_graphql_api_id": gid("Refund", refund.id), "order_id": order.number,
            "created_at": iso(refund.created_at), "processed_at": iso(refund.created_at),
            "note": refund.note, "restock": False, "user_id": None, "refund_line_items": [],
            "order_adjustments": [], "duties": [], "refund_shipping_lines": [],
            "transactions": [{
                "id": refund.transaction_id,
                "admin_graphql_api_id": gid("OrderTransaction", refund.transaction_id),
                "order_id": order.number, "kind": "refund", "gateway": "manual", "status": "success",
                "message": "Refunded", "created_at": iso(refund.created_at),
                "processed_at": iso(refund.created_at), "test": False, "parent_id": None,
                "source_name": "web", "manual_payment_gateway": True,
                "amount": self._rest_amount(refund.amount[cur], cur), "currency": cur,
            }],
        }

    def _order_rest(self, order: Order) -> dict[str, t.Any]:
        cur = order.presentment
        money = {key: self._bag_amounts(order.money[key])
                 for key in ("totalPriceSet", "subtotalPriceSet", "totalTaxSet", "totalShippingPriceSet")}

        def amount(key: str) -> str:
            return self._rest_amount(money[key][self.currency], self.currency)

        return {
            "id": order.number, "admin_graphql_api_id": gid("Order", order.number), "name": order.name,
            "order_number": order.number, "email": order.email, "contact_email": order.email,
            "created_at": iso(order.created_at), "updated_at": iso(order.updated_at or order.created_at),
            "processed_at": iso(order.created_at),
            "cancelled_at": iso(order.cancelled_at) if order.cancelled_at else None,
            "cancel_reason": order.cancel_reason.lower() if order.cancel_reason else None,
            "closed_at": iso(order.closed_at) if order.closed_at else None,
            "currency": self.currency, "presentment_currency": cur,
            "financial_status": self._financial_status(order),
            "fulfillment_status": self._fulfillment_state(order),
            "source_name": "shopify_draft_order", "test": False, "confirmed": True,
            "tags": ", ".join(order.tags),
            "note_attributes": [{"name": a["key"], "value": a["value"]} for a in order.attributes],
            "order_status_url": f"{self.url}/73011/orders/{order.token}/authenticate?key={order.token[:16]}",
            "total_price": amount("totalPriceSet"), "subtotal_price": amount("subtotalPriceSet"),
            "total_tax": amount("totalTaxSet"),
            "total_price_set": self._rest_set(money["totalPriceSet"], cur),
            "subtotal_price_set": self._rest_set(money["subtotalPriceSet"], cur),
            "total_tax_set": self._rest_set(money["totalTaxSet"], cur),
            "total_shipping_price_set": self._rest_set(money["totalShippingPriceSet"], cur),
            "line_items": [self._line_rest(order, line) for line in order.lines],
            "fulfillments": [self._fulfillment_rest(order, f) for f in order.fulfillments],
            "refunds": [self._refund_rest(order, r) for r in order.refunds],
        }

    # -- search --------------------------------------------------------------------------------

    def _order_search(self, query: str | None, sort_key: str, reverse: bool) -> list[Order]:
        """``orders(query:)``: ``tag:``, ``status:`` (open, closed, cancelled,
        not_closed, any), ``updated_at:`` / ``created_at:`` with ``<``, ``<=``,
        ``>``, ``>=`` (a plain value matches the same second)."""
        orders = list(self.orders.values())
        for term in shlex.split(query or ""):
            field, _, value = term.partition(":")
            field, value = field.lower(), value.strip()
            if field == "tag":
                orders = [o for o in orders if value in o.tags]
            elif field == "status":
                status = value.lower()
                if status == "open":
                    orders = [o for o in orders if o.closed_at is None and o.cancelled_at is None]
                elif status == "closed":
                    orders = [o for o in orders if o.closed_at is not None]
                elif status == "cancelled":
                    orders = [o for o in orders if o.cancelled_at is not None]
                elif status == "not_closed":
                    orders = [o for o in orders if o.closed_at is None]
            elif field in ("updated_at", "created_at"):
                orders = [o for o in orders if compare_time(
                    (o.updated_at or o.created_at) if field == "updated_at" else o.created_at, value)]
        keys: dict[str, cabc.Callable[[Order], t.Any]] = {
            "UPDATED_AT": lambda o: (o.updated_at or o.created_at, o.number),
            "CREATED_AT": lambda o: (o.created_at, o.number),
            "PROCESSED_AT": lambda o: (o.created_at, o.number),
        }
        orders.sort(key=keys.get(sort_key, lambda o: o.number))
        if reverse:
            orders.reverse()
        return orders

