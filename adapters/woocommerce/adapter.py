# ruff: noqa: TID251 - relative imports within the package (installed as flask_acp_adapters)
"""The WooCommerce platform adapter: Store API cart for quoting, REST v3 for the order.

Calls per ACP operation (platforms.md §0, §3.3; ``S`` = ``/wp-json/wc/store/v1``,
``R`` = ``/wp-json/wc/v3``), happy path:

=========  =================================================================  =====
create     ``GET S/cart`` (new ``Cart-Token``) → ``POST S/batch`` [``cart/add-item``  3
           per line, ``cart/update-customer``] → ``GET S/checkout`` (checkout-draft
           order holding the stock for 10 minutes; only once the cart is payable
           and the core asks for a hold (``QuoteRequest.hold_until``), so 2
           calls without an address)
update     ``POST S/batch`` [``cart/remove-item`` / ``update-item`` / ``add-item``    2
           for the changed lines, ``update-customer`` if the address or buyer
           changed, ``select-shipping-rate`` per changed choice, ``remove-coupon``
           / ``apply-coupon`` per changed discount code] → ``GET S/checkout``
           (a ``GET S/cart`` replaces the batch when nothing changed)
complete   ``prepare_order``: ``GET S/cart`` (no ``errors``, same ``total_price``)    6
           → ``GET S/checkout`` (draft order, stock held) → ``GET R/orders/{id}``
           (currency and ``total`` equal the quote) → ``PUT R/orders/{id}``
           ``{status: "pending", payment_method, meta_data}``; the core charges;
           ``place_order``: ``PUT R/orders/{id} {set_paid: true, transaction_id}``
           → ``DELETE S/cart/items``
cancel     ``DELETE S/cart/items`` → ``GET R/orders/{id}`` → ``PUT R/orders/{id}``   3
           ``{status: "cancelled"}`` when the draft is unpaid
=========  =================================================================  =====

After the sale (:mod:`.webhooks` has the mapping): ``parse_webhook`` verifies
``X-WC-Webhook-Signature`` and maps the order in the body (no call);
``reconcile_orders`` pages through ``GET R/orders?modified_after=…`` (100 per
call).

Off the happy path: a refused ``add-item`` costs one ``GET S/products?include=…``;
a stale cart (expired ``Cart-Token``, refused nonce, unknown cart key) one
``GET S/cart`` and a second batch; an unpaid ``pending`` order left by a
declined payment is cancelled (``GET`` + ``PUT``) before the next quote or
completion; a ``set_paid`` whose answer is lost (or, on the last attempt,
answered with a 5xx) is followed by ``GET R/orders/{id}`` before anything is
sent again.

Business conditions come back as messages: an item WooCommerce refuses to add
(``item_not_found``, ``out_of_stock``, ``quantity_exceeded``; one extra
``GET S/products?include=…`` then names the product and its available
quantity), cart ``errors`` (WooCommerce's text), a hold that fails because other
shoppers hold the stock, a missing address (``address_required``), an address
without shipping rates (``no_shipping_to_address``), an unknown shipping choice
(``fulfillment_option_invalid``), a currency the store does not sell in
(``currency_unsupported``) and amounts the currency cannot represent.

What the adapter keeps in ``Quote.adapter_state`` (JSON, WooCommerce's names)::

    cart_token   the Store API Cart-Token (a bearer credential for the cart)
    nonce        the latest Store API Nonce
    currency     the store currency, lowercase
    items        {item id: {"key": cart item key, "quantity": int}}
    customer     SHA-256 of the last update-customer body sent
    rates        {package_id: selected rate_id}
    coupons      the discount codes this adapter applied to the cart (still there when WooCommerce
                 stops honouring one: its cart error then rejects it; removed by remove-coupon)
    order_id, order_key, order_status ("checkout-draft" | "pending"), payment_url
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import secrets
import threading
import typing as t

from flask_acp.adapter import PlatformAdapter
from flask_acp.adapter import PlatformOrderUpdate
from flask_acp.adapter import PlatformWebhook
from flask_acp.adapter import QuoteRequest
from flask_acp.adapter import WebhookSignatureError
from flask_acp.adapter import applied_codes
from flask_acp.adapter import write_only_notes
from flask_acp.errors import AdapterError
from flask_acp.errors import AdapterRejectedError
from flask_acp.errors import AdapterUnavailableError
from flask_acp.models import JSON
from flask_acp.models import CheckoutSession
from flask_acp.models import LineItemRequest
from flask_acp.models import Message
from flask_acp.models import Order
from flask_acp.models import PaymentRecord
from flask_acp.models import Quote
from flask_acp.models import RejectedDiscount
from flask_acp.models import Totals
from flask_acp.products import ProductRecord

from .client import READ_METHODS
from .client import CartSession
from .client import WooCommerceClient
from .client import WooCommerceError
from .client import WooCommerceNoAnswerError
from .mapping import DIGITAL_OPTION_ID
from .mapping import STOCK_ERROR_CODES
from .mapping import PriceNotRepresentable
from .mapping import cart_coupon_errors
from .mapping import cart_currency
from .mapping import coupon_rejection
from .mapping import customer_payload
from .mapping import parse_option_id
from .mapping import plain_text
from .mapping import product_record
from .mapping import quote_from_cart
from .mapping import refused_quote
from .mapping import rest_amount
from .settings import RECONCILE_WINDOW
from .settings import WOOCOMMERCE_SETTINGS
from .webhooks import SESSION_META_KEY
from .webhooks import event_key
from .webhooks import is_ping
from .webhooks import order_update
from .webhooks import product_subjects
from .webhooks import signature_matches

__all__ = ["MESSAGE_KEYS", "SESSION_META_KEY", "WooCommerceAdapter"]

log = logging.getLogger("flask_acp.woocommerce")

S = "/wc/store/v1"
R = "/wc/v3"
#: Store API batch limit (``/wc/store/v1/batch`` accepts at most 25 requests).
BATCH_LIMIT = 25
#: order statuses that mean "paid" (``payment_complete()`` ran).
PAID_STATUSES = frozenset({"processing", "completed", "on-hold"})
#: order statuses of an order we may still cancel.
UNPAID_STATUSES = frozenset({"checkout-draft", "pending", "failed"})
#: ``payment_method`` / ``payment_method_title`` written on our orders.
PAYMENT_METHOD = "acp"
PAYMENT_METHOD_TITLE = "Agentic Commerce (ACP)"
#: most pages (of 100 orders) one reconcile reads.
RECONCILE_MAX_PAGES = 1000

#: every ``Message.text_key`` this adapter emits, with the ``text_args`` it sets
#: (other messages carry WooCommerce's text or ours in ``content``).
MESSAGE_KEYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("item_not_found", ("item_id",)),
    ("out_of_stock", ("name",)),
    ("quantity_exceeded", ("name", "available")),
    ("currency_unsupported", ("currency",)),
    ("address_required", ()),
    ("no_shipping_to_address", ("country",)),
    ("fulfillment_option_invalid", ("option_id",)),
)

_INVALID_PRODUCT_CODES = frozenset({
    "woocommerce_rest_cart_invalid_product",
    "woocommerce_rest_product_invalid_id",
    "woocommerce_rest_cart_invalid_parent_product",
})
_NONCE_CODES = frozenset({"woocommerce_rest_invalid_nonce", "woocommerce_rest_missing_nonce"})
_STALE_KEY_CODES = frozenset({"woocommerce_rest_cart_invalid_key", "woocommerce_rest_cart_item_not_found"})


@dataclasses.dataclass(slots=True)
class _State:
    """``Quote.adapter_state``, typed (see the module docstring)."""

    cart_token: str | None = None
    nonce: str | None = None
    currency: str | None = None
    items: dict[str, dict[str, JSON]] = dataclasses.field(default_factory=dict)
    customer: str | None = None
    rates: dict[str, str] = dataclasses.field(default_factory=dict)
    coupons: list[str] = dataclasses.field(default_factory=list)
    order_id: int | None = None
    order_key: str | None = None
    order_status: str | None = None
    payment_url: str | None = None

    @classmethod
    def load(cls, data: cabc.Mapping[str, JSON]) -> _State:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def dump(self) -> dict[str, JSON]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, {}, [])}

    def cart(self) -> CartSession:
        return CartSession(self.cart_token, self.nonce)

    def keep(self, cart: CartSession) -> None:
        """Remember the cart's latest token and nonce; a new token is a new cart."""
        if self.cart_token and cart.cart_token != self.cart_token:
            log.info("WooCommerce issued a new Cart-Token: the old cart is gone")
            self.items, self.customer, self.rates, self.coupons = {}, None, {}, []
            self.order_id = self.order_key = self.order_status = self.payment_url = None
        self.cart_token, self.nonce = cart.cart_token, cart.nonce

    def drop_coupon(self, code: str) -> None:
        self.coupons = [c for c in self.coupons if c.casefold() != code.casefold()]

    def snapshot(self, cart: cabc.Mapping[str, JSON]) -> None:
        """Remember the cart's items and selected rates."""
        self.items = {str(i.get("id")): {"key": str(i.get("key")), "quantity": i.get("quantity")}
                      for i in cart.get("items") or []}
        self.rates = {str(p.get("package_id")): str(r.get("rate_id"))
                      for p in cart.get("shipping_rates") or []
                      for r in p.get("shipping_rates") or [] if r.get("selected")}


