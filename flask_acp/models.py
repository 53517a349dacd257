"""Domain objects of the checkout, version-independent.

Field names are the spec's snake_case names (ACP 2026-04-17,
``schema.agentic_checkout.json``). Every money amount is an ``int`` in ISO 4217
minor units of the session's ``currency`` (``100`` = $1.00, ``100`` = ¥100,
``1000`` = 1.000 KWD); no floats anywhere. Timestamps are timezone-aware UTC
``datetime`` objects.

The objects are frozen dataclasses; :func:`to_record` and :func:`from_record`
turn them into JSON-able dicts and back for the session store.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import hashlib
import secrets
import types
import typing as t

JSON = t.Any  # a JSON-able value (dict/list/str/int/bool/None)


class Status(str, enum.Enum):
    """``CheckoutSession.status`` values this implementation produces (spec §13)."""

    NOT_READY_FOR_PAYMENT = "not_ready_for_payment"
    READY_FOR_PAYMENT = "ready_for_payment"
    COMPLETE_IN_PROGRESS = "complete_in_progress"
    COMPLETED = "completed"
    CANCELED = "canceled"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in (Status.COMPLETED, Status.CANCELED, Status.EXPIRED)




@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LineItemRequest:
    """One requested line: an item id (a catalog variant id) and a quantity (>= 1)."""

    id: str
    quantity: int = 1


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SelectedFulfillmentOption:
    """``SelectedFulfillmentOption``: ``{type, option_id, item_ids}``.

    ``type`` is None when the agent named the option by id alone
    (``fulfillment_option_id``, 2025-09-29): any offered option of that id fits.
    """

    type: str | None
    option_id: str
    item_ids: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A ``messages[]`` entry (``MessageInfo|MessageWarning|MessageError``).

    The text is either ``content`` verbatim (platform-provided) or produced at
    render time from ``text_key`` and ``text_args`` in the buyer's language.
    """

    type: str  # "error" | "warning" | "info"
    code: str | None = None
    param: str | None = None
    severity: str | None = None
    resolution: str | None = None
    content: str | None = None
    text_key: str | None = None
    text_args: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def blocks_payment(self) -> bool:
        return self.type == "error"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PricedLine:
    """A priced line item as the platform sees it.

    :ivar unit_amount: price of one unit, minor units.
    :ivar discount: discount on the whole line, minor units (>= 0).
    :ivar tax: tax on the line after discount, minor units (>= 0).
    :ivar purchasable: ``False`` when the line cannot be bought as requested
        (unknown, out of stock...); a message then says why.
    """

    item_id: str
    quantity: int
    unit_amount: int = 0
    discount: int = 0
    tax: int = 0
    purchasable: bool = True
    requires_shipping: bool = True
    name: str | None = None
    description: str | None = None
    images: tuple[str, ...] = ()
    product_id: str | None = None
    variant_id: str | None = None
    sku: str | None = None
    availability_status: str | None = None
    available_quantity: int | None = None
    max_quantity_per_order: int | None = None

    @property
    def base_amount(self) -> int:
        return self.unit_amount * self.quantity

    @property
    def subtotal(self) -> int:
        return self.base_amount - self.discount

    @property
    def total(self) -> int:
        return self.subtotal + self.tax


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FulfillmentOption:
    """A fulfillment option offered for some items.

    :ivar amount: price of the option, minor units, tax excluded.
    :ivar tax: tax on the option if chosen, minor units.
    :ivar earliest_delivery_time, latest_delivery_time: delivery window (shipping).
    """

    type: str  # "shipping" | "digital"
    id: str
    title: str
    item_ids: tuple[str, ...]
    amount: int = 0
    tax: int = 0
    description: str | None = None
    carrier: str | None = None
    earliest_delivery_time: dt.datetime | None = None
    latest_delivery_time: dt.datetime | None = None


