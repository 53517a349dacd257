"""The Store API: sessions (``Cart-Token`` JWTs, nonces), the cart routes,
batches, ``/checkout`` (the draft order that holds stock) and the cart view."""

from __future__ import annotations

import collections
import collections.abc as cabc
import hashlib
import hmac
import json
import re
import secrets
import typing as t
import urllib.parse

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request

from .model import CART_TOKEN_TTL
from .model import CHECKOUT_HOLD_MINUTES
from .model import MAX_QUANTITY
from .model import URLS
from .model import Cart
from .model import JSONDict
from .model import WooError
from .model import b64
from .model import blank_address
from .model import esc
from .model import unb64
from .orders import Orders


class StoreApi(Orders):
    """The Store API (a layer of :class:`~flask_acp.testing.fakes.woocommerce.FakeWooCommerce`)."""

    # ----------------------------------------------------------------- Store API session

    def _token(self, user: str) -> str:
        header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = b64(json.dumps({"user_id": user, "exp": int(self.now()) + CART_TOKEN_TTL,
                                  "iss": "store-api"}).encode())
        signature = b64(hmac.new(self._salt, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        return f"{header}.{payload}.{signature}"

    def _token_user(self, token: str | None) -> str | None:
        """The cart user of a valid, unexpired token naming a known cart."""
        if not token or token.count(".") != 2:
            return None
        header, payload, signature = token.split(".")
        expected = b64(hmac.new(self._salt, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, signature):
            return None
        try:
            claims = json.loads(unb64(payload))
        except ValueError:
            return None
        user = claims.get("user_id")
        if not isinstance(user, str) or claims.get("exp", 0) < self.now() or user not in self._carts:
            return None
        return user

    def _nonce(self, tick: int | None = None) -> str:
        tick = int(self.now() // 43200) if tick is None else tick
        return hmac.new(self._salt, f"wc_store_api|{tick}".encode(), hashlib.sha256).hexdigest()[:10]

    def _cart_for(self, headers: cabc.Mapping[str, str], *, mutating: bool) -> tuple[Cart, str]:
        token = headers.get("Cart-Token")
        user = self._token_user(token)
        if user is None and mutating:
            nonce = headers.get("Nonce")
            if not nonce:
                raise WooError(401, "woocommerce_rest_missing_nonce",
                               "Missing the Nonce header. This endpoint requires a valid nonce.")
            tick = int(self.now() // 43200)
            if nonce not in (self._nonce(tick), self._nonce(tick - 1)):
                raise WooError(403, "woocommerce_rest_invalid_nonce", "Nonce is invalid.")
        if user is None:
            user = "t_" + secrets.token_hex(15)
            self._carts[user] = Cart(user=user, billing=blank_address(True),
                                     shipping=blank_address(False))
            token = self._token(user)
        return self._carts[user], t.cast(str, token)

    def _session_headers(self, token: str | None) -> dict[str, str]:
        # WordPress also sets cookies; a server-side client must not send them back
        headers = {"Nonce": self._nonce(), "Nonce-Timestamp": str(int(self.now())), "User-ID": "0",
                   "Set-Cookie": "woocommerce_items_in_cart=1; path=/; HttpOnly"}
        if token:
            headers["Cart-Token"] = token
        return headers

    def _store_headers(self, request: Request, name: str) -> dict[str, str]:
        if "/wc/store/" not in name:
            return {}
        token = request.headers.get("Cart-Token")
        return self._session_headers(token if self._token_user(token) else None)

    def _batch(self, request: Request, body: t.Any) -> tuple[int, t.Any, dict[str, str]]:
        requests_ = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests_, list) or not requests_:
            raise WooError(400, "rest_invalid_param", "Invalid parameter(s): requests",
                           params={"requests": "requests is a required property of the batch."})
        if len(requests_) > 25:
            raise WooError(400, "rest_invalid_param", "Invalid parameter(s): requests",
                           params={"requests": "requests must contain at most 25 items."})
        for item in requests_:
            if not isinstance(item, dict) or "wc/store" not in str(item.get("path")) or \
                    str(item.get("method", "POST")).upper() not in ("POST", "PUT", "PATCH", "DELETE"):
                raise WooError(400, "woocommerce_rest_invalid_path", "Invalid path provided.")
        outer_token = request.headers.get("Cart-Token")
        cart: Cart | None = None
        token: str | None = None
        responses = []
        for item in requests_:
            method = str(item.get("method", "POST")).upper()
            headers = {**{k: v for k, v in request.headers.items() if k in ("Cart-Token", "Nonce")},
                       **{str(k): str(v) for k, v in (item.get("headers") or {}).items()}}
            path = urllib.parse.urlsplit(str(item["path"])).path
            try:
                endpoint, args = URLS.bind("fake").match(path, method)
            except HTTPException:
                responses.append({"body": WooError(404, "rest_no_route", "No route was found matching "
                                                   "the URL and request method.").body(),
                                  "status": 404, "headers": {}})
                continue
            name = str(endpoint)
            try:
                if cart is None:
                    cart, token = self._cart_for(headers, mutating=True)
                else:
                    self._cart_for({**headers, "Cart-Token": token or outer_token or ""}, mutating=True)
                status, data = self._store(name, args, item.get("body") or {}, {}, cart)
            except WooError as exc:
                status, data = exc.status, exc.body()
            self._record(method, "/wp-json" + path, name, status, batched=True)
            responses.append({"body": data, "status": status, "headers": self._session_headers(token)})
        return 207, {"responses": responses}, self._session_headers(token)

    # ----------------------------------------------------------------- Store API routes

    def _store(self, name: str, args: cabc.Mapping[str, t.Any], body: JSONDict, query: cabc.Mapping[str, str],
               cart: Cart) -> tuple[int, t.Any]:
        if name == "GET /wc/store/v1/cart":
            return 200, self._cart_json(cart)
        if name == "POST /wc/store/v1/cart/add-item":
            self._add_item(cart, body)
        elif name == "POST /wc/store/v1/cart/update-item":
            self._update_item(cart, body)
        elif name == "POST /wc/store/v1/cart/remove-item":
            key = str(body.get("key") or "")
            if key not in cart.items:
                raise self._conflict(cart)
            del cart.items[key]
        elif name == "POST /wc/store/v1/cart/update-customer":
            self._update_customer(cart, body)
        elif name == "POST /wc/store/v1/cart/select-shipping-rate":
            self._select_rate(cart, body)
        elif name == "POST /wc/store/v1/cart/apply-coupon":
            self._apply_coupon(cart, str(body.get("code") or ""))
        elif name == "POST /wc/store/v1/cart/remove-coupon":
            self._remove_coupon(cart, str(body.get("code") or ""))
        elif name == "DELETE /wc/store/v1/cart/items":
            cart.items.clear()
            return 200, []
        elif name == "GET /wc/store/v1/checkout":
            return 200, self._checkout(cart)
        elif name == "POST /wc/store/v1/checkout":
            method = body.get("payment_method") or ""
            raise WooError(400, "woocommerce_rest_checkout_invalid_payment_method",
                           f"The selected payment method ({method}) is not available; this store "
                           "has no payment gateway.")
        elif name == "GET /wc/store/v1/products":
            return 200, self._products_json(cart, query)
        elif name == "GET /wc/store/v1/products/{id}":
            product = self._products.get(int(args["id"]))
            if product is None or product["status"] != "publish":
                raise WooError(404, "woocommerce_rest_product_invalid_id", "Invalid product ID.")
            return 200, self._product_json(product, cart)
        return 200, self._cart_json(cart)

    def _conflict(self, cart: Cart) -> WooError:
        return WooError(409, "woocommerce_rest_cart_invalid_key",
                        "Cart item no longer exists or is invalid.", cart=self._cart_json(cart))

    def _check_quantity(self, product: JSONDict, quantity: int, cart: Cart) -> None:
        name = esc(product["name"])
        if self._price(product) is None:
            raise WooError(400, "woocommerce_rest_product_not_purchasable",
                           f"&quot;{name}&quot; is not available for purchase.")
        if product["sold_individually"] and quantity > 1:
            raise WooError(400, "woocommerce_rest_cart_product_sold_individually",
                           f"You cannot add another &quot;{name}&quot; to your cart.")
        available = self._available(product, cart)
        if available is not None and quantity > available:
            if available <= 0:
                raise WooError(400, "woocommerce_rest_product_out_of_stock",
                               f"You cannot add &quot;{name}&quot; to the cart because the product is "
                               "out of stock.")
            raise WooError(400, "woocommerce_rest_product_partially_out_of_stock",
                           f"You cannot add that amount of &quot;{name}&quot; to the cart because there "
                           f"is not enough stock ({available} remaining).")

    def _add_item(self, cart: Cart, body: JSONDict) -> None:
        product = self._product(body.get("id"))
        quantity = body.get("quantity", 1)
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
            raise WooError(400, "rest_invalid_param", "Invalid parameter(s): quantity",
                           params={"quantity": "quantity is not of type integer."})
        key = hashlib.md5(str(product["id"]).encode()).hexdigest()  # noqa: S324 - WC's cart key
        existing = cart.items.get(key, {}).get("quantity", 0)
        self._check_quantity(product, existing + quantity, cart)
        cart.items[key] = {"product_id": int(product["id"]), "quantity": existing + quantity}

    def _update_item(self, cart: Cart, body: JSONDict) -> None:
        key = str(body.get("key") or "")
        if key not in cart.items:
            raise self._conflict(cart)
        quantity = body.get("quantity")
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 0:
            raise WooError(400, "rest_invalid_param", "Invalid parameter(s): quantity",
                           params={"quantity": "quantity is not of type integer."})
        if quantity == 0:
            del cart.items[key]
            return
        self._check_quantity(self._products[cart.items[key]["product_id"]], quantity, cart)
        cart.items[key]["quantity"] = quantity

    def _update_customer(self, cart: Cart, body: JSONDict) -> None:
        params: dict[str, str] = {}
        for field, target in (("billing_address", cart.billing), ("shipping_address", cart.shipping)):
            given = body.get(field)
            if given is None:
                continue
            if not isinstance(given, dict):
                params[field] = f"{field} is not of type object."
                continue
            country = str(given.get("country", target.get("country", "")) or "")
            if country and not re.fullmatch(r"[A-Z]{2}", country):
                params[field] = "Invalid country code provided."
            email = given.get("email")
            if field == "billing_address" and email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
                params[field] = "Invalid email address."
        if params:
            raise WooError(400, "rest_invalid_param", "Invalid parameter(s): " + ", ".join(params),
                           params=params)
        for field, target in (("billing_address", cart.billing), ("shipping_address", cart.shipping)):
            given = body.get(field)
            if isinstance(given, dict):
                target.update({k: str(v) for k, v in given.items() if k in target})

    def _select_rate(self, cart: Cart, body: JSONDict) -> None:
        rate_id = body.get("rate_id")
        if not rate_id:
            raise WooError(400, "woocommerce_rest_cart_missing_rate_id", "Invalid Rate ID.")
        calc = self._calculate(cart)
        package_id = body.get("package_id")
        packages = [p for p in calc.packages if package_id is None or p.package_id == package_id]
        if not packages:
            raise WooError(400, "woocommerce_rest_cart_invalid_package", "Invalid Package ID.")
        for package in packages:
            if rate_id not in [r.rate_id for r in package.rates]:
                raise WooError(400, "woocommerce_rest_cart_invalid_rate", "Invalid Rate ID.")
            cart.chosen[package.package_id] = str(rate_id)

    def _apply_coupon(self, cart: Cart, code: str) -> None:
        coupon = self._coupons.get(code.lower())
        if coupon is None:
            raise WooError(400, "woocommerce_rest_cart_coupon_error",
                           f"Coupon &quot;{code}&quot; does not exist!")
        applied = [c.lower() for c in cart.coupons] + self._auto_coupons(cart)
        if code.lower() in applied:
            raise WooError(400, "woocommerce_rest_cart_coupon_error",
                           f"Coupon code &quot;{code}&quot; already applied!")
        problem = self._coupon_problem(coupon, self._calculate(cart, coupons=[]).total_items)
        if problem:
            raise WooError(400, "woocommerce_rest_cart_coupon_error", problem)
        cart.coupons.append(str(coupon["code"]))
        cart.removed_auto.discard(code.lower())

    def _remove_coupon(self, cart: Cart, code: str) -> None:
        if code.lower() in [c.lower() for c in cart.coupons]:
            cart.coupons = [c for c in cart.coupons if c.lower() != code.lower()]
        elif code.lower() in self._auto_coupons(cart):
            cart.removed_auto.add(code.lower())
        else:
            raise WooError(400, "woocommerce_rest_cart_coupon_invalid_code",
                           "Coupon cannot be removed because it is not already applied to the cart.")

    def _checkout(self, cart: Cart) -> JSONDict:
        if not cart.items:
            raise WooError(400, "woocommerce_rest_cart_empty", "Cannot create order from empty cart.")
        calc = self._calculate(cart)
        order = self._orders.get(cart.draft_order_id or -1)
        if order is None or order["status"] != "checkout-draft":
            order = self._new_order("store-api", "checkout-draft")
            cart.draft_order_id = order["id"]
        self._fill_order(order, calc, cart.billing, cart.shipping)
        self._emit("order.updated", order)
        # ReserveStock::reserve_stock_for_order: all or nothing, other orders' holds count
        self._holds = [h for h in self._holds if h["order_id"] != order["id"]]
        wanted: dict[int, int] = collections.Counter()
        for line in calc.lines:
            if line.product["manage_stock"]:
                wanted[int(line.product["id"])] += line.quantity
        for product_id, quantity in wanted.items():
            product = self._products[product_id]
            available = int(product["stock_quantity"] or 0) - self._held(product_id, order["id"])
            if quantity > available:
                name = esc(product["name"])
                if available <= 0:
                    raise WooError(403, "woocommerce_product_out_of_stock",
                                   f"&quot;{name}&quot; is out of stock and cannot be purchased.")
                raise WooError(403, "woocommerce_product_not_enough_stock",
                               f"Not enough units of &quot;{name}&quot; are available in stock to fulfil "
                               "this order.")
        expires = self.now() + CHECKOUT_HOLD_MINUTES * 60
        for product_id, quantity in wanted.items():
            self._holds.append({"order_id": order["id"], "product_id": product_id, "quantity": quantity,
                                "expires": expires})
        return {
            "order_id": order["id"], "status": order["status"], "order_key": order["order_key"],
            "order_number": str(order["id"]), "customer_note": order["customer_note"], "customer_id": 0,
            "billing_address": dict(order["billing"]), "shipping_address": dict(order["shipping"]),
            "payment_method": order["payment_method"],
            "payment_result": {"payment_status": "", "payment_details": [], "redirect_url": ""},
            "additional_fields": {}, "extensions": {},
        }

    def _cart_json(self, cart: Cart) -> JSONDict:
        calc = self._calculate(cart)
        money = self._money_fields()
        inclusive_display = self.settings.get("tax_display_cart") == "incl"
        items = []
        for line in calc.lines:
            product = line.product
            unit = self._cents(self._price(product))
            shown_unit = unit
            if bool(self.settings["prices_include_tax"]) != inclusive_display and line.quantity:
                per = self._ex_tax(unit, line.rates, bool(self.settings["prices_include_tax"]))
                shown_unit = per[0] + per[1] if inclusive_display else per[0]
            available = self._available(product, cart)
            low = (available if available is not None
                   and available <= int(self.settings["notify_low_stock_amount"]) else None)
            maximum = 1 if product["sold_individually"] else min(
                MAX_QUANTITY, max(available, line.quantity) if available is not None else MAX_QUANTITY)
            items.append({
                "key": line.key, "id": product["id"], "type": product["type"], "quantity": line.quantity,
                "quantity_limits": {"minimum": 1, "maximum": maximum, "multiple_of": 1, "editable": True},
                "name": esc(product["name"]), "short_description": product["short_description"],
                "description": "", "sku": product["sku"], "low_stock_remaining": low,
                "backorders_allowed": product["backorders"] != "no", "show_backorder_badge": False,
                "sold_individually": bool(product["sold_individually"]),
                "permalink": f"{self._site()}/?p={product['id']}",
                "images": [{"id": i + 1, "src": src, "thumbnail": src, "srcset": "", "sizes": "",
                            "name": "", "alt": ""} for i, src in enumerate(product["images"])],
                "variation": [], "item_data": [],
                "prices": {"price": str(shown_unit),
                           "regular_price": str(self._cents(product["regular_price"])),
                           "sale_price": str(shown_unit), "price_range": None, **money,
                           "raw_prices": {"precision": 6, "price": str(unit * 10 ** 4),
                                          "regular_price": str(unit * 10 ** 4),
                                          "sale_price": str(unit * 10 ** 4)}},
                "totals": {"line_subtotal": str(line.subtotal), "line_subtotal_tax": str(line.subtotal_tax),
                           "line_total": str(line.total), "line_total_tax": str(line.total_tax), **money},
                "catalog_visibility": "visible", "extensions": {},
            })
        key_qty = {line.key: (line.product, line.quantity) for line in calc.lines}
        return {
            "items": items,
            "coupons": [{"code": code, "discount_type": kind,
                         "totals": {"total_discount": str(d), "total_discount_tax": str(tax), **money}}
                        for code, kind, d, tax in calc.coupons],
            "fees": [{"id": fid, "name": name,
                      "totals": {"total": str(total), "total_tax": str(tax), **money}}
                     for fid, name, total, tax in calc.fees],
            "totals": {
                "total_items": str(calc.total_items), "total_items_tax": str(calc.total_items_tax),
                "total_fees": str(calc.total_fees), "total_fees_tax": str(calc.total_fees_tax),
                "total_discount": str(calc.total_discount),
                "total_discount_tax": str(calc.total_discount_tax),
                "total_shipping": str(calc.total_shipping) if calc.has_calculated_shipping else None,
                "total_shipping_tax": str(calc.total_shipping_tax) if calc.has_calculated_shipping else None,
                "total_price": str(calc.total_price), "total_tax": str(calc.total_tax),
                "tax_lines": [{"name": rate.name, "price": str(amount),
                               "rate": f"{(rate.rate * 100).normalize():f}%"}
                              for rate, amount in calc.tax_lines],
                **money,
            },
            "shipping_address": dict(cart.shipping),
            "billing_address": dict(cart.billing),
            "needs_payment": calc.total_price > 0,
            "needs_shipping": calc.needs_shipping,
            "payment_requirements": ["products"],
            "has_calculated_shipping": calc.has_calculated_shipping,
            "shipping_rates": [{
                "package_id": p.package_id, "name": p.name,
                "destination": {k: cart.shipping.get(k, "") for k in ("address_1", "address_2", "city",
                                                                        "state", "postcode", "country")},
                "items": [{"key": k, "name": esc(key_qty[k][0]["name"]), "quantity": key_qty[k][1]}
                          for k in p.keys],
                "shipping_rates": [{
                    "rate_id": r.rate_id, "name": esc(r.name), "description": r.description,
                    "delivery_time": r.delivery_time, "price": str(r.cost), "taxes": str(r.taxes),
                    "instance_id": r.instance_id, "method_id": r.method_id,
                    "meta_data": [{"key": "Items", "value": ", ".join(
                        f"{esc(key_qty[k][0]['name'])} &times; {key_qty[k][1]}" for k in p.keys)}],
                    "selected": r.rate_id == p.selected, **money} for r in p.rates],
            } for p in calc.packages],
            "items_count": sum(line.quantity for line in calc.lines),
            "items_weight": 0,
            "cross_sells": [],
            "errors": calc.errors,
            "payment_methods": [],
            "extensions": {},
        }

