"""The fake site's state: the seed it loads (settings, products, taxes,
shipping, coupons), carts, orders, stock holds, the calls it received, and the
controls a test sets them with; the bottom layer of
:class:`~flask_acp.testing.fakes.woocommerce.FakeWooCommerce`."""

from __future__ import annotations

import collections
import collections.abc as cabc
import copy
import os
import secrets
import typing as t

from ..base import FakeClock
from ..base import FakeServer
from .model import DEFAULT_CONSUMER_KEY
from .model import DEFAULT_CONSUMER_SECRET
from .model import DEFAULT_WEBHOOK_SECRET
from .model import HOLDING
from .model import Cart
from .model import D
from .model import JSONDict
from .model import Rate
from .model import RecordedCall
from .model import Webhook
from .model import WebhookDelivery
from .model import load_seed

Seed = cabc.Mapping[str, t.Any] | str | os.PathLike[str]


class WooState(FakeServer[WebhookDelivery]):
    """The seeded state of the fake site and its controls."""

    name = "FakeWooCommerce"

    def __init__(self, seed: Seed | None = None, *, salt: str | None = None, host: str = "127.0.0.1",
                 port: int = 0, quiet: bool = True, clock: FakeClock | None = None) -> None:
        super().__init__(host=host, port=port, quiet=quiet, clock=clock)
        self._salt = (salt or secrets.token_hex(16)).encode()
        #: seconds a delivery waits for the answer
        self.webhook_timeout = 5.0
        self.reset(seed)

    def config(self, **extra: t.Any) -> JSONDict:
        """Flask config for the adapter: ``ACP_ADAPTER``, ``WOOCOMMERCE_URL``,
        ``WOOCOMMERCE_CONSUMER_KEY``, ``WOOCOMMERCE_CONSUMER_SECRET``,
        ``WOOCOMMERCE_WEBHOOK_SECRET`` (the default webhook secret) (+ ``extra``)."""
        return {"ACP_ADAPTER": "woocommerce", "WOOCOMMERCE_URL": self.url,
                "WOOCOMMERCE_CONSUMER_KEY": self.consumer_key,
                "WOOCOMMERCE_CONSUMER_SECRET": self.consumer_secret,
                "WOOCOMMERCE_WEBHOOK_SECRET": self.webhook_secret, **extra}

    def reset(self, seed: Seed | None = None) -> None:
        """Load ``seed`` (the demo seed when ``None``) and forget carts, orders,
        holds, faults, counters and the clock offset."""
        data = load_seed(seed)
        settings = {"currency": "USD", "currency_symbol": "$", "price_decimals": 2,
                    "prices_include_tax": False, "tax_display_cart": "excl",
                    "tax_round_at_subtotal": False, "base_location": {"country": "", "state": ""},
                    "notify_low_stock_amount": 2, "packages": "single", "site_url": None,
                    "hold_stock_minutes": 60}
        settings.update(data.get("settings") or {})
        with self._lock:
            self.settings: JSONDict = settings
            self.consumer_key: str = data.get("consumer_key") or DEFAULT_CONSUMER_KEY
            self.consumer_secret: str = data.get("consumer_secret") or DEFAULT_CONSUMER_SECRET
            self.webhook_secret: str = data.get("webhook_secret") or DEFAULT_WEBHOOK_SECRET
            self._products: dict[int, JSONDict] = {}
            for raw in data.get("products") or []:
                product = {"type": "simple", "parent_id": 0, "sku": "", "status": "publish",
                           "regular_price": "", "sale_price": "", "tax_status": "taxable",
                           "tax_class": "", "virtual": False, "downloadable": False,
                           "manage_stock": False, "stock_quantity": None, "stock_status": "instock",
                           "backorders": "no", "sold_individually": False, "shipping_class": "",
                           "images": [], "short_description": "", **raw}
                self._products[int(product["id"])] = product
            self._tax_rates = [Rate(int(r.get("id", i + 1)), D(str(r["rate"])) / 100,
                                    str(r.get("name") or "Tax"), bool(r.get("shipping", True)))
                               for i, r in enumerate(data.get("tax_rates") or [])]
            self._tax_rules = list(data.get("tax_rates") or [])
            self._zones = list(data.get("shipping_zones") or [])
            self._world_methods = list(data.get("rest_of_world_methods") or [])
            self._coupons = {str(c["code"]).lower(): {"discount_type": "percent", "amount": "0",
                                                      "auto_apply": False, "minimum_amount": "",
                                                      "usage_limit": None, "usage_count": 0,
                                                      "date_expires": None, "free_shipping": False, **c}
                             for c in data.get("coupons") or []}
            self._fees = list(data.get("fees") or [])
            self._carts: dict[str, Cart] = {}
            self._orders: dict[int, JSONDict] = {}
            self._holds: list[JSONDict] = []  # {order_id, product_id, quantity, expires}
            self._next_order_id = int(data.get("next_order_id") or 100)
            self._next_item_id = 1
            super().reset()
            self._calls: list[RecordedCall] = []
            self._webhook_events: list[JSONDict] = []
            self._webhooks: dict[int, Webhook] = {}
            self._next_webhook_id = 1
            self._deliveries: list[WebhookDelivery] = []
            self._drop_next = 0

    def now(self) -> float:
        """The fake clock (:attr:`clock`), Unix seconds."""
        return self.clock.time()

    # ----------------------------------------------------------------- inspection

    @property
    def counts(self) -> dict[str, int]:
        """HTTP calls per route name (``{"GET /wc/store/v1/cart": 1, ...}``)."""
        with self._lock:
            return dict(collections.Counter(c.route for c in self._calls if not c.batched))

    @property
    def batched_counts(self) -> dict[str, int]:
        """Calls made inside ``POST /wc/store/v1/batch`` per route name."""
        with self._lock:
            return dict(collections.Counter(c.route for c in self._calls if c.batched))

    @property
    def calls(self) -> list[RecordedCall]:
        """Every call in order (batched ones flagged)."""
        with self._lock:
            return list(self._calls)

    def reset_counts(self) -> None:
        """Forget the recorded calls."""
        with self._lock:
            self._calls.clear()

    @property
    def webhook_events(self) -> list[JSONDict]:
        """``{topic, resource, resource_id, at}`` for every order change (not delivered yet)."""
        with self._lock:
            return copy.deepcopy(self._webhook_events)

    def last_order_id(self) -> int | None:
        """The highest order id, if any."""
        with self._lock:
            return max(self._orders) if self._orders else None

    def stock(self, product_id: int) -> int | None:
        """``stock_quantity`` of a product."""
        with self._lock:
            return t.cast("int | None", self._products[product_id]["stock_quantity"])

    def held(self, product_id: int) -> int:
        """Units of a product held by unexpired holds of draft/pending orders."""
        with self._lock:
            return self._held(product_id, None)

    def _held(self, product_id: int, exclude_order: int | None) -> int:
        now = self.now()
        total = 0
        for hold in self._holds:
            order = self._orders.get(hold["order_id"])
            if (hold["product_id"] == product_id and hold["expires"] > now
                    and hold["order_id"] != exclude_order
                    and order is not None and order["status"] in HOLDING):
                total += hold["quantity"]
        return total

    def _record(self, method: str, path: str, route: str, status: int, batched: bool = False) -> None:
        with self._lock:
            self._calls.append(RecordedCall(method, path, route, status, batched))

    def _item_id(self) -> int:
        self._next_item_id += 1
        return self._next_item_id - 1

    def _site(self) -> str:
        return str(self.settings.get("site_url") or (self.url if self.running else "http://shop.test"))

    def _order_json(self, order: JSONDict, dp: int | None) -> JSONDict:
        """The REST v3 representation of an order (see the ``orders`` layer)."""
        raise NotImplementedError