@dataclasses.dataclass(slots=True)
class _Op:
    """One Store API cart call of a batch."""

    kind: str  # add | update | remove | customer | rate | coupon | uncoupon
    path: str
    body: dict[str, JSON]
    item_id: str | None = None
    index: int | None = None  # the line's (or the selected option's) index in the request


def _item_index(line_items: cabc.Sequence[LineItemRequest]) -> dict[str, int]:
    return {li.id: i for i, li in enumerate(line_items)}


def _digest(value: JSON) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


class WooCommerceAdapter(PlatformAdapter):
    """Sell a WooCommerce store's products through ACP (see the module docstring).

    ACP item ids are WooCommerce product ids (simple products) or variation ids.

    :param url: the WordPress site URL (``https://shop.example``).
    :param consumer_key: REST API consumer key (``ck_...``), Read/Write.
    :param consumer_secret: its secret (``cs_...``).
    :param timeout: seconds per HTTP call (connect and each read).
    :param set_paid_attempts: how many times ``place_order`` sends ``set_paid``
        (re-reading the order before each retry).
    :param webhook_secrets: the secret(s) of the store's order webhooks (the
        first is current; more accepted while rotating); none: no webhooks.
    :param reconcile_window: seconds; ``reconcile_orders(None)`` re-reads the
        orders modified within this window.
    :param client: a ready client (tests); replaces url/credentials/timeout.
    :raises ValueError: a bad URL (not https, except to loopback), credential or timeout.
    """

    name = "woocommerce"
    platform_manages_orders = True
    settings_section = WOOCOMMERCE_SETTINGS

    def __init__(self, url: str, consumer_key: str, consumer_secret: str, *, timeout: float = 10.0,
                 set_paid_attempts: int = 3, webhook_secrets: cabc.Sequence[str] = (),
                 reconcile_window: float = RECONCILE_WINDOW, client: WooCommerceClient | None = None) -> None:
        self.client = client or WooCommerceClient(url, consumer_key, consumer_secret, timeout=timeout)
        self.site_url = url.rstrip("/")
        self.set_paid_attempts = max(1, set_paid_attempts)
        self.webhook_secrets = tuple(s for s in webhook_secrets if s)
        if not reconcile_window > 0:
            raise ValueError(f"reconcile_window must be > 0 seconds, not {reconcile_window!r}")
        self.reconcile_window = float(reconcile_window)
        self._currency: str | None = None
        self._lock = threading.Lock()
        #: order ids this process sent ``set_paid`` for without learning the outcome
        #: (or is sending it now): the next call re-reads the order first, and until it
        #: is seen paid every failure to pay it is outcome-unknown.
        self._set_paid_sent: set[int] = set()

    @classmethod
    def from_config(cls, config: cabc.Mapping[str, t.Any]) -> WooCommerceAdapter:
        """Build from the Flask config's ``WOOCOMMERCE_*`` keys, declared in
        :data:`.settings.WOOCOMMERCE_SETTINGS` (the README's WooCommerce table).

        :raises ValueError: naming every missing or bad key.
        """
        s = WOOCOMMERCE_SETTINGS.load(config)
        return cls(s.url, s.consumer_key, s.consumer_secret, timeout=s.timeout,
                   webhook_secrets=s.webhook_secrets, reconcile_window=s.reconcile_window)

    # -- quoting -------------------------------------------------------------------

    def quote(self, request: QuoteRequest) -> Quote:
        """Bring the session's Store API cart to the requested lines, address and
        shipping choices, hold its stock while ``request.hold_until`` is in the
        future (WooCommerce's checkout-draft reservation: 10 minutes from each
        quote that holds, a length WooCommerce fixes; none is taken or renewed
        once the core's deadline has passed or before the session is payable,
        and the last one lapses on its own) and map it (:func:`.mapping.quote_from_cart`).
        Without a hold (``hold_until`` None: a cart's estimate, a session not
        payable yet) the lines the stock no longer covers are named from the
        products' maximum (the cart's own stock errors name none).

        Amounts are ISO 4217 minor units; ``Totals.of(quote).total`` is the
        cart's ``total_price``.

        :raises AdapterUnavailableError: the store cannot answer now.
        :raises AdapterRejectedError: the store refused a call it should accept
            (bad credentials, the Store API disabled).
        """
        state = _State.load(request.adapter_state)
        if state.order_status == "pending":
            self._discard_order(state)
        cart = state.cart()
        fresh: dict[str, JSON] | None = None
        if not state.cart_token:
            fresh = self._store("GET", "/cart", cart)
            state.keep(cart)
            state.snapshot(fresh)
            state.currency = cart_currency(fresh)
            self._currency = state.currency
        if state.currency and state.currency != request.currency.lower():
            return dataclasses.replace(refused_quote(request.line_items, Message(
                type="error", code="unsupported", param="$.currency", resolution="recoverable",
                text_key="currency_unsupported", text_args={"currency": request.currency},
            )), adapter_state=state.dump())
        rejected: dict[str, RejectedDiscount] = {}
        data, line_messages, messages = self._sync(request, state, cart, fresh, rejected)
        dishonoured = cart_coupon_errors(data, state.coupons)
        if dishonoured:
            # a coupon applied earlier that the cart no longer honours: taken out of the
            # cart (WooCommerce would refuse the checkout), the code rejected for its reason
            ops = [_Op("uncoupon", "/cart/remove-coupon", {"code": r.code}, r.code)
                   for r in dishonoured.values()]
            data = self._run(ops, state, cart, _item_index(request.line_items), {}, [], set(), {})[0] or data
            rejected.update(dishonoured)
        codes = request.discount_codes
        quote = quote_from_cart(data, request.line_items, line_messages=line_messages, messages=messages,
                                codes=codes, rejected=rejected)
        if request.hold_until is not None and self._holdable(quote, data):
            short, refusals = self._hold(state, cart, request.line_items)
            if short or refusals:
                quote = quote_from_cart(data, request.line_items,
                                        line_messages=_merge(line_messages, short),
                                        messages=messages + refusals, codes=codes, rejected=rejected)
        elif request.hold_until is None:
            # a cart's estimate holds nothing; the cart's stock errors name no line: ask which
            errors = [e for e in t.cast(list[JSON], data.get("errors") or []) if isinstance(e, dict)]
            if any(str(e.get("code")) in STOCK_ERROR_CODES for e in errors):
                short = self._short(cart, request.line_items, [li.id for li in request.line_items
                                                               if li.id in state.items])
                if short:
                    rest = [e for e in errors if str(e.get("code")) not in STOCK_ERROR_CODES]
                    quote = quote_from_cart({**data, "errors": rest}, request.line_items,
                                            line_messages=_merge(line_messages, short), messages=messages,
                                            codes=codes, rejected=rejected)
        return dataclasses.replace(quote, adapter_state=state.dump())

    def _sync(self, request: QuoteRequest, state: _State, cart: CartSession,
              fresh: dict[str, JSON] | None, rejected: dict[str, RejectedDiscount],
              ) -> tuple[dict[str, JSON], dict[str, list[Message]], list[Message]]:
        """Send the cart calls that make the cart match the request (one batch;
        a second one if the cart was not what ``state`` said). Returns the cart,
        per-item messages and other messages; the discount codes WooCommerce
        refused go into ``rejected`` (by casefolded code)."""
        index = _item_index(request.line_items)
        line_messages: dict[str, list[Message]] = {}
        messages: list[Message] = []
        stock_failures: set[str] = set()
        data = fresh
        for attempt in range(2):
            ops, choice_messages = self._ops(request, state, skip=set(line_messages) | stock_failures,
                                             skip_codes=set(rejected))
            if attempt == 0:
                messages.extend(choice_messages)
            if not ops:
                break
            data, outcome = self._run(ops, state, cart, index, line_messages, messages, stock_failures,
                                      rejected)
            if outcome == "lost" or data is None:
                # the cart session is gone (expired token, stale nonce) or no call
                # returned the cart: read it (a lost one comes back new and empty)
                data = self._store("GET", "/cart", cart)
                state.keep(cart)
                state.snapshot(data)
            if outcome is None and self._converged(data, request.line_items,
                                                   set(line_messages) | stock_failures):
                break
            log.info("WooCommerce cart differs from the session's record; syncing again")
        if data is None:
            data = self._store("GET", "/cart", cart)
            state.keep(cart)
            state.snapshot(data)
        if stock_failures:
            for item_id, msg in self._availability(cart, request.line_items, stock_failures).items():
                line_messages.setdefault(item_id, []).append(msg)
        return data, line_messages, _unique(messages)

    def _ops(self, request: QuoteRequest, state: _State, *,
             skip: set[str], skip_codes: cabc.Collection[str] = ()) -> tuple[list[_Op], list[Message]]:
        ops: list[_Op] = []
        messages: list[Message] = []
        wanted = {li.id: li.quantity for li in request.line_items if li.id not in skip}
        for item_id, held in state.items.items():
            if item_id not in wanted:
                ops.append(_Op("remove", "/cart/remove-item", {"key": held["key"]}, item_id))
        for i, li in enumerate(request.line_items):
            if li.id in skip:
                continue
            have = state.items.get(li.id)
            if have is None:
                ops.append(_Op("add", "/cart/add-item",
                               {"id": int(li.id) if li.id.isdigit() else li.id, "quantity": li.quantity},
                               li.id, i))
            elif have.get("quantity") != li.quantity:
                ops.append(_Op("update", "/cart/update-item", {"key": have["key"], "quantity": li.quantity},
                               li.id, i))
        customer = customer_payload(request.fulfillment_details, request.buyer)
        customer_changed = customer is not None and _digest(customer) != state.customer
        if customer is not None and customer_changed:
            ops.append(_Op("customer", "/cart/update-customer", customer))
        for i, sel in enumerate(request.selected_fulfillment_options):
            if sel.option_id == DIGITAL_OPTION_ID and sel.type in ("digital", None):
                continue
            parsed = parse_option_id(sel.option_id)
            if parsed is None or sel.type not in ("shipping", None):
                messages.append(_option_invalid(i, sel.option_id))
                continue
            package_id, rate_id = parsed
            if customer_changed or state.rates.get(str(package_id)) != rate_id:
                ops.append(_Op("rate", "/cart/select-shipping-rate",
                               {"package_id": package_id, "rate_id": rate_id}, sel.option_id, i))
        # discount codes last: a coupon's minimum spend is checked against the items just set
        wanted_codes = {c.casefold(): c for c in request.discount_codes}
        for code in state.coupons:
            if code.casefold() not in wanted_codes:
                ops.append(_Op("uncoupon", "/cart/remove-coupon", {"code": code}, code))
        applied = {c.casefold() for c in state.coupons}
        for key, code in wanted_codes.items():
            if key not in applied and key not in skip_codes:
                ops.append(_Op("coupon", "/cart/apply-coupon", {"code": code}, code))
        return ops, messages

    def _run(self, ops: list[_Op], state: _State, cart: CartSession, index: dict[str, int],
             line_messages: dict[str, list[Message]], messages: list[Message],
             stock_failures: set[str], rejected: dict[str, RejectedDiscount],
             ) -> tuple[dict[str, JSON] | None, str | None]:
        """Send ``ops`` in batches; record refusals as messages. Returns the last
        cart seen and ``"stale"`` (a cart key is unknown: the record was wrong),
        ``"lost"`` (the cart session is gone: nonce refused) or ``None``."""
        data: dict[str, JSON] | None = None
        outcome: str | None = None
        for start in range(0, len(ops), BATCH_LIMIT):
            chunk = ops[start:start + BATCH_LIMIT]
            body = {"requests": [{"path": S + op.path, "method": "POST", "body": op.body,
                                  "headers": cart.headers()} for op in chunk]}
            try:
                answer = self._store("POST", "/batch", cart, body)
            except WooCommerceError as exc:
                if exc.code in _NONCE_CODES:
                    return None, "lost"
                raise
            state.keep(cart)
            responses = answer.get("responses") if isinstance(answer, dict) else None
            if not isinstance(responses, list) or len(responses) != len(chunk):
                raise AdapterUnavailableError("WooCommerce POST /wc/store/v1/batch: unexpected answer")
            for op, response in zip(chunk, responses, strict=True):
                status = int(response.get("status") or 0)
                result = response.get("body")
                if 200 <= status < 300 and isinstance(result, dict):
                    data = result
                    if op.kind == "customer":
                        state.customer = _digest(op.body)
                    elif op.kind == "coupon" and op.item_id is not None:
                        state.coupons.append(op.item_id)
                    elif op.kind == "uncoupon":
                        state.drop_coupon(str(op.item_id))
                    continue
                if status >= 500 or status == 429 or not isinstance(result, dict):
                    raise AdapterUnavailableError(f"WooCommerce batch {op.path}: HTTP {status}")
                code = str(result.get("code") or "")
                if code in _NONCE_CODES:
                    outcome = "lost"
                    continue
                detail = _dict(result.get("data"))
                if isinstance(detail.get("cart"), dict):
                    data = detail["cart"]
                if op.kind in ("coupon", "uncoupon") and op.item_id is not None:
                    if op.kind == "coupon":
                        text = plain_text(result.get("message"))
                        rejected[op.item_id.casefold()] = RejectedDiscount(
                            code=op.item_id, reason=coupon_rejection(code, text), content=text or None)
                    else:  # not in the cart any more: nothing to remove
                        state.drop_coupon(op.item_id)
                    continue
                if self._failed(op, code, plain_text(result.get("message")), index,
                                line_messages, messages, stock_failures):
                    outcome = outcome or "stale"
        if data is not None and outcome != "lost":
            state.snapshot(data)
        return (None if outcome == "lost" else data), outcome

    @staticmethod
    def _failed(op: _Op, code: str, text: str, index: dict[str, int],
                line_messages: dict[str, list[Message]], messages: list[Message],
                stock_failures: set[str]) -> bool:
        """Record one refused cart call; ``True`` when it means the record was stale."""
        if code in _STALE_KEY_CODES:
            return True
        if op.kind in ("add", "update") and op.item_id is not None:
            i = index[op.item_id]
            if code in STOCK_ERROR_CODES:
                stock_failures.add(op.item_id)
            elif code in _INVALID_PRODUCT_CODES or op.kind == "add" and not op.item_id.isdigit():
                line_messages.setdefault(op.item_id, []).append(Message(
                    type="error", code="not_found", param=f"$.line_items[{i}].item.id",
                    resolution="recoverable", text_key="item_not_found", text_args={"item_id": op.item_id}))
            else:
                line_messages.setdefault(op.item_id, []).append(Message(
                    type="error", code="invalid", param=f"$.line_items[{i}]",
                    resolution="requires_buyer_input", content=text or code))
        elif op.kind == "customer":
            messages.append(Message(type="error", code="invalid", param="$.fulfillment_details.address",
                                    resolution="requires_buyer_input", content=text or code))
        elif op.kind == "rate" and op.item_id is not None and op.index is not None:
            messages.append(_option_invalid(op.index, op.item_id))
        return False

    @staticmethod
    def _converged(data: dict[str, JSON] | None, line_items: cabc.Sequence[LineItemRequest],
                   failed: set[str]) -> bool:
        """The cart holds exactly the requested lines that did not fail."""
        if data is None:
            return False
        have = {str(i.get("id")): i.get("quantity") for i in data.get("items") or []}
        wanted = {li.id: li.quantity for li in line_items if li.id not in failed}
        return have == wanted

    def _availability(self, cart: CartSession, line_items: cabc.Sequence[LineItemRequest],
                      item_ids: cabc.Collection[str]) -> dict[str, Message]:
        """Messages for lines the stock cannot cover, from one
        ``GET /wc/store/v1/products?include=…`` (name, ``add_to_cart.maximum``,
        which WooCommerce computes net of other shoppers' holds)."""
        index = _item_index(line_items)
        wanted = [i for i in item_ids if i.isdigit()]
        products: dict[str, dict[str, JSON]] = {}
        if wanted:
            found = self._store("GET", "/products", cart, params={
                "include": ",".join(wanted), "per_page": str(len(wanted))})
            products = {str(p.get("id")): p for p in found or [] if isinstance(p, dict)}
        out: dict[str, Message] = {}
        for item_id in item_ids:
            i = index[item_id]
            product = products.get(item_id)
            if product is None:
                out[item_id] = Message(type="error", code="not_found", param=f"$.line_items[{i}].item.id",
                                       resolution="recoverable", text_key="item_not_found",
                                       text_args={"item_id": item_id})
                continue
            name = plain_text(product.get("name")) or item_id
            maximum = _dict(product.get("add_to_cart")).get("maximum")
            available = maximum if isinstance(maximum, int) and product.get("is_in_stock") else 0
            if available > 0:
                out[item_id] = Message(type="error", code="quantity_exceeded",
                                       param=f"$.line_items[{i}].quantity",
                                       resolution="requires_buyer_input", text_key="quantity_exceeded",
                                       text_args={"name": name, "available": str(available)})
            else:
                out[item_id] = Message(type="error", code="out_of_stock", param=f"$.line_items[{i}].item.id",
                                       resolution="requires_buyer_input", text_key="out_of_stock",
                                       text_args={"name": name})
        return out

    def _short(self, cart: CartSession, line_items: cabc.Sequence[LineItemRequest],
               item_ids: cabc.Collection[str]) -> dict[str, list[Message]]:
        """Messages for those of ``item_ids`` the stock cannot cover now (see
        :meth:`_availability`), by item id."""
        found = self._availability(cart, line_items, item_ids)
        return {k: [m] for k, m in found.items()
                if m.code != "quantity_exceeded" or int(m.text_args["available"]) < _qty(line_items, k)}

    @staticmethod
    def _holdable(quote: Quote, data: cabc.Mapping[str, JSON]) -> bool:
        return (bool(data.get("items")) and not data.get("errors")
                and any(line.purchasable for line in quote.lines)
                and not any(m.blocks_payment for m in quote.messages))

    def _hold(self, state: _State, cart: CartSession, line_items: cabc.Sequence[LineItemRequest]
              ) -> tuple[dict[str, list[Message]], list[Message]]:
        """``GET /wc/store/v1/checkout``: create or refresh the checkout-draft
        order, which reserves the cart's stock for 10 minutes. Returns messages
        for the lines the stock cannot cover (other orders hold it), and for the
        session when WooCommerce refuses the checkout for another reason."""
        try:
            checkout = self._store("GET", "/checkout", cart)
        except WooCommerceError as exc:
            state.keep(cart)
            stock = exc.code in STOCK_ERROR_CODES
            refusal = Message(type="error", code="out_of_stock" if stock else "invalid",
                              param="$.line_items", resolution="requires_buyer_input",
                              content=plain_text(exc.message) or exc.code)
            if not stock:
                return {}, [refusal]
            short = self._short(cart, line_items, [li.id for li in line_items if li.id in state.items])
            return short, ([] if short else [refusal])
        state.keep(cart)
        if isinstance(checkout, dict) and isinstance(checkout.get("order_id"), int) and checkout["order_id"]:
            state.order_id = checkout["order_id"]
            state.order_key = str(checkout.get("order_key") or "") or None
            state.order_status = str(checkout.get("status") or "checkout-draft")
        return {}, []

    # -- orders --------------------------------------------------------------------

    def prepare_order(self, session: CheckoutSession, *, hold_until: dt.datetime) -> Quote:
        """Check the cart (``GET /cart``: no ``errors``, same ``total_price``),
        turn it into a checkout-draft order holding the stock (``GET /checkout``),
        check the order's ``currency`` and ``total`` through REST
        (``GET /wc/v3/orders/{id}``) and set it ``pending`` with our payment
        method, the session id and the session's write-only inputs
        (:func:`~flask_acp.adapter.write_only_notes`: affiliate attribution,
        marketing consents) in ``meta_data`` (``PUT /wc/v3/orders/{id}``).

        Returns the fresh quote; its ``adapter_state`` carries ``order_id``.
        When the cart changed, has errors, or the stock is gone, the returned
        quote says so (and no order is set pending); the core then does not charge.

        :raises AdapterUnavailableError: the store cannot answer now.
        :raises AdapterRejectedError: the store refused a call it should accept.
        """
        state = _State.load(session.quote.adapter_state)
        if not state.cart_token:
            return self.quote(_request_of(session, hold_until))
        if state.order_status == "pending":
            self._discard_order(state)
        cart = state.cart()
        data = self._store("GET", "/cart", cart)
        state.keep(cart)
        state.snapshot(data)
        codes = tuple(state.coupons)  # those this adapter applied (the cart keeps them as they were)
        quote = quote_from_cart(data, session.line_items, codes=codes)
        if (Totals.of(quote).total != session.totals.total or not self._holdable(quote, data)
                or any(m.blocks_payment for m in quote.messages)):
            return dataclasses.replace(quote, adapter_state=state.dump())
        short, refusals = self._hold(state, cart, session.line_items)
        if short or refusals or state.order_id is None:
            quote = quote_from_cart(data, session.line_items, line_messages=short, messages=refusals,
                                    codes=codes)
            return dataclasses.replace(quote, adapter_state=state.dump())
        order = self._rest("GET", f"/orders/{state.order_id}")
        problem = self._order_mismatch(order, session.currency, Totals.of(quote).total)
        if problem is not None:
            quote = dataclasses.replace(quote, messages=quote.messages + (problem,))
            return dataclasses.replace(quote, adapter_state=state.dump())
        body: dict[str, JSON] = {
            "status": "pending", "payment_method": PAYMENT_METHOD,
            "payment_method_title": PAYMENT_METHOD_TITLE,
            # the session id, and the write-only inputs the order keeps (affiliate
            # attribution, marketing consent decisions) under protected "_acp_" keys
            "meta_data": [{"key": SESSION_META_KEY, "value": session.id},
                          *({"key": key, "value": value} for key, value in write_only_notes(session))],
        }
        if session.order_notes:
            body["customer_note"] = session.order_notes
        try:
            order = self._rest("PUT", f"/orders/{state.order_id}", body)
        except AdapterUnavailableError:
            # the answer was lost: the order may now be pending, and a retry would get a
            # new checkout draft; cancel this unpaid one (best effort) so it holds no stock
            try:
                self._rest("PUT", f"/orders/{state.order_id}", {"status": "cancelled"})
            except AdapterError:
                log.warning("could not cancel WooCommerce order %s after a lost answer", state.order_id)
            raise
        if order.get("status") != "pending":
            raise AdapterRejectedError(f"WooCommerce order {state.order_id} is {order.get('status')!r} "
                                       "after setting it pending")
        state.order_status = "pending"
        state.order_key = str(order.get("order_key") or state.order_key or "") or None
        state.payment_url = str(order.get("payment_url") or "") or None
        return dataclasses.replace(quote, adapter_state=state.dump())

    @staticmethod
    def _order_mismatch(order: cabc.Mapping[str, JSON], currency: str, total: int) -> Message | None:
        order_currency = str(order.get("currency") or "")
        try:
            order_total = rest_amount(order.get("total"), order_currency or currency)
        except (PriceNotRepresentable, ValueError):
            order_total = None
        if order_currency.lower() == currency.lower() and order_total == total:
            return None
        return Message(type="error", code="invalid", param="$.totals", resolution="requires_buyer_review",
                       content=(f"The store's order total ({order_currency} {order.get('total')}) differs "
                                "from the checkout total; update the checkout session to re-price it."))

    def place_order(self, session: CheckoutSession, payment: PaymentRecord) -> Order:
        """Mark the pending order paid: ``PUT /wc/v3/orders/{id}
        {set_paid: true, transaction_id: payment.payment_id}`` (WooCommerce runs
        ``payment_complete()``: status ``processing``, ``date_paid``, stock
        reduced), then empty the cart (``DELETE /wc/store/v1/cart/items``,
        best effort).

        Idempotent per session: before any retry (a lost answer, a timeout, a
        second call after a 503) the order is re-read (``GET``); an order that is
        already paid with this ``transaction_id`` is returned as is. ``set_paid``
        itself only acts on a pending order, so a retry cannot pay twice.

        Whether the order may be paid when it cannot be confirmed now is told by
        ``outcome_unknown`` (the core then never refunds on its own): set when a
        ``set_paid`` got no answer (timed out, connection lost: it may still be
        running, even if the order reads unpaid), or when one may have run (a
        5xx) and the order could not be re-read; and, from then on, on every
        failure to pay this order in this process until it is seen paid. False
        when no ``set_paid`` can have paid it: refused before running (connection
        refused, 429), or answered with an error while the order still read unpaid.

        :returns: the order: ``id`` = WooCommerce order id, ``permalink_url`` =
            the order-received page with the order key (no WordPress account needed).
        :raises AdapterUnavailableError: the store cannot answer now; the core
            retries later (``outcome_unknown``: see above).
        :raises AdapterRejectedError: no order was prepared, or it was cancelled,
            or paid with another transaction.
        """
        state = _State.load(session.quote.adapter_state)
        if state.order_id is None:
            raise AdapterRejectedError(f"session {session.id} has no WooCommerce order to pay")
        order_id = state.order_id
        body: dict[str, JSON] = ({"set_paid": True, "transaction_id": payment.payment_id or ""}
                                 if payment.amount > 0 else
                                 {"status": "processing", "transaction_id": payment.payment_id or ""})
        with self._lock:
            earlier = order_id in self._set_paid_sent
            self._set_paid_sent.add(order_id)
        try:
            order = self._pay(order_id, body, payment, reread_first=earlier)
        except AdapterUnavailableError as exc:
            if exc.outcome_unknown:
                raise
            if earlier:
                raise AdapterUnavailableError(
                    f"{exc} (an earlier set_paid on WooCommerce order {order_id} has an unknown "
                    "outcome: the order may be paid)", retry_after=exc.retry_after,
                    outcome_unknown=True) from exc
            self._settled(order_id)
            raise
        except AdapterRejectedError:
            self._settled(order_id)
            raise
        self._settled(order_id)
        self._empty_cart(state)
        return Order(
            id=str(order.get("id") or order_id),
            checkout_session_id=session.id,
            permalink_url=self._permalink(order, state),
            order_number=str(order.get("number") or order_id),
            status="confirmed",
            platform_order_id=str(order_id),
        )

    def _settled(self, order_id: int) -> None:
        with self._lock:
            self._set_paid_sent.discard(order_id)

    def _pay(self, order_id: int, body: dict[str, JSON], payment: PaymentRecord, *,
             reread_first: bool) -> cabc.Mapping[str, JSON]:
        """Send ``body`` (``set_paid``) until the order is paid, re-reading it
        before every retry, and after a last attempt that may have run; returns
        the paid order.

        :raises AdapterUnavailableError: not paid now; ``outcome_unknown`` when a
            ``set_paid`` of this call may have paid it: one got no answer (it may
            still be running), or the re-read after one that may have run failed.
        :raises AdapterRejectedError: see :meth:`_paid`, or not paid after ``set_paid``.
        """
        running = False  # a set_paid of this call got no answer: it may still be running
        failed: AdapterUnavailableError | None = None  # the last set_paid's failure
        for attempt in range(self.set_paid_attempts):
            if reread_first or attempt > 0:
                current = self._reread(order_id, payment,
                                       unknown=running or (failed is not None and failed.outcome_unknown))
                if current is not None:
                    return current
            try:
                order = self._rest("PUT", f"/orders/{order_id}", body)
            except AdapterUnavailableError as exc:
                running = running or (exc.outcome_unknown and isinstance(exc, WooCommerceNoAnswerError))
                failed = exc
                log.warning("WooCommerce set_paid on order %s: %s", order_id, exc)
                continue
            if self._paid(order, payment, order_id):
                return order
            raise AdapterRejectedError(
                f"WooCommerce order {order_id} is {order.get('status')!r} after set_paid")
        if failed is not None and failed.outcome_unknown:  # the last one may have run: look
            current = self._reread(order_id, payment, unknown=True)
            if current is not None:
                return current
        raise AdapterUnavailableError(
            f"WooCommerce order {order_id}: set_paid did not go through ({failed})",
            retry_after=failed.retry_after if failed is not None else None, outcome_unknown=running,
        ) from failed

    def _reread(self, order_id: int, payment: PaymentRecord, *,
                unknown: bool) -> cabc.Mapping[str, JSON] | None:
        """``GET`` the order: returned when ``payment`` paid it, ``None`` while it
        still needs payment.

        :param unknown: a ``set_paid`` may have paid it: a failed read is then
            outcome-unknown.
        :raises AdapterUnavailableError: the order cannot be read.
        :raises AdapterRejectedError: see :meth:`_paid`.
        """
        try:
            current = self._rest("GET", f"/orders/{order_id}")
        except AdapterUnavailableError as exc:
            if not unknown:
                raise
            raise AdapterUnavailableError(
                f"WooCommerce set_paid on order {order_id} has an unknown outcome and the order cannot "
                f"be read ({exc})", retry_after=exc.retry_after, outcome_unknown=True) from exc
        return current if self._paid(current, payment, order_id) else None

    @staticmethod
    def _paid(order: cabc.Mapping[str, JSON], payment: PaymentRecord, order_id: int) -> bool:
        """``True`` when ``order`` is paid by ``payment``; ``False`` while it still
        needs payment. :raises AdapterRejectedError: cancelled, or paid otherwise."""
        status = str(order.get("status") or "")
        if status in PAID_STATUSES and order.get("date_paid"):
            if order.get("transaction_id") not in (payment.payment_id, None, ""):
                raise AdapterRejectedError(
                    f"WooCommerce order {order_id} is paid by transaction {order.get('transaction_id')!r}, "
                    f"not {payment.payment_id!r}")
            return True
        if status in ("pending", "failed"):
            return False
        raise AdapterRejectedError(f"WooCommerce order {order_id} is {status!r}; it cannot be paid")

    def _permalink(self, order: cabc.Mapping[str, JSON], state: _State) -> str:
        """The order-received page: ``{site}/checkout/order-received/{id}/?key={order_key}``
        (the checkout page's real path is taken from the order's ``payment_url``)."""
        order_id = order.get("id") or state.order_id
        key = order.get("order_key") or state.order_key or ""
        payment_url = str(order.get("payment_url") or state.payment_url or "")
        base = (payment_url.split("/order-pay/", 1)[0] if "/order-pay/" in payment_url
                else f"{self.site_url}/checkout")
        return f"{base}/order-received/{order_id}/?key={key}"

    def _empty_cart(self, state: _State) -> None:
        if not state.cart_token:
            return
        try:
            self._store("DELETE", "/cart/items", state.cart())
        except (AdapterUnavailableError, AdapterRejectedError) as exc:
            log.warning("WooCommerce: could not empty cart after the order: %s", exc)

    def release(self, session: CheckoutSession) -> None:
        """Empty the cart (``DELETE /wc/store/v1/cart/items``) and cancel the
        session's unpaid checkout-draft or pending order (``GET`` then ``PUT
        /wc/v3/orders/{id} {status: "cancelled"}``), which frees its stock hold.
        Idempotent; a paid order is never touched.

        :raises AdapterUnavailableError: the store cannot answer now.
        """
        state = _State.load(session.quote.adapter_state)
        if state.cart_token:
            try:
                self._store("DELETE", "/cart/items", state.cart())
            except WooCommerceError as exc:
                log.info("WooCommerce: emptying cart on release: %s", exc)
        if state.order_id is not None:
            self._discard_order(state)

    def _discard_order(self, state: _State) -> None:
        """Cancel the unpaid order in ``state`` and forget it.

        :raises AdapterRejectedError: the order is paid (never cancel a paid order).
        """
        order_id = state.order_id
        try:
            order = self._rest("GET", f"/orders/{order_id}")
            status = str(order.get("status") or "")
            if status in UNPAID_STATUSES and not order.get("date_paid"):
                self._rest("PUT", f"/orders/{order_id}", {"status": "cancelled"})
            elif status in PAID_STATUSES:
                raise AdapterRejectedError(f"WooCommerce order {order_id} of this session is already paid")
        except WooCommerceError as exc:
            if exc.status != 404:
                raise
        state.order_id = state.order_key = state.order_status = state.payment_url = None

    # -- after the sale ------------------------------------------------------------

    def parse_webhook(self, headers: cabc.Mapping[str, str], body: bytes) -> PlatformWebhook:
        """Verify a WooCommerce webhook delivery and map its order (:mod:`.webhooks`).

        * The ping of a new webhook (form body ``webhook_id=N``, unsigned) is
          accepted and changes nothing (``event_id`` None).
        * Otherwise ``X-WC-Webhook-Signature`` must be the base64 HMAC-SHA256 of
          the raw body under a configured secret.
        * ``order.*`` topics carry the REST v3 order: orders we did not make,
          and unpaid ones, give no update (and ``event_id`` None, so they are not
          recorded); other topics and bodies that are no order are acknowledged
          and ignored. ``event_id`` is :func:`.webhooks.event_key`.

        :raises NotImplementedError: no ``WOOCOMMERCE_WEBHOOK_SECRET`` (404).
        :raises WebhookSignatureError: missing or wrong signature (401).
        """
        if not self.webhook_secrets:
            raise NotImplementedError
        given = {k.lower(): v for k, v in headers.items()}
        header = given.get("x-wc-webhook-signature", "")
        if not header:
            if is_ping(body):
                log.info("WooCommerce webhook ping (%s)", body.decode("ascii"))
                return PlatformWebhook(event_id=None)
            raise WebhookSignatureError("The X-WC-Webhook-Signature header is missing.")
        if not signature_matches(self.webhook_secrets, body, header):
            raise WebhookSignatureError("The X-WC-Webhook-Signature header does not match the body "
                                        "(check WOOCOMMERCE_WEBHOOK_SECRET against the webhook's secret).")
        topic = given.get("x-wc-webhook-topic", "")
        resource = given.get("x-wc-webhook-resource", "")
        if resource == "product" or topic.startswith("product."):
            try:
                product = json.loads(body)
            except ValueError:
                product = None
            subjects = product_subjects(product) if isinstance(product, dict) else ()
            if not subjects:  # (product.deleted carries {"id": N}: the feeds withdraw it)
                log.info("WooCommerce webhook %r: nothing for the feed", topic)
                return PlatformWebhook(event_id=None)
            key = f"product:{subjects[0]}:{hashlib.sha256(body).hexdigest()[:16]}"
            if topic == "product.deleted":
                # {"id": N} alone: a deletion after a restore has the body of the first one;
                # keyed per delivery (a repeated withdrawal is harmless, a missed one is not)
                key += ":" + (given.get("x-wc-webhook-delivery-id") or secrets.token_hex(8))
            return PlatformWebhook(event_id=key, products=subjects)
        if resource != "order" and not topic.startswith("order."):
            log.info("WooCommerce webhook %r ignored (not about an order)", topic or resource)
            return PlatformWebhook(event_id=None)
        try:
            order = json.loads(body)
        except ValueError:
            order = None
        if not isinstance(order, dict) or "id" not in order:
            log.warning("WooCommerce webhook %r: the body is not a REST v3 order (set the webhook's API "
                        "version to \"WP REST API Integration v3\"); ignored", topic)
            return PlatformWebhook(event_id=None)
        update = order_update(order)
        if update is None:
            return PlatformWebhook(event_id=None)
        return PlatformWebhook(event_id=event_key(order, body), updates=(update,))

    def reconcile_orders(self, since: dt.datetime | None) -> list[PlatformOrderUpdate]:
        """Re-read our orders modified after ``since`` (None: within
        :attr:`reconcile_window` seconds), oldest change first: ``GET
        /wc/v3/orders?modified_after=…&dates_are_gmt=true&orderby=modified&order=asc
        &per_page=100&page=N`` until ``X-WP-TotalPages``. REST cannot search by
        meta, so every order of the window is read and ours are kept (by the
        session meta; unpaid ones skipped), mapped as webhooks are.
        ``modified_after`` needs WooCommerce 5.8 or later.

        The command keeps no "last run" state: run it periodically without
        ``--since`` (the window overlaps, applying is idempotent) or pass
        ``--since``. An order modified while the pages are read may be missed
        once; the next run reads it.

        :raises AdapterUnavailableError: the store cannot answer now.
        :raises AdapterRejectedError: the store refused the call (credentials).
        """
        now = dt.datetime.now(dt.timezone.utc)
        after = since if since is not None else now - dt.timedelta(seconds=self.reconcile_window)
        if after.tzinfo is None:
            after = after.replace(tzinfo=dt.timezone.utc)
        params = {"modified_after": after.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                  "dates_are_gmt": "true", "orderby": "modified", "order": "asc", "per_page": "100",
                  "status": "any"}
        updates: list[PlatformOrderUpdate] = []
        page, pages = 1, 1
        while page <= min(pages, RECONCILE_MAX_PAGES):
            answer = self.client.request("GET", R + "/orders", params={**params, "page": str(page)})
            if not isinstance(answer.data, list):
                raise AdapterUnavailableError(f"WooCommerce GET {R}/orders: not a JSON list")
            for order in answer.data:
                update = order_update(order) if isinstance(order, dict) else None
                if update is not None:
                    updates.append(update)
            total_pages = str(answer.headers.get("X-WP-TotalPages") or "1")
            pages = int(total_pages) if total_pages.isdigit() else 1
            page += 1
        if pages > RECONCILE_MAX_PAGES:
            log.warning("WooCommerce reconcile read only %d of %d pages: pass a later --since",
                        RECONCILE_MAX_PAGES, pages)
        log.info("WooCommerce reconcile since %s: %d of our orders", params["modified_after"], len(updates))
        return updates

    # -- product feed ---------------------------------------------------------------

    def iter_products(self) -> cabc.Iterator[ProductRecord]:
        """The store's published products, by id, priced in the store currency:
        ``GET /wc/v3/products?status=publish&orderby=id&order=asc&per_page=100&page=N``
        until ``X-WP-TotalPages``, and for each ``variable`` one ``GET
        /wc/v3/products/{id}/variations`` (paginated the same way); mapped by
        :func:`.mapping.product_record` (item ids: product ids of simple
        products, variation ids).

        :raises AdapterUnavailableError: the store cannot answer now (or its currency is unknown).
        :raises AdapterRejectedError: the store refused the call (credentials: Read access).
        """
        currency = self._feed_currency()
        params = {"status": "publish", "orderby": "id", "order": "asc", "per_page": "100"}
        for product in self._pages(R + "/products", params):
            record = self._product(product, currency)
            if record is not None:
                yield record

    def read_products(self, product_ids: cabc.Sequence[str]) -> list[ProductRecord]:
        """The current state of these products (``GET /wc/v3/products?include=…``
        and the variations of variable ones); unpublished or deleted ones left out.

        :raises AdapterUnavailableError: the store cannot answer now.
        """
        ids = [i for i in product_ids if i.isascii() and i.isdigit()]
        if not ids:
            return []
        currency = self._feed_currency()
        params = {"include": ",".join(ids), "status": "any", "per_page": "100"}
        found = {}
        for product in self._pages(R + "/products", params):
            record = self._product(product, currency)
            if record is not None:
                found[record.id] = record
        return [found[i] for i in ids if i in found]

    def _feed_currency(self) -> str:
        currencies = self.supported_currencies()
        if not currencies:
            raise AdapterUnavailableError("WooCommerce: the store currency cannot be read now")
        return currencies[0].upper()

    def _pages(self, path: str, params: cabc.Mapping[str, str]) -> cabc.Iterator[dict[str, JSON]]:
        page, pages = 1, 1
        while page <= pages:
            answer = self.client.request("GET", path, params={**params, "page": str(page)})
            if not isinstance(answer.data, list):
                raise AdapterUnavailableError(f"WooCommerce GET {path}: not a JSON list")
            yield from (row for row in answer.data if isinstance(row, dict))
            total_pages = str(answer.headers.get("X-WP-TotalPages") or "1")
            pages = int(total_pages) if total_pages.isdigit() else 1
            page += 1

    def _product(self, product: dict[str, JSON], currency: str) -> ProductRecord | None:
        variations: list[dict[str, JSON]] = []
        if product.get("type") == "variable":
            variations = list(self._pages(f"{R}/products/{product['id']}/variations",
                                          {"per_page": "100", "orderby": "id", "order": "asc"}))
        try:
            return product_record(product, variations, currency)
        except ValueError as exc:
            log.error("WooCommerce product %s left out of the feed: %s", product.get("id"), exc)
            return None

    def supported_currencies(self) -> list[str]:
        """The store currency, lowercase (``["usd"]``), read once from the Store
        API; ``[]`` while the store cannot be reached."""
        if self._currency is None:
            try:
                self._currency = cart_currency(self._store("GET", "/cart", CartSession())) or None
            except (AdapterUnavailableError, AdapterRejectedError) as exc:
                log.warning("WooCommerce: cannot read the store currency: %s", exc)
                return []
        return [self._currency] if self._currency else []

    def check_connection(self) -> str:
        """Lists one order through REST v3 with the consumer key (Basic auth).

        :raises AdapterError: refused key (401/403) or no answer.
        """
        answer = self.client.request("GET", R + "/orders", params={"per_page": "1"})
        return f"REST API v3 answered ({len(t.cast(list[t.Any], answer.data or []))} order read)"

    def close(self) -> None:
        """Close the HTTP session."""
        self.client.close()

    # -- transport -----------------------------------------------------------------

    def _store(self, method: str, path: str, cart: CartSession, body: JSON = None, *,
               params: cabc.Mapping[str, str] | None = None) -> t.Any:
        return self.client.request(method, S + path, json=body, params=params, cart=cart).data

    def _rest(self, method: str, path: str, body: JSON = None) -> dict[str, JSON]:
        data = self.client.request(method, R + path, json=body).data
        if not isinstance(data, dict):  # answered 2xx: a change was made
            raise AdapterUnavailableError(f"WooCommerce {method} {R}{path}: not a JSON object",
                                          outcome_unknown=method not in READ_METHODS)
        return data