#: ``DiscountErrorCode``: why a discount code was not applied (discount extension,
#: ``schema.discount.json``); each is also a ``MessageWarning.code`` (2026-01-30+)
DISCOUNT_REJECTION_REASONS = (
    "discount_code_expired", "discount_code_invalid", "discount_code_already_applied",
    "discount_code_combination_disallowed", "discount_code_minimum_not_met",
    "discount_code_user_not_logged_in", "discount_code_user_ineligible",
    "discount_code_usage_limit_reached",
)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DiscountAllocation:
    """Where (part of) an applied discount went, minor units (>= 0).

    :ivar item_id: the line (its item id) whose ``discount`` holds this part;
        ``None``: the order-level ``Quote.discount`` holds it.
    :ivar fulfillment: an order-level part taken off the shipping (in
        ``Quote.discount`` too; the fulfillment total stays the option's price).
    """

    amount: int
    item_id: str | None = None
    fulfillment: bool = False


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AppliedDiscount:
    """A discount the platform applied (``AppliedDiscount`` of the discount extension).

    :ivar id: the platform's id of this application (stable across quotes).
    :ivar code: the code as the agent sent it; ``None`` for an automatic discount.
    :ivar coupon_id, name: the platform's discount (``Coupon.id``, ``Coupon.name``).
    :ivar amount: minor units taken off; equals the sum of ``allocations``.
    :ivar percent_off: decimal string (``"20"``, ``"12.5"``), or ``None``.
    :ivar amount_off: minor units of the session currency, or ``None``.
    :ivar method: ``each`` (per line) or ``across`` (split over the order).
    :ivar priority: stacking order, 1 first.
    """

    id: str
    coupon_id: str
    name: str
    amount: int
    code: str | None = None
    automatic: bool = False
    percent_off: str | None = None
    amount_off: int | None = None
    method: str | None = None
    priority: int | None = None
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    allocations: tuple[DiscountAllocation, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RejectedDiscount:
    """A code that was not applied: ``reason`` is one of
    :data:`DISCOUNT_REJECTION_REASONS`; ``content`` the platform's own words
    (else a text in the buyer's language is rendered from ``text_key``/``text_args``)."""

    code: str
    reason: str
    content: str | None = None
    text_key: str | None = None
    text_args: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Quote:
    """What the platform adapter computed for a session (see ``CatalogAdapter.quote``).

    :ivar lines: one per requested line, in request order.
    :ivar fulfillment_options: options available for the current address.
    :ivar selected_fulfillment_options: the options applied to the quote.
    :ivar needs_fulfillment_details: an address is needed before payment.
    :ivar discount: order-level discount, minor units (>= 0).
    :ivar fee: fees, minor units (>= 0).
    :ivar applied_discounts: discounts the platform applied (codes and
        automatic ones); their line allocations are inside the lines'
        ``discount``, the others inside ``discount``.
    :ivar rejected_discounts: requested codes that were not applied, in request order.
    :ivar adapter_state: JSON-able state the adapter wants back next call
        (a Shopify draft id, a WooCommerce cart token...).
    :ivar stock_held_until: when the platform's stock reservation for the
        session lapses (aware UTC), for adapters whose reservation expires on
        its own and is not re-checked when the order is placed (Shopify);
        ``None``: no such deadline. The core refuses to charge when it falls
        before the end of the payment's time budget.
    """

    lines: tuple[PricedLine, ...]
    fulfillment_options: tuple[FulfillmentOption, ...] = ()
    selected_fulfillment_options: tuple[SelectedFulfillmentOption, ...] = ()
    needs_fulfillment_details: bool = False
    messages: tuple[Message, ...] = ()
    discount: int = 0
    fee: int = 0
    adapter_state: dict[str, JSON] = dataclasses.field(default_factory=dict)
    stock_held_until: dt.datetime | None = None
    applied_discounts: tuple[AppliedDiscount, ...] = ()
    rejected_discounts: tuple[RejectedDiscount, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Totals:
    """Session-level totals, all minor units. ``total`` obeys
    ``subtotal - discount + fulfillment + tax + fee`` and
    ``subtotal == items_base_amount - items_discount``."""

    items_base_amount: int
    items_discount: int
    subtotal: int
    discount: int
    fulfillment: int
    tax: int
    fee: int
    total: int

    @classmethod
    def of(cls, quote: Quote) -> Totals:
        base = sum(line.base_amount for line in quote.lines if line.purchasable)
        items_discount = sum(line.discount for line in quote.lines if line.purchasable)
        chosen = {s.option_id for s in quote.selected_fulfillment_options}
        options = [o for o in quote.fulfillment_options if o.id in chosen]
        fulfillment = sum(o.amount for o in options)
        tax = sum(line.tax for line in quote.lines if line.purchasable) + sum(o.tax for o in options)
        subtotal = base - items_discount
        total = subtotal - quote.discount + fulfillment + tax + quote.fee
        return cls(
            items_base_amount=base,
            items_discount=items_discount,
            subtotal=subtotal,
            discount=quote.discount,
            fulfillment=fulfillment,
            tax=tax,
            fee=quote.fee,
            total=total,
        )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OrderLine:
    """An ``OrderLineItem``: quantities ordered, still current (after
    cancellations) and fulfilled; ``unit_price`` in minor units."""

    id: str
    title: str
    ordered: int
    current: int
    fulfilled: int = 0
    unit_price: int | None = None
    product_id: str | None = None
    image_url: str | None = None

    @property
    def status(self) -> str:
        """``removed`` / ``fulfilled`` / ``partial`` / ``processing`` (orders RFC)."""
        if self.current == 0:
            return "removed"
        if self.fulfilled >= self.current:
            return "fulfilled"
        return "partial" if self.fulfilled > 0 else "processing"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LineItemReference:
    """``{id, quantity}``: some units of an order line."""

    id: str
    quantity: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FulfillmentEvent:
    """One entry of a fulfillment's append-only event log."""

    id: str
    type: str
    occurred_at: dt.datetime
    description: str | None = None
    location: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Fulfillment:
    """A shipment (or digital delivery) of some order lines."""

    id: str
    type: str  # shipping | digital | pickup
    status: str  # pending, shipped, in_transit, delivered, canceled, ...
    line_items: tuple[LineItemReference, ...] = ()
    carrier: str | None = None
    tracking_number: str | None = None
    tracking_url: str | None = None
    events: tuple[FulfillmentEvent, ...] = ()
    #: the platform's time of the state held here (stale reports are ignored)
    platform_updated_at: dt.datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Adjustment:
    """A refund, dispute, credit... on an order.

    :ivar amount: minor units credited to (or disputed by) the buyer, tax included.
    :ivar status: ``pending``, ``completed`` or ``failed``.
    """

    id: str
    type: str
    occurred_at: dt.datetime
    status: str
    amount: int | None = None
    currency: str | None = None
    description: str | None = None
    reason: str | None = None
    line_items: tuple[LineItemReference, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Order:
    """The order a completed session produced (``Order`` in the spec).

    Adapters return ``id``, ``checkout_session_id``, ``permalink_url`` and
    ``order_number``; the checkout service adds the lines, the charged
    ``total`` (minor units of ``currency``) and ``payment_id``.
    """

    id: str
    checkout_session_id: str
    permalink_url: str
    order_number: str | None = None
    status: str = "created"
    line_items: tuple[OrderLine, ...] = ()
    fulfillments: tuple[Fulfillment, ...] = ()
    adjustments: tuple[Adjustment, ...] = ()
    total: int | None = None
    currency: str | None = None
    payment_id: str | None = None
    platform_order_id: str | None = None

    @property
    def amount_refunded(self) -> int:
        """Minor units refunded: the sum of completed refund adjustments."""
        return sum(a.amount or 0 for a in self.adjustments
                   if a.type == "refund" and a.status == "completed")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OrderEvent:
    """An outbox entry: "tell the agent about this order". The payload is the
    order's state at send time, so retries never carry an older state."""

    id: str
    order_id: str
    checkout_session_id: str
    agent: str
    type: str  # order_create | order_update
    created_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PaymentRecord:
    """The charge attempt of a session, kept so retries never charge twice.

    :ivar idempotency_key: the key sent to the processor; derived from the
        session id and a hash of the token, so one token charges at most once.
    :ivar token_sha256: hex SHA-256 of the credential token (never the token).
    :ivar amount: minor units charged / to charge.
    :ivar status: ``pending`` (outcome unknown), ``succeeded``, ``failed``.
    """

    idempotency_key: str
    token_sha256: str
    handler_id: str
    amount: int
    currency: str
    status: str = "pending"
    payment_id: str | None = None
    #: ``captured``, ``authorized`` (manual capture), ``voided``, ``refunded``
    capture_status: str | None = None
    charged_at: dt.datetime | None = None
    attempted_at: dt.datetime | None = None
    #: set (in its own write) once the money must go back because no order
    #: can be placed: from then on nothing places an order for this payment
    give_back_reason: str | None = None
    #: ``Idempotency-Key`` of the latest complete request working on this attempt
    request_key: str | None = None
    #: an attempt to place the order had an unknown outcome (the order may
    #: exist): the placement deadline never gives this payment back on its own
    placement_outcome_unknown: bool = False


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MarketingConsent:
    """A buyer's marketing decision for one offered channel (``MarketingConsent``
    of the complete request, 2026-04-17), as the merchant keeps it.

    :ivar channel: an offered ``MarketingConsentOption.channel`` (``email``, ``sms``...).
    :ivar opted_in: the buyer's decision.
    :ivar contact: the address it applies to (marketing consent RFC): for
        ``email`` ``buyer.email`` else ``fulfillment_details.email``; for other
        channels ``buyer.phone_number`` else ``fulfillment_details.phone_number``;
        None when the session has none.
    """

    channel: str
    opted_in: bool
    contact: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CheckoutSession:
    """A checkout session as stored. Inputs are kept as sent (validated), the
    computed state as the last :class:`Quote`."""

    id: str
    agent: str
    api_version: str
    status: Status
    currency: str
    line_items: tuple[LineItemRequest, ...]
    quote: Quote
    created_at: dt.datetime
    updated_at: dt.datetime
    expires_at: dt.datetime
    buyer: dict[str, JSON] | None = None
    fulfillment_details: dict[str, JSON] | None = None
    requested_fulfillment_options: tuple[SelectedFulfillmentOption, ...] = ()
    capabilities: dict[str, JSON] = dataclasses.field(default_factory=dict)
    locale: str | None = None
    order_notes: str | None = None
    extra_messages: tuple[Message, ...] = ()
    payment: PaymentRecord | None = None
    order: Order | None = None
    revision: int = 0
    #: failed payment attempts (declined, unusable credential, 3-D Secure required)
    payment_failures: int = 0
    #: no payment attempt until then (``ACP_PAYMENT_COOLDOWN`` after a failure past
    #: ``ACP_PAYMENT_FAILURE_LIMIT``): the processor is not called (card testing)
    payments_paused_until: dt.datetime | None = None
    #: the end of the session's stock-hold window (``ACP_STOCK_HOLD_TTL`` after it
    #: first became ``ready_for_payment``; never moved by updates): after it, only
    #: ``complete`` holds stock for the session again. None: never payable yet.
    stock_hold_deadline: dt.datetime | None = None
    #: when its personal data was erased (``flask acp sweep``, ``ACP_PII_RETENTION``;
    #: :func:`without_personal_data`); None: not erased
    personal_data_erased_at: dt.datetime | None = None
    #: discount codes as the agent last sent them (discount extension), request order
    discount_codes: tuple[str, ...] = ()
    #: codes of this session the platform rejected (code guessing is counted)
    discount_code_rejections: int = 0
    #: no new code is tried until then (``ACP_DISCOUNT_CODE_COOLDOWN`` after
    #: ``ACP_DISCOUNT_CODE_REJECTION_LIMIT`` rejections)
    discount_codes_paused_until: dt.datetime | None = None
    #: write-only ``AffiliateAttribution`` claims, as validated (``touchpoint``
    #: ``first`` from create, ``last`` from complete); never rendered, handed to
    #: the adapter with the order (affiliate attribution RFC §4.3)
    affiliate_attributions: tuple[dict[str, JSON], ...] = ()
    #: the ``MarketingConsentOption`` objects offered on this session (the
    #: merchant's ``ACP_MARKETING_CONSENT_OPTIONS`` when it was created)
    marketing_consent_options: tuple[dict[str, JSON], ...] = ()
    #: the buyer's decisions sent with complete, for offered channels only
    marketing_consents: tuple[MarketingConsent, ...] = ()

    @property
    def totals(self) -> Totals:
        return Totals.of(self.quote)

    @property
    def messages(self) -> tuple[Message, ...]:
        return self.quote.messages + self.extra_messages

    def replace(self, **changes: t.Any) -> CheckoutSession:
        return dataclasses.replace(self, **changes)


#: the statuses whose sessions' personal data is erased after ``ACP_PII_RETENTION``
ERASABLE_STATUSES: tuple[Status, ...] = (Status.COMPLETED, Status.CANCELED, Status.EXPIRED)


def without_personal_data(session: CheckoutSession, now: dt.datetime) -> CheckoutSession:
    """``session`` with its personal data erased, marked erased at ``now``: the
    buyer (name, e-mail, phone...), ``fulfillment_details`` (name, phone,
    e-mail, address), ``order_notes``, the messages added to the session
    (they may quote what the buyer sent), the contact of each marketing
    consent decision (the decision is kept), and the quote's ``adapter_state``
    (the platform's handles on the cart or draft order that carries the buyer's
    details, e.g. WooCommerce's ``Cart-Token``, and hashes of them).

    Kept, for the money and the order: the lines, totals, quote, payment
    record (processor ids, the credential's SHA-256), order (its webhooks
    render the order alone, so an event still to be delivered is delivered
    unchanged), timestamps, status and revision. Pure; the stores call it
    (:meth:`flask_acp.store.base.Sessions.erase_personal_data`)."""
    return session.replace(
        buyer=None,
        fulfillment_details=None,
        order_notes=None,
        extra_messages=(),
        quote=dataclasses.replace(session.quote, adapter_state={}),
        marketing_consents=tuple(dataclasses.replace(c, contact=None) for c in session.marketing_consents),
        personal_data_erased_at=now,
    )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Cart:
    """A cart (ACP 2026-04-17 Cart API, optional service): items and estimated
    prices before a checkout, with no status and no stock held. It exists until
    it expires or is canceled (then it is deleted).

    :ivar quote: the adapter's last estimate (quoted without holding stock).
    :ivar expires_at: aware UTC; ``ACP_CART_TTL`` after the last change.
    """

    id: str
    agent: str
    currency: str
    line_items: tuple[LineItemRequest, ...]
    quote: Quote
    created_at: dt.datetime
    updated_at: dt.datetime
    expires_at: dt.datetime
    buyer: dict[str, JSON] | None = None
    locale: str | None = None

    @property
    def totals(self) -> Totals:
        return Totals.of(self.quote)

    def replace(self, **changes: t.Any) -> Cart:
        return dataclasses.replace(self, **changes)


# --- record conversion (for stores) ----------------------------------------------


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@functools.cache
def _hints(cls: type) -> dict[str, t.Any]:
    return t.get_type_hints(cls)


def to_record(obj: t.Any) -> JSON:
    """Convert a model (nested dataclasses, tuples, enums, datetimes) to JSON-able data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {name: to_record(getattr(obj, name)) for name in _field_names(type(obj))}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dt.datetime):
        return obj.isoformat()
    if isinstance(obj, (list, tuple)):
        return [to_record(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_record(v) for k, v in obj.items()}
    return obj


#: the discount extension's name in ``capabilities.extensions`` (ACP 2026-01-30+)
DISCOUNT_EXTENSION = "discount"


def extension_requested(capabilities: dict[str, JSON], name: str) -> bool:
    """Whether the agent listed extension ``name`` in ``capabilities.extensions``
    (an identifier, optionally ``@YYYY-MM-DD``-suffixed, or a declaration object
    with that ``name``)."""
    for entry in capabilities.get("extensions") or ():
        ident = entry.get("name") if isinstance(entry, dict) else entry
        if isinstance(ident, str) and ident.split("@", 1)[0] == name:
            return True
    return False


def line_item_id(item_id: str) -> str:
    """The line item id of an item in a session: ``li_`` + 12 hex chars of its
    SHA-256 (stable across updates, distinct from the item id)."""
    return "li_" + hashlib.sha256(item_id.encode()).hexdigest()[:12]


_T = t.TypeVar("_T")


def from_record(cls: type[_T], data: JSON) -> _T:
    """Inverse of :func:`to_record` for a model class."""
    return t.cast(_T, _convert(cls, data))


def _convert(tp: t.Any, value: JSON) -> t.Any:
    if value is None:
        return None
    origin = t.get_origin(tp)
    if origin in (t.Union, types.UnionType):
        args = [a for a in t.get_args(tp) if a is not type(None)]
        return _convert(args[0], value) if len(args) == 1 else value
    if origin is tuple:
        (inner, _ellipsis) = t.get_args(tp)
        return tuple(_convert(inner, v) for v in value)
    if origin is dict or tp is t.Any:
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        return tp(**{k: _convert(hints[k], v) for k, v in value.items() if k in hints})
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    if tp is dt.datetime:
        return dt.datetime.fromisoformat(value)
    return value


def new_event(order: Order, session: CheckoutSession, kind: str, now: dt.datetime) -> OrderEvent:
    """A fresh outbox entry for ``order`` (``kind``: order_create | order_update)."""
    return OrderEvent(id="evt_" + secrets.token_hex(12), order_id=order.id,
                      checkout_session_id=session.id, agent=session.agent, type=kind, created_at=now)
