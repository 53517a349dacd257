"""A stateful fake WooCommerce site for tests: the Store API cart and checkout and
the REST v3 orders endpoints, served over real HTTP on ``127.0.0.1``.

::

    with FakeWooCommerce("flask_acp/testing/woocommerce_demo_seed.json") as woo:
        app.config.update(woo.config())          # WOOCOMMERCE_URL, _CONSUMER_KEY, _SECRET
        ...
        assert woo.counts["GET /wc/store/v1/checkout"] == 1
        assert woo.order(woo.last_order_id())["status"] == "processing"

Standalone: ``python -m flask_acp.testing.fake_woocommerce --port 8089 --seed FILE``
(prints the URL and the consumer key and secret).

Endpoints (under ``/wp-json``; ``/?rest_route=/wc/...`` works too):

=====================================================  =====================================
Store API (no auth; ``Cart-Token``/``Nonce``)
``GET  /wc/store/v1/cart``                             the cart (a new one without a token)
``POST /wc/store/v1/cart/add-item``                    ``{id, quantity}`` (merges a product)
``POST /wc/store/v1/cart/update-item``                 ``{key, quantity}``
``POST /wc/store/v1/cart/remove-item``                 ``{key}``
``POST /wc/store/v1/cart/update-customer``             ``{billing_address, shipping_address}``
``POST /wc/store/v1/cart/select-shipping-rate``        ``{package_id, rate_id}``
``POST /wc/store/v1/cart/apply-coupon`` / ``remove-coupon``  ``{code}``
``DELETE /wc/store/v1/cart/items``                     empty the cart
``POST /wc/store/v1/batch``                            ``{requests: [{path, method, body, headers}]}``
                                                       (<= 25, mutating cart routes; 207)
``GET  /wc/store/v1/checkout``                         create/update the checkout-draft order,
                                                       hold its stock 10 minutes
``POST /wc/store/v1/checkout``                         always refuses the payment method (no
                                                       gateway: why the adapter uses REST)
``GET  /wc/store/v1/products[?include=1,2]``, ``/products/{id}``
REST v3 (HTTP Basic consumer key/secret, or ``?consumer_key=&consumer_secret=``)
``GET  /wc/v3/orders/{id}``, ``PUT /wc/v3/orders/{id}``, ``POST /wc/v3/orders``,
``GET  /wc/v3/orders`` (``status``, ``include``, ``after``, ``modified_after``, ``page``,
``per_page``, ``orderby``, ``order``; ``X-WP-Total``/``X-WP-TotalPages``/``Link``); ``?dp=N``.
=====================================================  =====================================

Behaviour reproduced (platforms.md §3, §6.2):

* Money: Store API amounts are integer strings in the store's minor unit
  (``price_decimals``, which may differ from ISO 4217: JPY with 2); REST amounts
  are decimal strings with ``dp`` (default ``price_decimals``) decimals; line
  item ``price`` is a JSON float, as in WooCommerce.
* Cart maths in store minor units: per line, price × quantity rounded half-up;
  tax per line half-up (``prices_include_tax``: the tax is taken out of the
  price); coupons (``percent``: floor per line, the remainder spread a unit at a
  time; ``fixed_cart``: proportional, same remainder rule; ``fixed_product``)
  on the price as entered (tax-inclusive or not), applied in order; coupon
  ``total_discount_tax`` rounded per coupon (so it can differ from the cart's);
  fees (ex tax); shipping rates per package (``flat_rate`` cost + per-item,
  ``free_shipping`` with ``requires``/``min_amount``, ``local_pickup``), taxed
  at the location's shipping rates; ``tax_round_at_subtotal`` rounds the items'
  tax once at cart level (so ``total_tax`` can differ from the lines' sum).
* Coupons with ``auto_apply: true`` are applied by the store itself whenever
  their conditions hold (as coupon plugins do); invalid applied coupons show
  in the cart ``errors`` and give no discount.
* Stock: ``add-item``/``update-item`` refuse quantities above stock minus the
  unexpired holds of other orders (``woocommerce_rest_product_out_of_stock`` /
  ``..._partially_out_of_stock``); the cart ``errors`` list lines the stock no
  longer covers; ``GET /checkout`` holds stock for 10 (fake-clock) minutes or
  fails with 403 ``woocommerce_product_not_enough_stock``; holds count only for
  ``checkout-draft``/``pending`` orders and end on payment or cancellation.
* Orders: ``PUT`` applies props, recalculates taxes if ``billing``/``shipping``
  are sent, sets ``status``, then ``set_paid`` runs ``payment_complete()`` only
  if the order ``needs_payment()`` (``pending``/``failed`` with a total > 0):
  ``processing`` (``completed`` when every line is virtual and downloadable),
  ``date_paid``, stock reduced, holds released.
* ``Cart-Token``: an HS256 JWT signed with the fake's salt, 48 h (fake clock); an
  unknown, forged or expired token gets a new empty cart and a new token.
  ``Nonce``: changes every 12 h. Mutating Store API calls need a valid
  ``Cart-Token`` or ``Nonce`` (401 ``woocommerce_rest_missing_nonce``, 403
  ``woocommerce_rest_invalid_nonce``).
* Errors: ``{code, message, data: {status}}`` (409 cart conflicts add ``data.cart``).

Seed (JSON; every key optional)::

    {"settings": {"currency": "USD", "currency_symbol": "$", "price_decimals": 2,
                  "prices_include_tax": false, "tax_display_cart": "excl",
                  "tax_round_at_subtotal": false, "base_location": {"country": "US", "state": "CA"},
                  "notify_low_stock_amount": 2, "packages": "single" | "by_shipping_class",
                  "site_url": null, "hold_stock_minutes": 60},
     "consumer_key": "ck_...", "consumer_secret": "cs_...",
     "webhook_secret": "..." (the default secret of :meth:`FakeWooCommerce.add_webhook`),
     "products": [{"id": 10, "name": "...", "regular_price": "18.00", "sale_price": "",
                   "type": "simple" | "variation" | "variable", "parent_id": 0, "sku": "",
                   "status": "publish", "tax_status": "taxable", "tax_class": "",
                   "virtual": false, "downloadable": false, "manage_stock": true,
                   "stock_quantity": 5, "stock_status": "instock", "sold_individually": false,
                   "shipping_class": "", "images": ["https://..."], "short_description": ""}],
     "tax_rates": [{"id": 1, "country": "US", "state": "CA", "rate": "8.2500", "name": "CA",
                    "priority": 1, "shipping": true, "class": ""}],
     "shipping_zones": [{"id": 1, "name": "US", "locations": ["US", "US:CA", "941*"],
                         "methods": [{"instance_id": 1, "method_id": "flat_rate", "title": "...",
                                      "cost": "5.00", "cost_per_item": "0", "tax_status": "taxable",
                                      "min_amount": "50.00", "requires": "min_amount"}]}],
     "rest_of_world_methods": [...],
     "coupons": [{"code": "WELCOME10", "discount_type": "percent", "amount": "10",
                  "auto_apply": false, "minimum_amount": "", "usage_limit": null,
                  "usage_count": 0, "date_expires": null (Unix seconds, fake clock),
                  "free_shipping": false}],
     "fees": [{"name": "Handling", "amount": "1.00", "taxable": true}],
     "next_order_id": 100}

Test controls: :meth:`FakeWooCommerce.fail_next` (``"500"``, ``"500_after"``,
``"html_503"``, ``"429"``, ``"timeout"``, ``"drop_after"``), :meth:`advance_clock`,
:meth:`freeze_clock`, :meth:`set_stock`, :meth:`set_price`; inspection: :attr:`counts` (HTTP calls
per route name, e.g. ``"PUT /wc/v3/orders/{id}"``), :attr:`batched_counts`
(calls inside batches), :attr:`calls`, :meth:`order`, :meth:`stock`,
:meth:`held`, :attr:`webhook_events`.

Merchant actions, as in WooCommerce's admin (each saves the order once, so one
``order.updated``): :meth:`complete_order`, :meth:`cancel_order`,
:meth:`set_order_status`, :meth:`refund` (``refunds[]`` entries with a negative
``total``; a full refund makes the order ``refunded``), :meth:`add_tracking`
(the Shipment Tracking extension's ``_wc_shipment_tracking_items`` meta).

Webhooks (platforms.md §3.7): :meth:`add_webhook` registers a delivery URL for a
topic (``order.updated``, ``order.created``) and sends the ping at once
(``POST`` form body ``webhook_id=N``, no signature). Every order save then
queues a delivery per matching active webhook; one background thread sends them
in order, building the payload when it sends (the REST v3 order as it is
then, as WooCommerce does) with the headers ``X-WC-Webhook-Source``,
``-Topic``, ``-Resource``, ``-Event``, ``-Signature`` (base64 HMAC-SHA256 of the
body, keyed by the webhook secret), ``-ID`` and ``-Delivery-ID`` (new per
attempt). 2xx, 301 and 302 are successes; failures are not retried (nor are
they by WooCommerce) and a webhook is ``disabled`` after more than 5 in a row.
Controls: :meth:`drop_next_deliveries` (queued, then lost: never sent),
:meth:`redeliver` (the same body again, new delivery id), :meth:`flush_webhooks`
(wait until sent); inspection: :attr:`deliveries`, :attr:`webhooks`.
"""