def _unique(messages: list[Message]) -> list[Message]:
    seen: dict[tuple[t.Any, ...], Message] = {}
    for m in messages:
        key = (m.type, m.code, m.param, m.content, m.text_key, tuple(sorted(m.text_args.items())))
        seen.setdefault(key, m)
    return list(seen.values())


def _dict(value: JSON) -> dict[str, JSON]:
    return value if isinstance(value, dict) else {}


def _option_invalid(index: int, option_id: str) -> Message:
    return Message(type="error", code="invalid", param=f"$.selected_fulfillment_options[{index}].option_id",
                   resolution="recoverable", text_key="fulfillment_option_invalid",
                   text_args={"option_id": option_id})


def _qty(line_items: cabc.Sequence[LineItemRequest], item_id: str) -> int:
    return next((li.quantity for li in line_items if li.id == item_id), 0)


def _merge(a: dict[str, list[Message]], b: dict[str, list[Message]]) -> dict[str, list[Message]]:
    out = {k: list(v) for k, v in a.items()}
    for k, v in b.items():
        out.setdefault(k, []).extend(v)
    return out


def _request_of(session: CheckoutSession, hold_until: dt.datetime | None) -> QuoteRequest:
    return QuoteRequest(
        session_id=session.id, currency=session.currency, line_items=session.line_items,
        fulfillment_details=session.fulfillment_details,
        selected_fulfillment_options=session.requested_fulfillment_options,
        expires_at=session.expires_at, hold_until=hold_until, buyer=session.buyer,
        adapter_state=session.quote.adapter_state,
        discount_codes=applied_codes(session.quote),
    )
