"""The platform adapter port: prices, stock, fulfillment, tax and orders.

An adapter maps a checkout session onto a storefront (the embedded catalog,
Shopify, WooCommerce). It receives and returns the dataclasses of
:mod:`flask_acp.models`; it never sees Flask, marshmallow or floats. Business
conditions (unknown item, out of stock, no shipping to the address) are
returned as :class:`~flask_acp.models.Message` entries in the quote, never
raised. Infrastructure failures raise :class:`~flask_acp.errors.AdapterError`.
"""

from __future__ import annotations

import abc
import collections.abc as cabc
import dataclasses
import datetime as dt
import json
import typing as t

from .errors import AdapterError
from .errors import AdapterRejectedError
from .errors import UnavailableError
from .models import JSON
from .models import Adjustment
from .models import CheckoutSession
from .models import FulfillmentOption
from .models import LineItemRequest
from .models import Message
from .models import Order
from .models import PaymentRecord
from .models import Quote
from .models import SelectedFulfillmentOption
from .models import line_item_id
from .products import ProductRecord


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class QuoteRequest:
    """Everything an adapter needs to price a session.

    :ivar session_id: the ACP checkout session id (hold stock under it).
    :ivar currency: lowercase ISO 4217 code the agent asked for.
    :ivar fulfillment_details: the spec's ``FulfillmentDetails`` dict, or None.
    :ivar selected_fulfillment_options: what the agent asked for (may be empty
        or invalid; see :func:`choose_fulfillment`).
    :ivar expires_at: when the session expires (after each update: the session's
        life, not its stock hold's).
    :ivar hold_until: hold the quoted stock for the session until then (aware
        UTC) *if the quote returned is payable* (:func:`quote_payable`; else
        hold nothing), or, ``None``, hold nothing: check availability only (an
        item another session holds is still out of stock) and give back what
        the session held. The core decides (README "Stock holds"): nothing is
        held before a session is payable, and a hold lasts at most
        ``ACP_STOCK_HOLD_TTL`` from the moment it first became payable, however
        often it is updated. An adapter never holds past it (a platform with a
        fixed reservation length takes or renews it only when asked).
    :ivar adapter_state: what the adapter returned in the previous quote.
    :ivar discount_codes: the discount codes to apply (discount extension), in
        the agent's order, without duplicates (compared case-insensitively, as
        the platform must compare them). The platform applies them: each comes
        back in ``Quote.applied_discounts`` (``code`` as given here) or in
        ``Quote.rejected_discounts`` with a ``discount_code_*`` reason; a code
        in neither is reported as ``discount_code_invalid`` by the core.
    """

    session_id: str
    currency: str
    line_items: tuple[LineItemRequest, ...]
    fulfillment_details: dict[str, JSON] | None
    selected_fulfillment_options: tuple[SelectedFulfillmentOption, ...]
    expires_at: dt.datetime
    hold_until: dt.datetime | None
    buyer: dict[str, JSON] | None = None
    adapter_state: dict[str, JSON] = dataclasses.field(default_factory=dict)
    discount_codes: tuple[str, ...] = ()