from __future__ import annotations

import argparse
import base64
import collections
import collections.abc as cabc
import copy
import dataclasses
import datetime as dt
import decimal
import hashlib
import hmac
import json
import os
import pathlib
import re
import secrets
import threading
import time
import typing as t
import urllib.parse

import requests
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map
from werkzeug.routing import Rule
from werkzeug.serving import BaseWSGIServer
from werkzeug.serving import WSGIRequestHandler
from werkzeug.serving import make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from ._wsgi import drop_connection

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment

__all__ = [
    "DEFAULT_CONSUMER_KEY",
    "DEFAULT_CONSUMER_SECRET",
    "DEFAULT_WEBHOOK_SECRET",
    "DEMO_SEED",
    "TRACKING_META_KEY",
    "FakeWooCommerce",
    "FaultKind",
    "RecordedCall",
    "WebhookDelivery",
    "load_seed",
    "main",
]

JSONDict = dict[str, t.Any]
DEFAULT_CONSUMER_KEY = "ck_fake_0123456789abcdef0123456789abcdef01234567"
DEFAULT_CONSUMER_SECRET = "cs_fake_0123456789abcdef0123456789abcdef01234567"  # noqa: S105
DEFAULT_WEBHOOK_SECRET = "wc_webhook_secret_fake_0123456789abcdef"  # noqa: S105
#: order meta key of the Shipment Tracking extension.
TRACKING_META_KEY = "_wc_shipment_tracking_items"
#: provider slugs the Shipment Tracking extension knows (others are "custom" providers).
_TRACKING_PROVIDERS = frozenset({"usps", "ups", "fedex", "dhl-us", "canada-post", "royal-mail"})
#: consecutive failed deliveries after which a webhook is disabled
#: (``woocommerce_max_webhook_delivery_failures``).
MAX_WEBHOOK_FAILURES = 5
WEBHOOK_USER_AGENT = "WooCommerce/10.3.0 Hookshot (WordPress/6.8.3)"
HERE = pathlib.Path(__file__).resolve().parent
DEMO_SEED = HERE / "woocommerce_demo_seed.json"
FaultKind = t.Literal["500", "500_after", "html_503", "429", "timeout", "drop_after"]
_FAULT_KINDS = ("500", "500_after", "html_503", "429", "timeout", "drop_after")
#: minutes ``GET /wc/store/v1/checkout`` holds stock for (WooCommerce's default).
CHECKOUT_HOLD_MINUTES = 10
CART_TOKEN_TTL = 48 * 3600
_HOLDING = ("checkout-draft", "pending")
_STATUSES = ("pending", "processing", "on-hold", "completed", "cancelled", "refunded", "failed",
             "checkout-draft", "trash")
_MAX_QUANTITY = 9999
D = decimal.Decimal


class RecordedCall(t.NamedTuple):
    """One HTTP call: ``route`` is the counter name (``"GET /wc/store/v1/cart"``)."""

    method: str
    path: str
    route: str
    status: int
    batched: bool = False


@dataclasses.dataclass
class WebhookDelivery:
    """One delivery attempt (or the ping) of a webhook, as sent and answered.

    :ivar topic: ``"order.updated"``..., or ``"ping"``.
    :ivar status: the HTTP status of the answer; ``None`` when there was none
        (connection refused, timeout) or the delivery was dropped.
    :ivar dropped: lost before sending (:meth:`FakeWooCommerce.drop_next_deliveries`).
    """

    delivery_id: str
    webhook_id: int
    topic: str
    resource_id: int | None
    body: bytes
    headers: dict[str, str]
    status: int | None = None
    response: bytes = b""
    error: str | None = None
    dropped: bool = False

    @property
    def ok(self) -> bool:
        """A success for WooCommerce: 2xx, 301 or 302."""
        return self.status is not None and 200 <= self.status < 303


@dataclasses.dataclass
class _Webhook:
    id: int
    topic: str
    delivery_url: str
    secret: str
    status: str = "active"  # active | paused | disabled
    failure_count: int = 0


