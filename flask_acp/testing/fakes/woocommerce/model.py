"""The fake WooCommerce site's data: constants, the records it keeps (calls,
webhooks and their deliveries, carts, tax rates, cart calculations), its seed,
errors in WooCommerce's shape, and the route table."""

from __future__ import annotations

import base64
import collections.abc as cabc
import copy
import dataclasses
import datetime as dt
import decimal
import json
import os
import pathlib
import typing as t

from werkzeug.routing import Map
from werkzeug.routing import Rule
from werkzeug.wrappers import Response

JSONDict = dict[str, t.Any]
DEFAULT_CONSUMER_KEY = "ck_fake_0123456789abcdef0123456789abcdef01234567"
DEFAULT_CONSUMER_SECRET = "cs_fake_0123456789abcdef0123456789abcdef01234567"  # noqa: S105
DEFAULT_WEBHOOK_SECRET = "wc_webhook_secret_fake_0123456789abcdef"  # noqa: S105
#: order meta key of the Shipment Tracking extension.
TRACKING_META_KEY = "_wc_shipment_tracking_items"
#: consecutive failed deliveries after which a webhook is disabled
#: (``woocommerce_max_webhook_delivery_failures``).
MAX_WEBHOOK_FAILURES = 5
WEBHOOK_USER_AGENT = "WooCommerce/10.3.0 Hookshot (WordPress/6.8.3)"
#: the folder of the seed files (``flask_acp/testing``).
HERE = pathlib.Path(__file__).resolve().parent.parent.parent
DEMO_SEED = HERE / "woocommerce_demo_seed.json"
#: minutes ``GET /wc/store/v1/checkout`` holds stock for (WooCommerce's default).
CHECKOUT_HOLD_MINUTES = 10
CART_TOKEN_TTL = 48 * 3600
HOLDING = ("checkout-draft", "pending")
STATUSES = ("pending", "processing", "on-hold", "completed", "cancelled", "refunded", "failed",
            "checkout-draft", "trash")
MAX_QUANTITY = 9999
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
class Webhook:
    id: int
    topic: str
    delivery_url: str
    secret: str
    status: str = "active"  # active | paused | disabled
    failure_count: int = 0



class WooError(Exception):
    def __init__(self, status: int, code: str, message: str, **data: t.Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.data = status, code, message, data

    def body(self) -> JSONDict:
        return {"code": self.code, "message": self.message, "data": {"status": self.status, **self.data}}



@dataclasses.dataclass
class Cart:
    user: str
    items: dict[str, JSONDict] = dataclasses.field(default_factory=dict)  # key -> {product_id, quantity}
    coupons: list[str] = dataclasses.field(default_factory=list)
    removed_auto: set[str] = dataclasses.field(default_factory=set)
    billing: JSONDict = dataclasses.field(default_factory=dict)
    shipping: JSONDict = dataclasses.field(default_factory=dict)
    chosen: dict[int, str] = dataclasses.field(default_factory=dict)
    draft_order_id: int | None = None


@dataclasses.dataclass
class Rate:
    id: int
    rate: decimal.Decimal  # a fraction: 0.0825
    name: str
    shipping: bool


@dataclasses.dataclass
class Line:
    key: str
    product: JSONDict
    quantity: int
    basis: int = 0  # price x qty in store minor units, as entered (incl. tax if inclusive)
    subtotal: int = 0
    subtotal_tax: int = 0
    total: int = 0
    total_tax: int = 0
    total_tax_exact: decimal.Decimal = D(0)
    rates: list[Rate] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ShipRate:
    rate_id: str
    method_id: str
    instance_id: int
    name: str
    description: str
    delivery_time: str
    cost: int
    taxes: int


@dataclasses.dataclass
class Package:
    package_id: int
    name: str
    keys: list[str]
    rates: list[ShipRate]
    selected: str | None


@dataclasses.dataclass
class Calc:
    lines: list[Line]
    coupons: list[tuple[str, str, int, int]]  # code, type, discount, discount tax
    fees: list[tuple[str, str, int, int]]  # id, name, total, tax
    packages: list[Package]
    needs_shipping: bool
    has_calculated_shipping: bool
    tax_lines: list[tuple[Rate, int]]
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


def half_up(value: decimal.Decimal) -> int:
    return int(value.quantize(D(1), rounding=decimal.ROUND_HALF_UP))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
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


def blank_address(billing: bool) -> JSONDict:
    out: JSONDict = {k: "" for k in _ADDRESS_FIELDS}
    if billing:
        out["email"] = ""
    return out



# --------------------------------------------------------------------------- helpers


def wp_specialchars_decode(text: str) -> str:
    """WordPress's ``wp_specialchars_decode(text, ENT_QUOTES)``, applied to webhook secrets."""
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#039;", "'"), ("&amp;", "&")):
        text = text.replace(entity, char)
    return text


def esc(text: str) -> str:
    """WordPress-style HTML escaping of names in messages."""
    return (str(text).replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
            .replace(">", "&gt;"))


def parse_time(value: str) -> float:
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()


def json_response(status: int, body: t.Any, headers: cabc.Mapping[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status, dict(headers or {}), mimetype="application/json")


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
    ("GET", "/wc/v3/products", "/wc/v3/products"),
    ("GET", "/wc/v3/products/<int:id>", "/wc/v3/products/{id}"),
    ("GET", "/wc/v3/products/<int:id>/variations", "/wc/v3/products/{id}/variations"),
    ("GET", "/wc/v3/orders", "/wc/v3/orders"),
    ("POST", "/wc/v3/orders", "/wc/v3/orders"),
    ("GET", "/wc/v3/orders/<int:id>", "/wc/v3/orders/{id}"),
    ("PUT", "/wc/v3/orders/<int:id>", "/wc/v3/orders/{id}"),
]
URLS = Map([Rule(rule, endpoint=f"{method} {name}", methods=[method]) for method, rule, name in _ROUTES],
           strict_slashes=False)

