"""A stateful fake of the Shopify Admin GraphQL API, for tests and demos that
must not reach Shopify.

It is a real HTTP server on loopback (werkzeug, threaded, ephemeral port by
default) that executes every request with graphql-core against
``shopify_schema.graphql``, a hand-written subset of the real Admin schema
(same type, field and argument names and types), so a document the real API
would reject for an unknown field is rejected here too::

    with FakeShopify(seed) as shop:          # seed: dict or path of a JSON file
        app.config.update(SHOPIFY_SHOP_URL=shop.url, SHOPIFY_ACCESS_TOKEN=shop.access_token)
        ...
        assert shop.calls["AcpDraftOrderCreate"] == 1

Standalone (the example app can be pointed at it)::

    python -m flask_acp.testing.fake_shopify --port 8765 --seed flask_acp/testing/shopify_demo_seed.json

Needs ``graphql-core`` (the ``testing`` extra). Money is handled as Shopify
does: decimal strings in ``MoneyV2.amount`` (trailing zeros dropped, ``"25.0"``).

Endpoints
---------

``POST /admin/api/<version>/graphql.json``
    ``X-Shopify-Access-Token`` must be a seeded token or one issued by the
    client-credentials grant (not expired by the fake clock), else 401.
    ``X-Shopify-API-Version`` answers the requested version if supported, else
    the oldest supported one (Shopify's fall-forward). Invalid documents get
    HTTP 200 with top-level ``errors``, like Shopify.
``POST /admin/oauth/access_token``
    ``grant_type=client_credentials`` (form or JSON) with a seeded
    ``client_id``/``client_secret``: ``{access_token, scope, expires_in}``.
``/__fake__/state`` (GET), ``/__fake__/reset``, ``/__fake__/seed``,
``/__fake__/clock`` (``{"advance_seconds": n}``), ``/__fake__/faults`` (POST),
``/__fake__/webhooks`` (GET: deliveries; POST ``{"url", "secret"?, "topics"?}``:
subscribe), ``/__fake__/events/{fulfill,fulfillment,refund,cancel}`` (POST)
    Control routes for standalone use; tests call the Python methods.

Root fields: ``shop``, ``nodes``, ``node``, ``productVariant``, ``draftOrder``,
``draftOrders`` (``query`` supports ``tag:``, ``status:``, ``updated_at:`` /
``created_at:`` with ``<``, ``<=``, ``>``, ``>=``), ``order``, ``orders`` (``query``:
``tag:``, ``status:open|closed|cancelled|not_closed``, ``updated_at:`` /
``created_at:``; ``sortKey`` ``UPDATED_AT``, ``CREATED_AT``, ``PROCESSED_AT``, ``ID``),
``draftOrderAvailableDeliveryOptions``; mutations ``draftOrderCreate``,
``draftOrderUpdate``, ``draftOrderComplete``, ``draftOrderDelete``, ``tagsAdd``.
Orders have line items, fulfillments (``status``, ``displayStatus``,
``trackingInfo``, ``fulfillmentLineItems``) and refunds (one ``REFUND``
transaction on the ``manual`` gateway each).

Behaviour (the fake's choices where Shopify's is not documented)
----------------------------------------------------------------

* **Reservations**: a draft with ``reserveInventoryUntil`` in the future (fake
  clock) reserves its lines of tracked variants; once that time has passed it
  holds nothing (its ``reserveInventoryUntil`` still reads the past time), and
  ``reserveInventoryUntil: null`` clears it. Reserved units are not in other
  readers' ``sellableOnlineQuantity`` / ``inventoryQuantity``, which may go
  negative (Shopify does not refuse a reservation beyond stock).
  ``draftOrderComplete`` checks no stock, as Shopify's does not (its reference
  says to verify availability before completing a draft): it commits the
  draft's inventory even when its reservation lapsed and other orders took the
  units (``on hand`` goes below zero: oversold) and drops the reservation;
  ``draftOrderDelete`` drops it.
* **Prices**: a draft's variant lines follow the variant's current price, as on
  Shopify since 2025-01 for lines without ``priceOverride`` (which the fake
  does not implement): :meth:`FakeShopify.set_price` re-prices the open drafts
  holding the variant (a completed draft's order keeps its amounts).
* **Asynchronous calculation**: after a create/update (or a price change) a
  draft reads ``ready: false`` -- with no taxes yet -- for ``ready_delay_reads``
  reads (default 1: the mutation's own payload), then ``ready: true``.
* **Tax**: ``tax_rates`` by ``"CC-PROVINCE"`` then ``"CC"`` of the shipping
  address, per line half-up (``tax_rounding: "order"`` rounds the order's tax
  once instead, so the lines' taxes may not add up), on shipping when
  ``tax_shipping``; ``taxes_included`` shops have tax inside their prices.
  No address, no tax.
* **Presentment currencies**: ``shop.presentment_currencies`` maps a currency to
  its exchange rate from the shop currency; a variant's price in it is its
  ``presentment_prices`` entry or the converted price (half-up). Delivery rates
  are quoted in the shop currency; a draft's shipping line in both.
* **Rate handles** change on every ``draftOrderAvailableDeliveryOptions`` call;
  any issued handle stays valid.
* **Cost**: 1 per query root field (``nodes``: 1 per id, connections: ``first``),
  10 per mutation; a bucket per token (``bucket.maximum_available``,
  ``bucket.restore_rate`` per second); an empty bucket answers ``THROTTLED``.
* **Faults** (:meth:`FakeShopify.add_fault`): HTTP status (500, 503, 429 with
  ``Retry-After``), ``THROTTLED`` with given cost figures, a timeout (the
  request is held, not executed, then the connection is dropped), and
  ``drop`` (executed, then the connection is dropped: "complete succeeded but
  the response was lost").
* **Merchant actions** (what a merchant does in the admin; each emits the
  topics Shopify sends): :meth:`FakeShopify.fulfill` (``fulfillments/create``,
  ``orders/partially_fulfilled`` or ``orders/fulfilled``, ``orders/updated``),
  :meth:`FakeShopify.update_fulfillment` (carrier ``shipment_status``,
  cancellation; ``fulfillments/update``, ``orders/updated``),
  :meth:`FakeShopify.refund` (``refunds/create``, ``orders/updated``) and
  :meth:`FakeShopify.cancel` (optionally refunding; ``orders/cancelled``,
  ``orders/updated``). ``tagsAdd`` on an order emits ``orders/updated``.
* **Webhooks**: every resource event goes through :meth:`FakeShopify.emit`
  (recorded in :attr:`FakeShopify.events` with its REST-shaped payload: snake
  case, numeric ids, ``admin_graphql_api_id``, amounts as strings with the
  currency's decimals). With a subscription (:meth:`FakeShopify.subscribe_webhooks`,
  or the seed's ``webhooks.url``) covering the topic, it is POSTed there from
  a background thread, in order, with Shopify's headers: ``X-Shopify-Topic``,
  ``X-Shopify-Hmac-Sha256`` (base64 HMAC-SHA256 of the exact body with
  :attr:`FakeShopify.webhook_secret`: ``webhooks.secret``, else the first
  seeded client's secret), ``X-Shopify-Event-Id`` (new per event; topics of
  one action get one each), ``X-Shopify-Webhook-Id``, ``X-Shopify-Shop-Domain``,
  ``X-Shopify-API-Version``, ``X-Shopify-Triggered-At``. A non-2xx answer or
  none (1 s connect, 5 s timeouts) is retried ``webhooks.retries`` times
  (default 2) after ``webhooks.retry_delay`` seconds (default 0.1); Shopify
  retries for hours. :meth:`FakeShopify.flush_webhooks` waits for the queue,
  :meth:`FakeShopify.redeliver` sends an event again (same event id: a
  duplicate), :meth:`FakeShopify.suppress_webhooks` sends nothing (a webhook
  Shopify never delivered); :attr:`FakeShopify.deliveries` records every attempt.

Seed (JSON; every key optional except ``variants``)::

    {"shop": {"name": "Demo", "domain": "demo.myshopify.com", "currency": "USD",
              "taxes_included": false, "tax_shipping": true,
              "presentment_currencies": {"KWD": "0.307", "JPY": "150"}},
     "access_tokens": ["shpat_test"],
     "clients": {"client-id": {"secret": "s3cret", "expires_in": 86399}},
     "tax_rates": {"US-CA": "0.0875", "US": "0.05"}, "tax_rounding": "line",
     "shipping_rates": {"US": [{"title": "Standard", "code": "STANDARD", "source": "shopify",
                                 "price": "5.00"}], "*": []},
     "local_delivery_rates": {},
     "variants": [{"id": 4449, "product_id": 101, "product_title": "Hoodie", "title": "Large",
                   "sku": "HOOD-L", "price": "25.00", "inventory": 5, "tracked": true,
                   "inventory_policy": "DENY", "requires_shipping": true, "taxable": true,
                   "published": true, "status": "ACTIVE", "image": "https://...",
                   "presentment_prices": {"KWD": "7.500"}}],
     "ready_delay_reads": 1, "bucket": {"maximum_available": 1000, "restore_rate": 100},
     "order_number_start": 1001, "api_versions": ["2025-07", "...", "2026-10"],
     "webhooks": {"url": "http://127.0.0.1:5000/webhooks/shopify", "secret": "...",
                  "topics": ["orders/updated", "..."], "retries": 2, "retry_delay": 0.1}}
"""

from __future__ import annotations

import argparse
import base64
import collections
import collections.abc as cabc
import contextlib
import dataclasses
import datetime as dt
import decimal
import hashlib
import hmac
import json
import pathlib
import secrets
import shlex
import signal
import socket
import sys
import threading
import time
import typing as t
import uuid

import requests
from graphql import FieldNode
from graphql import GraphQLError
from graphql import GraphQLSchema
from graphql import OperationDefinitionNode
from graphql import OperationType
from graphql import build_schema
from graphql import execute_sync
from graphql import parse
from graphql import validate
from iso4217 import Currency
from werkzeug.serving import BaseWSGIServer
from werkzeug.serving import WSGIRequestHandler
from werkzeug.serving import make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

