"""The embedded catalog adapter: a product feed file, a store file and SQLite.

* Items are the variants of an ACP product feed (:mod:`.feed`).
* Prices are the feed's; stock, shipping, tax and order links come from the
  store file (:mod:`.store_rules`).
* Holds, sales and orders live in ``acp_catalog_*`` tables of the SQLite file
  (:mod:`.stock`), so several worker processes never oversell; or, when
  ``ACP_STORE_URL`` is a Redis, in that Redis (:mod:`.stock_redis`), so
  several app servers never oversell.

Quoting rules:

* Unknown item: ``not_found`` error, line not purchasable.
* Variant unavailable in the feed, or no units left: ``out_of_stock`` error.
* Requested units (summed over lines of the same item) above the units
  available or above ``max_quantity_per_order``: ``quantity_exceeded`` error
  whose ``available`` arg is the most that can be bought. The quantity is NOT
  capped silently: the line is not purchasable until the agent changes it.
* Request currency different from the store's: one ``unsupported`` error on
  ``$.currency`` and no line is purchasable.
* Shipping lines without an address: ``missing`` error on
  ``$.fulfillment_details.address`` and ``needs_fulfillment_details``; an
  address no method ships to: ``region_restricted`` error.
* Discounts: the store file's ``coupons`` (:mod:`.discounts`): requested codes
  and automatic discounts, allocated to the lines (``items_discount``).
* Tax: rate of the shipping address (country, ``state``) per the store file,
  per line on its discounted amount, half-up; no address, no tax.
* Holds (when is the core's decision, ``QuoteRequest.hold_until``): a payable
  quote (``quote_payable``) replaces the session's hold with its purchasable
  quantities, until ``request.hold_until``. Any other quote, and every quote
  with ``hold_until=None``, deletes the session's hold and holds nothing, but
  still counts other sessions' holds (what they hold is out of stock). The
  quote is built inside the ledger's transaction, so a session that cannot
  be paid never holds stock, not even for a moment.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import datetime as dt
import decimal
import hashlib
import pathlib
import typing as t

from marshmallow import ValidationError
from marshmallow import fields

from flask_acp.adapter import PlatformAdapter
from flask_acp.adapter import QuoteRequest
from flask_acp.adapter import applied_codes
from flask_acp.adapter import choose_fulfillment
from flask_acp.adapter import quote_payable
from flask_acp.config import Section
from flask_acp.config import setting
from flask_acp.errors import AdapterRejectedError
from flask_acp.models import JSON
from flask_acp.models import CheckoutSession
from flask_acp.models import FulfillmentOption
from flask_acp.models import LineItemRequest
from flask_acp.models import Message
from flask_acp.models import Order
from flask_acp.models import PaymentRecord
from flask_acp.models import PricedLine
from flask_acp.models import Quote
from flask_acp.products import ProductRecord
from flask_acp.products import VariantRecord
from flask_acp.store import is_redis

from .discounts import apply_coupons
from .discounts import discount_shipping
from .feed import CatalogItem
from .feed import load_catalog
from .ledger import Ledger
from .ledger import open_ledger
from .store_rules import DIGITAL_OPTION_ID
from .store_rules import load_store
from .store_rules import tax_amount

DATA_DIR = pathlib.Path(__file__).resolve().parent.parent / "data"
#: the feed and store file used when the config names none.
DEMO_FEED = DATA_DIR / "demo_feed.json"
DEMO_STORE = DATA_DIR / "demo_store.json"

#: every ``Message.text_key`` this adapter emits, with the ``text_args`` it sets.
MESSAGE_KEYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("item_not_found", ("item_id",)),
    ("out_of_stock", ("name",)),
    ("quantity_exceeded", ("name", "available")),
    ("low_stock", ("name", "available")),
    ("currency_unsupported", ("currency",)),
    ("address_required", ()),
    ("no_shipping_to_address", ("country",)),
    ("fulfillment_option_invalid", ("option_id",)),  # from choose_fulfillment
)

#: feed ``availability.status`` -> checkout ``LineItem.availability_status``.
_STATUS = {
    "in_stock": "in_stock",
    "limited_stock": "low_stock",
    "low_stock": "low_stock",
    "backorder": "backorder",
    "preorder": "pre_order",
    "pre_order": "pre_order",
    "out_of_stock": "out_of_stock",
    "discontinued": "out_of_stock",
}


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _existing_file(value: str) -> None:
    if not pathlib.Path(value).is_file():
        raise ValidationError(f"no such file: {value}")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CatalogSettings:
    """The catalog's own keys (its stock lives with the core's store: the
    ``ACP_SQLITE_PATH`` file, or the Redis of ``ACP_STORE_URL``)."""

    catalog_file: pathlib.Path = setting(
        "ACP_CATALOG_FILE", fields.String(validate=_existing_file), str(DEMO_FEED), unit="path",
        default_doc="the demo feed", convert=pathlib.Path,
        doc='The ACP product feed (`{"products": [Product...]}` of `schema.feed.json`, or JSON Lines).')
    store_file: pathlib.Path = setting(
        "ACP_STORE_FILE", fields.String(validate=_existing_file), str(DEMO_STORE), unit="path",
        default_doc="the demo store", convert=pathlib.Path,
        doc="Currency, stock, shipping methods, tax rates — format in `flask_acp/catalog/store_rules.py`.")


CATALOG_SETTINGS = Section("catalog", CatalogSettings)


class CatalogAdapter(PlatformAdapter):
    """Sell the variants of a feed file under the rules of a store file.

    :param feed_path: ACP product feed, ``.json`` or ``.jsonl`` (see :mod:`.feed`).
    :param store_path: store file (see :mod:`.store_rules`).
    :param db_path: where holds, sales and orders live (:func:`.ledger.open_ledger`):
        a SQLite file (may be shared with the session store), a Redis storage
        URL, or a ready :class:`.ledger.Ledger`.
    :param clock: returns the current aware UTC time (tests).
    :raises ValueError: a file is invalid, or they disagree (a price in
        another currency, a stock or digital entry naming no variant).
    :raises OSError: a file cannot be read.
    """

    name = "catalog"
    settings_section = CATALOG_SETTINGS

    def __init__(self, feed_path: str | pathlib.Path, store_path: str | pathlib.Path,
                 db_path: str | pathlib.Path | Ledger, *,
                 clock: cabc.Callable[[], dt.datetime] = _utcnow) -> None:
        self.items: dict[str, CatalogItem]
        #: the feed file's products (the feed's own availability; :meth:`iter_products` adds the stock)
        self.products: tuple[ProductRecord, ...]
        self.items, self.products = load_catalog(feed_path)
        self.store = load_store(store_path)
        for item in self.items.values():
            if item.currency.lower() != self.store.currency:
                raise ValueError(
                    f"feed {feed_path}: variant {item.item_id!r} is priced in {item.currency} but "
                    f"the store currency ({store_path}) is {self.store.currency.upper()}"
                )
        coupon_items = {i for c in self.store.coupons for i in (c.items or ())}
        for key, ids in (("stock", self.store.stock), ("digital_items", self.store.digital_items),
                         ("coupons[].items", coupon_items)):
            unknown = sorted(set(ids) - set(self.items))
            if unknown:
                raise ValueError(f"store file {store_path}: {key} names unknown variants {unknown}")
        self.ledger: Ledger = open_ledger(db_path)
        self._clock = clock

    @classmethod
    def from_config(cls, config: cabc.Mapping[str, t.Any]) -> CatalogAdapter:
        """Build from the keys of :data:`CATALOG_SETTINGS` (``ACP_CATALOG_FILE``,
        ``ACP_STORE_FILE``: the demo files by default) and the core's store:
        the Redis of ``ACP_STORE_URL`` when it names one, else the SQLite file
        ``ACP_SQLITE_PATH`` (then required).

        :raises ValueError: naming the missing key, the missing file's key, or
            the invalid file.
        """
        store_url = config.get("ACP_STORE_URL")
        db_path = store_url if is_redis(store_url) else config.get("ACP_SQLITE_PATH")
        if not db_path:
            raise ValueError(
                "ACP_SQLITE_PATH is required by the catalog adapter (SQLite file for stock"
                " holds and orders), unless ACP_STORE_URL names a Redis"
            )
        files = CATALOG_SETTINGS.load(config)
        return cls(files.catalog_file, files.store_file, db_path)

    # -- quoting -------------------------------------------------------------------

    def quote(self, request: QuoteRequest) -> Quote:
        """Price ``request`` and set the session's hold (see the module docstring).

        Amounts in the result are minor units of the store currency; delivery
        times are aware UTC datetimes.

        :raises StorageUnavailableError: the stock database failed.
        """
        now = self._clock()
        store = self.store
        address = _address(request.fulfillment_details)
        country = str(address["country"]).upper() if address.get("country") else None
        rate = store.tax_rate(country, address.get("state"))
        currency_ok = request.currency.lower() == store.currency
        messages: list[Message] = []
        if not currency_ok:
            messages.append(Message(
                type="error", code="unsupported", param="$.currency", resolution="recoverable",
                text_key="currency_unsupported", text_args={"currency": request.currency},
            ))

        on_hand: dict[str, int | None] = {}
        wanted: dict[str, int] = {}
        for li in request.line_items:
            item = self.items.get(li.id)
            if item is None:
                continue
            on_hand[li.id] = store.on_hand(li.id)
            if currency_ok and item.available:
                wanted[li.id] = wanted.get(li.id, 0) + li.quantity

        hold = request.hold_until is not None
        built: list[Quote] = []

        def build(available: dict[str, int | None], fitting: dict[str, int]) -> Quote:
            found = list(messages)
            priced: list[PricedLine] = []
            for index, li in enumerate(request.line_items):
                line, line_messages = self._price_line(index, li, available, fitting, wanted, rate)
                priced.append(line)
                found.extend(line_messages)
            coupons = store.coupons if currency_ok else ()
            discounted = apply_coupons(coupons, priced, request.discount_codes, now)
            lines = [dataclasses.replace(line, tax=tax_amount(line.subtotal, rate) if line.purchasable else 0)
                     for line in discounted.lines]
            options, needs_details, fulfillment_messages = self._fulfillment(lines, country, rate, now)
            found.extend(fulfillment_messages)
            selected, choice_messages = choose_fulfillment(
                options,
                request.selected_fulfillment_options,
                [li.id for li in request.line_items],
            )
            found.extend(choice_messages)
            chosen = {s.option_id for s in selected}
            shipping = sum(o.amount for o in options if o.id in chosen and o.type == "shipping")
            off_shipping = discount_shipping(discounted.shipping, shipping)
            return Quote(
                lines=tuple(lines),
                fulfillment_options=tuple(options),
                selected_fulfillment_options=selected,
                needs_fulfillment_details=needs_details,
                messages=tuple(found),
                discount=sum(d.amount for d in off_shipping),
                applied_discounts=discounted.applied + tuple(off_shipping),
                rejected_discounts=discounted.rejected,
            )

        def decide(available: dict[str, int | None]) -> dict[str, int]:
            # runs inside the ledger's transaction (a Redis ledger may run it
            # again, on fresher numbers): the quote is built here, and the hold
            # taken only when it is payable
            fitting = {i: q for i, q in wanted.items() if _fits(q, self._cap(available[i]))}
            built[:] = [build(available, fitting)]
            return fitting if hold and quote_payable(built[0]) else {}

        until = request.hold_until if request.hold_until is not None else now
        self.ledger.reserve(request.session_id, on_hand, decide, expires_at=until.timestamp(),
                            now=now.timestamp())
        return built[0]

    def _cap(self, available: int | None) -> int | None:
        """Most units one order may take: available units and the per-order max."""
        limits = [n for n in (available, self.store.max_quantity_per_order) if n is not None]
        return min(limits) if limits else None

    def _price_line(self, index: int, li: LineItemRequest, available: dict[str, int | None],
                    held: dict[str, int], wanted: dict[str, int],
                    rate: decimal.Decimal) -> tuple[PricedLine, list[Message]]:
        item = self.items.get(li.id)
        where = f"$.line_items[{index}]"
        if item is None:
            return PricedLine(item_id=li.id, quantity=li.quantity, purchasable=False,
                              requires_shipping=False), [Message(
                type="error", code="not_found", param=f"{where}.item.id",
                resolution="recoverable", text_key="item_not_found",
                text_args={"item_id": li.id},
            )]
        units = available.get(li.id)
        cap = self._cap(units)
        purchasable = li.id in held
        status = self._status(item, units)
        messages: list[Message] = []
        if not item.available or (li.id in wanted and not purchasable and units == 0):
            status = "out_of_stock"
            messages.append(Message(
                type="error", code="out_of_stock", param=f"{where}.item.id",
                resolution="requires_buyer_input", text_key="out_of_stock",
                text_args={"name": item.name},
            ))
        elif li.id in wanted and not purchasable:
            messages.append(Message(
                type="error", code="quantity_exceeded", param=f"{where}.quantity",
                resolution="requires_buyer_input", text_key="quantity_exceeded",
                text_args={"name": item.name, "available": str(cap)},
            ))
        elif purchasable and status == "low_stock" and units is not None:
            messages.append(Message(
                type="warning", code="low_stock", param=f"{where}.quantity",
                text_key="low_stock", text_args={"name": item.name, "available": str(units)},
            ))
        amount = item.unit_amount * li.quantity
        line = PricedLine(
            item_id=li.id,
            quantity=li.quantity,
            unit_amount=item.unit_amount,
            tax=tax_amount(amount, rate) if purchasable else 0,
            purchasable=purchasable,
            requires_shipping=self.store.requires_shipping(li.id),
            name=item.name,
            description=item.description,
            images=item.images,
            product_id=item.product_id,
            variant_id=item.item_id,
            availability_status=status,
            available_quantity=units,
            max_quantity_per_order=self.store.max_quantity_per_order,
        )
        return line, messages

    def _status(self, item: CatalogItem, units: int | None) -> str:
        if not item.available or units == 0:
            return "out_of_stock"
        threshold = self.store.low_stock_threshold
        if threshold is not None and units is not None and units <= threshold:
            return "low_stock"
        return _STATUS.get(item.status, "in_stock")

    def _fulfillment(self, lines: list[PricedLine], country: str | None, rate: decimal.Decimal,
                     now: dt.datetime) -> tuple[list[FulfillmentOption], bool, list[Message]]:
        store = self.store
        sold = [line for line in lines if line.purchasable]
        shipped = list(dict.fromkeys(line.item_id for line in sold if line.requires_shipping))
        digital = list(dict.fromkeys(line.item_id for line in sold if not line.requires_shipping))
        options: list[FulfillmentOption] = []
        messages: list[Message] = []
        needs_details = False
        if shipped and country is None:
            needs_details = True
            messages.append(Message(
                type="error", code="missing", param="$.fulfillment_details.address",
                resolution="requires_buyer_input", text_key="address_required",
            ))
        elif shipped and country is not None:
            methods = store.methods_for(country)
            if not methods:
                needs_details = True
                messages.append(Message(
                    type="error", code="region_restricted",
                    param="$.fulfillment_details.address.country",
                    resolution="requires_buyer_input", text_key="no_shipping_to_address",
                    text_args={"country": country},
                ))
            subtotal = sum(line.subtotal for line in sold)
            free = store.free_shipping_over is not None and subtotal >= store.free_shipping_over
            for method in methods:
                amount = 0 if free else method.amount
                options.append(FulfillmentOption(
                    type="shipping",
                    id=method.id,
                    title=method.title,
                    description=method.description,
                    carrier=method.carrier,
                    item_ids=tuple(shipped),
                    amount=amount,
                    tax=tax_amount(amount, rate) if store.tax_shipping else 0,
                    earliest_delivery_time=now + dt.timedelta(days=method.min_days),
                    latest_delivery_time=now + dt.timedelta(days=method.max_days),
                ))
        if digital:
            options.append(FulfillmentOption(
                type="digital", id=DIGITAL_OPTION_ID, title=store.digital_title,
                item_ids=tuple(digital),
            ))
        return options, needs_details, messages

    # -- orders --------------------------------------------------------------------

    def prepare_order(self, session: CheckoutSession, *, hold_until: dt.datetime) -> Quote:
        """Re-quote the session's stored inputs, holding its stock until
        ``hold_until`` (at least the end of the charge's time budget, as the
        core decides): no other session can take the units while the charge
        runs, even when the session expires meanwhile.

        :raises StorageUnavailableError: the stock database failed.
        """
        return self.quote(QuoteRequest(
            session_id=session.id,
            currency=session.currency,
            line_items=session.line_items,
            fulfillment_details=session.fulfillment_details,
            selected_fulfillment_options=session.requested_fulfillment_options,
            expires_at=session.expires_at,
            hold_until=hold_until,
            buyer=session.buyer,
            adapter_state=session.quote.adapter_state,
            discount_codes=applied_codes(session.quote),
        ))

    def place_order(self, session: CheckoutSession, payment: PaymentRecord) -> Order:
        """Sell the purchasable lines of ``session.quote`` and record the order.

        Idempotent per ``session.id``: a second call returns the first order and
        sells nothing. The order is ``ord_`` + 24 hex of SHA-256(session id),
        numbered ``#<order_number_start + n - 1>``, linked per ``order_url_template``.

        :raises AdapterRejectedError: the hold expired and the stock is gone,
            or the session has nothing purchasable.
        :raises StorageUnavailableError: the stock database failed.
        """
        wanted: dict[str, int] = {}
        for line in session.quote.lines:
            if line.purchasable:
                wanted[line.item_id] = wanted.get(line.item_id, 0) + line.quantity

        def make_order(number: int) -> Order:
            order_id = "ord_" + hashlib.sha256(session.id.encode()).hexdigest()[:24]
            order_number = str(self.store.order_number_start + number - 1)
            url = self.store.order_url_template.format(
                order_id=order_id, order_number=order_number, session_id=session.id)
            return Order(id=order_id, checkout_session_id=session.id, permalink_url=url,
                         order_number="#" + order_number)

        existing = self.ledger.order_for(session.id)
        if existing is not None:
            return existing
        if not wanted:
            raise AdapterRejectedError(f"session {session.id} has no purchasable line")
        return self.ledger.place(
            session.id, wanted, {i: self.store.on_hand(i) for i in wanted}, make_order,
            now=self._clock().timestamp(), amount=payment.amount, currency=payment.currency,
            payment_id=payment.payment_id,
        )

    def release(self, session: CheckoutSession) -> None:
        """Delete the session's hold; idempotent. :raises StorageUnavailableError: database failure."""
        self.ledger.release(session.id)

    # -- product feed -----------------------------------------------------------------

    def iter_products(self) -> cabc.Iterator[ProductRecord]:
        """The feed file's products in file order, each variant's availability
        from the stock now: units left = on hand - sold - held by open sessions
        (``out_of_stock`` at 0, ``limited_stock`` at or below the store's
        ``low_stock_threshold``); a variant the feed marks unavailable stays so.

        :raises StorageUnavailableError: the stock database failed.
        """
        held = self.ledger.held_counts()
        for product in self.products:
            yield dataclasses.replace(product, variants=tuple(
                self._with_stock(v, held.get(v.id, 0)) for v in product.variants))

    def _with_stock(self, variant: VariantRecord, held: int) -> VariantRecord:
        on_hand = self.store.on_hand(variant.id)
        if not variant.available or on_hand is None:
            return variant
        units = max(on_hand - self.ledger.sold(variant.id) - held, 0)
        if units == 0:
            return dataclasses.replace(variant, available=False, status="out_of_stock")
        threshold = self.store.low_stock_threshold
        if threshold is not None and units <= threshold and variant.status == "in_stock":
            return dataclasses.replace(variant, status="limited_stock")
        return variant

    def supported_currencies(self) -> list[str]:
        """``[store currency]``, lowercase."""
        return [self.store.currency]

    def check_connection(self) -> str:
        """The feed and the stock ledger (a read of the sold counters).

        :raises StorageUnavailableError: the stock database failed.
        """
        self.ledger.held_counts()
        return f"{len(self.items)} variants, stock in {type(self.ledger).__name__}"

    def close(self) -> None:
        """Close this thread's SQLite connection (nothing for Redis: shared)."""
        self.ledger.close()


def _fits(quantity: int, cap: int | None) -> bool:
    return cap is None or quantity <= cap


def _address(details: dict[str, JSON] | None) -> dict[str, t.Any]:
    address = (details or {}).get("address")
    return address if isinstance(address, dict) else {}
