"""The fake Shopify's data: constants, the records it keeps (variants, drafts,
orders, fulfillments, refunds, webhook deliveries) and helpers for Shopify's
ids, times and money (decimal strings, ``"25.0"``)."""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import datetime as dt
import decimal
import json
import pathlib
import typing as t

from graphql import GraphQLError
from iso4217 import Currency
from werkzeug.wrappers import Response

_HERE = pathlib.Path(__file__).parent.parent.parent  # flask_acp/testing
#: the seed used by ``python -m flask_acp.testing.fake_shopify`` without ``--seed``.
DEMO_SEED = _HERE / "shopify_demo_seed.json"
#: API versions the fake answers (requests for others fall forward to the oldest).
SUPPORTED_VERSIONS: tuple[str, ...] = ("2025-07", "2025-10", "2026-01", "2026-04", "2026-07", "2026-10")
#: topics a webhook subscription receives unless told otherwise (the order-sync topics).
DEFAULT_WEBHOOK_TOPICS: tuple[str, ...] = (
    "orders/updated", "orders/cancelled", "orders/fulfilled", "orders/partially_fulfilled",
    "fulfillments/create", "fulfillments/update", "refunds/create")

D = decimal.Decimal


def exponent(currency: str) -> int:
    member = Currency.__members__.get(currency.upper())
    if member is None or member.exponent is None:
        raise ValueError(f"unknown currency {currency!r}")
    return int(member.exponent)


def round_money(value: decimal.Decimal, currency: str) -> decimal.Decimal:
    return value.quantize(D(1).scaleb(-exponent(currency)), rounding=decimal.ROUND_HALF_UP)


def shopify_decimal(value: decimal.Decimal) -> str:
    """Shopify's ``Decimal`` rendering: no trailing zeros beyond one decimal (``"25.0"``)."""
    normal = value.normalize()
    if normal == normal.to_integral_value():
        return f"{int(normal)}.0"
    return format(normal, "f")


def iso(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(value: t.Any) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise GraphQLError(f"Invalid DateTime: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def compare_time(when: dt.datetime, value: str) -> bool:
    """A search-syntax time comparison: ``value`` is ``>=2026-11-29T10:00:00Z``,
    ``<'...'``, or a plain time (the same second)."""
    op = next((o for o in ("<=", ">=", "<", ">") if value.startswith(o)), "")
    other = parse_time(value[len(op):].strip("'\""))
    when = when.replace(microsecond=0)
    results = {"<=": when <= other, ">=": when >= other, "<": when < other, ">": when > other}
    return results.get(op, when == other)


def gid(kind: str, number: int) -> str:
    return f"gid://shopify/{kind}/{number}"


def parse_gid(value: t.Any) -> tuple[str, int] | None:
    text = str(value)
    if not text.startswith("gid://shopify/"):
        return None
    kind, _, tail = text[len("gid://shopify/"):].partition("/")
    tail = tail.split("?", 1)[0]
    return (kind, int(tail)) if tail.isdigit() else None


# --- records -----------------------------------------------------------------------------


@dataclasses.dataclass
class Variant:
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
    barcode: str | None = None
    compare_at_price: decimal.Decimal | None = None
    options: tuple[tuple[str, str], ...] = ()
    product_description: str = ""


@dataclasses.dataclass
class DiscountCode:
    """A code discount of the shop (seed ``discount_codes``): ``percentage`` (a
    fraction, ``0.2``) or ``amount`` (shop currency) off the draft's lines."""

    id: int
    code: str
    title: str
    percentage: decimal.Decimal | None = None
    amount: decimal.Decimal | None = None
    minimum_subtotal: decimal.Decimal | None = None
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    combines: bool = False
    usage_limit: int | None = None
    usage_count: int = 0


@dataclasses.dataclass
class Line:
    uuid: str
    variant_id: int
    quantity: int
    unit: dict[str, decimal.Decimal]  # currency -> unit price
    #: the line's ``priceOverride`` as given (amount, currency); ``None``: the catalog price
    override: tuple[decimal.Decimal, str] | None = None


@dataclasses.dataclass
class Draft:
    number: int
    created_at: dt.datetime
    updated_at: dt.datetime
    presentment: str
    lines: list[Line] = dataclasses.field(default_factory=list)
    email: str | None = None
    phone: str | None = None
    address: dict[str, t.Any] | None = None
    shipping: dict[str, t.Any] | None = None  # {title, code, source, handle, price{cur: Decimal}}
    attributes: list[dict[str, str]] = dataclasses.field(default_factory=list)
    tags: list[str] = dataclasses.field(default_factory=list)
    reserve_until: dt.datetime | None = None
    accept_automatic_discounts: bool | None = None
    #: ``DraftOrderInput.discountCodes`` as last given (applied or not)
    discount_codes: list[str] = dataclasses.field(default_factory=list)
    status: str = "OPEN"
    completed_at: dt.datetime | None = None
    order: int | None = None
    unready_reads: int = 0


@dataclasses.dataclass
class OrderLine:
    id: int
    variant_id: int
    quantity: int
    unit: dict[str, decimal.Decimal]  # currency -> unit price
    title: str
    variant_title: str | None
    sku: str | None
    requires_shipping: bool


@dataclasses.dataclass
class Fulfillment:
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
class Refund:
    id: int
    transaction_id: int
    order: int
    amount: dict[str, decimal.Decimal]  # currency -> amount (shop and presentment)
    created_at: dt.datetime
    note: str | None = None


@dataclasses.dataclass
class Order:
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
    lines: list[OrderLine] = dataclasses.field(default_factory=list)
    fulfillments: list[Fulfillment] = dataclasses.field(default_factory=list)
    refunds: list[Refund] = dataclasses.field(default_factory=list)
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


# --- helpers ---------------------------------------------------------------------------------


def json_response(body: t.Any, status: int = 200, *,
                  headers: cabc.Mapping[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=dict(headers or {}), mimetype="application/json")


def connection(nodes: list[dict[str, t.Any]], cursor: cabc.Callable[[dict[str, t.Any]], str], *,
               has_next: bool = False) -> dict[str, t.Any]:
    return {
        "nodes": nodes,
        "edges": [{"node": n, "cursor": cursor(n)} for n in nodes],
        "pageInfo": {"hasNextPage": has_next, "hasPreviousPage": False,
                     "startCursor": cursor(nodes[0]) if nodes else None,
                     "endCursor": cursor(nodes[-1]) if nodes else None},
    }