__all__ = ["DEFAULT_WEBHOOK_TOPICS", "DEMO_SEED", "SCHEMA_PATH", "SUPPORTED_VERSIONS", "FakeShopify",
           "WebhookDelivery", "main"]

#: the SDL the fake executes against.
SCHEMA_PATH = pathlib.Path(__file__).with_name("shopify_schema.graphql")
#: the seed used by ``python -m flask_acp.testing.fake_shopify`` without ``--seed``.
DEMO_SEED = pathlib.Path(__file__).with_name("shopify_demo_seed.json")
#: API versions the fake answers (requests for others fall forward to the oldest).
SUPPORTED_VERSIONS: tuple[str, ...] = ("2025-07", "2025-10", "2026-01", "2026-04", "2026-07", "2026-10")
#: topics a webhook subscription receives unless told otherwise (the order-sync topics).
DEFAULT_WEBHOOK_TOPICS: tuple[str, ...] = (
    "orders/updated", "orders/cancelled", "orders/fulfilled", "orders/partially_fulfilled",
    "fulfillments/create", "fulfillments/update", "refunds/create")

_INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"  # noqa: S105
_NO_DRAFT = {"field": ["id"], "message": "Draft order does not exist"}
_COMPLETED = "This draft order has already been completed"
_D = decimal.Decimal
_SCHEMA: GraphQLSchema | None = None
_SCHEMA_LOCK = threading.Lock()


def _schema() -> GraphQLSchema:
    global _SCHEMA
    with _SCHEMA_LOCK:
        if _SCHEMA is None:
            _SCHEMA = build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))
        return _SCHEMA


def _exp(currency: str) -> int:
    member = Currency.__members__.get(currency.upper())
    if member is None or member.exponent is None:
        raise ValueError(f"unknown currency {currency!r}")
    return int(member.exponent)


def _round(value: decimal.Decimal, currency: str) -> decimal.Decimal:
    return value.quantize(_D(1).scaleb(-_exp(currency)), rounding=decimal.ROUND_HALF_UP)


