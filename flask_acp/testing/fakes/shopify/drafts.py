"""Draft orders: the ``DraftOrderInput`` they are created and updated with,
completion into an order, deletion, ``tagsAdd``, the delivery options of an
address, ``draftOrders(query:)`` and the draft views (``ready`` after a delay)."""

from __future__ import annotations

import decimal
import secrets
import shlex
import typing as t

from graphql import GraphQLError

from .model import D
from .model import Draft
from .model import Line
from .model import Order
from .model import OrderLine
from .model import compare_time
from .model import connection
from .model import gid
from .model import iso
from .model import parse_gid
from .model import parse_time
from .model import round_money
from .model import shopify_decimal
from .orders import Orders

_NO_DRAFT = {"field": ["id"], "message": "Draft order does not exist"}
_COMPLETED = "This draft order has already been completed"


class Drafts(Orders):
    """Draft orders (a layer of :class:`~flask_acp.testing.fakes.shopify.FakeShopify`)."""

    # -- inspection -------------------------------------------------------------------------

    def draft(self, draft_id: str | int) -> dict[str, t.Any] | None:
        """A draft as the API shows it (``ready`` forced, no read counted)."""
        number = draft_id if isinstance(draft_id, int) else (parse_gid(draft_id) or ("", -1))[1]
        with self._lock:
            draft = self.drafts.get(number)
            return None if draft is None else self._draft_view(draft, count_read=False, force_ready=True)

    def draft_list(self) -> list[dict[str, t.Any]]:
        with self._lock:
            return [self._draft_view(d, count_read=False, force_ready=True) for d in self.drafts.values()]

    def _draft_view(self, draft: Draft, *, count_read: bool, force_ready: bool = False) -> dict[str, t.Any]:
        ready = force_ready or draft.unready_reads <= 0
        if count_read and draft.unready_reads > 0:
            draft.unready_reads -= 1
        money = self._money(draft, calculated=ready)
        cur = draft.presentment
        title = f"{draft.address.get('countryCode')} Tax" if draft.address else "Tax"
        nodes = []
        for index, line in enumerate(draft.lines):
            variant = self.variants.get(line.variant_id)
            row = money["lines"][index]
            original = self._bag(row["original"], cur)
            tax_lines = ([{"title": title, "priceSet": self._bag(row["tax"], cur)}]
                         if any(row["tax"].values()) else [])
            discounted = self._bag({c: row["original"][c] - row["discount"][c] for c in money["currencies"]},
                                   cur)
            nodes.append({
                "__typename": "DraftOrderLineItem",
                "id": gid("DraftOrderLineItem", draft.number * 1000 + index),
                "uuid": line.uuid, "quantity": line.quantity, "custom": False, "customAttributes": [],
                "name": f"{variant.product_title} - {variant.title}" if variant else "Deleted",
                "title": variant.product_title if variant else "Deleted",
                "variantTitle": variant.title if variant else None,
                "sku": variant.sku if variant else None,
                "requiresShipping": variant.requires_shipping if variant else True,
                "taxable": variant.taxable if variant else False,
                "variant": self._variant_view(variant) if variant else None,
                "product": self._product_view(variant) if variant else None,
                "originalTotalSet": original, "discountedTotalSet": discounted,
                "totalDiscountSet": self._bag(row["discount"], cur),
                "originalUnitPriceSet": self._bag(line.unit, cur),
                "priceOverride": {"amount": shopify_decimal(line.unit[cur]), "currencyCode": cur}
                if line.override else None,
                "taxLines": tax_lines,
            })
        totals = money["totals"]

        def bag(key: str) -> dict[str, t.Any]:
            return self._bag({c: totals[c][key] for c in money["currencies"]}, cur)

        shipping = None
        if draft.shipping is not None:
            ship_tax = bag("ship_tax")
            shipping = {"title": draft.shipping["title"], "code": draft.shipping["code"],
                        "source": draft.shipping["source"], "shippingRateHandle": draft.shipping["handle"],
                        "custom": draft.shipping["handle"] is None, "id": None,
                        "originalPriceSet": bag("shipping"), "discountedPriceSet": bag("shipping"),
                        "taxLines": [{"title": title, "priceSet": ship_tax}]
                        if any(totals[c]["ship_tax"] for c in money["currencies"]) else []}
        address = None
        if draft.address:
            a = draft.address
            address = {"__typename": "MailingAddress", "id": gid("MailingAddress", draft.number),
                       "address1": a.get("address1"), "address2": a.get("address2"), "city": a.get("city"),
                       "company": a.get("company"), "countryCodeV2": a.get("countryCode"),
                       "firstName": a.get("firstName"), "lastName": a.get("lastName"),
                       "name": " ".join(x for x in (a.get("firstName"), a.get("lastName")) if x) or None,
                       "phone": a.get("phone"), "provinceCode": a.get("provinceCode"), "zip": a.get("zip")}
        platform_discounts = []
        for row in money["discounts"]:
            discount = row["discount"]
            amounts = {c: sum((part.get(c, D(0)) for part in row["lines"]), D(0))
                       for c in money["currencies"]}
            if discount.percentage is not None:
                summary = f"{shopify_decimal(discount.percentage * 100)}% off"
            else:
                summary = f"{shopify_decimal(t.cast(decimal.Decimal, discount.amount))} {self.currency} off"
            platform_discounts.append({
                "__typename": "DraftOrderPlatformDiscount",
                "id": gid("DiscountCodeNode", discount.id), "code": discount.code, "title": discount.title,
                "automaticDiscount": False, "bxgyDiscount": False,
                "presentationLevel": "line" if discount.percentage is not None else "order",
                "shortSummary": summary, "summary": summary,
                "totalAmount": self._bag(amounts, cur)["shopMoney"],
                "totalAmountPriceSet": self._bag(amounts, cur),
                "allocations": [
                    {"__typename": "DraftOrderPlatformDiscountAllocation", "id": None,
                     "quantity": draft.lines[index].quantity,
                     "reductionAmount": self._bag(part, cur)["shopMoney"],
                     "reductionAmountSet": self._bag(part, cur), "target": nodes[index]}
                    for index, part in enumerate(row["lines"]) if any(part.values())],
            })
        return {
            "__typename": "DraftOrder",
            "id": gid("DraftOrder", draft.number),
            "legacyResourceId": str(draft.number),
            "name": f"#D{draft.number}",
            "status": draft.status,
            "ready": ready,
            "reserveInventoryUntil": iso(draft.reserve_until) if draft.reserve_until else None,
            "createdAt": iso(draft.created_at),
            "updatedAt": iso(draft.updated_at),
            "completedAt": iso(draft.completed_at) if draft.completed_at else None,
            "currencyCode": self.currency,
            "presentmentCurrencyCode": draft.presentment,
            "taxesIncluded": self.taxes_included,
            "acceptAutomaticDiscounts": draft.accept_automatic_discounts,
            "email": draft.email,
            "phone": draft.phone,
            "tags": list(draft.tags),
            "customAttributes": [dict(a) for a in draft.attributes],
            "shippingAddress": address,
            "lineItems": connection(nodes, lambda n: str(n["id"])),
            "shippingLine": shipping,
            "subtotalPriceSet": bag("subtotal"),
            "lineItemsSubtotalPrice": bag("subtotal"),
            "totalLineItemsPriceSet": bag("subtotal"),
            "totalDiscountsSet": bag("discounts"),
            "discountCodes": [row["discount"].code for row in money["discounts"]],
            "platformDiscounts": platform_discounts,
            "totalShippingPriceSet": bag("shipping"),
            "totalTaxSet": bag("tax"),
            "totalPriceSet": bag("total"),
            "warnings": list(money["warnings"]),
            "order": self._order_view(self.orders[draft.order]) if draft.order is not None else None,
        }

    # -- resolvers (called by _Root under the lock) --------------------------------------------

    def _apply_input(self, draft: Draft, data: dict[str, t.Any], *,
                     creating: bool) -> list[dict[str, t.Any]]:
        """Validate and apply a ``DraftOrderInput``; returns userErrors (nothing applied then)."""
        errors: list[dict[str, t.Any]] = []
        presentment = str(data.get("presentmentCurrencyCode") or draft.presentment).upper()
        if presentment not in self.fx:
            errors.append({"field": ["presentmentCurrencyCode"],
                           "message": f"Presentment currency {presentment} is not enabled for this shop"})
        lines: list[Line] | None = None
        if "lineItems" in data and data["lineItems"] is not None:
            lines = []
            for index, item in enumerate(data["lineItems"]):
                parsed = parse_gid(item.get("variantId"))
                variant = self.variants.get(parsed[1]) if parsed and parsed[0] == "ProductVariant" else None
                if variant is None:
                    errors.append({"field": ["lineItems", str(index), "variantId"],
                                   "message": "Product variant does not exist"})
                    continue
                if int(item.get("quantity") or 0) < 1:
                    errors.append({"field": ["lineItems", str(index), "quantity"],
                                   "message": "Quantity must be greater than or equal to 1"})
                    continue
                override: tuple[decimal.Decimal, str] | None = None
                if item.get("priceOverride") is not None:
                    amount = D(str(item["priceOverride"]["amount"]))
                    code = str(item["priceOverride"]["currencyCode"]).upper()
                    if code not in self.fx or amount < 0:
                        errors.append({"field": ["lineItems", str(index), "priceOverride"],
                                       "message": "Price override must be a non-negative amount in a "
                                                  "currency of the shop"})
                        continue
                    override = (amount, code)
                if presentment in self.fx:
                    lines.append(Line(uuid=str(item.get("uuid") or secrets.token_hex(8)),
                                      variant_id=variant.id, quantity=int(item["quantity"]),
                                      unit=self._override_prices(override, presentment) if override
                                      else self._unit_prices(variant, presentment), override=override))
            if creating and not data["lineItems"]:
                errors.append({"field": ["lineItems"], "message": "Line items can't be blank"})
        elif creating:
            errors.append({"field": ["lineItems"], "message": "Line items can't be blank"})
        address = data.get("shippingAddress", draft.address)
        shipping: dict[str, t.Any] | None | bool = False  # False: unchanged
        if "shippingLine" in data:
            spec = data["shippingLine"]
            if spec is None:
                shipping = None
            elif spec.get("shippingRateHandle"):
                rate = self._handles.get(str(spec["shippingRateHandle"]))
                country = str((address or {}).get("countryCode") or "").upper()
                if rate is None or rate["country"] not in (country, "*"):
                    errors.append({"field": ["shippingLine", "shippingRateHandle"],
                                   "message": "Shipping rate is not available for this draft order"})
                else:
                    shipping = dict(rate)
            elif spec.get("title") and spec.get("priceWithCurrency"):
                price = D(str(spec["priceWithCurrency"]["amount"]))
                shipping = {"title": spec["title"], "code": "custom", "source": "shopify", "handle": None,
                            "price": {self.currency: price}}
        if errors:
            return errors
        draft.presentment = presentment
        if lines is not None:
            draft.lines = lines
        elif "presentmentCurrencyCode" in data:
            for line in draft.lines:
                line.unit = (self._override_prices(line.override, presentment) if line.override
                             else self._unit_prices(self.variants[line.variant_id], presentment))
        if "shippingAddress" in data:
            draft.address = dict(data["shippingAddress"]) if data["shippingAddress"] else None
        if shipping is not False:
            draft.shipping = shipping if isinstance(shipping, dict) else None
        if isinstance(draft.shipping, dict):
            base = draft.shipping["price"][self.currency]
            draft.shipping["price"] = {self.currency: base}
            if draft.presentment != self.currency:
                draft.shipping["price"][draft.presentment] = round_money(base * self.fx[draft.presentment],
                                                                         draft.presentment)
        for key, attr in (("email", "email"), ("phone", "phone")):
            if key in data:
                setattr(draft, attr, data[key])
        if "customAttributes" in data and data["customAttributes"] is not None:
            draft.attributes = [{"key": a["key"], "value": a["value"]} for a in data["customAttributes"]]
        if "tags" in data and data["tags"] is not None:
            draft.tags = list(dict.fromkeys(data["tags"]))
        if "reserveInventoryUntil" in data:
            value = data["reserveInventoryUntil"]
            draft.reserve_until = parse_time(value) if value else None
        if "acceptAutomaticDiscounts" in data:
            draft.accept_automatic_discounts = data["acceptAutomaticDiscounts"]
        if data.get("discountCodes") is not None:
            draft.discount_codes = [str(c) for c in data["discountCodes"]]
        draft.updated_at = self.now()
        draft.unready_reads = self.ready_delay_reads
        return []

    def _create(self, data: dict[str, t.Any]) -> dict[str, t.Any]:
        number = self._next_draft
        now = self.now()
        draft = Draft(number=number, created_at=now, updated_at=now, presentment=self.currency)
        errors = self._apply_input(draft, data, creating=True)
        if errors:
            return {"draftOrder": None, "userErrors": errors}
        self.drafts[number] = draft
        self._next_draft += 1
        self.emit("draft_orders/create", {"id": number, "admin_graphql_api_id": gid("DraftOrder", number)})
        return {"draftOrder": self._draft_view(draft, count_read=True), "userErrors": []}

    def _lookup_draft(self, draft_id: t.Any) -> Draft | None:
        parsed = parse_gid(draft_id)
        if parsed is None or parsed[0] != "DraftOrder":
            return None
        return self.drafts.get(parsed[1])

    def _update(self, draft_id: t.Any, data: dict[str, t.Any]) -> dict[str, t.Any]:
        draft = self._lookup_draft(draft_id)
        if draft is None:
            return {"draftOrder": None, "userErrors": [_NO_DRAFT]}
        if draft.status == "COMPLETED":
            return {"draftOrder": None,
                    "userErrors": [{"field": ["id"], "message": _COMPLETED}]}
        errors = self._apply_input(draft, data, creating=False)
        if errors:
            return {"draftOrder": None, "userErrors": errors}
        self.emit("draft_orders/update", {"id": draft.number,
                                          "admin_graphql_api_id": gid("DraftOrder", draft.number)})
        return {"draftOrder": self._draft_view(draft, count_read=True), "userErrors": []}

    def _complete(self, draft_id: t.Any) -> dict[str, t.Any]:
        draft = self._lookup_draft(draft_id)
        if draft is None:
            return {"draftOrder": None, "userErrors": [_NO_DRAFT]}
        if draft.status == "COMPLETED":
            return {"draftOrder": self._draft_view(draft, count_read=False, force_ready=True),
                    "userErrors": [{"field": None, "message": _COMPLETED}]}
        view = self._draft_view(draft, count_read=False, force_ready=True)
        for code in view["discountCodes"]:
            self.discount_codes[code.casefold()].usage_count += 1
        number = self._next_order
        self._next_order += 1
        for line in draft.lines:
            variant = self.variants.get(line.variant_id)
            if variant is not None and variant.tracked:
                variant.inventory -= line.quantity
        lines = []
        for line in draft.lines:
            variant = self.variants.get(line.variant_id)
            lines.append(OrderLine(
                id=self._new_id(), variant_id=line.variant_id, quantity=line.quantity, unit=dict(line.unit),
                title=variant.product_title if variant else "Deleted",
                variant_title=variant.title if variant else None, sku=variant.sku if variant else None,
                requires_shipping=variant.requires_shipping if variant else True))
        now = self.now()
        self.orders[number] = Order(
            number=number, name=f"#{number}", draft=draft.number, created_at=now, updated_at=now,
            money={k: view[k] for k in ("totalPriceSet", "subtotalPriceSet", "totalTaxSet",
                                       "totalShippingPriceSet")},
            tags=list(draft.tags), attributes=[dict(a) for a in draft.attributes], email=draft.email,
            presentment=draft.presentment, token=secrets.token_hex(16), lines=lines)
        draft.status = "COMPLETED"
        draft.completed_at = draft.updated_at = self.now()
        draft.order = number
        self.emit("orders/create", self._order_rest(self.orders[number]))
        return {"draftOrder": self._draft_view(draft, count_read=False, force_ready=True), "userErrors": []}

    def _delete(self, data: dict[str, t.Any]) -> dict[str, t.Any]:
        draft = self._lookup_draft(data.get("id"))
        if draft is None:
            return {"deletedId": None, "userErrors": [_NO_DRAFT]}
        if draft.status == "COMPLETED":
            return {"deletedId": None,
                    "userErrors": [{"field": ["id"], "message": "A completed draft order cannot be deleted"}]}
        del self.drafts[draft.number]
        self.emit("draft_orders/delete", {"id": draft.number,
                                          "admin_graphql_api_id": gid("DraftOrder", draft.number)})
        return {"deletedId": gid("DraftOrder", draft.number), "userErrors": []}

    def _tags_add(self, resource_id: t.Any, tags: list[str]) -> dict[str, t.Any]:
        parsed = parse_gid(resource_id)
        target: Order | Draft | None = None
        if parsed and parsed[0] == "Order":
            target = self.orders.get(parsed[1])
        elif parsed and parsed[0] == "DraftOrder":
            target = self.drafts.get(parsed[1])
        if target is None:
            return {"node": None, "userErrors": [{"field": ["id"], "message": "Resource does not exist"}]}
        for tag in tags:
            if tag not in target.tags:
                target.tags.append(tag)
        kind = "Order" if isinstance(target, Order) else "DraftOrder"
        if isinstance(target, Order):
            target.updated_at = self.now()
            self.emit("orders/updated", self._order_rest(target))
        return {"node": {"__typename": kind, "id": str(resource_id)}, "userErrors": []}

    def _delivery_options(self, data: dict[str, t.Any]) -> dict[str, t.Any]:
        shipped = False
        for item in data.get("lineItems") or []:
            parsed = parse_gid(item.get("variantId"))
            variant = self.variants.get(parsed[1]) if parsed and parsed[0] == "ProductVariant" else None
            if variant is None:
                raise GraphQLError(f"Invalid id: {item.get('variantId')}")
            shipped = shipped or variant.requires_shipping
        address = data.get("shippingAddress") or {}
        country = str(address.get("countryCode") or "").upper()
        page = {"hasNextPage": False, "hasPreviousPage": False, "startCursor": None, "endCursor": None}
        if not shipped or not country:
            return {"availableShippingRates": [], "availableLocalDeliveryRates": [], "pageInfo": page}

        def issue(table: dict[str, list[dict[str, t.Any]]]) -> list[dict[str, t.Any]]:
            key = country if country in table else "*"
            out = []
            for rate in table.get(key, []):
                self._seq += 1
                handle = f"shopify-{rate['code']}-{shopify_decimal(rate['price'])}-{self._seq}"
                self._handles[handle] = {"title": rate["title"], "code": rate["code"],
                                         "source": rate["source"], "handle": handle,
                                         "price": {self.currency: rate["price"]}, "country": key}
                out.append({"handle": handle, "title": rate["title"], "code": rate["code"],
                            "source": rate["source"],
                            "price": {"amount": shopify_decimal(rate["price"]),
                                      "currencyCode": self.currency}})
            return out

        return {"availableShippingRates": issue(self.shipping_rates),
                "availableLocalDeliveryRates": issue(self.local_delivery_rates), "pageInfo": page}

    def _draft_search(self, query: str | None, sort_key: str, reverse: bool) -> list[Draft]:
        drafts = list(self.drafts.values())
        for term in shlex.split(query or ""):
            field, _, value = term.partition(":")
            field = field.lower()
            if field == "tag":
                drafts = [d for d in drafts if value in d.tags]
            elif field == "status":
                drafts = [d for d in drafts if d.status.lower() == value.lower()]
            elif field in ("updated_at", "created_at"):
                attr = "updated_at" if field == "updated_at" else "created_at"
                drafts = [d for d in drafts if compare_time(getattr(d, attr), value)]
        if sort_key == "UPDATED_AT":
            drafts.sort(key=lambda d: (d.updated_at, d.number))
        else:
            drafts.sort(key=lambda d: d.number)
        if reverse:
            drafts.reverse()
        return drafts

