"""Orders: REST v3 (``/wc/v3/orders``: read, list, create, update, ``set_paid``),
what the merchant does in the admin (status, refunds, Shipment Tracking items),
stock and holds as statuses change, and the REST representation."""

from __future__ import annotations

import collections.abc as cabc
import copy
import datetime as dt
import decimal
import hashlib
import hmac
import re
import secrets
import time
import typing as t

from werkzeug.wrappers import Request

from .model import HOLDING
from .model import STATUSES
from .model import TRACKING_META_KEY
from .model import Calc
from .model import D
from .model import JSONDict
from .model import WooError
from .model import blank_address
from .model import parse_time
from .pricing import Pricing

#: provider slugs the Shipment Tracking extension knows (others are "custom" providers).
_TRACKING_PROVIDERS = frozenset({"usps", "ups", "fedex", "dhl-us", "canada-post", "royal-mail"})


class Orders(Pricing):
    """Orders (a layer of :class:`~flask_acp.testing.fakes.woocommerce.FakeWooCommerce`)."""

    def order(self, order_id: int, dp: int | None = None) -> JSONDict:
        """The REST v3 representation of an order (``KeyError`` if unknown)."""
        with self._lock:
            return self._order_json(self._orders[order_id], dp)

    @property
    def orders(self) -> dict[int, JSONDict]:
        """Every order (REST v3 representation) by id."""
        with self._lock:
            return {i: self._order_json(o, None) for i, o in self._orders.items()}

    # ----------------------------------------------------------------- merchant actions

    def set_order_status(self, order_id: int, status: str) -> JSONDict:
        """Change an order's status as the admin does (stock, ``date_completed``);
        one ``order.updated``. Returns the REST order."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; one of {STATUSES}")
        with self._lock:
            order = self._orders[order_id]
            self._set_status(order, status)
            self._saved(order)
            return self._order_json(order, None)

    def complete_order(self, order_id: int) -> JSONDict:
        """Mark the order ``completed`` (what merchants do when it is dispatched)."""
        return self.set_order_status(order_id, "completed")

    def cancel_order(self, order_id: int) -> JSONDict:
        """Mark the order ``cancelled`` (stock goes back; no money moves)."""
        return self.set_order_status(order_id, "cancelled")

    def refund(self, order_id: int, amount: str, reason: str = "") -> int:
        """Record a manual refund of ``amount`` (a decimal string in the store
        currency, e.g. ``"5.00"``) as the admin's Refund button does without
        "refund via gateway": a ``refunds[]`` entry (``total`` negative); the order
        becomes ``refunded`` when nothing is left to refund. Returns the refund id.

        :raises ValueError: an amount of 0 or more than what is left.
        """
        with self._lock:
            order = self._orders[order_id]
            cents = self._cents(amount)
            left = order["total"] - sum(r["total"] for r in order["refunds"])
            if not 0 < cents <= left:
                raise ValueError(f"order {order_id} can be refunded 0 < amount <= {self._format(left)}, "
                                 f"not {amount}")
            refund_id = self._next_order_id  # refunds are posts too: ids from the same sequence
            self._next_order_id += 1
            order["refunds"].append({"id": refund_id, "reason": reason, "total": cents, "date": self.now()})
            if cents == left:
                self._set_status(order, "refunded")
            self._saved(order)
            return refund_id

    def add_tracking(self, order_id: int, carrier: str, number: str, *, link: str | None = None) -> str:
        """Add a Shipment Tracking item, as the extension does: a known provider
        (``"USPS"``, ``"UPS"``, ``"FedEx"``...) is stored by slug, any other carrier
        (or one given with ``link``) as a custom provider. Returns its ``tracking_id``."""
        with self._lock:
            order = self._orders[order_id]
            slug = re.sub(r"[^a-z0-9]+", "-", carrier.lower()).strip("-")
            known = link is None and slug in _TRACKING_PROVIDERS
            tracking_id = hashlib.md5(f"{slug}-{number}{time.time_ns()}".encode()).hexdigest()  # noqa: S324
            item = {"tracking_provider": slug if known else "",
                    "custom_tracking_provider": "" if known else carrier,
                    "custom_tracking_link": "" if known else (link or ""),
                    "tracking_number": number, "date_shipped": str(int(self.now())),
                    "tracking_id": tracking_id}
            meta = next((m for m in order["meta_data"] if m["key"] == TRACKING_META_KEY), None)
            if meta is None:
                meta = {"id": self._item_id(), "key": TRACKING_META_KEY, "value": []}
                order["meta_data"].append(meta)
            meta["value"] = [*meta["value"], item]
            self._saved(order)
            return tracking_id

    def _saved(self, order: JSONDict) -> None:
        order["date_modified"] = self.now()
        self._emit("order.updated", order)

    # ----------------------------------------------------------------- orders

    def _new_order(self, created_via: str, status: str) -> JSONDict:
        order_id = self._next_order_id
        self._next_order_id += 1
        now = self.now()
        order: JSONDict = {
            "id": order_id, "parent_id": 0, "status": status, "currency": self.settings["currency"],
            "prices_include_tax": bool(self.settings["prices_include_tax"]),
            "date_created": now, "date_modified": now, "date_paid": None, "date_completed": None,
            "customer_id": 0, "order_key": "wc_order_" + secrets.token_hex(7),
            "billing": blank_address(True), "shipping": blank_address(False),
            "payment_method": "", "payment_method_title": "", "transaction_id": "",
            "created_via": created_via, "customer_note": "", "meta_data": [], "lines": [],
            "shipping_lines": [], "fee_lines": [], "coupon_lines": [], "tax_lines": [],
            "discount_total": 0, "discount_tax": 0, "shipping_total": 0, "shipping_tax": 0,
            "cart_tax": 0, "total": 0, "total_tax": 0, "stock_reduced": False, "refunds": [],
        }
        self._orders[order_id] = order
        self._emit("order.created", order)
        return order

    def _fill_order(self, order: JSONDict, calc: Calc, billing: JSONDict, shipping: JSONDict) -> None:
        """Copy a calculation into an order (``update_order_from_cart`` / ``calculate_totals``)."""
        order["billing"] = {**blank_address(True), **billing}
        order["shipping"] = {**blank_address(False), **{k: v for k, v in shipping.items() if k != "email"}}
        order["lines"] = [{
            "id": self._item_id(), "name": line.product["name"], "product_id": (
                line.product["parent_id"] if line.product["type"] == "variation" else line.product["id"]),
            "variation_id": line.product["id"] if line.product["type"] == "variation" else 0,
            "quantity": line.quantity, "tax_class": line.product["tax_class"], "subtotal": line.subtotal,
            "subtotal_tax": line.subtotal_tax, "total": line.total, "total_tax": line.total_tax,
            "sku": line.product["sku"], "virtual": bool(line.product["virtual"]),
            "downloadable": bool(line.product["downloadable"]),
            "image": line.product["images"][0] if line.product["images"] else "",
        } for line in calc.lines]
        order["shipping_lines"] = [{
            "id": self._item_id(), "method_title": r.name, "method_id": r.method_id,
            "instance_id": str(r.instance_id), "total": r.cost, "total_tax": r.taxes,
        } for p in calc.packages for r in p.rates if r.rate_id == p.selected]
        order["fee_lines"] = [{"id": self._item_id(), "name": name, "total": total, "total_tax": tax}
                              for _fid, name, total, tax in calc.fees]
        order["coupon_lines"] = [{"id": self._item_id(), "code": code, "discount": d, "discount_tax": tax}
                                 for code, _kind, d, tax in calc.coupons]
        order["tax_lines"] = [{"id": self._item_id(), "rate_code": f"{rate.name}-{rate.id}",
                               "rate_id": rate.id,
                               "label": rate.name, "compound": False, "tax_total": amount,
                               "shipping_tax_total": 0, "rate_percent": float(rate.rate * 100)}
                              for rate, amount in calc.tax_lines]
        order["discount_total"] = calc.total_discount
        order["discount_tax"] = calc.total_discount_tax
        order["shipping_total"] = calc.total_shipping
        order["shipping_tax"] = calc.total_shipping_tax
        order["cart_tax"] = calc.total_tax - calc.total_shipping_tax
        order["total_tax"] = calc.total_tax
        order["total"] = calc.total_price
        order["date_modified"] = self.now()

    def _needs_payment(self, order: JSONDict) -> bool:
        return order["status"] in ("pending", "failed") and order["total"] > 0

    def _set_status(self, order: JSONDict, status: str) -> None:
        old = order["status"]
        if status == old:
            return
        order["status"] = status
        if status in ("processing", "completed", "on-hold"):
            if status in ("processing", "completed") and order["date_paid"] is None:
                order["date_paid"] = self.now()
            if status == "completed" and order["date_completed"] is None:
                order["date_completed"] = self.now()
            self._reduce_stock(order)
        if status in ("cancelled", "failed", "refunded") and order["stock_reduced"]:
            for line in order["lines"]:
                product = self._products.get(line["variation_id"] or line["product_id"])
                if product is not None and product["manage_stock"]:
                    product["stock_quantity"] = int(product["stock_quantity"] or 0) + line["quantity"]
            order["stock_reduced"] = False
        if status not in HOLDING:
            self._holds = [h for h in self._holds if h["order_id"] != order["id"]]

    def _reduce_stock(self, order: JSONDict) -> None:
        if order["stock_reduced"]:
            return
        for line in order["lines"]:
            product = self._products.get(line["variation_id"] or line["product_id"])
            if product is not None and product["manage_stock"]:
                product["stock_quantity"] = int(product["stock_quantity"] or 0) - line["quantity"]
                if product["stock_quantity"] <= 0:
                    product["stock_status"] = "outofstock"
        order["stock_reduced"] = True
        self._holds = [h for h in self._holds if h["order_id"] != order["id"]]

    def _payment_complete(self, order: JSONDict, transaction_id: str) -> None:
        if transaction_id:
            order["transaction_id"] = transaction_id
        if order["date_paid"] is None:
            order["date_paid"] = self.now()
        lines = order["lines"]
        digital = bool(lines) and all(line["virtual"] and line["downloadable"] for line in lines)
        self._set_status(order, "completed" if digital else "processing")

    # ----------------------------------------------------------------- REST v3

    def _authenticate(self, request: Request) -> None:
        auth = request.authorization
        key = secret = None
        if auth is not None and auth.type == "basic":
            key, secret = auth.username, auth.password
        elif request.args.get("consumer_key"):
            key, secret = request.args.get("consumer_key"), request.args.get("consumer_secret")
        if not key:
            raise WooError(401, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")
        if not hmac.compare_digest(str(key).encode(), self.consumer_key.encode()):
            raise WooError(401, "woocommerce_rest_authentication_error", "Consumer key is invalid.")
        if not hmac.compare_digest(str(secret or "").encode(), self.consumer_secret.encode()):
            raise WooError(401, "woocommerce_rest_authentication_error", "Consumer secret is invalid.")

    def _rest(self, name: str, args: cabc.Mapping[str, t.Any], body: t.Any, query: cabc.Mapping[str, str]
              ) -> tuple[int, t.Any, dict[str, str]]:
        dp = int(query["dp"]) if str(query.get("dp") or "").isdigit() else None
        body = body if isinstance(body, dict) else {}
        if name.startswith("GET /wc/v3/products"):
            return self._rest_products(name, args, query)
        if name == "GET /wc/v3/orders":
            return self._list_orders(query, dp)
        if name == "POST /wc/v3/orders":
            return 201, self._order_json(self._create_order(body), dp), {}
        order = self._orders.get(int(args["id"]))
        if order is None or order["status"] == "trash":
            raise WooError(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
        if name == "PUT /wc/v3/orders/{id}":
            self._update_order(order, body)
        return 200, self._order_json(order, dp), {}

    def _apply_props(self, order: JSONDict, body: JSONDict) -> None:
        for key in ("payment_method", "payment_method_title", "transaction_id", "customer_note"):
            if key in body:
                order[key] = str(body[key] or "")
        for meta in body.get("meta_data") or []:
            if not isinstance(meta, dict) or "key" not in meta:
                continue
            for existing in order["meta_data"]:
                if existing["key"] == meta["key"] or existing["id"] == meta.get("id"):
                    existing["value"] = meta.get("value")
                    break
            else:
                order["meta_data"].append({"id": self._item_id(), "key": meta["key"],
                                           "value": meta.get("value")})

    def _update_order(self, order: JSONDict, body: JSONDict) -> None:
        unsupported = [k for k in ("line_items", "shipping_lines", "fee_lines", "coupon_lines") if k in body]
        if unsupported:
            raise WooError(400, "rest_invalid_param", "FakeWooCommerce does not edit "
                           f"{', '.join(unsupported)} of existing orders.")
        status = body.get("status")
        if status is not None and status not in STATUSES:
            raise WooError(400, "rest_invalid_param", "Invalid parameter(s): status",
                           params={"status": f"status is not one of {', '.join(STATUSES)}."})
        self._apply_props(order, body)
        if "billing" in body or "shipping" in body:  # calculate_totals(true): taxes from the new address
            billing = {**order["billing"], **(body.get("billing") or {})}
            shipping = {**order["shipping"], **(body.get("shipping") or {})}
            items = [(str(line["id"]), self._products[line["variation_id"] or line["product_id"]],
                      int(line["quantity"])) for line in order["lines"]]
            decimals = int(self.settings["price_decimals"])
            calc = self._calc(items, (billing, shipping),
                              coupons=[c["code"].lower() for c in order["coupon_lines"]],
                              shipping_lines=[{"method_id": s["method_id"], "instance_id": s["instance_id"],
                                               "method_title": s["method_title"],
                                               "total": str(D(s["total"]).scaleb(-decimals))}
                                              for s in order["shipping_lines"]])
            self._fill_order(order, calc, billing, shipping)
        if status:
            self._set_status(order, str(status))
        order["date_modified"] = self.now()
        if body.get("set_paid") is True and self._needs_payment(order):
            self._payment_complete(order, str(body.get("transaction_id") or ""))
        self._emit("order.updated", order)

    def _create_order(self, body: JSONDict) -> JSONDict:
        items: list[tuple[str, JSONDict, int]] = []
        for row in body.get("line_items") or []:
            pid = row.get("variation_id") or row.get("product_id")
            product = self._products.get(int(pid or 0))
            if product is None:
                raise WooError(400, "woocommerce_rest_invalid_product_id", "Product ID provided is invalid.")
            items.append((f"line-{len(items)}", product, int(row.get("quantity") or 1)))
        status = str(body.get("status") or "pending")
        if status not in STATUSES:
            raise WooError(400, "rest_invalid_param", "Invalid parameter(s): status")
        billing = {**blank_address(True), **(body.get("billing") or {})}
        shipping = {**blank_address(False), **(body.get("shipping") or {})}
        calc = self._calc(items, (billing, shipping),
                          coupons=[str(c.get("code")).lower() for c in body.get("coupon_lines") or []
                                   if str(c.get("code")).lower() in self._coupons],
                          shipping_lines=list(body.get("shipping_lines") or []))
        order = self._new_order("rest-api", "pending")
        self._fill_order(order, calc, billing, shipping)
        self._apply_props(order, body)
        self._set_status(order, status)
        if body.get("set_paid") is True:
            self._payment_complete(order, str(body.get("transaction_id") or ""))
        return order

    def _list_orders(self, query: cabc.Mapping[str, str],
                     dp: int | None) -> tuple[int, t.Any, dict[str, str]]:
        orders = [o for o in self._orders.values() if o["status"] != "trash"]
        statuses = [s for s in str(query.get("status") or "").split(",") if s and s != "any"]
        if statuses:
            orders = [o for o in orders if o["status"] in statuses]
        else:
            orders = [o for o in orders if o["status"] != "checkout-draft"]
        include = [int(i) for i in str(query.get("include") or "").split(",") if i.strip().isdigit()]
        if include:
            orders = [o for o in orders if o["id"] in include]
        for param, field in (("after", "date_created"), ("modified_after", "date_modified")):
            if query.get(param):
                since = parse_time(str(query[param]))
                orders = [o for o in orders if o[field] > since]
        orderby = {"date": "date_created", "modified": "date_modified", "id": "id"}.get(
            str(query.get("orderby") or "date"), "date_created")
        orders.sort(key=lambda o: (o[orderby], o["id"]), reverse=str(query.get("order") or "desc") == "desc")
        per_page = max(1, min(100, int(query.get("per_page") or 10)))
        page = max(1, int(query.get("page") or 1))
        total = len(orders)
        pages = max(1, -(-total // per_page))
        chunk = orders[(page - 1) * per_page: page * per_page]
        headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)}
        base = f"{self._site()}/wp-json/wc/v3/orders"
        links = []
        if page < pages:
            links.append(f'<{base}?page={page + 1}&per_page={per_page}>; rel="next"')
        if page > 1:
            links.append(f'<{base}?page={page - 1}&per_page={per_page}>; rel="prev"')
        if links:
            headers["Link"] = ", ".join(links)
        return 200, [self._order_json(o, dp) for o in chunk], headers

    def _order_json(self, order: JSONDict, dp: int | None) -> JSONDict:
        decimals = int(self.settings["price_decimals"])
        places = decimals if dp is None else dp

        def money(cents: int) -> str:
            value = D(cents).scaleb(-decimals)
            return str(value.quantize(D(1).scaleb(-places), rounding=decimal.ROUND_HALF_UP))

        def when(value: float | None) -> str | None:
            if value is None:
                return None
            return dt.datetime.fromtimestamp(value, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")

        checkout = f"{self._site()}/checkout"
        return {
            "id": order["id"], "parent_id": 0, "status": order["status"], "currency": order["currency"],
            "version": "10.3.0", "prices_include_tax": order["prices_include_tax"],
            "date_created": when(order["date_created"]), "date_created_gmt": when(order["date_created"]),
            "date_modified": when(order["date_modified"]), "date_modified_gmt": when(order["date_modified"]),
            "discount_total": money(order["discount_total"]), "discount_tax": money(order["discount_tax"]),
            "shipping_total": money(order["shipping_total"]), "shipping_tax": money(order["shipping_tax"]),
            "cart_tax": money(order["cart_tax"]), "total": money(order["total"]),
            "total_tax": money(order["total_tax"]), "customer_id": 0, "order_key": order["order_key"],
            "billing": dict(order["billing"]), "shipping": dict(order["shipping"]),
            "payment_method": order["payment_method"], "payment_method_title": order["payment_method_title"],
            "transaction_id": order["transaction_id"], "customer_ip_address": "", "customer_user_agent": "",
            "created_via": order["created_via"], "customer_note": order["customer_note"],
            "date_completed": when(order["date_completed"]),
            "date_completed_gmt": when(order["date_completed"]),
            "date_paid": when(order["date_paid"]), "date_paid_gmt": when(order["date_paid"]),
            "cart_hash": "", "number": str(order["id"]),
            "meta_data": copy.deepcopy(order["meta_data"]),
            "line_items": [{
                "id": line["id"], "name": line["name"], "product_id": line["product_id"],
                "variation_id": line["variation_id"], "quantity": line["quantity"],
                "tax_class": line["tax_class"], "subtotal": money(line["subtotal"]),
                "subtotal_tax": money(line["subtotal_tax"]), "total": money(line["total"]),
                "total_tax": money(line["total_tax"]), "taxes": [], "meta_data": [], "sku": line["sku"],
                # a JSON float, as in WooCommerce: never use it for money
                "price": (float(D(line["total"]).scaleb(-decimals) / line["quantity"])
                          if line["quantity"] else 0.0),
                "image": {"id": "", "src": line["image"]}, "parent_name": None,
            } for line in order["lines"]],
            "tax_lines": [{**tl, "tax_total": money(tl["tax_total"]),
                           "shipping_tax_total": money(tl["shipping_tax_total"]), "meta_data": []}
                          for tl in order["tax_lines"]],
            "shipping_lines": [{**s, "total": money(s["total"]), "total_tax": money(s["total_tax"]),
                                "taxes": [], "meta_data": []} for s in order["shipping_lines"]],
            "fee_lines": [{**f, "tax_class": "", "tax_status": "taxable", "total": money(f["total"]),
                           "total_tax": money(f["total_tax"]), "taxes": [], "meta_data": []}
                          for f in order["fee_lines"]],
            "coupon_lines": [{**c, "discount": money(c["discount"]), "discount_tax": money(c["discount_tax"]),
                              "meta_data": []} for c in order["coupon_lines"]],
            "refunds": [{"id": r["id"], "reason": r["reason"], "total": "-" + money(r["total"])}
                        for r in reversed(order["refunds"])],
            "payment_url": f"{checkout}/order-pay/{order['id']}/?pay_for_order=true&key={order['order_key']}",
            "is_editable": order["status"] in ("pending", "on-hold", "auto-draft", "checkout-draft"),
            "needs_payment": self._needs_payment(order),
            "needs_processing": True,
            "currency_symbol": self.settings["currency_symbol"],
        }