class WebhookSignatureError(ValueError):
    """An inbound platform webhook whose signature is missing or wrong."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FulfillmentUpdate:
    """A shipment as the platform reports it.

    :ivar id: the platform's fulfillment id (stable: later reports update it).
    :ivar status: ACP fulfillment status (``shipped``, ``in_transit``, ``delivered``, ``canceled``...).
    :ivar line_items: order line id (``models.line_item_id(item_id)``) -> units.
    :ivar updated_at: when the platform last changed it (aware); a report older
        than the state already applied is ignored. None: always applied.
    """

    id: str
    status: str
    line_items: dict[str, int] = dataclasses.field(default_factory=dict)
    carrier: str | None = None
    tracking_number: str | None = None
    tracking_url: str | None = None
    updated_at: dt.datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PlatformRefund:
    """A refund the merchant made on the platform.

    :ivar id: the platform's refund id (stable across reports).
    :ivar amount: minor units of the order's currency.
    """

    id: str
    amount: int
    reason: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PlatformOrderUpdate:
    """What a platform says about one of our orders (from a webhook or a
    reconcile poll). Fields left ``None``/empty say nothing; applying the same
    update twice changes nothing.

    :ivar checkout_session_id: our session id, when the platform stored it.
    :ivar platform_order_id: the platform's order id (``Order.platform_order_id``).
    :ivar status: ACP order status to set (``processing``, ``shipped``, ``completed``, ``canceled``...).
    :ivar refunds: refunds made on the platform; flask-acp gives the money back
        through the payment processor (the platform never held it), once per refund id.
    :ivar adjustments: other adjustments (disputes, credits...), recorded as they are.
    """

    checkout_session_id: str | None = None
    platform_order_id: str | None = None
    status: str | None = None
    canceled: bool = False
    fulfillments: tuple[FulfillmentUpdate, ...] = ()
    refunds: tuple[PlatformRefund, ...] = ()
    adjustments: tuple[Adjustment, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PlatformWebhook:
    """A verified inbound platform webhook.

    :ivar event_id: the platform's delivery/event id, for de-duplication
        (``None``: not de-duplicated, e.g. a ping).
    """

    event_id: str | None
    updates: tuple[PlatformOrderUpdate, ...] = ()
    #: ids of catalog products the webhook says changed (``products/update``,
    #: ``inventory_levels/update``, ``product.updated``...): the agents' feeds get a
    #: ``PATCH`` of their current state (:mod:`flask_acp.feed.sync`).
    products: tuple[str, ...] = ()


class PlatformAdapter(abc.ABC):
    """Base class of platform adapters, resolved by name through the
    ``flask_acp.adapters`` entry-point group or by ``module:Class`` path."""

    #: the registry name, e.g. ``"catalog"``, ``"shopify"``.
    name: t.ClassVar[str]
    #: True when orders live on the platform: shipments, cancellations and refunds
    #: are made there and reach flask-acp through its webhooks, so the
    #: ``flask acp orders ship|deliver|cancel|refund`` commands refuse them.
    platform_manages_orders: t.ClassVar[bool] = False
    #: the config keys the adapter reads, declared once: a :class:`flask_acp.config.Section`
    #: (``init_app`` validates them with the core's keys and reports every problem at
    #: once; the README's table comes from them). ``None``: no keys of its own. Typed
    #: ``object`` here because the port imports no configuration machinery.
    settings_section: t.ClassVar[object] = None

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: cabc.Mapping[str, t.Any]) -> PlatformAdapter:
        """Build the adapter from the Flask app config (``ACP_*`` and its own keys),
        reading its own keys through :attr:`settings_section` (``section.load(config)``).

        :raises ValueError: naming the missing or bad key.
        """

    @abc.abstractmethod
    def quote(self, request: QuoteRequest) -> Quote:
        """Price the session and hold stock for it until ``request.hold_until``
        (``None``: hold nothing, release what the session holds, but still say
        out of stock what other sessions hold).

        Called on create and on every update (sometimes twice: first without a
        hold, then, once the quote is payable, with one); must be idempotent
        (the hold is *set* to the requested quantities, not added to).

        :raises AdapterUnavailableError: the platform cannot answer now.
        """

    @abc.abstractmethod
    def prepare_order(self, session: CheckoutSession, *, hold_until: dt.datetime) -> Quote:
        """Re-price the session right before charging; the core refuses to charge
        when the total differs from the one the agent last saw. The prices of
        the quote returned are the ones :meth:`place_order` must order at: a
        platform whose pending order follows its catalog fixes them here
        (Shopify: ``priceOverride`` on the draft's lines).

        :param hold_until: when the hold must end (aware UTC): the later of the
            end of the payment's time budget and the end of the session's hold
            window, if still open (the core decides; the adapter holds until
            exactly then, never the session's expiry). An adapter whose stock
            reservation lapses on its own extends it to at least this time
            and reports the result in ``Quote.stock_held_until`` (the core
            does not charge when it falls short).
        :raises AdapterUnavailableError: the platform cannot answer now.
        """

    @abc.abstractmethod
    def place_order(self, session: CheckoutSession, payment: PaymentRecord) -> Order:
        """Turn the held stock into a paid order. Idempotent per ``session.id``:
        a second call returns the same order.

        :raises AdapterUnavailableError: retry later; the payment stays recorded.
            With ``outcome_unknown`` when the order may have been placed (a call
            that places it got no answer, or could not be checked): the core then
            never refunds on its own past ``ACP_ORDER_PLACEMENT_DEADLINE``.
        :raises AdapterRejectedError: the order cannot be placed.
        """

    @abc.abstractmethod
    def release(self, session: CheckoutSession) -> None:
        """Release whatever is held for the session (cancel, expiry). Idempotent."""

    def supported_currencies(self) -> list[str]:
        """Lowercase ISO 4217 codes the store sells in (for discovery), the
        store's own currency first: sessions of versions whose create request
        has no ``currency`` (before 2026-01-30) are priced in it. ``[]`` while
        the store cannot say."""
        return []

    def parse_webhook(self, headers: cabc.Mapping[str, str], body: bytes) -> PlatformWebhook:
        """Verify an inbound platform webhook (raw body, before any parsing) and
        turn it into order updates. Served at ``POST {prefix}/webhooks/<name>``.

        :raises WebhookSignatureError: missing or wrong signature (answered 401).
        :raises NotImplementedError: the adapter takes no webhooks (answered 404).
        """
        raise NotImplementedError

    def reconcile_orders(self, since: dt.datetime | None) -> list[PlatformOrderUpdate]:
        """Re-read orders changed since ``since`` (None: every open order we made),
        for ``flask acp reconcile``: catches webhooks the platform never sent.

        :raises AdapterUnavailableError: the platform cannot answer now.
        """
        return []

    def iter_products(self) -> cabc.Iterator[ProductRecord]:
        """The catalog for the product feed (``flask acp feed export|push``), one
        product at a time in a stable order, variants priced in minor units
        (:mod:`flask_acp.products`); variant ids are the item ids :meth:`quote`
        accepts. Pages through the platform lazily.

        :raises NotImplementedError: the adapter cannot list its catalog.
        :raises AdapterUnavailableError: the platform cannot answer now.
        """
        raise NotImplementedError

    def read_products(self, product_ids: cabc.Sequence[str]) -> list[ProductRecord]:
        """The current state of some products (an incremental feed update), in
        the order asked; ids the platform no longer lists are left out. Default:
        filters :meth:`iter_products` (adapters override it with a lookup).

        :raises NotImplementedError: the adapter cannot list its catalog.
        :raises AdapterUnavailableError: the platform cannot answer now.
        """
        wanted = set(product_ids)
        found = {p.id: p for p in self.iter_products() if p.id in wanted}
        return [found[i] for i in product_ids if i in found]

    def feed_product_id(self, subject: str) -> str | None:
        """The feed ``Product.id`` a webhook's subject (what
        :attr:`PlatformWebhook.products` names) stands for, or None when the
        subject is not a product (so a product the platform no longer lists
        can be withdrawn from the feeds). Default: the subject itself."""
        return subject

    def cleanup(self, older_than: float) -> list[str]:
        """Delete what abandoned sessions left on the platform (drafts, carts)
        older than ``older_than`` seconds; returns their ids. Default: nothing."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (HTTP sessions, connections)."""

    def check_connection(self) -> str:
        """One cheap authenticated call to the platform, for ``flask acp
        doctor``: a short description of what answered (``shop "X", currency
        USD``). Default: nothing to call.

        :raises AdapterError: the platform refused the credentials or did not answer.
        """
        return "no platform to call"


def quote_payable(quote: Quote) -> bool:
    """Whether a session with this quote may be paid (``ready_for_payment``):
    every line purchasable, no error message, no address missing, and every
    line that needs fulfillment has a selected option. An adapter asked to hold
    stock (``QuoteRequest.hold_until``) holds it only when its quote is payable
    by this rule; the core adds its own checks (a contact e-mail, the
    processor's amount limits) and gives a hold back when they fail."""
    if not quote.lines or quote.needs_fulfillment_details:
        return False
    if any(m.blocks_payment for m in quote.messages) or not all(line.purchasable for line in quote.lines):
        return False
    selected = {i for s in quote.selected_fulfillment_options for i in s.item_ids}
    needing = {i for o in quote.fulfillment_options for i in o.item_ids}
    needing |= {line.item_id for line in quote.lines if line.requires_shipping}
    return not needing - selected


def split_amount(amount: int, weights: cabc.Sequence[int]) -> list[int]:
    """Split ``amount`` (minor units, >= 0) in proportion to ``weights`` (>= 0)
    by the largest-remainder method: whole minor units that sum to ``amount``
    exactly, the leftover units going to the largest fractional shares (the
    earlier entry on a tie). No share exceeds its weight when ``amount <=
    sum(weights)``. All weights zero: everything on the first entry.

    >>> split_amount(1000, [5000, 6000, 1])
    [455, 545, 0]
    """
    if not weights:
        return []
    total = sum(weights)
    if total <= 0:
        return [amount] + [0] * (len(weights) - 1)
    shares = [amount * w // total for w in weights]
    remainders = [amount * w % total for w in weights]
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[: amount - sum(shares)]:
        shares[i] += 1
    return shares


def applied_codes(quote: Quote) -> tuple[str, ...]:
    """The codes of ``quote``'s applied discounts (automatic ones have none), in
    order: what :meth:`PlatformAdapter.prepare_order` re-applies (a code the
    platform rejected is not tried again right before the charge)."""
    return tuple(d.code for d in quote.applied_discounts if d.code is not None)


#: prefix of the order notes flask-acp writes for write-only inputs (a leading
#: ``_`` keeps them off buyer-facing pages: Shopify themes hide such note
#: attributes, WooCommerce treats such meta keys as protected)
NOTE_PREFIX = "_acp_"


def write_only_notes(session: CheckoutSession) -> list[tuple[str, str]]:
    """What a platform order should carry of the session's write-only inputs,
    as ``(key, value)`` strings for its notes / metadata (Shopify note
    attributes, WooCommerce ``meta_data``):

    - ``_acp_affiliate_attribution_<touchpoint>`` (``first``, ``last``): the
      ``AffiliateAttribution`` claim as compact JSON (its ``token`` included:
      the merchant verifies it with the provider; never logged);
    - ``_acp_marketing_consent_<channel>``: ``{"opted_in": bool, "contact":
      str|null}`` as compact JSON, for each decision on an offered channel.

    Empty when the session has none (nothing to write)."""
    notes = [(f"{NOTE_PREFIX}affiliate_attribution_{claim.get('touchpoint') or 'first'}",
              json.dumps(claim, sort_keys=True, separators=(",", ":")))
             for claim in session.affiliate_attributions]
    notes += [(f"{NOTE_PREFIX}marketing_consent_{consent.channel}",
               json.dumps({"opted_in": consent.opted_in, "contact": consent.contact}, separators=(",", ":")))
              for consent in session.marketing_consents]
    return notes


def choose_fulfillment(
    options: cabc.Sequence[FulfillmentOption],
    requested: cabc.Sequence[SelectedFulfillmentOption],
    item_ids: cabc.Iterable[str],
) -> tuple[tuple[SelectedFulfillmentOption, ...], tuple[Message, ...]]:
    """Resolve the agent's fulfillment choice against the offered options.

    Each requested ``option_id`` must be offered; its ``item_ids`` may name item
    ids or line item ids (spec defect #7; both accepted) and default to every
    item the option can fulfil. Items without a valid choice get the cheapest
    option that covers them, so a session with an address is payable at once
    (as in the spec's create example).

    :param item_ids: the ids of the session's items.
    :returns: the applied selection (item ids are item ids) and messages for
        invalid choices (code ``invalid``, param ``$.selected_fulfillment_options[i]``).
    """
    by_id = {o.id: o for o in options}
    line_item_ids = {line_item_id(i): i for i in item_ids}
    chosen: list[SelectedFulfillmentOption] = []
    covered: set[str] = set()
    messages: list[Message] = []
    for index, sel in enumerate(requested):
        option = by_id.get(sel.option_id)
        if option is None or (sel.type is not None and option.type != sel.type):
            messages.append(
                Message(
                    type="error",
                    code="invalid",
                    param=f"$.selected_fulfillment_options[{index}].option_id",
                    resolution="recoverable",
                    text_key="fulfillment_option_invalid",
                    text_args={"option_id": sel.option_id},
                )
            )
            continue
        wanted = [line_item_ids.get(i, i) for i in sel.item_ids] or list(option.item_ids)
        items = tuple(i for i in wanted if i in option.item_ids and i not in covered)
        if items:
            chosen.append(SelectedFulfillmentOption(type=option.type, option_id=option.id, item_ids=items))
            covered.update(items)
    uncovered = {i for o in options for i in o.item_ids} - covered
    for option in sorted(options, key=lambda o: (o.amount + o.tax, o.id)):
        items = tuple(i for i in option.item_ids if i in uncovered)
        if items:
            chosen.append(SelectedFulfillmentOption(type=option.type, option_id=option.id, item_ids=items))
            uncovered.difference_update(items)
    return tuple(chosen), tuple(messages)


def as_unavailable(exc: AdapterError) -> UnavailableError:
    """The one translation of a platform failure for the agent: a platform that
    refused the request -> 503 ``platform_rejected`` (retry after 5 s); any
    other -> 503 with the adapter's ``retry_after`` (seconds, default 1)."""
    if isinstance(exc, AdapterRejectedError):
        return UnavailableError(f"The store refused the request: {exc}", code="platform_rejected",
                                retry_after=5)
    return UnavailableError("The store is temporarily unavailable; retry the request.",
                            retry_after=getattr(exc, "retry_after", None) or 1)


def store_currency(adapter: PlatformAdapter) -> str:
    """The store's own currency (the adapter's first supported one), lower case.

    :raises UnavailableError: the platform cannot say now (503, retry after 1-5 s).
    """
    try:
        currencies = adapter.supported_currencies()
    except AdapterError as exc:
        raise as_unavailable(exc) from exc
    if not currencies:
        raise UnavailableError("The store's currency cannot be read right now; retry shortly.",
                               code="store_currency_unknown", retry_after=5)
    return currencies[0].lower()