def _fmt(value: decimal.Decimal) -> str:
    """Shopify's ``Decimal`` rendering: no trailing zeros beyond one decimal (``"25.0"``)."""
    normal = value.normalize()
    if normal == normal.to_integral_value():
        return f"{int(normal)}.0"
    return format(normal, "f")


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _parse_time(value: t.Any) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise GraphQLError(f"Invalid DateTime: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _compare(when: dt.datetime, value: str) -> bool:
    """A search-syntax time comparison: ``value`` is ``>=2026-11-29T10:00:00Z``,
    ``<'...'``, or a plain time (the same second)."""
    op = next((o for o in ("<=", ">=", "<", ">") if value.startswith(o)), "")
    other = _parse_time(value[len(op):].strip("'\""))
    when = when.replace(microsecond=0)
    results = {"<=": when <= other, ">=": when >= other, "<": when < other, ">": when > other}
    return results.get(op, when == other)


def _gid(kind: str, number: int) -> str:
    return f"gid://shopify/{kind}/{number}"


def _parse_gid(value: t.Any) -> tuple[str, int] | None:
    text = str(value)
    if not text.startswith("gid://shopify/"):
        return None
    kind, _, tail = text[len("gid://shopify/"):].partition("/")
    tail = tail.split("?", 1)[0]
    return (kind, int(tail)) if tail.isdigit() else None


class _Drop(Exception):
    """Drop the HTTP connection (after executing, when ``executed``)."""


# --- state -----------------------------------------------------------------------------


@dataclasses.dataclass
class _Variant:
    id: int
    product_id: int
    product_title: str
    title: str
    price: decimal.Decimal
    inventory: int = 0
    tracked: bool = True
    inventory_policy: str = "DENY"
    requires_shipping: bool = True
    taxable: bool = True
    published: bool = True
    status: str = "ACTIVE"
    sku: str | None = None
    image: str | None = None
    presentment_prices: dict[str, decimal.Decimal] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Line:
    uuid: str
    variant_id: int
    quantity: int
    unit: dict[str, decimal.Decimal]  # currency -> unit price


@dataclasses.dataclass
class _Draft:
    number: int
    created_at: dt.datetime
    updated_at: dt.datetime
    presentment: str
    lines: list[_Line] = dataclasses.field(default_factory=list)
    email: str | None = None
    phone: str | None = None
    address: dict[str, t.Any] | None = None
    shipping: dict[str, t.Any] | None = None  # {title, code, source, handle, price{cur: Decimal}}
    attributes: list[dict[str, str]] = dataclasses.field(default_factory=list)
    tags: list[str] = dataclasses.field(default_factory=list)
    reserve_until: dt.datetime | None = None
    accept_automatic_discounts: bool | None = None
    status: str = "OPEN"
    completed_at: dt.datetime | None = None
    order: int | None = None
    unready_reads: int = 0


@dataclasses.dataclass
class _OrderLine:
    id: int
    variant_id: int
    quantity: int
    unit: dict[str, decimal.Decimal]  # currency -> unit price
    title: str
    variant_title: str | None
    sku: str | None
    requires_shipping: bool


@dataclasses.dataclass
class _Fulfillment:
    id: int
    order: int
    name: str
    lines: dict[int, int]  # order line id -> units
    created_at: dt.datetime
    updated_at: dt.datetime
    status: str = "success"  # REST: success | cancelled | error | failure
    shipment_status: str | None = None  # REST: in_transit, delivered... (None: none reported yet)
    tracking_company: str | None = None
    tracking_number: str | None = None
    tracking_url: str | None = None
    in_transit_at: dt.datetime | None = None
    delivered_at: dt.datetime | None = None


@dataclasses.dataclass
class _Refund:
    id: int
    transaction_id: int
    order: int
    amount: dict[str, decimal.Decimal]  # currency -> amount (shop and presentment)
    created_at: dt.datetime
    note: str | None = None


@dataclasses.dataclass
class _Order:
    number: int
    name: str
    draft: int
    created_at: dt.datetime
    money: dict[str, t.Any]
    tags: list[str]
    attributes: list[dict[str, str]]
    email: str | None
    presentment: str
    token: str
    lines: list[_OrderLine] = dataclasses.field(default_factory=list)
    fulfillments: list[_Fulfillment] = dataclasses.field(default_factory=list)
    refunds: list[_Refund] = dataclasses.field(default_factory=list)
    updated_at: dt.datetime | None = None
    cancelled_at: dt.datetime | None = None
    cancel_reason: str | None = None  # OrderCancelReason (upper case)
    closed_at: dt.datetime | None = None


@dataclasses.dataclass
class WebhookDelivery:
    """One webhook the fake sent (or will send), with every attempt's outcome.

    :ivar body: the exact bytes sent (and signed).
    :ivar headers: the request headers (``X-Shopify-*``).
    :ivar statuses: the receiver's HTTP status per attempt (``None``: no answer).
    """

    topic: str
    event_id: str
    webhook_id: str
    url: str
    body: bytes
    headers: dict[str, str]
    statuses: list[int | None] = dataclasses.field(default_factory=list)
    #: the receiver's JSON answer to the last attempt (``None``: none, or not JSON).
    answer: t.Any = None
    #: why the last attempt got no answer (connection refused, timeout).
    error: str | None = None

    @property
    def status(self) -> int | None:
        """The last attempt's HTTP status (``None``: not sent yet, or no answer)."""
        return self.statuses[-1] if self.statuses else None

    @property
    def payload(self) -> dict[str, t.Any]:
        """The JSON body."""
        return t.cast(dict[str, t.Any], json.loads(self.body))


@dataclasses.dataclass
class _Fault:
    kind: str
    operation: str | None
    times: int
    params: dict[str, t.Any]


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


# --- the fake ------------------------------------------------------------------------------


class FakeShopify:
    """The fake shop: state, GraphQL execution, faults, counters and the HTTP server.

    :param seed: a seed dict, or the path of a seed JSON file (see the module
        docstring); ``None`` uses :data:`DEMO_SEED`.
    :param host: interface to listen on.
    :param port: TCP port; 0 picks a free one.
    :param quiet: do not log each request.

    :ivar calls: HTTP requests per GraphQL operation name (every attempt,
        faults and throttled ones included; ``"access_token"`` for the token
        endpoint).
    :ivar executed: operations actually executed, per name.
    :ivar documents: every GraphQL document received, by operation name.
    :ivar events: resource events (``orders/create``...), see :meth:`emit`.
    :ivar deliveries: the webhooks sent or queued, oldest first (:class:`WebhookDelivery`).
    """

    def __init__(self, seed: cabc.Mapping[str, t.Any] | str | pathlib.Path | None = None, *,
                 host: str = "127.0.0.1", port: int = 0, quiet: bool = True) -> None:
        self.host = host
        self.port = port
        self.quiet = quiet
        self._lock = threading.RLock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._offset = 0.0
        self.calls: collections.Counter[str] = collections.Counter()
        self.executed: collections.Counter[str] = collections.Counter()
        self.documents: dict[str, str] = {}
        self.events: list[dict[str, t.Any]] = []
        self.deliveries: list[WebhookDelivery] = []
        self._faults: list[_Fault] = []
        self._hooks = threading.Condition()
        self._hook_queue: collections.deque[WebhookDelivery] = collections.deque()
        self._hook_busy = 0
        self._hook_thread: threading.Thread | None = None
        self._muted = 0
        self.reset(seed)

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> FakeShopify:
        """Start serving in a background thread; returns ``self``."""
        if self._server is not None:
            return self
        handler = _QuietHandler if self.quiet else WSGIRequestHandler
        self._server = make_server(self.host, self.port, self._wsgi, threaded=True, request_handler=handler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-shopify", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the server and close its socket; webhooks not sent yet are dropped."""
        self._stop_webhooks()
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeShopify:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (``SHOPIFY_SHOP_URL``)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104 - comparison only
        return f"http://{host}:{self.port}"

    @property
    def access_token(self) -> str:
        """The first seeded static access token."""
        return self._tokens[0] if self._tokens else ""

    # -- seeding and control ------------------------------------------------------------------

    def reset(self, seed: cabc.Mapping[str, t.Any] | str | pathlib.Path | None = None) -> None:
        """Forget all state (drafts, orders, counters, faults) and load ``seed``.

        :raises ValueError: an invalid seed (the message names the key).
        """
        if seed is None:
            seed = DEMO_SEED
        if isinstance(seed, str | pathlib.Path):
            seed = json.loads(pathlib.Path(seed).read_text(encoding="utf-8"))
        data = dict(t.cast(cabc.Mapping[str, t.Any], seed))
        with self._lock:
            shop = dict(data.get("shop") or {})
            self.shop_name = str(shop.get("name", "Fake Shop"))
            self.domain = str(shop.get("domain", "fake-shop.myshopify.com"))
            self.currency = str(shop.get("currency", "USD")).upper()
            _exp(self.currency)
            self.taxes_included = bool(shop.get("taxes_included", False))
            self.tax_shipping = bool(shop.get("tax_shipping", False))
            self.fx: dict[str, decimal.Decimal] = {self.currency: _D(1)}
            for code, rate in (shop.get("presentment_currencies") or {}).items():
                _exp(code)
                self.fx[str(code).upper()] = self._decimal(rate, f"shop.presentment_currencies.{code}")
            self._tokens: list[str] = [str(x) for x in data.get("access_tokens", ["shpat_fake_token"])]
            self._clients: dict[str, dict[str, t.Any]] = {
                str(k): dict(v) for k, v in (data.get("clients") or {}).items()}
            self._issued: dict[str, dt.datetime] = {}
            self.tax_rates = {str(k).upper(): self._decimal(v, f"tax_rates.{k}")
                              for k, v in (data.get("tax_rates") or {}).items()}
            self.tax_rounding = str(data.get("tax_rounding", "line"))
            if self.tax_rounding not in ("line", "order"):
                raise ValueError("tax_rounding must be 'line' or 'order'")
            self.shipping_rates = self._rates(data.get("shipping_rates") or {}, "shipping_rates")
            self.local_delivery_rates = self._rates(data.get("local_delivery_rates") or {},
                                                    "local_delivery_rates")
            self.variants: dict[int, _Variant] = {}
            for index, raw in enumerate(data.get("variants") or []):
                variant = self._variant(raw, f"variants[{index}]")
                self.variants[variant.id] = variant
            self.ready_delay_reads = int(data.get("ready_delay_reads", 1))
            bucket = dict(data.get("bucket") or {})
            self.bucket_max = float(bucket.get("maximum_available", 1000))
            self.bucket_rate = float(bucket.get("restore_rate", 100))
            self._buckets: dict[str, tuple[float, float]] = {}
            self.api_versions = tuple(data.get("api_versions") or SUPPORTED_VERSIONS)
            self._next_order = int(data.get("order_number_start", 1001))
            self._next_draft = 1
            self.drafts: dict[int, _Draft] = {}
            self.orders: dict[int, _Order] = {}
            self._handles: dict[str, dict[str, t.Any]] = {}
            self._seq = 0
            self._offset = 0.0
            self._faults.clear()
            self.calls.clear()
            self.executed.clear()
            self.documents.clear()
            self.events.clear()
            hooks = dict(data.get("webhooks") or {})
            first_client = next(iter(self._clients.values()), {})
            self.webhook_url: str | None = hooks.get("url")
            #: the key of ``X-Shopify-Hmac-Sha256``: ``webhooks.secret``, else the
            #: first client's secret (Shopify signs with the app's client secret).
            self.webhook_secret = str(hooks.get("secret") or first_client.get("secret")
                                      or "shpss_fake_webhook_secret")
            self.webhook_topics = frozenset(hooks.get("topics") or DEFAULT_WEBHOOK_TOPICS)
            self.webhook_api_version = str(hooks.get("api_version") or self.api_versions[-1])
            self.webhook_retries = int(hooks.get("retries", 2))
            self.webhook_retry_delay = float(hooks.get("retry_delay", 0.1))
            self._next_id = int(data.get("resource_id_start", 5_000_000_001))
            self._muted = 0
        with self._hooks:
            self._hook_queue.clear()
            self.deliveries = []

    @staticmethod
    def _decimal(value: t.Any, key: str) -> decimal.Decimal:
        if isinstance(value, float) or isinstance(value, bool):
            raise ValueError(f"{key}: give amounts and rates as strings or integers, not {value!r}")
        try:
            return _D(str(value))
        except decimal.InvalidOperation:
            raise ValueError(f"{key}: not a decimal: {value!r}") from None

    def _rates(self, raw: cabc.Mapping[str, t.Any], key: str) -> dict[str, list[dict[str, t.Any]]]:
        out: dict[str, list[dict[str, t.Any]]] = {}
        for country, rates in raw.items():
            out[str(country).upper()] = [
                {"title": str(r["title"]), "code": str(r.get("code") or r["title"]),
                 "source": str(r.get("source", "shopify")),
                 "price": self._decimal(r["price"], f"{key}.{country}[{i}].price")}
                for i, r in enumerate(rates)]
        return out

    def _variant(self, raw: cabc.Mapping[str, t.Any], key: str) -> _Variant:
        try:
            variant_id = int(raw["id"])
            price = self._decimal(raw["price"], f"{key}.price")
        except KeyError as exc:
            raise ValueError(f"{key}: {exc.args[0]} is required") from None
        policy = str(raw.get("inventory_policy", "DENY")).upper()
        status = str(raw.get("status", "ACTIVE")).upper()
        if policy not in ("DENY", "CONTINUE") or status not in ("ACTIVE", "DRAFT", "ARCHIVED"):
            raise ValueError(f"{key}: inventory_policy must be DENY|CONTINUE, status ACTIVE|DRAFT|ARCHIVED")
        return _Variant(
            id=variant_id, product_id=int(raw.get("product_id", variant_id)),
            product_title=str(raw.get("product_title", f"Product {variant_id}")),
            title=str(raw.get("title", "Default Title")), price=price,
            inventory=int(raw.get("inventory", 0)), tracked=bool(raw.get("tracked", True)),
            inventory_policy=policy, requires_shipping=bool(raw.get("requires_shipping", True)),
            taxable=bool(raw.get("taxable", True)), published=bool(raw.get("published", True)),
            status=status, sku=raw.get("sku"), image=raw.get("image"),
            presentment_prices={str(c).upper(): self._decimal(p, f"{key}.presentment_prices.{c}")
                                for c, p in (raw.get("presentment_prices") or {}).items()},
        )

    def now(self) -> dt.datetime:
        """The fake clock: real UTC time plus :meth:`advance_clock` offsets."""
        return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=self._offset)

    def advance_clock(self, seconds: float) -> None:
        """Move the fake clock (reservation and token expiry, throttle refill)."""
        with self._lock:
            self._offset += seconds

    def add_fault(self, kind: str, *, operation: str | None = None, times: int = 1, **params: t.Any) -> None:
        """Make the next ``times`` requests for ``operation`` (any if ``None``) fail.

        :param kind: ``"status"`` (``status=500``, optional ``retry_after="2.0"``),
            ``"throttled"`` (``currently_available``, ``restore_rate``,
            ``requested_cost``, ``maximum_available``), ``"timeout"``
            (``seconds``: hold the request, do not execute, drop the connection),
            ``"drop"`` (execute, then drop the connection), ``"delay"``
            (``seconds``, then answer normally). ``skip=n`` lets the first
            ``n`` matching requests through.
        """
        if kind not in ("status", "throttled", "timeout", "drop", "delay"):
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            self._faults.append(_Fault(kind, operation, times, dict(params)))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset_counters(self) -> None:
        """Zero :attr:`calls` and :attr:`executed`."""
        with self._lock:
            self.calls.clear()
            self.executed.clear()

    def set_price(self, variant_id: int, amount: str, *, currency: str | None = None,
                  reprice_drafts: bool = True) -> None:
        """Change a variant's price (shop currency, or one presentment currency);
        open drafts holding it are re-priced and recalculated (``ready: false``)."""
        with self._lock:
            variant = self.variants[int(variant_id)]
            if currency is None or currency.upper() == self.currency:
                variant.price = _D(amount)
            else:
                variant.presentment_prices[currency.upper()] = _D(amount)
            if reprice_drafts:
                for draft in self.drafts.values():
                    if draft.status == "OPEN" and any(x.variant_id == variant.id for x in draft.lines):
                        for line in draft.lines:
                            if line.variant_id == variant.id:
                                line.unit = self._unit_prices(variant, draft.presentment)
                        draft.unready_reads = max(1, self.ready_delay_reads)
                        draft.updated_at = self.now()

    def set_inventory(self, variant_id: int, quantity: int) -> None:
        """Set a variant's on-hand quantity."""
        with self._lock:
            self.variants[int(variant_id)].inventory = quantity

    def set_tax_rate(self, region: str, rate: str) -> None:
        """Set the tax rate of ``"CC"`` or ``"CC-PROVINCE"`` (open drafts recalculate)."""
        with self._lock:
            self.tax_rates[region.upper()] = _D(rate)
            for draft in self.drafts.values():
                if draft.status == "OPEN":
                    draft.unready_reads = max(1, self.ready_delay_reads)

    def emit(self, topic: str, resource: cabc.Mapping[str, t.Any]) -> None:
        """Record a resource event (``orders/create``, ``draft_orders/delete``...)
        with its REST-shaped payload, and send it as a signed webhook when a
        subscription (:meth:`subscribe_webhooks`) covers ``topic`` and webhooks
        are not suppressed (:meth:`suppress_webhooks`). Each event gets its own
        ``X-Shopify-Event-Id`` (kept in the :attr:`events` entry as ``event_id``).
        Sending is asynchronous (one background thread, in order, like
        Shopify's delivery it never blocks the API call that caused it).
        """
        event_id = str(uuid.uuid4())
        entry: dict[str, t.Any] = {"topic": topic, "resource": dict(resource), "at": _iso(self.now()),
                                   "event_id": event_id, "webhook_id": None}
        self.events.append(entry)
        if self.webhook_url and topic in self.webhook_topics and not self._muted:
            body = json.dumps(resource, separators=(",", ":")).encode()
            delivery = self._delivery(topic, event_id, body)
            entry["webhook_id"] = delivery.webhook_id
            self._enqueue(delivery)

    # -- webhooks -------------------------------------------------------------------------------

    def subscribe_webhooks(self, url: str | None, *, secret: str | None = None,
                           topics: cabc.Iterable[str] | None = None) -> None:
        """Send webhooks of ``topics`` (default :data:`DEFAULT_WEBHOOK_TOPICS`) to
        ``url`` (``None``: stop sending), signed with ``secret`` (default: the
        current :attr:`webhook_secret`)."""
        with self._lock:
            self.webhook_url = url
            if secret is not None:
                self.webhook_secret = secret
            self.webhook_topics = frozenset(topics or DEFAULT_WEBHOOK_TOPICS)

    @contextlib.contextmanager
    def suppress_webhooks(self) -> cabc.Iterator[None]:
        """Within the block, events are recorded but no webhook is sent (a
        webhook Shopify never delivered: what ``flask acp reconcile`` is for)."""
        with self._lock:
            self._muted += 1
        try:
            yield
        finally:
            with self._lock:
                self._muted -= 1

    def redeliver(self, delivery: WebhookDelivery, *, new_webhook_id: bool = True) -> WebhookDelivery:
        """Send ``delivery``'s body again with the same ``X-Shopify-Event-Id``, as
        Shopify does for a second subscription to the topic (a new
        ``X-Shopify-Webhook-Id``) or a retry (``new_webhook_id=False``)."""
        with self._lock:
            again = self._delivery(delivery.topic, delivery.event_id, delivery.body,
                                   webhook_id=None if new_webhook_id else delivery.webhook_id,
                                   url=delivery.url)
        self._enqueue(again)
        return again

    def flush_webhooks(self, timeout: float = 10.0) -> list[WebhookDelivery]:
        """Wait until every queued webhook was sent (its retries included) and
        return :attr:`deliveries`.

        :raises TimeoutError: still sending after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._hooks:
            while self._hook_queue or self._hook_busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(self._hook_queue) + self._hook_busy} webhook(s) still unsent")
                self._hooks.wait(remaining)
            return list(self.deliveries)

    def webhooks(self, topic: str | None = None) -> list[WebhookDelivery]:
        """The deliveries (of ``topic``), oldest first."""
        with self._hooks:
            return [d for d in self.deliveries if topic is None or d.topic == topic]

    def _delivery(self, topic: str, event_id: str, body: bytes, *, webhook_id: str | None = None,
                  url: str | None = None) -> WebhookDelivery:
        digest = hmac.new(self.webhook_secret.encode(), body, hashlib.sha256).digest()
        webhook_id = webhook_id or str(uuid.uuid4())
        triggered = self.now().astimezone(dt.timezone.utc).isoformat(timespec="microseconds")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Shopify-Captain-Hook",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(),
            "X-Shopify-Shop-Domain": self.domain,
            "X-Shopify-API-Version": self.webhook_api_version,
            "X-Shopify-Webhook-Id": webhook_id,
            "X-Shopify-Event-Id": event_id,
            "X-Shopify-Triggered-At": triggered.replace("+00:00", "Z"),
        }
        return WebhookDelivery(topic=topic, event_id=event_id, webhook_id=webhook_id,
                               url=str(url or self.webhook_url), body=body, headers=headers)

    def _enqueue(self, delivery: WebhookDelivery) -> None:
        with self._hooks:
            self.deliveries.append(delivery)
            self._hook_queue.append(delivery)
            if self._hook_thread is None or not self._hook_thread.is_alive():
                self._hook_thread = threading.Thread(target=self._hook_loop, name="fake-shopify-webhooks",
                                                     daemon=True)
                self._hook_thread.start()
            self._hooks.notify_all()

    def _hook_loop(self) -> None:
        while True:
            with self._hooks:
                while not self._hook_queue:
                    if not self._hooks.wait(timeout=30):
                        if not self._hook_queue:  # idle: the thread ends, a later event starts another
                            self._hook_thread = None
                            return
                delivery = self._hook_queue.popleft()
                if delivery.url == "":  # the stop sentinel
                    self._hook_thread = None
                    return
                self._hook_busy += 1
            try:
                self._send(delivery)
            finally:
                with self._hooks:
                    self._hook_busy -= 1
                    self._hooks.notify_all()

    def _send(self, delivery: WebhookDelivery) -> None:
        """POST the delivery; retried ``webhook_retries`` times after a non-2xx
        answer or no answer (1 s to connect, 5 s in all, as Shopify)."""
        for attempt in range(self.webhook_retries + 1):
            if attempt:
                time.sleep(self.webhook_retry_delay)
            try:
                response = requests.post(delivery.url, data=delivery.body, headers=delivery.headers,
                                         timeout=(1, 5), allow_redirects=False)
            except requests.RequestException as exc:
                delivery.statuses.append(None)
                delivery.error, delivery.answer = f"{type(exc).__name__}: {exc}", None
                continue
            with response:
                delivery.statuses.append(response.status_code)
                delivery.error = None
                try:
                    delivery.answer = response.json()
                except ValueError:
                    delivery.answer = None
            if 200 <= response.status_code < 300:
                return

    def _stop_webhooks(self) -> None:
        with self._hooks:
            self._hook_queue.clear()
            thread = self._hook_thread
            if thread is None:
                return
            self._hook_queue.append(WebhookDelivery(topic="", event_id="", webhook_id="", url="",
                                                    body=b"", headers={}))
            self._hooks.notify_all()
        thread.join(timeout=10)

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
            fulfillment = _Fulfillment(
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
        number = fulfillment_id if isinstance(fulfillment_id, int) else (_parse_gid(fulfillment_id)
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

    def _order_of(self, order: str | int) -> _Order:
        text = str(order)
        parsed = _parse_gid(text)
        number = parsed[1] if parsed and parsed[0] == "Order" else \
            int(text.lstrip("#")) if text.lstrip("#").isdigit() else None
        found = self.orders.get(number) if number is not None else None
        if found is None:
            raise ValueError(f"no order {order!r}")
        return found

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _track(self, fulfillment: _Fulfillment, now: dt.datetime) -> None:
        if fulfillment.shipment_status in ("in_transit", "out_for_delivery", "delivered") \
                and fulfillment.in_transit_at is None:
            fulfillment.in_transit_at = now
        if fulfillment.shipment_status == "delivered" and fulfillment.delivered_at is None:
            fulfillment.delivered_at = now

    def _refundable(self, order: _Order) -> decimal.Decimal:
        total = _D(str(order.money["totalPriceSet"]["presentmentMoney"]["amount"]))
        return total - sum((r.amount[order.presentment] for r in order.refunds), _D(0))

    def _add_refund(self, order: _Order, amount: str | None, note: str | None) -> dict[str, t.Any]:
        left = self._refundable(order)
        value = left if amount is None else _D(str(amount))
        if value <= 0 or value > left or value != _round(value, order.presentment):
            raise ValueError(f"order {order.name}: cannot refund {value} {order.presentment} "
                             f"({left} refundable)")
        amounts = {order.presentment: value}
        if order.presentment != self.currency:
            amounts[self.currency] = _round(value / self.fx[order.presentment], self.currency)
        refund = _Refund(id=self._new_id(), transaction_id=self._new_id(), order=order.number,
                         amount=amounts, created_at=self.now(), note=note)
        order.refunds.append(refund)
        order.updated_at = refund.created_at
        return self._refund_rest(order, refund)

    # -- inspection -------------------------------------------------------------------------

    def draft(self, draft_id: str | int) -> dict[str, t.Any] | None:
        """A draft as the API shows it (``ready`` forced, no read counted)."""
        number = draft_id if isinstance(draft_id, int) else (_parse_gid(draft_id) or ("", -1))[1]
        with self._lock:
            draft = self.drafts.get(number)
            return None if draft is None else self._draft_view(draft, count_read=False, force_ready=True)

    def draft_list(self) -> list[dict[str, t.Any]]:
        with self._lock:
            return [self._draft_view(d, count_read=False, force_ready=True) for d in self.drafts.values()]

    def order_list(self) -> list[dict[str, t.Any]]:
        with self._lock:
            return [self._order_view(o) for o in self.orders.values()]

    def sellable(self, variant_id: int) -> int:
        """``sellableOnlineQuantity`` of a variant now."""
        with self._lock:
            return self._sellable(self.variants[int(variant_id)])

    def state(self) -> dict[str, t.Any]:
        """JSON-able snapshot: variants, drafts, orders, counters, events."""
        with self._lock:
            return {
                "variants": [self._variant_view(v) for v in self.variants.values()],
                "drafts": self.draft_list(),
                "orders": self.order_list(),
                "calls": dict(self.calls),
                "executed": dict(self.executed),
                "events": list(self.events),
                "now": _iso(self.now()),
            }

    # -- HTTP ------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, t.Any], start_response: t.Any) -> cabc.Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._dispatch(request)
        except _Drop:
            with contextlib.suppress(OSError, KeyError):
                environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)
            raise ConnectionAbortedError("connection dropped by FakeShopify") from None
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        path = request.path
        if request.method == "POST" and path == "/admin/oauth/access_token":
            return self._oauth(request)
        if path.startswith("/admin/api/") and path.endswith("/graphql.json"):
            if request.method != "POST":
                return _json({"errors": "Not Found"}, 404)
            version = path[len("/admin/api/"):-len("/graphql.json")]
            return self._graphql(request, version)
        if path.startswith("/__fake__/"):
            return self._control(request, path[len("/__fake__/"):])
        return _json({"errors": "Not Found"}, 404)

    def _control(self, request: Request, action: str) -> Response:
        body = request.get_json(silent=True) or {}
        if action == "state" and request.method == "GET":
            return _json(self.state())
        if action == "webhooks" and request.method == "GET":
            return _json([{"topic": d.topic, "event_id": d.event_id, "webhook_id": d.webhook_id, "url": d.url,
                           "statuses": d.statuses, "error": d.error} for d in self.webhooks()])
        if request.method != "POST":
            return _json({"error": "method not allowed"}, 405)
        if action.startswith("events/"):
            return self._merchant_event(action[len("events/"):], dict(body))
        if action == "webhooks":
            self.subscribe_webhooks(body.get("url"), secret=body.get("secret"), topics=body.get("topics"))
        elif action == "reset":
            self.reset(body or None)
        elif action == "seed":
            self.reset(body)
        elif action == "clock":
            self.advance_clock(float(body.get("advance_seconds", 0)))
        elif action == "faults":
            params = dict(body)
            self.add_fault(str(params.pop("kind")), operation=params.pop("operation", None),
                           times=int(params.pop("times", 1)), **params)
        else:
            return _json({"error": f"unknown control action {action!r}"}, 404)
        return _json({"ok": True})

    def _merchant_event(self, action: str, body: dict[str, t.Any]) -> Response:
        """``POST /__fake__/events/{fulfill,fulfillment,refund,cancel}``: the
        merchant actions of :meth:`fulfill`, :meth:`update_fulfillment`,
        :meth:`refund` and :meth:`cancel` (JSON bodies with their argument
        names; ``order`` / ``id`` name the resource; ``lines`` maps variant ids
        to units)."""
        try:
            if action == "fulfill":
                lines = {int(k): int(v) for k, v in (body.pop("lines", None) or {}).items()} or None
                return _json(self.fulfill(body.pop("order"), lines, **body))
            if action == "fulfillment":
                return _json(self.update_fulfillment(body.pop("id"), **body))
            if action == "refund":
                return _json(self.refund(body.pop("order"), body.pop("amount", None), **body))
            if action == "cancel":
                return _json(self.cancel(body.pop("order"), **body))
        except (KeyError, TypeError, ValueError) as exc:
            return _json({"error": f"{type(exc).__name__}: {exc}"}, 400)
        return _json({"error": f"unknown merchant event {action!r}"}, 404)

    def _oauth(self, request: Request) -> Response:
        self.calls["access_token"] += 1
        form: cabc.Mapping[str, t.Any] = request.get_json(silent=True) or request.form
        client = self._clients.get(str(form.get("client_id", "")))
        if form.get("grant_type") != "client_credentials":
            return _json({"error": "unsupported_grant_type"}, 400)
        if client is None or str(form.get("client_secret", "")) != str(client.get("secret")):
            return _json({"error": "invalid_client",
                          "error_description": "Client authentication failed"}, 401)
        expires_in = int(client.get("expires_in", 86399))
        token = "shpat_" + secrets.token_hex(16)
        with self._lock:
            self._issued[token] = self.now() + dt.timedelta(seconds=expires_in)
        return _json({"access_token": token, "scope": str(client.get("scope", "write_draft_orders")),
                      "expires_in": expires_in})

    def _authorized(self, token: str | None) -> bool:
        if not token:
            return False
        if token in self._tokens:
            return True
        expires = self._issued.get(token)
        return expires is not None and self.now() < expires

    def _graphql(self, request: Request, version: str) -> Response:
        raw = request.get_data()
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return _json({"errors": "Invalid JSON in request body"}, 400)
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return _json({"errors": "Parameter Missing or Invalid"}, 400)
        document_text = body["query"]
        try:
            document = parse(document_text)
        except GraphQLError as exc:
            self.calls["(invalid)"] += 1
            return _json({"errors": [exc.formatted]})
        operation = _operation(document, body.get("operationName"))
        name = operation.name.value if operation and operation.name else "(anonymous)"
        with self._lock:
            self.calls[name] += 1
            self.documents.setdefault(name, document_text)
            fault = self._take_fault(name)
        if fault is not None and fault.kind in ("status", "throttled", "timeout", "delay"):
            response = self._fault_response(fault, operation)
            if response is not None:
                return response
        if not self._authorized(request.headers.get("X-Shopify-Access-Token")):
            return _json({"errors": _INVALID_TOKEN}, 401)
        answered = version if version in self.api_versions or version == "unstable" else self.api_versions[0]
        if not (len(version) == 7 and version[4] == "-") and version != "unstable":
            return _json({"errors": "Not Found"}, 404)
        headers = {"X-Shopify-API-Version": answered}
        errors = validate(_schema(), document)
        if errors or operation is None:
            messages = [e.formatted for e in errors] or [{"message": "Operation not found"}]
            return _json({"errors": messages}, headers=headers)
        cost = _cost(operation, body.get("variables") or {})
        token = str(request.headers.get("X-Shopify-Access-Token"))
        with self._lock:
            available = self._refill(token)
            if available < cost:
                return _json(_throttled(cost, available, self.bucket_max, self.bucket_rate), headers=headers)
            self._buckets[token] = (available - cost, self._mono())
            result = execute_sync(_schema(), document, root_value=_Root(self), operation_name=name
                             if operation.name else None, variable_values=body.get("variables") or {})
            self.executed[name] += 1
            status = {"maximumAvailable": self.bucket_max, "currentlyAvailable": available - cost,
                      "restoreRate": self.bucket_rate}
        payload: dict[str, t.Any] = {}
        if result.errors:
            payload["errors"] = [e.formatted for e in result.errors]
        payload["data"] = result.data
        payload["extensions"] = {"cost": {"requestedQueryCost": cost, "actualQueryCost": cost,
                                          "throttleStatus": status}}
        if fault is not None and fault.kind == "drop":
            raise _Drop()
        return _json(payload, headers=headers)

    def _take_fault(self, operation: str) -> _Fault | None:
        for fault in self._faults:
            if fault.operation in (None, operation) and fault.times > 0:
                if fault.params.get("skip", 0) > 0:
                    fault.params["skip"] -= 1
                    continue
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _fault_response(self, fault: _Fault, operation: OperationDefinitionNode | None) -> Response | None:
        params = fault.params
        if fault.kind == "status":
            status = int(params.get("status", 500))
            headers = {"Retry-After": str(params["retry_after"])} if params.get("retry_after") else {}
            body = params.get("body") or {"errors": "Internal Server Error" if status >= 500
                                          else "Exceeded 2 calls per second for api client. Reduce request "
                                               "rates to resume uninterrupted service."}
            return _json(body, status, headers=headers)
        if fault.kind == "throttled":
            cost = float(params.get("requested_cost", _cost(operation, {}) if operation else 10))
            return _json(_throttled(cost, float(params.get("currently_available", 0)),
                                    float(params.get("maximum_available", self.bucket_max)),
                                    float(params.get("restore_rate", self.bucket_rate))))
        if fault.kind == "timeout":
            time.sleep(float(params.get("seconds", 30)))
            raise _Drop()
        time.sleep(float(params.get("seconds", 0.1)))  # delay
        return None

    def _mono(self) -> float:
        return time.monotonic() + self._offset

    def _refill(self, token: str) -> float:
        available, last = self._buckets.get(token, (self.bucket_max, self._mono()))
        now = self._mono()
        return min(self.bucket_max, available + max(0.0, now - last) * self.bucket_rate)

    # -- computations ------------------------------------------------------------------------

    def _reserved(self, variant: _Variant, *, excluding: int | None = None) -> int:
        now = self.now()
        return sum(
            line.quantity
            for draft in self.drafts.values()
            if draft.status == "OPEN" and draft.reserve_until is not None and draft.reserve_until > now
            and draft.number != excluding
            for line in draft.lines if line.variant_id == variant.id
        )

    def _sellable(self, variant: _Variant) -> int:
        return variant.inventory - (self._reserved(variant) if variant.tracked else 0)

    def _unit_prices(self, variant: _Variant, presentment: str) -> dict[str, decimal.Decimal]:
        units = {self.currency: variant.price}
        if presentment != self.currency:
            units[presentment] = variant.presentment_prices.get(presentment) or _round(
                variant.price * self.fx[presentment], presentment)
        return units

    def _tax_rate(self, address: dict[str, t.Any] | None) -> decimal.Decimal:
        if not address or not address.get("countryCode"):
            return _D(0)
        country = str(address["countryCode"]).upper()
        province = str(address.get("provinceCode") or "").upper()
        return self.tax_rates.get(f"{country}-{province}", self.tax_rates.get(country, _D(0)))

    def _tax(self, amount: decimal.Decimal, rate: decimal.Decimal) -> decimal.Decimal:
        if self.taxes_included:
            return amount - amount / (1 + rate)
        return amount * rate

    def _bag(self, amounts: dict[str, decimal.Decimal], presentment: str) -> dict[str, t.Any]:
        return {"shopMoney": {"amount": _fmt(amounts[self.currency]), "currencyCode": self.currency},
                "presentmentMoney": {"amount": _fmt(amounts[presentment]), "currencyCode": presentment}}

    def _money(self, draft: _Draft, *, calculated: bool) -> dict[str, t.Any]:
        """Every amount of a draft, per currency (shop and presentment)."""
        currencies = [self.currency] + ([draft.presentment] if draft.presentment != self.currency else [])
        rate = self._tax_rate(draft.address) if calculated else _D(0)
        out: dict[str, t.Any] = {"lines": [], "currencies": currencies}
        per: dict[str, dict[str, decimal.Decimal]] = {c: {} for c in currencies}
        line_rows: list[dict[str, t.Any]] = [{} for _ in draft.lines]
        for cur in currencies:
            subtotal = tax_total = exact_total = _D(0)
            for index, line in enumerate(draft.lines):
                variant = self.variants.get(line.variant_id)
                original = _round(line.unit[cur] * line.quantity, cur)
                exact = self._tax(original, rate) if variant is not None and variant.taxable else _D(0)
                tax = _round(exact, cur)
                line_rows[index].setdefault("original", {})[cur] = original
                line_rows[index].setdefault("tax", {})[cur] = tax
                subtotal += original
                tax_total += tax
                exact_total += exact
            shipping = ship_tax = _D(0)
            if draft.shipping is not None:
                shipping = draft.shipping["price"][cur]
                if self.tax_shipping:
                    ship_exact = self._tax(shipping, rate)
                    ship_tax = _round(ship_exact, cur)
                    tax_total += ship_tax
                    exact_total += ship_exact
            if self.tax_rounding == "order":
                tax_total = _round(exact_total, cur)
            per[cur] = {"subtotal": subtotal, "shipping": shipping, "ship_tax": ship_tax, "tax": tax_total,
                        "total": subtotal + shipping + (_D(0) if self.taxes_included else tax_total)}
        out["lines"] = line_rows
        out["totals"] = per
        out["rate"] = rate
        return out

    # -- views ---------------------------------------------------------------------------------

    def _variant_view(self, variant: _Variant) -> dict[str, t.Any]:
        sellable = self._sellable(variant)
        listed = variant.published and variant.status == "ACTIVE"
        available = listed and (not variant.tracked or variant.inventory_policy == "CONTINUE" or sellable > 0)
        return {
            "__typename": "ProductVariant",
            "id": _gid("ProductVariant", variant.id),
            "legacyResourceId": str(variant.id),
            "title": variant.title,
            "displayName": f"{variant.product_title} - {variant.title}",
            "sku": variant.sku,
            "price": _fmt(variant.price),
            "taxable": variant.taxable,
            "availableForSale": available,
            "inventoryPolicy": variant.inventory_policy,
            "inventoryQuantity": sellable if variant.tracked else None,
            "sellableOnlineQuantity": sellable if variant.tracked else 0,
            "image": {"url": variant.image, "id": None, "altText": None} if variant.image else None,
            "inventoryItem": {"__typename": "InventoryItem", "id": _gid("InventoryItem", variant.id),
                              "tracked": variant.tracked, "requiresShipping": variant.requires_shipping,
                              "sku": variant.sku},
            "product": self._product_view(variant),
        }

    def _product_view(self, variant: _Variant) -> dict[str, t.Any]:
        return {"__typename": "Product", "id": _gid("Product", variant.product_id),
                "legacyResourceId": str(variant.product_id), "title": variant.product_title,
                "handle": variant.product_title.lower().replace(" ", "-"), "status": variant.status,
                "publishedAt": "2026-01-01T00:00:00Z" if variant.published else None}

    def _draft_view(self, draft: _Draft, *, count_read: bool, force_ready: bool = False) -> dict[str, t.Any]:
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
            zero = self._bag({c: _D(0) for c in money["currencies"]}, cur)
            nodes.append({
                "__typename": "DraftOrderLineItem",
                "id": _gid("DraftOrderLineItem", draft.number * 1000 + index),
                "uuid": line.uuid, "quantity": line.quantity, "custom": False, "customAttributes": [],
                "name": f"{variant.product_title} - {variant.title}" if variant else "Deleted",
                "title": variant.product_title if variant else "Deleted",
                "variantTitle": variant.title if variant else None,
                "sku": variant.sku if variant else None,
                "requiresShipping": variant.requires_shipping if variant else True,
                "taxable": variant.taxable if variant else False,
                "variant": self._variant_view(variant) if variant else None,
                "product": self._product_view(variant) if variant else None,
                "originalTotalSet": original, "discountedTotalSet": original, "totalDiscountSet": zero,
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
            address = {"__typename": "MailingAddress", "id": _gid("MailingAddress", draft.number),
                       "address1": a.get("address1"), "address2": a.get("address2"), "city": a.get("city"),
                       "company": a.get("company"), "countryCodeV2": a.get("countryCode"),
                       "firstName": a.get("firstName"), "lastName": a.get("lastName"),
                       "name": " ".join(x for x in (a.get("firstName"), a.get("lastName")) if x) or None,
                       "phone": a.get("phone"), "provinceCode": a.get("provinceCode"), "zip": a.get("zip")}
        zero_bag = self._bag({c: _D(0) for c in money["currencies"]}, cur)
        return {
            "__typename": "DraftOrder",
            "id": _gid("DraftOrder", draft.number),
            "legacyResourceId": str(draft.number),
            "name": f"#D{draft.number}",
            "status": draft.status,
            "ready": ready,
            "reserveInventoryUntil": _iso(draft.reserve_until) if draft.reserve_until else None,
            "createdAt": _iso(draft.created_at),
            "updatedAt": _iso(draft.updated_at),
            "completedAt": _iso(draft.completed_at) if draft.completed_at else None,
            "currencyCode": self.currency,
            "presentmentCurrencyCode": draft.presentment,
            "taxesIncluded": self.taxes_included,
            "acceptAutomaticDiscounts": draft.accept_automatic_discounts,
            "email": draft.email,
            "phone": draft.phone,
            "tags": list(draft.tags),
            "customAttributes": [dict(a) for a in draft.attributes],
            "shippingAddress": address,
            "lineItems": _connection(nodes, lambda n: str(n["id"])),
            "shippingLine": shipping,
            "subtotalPriceSet": bag("subtotal"),
            "lineItemsSubtotalPrice": bag("subtotal"),
            "totalLineItemsPriceSet": bag("subtotal"),
            "totalDiscountsSet": zero_bag,
            "totalShippingPriceSet": bag("shipping"),
            "totalTaxSet": bag("tax"),
            "totalPriceSet": bag("total"),
            "warnings": [],
            "order": self._order_view(self.orders[draft.order]) if draft.order is not None else None,
        }

    def _order_view(self, order: _Order) -> dict[str, t.Any]:
        cur = order.presentment
        currencies = [self.currency] + ([cur] if cur != self.currency else [])
        refunded = {c: sum((r.amount[c] for r in order.refunds), _D(0)) for c in currencies}
        state = self._fulfillment_state(order)
        return {
            "__typename": "Order",
            "id": _gid("Order", order.number),
            "legacyResourceId": str(order.number),
            "name": order.name,
            "createdAt": _iso(order.created_at),
            "updatedAt": _iso(order.updated_at or order.created_at),
            "cancelledAt": _iso(order.cancelled_at) if order.cancelled_at else None,
            "cancelReason": order.cancel_reason,
            "closed": order.closed_at is not None,
            "closedAt": _iso(order.closed_at) if order.closed_at else None,
            "email": order.email,
            "currencyCode": self.currency,
            "presentmentCurrencyCode": order.presentment,
            "displayFinancialStatus": self._financial_status(order).upper(),
            "displayFulfillmentStatus": {"fulfilled": "FULFILLED", "partial": "PARTIALLY_FULFILLED"}.get(
                state or "", "UNFULFILLED"),
            "statusPageUrl": f"{self.url}/73011/orders/{order.token}/authenticate?key={order.token[:16]}",
            "tags": list(order.tags),
            "customAttributes": [dict(a) for a in order.attributes],
            "lineItems": _connection([self._line_view(order, line) for line in order.lines],
                                     lambda n: str(n["id"])),
            "fulfillments": [self._fulfillment_view(order, f) for f in order.fulfillments],
            "refunds": [self._refund_view(order, r) for r in order.refunds],
            "totalRefundedSet": self._bag(refunded, cur),
            **order.money,
        }

    def _line_view(self, order: _Order, line: _OrderLine) -> dict[str, t.Any]:
        variant = self.variants.get(line.variant_id)
        fulfilled = self._fulfilled_units(order).get(line.id, 0)
        return {"__typename": "LineItem", "id": _gid("LineItem", line.id), "name": self._line_name(line),
                "title": line.title, "variantTitle": line.variant_title, "sku": line.sku,
                "quantity": line.quantity, "currentQuantity": line.quantity,
                "unfulfilledQuantity": max(0, line.quantity - fulfilled) if order.cancelled_at is None else 0,
                "requiresShipping": line.requires_shipping, "customAttributes": [],
                "variant": self._variant_view(variant) if variant is not None else None}

    def _fulfillment_view(self, order: _Order, fulfillment: _Fulfillment) -> dict[str, t.Any]:
        lines = {line.id: line for line in order.lines}
        display = (fulfillment.shipment_status or "fulfilled").upper()
        if fulfillment.status in ("cancelled", "error", "failure"):
            display = "CANCELED" if fulfillment.status == "cancelled" else "FAILURE"
        tracking = [{"company": fulfillment.tracking_company, "number": fulfillment.tracking_number,
                     "url": fulfillment.tracking_url}] \
            if fulfillment.tracking_number or fulfillment.tracking_company else []
        items = [{"__typename": "FulfillmentLineItem",
                  "id": _gid("FulfillmentLineItem", fulfillment.id * 100 + i),
                  "quantity": units, "lineItem": self._line_view(order, lines[line_id])}
                 for i, (line_id, units) in enumerate(fulfillment.lines.items())]
        return {"__typename": "Fulfillment", "id": _gid("Fulfillment", fulfillment.id),
                "legacyResourceId": str(fulfillment.id), "name": fulfillment.name,
                "status": fulfillment.status.upper(), "displayStatus": display,
                "createdAt": _iso(fulfillment.created_at), "updatedAt": _iso(fulfillment.updated_at),
                "inTransitAt": _iso(fulfillment.in_transit_at) if fulfillment.in_transit_at else None,
                "deliveredAt": _iso(fulfillment.delivered_at) if fulfillment.delivered_at else None,
                "totalQuantity": sum(fulfillment.lines.values()), "trackingInfo": tracking,
                "fulfillmentLineItems": _connection(items, lambda n: str(n["id"]))}

    def _refund_view(self, order: _Order, refund: _Refund) -> dict[str, t.Any]:
        bag = self._bag(refund.amount, order.presentment)
        transaction = {"__typename": "OrderTransaction",
                       "id": _gid("OrderTransaction", refund.transaction_id), "kind": "REFUND",
                       "status": "SUCCESS", "gateway": "manual", "amountSet": bag,
                       "createdAt": _iso(refund.created_at), "processedAt": _iso(refund.created_at)}
        return {"__typename": "Refund", "id": _gid("Refund", refund.id), "legacyResourceId": str(refund.id),
                "note": refund.note, "createdAt": _iso(refund.created_at),
                "updatedAt": _iso(refund.created_at),
                "totalRefundedSet": bag,
                "transactions": _connection([transaction], lambda n: str(n["id"]))}

    # -- REST payloads (webhook bodies: snake_case, numeric ids, amounts as strings) -----------

    def _rest_amount(self, value: decimal.Decimal, currency: str) -> str:
        return str(_round(value, currency))

    def _rest_set(self, amounts: cabc.Mapping[str, decimal.Decimal], presentment: str) -> dict[str, t.Any]:
        return {"shop_money": {"amount": self._rest_amount(amounts[self.currency], self.currency),
                               "currency_code": self.currency},
                "presentment_money": {"amount": self._rest_amount(amounts[presentment], presentment),
                                      "currency_code": presentment}}

    @staticmethod
    def _bag_amounts(bag: cabc.Mapping[str, t.Any]) -> dict[str, decimal.Decimal]:
        sides = (bag["shopMoney"], bag["presentmentMoney"])
        return {side["currencyCode"]: _D(str(side["amount"])) for side in sides}

    @staticmethod
    def _line_name(line: _OrderLine) -> str:
        return f"{line.title} - {line.variant_title}" if line.variant_title else line.title

    def _fulfilled_units(self, order: _Order) -> dict[int, int]:
        done: dict[int, int] = {}
        for fulfillment in order.fulfillments:
            if fulfillment.status in ("success", "pending", "open"):
                for line_id, units in fulfillment.lines.items():
                    done[line_id] = done.get(line_id, 0) + units
        return done

    def _fulfillment_state(self, order: _Order) -> str | None:
        """REST ``fulfillment_status``: ``None`` (nothing), ``partial`` or ``fulfilled``."""
        done = self._fulfilled_units(order)
        shipped = sum(done.values())
        if not shipped:
            return None
        complete = all(done.get(line.id, 0) >= line.quantity for line in order.lines)
        return "fulfilled" if complete else "partial"

    def _financial_status(self, order: _Order) -> str:
        if not order.refunds:
            return "paid"
        return "refunded" if self._refundable(order) <= 0 else "partially_refunded"

    def _line_rest(self, order: _Order, line: _OrderLine, quantity: int | None = None) -> dict[str, t.Any]:
        variant = self.variants.get(line.variant_id)
        fulfilled = self._fulfilled_units(order).get(line.id, 0)
        unit = line.unit[order.presentment]
        amounts = {c: v for c, v in line.unit.items()}
        return {"id": line.id, "admin_graphql_api_id": _gid("LineItem", line.id),
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

    def _fulfillment_rest(self, order: _Order, fulfillment: _Fulfillment) -> dict[str, t.Any]:
        lines = {line.id: line for line in order.lines}
        return {
            "id": fulfillment.id, "admin_graphql_api_id": _gid("Fulfillment", fulfillment.id),
            "order_id": order.number, "name": fulfillment.name, "status": fulfillment.status,
            "shipment_status": fulfillment.shipment_status, "service": "manual", "location_id": 1,
            "created_at": _iso(fulfillment.created_at), "updated_at": _iso(fulfillment.updated_at),
            "tracking_company": fulfillment.tracking_company, "tracking_number": fulfillment.tracking_number,
            "tracking_numbers": [fulfillment.tracking_number] if fulfillment.tracking_number else [],
            "tracking_url": fulfillment.tracking_url,
            "tracking_urls": [fulfillment.tracking_url] if fulfillment.tracking_url else [],
            "origin_address": {}, "receipt": {},
            "line_items": [self._line_rest(order, lines[line_id], units)
                           for line_id, units in fulfillment.lines.items()],
        }

    def _refund_rest(self, order: _Order, refund: _Refund) -> dict[str, t.Any]:
        cur = order.presentment
        return {
            "id": refund.id, "admin_graphql_api_id": _gid("Refund", refund.id), "order_id": order.number,
            "created_at": _iso(refund.created_at), "processed_at": _iso(refund.created_at),
            "note": refund.note, "restock": False, "user_id": None, "refund_line_items": [],
            "order_adjustments": [], "duties": [], "refund_shipping_lines": [],
            "transactions": [{
                "id": refund.transaction_id,
                "admin_graphql_api_id": _gid("OrderTransaction", refund.transaction_id),
                "order_id": order.number, "kind": "refund", "gateway": "manual", "status": "success",
                "message": "Refunded", "created_at": _iso(refund.created_at),
                "processed_at": _iso(refund.created_at), "test": False, "parent_id": None,
                "source_name": "web", "manual_payment_gateway": True,
                "amount": self._rest_amount(refund.amount[cur], cur), "currency": cur,
            }],
        }

    def _order_rest(self, order: _Order) -> dict[str, t.Any]:
        cur = order.presentment
        money = {key: self._bag_amounts(order.money[key])
                 for key in ("totalPriceSet", "subtotalPriceSet", "totalTaxSet", "totalShippingPriceSet")}

        def amount(key: str) -> str:
            return self._rest_amount(money[key][self.currency], self.currency)

        return {
            "id": order.number, "admin_graphql_api_id": _gid("Order", order.number), "name": order.name,
            "order_number": order.number, "email": order.email, "contact_email": order.email,
            "created_at": _iso(order.created_at), "updated_at": _iso(order.updated_at or order.created_at),
            "processed_at": _iso(order.created_at),
            "cancelled_at": _iso(order.cancelled_at) if order.cancelled_at else None,
            "cancel_reason": order.cancel_reason.lower() if order.cancel_reason else None,
            "closed_at": _iso(order.closed_at) if order.closed_at else None,
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

    # -- resolvers (called by _Root under the lock) --------------------------------------------

    def _apply_input(self, draft: _Draft, data: dict[str, t.Any], *,
                     creating: bool) -> list[dict[str, t.Any]]:
        """Validate and apply a ``DraftOrderInput``; returns userErrors (nothing applied then)."""
        errors: list[dict[str, t.Any]] = []
        presentment = str(data.get("presentmentCurrencyCode") or draft.presentment).upper()
        if presentment not in self.fx:
            errors.append({"field": ["presentmentCurrencyCode"],
                           "message": f"Presentment currency {presentment} is not enabled for this shop"})
        lines: list[_Line] | None = None
        if "lineItems" in data and data["lineItems"] is not None:
            lines = []
            for index, item in enumerate(data["lineItems"]):
                parsed = _parse_gid(item.get("variantId"))
                variant = self.variants.get(parsed[1]) if parsed and parsed[0] == "ProductVariant" else None
                if variant is None:
                    errors.append({"field": ["lineItems", str(index), "variantId"],
                                   "message": "Product variant does not exist"})
                    continue
                if int(item.get("quantity") or 0) < 1:
                    errors.append({"field": ["lineItems", str(index), "quantity"],
                                   "message": "Quantity must be greater than or equal to 1"})
                    continue
                if presentment in self.fx:
                    lines.append(_Line(uuid=str(item.get("uuid") or secrets.token_hex(8)),
                                       variant_id=variant.id, quantity=int(item["quantity"]),
                                       unit=self._unit_prices(variant, presentment)))
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
                price = _D(str(spec["priceWithCurrency"]["amount"]))
                shipping = {"title": spec["title"], "code": "custom", "source": "shopify", "handle": None,
                            "price": {self.currency: price}}
        if errors:
            return errors
        draft.presentment = presentment
        if lines is not None:
            draft.lines = lines
        elif "presentmentCurrencyCode" in data:
            for line in draft.lines:
                line.unit = self._unit_prices(self.variants[line.variant_id], presentment)
        if "shippingAddress" in data:
            draft.address = dict(data["shippingAddress"]) if data["shippingAddress"] else None
        if shipping is not False:
            draft.shipping = shipping if isinstance(shipping, dict) else None
        if isinstance(draft.shipping, dict):
            base = draft.shipping["price"][self.currency]
            draft.shipping["price"] = {self.currency: base}
            if draft.presentment != self.currency:
                draft.shipping["price"][draft.presentment] = _round(base * self.fx[draft.presentment],
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
            draft.reserve_until = _parse_time(value) if value else None
        if "acceptAutomaticDiscounts" in data:
            draft.accept_automatic_discounts = data["acceptAutomaticDiscounts"]
        draft.updated_at = self.now()
        draft.unready_reads = self.ready_delay_reads
        return []

    def _create(self, data: dict[str, t.Any]) -> dict[str, t.Any]:
        number = self._next_draft
        now = self.now()
        draft = _Draft(number=number, created_at=now, updated_at=now, presentment=self.currency)
        errors = self._apply_input(draft, data, creating=True)
        if errors:
            return {"draftOrder": None, "userErrors": errors}
        self.drafts[number] = draft
        self._next_draft += 1
        self.emit("draft_orders/create", {"id": number, "admin_graphql_api_id": _gid("DraftOrder", number)})
        return {"draftOrder": self._draft_view(draft, count_read=True), "userErrors": []}

    def _lookup_draft(self, draft_id: t.Any) -> _Draft | None:
        parsed = _parse_gid(draft_id)
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
                                          "admin_graphql_api_id": _gid("DraftOrder", draft.number)})
        return {"draftOrder": self._draft_view(draft, count_read=True), "userErrors": []}

    def _complete(self, draft_id: t.Any) -> dict[str, t.Any]:
        draft = self._lookup_draft(draft_id)
        if draft is None:
            return {"draftOrder": None, "userErrors": [_NO_DRAFT]}
        if draft.status == "COMPLETED":
            return {"draftOrder": self._draft_view(draft, count_read=False, force_ready=True),
                    "userErrors": [{"field": None, "message": _COMPLETED}]}
        view = self._draft_view(draft, count_read=False, force_ready=True)
        number = self._next_order
        self._next_order += 1
        for line in draft.lines:
            variant = self.variants.get(line.variant_id)
            if variant is not None and variant.tracked:
                variant.inventory -= line.quantity
        lines = []
        for line in draft.lines:
            variant = self.variants.get(line.variant_id)
            lines.append(_OrderLine(
                id=self._new_id(), variant_id=line.variant_id, quantity=line.quantity, unit=dict(line.unit),
                title=variant.product_title if variant else "Deleted",
                variant_title=variant.title if variant else None, sku=variant.sku if variant else None,
                requires_shipping=variant.requires_shipping if variant else True))
        now = self.now()
        self.orders[number] = _Order(
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
                                          "admin_graphql_api_id": _gid("DraftOrder", draft.number)})
        return {"deletedId": _gid("DraftOrder", draft.number), "userErrors": []}

    def _tags_add(self, resource_id: t.Any, tags: list[str]) -> dict[str, t.Any]:
        parsed = _parse_gid(resource_id)
        target: _Order | _Draft | None = None
        if parsed and parsed[0] == "Order":
            target = self.orders.get(parsed[1])
        elif parsed and parsed[0] == "DraftOrder":
            target = self.drafts.get(parsed[1])
        if target is None:
            return {"node": None, "userErrors": [{"field": ["id"], "message": "Resource does not exist"}]}
        for tag in tags:
            if tag not in target.tags:
                target.tags.append(tag)
        kind = "Order" if isinstance(target, _Order) else "DraftOrder"
        if isinstance(target, _Order):
            target.updated_at = self.now()
            self.emit("orders/updated", self._order_rest(target))
        return {"node": {"__typename": kind, "id": str(resource_id)}, "userErrors": []}

    def _delivery_options(self, data: dict[str, t.Any]) -> dict[str, t.Any]:
        shipped = False
        for item in data.get("lineItems") or []:
            parsed = _parse_gid(item.get("variantId"))
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
                handle = f"shopify-{rate['code']}-{_fmt(rate['price'])}-{self._seq}"
                self._handles[handle] = {"title": rate["title"], "code": rate["code"],
                                         "source": rate["source"], "handle": handle,
                                         "price": {self.currency: rate["price"]}, "country": key}
                out.append({"handle": handle, "title": rate["title"], "code": rate["code"],
                            "source": rate["source"],
                            "price": {"amount": _fmt(rate["price"]), "currencyCode": self.currency}})
            return out

        return {"availableShippingRates": issue(self.shipping_rates),
                "availableLocalDeliveryRates": issue(self.local_delivery_rates), "pageInfo": page}

    def _node(self, node_id: t.Any) -> dict[str, t.Any] | None:
        parsed = _parse_gid(node_id)
        if parsed is None:
            return None
        kind, number = parsed
        if kind == "ProductVariant" and number in self.variants:
            return self._variant_view(self.variants[number])
        if kind == "DraftOrder" and number in self.drafts:
            return self._draft_view(self.drafts[number], count_read=True)
        if kind == "Order" and number in self.orders:
            return self._order_view(self.orders[number])
        return None

    def _draft_search(self, query: str | None, sort_key: str, reverse: bool) -> list[_Draft]:
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
                drafts = [d for d in drafts if _compare(getattr(d, attr), value)]
        if sort_key == "UPDATED_AT":
            drafts.sort(key=lambda d: (d.updated_at, d.number))
        else:
            drafts.sort(key=lambda d: d.number)
        if reverse:
            drafts.reverse()
        return drafts

    def _order_search(self, query: str | None, sort_key: str, reverse: bool) -> list[_Order]:
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
                orders = [o for o in orders if _compare(
                    (o.updated_at or o.created_at) if field == "updated_at" else o.created_at, value)]
        keys: dict[str, cabc.Callable[[_Order], t.Any]] = {
            "UPDATED_AT": lambda o: (o.updated_at or o.created_at, o.number),
            "CREATED_AT": lambda o: (o.created_at, o.number),
            "PROCESSED_AT": lambda o: (o.created_at, o.number),
        }
        orders.sort(key=keys.get(sort_key, lambda o: o.number))
        if reverse:
            orders.reverse()
        return orders

    def _shop_view(self) -> dict[str, t.Any]:
        return {"__typename": "Shop", "id": "gid://shopify/Shop/73011", "name": self.shop_name,
                "myshopifyDomain": self.domain, "currencyCode": self.currency,
                "enabledPresentmentCurrencies": sorted(self.fx), "taxesIncluded": self.taxes_included,
                "taxShipping": self.tax_shipping, "url": f"https://{self.domain}"}


class _Root:
    """Root value of an execution: one method per root field (graphql-core's
    default resolver calls ``method(info, **arguments)``); returns plain dicts
    keyed by schema field names, so nested fields resolve by key."""

    def __init__(self, fake: FakeShopify) -> None:
        self.fake = fake

    def shop(self, info: t.Any) -> dict[str, t.Any]:
        return self.fake._shop_view()

    def nodes(self, info: t.Any, ids: list[str]) -> list[dict[str, t.Any] | None]:
        return [self.fake._node(i) for i in ids]

    def node(self, info: t.Any, id: str) -> dict[str, t.Any] | None:
        return self.fake._node(id)

    def productVariant(self, info: t.Any, id: str) -> dict[str, t.Any] | None:
        parsed = _parse_gid(id)
        return self.fake._node(id) if parsed and parsed[0] == "ProductVariant" else None

    def draftOrder(self, info: t.Any, id: str) -> dict[str, t.Any] | None:
        draft = self.fake._lookup_draft(id)
        return None if draft is None else self.fake._draft_view(draft, count_read=True)

    def draftOrders(self, info: t.Any, first: int | None = None, after: str | None = None,
                    query: str | None = None, reverse: bool = False, sortKey: str = "ID") -> dict[str, t.Any]:
        drafts = self.fake._draft_search(query, sortKey, reverse)
        if after is not None:
            numbers = [str(d.number) for d in drafts]
            drafts = drafts[numbers.index(after) + 1:] if after in numbers else []
        limit = max(0, min(250, first if first is not None else 250))
        page, more = drafts[:limit], len(drafts) > limit
        nodes = [self.fake._draft_view(d, count_read=False) for d in page]
        return _connection(nodes, lambda n: str(n["legacyResourceId"]), has_next=more)

    def orders(self, info: t.Any, first: int | None = None, after: str | None = None,
               query: str | None = None, reverse: bool = False,
               sortKey: str = "PROCESSED_AT") -> dict[str, t.Any]:
        orders = self.fake._order_search(query, sortKey, reverse)
        if after is not None:
            numbers = [str(o.number) for o in orders]
            orders = orders[numbers.index(after) + 1:] if after in numbers else []
        limit = max(0, min(250, first if first is not None else 250))
        page, more = orders[:limit], len(orders) > limit
        nodes = [self.fake._order_view(o) for o in page]
        return _connection(nodes, lambda n: str(n["legacyResourceId"]), has_next=more)

    def order(self, info: t.Any, id: str) -> dict[str, t.Any] | None:
        parsed = _parse_gid(id)
        if parsed is None or parsed[0] != "Order" or parsed[1] not in self.fake.orders:
            return None
        return self.fake._order_view(self.fake.orders[parsed[1]])

    def draftOrderAvailableDeliveryOptions(self, info: t.Any, input: dict[str, t.Any]) -> dict[str, t.Any]:
        return self.fake._delivery_options(input)

    def draftOrderCreate(self, info: t.Any, input: dict[str, t.Any]) -> dict[str, t.Any]:
        return self.fake._create(input)

    def draftOrderUpdate(self, info: t.Any, id: str, input: dict[str, t.Any]) -> dict[str, t.Any]:
        return self.fake._update(id, input)

    def draftOrderComplete(self, info: t.Any, id: str, paymentGatewayId: str | None = None,
                           sourceName: str | None = None) -> dict[str, t.Any]:
        return self.fake._complete(id)

    def draftOrderDelete(self, info: t.Any, input: dict[str, t.Any]) -> dict[str, t.Any]:
        return self.fake._delete(input)

    def tagsAdd(self, info: t.Any, id: str, tags: list[str]) -> dict[str, t.Any]:
        return self.fake._tags_add(id, tags)


# --- helpers -----------------------------------------------------------------------------------


def _json(body: t.Any, status: int = 200, *, headers: cabc.Mapping[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=dict(headers or {}), mimetype="application/json")


def _connection(nodes: list[dict[str, t.Any]], cursor: cabc.Callable[[dict[str, t.Any]], str], *,
                has_next: bool = False) -> dict[str, t.Any]:
    return {
        "nodes": nodes,
        "edges": [{"node": n, "cursor": cursor(n)} for n in nodes],
        "pageInfo": {"hasNextPage": has_next, "hasPreviousPage": False,
                     "startCursor": cursor(nodes[0]) if nodes else None,
                     "endCursor": cursor(nodes[-1]) if nodes else None},
    }


def _operation(document: t.Any, name: t.Any) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name:
        return next((o for o in operations if o.name and o.name.value == name), None)
    return operations[0] if len(operations) == 1 else None


def _cost(operation: OperationDefinitionNode, variables: cabc.Mapping[str, t.Any]) -> float:
    """Shopify-like cost: 10 per mutation field; 1 per query root field, ``nodes`` 1 per id,
    connections their ``first``."""
    cost = 0.0
    for selection in operation.selection_set.selections:
        if not isinstance(selection, FieldNode):
            cost += 1
            continue
        if operation.operation is OperationType.MUTATION:
            cost += 10
        elif selection.name.value == "nodes":
            ids = variables.get("ids") if isinstance(variables.get("ids"), list) else []
            cost += max(1, len(t.cast(list[t.Any], ids)))
        elif selection.name.value in ("draftOrders", "orders"):
            cost += 50
        else:
            cost += 1
    return cost


def _throttled(cost: float, available: float, maximum: float, rate: float) -> dict[str, t.Any]:
    return {"errors": [{"message": "Throttled", "extensions": {
                "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
            "extensions": {"cost": {"requestedQueryCost": cost, "actualQueryCost": None,
                                    "throttleStatus": {"maximumAvailable": maximum,
                                                       "currentlyAvailable": available,
                                                       "restoreRate": rate}}}}


def main(argv: cabc.Sequence[str] | None = None) -> None:
    """``python -m flask_acp.testing.fake_shopify [--host H] [--port N] [--seed FILE]
    [--webhook-url URL] [--verbose]``."""
    parser = argparse.ArgumentParser(prog="python -m flask_acp.testing.fake_shopify",
                                     description="Serve a fake Shopify Admin GraphQL API (flask-acp demos).")
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0 = any free port)")
    parser.add_argument("--seed", default=str(DEMO_SEED), help="seed JSON file (default: the demo seed)")
    parser.add_argument("--webhook-url", help="send signed order webhooks there, e.g. "
                                              "http://127.0.0.1:5000/webhooks/shopify")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    fake = FakeShopify(args.seed, host=args.host, port=args.port, quiet=not args.verbose)
    if args.webhook_url:
        fake.subscribe_webhooks(args.webhook_url)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    fake.start()
    print(f"Fake Shopify on {fake.url} (shop currency {fake.currency})", file=sys.stderr, flush=True)
    print(f"  SHOPIFY_SHOP_URL={fake.url} SHOPIFY_ACCESS_TOKEN={fake.access_token} "
          f"SHOPIFY_WEBHOOK_SECRET={fake.webhook_secret}", file=sys.stderr, flush=True)
    try:
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
