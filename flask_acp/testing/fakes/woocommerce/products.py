"""Products: prices (in the store's minor unit), stock net of other orders'
holds, the controls that change them, and the Store API product views."""

from __future__ import annotations

import collections.abc as cabc
import functools
import json
import typing as t

from .model import MAX_QUANTITY
from .model import Cart
from .model import D
from .model import JSONDict
from .model import WooError
from .model import esc
from .model import half_up
from .webhooks import WooWebhooks


class Products(WooWebhooks):
    """Products (a layer of :class:`~flask_acp.testing.fakes.woocommerce.FakeWooCommerce`)."""

    def set_stock(self, product_id: int, quantity: int | None) -> None:
        """Set ``stock_quantity`` (``None``: stop managing stock)."""
        with self._lock:
            product = self._products[product_id]
            product["manage_stock"] = quantity is not None
            product["stock_quantity"] = quantity
            product["stock_status"] = "instock" if quantity is None or quantity > 0 else "outofstock"

    def set_price(self, product_id: int, regular_price: str, sale_price: str = "") -> None:
        """Change a product's prices (decimal strings)."""
        with self._lock:
            self._products[product_id].update(regular_price=regular_price, sale_price=sale_price)

    def update_product(self, product_id: int, **changes: t.Any) -> None:
        """Change a product's (or variation's) fields (``name``, ``regular_price``,
        ``stock_quantity``...) as the admin does, and queue ``product.updated``
        (the REST v3 product or variation, as WooCommerce sends it) to every
        active webhook of that topic."""
        with self._lock:
            product = self._products[product_id]
            product.update(changes)
            if "stock_quantity" in changes and product["manage_stock"]:
                product["stock_status"] = "instock" if (product["stock_quantity"] or 0) > 0 else "outofstock"
            self._webhook_events.append({"topic": "product.updated", "resource": "product",
                                         "resource_id": product_id, "at": self.now()})
            for hook in self._webhooks.values():
                if hook.status == "active" and hook.topic == "product.updated":
                    body = json.dumps(self._rest_product_json(product), separators=(",", ":")).encode()
                    delivery = self._signed(hook.id, "product.updated", product_id, body, hook.secret)
                    self._queue_webhook(functools.partial(self._send_product, delivery, hook.delivery_url))

    def delete_product(self, product_id: int) -> None:
        """Move a product to the trash as the admin does (``status: "trash"``:
        REST v3 lists it no more) and queue ``product.deleted`` (``{"id": N}``,
        what WooCommerce sends) to every active webhook of that topic."""
        with self._lock:
            product = self._products[product_id]
            product["status"] = "trash"
            self._webhook_events.append({"topic": "product.deleted", "resource": "product",
                                         "resource_id": product_id, "at": self.now()})
            for hook in self._webhooks.values():
                if hook.status == "active" and hook.topic == "product.deleted":
                    body = json.dumps({"id": product_id}, separators=(",", ":")).encode()
                    delivery = self._signed(hook.id, "product.deleted", product_id, body, hook.secret)
                    self._queue_webhook(functools.partial(self._send_product, delivery, hook.delivery_url))

    def _send_product(self, delivery: t.Any, url: str) -> None:
        self._send(delivery, url)

    def _rest_product_json(self, product: JSONDict) -> JSONDict:
        """A product or variation as REST v3 shows it (``GET /wc/v3/products/{id}``,
        ``.../variations``): prices as decimal strings of the store currency."""
        price = self._price(product) or ""
        variation = product["type"] == "variation"
        images = [{"id": i + 1, "src": src, "name": "", "alt": product.get("image_alt", "")}
                  for i, src in enumerate(product["images"])]
        out: JSONDict = {
            "id": product["id"], "name": product["name"], "type": product["type"],
            "status": product["status"], "parent_id": product["parent_id"],
            "permalink": f"{self._site()}/?p={product['id']}", "sku": product["sku"],
            "description": product.get("description", ""), "short_description": product["short_description"],
            "price": price, "regular_price": product["regular_price"], "sale_price": product["sale_price"],
            "on_sale": bool(product.get("sale_price")), "purchasable": price != "",
            "global_unique_id": product.get("global_unique_id", ""),
            "manage_stock": product["manage_stock"], "stock_quantity": product["stock_quantity"],
            "stock_status": product["stock_status"], "backorders": product["backorders"],
            "attributes": [{"id": 0, "name": n, "option": v}
                           for n, v in (product.get("attributes") or {}).items()]
            if variation else [{"id": 0, "name": n, "options": [v], "variation": True}
                               for n, v in (product.get("attributes") or {}).items()],
        }
        if variation:
            out["image"] = images[0] if images else None
        else:
            out["images"] = images
            out["variations"] = sorted(p["id"] for p in self._products.values()
                                       if p["parent_id"] == product["id"] and p["type"] == "variation")
        return out

    def _rest_products(self, name: str, args: cabc.Mapping[str, t.Any], query: cabc.Mapping[str, str]
                       ) -> tuple[int, t.Any, dict[str, str]]:
        """``GET /wc/v3/products`` (``status``, ``include``, ``per_page`` <= 100,
        ``page``; parents and simple products, never variations), ``GET
        /wc/v3/products/{id}`` and ``GET /wc/v3/products/{id}/variations``, with
        ``X-WP-Total`` / ``X-WP-TotalPages``."""
        if name == "GET /wc/v3/products/{id}":
            product = self._products.get(int(args["id"]))
            if product is None:
                raise WooError(404, "woocommerce_rest_product_invalid_id", "Invalid ID.")
            return 200, self._rest_product_json(product), {}
        if name == "GET /wc/v3/products/{id}/variations":
            parent = int(args["id"])
            rows = [p for _, p in sorted(self._products.items())
                    if p["parent_id"] == parent and p["type"] == "variation"]
        else:
            rows = [p for _, p in sorted(self._products.items()) if p["type"] != "variation"]
            status = str(query.get("status") or "any")
            if status != "any":
                rows = [p for p in rows if p["status"] == status]
            include = [int(i) for i in str(query.get("include") or "").split(",") if i.strip().isdigit()]
            if include:
                rows = [p for p in rows if p["id"] in include]
        per_page = max(1, min(100, int(query.get("per_page") or 10)))
        page = max(1, int(query.get("page") or 1))
        pages = max(1, -(-len(rows) // per_page))
        chunk = rows[(page - 1) * per_page: page * per_page]
        return 200, [self._rest_product_json(p) for p in chunk], {
            "X-WP-Total": str(len(rows)), "X-WP-TotalPages": str(pages)}

    def _cents(self, value: t.Any) -> int:
        """A decimal price string in store minor units, half-up."""
        return half_up(D(str(value or "0")).scaleb(int(self.settings["price_decimals"])))

    def _format(self, cents: int) -> str:
        return f"{self.settings['currency_symbol']}{D(cents).scaleb(-int(self.settings['price_decimals']))}"

    @staticmethod
    def _price(product: JSONDict) -> str | None:
        price = product.get("sale_price") or product.get("regular_price")
        return str(price) if price not in (None, "") else None

    def _product(self, product_id: t.Any) -> JSONDict:
        try:
            product = self._products.get(int(product_id))
        except (TypeError, ValueError):
            product = None
        if product is None or product["status"] != "publish" or product["type"] == "variable":
            raise WooError(400, "woocommerce_rest_cart_invalid_product",
                           "This product cannot be added to the cart.")
        return product

    def _available(self, product: JSONDict, cart: Cart | None) -> int | None:
        """Units another order may still take: stock minus others' holds (None: unlimited)."""
        if not product["manage_stock"]:
            return None if product["stock_status"] != "outofstock" else 0
        exclude = cart.draft_order_id if cart is not None else None
        return int(product["stock_quantity"] or 0) - self._held(int(product["id"]), exclude)

    def _money_fields(self) -> JSONDict:
        symbol = str(self.settings["currency_symbol"])
        return {"currency_code": self.settings["currency"], "currency_symbol": symbol,
                "currency_minor_unit": int(self.settings["price_decimals"]),
                "currency_decimal_separator": ".", "currency_thousand_separator": ",",
                "currency_prefix": symbol, "currency_suffix": ""}

    def _product_json(self, product: JSONDict, cart: Cart | None) -> JSONDict:
        available = self._available(product, cart)
        unit = self._cents(self._price(product)) if self._price(product) is not None else 0
        in_stock = available is None or available > 0
        maximum = 1 if product["sold_individually"] else (
            MAX_QUANTITY if available is None else max(0, min(available, MAX_QUANTITY)))
        return {
            "id": product["id"], "name": esc(product["name"]), "parent": product["parent_id"],
            "type": product["type"], "sku": product["sku"], "permalink": f"{self._site()}/?p={product['id']}",
            "short_description": product["short_description"], "description": "",
            "on_sale": bool(product.get("sale_price")),
            "prices": {"price": str(unit), "regular_price": str(self._cents(product["regular_price"])),
                       "sale_price": str(unit), "price_range": None, **self._money_fields()},
            "images": [{"id": i + 1, "src": src} for i, src in enumerate(product["images"])],
            "is_purchasable": self._price(product) is not None, "is_in_stock": in_stock,
            "is_on_backorder": False,
            "low_stock_remaining": (available if available is not None
                                    and available <= int(self.settings["notify_low_stock_amount"]) else None),
            "sold_individually": bool(product["sold_individually"]),
            "add_to_cart": {"text": "Add to cart", "description": "", "url": "", "minimum": 1,
                            "maximum": maximum, "multiple_of": 1},
            "extensions": {},
        }

    def _products_json(self, cart: Cart, query: cabc.Mapping[str, str]) -> list[JSONDict]:
        include = [int(i) for i in str(query.get("include") or "").split(",") if i.strip().isdigit()]
        products = [p for pid, p in sorted(self._products.items())
                    if p["status"] == "publish" and (not include or pid in include)]
        per_page = int(query.get("per_page") or 10)
        return [self._product_json(p, cart) for p in products[:per_page]]