class _WooError(Exception):
    def __init__(self, status: int, code: str, message: str, **data: t.Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.data = status, code, message, data

    def body(self) -> JSONDict:
        return {"code": self.code, "message": self.message, "data": {"status": self.status, **self.data}}


class _Drop(Exception):
    pass


@dataclasses.dataclass
class _Fault:
    kind: str
    count: int
    route: str | None
    seconds: float
    after: int = 0


@dataclasses.dataclass
class _Cart:
    user: str
    items: dict[str, JSONDict] = dataclasses.field(default_factory=dict)  # key -> {product_id, quantity}
    coupons: list[str] = dataclasses.field(default_factory=list)
    removed_auto: set[str] = dataclasses.field(default_factory=set)
    billing: JSONDict = dataclasses.field(default_factory=dict)
    shipping: JSONDict = dataclasses.field(default_factory=dict)
    chosen: dict[int, str] = dataclasses.field(default_factory=dict)
    draft_order_id: int | None = None


@dataclasses.dataclass
class _Rate:
    id: int
    rate: decimal.Decimal  # a fraction: 0.0825
    name: str
    shipping: bool


@dataclasses.dataclass
class _Line:
    key: str
    product: JSONDict
    quantity: int
    basis: int = 0  # price x qty in store minor units, as entered (incl. tax if inclusive)
    subtotal: int = 0
    subtotal_tax: int = 0
    total: int = 0
    total_tax: int = 0
    total_tax_exact: decimal.Decimal = D(0)
    rates: list[_Rate] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _ShipRate:
    rate_id: str
    method_id: str
    instance_id: int
    name: str
    description: str
    delivery_time: str
    cost: int
    taxes: int


@dataclasses.dataclass
class _Package:
    package_id: int
    name: str
    keys: list[str]
    rates: list[_ShipRate]
    selected: str | None


@dataclasses.dataclass
class _Calc:
    lines: list[_Line]
    coupons: list[tuple[str, str, int, int]]  # code, type, discount, discount tax
    fees: list[tuple[str, str, int, int]]  # id, name, total, tax
    packages: list[_Package]
    needs_shipping: bool
    has_calculated_shipping: bool
    tax_lines: list[tuple[_Rate, int]]
    errors: list[JSONDict]
    total_items: int = 0
    total_items_tax: int = 0
    total_discount: int = 0
    total_discount_tax: int = 0
    total_shipping: int = 0
    total_shipping_tax: int = 0
    total_fees: int = 0
    total_fees_tax: int = 0
    total_tax: int = 0
    total_price: int = 0


def _half_up(value: decimal.Decimal) -> int:
    return int(value.quantize(D(1), rounding=decimal.ROUND_HALF_UP))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_seed(seed: cabc.Mapping[str, t.Any] | str | os.PathLike[str] | None) -> JSONDict:
    """A seed as a dict: a mapping (copied), a JSON file path, or ``None`` (the demo seed)."""
    if seed is None:
        seed = DEMO_SEED
    if isinstance(seed, cabc.Mapping):
        return copy.deepcopy(dict(seed))
    return t.cast(JSONDict, json.loads(pathlib.Path(seed).read_text(encoding="utf-8")))


_ADDRESS_FIELDS = ("first_name", "last_name", "company", "address_1", "address_2", "city", "state",
                   "postcode", "country", "phone")


def _blank_address(billing: bool) -> JSONDict:
    out: JSONDict = {k: "" for k in _ADDRESS_FIELDS}
    if billing:
        out["email"] = ""
    return out


class FakeWooCommerce:
    """A fake WooCommerce site (see the module docstring).

    :param seed: a seed mapping, a JSON file path, or ``None`` for the demo seed.
    :param salt: the secret that signs Cart-Tokens and nonces (random by default).

    Thread-safe: every request is handled under one lock (faults' waits excepted).
    """

    def __init__(self, seed: cabc.Mapping[str, t.Any] | str | os.PathLike[str] | None = None, *,
                 salt: str | None = None) -> None:
        self._salt = (salt or secrets.token_hex(16)).encode()
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        #: guards the delivery queue (taken after ``_lock`` when both are needed)
        self._queue_cv = threading.Condition()
        self._queue: collections.deque[tuple[int, str, int]] = collections.deque()  # webhook, topic, order
        self._in_flight = 0
        self._sender: threading.Thread | None = None
        #: seconds a delivery waits for the answer
        self.webhook_timeout = 5.0
        self.reset(seed)

    # ----------------------------------------------------------------- lifecycle

    def start(self, port: int = 0, host: str = "127.0.0.1") -> FakeWooCommerce:
        """Serve on ``host:port`` (``0``: an ephemeral port) in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = make_server(host, port, self._wsgi, threaded=True, request_handler=_QuietHandler)
        self._server, self._port, self._host = server, server.server_port, host
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="FakeWooCommerce", daemon=True)
        self._thread.start()
        self._sender = threading.Thread(target=self._send_loop, name="FakeWooCommerce-webhooks", daemon=True)
        self._sender.start()
        return self

    def stop(self) -> None:
        """Stop serving (interrupts ``timeout`` faults); queued deliveries are not sent."""
        self._stopping.set()
        with self._queue_cv:
            self._queue_cv.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._sender is not None:
            self._sender.join(self.webhook_timeout + 5)
            self._sender = None

    def __enter__(self) -> FakeWooCommerce:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The site URL, e.g. ``"http://127.0.0.1:54321"`` (the REST root is ``{url}/wp-json``)."""
        if self._server is None:
            raise RuntimeError("FakeWooCommerce is not running; call start()")
        return f"http://{self._host}:{self._port}"

    def config(self, **extra: t.Any) -> JSONDict:
        """Flask config for the adapter: ``ACP_ADAPTER``, ``WOOCOMMERCE_URL``,
        ``WOOCOMMERCE_CONSUMER_KEY``, ``WOOCOMMERCE_CONSUMER_SECRET``,
        ``WOOCOMMERCE_WEBHOOK_SECRET`` (the default webhook secret) (+ ``extra``)."""
        return {"ACP_ADAPTER": "woocommerce", "WOOCOMMERCE_URL": self.url,
                "WOOCOMMERCE_CONSUMER_KEY": self.consumer_key,
                "WOOCOMMERCE_CONSUMER_SECRET": self.consumer_secret,
                "WOOCOMMERCE_WEBHOOK_SECRET": self.webhook_secret, **extra}

    def reset(self, seed: cabc.Mapping[str, t.Any] | str | os.PathLike[str] | None = None) -> None:
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
            self._tax_rates = [_Rate(int(r.get("id", i + 1)), D(str(r["rate"])) / 100,
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
            self._carts: dict[str, _Cart] = {}
            self._orders: dict[int, JSONDict] = {}
            self._holds: list[JSONDict] = []  # {order_id, product_id, quantity, expires}
            self._next_order_id = int(data.get("next_order_id") or 100)
            self._next_item_id = 1
            self._faults: list[_Fault] = []
            self._calls: list[RecordedCall] = []
            self._server_errors: list[BaseException] = []
            self._webhook_events: list[JSONDict] = []
            self._webhooks: dict[int, _Webhook] = {}
            self._next_webhook_id = 1
            self._deliveries: list[WebhookDelivery] = []
            self._drop_next = 0
            self._offset = 0.0
            self._frozen: float | None = None
        with self._queue_cv:
            self._queue.clear()

    # ----------------------------------------------------------------- test controls

    def fail_next(self, kind: FaultKind, *, route: str | None = None, count: int = 1,
                  after: int = 0, seconds: float = 1.0) -> None:
        """Make ``count`` calls of ``route`` (a counter name such as
        ``"PUT /wc/v3/orders/{id}"``; any route when ``None``) fail, once ``after``
        matching calls have passed untouched:

        * ``"500"``: 500 ``internal_server_error`` before anything is done.
        * ``"500_after"``: done, then answered 500.
        * ``"html_503"``: a 503 HTML maintenance page, nothing done.
        * ``"429"``: 429 ``rate_limit_exceeded`` with ``RateLimit-Retry-After: 2``, nothing done.
        * ``"timeout"``: waits ``seconds``, then closes the connection; nothing done.
        * ``"drop_after"``: done and saved, then the connection is closed unanswered.
        """
        if kind not in _FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {_FAULT_KINDS}")
        if count < 1 or after < 0:
            raise ValueError("count must be >= 1 and after >= 0")
        with self._lock:
            self._faults.append(_Fault(kind, count, route, seconds, after))

    def advance_clock(self, seconds: float) -> None:
        """Move the fake clock (stock holds, Cart-Token expiry, coupon expiry)."""
        with self._lock:
            self._offset += seconds

    def freeze_clock(self, frozen: bool = True) -> None:
        """Stop the fake clock where it is (:meth:`advance_clock` still moves it),
        or let it run again from there."""
        with self._lock:
            now = self.now()
            self._frozen, self._offset = (now, 0.0) if frozen else (None, now - time.time())

    def now(self) -> float:
        """The fake clock, Unix seconds."""
        return (time.time() if self._frozen is None else self._frozen) + self._offset

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
    def server_errors(self) -> list[BaseException]:
        """Unexpected exceptions inside the fake (answered 500); should stay empty."""
        with self._lock:
            return list(self._server_errors)

    @property
    def webhook_events(self) -> list[JSONDict]:
        """``{topic, resource, resource_id, at}`` for every order change (not delivered yet)."""
        with self._lock:
            return copy.deepcopy(self._webhook_events)

    def order(self, order_id: int, dp: int | None = None) -> JSONDict:
        """The REST v3 representation of an order (``KeyError`` if unknown)."""
        with self._lock:
            return self._order_json(self._orders[order_id], dp)

    @property
    def orders(self) -> dict[int, JSONDict]:
        """Every order (REST v3 representation) by id."""
        with self._lock:
            return {i: self._order_json(o, None) for i, o in self._orders.items()}

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

    # ----------------------------------------------------------------- merchant actions

    def set_order_status(self, order_id: int, status: str) -> JSONDict:
        """Change an order's status as the admin does (stock, ``date_completed``);
        one ``order.updated``. Returns the REST order."""
        if status not in _STATUSES:
            raise ValueError(f"unknown status {status!r}; one of {_STATUSES}")
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

    # ----------------------------------------------------------------- webhooks

    def add_webhook(self, delivery_url: str, *, topic: str = "order.updated", secret: str | None = None,
                    status: str = "active") -> int:
        """Register a webhook (``secret`` default: :attr:`webhook_secret`); an
        active one is pinged at once (see :meth:`ping`). Returns its id."""
        with self._lock:
            hook = _Webhook(self._next_webhook_id, topic, delivery_url,
                            self.webhook_secret if secret is None else secret, status)
            self._next_webhook_id += 1
            self._webhooks[hook.id] = hook
        if status == "active":
            self.ping(hook.id)
        return hook.id

    def set_webhook(self, webhook_id: int, *, status: str | None = None, secret: str | None = None,
                    delivery_url: str | None = None) -> None:
        """Change a webhook (re-activating resets its failure count)."""
        with self._lock:
            hook = self._webhooks[webhook_id]
            if status is not None:
                hook.status = status
                hook.failure_count = 0 if status == "active" else hook.failure_count
            hook.secret = hook.secret if secret is None else secret
            hook.delivery_url = delivery_url or hook.delivery_url

    def ping(self, webhook_id: int) -> WebhookDelivery:
        """Send the ping of a new webhook now: ``POST`` form body ``webhook_id=N``,
        no ``X-WC-Webhook-*`` headers and no signature (``WC_Webhook::deliver_ping``)."""
        with self._lock:
            hook = self._webhooks[webhook_id]
            delivery = WebhookDelivery(
                delivery_id="", webhook_id=hook.id, topic="ping", resource_id=None,
                body=f"webhook_id={hook.id}".encode(),
                headers={"User-Agent": WEBHOOK_USER_AGENT,
                         "Content-Type": "application/x-www-form-urlencoded"})
            url = hook.delivery_url
        return self._send(delivery, url, count_failures=False)

    def drop_next_deliveries(self, count: int = 1) -> None:
        """Lose the next ``count`` order deliveries (WooCommerce's queue never
        runs them): recorded in :attr:`deliveries` with ``dropped``, never sent."""
        with self._lock:
            self._drop_next += count

    def redeliver(self, delivery_id: str) -> WebhookDelivery:
        """Send a recorded delivery's body again now, with its headers and a new
        ``X-WC-Webhook-Delivery-ID``; returns the new attempt."""
        with self._lock:
            original = next(d for d in self._deliveries if d.delivery_id == delivery_id)
            hook = self._webhooks[original.webhook_id]
            new_id = secrets.token_hex(16)
            headers = {**original.headers, "X-WC-Webhook-Delivery-ID": new_id}
            delivery = dataclasses.replace(original, delivery_id=new_id, headers=headers, status=None,
                                           response=b"", error=None, dropped=False)
            url = hook.delivery_url
        return self._send(delivery, url)

    def flush_webhooks(self, timeout: float = 10.0) -> list[WebhookDelivery]:
        """Wait until every queued delivery is sent and answered; returns :attr:`deliveries`.

        :raises TimeoutError: still sending after ``timeout`` seconds (or not started).
        """
        deadline = time.monotonic() + timeout
        with self._queue_cv:
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pending = len(self._queue) + self._in_flight
                    raise TimeoutError(f"{pending} webhook deliveries still pending")
                self._queue_cv.wait(remaining)
        return self.deliveries

    @property
    def deliveries(self) -> list[WebhookDelivery]:
        """Every ping and delivery attempt, in order (copies)."""
        with self._lock:
            return [dataclasses.replace(d) for d in self._deliveries]

    @property
    def webhooks(self) -> list[JSONDict]:
        """``{id, topic, delivery_url, secret, status, failure_count}`` per webhook."""
        with self._lock:
            return [dataclasses.asdict(h) for h in self._webhooks.values()]

    def _emit(self, topic: str, order: JSONDict) -> None:
        """An order was saved (caller holds the lock): record the event and queue
        a delivery for every active webhook of ``topic``."""
        self._webhook_events.append({"topic": topic, "resource": "order", "resource_id": order["id"],
                                     "at": self.now()})
        for hook in self._webhooks.values():
            if hook.status != "active" or hook.topic != topic:
                continue
            if self._drop_next > 0:
                self._drop_next -= 1
                delivery = self._delivery(hook, topic, order)
                delivery.dropped = True
                self._deliveries.append(delivery)
                continue
            with self._queue_cv:
                self._queue.append((hook.id, topic, order["id"]))
                self._queue_cv.notify_all()

    def _delivery(self, hook: _Webhook, topic: str, order: JSONDict) -> WebhookDelivery:
        """A signed delivery of ``order`` as it is now (caller holds the lock)."""
        body = json.dumps(self._order_json(order, None), separators=(",", ":")).encode()
        key = _wp_specialchars_decode(hook.secret).encode()
        signature = base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()
        delivery_id = secrets.token_hex(16)
        resource, _, event = topic.partition(".")
        return WebhookDelivery(
            delivery_id=delivery_id, webhook_id=hook.id, topic=topic, resource_id=order["id"], body=body,
            headers={
                "Content-Type": "application/json", "User-Agent": WEBHOOK_USER_AGENT,
                "X-WC-Webhook-Source": f"{self._site()}/", "X-WC-Webhook-Topic": topic,
                "X-WC-Webhook-Resource": resource, "X-WC-Webhook-Event": event,
                "X-WC-Webhook-Signature": signature,
                "X-WC-Webhook-ID": str(hook.id), "X-WC-Webhook-Delivery-ID": delivery_id,
            })

    def _send_loop(self) -> None:
        """The delivery thread: sends queued deliveries one at a time, in order."""
        while True:
            with self._queue_cv:
                while not self._queue and not self._stopping.is_set():
                    self._queue_cv.wait(0.5)
                if self._stopping.is_set():
                    return
                webhook_id, topic, order_id = self._queue.popleft()
                self._in_flight += 1
            try:
                with self._lock:
                    hook = self._webhooks.get(webhook_id)
                    order = self._orders.get(order_id)
                    if hook is None or hook.status != "active" or order is None:
                        continue
                    delivery = self._delivery(hook, topic, order)
                    url = hook.delivery_url
                self._send(delivery, url)
            except Exception as exc:  # never let the thread die silently
                with self._lock:
                    self._server_errors.append(exc)
            finally:
                with self._queue_cv:
                    self._in_flight -= 1
                    self._queue_cv.notify_all()

    def _send(self, delivery: WebhookDelivery, url: str, *, count_failures: bool = True) -> WebhookDelivery:
        """POST ``delivery`` to ``url`` (no lock held), record it and the webhook's
        failure count (``WC_Webhook::log_delivery``)."""
        try:
            response = requests.post(url, data=delivery.body, headers=delivery.headers,
                                     timeout=self.webhook_timeout, allow_redirects=False)
            delivery.status, delivery.response = response.status_code, response.content[:4096]
        except requests.RequestException as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self._deliveries.append(delivery)
            hook = self._webhooks.get(delivery.webhook_id)
            if hook is not None and count_failures:
                if delivery.ok:
                    hook.failure_count = 0
                elif hook.failure_count > MAX_WEBHOOK_FAILURES:
                    hook.status = "disabled"
                else:
                    hook.failure_count += 1
        return dataclasses.replace(delivery)

    # ----------------------------------------------------------------- HTTP plumbing

    def _wsgi(self, environ: WSGIEnvironment, start_response: StartResponse) -> t.Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._handle(request)
        except _Drop:
            drop_connection(environ, "FakeWooCommerce dropped the connection")
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        path = request.path
        if path.rstrip("/") == "" and "rest_route" in request.args:
            path = "/wp-json" + request.args["rest_route"]
        route = path[len("/wp-json"):] if path.startswith("/wp-json/") else None
        try:
            if route is None:
                raise HTTPException()
            endpoint, args = _URLS.bind("fake").match(route, request.method)
        except HTTPException:
            return _json(404, _WooError(404, "rest_no_route", "No route was found matching the URL and "
                                             "request method.").body())
        name = str(endpoint)
        with self._lock:
            fault = self._take_fault(name)
        if fault is not None and fault.kind == "timeout":
            self._record(request.method, path, name, 0)
            self._stopping.wait(fault.seconds)
            raise _Drop
        if fault is not None and fault.kind in ("500", "html_503", "429"):
            self._record(request.method, path, name, {"500": 500, "html_503": 503, "429": 429}[fault.kind])
            return _fault_response(fault.kind)
        with self._lock:
            try:
                status, body, headers = self._dispatch(name, args, request)
            except _WooError as exc:
                status, body, headers = exc.status, exc.body(), self._store_headers(request, name)
            except Exception as exc:
                self._server_errors.append(exc)
                status, body, headers = 500, _WooError(500, "internal_server_error", repr(exc)).body(), {}
            self._record(request.method, path, name, status)
        if fault is not None and fault.kind == "drop_after":
            raise _Drop
        if fault is not None and fault.kind == "500_after":
            return _fault_response("500")
        return _json(status, body, headers)

    def _record(self, method: str, path: str, route: str, status: int, batched: bool = False) -> None:
        with self._lock:
            self._calls.append(RecordedCall(method, path, route, status, batched))

    def _take_fault(self, route: str) -> _Fault | None:
        for fault in self._faults:
            if fault.route is None or fault.route == route:
                if fault.after > 0:
                    fault.after -= 1
                    return None
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _dispatch(self, name: str, args: cabc.Mapping[str, t.Any],
                  request: Request) -> tuple[int, t.Any, dict[str, str]]:
        body = request.get_json(silent=True) if request.data else None
        if name.split(" ", 1)[1].startswith("/wc/v3/"):
            self._authenticate(request)
            status, data, headers = self._rest(name, args, body, request.args)
            return status, data, headers
        if name == "POST /wc/store/v1/batch":
            return self._batch(request, body)
        cart, token = self._cart_for(dict(request.headers), mutating=request.method != "GET" and
                                     name != "GET /wc/store/v1/checkout")
        status, data = self._store(name, args, body or {}, request.args, cart)
        return status, data, self._session_headers(token)

    # ----------------------------------------------------------------- Store API session

    def _token(self, user: str) -> str:
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64(json.dumps({"user_id": user, "exp": int(self.now()) + CART_TOKEN_TTL,
                                   "iss": "store-api"}).encode())
        signature = _b64(hmac.new(self._salt, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        return f"{header}.{payload}.{signature}"

    def _token_user(self, token: str | None) -> str | None:
        """The cart user of a valid, unexpired token naming a known cart."""
        if not token or token.count(".") != 2:
            return None
        header, payload, signature = token.split(".")
        expected = _b64(hmac.new(self._salt, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, signature):
            return None
        try:
            claims = json.loads(_unb64(payload))
        except ValueError:
            return None
        user = claims.get("user_id")
        if not isinstance(user, str) or claims.get("exp", 0) < self.now() or user not in self._carts:
            return None
        return user

    def _nonce(self, tick: int | None = None) -> str:
        tick = int(self.now() // 43200) if tick is None else tick
        return hmac.new(self._salt, f"wc_store_api|{tick}".encode(), hashlib.sha256).hexdigest()[:10]

    def _cart_for(self, headers: cabc.Mapping[str, str], *, mutating: bool) -> tuple[_Cart, str]:
        token = headers.get("Cart-Token")
        user = self._token_user(token)
        if user is None and mutating:
            nonce = headers.get("Nonce")
            if not nonce:
                raise _WooError(401, "woocommerce_rest_missing_nonce",
                                "Missing the Nonce header. This endpoint requires a valid nonce.")
            tick = int(self.now() // 43200)
            if nonce not in (self._nonce(tick), self._nonce(tick - 1)):
                raise _WooError(403, "woocommerce_rest_invalid_nonce", "Nonce is invalid.")
        if user is None:
            user = "t_" + secrets.token_hex(15)
            self._carts[user] = _Cart(user=user, billing=_blank_address(True),
                                      shipping=_blank_address(False))
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
            raise _WooError(400, "rest_invalid_param", "Invalid parameter(s): requests",
                            params={"requests": "requests is a required property of the batch."})
        if len(requests_) > 25:
            raise _WooError(400, "rest_invalid_param", "Invalid parameter(s): requests",
                            params={"requests": "requests must contain at most 25 items."})
        for item in requests_:
            if not isinstance(item, dict) or "wc/store" not in str(item.get("path")) or \
                    str(item.get("method", "POST")).upper() not in ("POST", "PUT", "PATCH", "DELETE"):
                raise _WooError(400, "woocommerce_rest_invalid_path", "Invalid path provided.")
        outer_token = request.headers.get("Cart-Token")
        cart: _Cart | None = None
        token: str | None = None
        responses = []
        for item in requests_:
            method = str(item.get("method", "POST")).upper()
            headers = {**{k: v for k, v in request.headers.items() if k in ("Cart-Token", "Nonce")},
                       **{str(k): str(v) for k, v in (item.get("headers") or {}).items()}}
            path = urllib.parse.urlsplit(str(item["path"])).path
            try:
                endpoint, args = _URLS.bind("fake").match(path, method)
            except HTTPException:
                responses.append({"body": _WooError(404, "rest_no_route", "No route was found matching "
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
            except _WooError as exc:
                status, data = exc.status, exc.body()
            self._record(method, "/wp-json" + path, name, status, batched=True)
            responses.append({"body": data, "status": status, "headers": self._session_headers(token)})
        return 207, {"responses": responses}, self._session_headers(token)

    # ----------------------------------------------------------------- Store API routes

    def _store(self, name: str, args: cabc.Mapping[str, t.Any], body: JSONDict, query: cabc.Mapping[str, str],
               cart: _Cart) -> tuple[int, t.Any]:
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
            raise _WooError(400, "woocommerce_rest_checkout_invalid_payment_method",
                            f"The selected payment method ({method}) is not available; this store "
                            "has no payment gateway.")
        elif name == "GET /wc/store/v1/products":
            return 200, self._products_json(cart, query)
        elif name == "GET /wc/store/v1/products/{id}":
            product = self._products.get(int(args["id"]))
            if product is None or product["status"] != "publish":
                raise _WooError(404, "woocommerce_rest_product_invalid_id", "Invalid product ID.")
            return 200, self._product_json(product, cart)
        return 200, self._cart_json(cart)

    def _conflict(self, cart: _Cart) -> _WooError:
        return _WooError(409, "woocommerce_rest_cart_invalid_key",
                         "Cart item no longer exists or is invalid.", cart=self._cart_json(cart))

    def _product(self, product_id: t.Any) -> JSONDict:
        try:
            product = self._products.get(int(product_id))
        except (TypeError, ValueError):
            product = None
        if product is None or product["status"] != "publish" or product["type"] == "variable":
            raise _WooError(400, "woocommerce_rest_cart_invalid_product",
                            "This product cannot be added to the cart.")
        return product

    def _available(self, product: JSONDict, cart: _Cart | None) -> int | None:
        """Units another order may still take: stock minus others' holds (None: unlimited)."""
        if not product["manage_stock"]:
            return None if product["stock_status"] != "outofstock" else 0
        exclude = cart.draft_order_id if cart is not None else None
        return int(product["stock_quantity"] or 0) - self._held(int(product["id"]), exclude)

    def _held(self, product_id: int, exclude_order: int | None) -> int:
        now = self.now()
        total = 0
        for hold in self._holds:
            order = self._orders.get(hold["order_id"])
            if (hold["product_id"] == product_id and hold["expires"] > now
                    and hold["order_id"] != exclude_order
                    and order is not None and order["status"] in _HOLDING):
                total += hold["quantity"]
        return total

    def _check_quantity(self, product: JSONDict, quantity: int, cart: _Cart) -> None:
        name = _esc(product["name"])
        if self._price(product) is None:
            raise _WooError(400, "woocommerce_rest_product_not_purchasable",
                            f"&quot;{name}&quot; is not available for purchase.")
        if product["sold_individually"] and quantity > 1:
            raise _WooError(400, "woocommerce_rest_cart_product_sold_individually",
                            f"You cannot add another &quot;{name}&quot; to your cart.")
        available = self._available(product, cart)
        if available is not None and quantity > available:
            if available <= 0:
                raise _WooError(400, "woocommerce_rest_product_out_of_stock",
                                f"You cannot add &quot;{name}&quot; to the cart because the product is "
                                "out of stock.")
            raise _WooError(400, "woocommerce_rest_product_partially_out_of_stock",
                            f"You cannot add that amount of &quot;{name}&quot; to the cart because there "
                            f"is not enough stock ({available} remaining).")

    def _add_item(self, cart: _Cart, body: JSONDict) -> None:
        product = self._product(body.get("id"))
        quantity = body.get("quantity", 1)
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
            raise _WooError(400, "rest_invalid_param", "Invalid parameter(s): quantity",
                            params={"quantity": "quantity is not of type integer."})
        key = hashlib.md5(str(product["id"]).encode()).hexdigest()  # noqa: S324 - WC's cart key
        existing = cart.items.get(key, {}).get("quantity", 0)
        self._check_quantity(product, existing + quantity, cart)
        cart.items[key] = {"product_id": int(product["id"]), "quantity": existing + quantity}

    def _update_item(self, cart: _Cart, body: JSONDict) -> None:
        key = str(body.get("key") or "")
        if key not in cart.items:
            raise self._conflict(cart)
        quantity = body.get("quantity")
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 0:
            raise _WooError(400, "rest_invalid_param", "Invalid parameter(s): quantity",
                            params={"quantity": "quantity is not of type integer."})
        if quantity == 0:
            del cart.items[key]
            return
        self._check_quantity(self._products[cart.items[key]["product_id"]], quantity, cart)
        cart.items[key]["quantity"] = quantity

    def _update_customer(self, cart: _Cart, body: JSONDict) -> None:
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
            raise _WooError(400, "rest_invalid_param", "Invalid parameter(s): " + ", ".join(params),
                            params=params)
        for field, target in (("billing_address", cart.billing), ("shipping_address", cart.shipping)):
            given = body.get(field)
            if isinstance(given, dict):
                target.update({k: str(v) for k, v in given.items() if k in target})

    def _select_rate(self, cart: _Cart, body: JSONDict) -> None:
        rate_id = body.get("rate_id")
        if not rate_id:
            raise _WooError(400, "woocommerce_rest_cart_missing_rate_id", "Invalid Rate ID.")
        calc = self._calculate(cart)
        package_id = body.get("package_id")
        packages = [p for p in calc.packages if package_id is None or p.package_id == package_id]
        if not packages:
            raise _WooError(400, "woocommerce_rest_cart_invalid_package", "Invalid Package ID.")
        for package in packages:
            if rate_id not in [r.rate_id for r in package.rates]:
                raise _WooError(400, "woocommerce_rest_cart_invalid_rate", "Invalid Rate ID.")
            cart.chosen[package.package_id] = str(rate_id)

    def _apply_coupon(self, cart: _Cart, code: str) -> None:
        coupon = self._coupons.get(code.lower())
        if coupon is None:
            raise _WooError(400, "woocommerce_rest_cart_coupon_error",
                            f"Coupon &quot;{code}&quot; does not exist!")
        applied = [c.lower() for c in cart.coupons] + self._auto_coupons(cart)
        if code.lower() in applied:
            raise _WooError(400, "woocommerce_rest_cart_coupon_error",
                            f"Coupon code &quot;{code}&quot; already applied!")
        problem = self._coupon_problem(coupon, self._calculate(cart, coupons=[]).total_items)
        if problem:
            raise _WooError(400, "woocommerce_rest_cart_coupon_error", problem)
        cart.coupons.append(str(coupon["code"]))
        cart.removed_auto.discard(code.lower())

    def _remove_coupon(self, cart: _Cart, code: str) -> None:
        if code.lower() in [c.lower() for c in cart.coupons]:
            cart.coupons = [c for c in cart.coupons if c.lower() != code.lower()]
        elif code.lower() in self._auto_coupons(cart):
            cart.removed_auto.add(code.lower())
        else:
            raise _WooError(400, "woocommerce_rest_cart_coupon_invalid_code",
                            "Coupon cannot be removed because it is not already applied to the cart.")

    def _coupon_problem(self, coupon: JSONDict, items_subtotal: int) -> str | None:
        code = _esc(str(coupon["code"]))
        expires = coupon.get("date_expires")
        if expires is not None and float(expires) <= self.now():
            return f"Coupon &quot;{code}&quot; has expired."
        limit = coupon.get("usage_limit")
        if limit is not None and int(coupon.get("usage_count") or 0) >= int(limit):
            return f"Usage limit for coupon &quot;{code}&quot; has been reached."
        minimum = coupon.get("minimum_amount")
        if minimum and items_subtotal < self._cents(minimum):
            return (f"The minimum spend for coupon &quot;{code}&quot; is "
                    f"{self._format(self._cents(minimum))}.")
        return None

    def _auto_coupons(self, cart: _Cart) -> list[str]:
        return [code for code, c in self._coupons.items()
                if c.get("auto_apply") and code not in cart.removed_auto]

    def _checkout(self, cart: _Cart) -> JSONDict:
        if not cart.items:
            raise _WooError(400, "woocommerce_rest_cart_empty", "Cannot create order from empty cart.")
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
                name = _esc(product["name"])
                if available <= 0:
                    raise _WooError(403, "woocommerce_product_out_of_stock",
                                    f"&quot;{name}&quot; is out of stock and cannot be purchased.")
                raise _WooError(403, "woocommerce_product_not_enough_stock",
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

    # ----------------------------------------------------------------- the cart engine

    def _cents(self, value: t.Any) -> int:
        """A decimal price string in store minor units, half-up."""
        return _half_up(D(str(value or "0")).scaleb(int(self.settings["price_decimals"])))

    def _format(self, cents: int) -> str:
        return f"{self.settings['currency_symbol']}{D(cents).scaleb(-int(self.settings['price_decimals']))}"

    @staticmethod
    def _price(product: JSONDict) -> str | None:
        price = product.get("sale_price") or product.get("regular_price")
        return str(price) if price not in (None, "") else None

    def _location(self, cart_or_order: tuple[JSONDict, JSONDict]) -> tuple[str, str, str]:
        billing, shipping = cart_or_order
        for address in (shipping, billing):
            if address.get("country"):
                return (str(address["country"]), str(address.get("state") or ""),
                        str(address.get("postcode") or ""))
        base = self.settings.get("base_location") or {}
        return str(base.get("country") or ""), str(base.get("state") or ""), ""

    def _rates_for(self, location: tuple[str, str, str], tax_class: str, *,
                   shipping: bool = False) -> list[_Rate]:
        country, state, _postcode = location
        found: dict[int, _Rate] = {}
        for raw, rate in zip(self._tax_rules, self._tax_rates, strict=True):
            if str(raw.get("class") or "") != tax_class:
                continue
            if raw.get("country") and raw["country"] != country:
                continue
            if raw.get("state") and raw["state"] != state:
                continue
            if shipping and not rate.shipping:
                continue
            found.setdefault(int(raw.get("priority") or 1), rate)
        return list(found.values())

    def _calculate(self, cart: _Cart, *, coupons: list[str] | None = None) -> _Calc:
        items = [(key, self._products[i["product_id"]], int(i["quantity"])) for key, i in cart.items.items()]
        return self._calc(items, (cart.billing, cart.shipping), coupons=coupons, cart=cart)

    def _calc(self, items: list[tuple[str, JSONDict, int]], addresses: tuple[JSONDict, JSONDict], *,
              coupons: list[str] | None = None, cart: _Cart | None = None,
              shipping_lines: list[JSONDict] | None = None) -> _Calc:
        inclusive = bool(self.settings["prices_include_tax"])
        location = self._location(addresses)
        errors: list[JSONDict] = []
        lines: list[_Line] = []
        for key, product, quantity in items:
            line = _Line(key, product, quantity)
            price = self._price(product)
            exact = D(price or "0") * quantity
            line.basis = _half_up(exact.scaleb(int(self.settings["price_decimals"])))
            line.rates = (self._rates_for(location, str(product["tax_class"]))
                          if product["tax_status"] == "taxable" else [])
            lines.append(line)
            if cart is not None:
                errors.extend(self._item_errors(product, quantity, cart))
        # coupons
        if coupons is None and cart is not None:
            subtotal = sum(self._ex_tax(line.basis, line.rates, inclusive)[0] for line in lines)
            coupons = []
            for code in [c.lower() for c in cart.coupons] + self._auto_coupons(cart):
                coupon = self._coupons.get(code)
                if coupon is None or code in coupons:
                    continue
                problem = self._coupon_problem(coupon, subtotal)
                if problem is None:
                    coupons.append(code)
                elif code not in self._auto_coupons(cart):
                    errors.append({"code": "woocommerce_rest_cart_coupon_errors", "message": problem})
        remaining = [line.basis for line in lines]
        coupon_rows: list[tuple[str, str, int, int]] = []
        for code in coupons or []:
            coupon = self._coupons[code]
            discounts = self._coupon_discounts(coupon, lines, remaining)
            remaining = [r - d for r, d in zip(remaining, discounts, strict=True)]
            total_d = tax_d = 0
            exact_tax = D(0)
            for line, d in zip(lines, discounts, strict=True):
                r = sum((x.rate for x in line.rates), D(0))
                if inclusive:
                    part = _half_up(D(d) * r / (1 + r))
                    total_d += d - part
                    tax_d += part
                else:
                    total_d += d
                    exact_tax += D(d) * r
            if not inclusive:
                tax_d = _half_up(exact_tax)
            coupon_rows.append((str(coupon["code"]), str(coupon["discount_type"]), total_d, tax_d))
        items_tax_exact = D(0)
        for line, left in zip(lines, remaining, strict=True):
            line.subtotal, line.subtotal_tax, _exact = self._ex_tax(line.basis, line.rates, inclusive)
            line.total, line.total_tax, line.total_tax_exact = self._ex_tax(left, line.rates, inclusive)
            items_tax_exact += line.total_tax_exact
        calc = _Calc(lines=lines, coupons=coupon_rows, fees=[], packages=[], needs_shipping=False,
                     has_calculated_shipping=False, tax_lines=[], errors=errors)
        calc.total_items = sum(line.subtotal for line in lines)
        calc.total_items_tax = sum(line.subtotal_tax for line in lines)
        calc.total_discount = sum(line.subtotal - line.total for line in lines)
        calc.total_discount_tax = sum(line.subtotal_tax - line.total_tax for line in lines)
        std_rates = self._rates_for(location, "")
        for index, fee in enumerate(self._fees if lines else []):
            amount = self._cents(fee.get("amount"))
            tax = _half_up(D(amount) * sum((r.rate for r in std_rates), D(0))) if fee.get("taxable") else 0
            calc.fees.append((f"fee-{index}", str(fee.get("name") or "Fee"), amount, tax))
        calc.total_fees = sum(f[2] for f in calc.fees)
        calc.total_fees_tax = sum(f[3] for f in calc.fees)
        self._shipping(calc, location, cart, coupons or [], shipping_lines)
        items_tax = (_half_up(items_tax_exact) if self.settings["tax_round_at_subtotal"]
                     else sum(line.total_tax for line in lines))
        calc.total_tax = items_tax + calc.total_shipping_tax + calc.total_fees_tax
        calc.total_price = (sum(line.total for line in lines) + calc.total_shipping + calc.total_fees
                            + calc.total_tax)
        by_rate: dict[int, tuple[_Rate, D]] = {}
        for line in lines:
            r = sum((x.rate for x in line.rates), D(0))
            for rate in line.rates:
                share = line.total_tax_exact * (rate.rate / r) if r else D(0)
                by_rate[rate.id] = (rate, by_rate.get(rate.id, (rate, D(0)))[1] + share)
        ship_rates = self._rates_for(location, "", shipping=True)
        ship_r = sum((x.rate for x in ship_rates), D(0))
        for rate in ship_rates if ship_r else []:
            share = D(calc.total_shipping_tax) * (rate.rate / ship_r)
            by_rate[rate.id] = (rate, by_rate.get(rate.id, (rate, D(0)))[1] + share)
        std_r = sum((x.rate for x in std_rates), D(0))
        for rate in std_rates if std_r else []:
            share = D(calc.total_fees_tax) * (rate.rate / std_r)
            by_rate[rate.id] = (rate, by_rate.get(rate.id, (rate, D(0)))[1] + share)
        calc.tax_lines = [(rate, _half_up(amount)) for rate, amount in by_rate.values()]
        return calc

    @staticmethod
    def _ex_tax(amount: int, rates: list[_Rate], inclusive: bool) -> tuple[int, int, decimal.Decimal]:
        """``(amount ex tax, tax, exact tax)`` of a line amount in store minor units."""
        r = sum((x.rate for x in rates), D(0))
        if inclusive:
            exact = D(amount) * r / (1 + r)
            tax = _half_up(exact)
            return amount - tax, tax, exact
        exact = D(amount) * r
        return amount, _half_up(exact), exact

    def _coupon_discounts(self, coupon: JSONDict, lines: list[_Line], remaining: list[int]) -> list[int]:
        kind = coupon["discount_type"]
        amount = D(str(coupon["amount"]))
        if kind == "fixed_product":
            per_unit = self._cents(coupon["amount"])
            return [min(per_unit * line.quantity, left) for line, left in zip(lines, remaining, strict=True)]
        total = sum(remaining)
        if total <= 0:
            return [0 for _ in lines]
        if kind == "percent":
            discounts = [int((D(left) * amount / 100).to_integral_value(rounding=decimal.ROUND_FLOOR))
                         for left in remaining]
            target = _half_up(D(total) * amount / 100)
        else:  # fixed_cart
            target = min(self._cents(coupon["amount"]), total)
            discounts = [int((D(target) * left / total).to_integral_value(rounding=decimal.ROUND_FLOOR))
                         for left in remaining]
        leftover = target - sum(discounts)
        while leftover > 0:
            moved = False
            for i, left in enumerate(remaining):
                if leftover > 0 and discounts[i] < left:
                    discounts[i] += 1
                    leftover -= 1
                    moved = True
            if not moved:
                break
        return discounts

    def _item_errors(self, product: JSONDict, quantity: int, cart: _Cart) -> list[JSONDict]:
        name = _esc(product["name"])
        if product["status"] != "publish":
            return [{"code": "woocommerce_rest_cart_invalid_product",
                     "message": f"&quot;{name}&quot; is no longer available."}]
        if self._price(product) is None:
            return [{"code": "woocommerce_rest_product_not_purchasable",
                     "message": f"&quot;{name}&quot; is not available for purchase."}]
        available = self._available(product, cart)
        if available is not None and quantity > available:
            if available <= 0:
                return [{"code": "woocommerce_rest_product_out_of_stock",
                         "message": f"&quot;{name}&quot; is out of stock and cannot be purchased."}]
            return [{"code": "woocommerce_rest_product_partially_out_of_stock",
                     "message": f"There is not enough &quot;{name}&quot; in stock ({available} remaining)."}]
        return []

    def _shipping(self, calc: _Calc, location: tuple[str, str, str], cart: _Cart | None,
                  coupons: list[str], shipping_lines: list[JSONDict] | None) -> None:
        shipped = [line for line in calc.lines if not line.product["virtual"]]
        calc.needs_shipping = bool(shipped)
        if shipping_lines is not None:  # an order created through REST: explicit lines
            for row in shipping_lines:
                cost = self._cents(row.get("total"))
                ship_r = sum((r.rate for r in self._rates_for(location, "", shipping=True)), D(0))
                taxes = _half_up(D(cost) * ship_r)
                rate = _ShipRate(f"{row.get('method_id')}:{row.get('instance_id') or 0}",
                                 str(row.get("method_id") or ""), int(row.get("instance_id") or 0),
                                 str(row.get("method_title") or ""), "", "", cost, taxes)
                calc.packages.append(_Package(len(calc.packages), "Shipping", [], [rate], rate.rate_id))
            calc.total_shipping = sum(p.rates[0].cost for p in calc.packages)
            calc.total_shipping_tax = sum(p.rates[0].taxes for p in calc.packages)
            return
        has_address = cart is None or bool(cart.shipping.get("country") or cart.billing.get("country"))
        country = location[0] if has_address else ""
        if not shipped or not country:
            return
        calc.has_calculated_shipping = True
        groups: dict[str, list[_Line]] = {}
        for line in shipped:
            by_class = self.settings["packages"] == "by_shipping_class"
            group = str(line.product["shipping_class"]) if by_class else ""
            groups.setdefault(group, []).append(line)
        methods = self._methods_for(location)
        ship_rate = sum((r.rate for r in self._rates_for(location, "", shipping=True)), D(0))
        display_incl = self.settings.get("tax_display_cart") == "incl"
        shown = calc.total_items - calc.total_discount
        if display_incl:
            shown += calc.total_items_tax - calc.total_discount_tax
        has_free_coupon = any(self._coupons[c].get("free_shipping") for c in coupons)
        for package_id, (_group, group_lines) in enumerate(sorted(groups.items())):
            rates: list[_ShipRate] = []
            quantity = sum(line.quantity for line in group_lines)
            for method in methods:
                kind = str(method.get("method_id"))
                if kind == "free_shipping":
                    requires = str(method.get("requires") or "")
                    enough = shown >= self._cents(method.get("min_amount") or "0")
                    ok = {"": True, "min_amount": enough, "coupon": has_free_coupon,
                          "either": enough or has_free_coupon,
                          "both": enough and has_free_coupon}.get(requires, True)
                    if not ok:
                        continue
                    cost = 0
                else:
                    cost = self._cents(D(str(method.get("cost") or "0"))
                                       + D(str(method.get("cost_per_item") or "0")) * quantity)
                taxable = str(method.get("tax_status") or "taxable") == "taxable"
                taxes = _half_up(D(cost) * ship_rate) if taxable else 0
                rates.append(_ShipRate(f"{kind}:{method.get('instance_id')}", kind,
                                       int(method.get("instance_id") or 0),
                                       str(method.get("title") or kind), str(method.get("description") or ""),
                                       str(method.get("delivery_time") or ""), cost, taxes))
            chosen = cart.chosen.get(package_id) if cart is not None else None
            ids = [r.rate_id for r in rates]
            selected = chosen if chosen in ids else (ids[0] if ids else None)
            if cart is not None and selected is not None:
                cart.chosen[package_id] = selected
            label = "Shipping" if package_id == 0 else f"Shipping {package_id + 1}"
            calc.packages.append(_Package(package_id, label, [line.key for line in group_lines], rates,
                                          selected))
        for package in calc.packages:
            for rate in package.rates:
                if rate.rate_id == package.selected:
                    calc.total_shipping += rate.cost
                    calc.total_shipping_tax += rate.taxes

    def _methods_for(self, location: tuple[str, str, str]) -> list[JSONDict]:
        country, state, postcode = location
        for zone in self._zones:
            for spec in zone.get("locations") or []:
                spec = str(spec)
                if spec == country or spec == f"{country}:{state}" or (
                        spec.endswith("*") and postcode.replace(" ", "").upper().startswith(spec[:-1].upper())
                        and spec[:-1]) or (spec and spec[0].isdigit() and spec == postcode):
                    return list(zone.get("methods") or [])
        return list(self._world_methods)

    # ----------------------------------------------------------------- Store API JSON

    def _money_fields(self) -> JSONDict:
        symbol = str(self.settings["currency_symbol"])
        return {"currency_code": self.settings["currency"], "currency_symbol": symbol,
                "currency_minor_unit": int(self.settings["price_decimals"]),
                "currency_decimal_separator": ".", "currency_thousand_separator": ",",
                "currency_prefix": symbol, "currency_suffix": ""}

    def _cart_json(self, cart: _Cart) -> JSONDict:
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
                _MAX_QUANTITY, max(available, line.quantity) if available is not None else _MAX_QUANTITY)
            items.append({
                "key": line.key, "id": product["id"], "type": product["type"], "quantity": line.quantity,
                "quantity_limits": {"minimum": 1, "maximum": maximum, "multiple_of": 1, "editable": True},
                "name": _esc(product["name"]), "short_description": product["short_description"],
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
                "items": [{"key": k, "name": _esc(key_qty[k][0]["name"]), "quantity": key_qty[k][1]}
                          for k in p.keys],
                "shipping_rates": [{
                    "rate_id": r.rate_id, "name": _esc(r.name), "description": r.description,
                    "delivery_time": r.delivery_time, "price": str(r.cost), "taxes": str(r.taxes),
                    "instance_id": r.instance_id, "method_id": r.method_id,
                    "meta_data": [{"key": "Items", "value": ", ".join(
                        f"{_esc(key_qty[k][0]['name'])} &times; {key_qty[k][1]}" for k in p.keys)}],
                    "selected": r.rate_id == p.selected, **money} for r in p.rates],
            } for p in calc.packages],
            "items_count": sum(line.quantity for line in calc.lines),
            "items_weight": 0,
            "cross_sells": [],
            "errors": calc.errors,
            "payment_methods": [],
            "extensions": {},
        }

    def _product_json(self, product: JSONDict, cart: _Cart | None) -> JSONDict:
        available = self._available(product, cart)
        unit = self._cents(self._price(product)) if self._price(product) is not None else 0
        in_stock = available is None or available > 0
        maximum = 1 if product["sold_individually"] else (
            _MAX_QUANTITY if available is None else max(0, min(available, _MAX_QUANTITY)))
        return {
            "id": product["id"], "name": _esc(product["name"]), "parent": product["parent_id"],
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

    def _products_json(self, cart: _Cart, query: cabc.Mapping[str, str]) -> list[JSONDict]:
        include = [int(i) for i in str(query.get("include") or "").split(",") if i.strip().isdigit()]
        products = [p for pid, p in sorted(self._products.items())
                    if p["status"] == "publish" and (not include or pid in include)]
        per_page = int(query.get("per_page") or 10)
        return [self._product_json(p, cart) for p in products[:per_page]]

    def _site(self) -> str:
        return str(self.settings.get("site_url") or (self.url if self._server is not None else "http://shop.test"))

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
            "billing": _blank_address(True), "shipping": _blank_address(False),
            "payment_method": "", "payment_method_title": "", "transaction_id": "",
            "created_via": created_via, "customer_note": "", "meta_data": [], "lines": [],
            "shipping_lines": [], "fee_lines": [], "coupon_lines": [], "tax_lines": [],
            "discount_total": 0, "discount_tax": 0, "shipping_total": 0, "shipping_tax": 0,
            "cart_tax": 0, "total": 0, "total_tax": 0, "stock_reduced": False, "refunds": [],
        }
        self._orders[order_id] = order
        self._emit("order.created", order)
        return order

    def _item_id(self) -> int:
        self._next_item_id += 1
        return self._next_item_id - 1

    def _fill_order(self, order: JSONDict, calc: _Calc, billing: JSONDict, shipping: JSONDict) -> None:
        """Copy a calculation into an order (``update_order_from_cart`` / ``calculate_totals``)."""
        order["billing"] = {**_blank_address(True), **billing}
        order["shipping"] = {**_blank_address(False), **{k: v for k, v in shipping.items() if k != "email"}}
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
        if status not in _HOLDING:
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
            raise _WooError(401, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")
        if not hmac.compare_digest(str(key).encode(), self.consumer_key.encode()):
            raise _WooError(401, "woocommerce_rest_authentication_error", "Consumer key is invalid.")
        if not hmac.compare_digest(str(secret or "").encode(), self.consumer_secret.encode()):
            raise _WooError(401, "woocommerce_rest_authentication_error", "Consumer secret is invalid.")

    def _rest(self, name: str, args: cabc.Mapping[str, t.Any], body: t.Any, query: cabc.Mapping[str, str]
              ) -> tuple[int, t.Any, dict[str, str]]:
        dp = int(query["dp"]) if str(query.get("dp") or "").isdigit() else None
        body = body if isinstance(body, dict) else {}
        if name == "GET /wc/v3/orders":
            return self._list_orders(query, dp)
        if name == "POST /wc/v3/orders":
            return 201, self._order_json(self._create_order(body), dp), {}
        order = self._orders.get(int(args["id"]))
        if order is None or order["status"] == "trash":
            raise _WooError(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
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
            raise _WooError(400, "rest_invalid_param", "FakeWooCommerce does not edit "
                            f"{', '.join(unsupported)} of existing orders.")
        status = body.get("status")
        if status is not None and status not in _STATUSES:
            raise _WooError(400, "rest_invalid_param", "Invalid parameter(s): status",
                            params={"status": f"status is not one of {', '.join(_STATUSES)}."})
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
                raise _WooError(400, "woocommerce_rest_invalid_product_id", "Product ID provided is invalid.")
            items.append((f"line-{len(items)}", product, int(row.get("quantity") or 1)))
        status = str(body.get("status") or "pending")
        if status not in _STATUSES:
            raise _WooError(400, "rest_invalid_param", "Invalid parameter(s): status")
        billing = {**_blank_address(True), **(body.get("billing") or {})}
        shipping = {**_blank_address(False), **(body.get("shipping") or {})}
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
                since = _parse_time(str(query[param]))
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


# --------------------------------------------------------------------------- helpers


def _wp_specialchars_decode(text: str) -> str:
    """WordPress's ``wp_specialchars_decode(text, ENT_QUOTES)``, applied to webhook secrets."""
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#039;", "'"), ("&amp;", "&")):
        text = text.replace(entity, char)
    return text


def _esc(text: str) -> str:
    """WordPress-style HTML escaping of names in messages."""
    return (str(text).replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
            .replace(">", "&gt;"))


def _parse_time(value: str) -> float:
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()


def _json(status: int, body: t.Any, headers: cabc.Mapping[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status, dict(headers or {}), mimetype="application/json")


def _fault_response(kind: str) -> Response:
    if kind == "html_503":
        return Response("<!DOCTYPE html><html><body><h1>Briefly unavailable for scheduled maintenance."
                        "</h1></body></html>", 503, {"Retry-After": "3"}, mimetype="text/html")
    if kind == "429":
        return _json(429, _WooError(429, "rate_limit_exceeded", "Too many requests. Please wait and "
                                                                  "try again.").body(),
                     {"RateLimit-Limit": "25", "RateLimit-Remaining": "0", "RateLimit-Reset": "10",
                      "RateLimit-Retry-After": "2"})
    return _json(500, _WooError(500, "internal_server_error", "There has been a critical error on this "
                                                               "website.").body())


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log_error(self, format: str, *args: t.Any) -> None:
        pass


_S = "/wc/store/v1"
_ROUTES = [
    ("GET", f"{_S}/cart", f"{_S}/cart"),
    ("POST", f"{_S}/cart/add-item", f"{_S}/cart/add-item"),
    ("POST", f"{_S}/cart/update-item", f"{_S}/cart/update-item"),
    ("POST", f"{_S}/cart/remove-item", f"{_S}/cart/remove-item"),
    ("POST", f"{_S}/cart/update-customer", f"{_S}/cart/update-customer"),
    ("POST", f"{_S}/cart/select-shipping-rate", f"{_S}/cart/select-shipping-rate"),
    ("POST", f"{_S}/cart/apply-coupon", f"{_S}/cart/apply-coupon"),
    ("POST", f"{_S}/cart/remove-coupon", f"{_S}/cart/remove-coupon"),
    ("DELETE", f"{_S}/cart/items", f"{_S}/cart/items"),
    ("POST", f"{_S}/batch", f"{_S}/batch"),
    ("GET", f"{_S}/checkout", f"{_S}/checkout"),
    ("POST", f"{_S}/checkout", f"{_S}/checkout"),
    ("GET", f"{_S}/products", f"{_S}/products"),
    ("GET", f"{_S}/products/<int:id>", f"{_S}/products/{{id}}"),
    ("GET", "/wc/v3/orders", "/wc/v3/orders"),
    ("POST", "/wc/v3/orders", "/wc/v3/orders"),
    ("GET", "/wc/v3/orders/<int:id>", "/wc/v3/orders/{id}"),
    ("PUT", "/wc/v3/orders/<int:id>", "/wc/v3/orders/{id}"),
]
_URLS = Map([Rule(rule, endpoint=f"{method} {name}", methods=[method]) for method, rule, name in _ROUTES],
            strict_slashes=False)


def main(argv: list[str] | None = None) -> None:
    """``python -m flask_acp.testing.fake_woocommerce [--host H] [--port N] [--seed FILE]``."""
    parser = argparse.ArgumentParser(prog="python -m flask_acp.testing.fake_woocommerce",
                                     description="Run a fake WooCommerce site (Store API + REST v3).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8089, help="port (default 8089; 0 = any free port)")
    parser.add_argument("--seed", default=str(DEMO_SEED), help="seed JSON file (default: the demo seed)")
    parser.add_argument("--webhook", metavar="URL",
                        help="deliver order.updated webhooks there (pinged at startup), e.g. "
                             "http://127.0.0.1:8000/webhooks/woocommerce")
    args = parser.parse_args(argv)
    fake = FakeWooCommerce(args.seed).start(port=args.port, host=args.host)
    print(f"FakeWooCommerce at {fake.url}/wp-json  (seed: {args.seed})", flush=True)
    print(f"WOOCOMMERCE_URL={fake.url}", flush=True)
    print(f"WOOCOMMERCE_CONSUMER_KEY={fake.consumer_key}", flush=True)
    print(f"WOOCOMMERCE_CONSUMER_SECRET={fake.consumer_secret}", flush=True)
    print(f"WOOCOMMERCE_WEBHOOK_SECRET={fake.webhook_secret}", flush=True)
    if args.webhook:
        fake.add_webhook(args.webhook)
        ping = fake.deliveries[-1]
        print(f"webhook -> {args.webhook} (ping answered {ping.status or ping.error})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
