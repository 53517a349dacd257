"""The Shopify platform adapter: ACP checkout sessions on Admin API draft orders.

Orchestration only: the GraphQL documents are in :mod:`.queries`, HTTP and
error translation in :mod:`.client`, every money conversion in :mod:`.mapping`.

A session is anchored on one draft order, created on the first quote and
kept in ``Quote.adapter_state`` (which the core persists per session)::

    {"draft_id": "gid://shopify/DraftOrder/1", "currency": "USD",
     "reserve_until": "2026-11-29T11:00:00Z", "requested": {"4449": 2},
     "held": {"4449": 2}, "variants": {"4449": {...name, sku, requires_shipping...}}}

Calls per ACP operation (Shopify Admin GraphQL, ``SHOPIFY_API_VERSION``):

=============  =================================================================
create         ``AcpVariants`` (``nodes(ids:)`` + shop currencies) -> [address:
               ``AcpDeliveryOptions``] -> ``draftOrderCreate`` (session id in
               ``customAttributes``, tag ``acp``, ``reserveInventoryUntil`` =
               the core's hold deadline, or none before the session is payable)
               -> [payable: ``draftOrder`` until ``ready``]
update         [items changed: ``AcpVariants``] -> [address: ``AcpDeliveryOptions``]
               -> ``draftOrderUpdate`` (full line list, address, chosen rate
               handle, the reservation until the core's unchanged deadline while
               the session is payable, none otherwise) -> [payable: ``draftOrder`` until ``ready``]
complete       ``prepare_order``: ``draftOrder`` (totals, readiness, stock, line prices) ->
               ``draftOrderUpdate`` (``lineItems`` with ``priceOverride`` = the unit prices
               read, so the prices charged are the order's; ``reserveInventoryUntil``
               when the reservation ends before the charge's time budget; and
               ``customAttributes`` with the session's affiliate attribution and marketing
               consents, ``_acp_*`` note attributes the order inherits) -> ``draftOrder``
               until ``ready``; stock re-checked (a draft fixed by an earlier attempt, with
               a long enough reservation: the first read only) -> *core charges* ->
               ``place_order``: ``draftOrder`` status (an earlier attempt may have
               completed it; an open draft's total must still be the amount charged) ->
               ``draftOrderComplete`` -> ``tagsAdd`` (``payment:<payment id>`` on the order)
cancel/expiry  ``draftOrderDelete`` (releases the reservation; "already gone" is fine)
=============  =================================================================

After the sale (:mod:`.webhooks` has the mapping): ``parse_webhook`` verifies
``X-Shopify-Hmac-Sha256`` over the raw body and maps the REST-shaped payload of
the order, fulfillment and refund topics (no call); ``reconcile_orders`` pages
through ``AcpOrdersChanged`` (``orders(query: "tag:acp updated_at:>=...")``,
:data:`.queries.ORDER_SYNC_LIMITS`); ``cleanup`` is
:meth:`ShopifyAdapter.cleanup_abandoned_drafts` (``AcpAbandonedDrafts`` +
``draftOrderDelete`` per draft).
"""

# ruff: noqa: TID251 - relative imports within the package (installed as flask_acp_adapters)
from __future__ import annotations

import collections.abc as cabc
import dataclasses
import datetime as dt
import json
import logging
import time
import typing as t
import urllib.parse

from flask_acp.adapter import PlatformAdapter
from flask_acp.adapter import PlatformOrderUpdate
from flask_acp.adapter import PlatformWebhook
from flask_acp.adapter import QuoteRequest
from flask_acp.adapter import WebhookSignatureError
from flask_acp.adapter import applied_codes
from flask_acp.adapter import choose_fulfillment
from flask_acp.adapter import quote_payable
from flask_acp.adapter import write_only_notes
from flask_acp.errors import AdapterError
from flask_acp.errors import AdapterRejectedError
from flask_acp.errors import AdapterUnavailableError
from flask_acp.models import JSON
from flask_acp.models import CheckoutSession
from flask_acp.models import FulfillmentOption
from flask_acp.models import LineItemRequest
from flask_acp.models import Message
from flask_acp.models import Order
from flask_acp.models import PaymentRecord
from flask_acp.models import PricedLine
from flask_acp.models import Quote
from flask_acp.models import SelectedFulfillmentOption
from flask_acp.models import Totals
from flask_acp.products import ProductRecord

from . import mapping
from . import queries
from .client import ShopifyClient
from .client import ShopifyNoAnswerError
from .settings import SHOPIFY_SETTINGS
from .webhooks import SESSION_ATTRIBUTE
from .webhooks import TAG
from .webhooks import event_key
from .webhooks import order_node_update
from .webhooks import signature_matches
from .webhooks import webhook_products
from .webhooks import webhook_updates

__all__ = ["MESSAGE_KEYS", "SESSION_ATTRIBUTE", "TAG", "ShopifyAdapter"]

log = logging.getLogger("flask_acp.shopify")

#: the id of the digital delivery option offered for items that need no shipping.
DIGITAL_OPTION_ID = "digital"

#: every ``Message.text_key`` this adapter emits, with the ``text_args`` it sets
#: (the same keys as the catalog adapter). Platform texts use ``content`` instead.
MESSAGE_KEYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("item_not_found", ("item_id",)),
    ("out_of_stock", ("name",)),
    ("quantity_exceeded", ("name", "available")),
    ("currency_unsupported", ("currency",)),
    ("address_required", ()),
    ("no_shipping_to_address", ("country",)),
    ("fulfillment_option_invalid", ("option_id",)),  # from choose_fulfillment
)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclasses.dataclass
class _Lookup:
    """Verdicts on the requested lines (from ``AcpVariants`` or the stored state)."""

    purchasable: dict[str, int]
    variants: dict[str, dict[str, JSON]]
    messages: list[Message]
    shop_currency: str


class ShopifyAdapter(PlatformAdapter):
    """Sell a Shopify store's variants through ACP, on Admin API draft orders.

    ACP item ids are numeric variant ids (``"4449"``) or variant GIDs. Prices,
    taxes, shipping rates and stock are Shopify's; the amount charged is the
    draft's ``totalPriceSet`` (see :func:`.mapping.draft_amounts`).

    :param client: the Admin GraphQL client.
    :param ready_timeout: seconds to wait for a draft's asynchronous
        calculation (``ready``) before answering 503.
    :param ready_poll_interval: seconds before the first re-read of an
        unready draft (doubles, at most 2 s).
    :param accept_automatic_discounts: ``DraftOrderInput.acceptAutomaticDiscounts``.
    :param webhook_secrets: keys of ``X-Shopify-Hmac-Sha256`` (any of them
        verifies; several while rotating). Empty: the webhook route answers 404.
    :param clock: the current aware UTC time (tests; also :attr:`clock`).
    :param sleep: ``time.sleep`` (tests).
    """

    name = "shopify"
    platform_manages_orders = True
    settings_section = SHOPIFY_SETTINGS

    def __init__(self, client: ShopifyClient, *, ready_timeout: float = 5.0,
                 ready_poll_interval: float = 0.1, accept_automatic_discounts: bool = False,
                 webhook_secrets: cabc.Sequence[str] = (),
                 clock: cabc.Callable[[], dt.datetime] = _utcnow,
                 sleep: cabc.Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self.ready_timeout = ready_timeout
        self.ready_poll_interval = ready_poll_interval
        self.accept_automatic_discounts = accept_automatic_discounts
        self.webhook_secrets = tuple(webhook_secrets)
        #: the current aware UTC time: reservations and the cleanup cutoff are judged by it.
        self.clock = clock
        self._sleep = sleep
        self._currencies: list[str] | None = None
        host = (urllib.parse.urlsplit(client.shop_url).hostname or "").lower()
        #: ``{shop}.myshopify.com`` when the shop URL is one: webhooks whose
        #: ``X-Shopify-Shop-Domain`` names another shop are ignored.
        self.shop_domain = host if host.endswith(".myshopify.com") else None

    @classmethod
    def from_config(cls, config: cabc.Mapping[str, t.Any]) -> ShopifyAdapter:
        """Build from the Flask config's ``SHOPIFY_*`` keys, declared in
        :data:`.settings.SHOPIFY_SETTINGS` (the README's Shopify table).
        ``SHOPIFY_WEBHOOK_SECRET`` unset: webhooks are verified with
        ``SHOPIFY_CLIENT_SECRET`` (Shopify signs with the app's secret), if any.

        :raises ValueError: naming every missing or invalid key.
        """
        s = SHOPIFY_SETTINGS.load(config)
        secrets = s.webhook_secrets
        if secrets is None:
            secrets = (s.client_secret,) if s.client_secret else ()
        client = ShopifyClient(s.shop_url, access_token=s.access_token, client_id=s.client_id,
                               client_secret=s.client_secret, api_version=s.api_version, timeout=s.timeout,
                               max_throttle_wait=s.max_throttle_wait)
        return cls(client, ready_timeout=s.ready_timeout,
                   accept_automatic_discounts=s.accept_automatic_discounts, webhook_secrets=secrets)

    # -- quoting ------------------------------------------------------------------------

    def quote(self, request: QuoteRequest) -> Quote:
        """Price the session on its draft order, creating the draft on the first
        call, and hold its stock until ``request.hold_until`` (the draft's
        ``reserveInventoryUntil``; ``None``: the draft reserves nothing).

        Amounts are minor units of ``request.currency``; the quote's total is
        the draft's ``totalPriceSet``. Unknown or unpublished variants, stock
        shortfalls, a missing or unserved address and an unsupported currency
        are returned as messages (same ``text_key`` values as the catalog).
        The draft's asynchronous calculation is awaited only when the session
        could be paid (a session still missing its address is not).

        :raises AdapterUnavailableError: Shopify timed out, failed, throttled
            beyond the wait budget, or did not finish calculating in time.
        :raises AdapterRejectedError: Shopify refused the credentials or a query.
        """
        state: dict[str, JSON] = dict(request.adapter_state)
        currency = request.currency.upper()
        lookup = self._lookup(request, state)
        variants = lookup.variants
        state.update(requested=_requested(request.line_items), variants=t.cast(JSON, variants),
                     currency=currency)
        messages = list(lookup.messages)
        if currency != lookup.shop_currency and currency not in self._presentment(state):
            self._drop_draft(state)
            messages.insert(0, Message(type="error", code="unsupported", param="$.currency",
                                       resolution="recoverable", text_key="currency_unsupported",
                                       text_args={"currency": request.currency}))
            return _unpriced_quote(request, variants, messages, state)
        purchasable = lookup.purchasable
        address = _address(request.fulfillment_details)
        shipped = [i for i in purchasable if variants[i].get("requires_shipping", True)]
        digital = [i for i in purchasable if i not in shipped]

        options: list[FulfillmentOption] = []
        rates: dict[str, dict[str, JSON]] = {}
        needs_details = False
        if shipped and not address:
            needs_details = True
            messages.append(Message(type="error", code="missing", param="$.fulfillment_details.address",
                                    resolution="requires_buyer_input", text_key="address_required"))
        elif shipped:
            options, rates = self._delivery_options(purchasable, variants, request, address, currency,
                                                    _fx(state))
            if not options:
                needs_details = True
                messages.append(Message(
                    type="error", code="region_restricted", param="$.fulfillment_details.address.country",
                    resolution="requires_buyer_input", text_key="no_shipping_to_address",
                    text_args={"country": str(address.get("country") or "").upper()}))
        if digital:
            options.append(FulfillmentOption(type="digital", id=DIGITAL_OPTION_ID, title="Digital delivery",
                                             item_ids=tuple(digital)))
        selected, choice_messages = choose_fulfillment(options, request.selected_fulfillment_options,
                                                       [li.id for li in request.line_items])
        messages.extend(choice_messages)
        selected, merge_message = _one_shipping_method(selected, options, shipped)
        if merge_message is not None:
            messages.append(merge_message)
        shipping_choice = next((s for s in selected if s.option_id in rates), None)
        if not purchasable:
            self._drop_draft(state)
            return _unpriced_quote(request, variants, messages, state, options=options,
                                   needs_details=needs_details)

        handle = rates[shipping_choice.option_id]["handle"] if shipping_choice else None
        # reserve only what could be paid (the core's rule, quote_payable): not
        # before the address, nor with an error standing
        reserve = request.hold_until is not None and not needs_details \
            and not any(m.blocks_payment for m in messages)
        draft_input = self._draft_input(request, purchasable, variants, address, currency, handle,
                                        reserve=reserve)
        draft_before = state.get("draft_id")
        active = self._reservation_active(state)
        held_before = t.cast(dict[str, int], state.get("held") or {}) if active else {}
        draft, errors = self._save_draft(request, state, draft_input)
        messages.extend(errors)
        if state.get("draft_id") != draft_before:
            held_before = {}  # a new draft: nothing was held by it
        if draft is None:
            if not state.get("draft_id"):
                state["held"] = {}
            return _unpriced_quote(request, variants, messages, state, options=options,
                                   needs_details=needs_details)
        draft, purchasable, lost = self._back_off_oversold(draft, state, purchasable, variants, draft_input,
                                                           request, held_before)
        messages.extend(lost)
        # the reservation's end as Shopify reports it (None: nothing is held)
        state.update(held=t.cast(JSON, dict(purchasable) if draft is not None else {}),
                     reserve_until=draft.get("reserveInventoryUntil") if draft is not None else None)
        if draft is None:
            return _unpriced_quote(request, variants, messages, state, options=options,
                                   needs_details=needs_details)
        if shipping_choice is not None and not draft.get("shippingLine"):
            messages.append(Message(
                type="error", code="invalid", param="$.selected_fulfillment_options",
                resolution="recoverable", text_key="fulfillment_option_invalid",
                text_args={"option_id": shipping_choice.option_id}))
        payable = not needs_details and not any(m.blocks_payment for m in messages)
        if payable and not draft.get("ready"):
            draft = self._await_ready(str(draft["id"]), draft)
        quote = self._priced_quote(draft, request.line_items, purchasable, variants, currency, options,
                                   selected, messages, needs_details, state, rates=rates,
                                   codes=request.discount_codes)
        if state.get("reserve_until") and not quote_payable(quote):
            # found unpayable after reserving (a refused shipping line, totals): hold nothing
            until = self._restore_reservation(str(draft["id"]), None, None, request.session_id)
            state["reserve_until"] = mapping.reserve_until(until) if until is not None else None
        return quote

    def _lookup(self, request: QuoteRequest, state: dict[str, JSON]) -> _Lookup:
        """Validate the requested variants, or reuse the stored verdicts when the
        requested lines are unchanged and all of them are held by the draft."""
        requested = _requested(request.line_items)
        stored = t.cast(dict[str, dict[str, JSON]], state.get("variants") or {})
        held = t.cast(dict[str, int], state.get("held") or {})
        if (state.get("draft_id") and state.get("requested") == requested and held == requested
                and state.get("shop_currency") and all(i in stored for i in requested)):
            return _Lookup(purchasable=dict(requested), variants=dict(stored), messages=[],
                           shop_currency=str(state["shop_currency"]))
        ids = sorted({gid for gid in (mapping.variant_gid(li.id) for li in request.line_items) if gid})
        data = self.client.execute(queries.VARIANTS, {"ids": ids}, operation_name="AcpVariants")
        shop = t.cast(dict[str, JSON], data.get("shop") or {})
        shop_currency = str(shop.get("currencyCode") or "").upper()
        state["shop_currency"] = shop_currency
        state["presentment_currencies"] = sorted(
            {str(c).upper() for c in t.cast(list[str], shop.get("enabledPresentmentCurrencies") or [])})
        nodes = {str(n["id"]): n for n in t.cast(list[dict[str, JSON] | None], data.get("nodes") or [])
                 if isinstance(n, dict) and n.get("__typename") == "ProductVariant"}
        active = self._reservation_active(state)
        purchasable: dict[str, int] = {}
        variants: dict[str, dict[str, JSON]] = {}
        messages: list[Message] = []
        seen: dict[str, int] = {}
        for index, li in enumerate(request.line_items):
            where = f"$.line_items[{index}]"
            gid = mapping.variant_gid(li.id)
            if gid is not None and gid in seen:
                messages.append(Message(
                    type="error", code="invalid", param=f"{where}.item.id", resolution="recoverable",
                    content=f"'{li.id}' is the same product variant as line_items[{seen[gid]}]; send one "
                            "line with the total quantity."))
                continue
            if gid is not None:
                seen[gid] = index
            node = nodes.get(gid or "")
            product = t.cast(dict[str, JSON], (node or {}).get("product") or {})
            if node is None or product.get("status") != "ACTIVE" or not product.get("publishedAt"):
                messages.append(Message(type="error", code="not_found", param=f"{where}.item.id",
                                        resolution="recoverable", text_key="item_not_found",
                                        text_args={"item_id": li.id}))
                continue
            info = _variant_info(node)
            verdict = mapping.stock_verdict(node, li.quantity, held.get(li.id, 0) if active else 0)
            info.update(available=verdict.available, availability_status=verdict.availability_status)
            variants[li.id] = info
            name = str(info.get("name") or li.id)
            if verdict.status == "out_of_stock":
                messages.append(Message(type="error", code="out_of_stock", param=f"{where}.item.id",
                                        resolution="requires_buyer_input", text_key="out_of_stock",
                                        text_args={"name": name}))
            elif verdict.status == "quantity_exceeded":
                messages.append(Message(type="error", code="quantity_exceeded", param=f"{where}.quantity",
                                        resolution="requires_buyer_input", text_key="quantity_exceeded",
                                        text_args={"name": name, "available": str(verdict.available)}))
            else:
                purchasable[li.id] = li.quantity
        return _Lookup(purchasable=purchasable, variants=variants, messages=messages,
                       shop_currency=shop_currency)

    def _presentment(self, state: dict[str, JSON]) -> set[str]:
        return {str(c) for c in t.cast(list[str], state.get("presentment_currencies") or [])}

    def _reservation_active(self, state: dict[str, JSON]) -> bool:
        until = mapping.parse_datetime(state.get("reserve_until"))
        return bool(state.get("draft_id")) and until is not None and until > self.clock()

    def _delivery_options(self, purchasable: dict[str, int], variants: dict[str, dict[str, JSON]],
                          request: QuoteRequest, address: dict[str, JSON], currency: str,
                          fx: str | None) -> tuple[list[FulfillmentOption], dict[str, dict[str, JSON]]]:
        shipped = [i for i in purchasable if variants[i].get("requires_shipping", True)]
        data = self.client.execute(queries.DELIVERY_OPTIONS, {"input": {
            "lineItems": [{"variantId": variants[i]["gid"], "quantity": q} for i, q in purchasable.items()],
            "shippingAddress": mapping.address_input(address, phone=_phone(request)),
        }}, operation_name="AcpDeliveryOptions")
        delivery = t.cast(dict[str, JSON] | None, data.get("draftOrderAvailableDeliveryOptions"))
        try:
            return mapping.rate_options(delivery, currency=currency, item_ids=shipped, fx=fx)
        except mapping.AmountNotRepresentableError as exc:
            raise AdapterRejectedError(f"Shopify shipping rate: {exc}") from exc

    def _draft_input(self, request: QuoteRequest, purchasable: dict[str, int],
                     variants: dict[str, dict[str, JSON]], address: dict[str, JSON], currency: str,
                     handle: JSON, *, reserve: bool) -> dict[str, JSON]:
        draft_input: dict[str, JSON] = {
            "lineItems": [{"variantId": variants[i]["gid"], "quantity": q} for i, q in purchasable.items()],
            "presentmentCurrencyCode": currency,
            # the core's hold deadline; none: the draft reserves nothing (null clears it)
            "reserveInventoryUntil": mapping.reserve_until(request.hold_until)
            if reserve and request.hold_until is not None else None,
            "acceptAutomaticDiscounts": self.accept_automatic_discounts,
            # the session's codes, whole (an empty list removes them); Shopify
            # skips those it cannot apply and warns (DraftOrderDiscountNotAppliedWarning)
            "discountCodes": list(request.discount_codes),
            "shippingLine": {"shippingRateHandle": handle} if handle else None,
        }
        email = _email(request)
        if email:
            draft_input["email"] = email
        if address:
            draft_input["shippingAddress"] = mapping.address_input(address, phone=_phone(request))
        return draft_input

    def _save_draft(self, request: QuoteRequest, state: dict[str, JSON],
                    draft_input: dict[str, JSON]) -> tuple[dict[str, JSON] | None, list[Message]]:
        """``draftOrderUpdate`` the session's draft, or ``draftOrderCreate`` one
        (also when the stored draft is gone). Returns the draft (``None`` on
        user errors) and messages for the user errors."""
        draft_id = state.get("draft_id")
        if draft_id:
            data = self.client.execute(queries.DRAFT_ORDER_UPDATE, {"id": draft_id, "input": draft_input},
                                       operation_name="AcpDraftOrderUpdate")
            payload = t.cast(dict[str, JSON], data.get("draftOrderUpdate") or {})
            errors = t.cast(list[dict[str, JSON]], payload.get("userErrors") or [])
            draft = t.cast(dict[str, JSON] | None, payload.get("draftOrder"))
            if draft is not None and not errors:
                return draft, []
            if not _draft_missing(errors):
                return None, _user_error_messages(errors, request)
            log.warning("Shopify draft %s of checkout %s is gone; creating a new one", draft_id,
                        request.session_id)
            state.pop("draft_id", None)
        create_input = dict(draft_input)
        if create_input.get("shippingLine") is None:
            create_input.pop("shippingLine")
        create_input["customAttributes"] = [{"key": SESSION_ATTRIBUTE, "value": request.session_id}]
        create_input["tags"] = [TAG]
        data = self.client.execute(queries.DRAFT_ORDER_CREATE, {"input": create_input},
                                   operation_name="AcpDraftOrderCreate")
        payload = t.cast(dict[str, JSON], data.get("draftOrderCreate") or {})
        errors = t.cast(list[dict[str, JSON]], payload.get("userErrors") or [])
        draft = t.cast(dict[str, JSON] | None, payload.get("draftOrder"))
        if draft is None or errors:
            if draft is not None:
                state["draft_id"] = draft.get("id")
            return None, _user_error_messages(errors, request)
        state["draft_id"] = draft.get("id")
        return draft, []

    def _back_off_oversold(
        self, draft: dict[str, JSON], state: dict[str, JSON], purchasable: dict[str, int],
        variants: dict[str, dict[str, JSON]], draft_input: dict[str, JSON], request: QuoteRequest,
        held_before: dict[str, int],
    ) -> tuple[dict[str, JSON] | None, dict[str, int], list[Message]]:
        """After reserving, a negative ``sellableOnlineQuantity`` means another
        draft reserved the same units concurrently: this session backs off (the
        line leaves its draft, or the draft is deleted) so the units are never
        sold twice -- unless it already held them before this call (first come,
        first served). Returns the draft, the lines it still holds and messages."""
        by_gid = {str(variants[i]["gid"]): i for i in purchasable}
        keep = dict(purchasable)
        lost: list[Message] = []
        for node in _draft_lines(draft):
            variant = t.cast(dict[str, JSON], node.get("variant") or {})
            item_id = by_gid.get(str(variant.get("id")))
            sellable = variant.get("sellableOnlineQuantity")
            limited = mapping.stock_verdict(variant, 0).available is not None
            if item_id is None or not limited or not isinstance(sellable, int) or sellable >= 0:
                continue
            if held_before.get(item_id, 0) >= purchasable[item_id]:
                continue
            del keep[item_id]
            name = str(variants[item_id].get("name") or item_id)
            lost.append(_stock_message(request, item_id, name, max(0, purchasable[item_id] + sellable)))
        if not lost:
            return draft, purchasable, []
        log.info("checkout %s: units taken by a concurrent reservation; backing off", request.session_id)
        if not keep:
            self._drop_draft(state)
            return None, {}, lost
        retry_input = dict(draft_input, lineItems=[{"variantId": variants[i]["gid"], "quantity": q}
                                                   for i, q in keep.items()])
        updated, errors = self._save_draft(request, state, retry_input)
        return updated, keep, lost + errors

    def _await_ready(self, draft_id: str, draft: dict[str, JSON], *,
                     read: cabc.Callable[[str], dict[str, JSON] | None] | None = None) -> dict[str, JSON]:
        """Re-read the draft until ``ready`` (Shopify calculates taxes and
        shipping asynchronously); at most ``ready_timeout`` seconds.

        :param read: how to re-read it (default ``AcpDraftOrder``, the whole draft).
        :raises AdapterUnavailableError: still not ready, or deleted meanwhile.
        """
        read = read or self._read_draft
        deadline = time.monotonic() + self.ready_timeout
        delay = self.ready_poll_interval
        while not draft.get("ready"):
            if time.monotonic() + delay > deadline:
                raise AdapterUnavailableError(
                    f"Shopify is still calculating draft order {draft_id}", retry_after=1)
            self._sleep(delay)
            delay = min(2.0, delay * 2)
            fresh = read(draft_id)
            if fresh is None:
                raise AdapterUnavailableError(f"Shopify draft order {draft_id} disappeared", retry_after=1)
            draft = fresh
        return draft

    def _read_draft(self, draft_id: str) -> dict[str, JSON] | None:
        data = self.client.execute(queries.DRAFT_ORDER, {"id": draft_id}, operation_name="AcpDraftOrder")
        return t.cast(dict[str, JSON] | None, data.get("draftOrder"))

    def _priced_quote(
        self, draft: dict[str, JSON], line_items: cabc.Sequence[LineItemRequest], held: dict[str, int],
        variants: dict[str, dict[str, JSON]], currency: str, options: list[FulfillmentOption],
        selected: tuple[SelectedFulfillmentOption, ...], messages: list[Message], needs_details: bool,
        state: dict[str, JSON], *, rates: dict[str, dict[str, JSON]] | None = None,
        codes: cabc.Sequence[str] = (),
    ) -> Quote:
        """The quote of a draft: lines and the selected option priced from the
        draft, reconciled to its ``totalPriceSet`` (:func:`.mapping.draft_amounts`)."""
        try:
            amounts = mapping.draft_amounts(draft, currency)
        except (mapping.AmountNotRepresentableError, mapping.CurrencyMismatchError) as exc:
            messages.append(Message(type="error", code="invalid", param="$.line_items",
                                    resolution="requires_buyer_review",
                                    content=f"This store's prices cannot be charged: {exc}."))
            return Quote(lines=tuple(_unpriced(li, variants.get(li.id), purchasable=False)
                                     for li in line_items),
                         fulfillment_options=tuple(options), needs_fulfillment_details=needs_details,
                         messages=tuple(messages), adapter_state=state)
        lines: list[PricedLine] = []
        for li in line_items:
            info = variants.get(li.id)
            line_amounts = amounts.lines.get(str((info or {}).get("gid"))) if li.id in held else None
            if line_amounts is None:
                lines.append(_unpriced(li, info, purchasable=False))
                continue
            lines.append(dataclasses.replace(
                _unpriced(li, info, purchasable=True),
                quantity=line_amounts.quantity, unit_amount=line_amounts.unit_amount,
                discount=line_amounts.discount, tax=line_amounts.tax,
            ))
        fx = mapping.implied_fx(draft, currency)
        if fx is not None:
            state["fx"] = fx
        chosen = {s.option_id for s in selected}
        priced_options: list[FulfillmentOption] = []
        for option in options:
            rate = (rates or {}).get(option.id)
            if option.id in chosen and option.type != "digital":
                option = dataclasses.replace(option, amount=amounts.shipping, tax=amounts.shipping_tax)
            elif rate is not None:
                price = t.cast(dict[str, JSON], rate.get("price") or {})
                option = dataclasses.replace(option, amount=mapping.rate_amount(price, currency, fx))
            priced_options.append(option)
        for warning in t.cast(list[dict[str, JSON]], draft.get("warnings") or []):
            if not warning.get("discountCode"):  # a code not applied is a rejection, below
                messages.append(Message(type="info", content=str(warning.get("message") or "")))
        by_gid = {str((variants.get(line.item_id) or {}).get("gid")): line.item_id for line in lines
                  if line.purchasable}
        applied, rejected = mapping.draft_discounts(draft, currency, codes, by_gid)
        quote = Quote(lines=tuple(lines), fulfillment_options=tuple(priced_options),
                      selected_fulfillment_options=selected, needs_fulfillment_details=needs_details,
                      discount=amounts.discount, fee=amounts.fee, messages=tuple(messages),
                      adapter_state=state, applied_discounts=applied, rejected_discounts=rejected)
        # Whether the processor can charge the total (Stripe's three-decimal
        # rule, minimum, maximum) is checked by the checkout core for every adapter.
        total = Totals.of(quote).total
        if all(line.purchasable for line in lines) and total != amounts.total:
            # never show (and so never charge) a total that is not Shopify's
            log.error("checkout total %s differs from Shopify draft %s total %s", total, draft.get("id"),
                      amounts.total)
            quote = dataclasses.replace(quote, messages=quote.messages + (Message(
                type="error", code="invalid", param="$.totals", resolution="requires_buyer_review",
                content="The store's totals could not be reconciled; please try again later."),))
        return quote

    def _drop_draft(self, state: dict[str, JSON]) -> None:
        draft_id = state.pop("draft_id", None)
        state["held"] = {}
        if draft_id:
            self._delete_draft(str(draft_id))

    # -- orders -----------------------------------------------------------------------

    def prepare_order(self, session: CheckoutSession, *, hold_until: dt.datetime) -> Quote:
        """Re-read the session's draft right before the charge, fix its prices,
        make its stock reservation last until ``hold_until``, and return its
        current totals (the core refuses to charge when they changed).

        An open draft follows the variants' catalog prices until
        ``draftOrderComplete``, which does not check them against anything: so
        every line is given ``priceOverride`` = its unit price as just read
        (``originalUnitPriceSet``, presentment currency), and the quote
        returned -- the one charged when its total is what the agent saw -- is
        priced from the draft so frozen. A price change after that no longer
        changes the draft nor the order completed from it (the next quote,
        which sends the lines again without ``priceOverride``, follows the
        catalog again). A draft whose lines all carry ``priceOverride`` already
        (an earlier attempt whose charge failed) is left as it is. (Since
        2025-01 a draft's prices follow the catalog, and a line's price override
        is "locked and used as the basis for all further calculations":
        https://shopify.dev/changelog/posts/set-custom-prices-in-draft-orders.)

        The session's write-only inputs (affiliate attribution claims,
        marketing consent decisions; :func:`~flask_acp.adapter.write_only_notes`)
        are set as ``_acp_*`` ``customAttributes`` of the draft in the same
        update, which the order completed from it keeps as note attributes.

        ``draftOrderComplete`` does not check stock either, so the reservation
        must outlast the charge: when the draft's ``reserveInventoryUntil`` is
        unset or earlier than ``hold_until`` (a session near its expiry), it is
        extended in the same ``draftOrderUpdate`` (``reserveInventoryUntil`` =
        ``hold_until``, rounded up to the second; the other fields are left as they are), and the draft is
        re-read until ``ready``. Then the stock of every limited variant is
        re-checked: when another draft or order holds the units (e.g. taken
        while this draft's reservation had lapsed) the line gets an
        ``out_of_stock`` / ``quantity_exceeded`` error and nothing is charged;
        an extension that found units taken is given back (the former end
        while still ahead, else none) so that the buyer who holds them is not
        refused as well. A deleted draft is recreated by re-quoting (its
        reservation also lasts until ``hold_until``) and then prepared the same
        way; a refused update (``userErrors``) is returned as error messages.

        Calls: ``draftOrder`` -> [not fixed yet or the reservation too short:
        (``draftOrder`` until ``ready``) -> ``draftOrderUpdate`` -> ``draftOrder``
        until ``ready``] -> [units taken after an extension: ``draftOrderUpdate``].

        :param hold_until: aware UTC; at least the end of the charge's time
            budget (the core's deadline).
        :returns: the quote, in minor units of ``session.currency``, its
            ``stock_held_until`` the draft's ``reserveInventoryUntil`` as Shopify
            reports it (the current time when it reports none: nothing is held),
            or the session's quote unchanged when the session has no draft
            (nothing purchasable: payment is blocked).
        :raises AdapterUnavailableError: Shopify unavailable or still calculating.
        :raises AdapterRejectedError: Shopify refused the credentials or a query.
        """
        return self._prepare(session, hold_until, requoted=False)

    def _prepare(self, session: CheckoutSession, hold_until: dt.datetime, *, requoted: bool) -> Quote:
        quote = session.quote
        state: dict[str, JSON] = dict(quote.adapter_state)
        draft_id = state.get("draft_id")
        if not draft_id:
            return quote
        wanted = _ceil_second(hold_until)
        draft = self._read_draft(str(draft_id))
        extended_from: dt.datetime | None = None  # the reservation's end before extending it
        extended = False
        if draft is not None and draft.get("status") != "COMPLETED":
            changes: dict[str, JSON] = {}
            until = mapping.parse_datetime(draft.get("reserveInventoryUntil"))
            if until is None or until < hold_until:
                extended, extended_from = True, until
                log.info("checkout %s: Shopify draft %s reserves stock until %s, the charge may last "
                         "until %s; extending the reservation to %s", session.id, draft_id,
                         draft.get("reserveInventoryUntil"), mapping.reserve_until(hold_until),
                         mapping.reserve_until(wanted))
                changes["reserveInventoryUntil"] = mapping.reserve_until(wanted)
            if not _prices_fixed(draft):
                if not draft.get("ready"):  # fix the prices Shopify has finished calculating
                    draft = self._await_ready(str(draft_id), draft)
                changes["lineItems"] = t.cast(JSON, _fixed_line_items(draft))
            attributes = _note_attributes(draft, session)
            if attributes is not None:
                changes["customAttributes"] = t.cast(JSON, attributes)
            if changes:
                draft, errors = self._update_for_charge(str(draft_id), changes)
                if errors:
                    return dataclasses.replace(quote, messages=quote.messages + tuple(
                        _user_error_messages(errors, _session_request(session, state))))
        if draft is None:
            log.warning("Shopify draft %s of checkout %s is gone; re-quoting", draft_id, session.id)
            state.pop("draft_id", None)
            state["held"] = {}
            request = _session_request(session, state, hold_until=wanted)
            fresh = self.quote(request)
            if not requoted and fresh.adapter_state.get("draft_id"):
                return self._prepare(session.replace(quote=fresh), hold_until, requoted=True)
            held_until = mapping.parse_datetime(fresh.adapter_state.get("reserve_until")) \
                if fresh.adapter_state.get("draft_id") else None
            return dataclasses.replace(fresh, stock_held_until=held_until)
        if draft.get("status") == "COMPLETED":
            return dataclasses.replace(quote, messages=quote.messages + (Message(
                type="error", code="invalid", resolution="requires_buyer_review", param="$",
                content="This checkout's order was already placed in the store."),))
        if not draft.get("ready"):
            draft = self._await_ready(str(draft_id), draft)
        variants = t.cast(dict[str, dict[str, JSON]], state.get("variants") or {})
        held = t.cast(dict[str, int], state.get("held") or {})
        until = mapping.parse_datetime(draft.get("reserveInventoryUntil"))
        if until is not None:
            state["reserve_until"] = mapping.reserve_until(until)
        reserved = until is not None and until > self.clock()
        by_gid = {str(v.get("gid")): i for i, v in variants.items()}
        request = _session_request(session, state)
        messages: list[Message] = [m for m in quote.messages if not m.blocks_payment and m.content is None
                                   and m.type != "info"]
        short = False
        for node in _draft_lines(draft):
            variant = t.cast(dict[str, JSON], node.get("variant") or {})
            item_id = by_gid.get(str(variant.get("id")))
            if item_id is None:
                continue
            quantity = int(t.cast(int, node.get("quantity") or 0))
            verdict = mapping.stock_verdict(variant, quantity, quantity if reserved else 0)
            sellable = variant.get("sellableOnlineQuantity")
            if verdict.available is not None and isinstance(sellable, int) and sellable < 0:
                verdict = mapping.StockVerdict("out_of_stock", max(0, quantity + sellable), "out_of_stock")
            if verdict.status != "ok":
                name = str(variants[item_id].get("name") or item_id)
                messages.append(_stock_message(request, item_id, name, verdict.available or 0))
                short = True
        if extended and short:
            # the extension re-reserved units another draft or order holds: give
            # them back, or that buyer's own check would now find them oversold
            until = self._restore_reservation(str(draft_id), extended_from, until, session.id)
            state["reserve_until"] = mapping.reserve_until(until) if until is not None else None
        selected = quote.selected_fulfillment_options
        priced = self._priced_quote(draft, session.line_items, held, variants, session.currency.upper(),
                                    list(quote.fulfillment_options), selected, messages,
                                    quote.needs_fulfillment_details, state,
                                    codes=applied_codes(session.quote))
        return dataclasses.replace(priced, stock_held_until=until if until is not None else self.clock())

    def _restore_reservation(self, draft_id: str, previous: dt.datetime | None, current: dt.datetime | None,
                             session_id: str) -> dt.datetime | None:
        """Set a draft's ``reserveInventoryUntil`` back after an extension (to
        ``current``) that found its units taken: to ``previous`` while that is
        still ahead, else to none (a lapsed reservation held nothing). Best
        effort: a failure is logged and the extension stands until it ends.
        Returns the reservation's end as Shopify reports it afterwards
        (``current`` after a failure)."""
        keep = previous if previous is not None and previous > self.clock() else None
        try:
            data = self.client.execute(
                queries.DRAFT_ORDER_UPDATE,
                {"id": draft_id, "input": {"reserveInventoryUntil": mapping.reserve_until(keep)
                                           if keep is not None else None}},
                operation_name="AcpDraftOrderUpdate")
        except AdapterError as exc:
            log.warning("checkout %s: could not give back the reservation of Shopify draft %s: %s",
                        session_id, draft_id, exc)
            return current
        payload = t.cast(dict[str, JSON], data.get("draftOrderUpdate") or {})
        draft = t.cast(dict[str, JSON] | None, payload.get("draftOrder"))
        if payload.get("userErrors") or draft is None:
            log.warning("checkout %s: Shopify refused to give back the reservation of draft %s: %s",
                        session_id, draft_id, payload.get("userErrors"))
            return current
        return mapping.parse_datetime(draft.get("reserveInventoryUntil"))

    def _update_for_charge(self, draft_id: str, changes: dict[str, JSON],
                           ) -> tuple[dict[str, JSON] | None, list[dict[str, JSON]]]:
        """``draftOrderUpdate`` of ``changes`` alone (``reserveInventoryUntil``,
        ``lineItems`` with ``priceOverride``; the other fields are left as they
        are), then the draft re-read until ``ready``. Returns the updated draft
        and no errors, ``(None, [])`` when the draft no longer exists, or
        ``(None, userErrors)`` (also for a line whose price cannot be fixed).

        :raises AdapterUnavailableError: Shopify unavailable or still calculating.
        """
        lines = changes.get("lineItems")
        if isinstance(lines, list) and not all(lines):
            log.error("Shopify draft %s has a line without a variant or a unit price; not charging it",
                      draft_id)
            return None, [{"field": ["lineItems"], "message": "An item of this order is no longer sold "
                                                                "in the store at a known price."}]
        data = self.client.execute(queries.DRAFT_ORDER_UPDATE, {"id": draft_id, "input": changes},
                                   operation_name="AcpDraftOrderUpdate")
        payload = t.cast(dict[str, JSON], data.get("draftOrderUpdate") or {})
        errors = t.cast(list[dict[str, JSON]], payload.get("userErrors") or [])
        draft = t.cast(dict[str, JSON] | None, payload.get("draftOrder"))
        if draft is not None and not errors:
            return (draft if draft.get("ready") else self._await_ready(draft_id, draft)), []
        if errors and _draft_missing(errors) and self._read_draft(draft_id) is None:
            return None, []
        log.warning("Shopify refused to update draft %s before the charge (%s): %s", draft_id,
                    ", ".join(sorted(changes)), errors)
        return None, errors or [{"message": "Shopify did not return the draft order"}]

    def place_order(self, session: CheckoutSession, payment: PaymentRecord) -> Order:
        """Complete the session's draft as paid and tag the order with the payment.

        Idempotent per session: the draft is read first (``AcpDraftOrderStatus``),
        and a draft an earlier attempt completed (even one whose response was
        lost) yields its order; ``draftOrderComplete`` itself completes a draft
        only once. An open draft is completed only at the amount charged: its
        ``totalPriceSet`` (once ``ready``) in minor units of ``payment.currency``
        must equal ``payment.amount``. Its line prices were fixed by
        :meth:`prepare_order` (``priceOverride``), so a catalog price change no
        longer moves it; this check is the second guard, for what they do not
        fix (a tax rate changed, lines edited in the admin between a failed
        attempt and its retry). It cannot cover a change made while
        ``draftOrderComplete`` itself runs: that is what fixing the prices is for.
        An order that already exists at another total is kept (it exists) and
        the difference logged at error level.
        The order's ``permalink_url`` is Shopify's order status page
        (``Order.statusPageUrl``), ``id`` and ``platform_order_id`` its GID,
        ``order_number`` its ``name`` (``#1001``).

        Whether the order may exist when it cannot be placed now is told by
        ``outcome_unknown`` (the core then never refunds on its own): set when a
        ``draftOrderComplete`` got no answer (timed out, connection lost) and
        the draft is still open -- it may still be running -- or when the draft
        could not be re-read after a completion attempt. The core remembers it
        in the payment record (``placement_outcome_unknown``), so a later attempt
        that cannot even connect never turns it into a refund. It is false when
        this attempt cannot have completed anything: the draft was read open and
        ``draftOrderComplete`` was refused before running (connection refused,
        throttled, 401/402/403/423) or answered with an error while the draft
        stayed open, or the first read failed.

        :raises AdapterUnavailableError: Shopify unavailable, still calculating
            the draft, or the outcome of a completion attempt is unknown
            (``outcome_unknown``); retry later.
        :raises AdapterRejectedError: only when no order exists and none can be
            placed at the amount charged: the draft is gone, its total is not
            ``payment.amount``, or Shopify refused to complete it (the core
            refunds the payment).
        """
        draft_id = str(session.quote.adapter_state.get("draft_id") or "")
        if not draft_id:
            raise AdapterRejectedError(f"checkout {session.id} has no Shopify draft order")
        order = self._completed_draft_order(draft_id, payment, session)
        self._tag_order(order, payment, session)
        try:
            charged = mapping.money(t.cast(dict[str, JSON], order.get("totalPriceSet")), payment.currency)
        except ValueError:
            charged = None
        if charged is not None and charged != payment.amount:
            log.error("Shopify order %s totals %s but %s was charged for checkout %s",
                      order.get("id"), charged, payment.amount, session.id)
        order_id = str(order["id"])
        return Order(id=order_id, checkout_session_id=session.id,
                     permalink_url=str(order.get("statusPageUrl") or ""),
                     order_number=t.cast(str | None, order.get("name")), platform_order_id=order_id)

    def _require_charged_total(self, draft_id: str, draft: dict[str, JSON], payment: PaymentRecord,
                               session: CheckoutSession) -> None:
        """Refuse to complete an open draft whose ``totalPriceSet`` is not the
        amount charged (``payment.amount``, minor units of ``payment.currency``).

        :raises AdapterRejectedError: another total, or none readable in that currency.
        """
        currency = payment.currency.upper()
        try:
            total = mapping.money(t.cast(dict[str, JSON] | None, draft.get("totalPriceSet")), currency)
        except ValueError as exc:
            log.error("checkout %s: Shopify draft %s has no total in %s (%s); not completing it",
                      session.id, draft_id, currency, exc)
            raise AdapterRejectedError(f"the store's total for this order cannot be read in {currency}") \
                from exc
        if total != payment.amount:
            log.error("checkout %s: Shopify draft %s now totals %s but %s was charged; not completing it",
                      session.id, draft_id, total, payment.amount)
            raise AdapterRejectedError(
                f"the store's total changed after the payment (now "
                f"{mapping.minor_to_decimal_string(total, currency)} {currency}, "
                f"{mapping.minor_to_decimal_string(payment.amount, currency)} {currency} was paid)")

    def _completed_draft_order(self, draft_id: str, payment: PaymentRecord,
                               session: CheckoutSession) -> dict[str, JSON]:
        """The order of the draft: completed already (an earlier attempt), else
        completed now at the amount charged (``AcpDraftOrderStatus`` ->
        [until ``ready``] -> ``draftOrderComplete``)."""
        draft = self._draft_status(draft_id)
        order = _completed(draft)
        if order is None:
            if not draft.get("ready"):
                draft = self._await_ready(draft_id, draft, read=self._read_status)
            self._require_charged_total(draft_id, draft, payment, session)
            order = self._complete_draft(draft_id)
        return order

    def _complete_draft(self, draft_id: str) -> dict[str, JSON]:
        """``draftOrderComplete``; when it may have run (an error after the
        request may have left, user errors) the draft is re-read before deciding.

        :raises AdapterUnavailableError: not completed now. ``outcome_unknown``
            when it may have been: no answer and the draft still open (the
            completion may still be running), or the re-read failed; false when
            it certainly was not: refused before running, or answered with an
            error and the draft still open.
        :raises AdapterRejectedError: Shopify refused to complete the open draft.
        """
        try:
            data = self.client.execute(queries.DRAFT_ORDER_COMPLETE, {"id": draft_id},
                                       operation_name="AcpDraftOrderComplete")
        except AdapterUnavailableError as exc:
            if not exc.outcome_unknown:
                raise  # not executed (throttled, refused before running): nothing to re-read
            order = self._order_after_attempt(draft_id, exc)
            if order is not None:
                return order
            if isinstance(exc, ShopifyNoAnswerError):
                raise  # still open, but a completion that got no answer may still be running
            raise AdapterUnavailableError(  # answered with an error, and the draft is still open
                f"{exc}; Shopify draft order {draft_id} is still open: it was not completed",
                retry_after=exc.retry_after) from exc
        except AdapterRejectedError as exc:
            order = self._order_after_attempt(draft_id, exc)
            if order is None:
                raise
            return order
        payload = t.cast(dict[str, JSON], data.get("draftOrderComplete") or {})
        errors = t.cast(list[dict[str, JSON]], payload.get("userErrors") or [])
        order = t.cast(dict[str, JSON] | None, (payload.get("draftOrder") or {}).get("order"))
        if order is not None and not errors:
            return order
        order = self._order_after_attempt(draft_id, None)
        if order is None:
            text = "; ".join(str(e.get("message")) for e in errors) or "no order returned"
            raise AdapterRejectedError(f"Shopify refused to complete draft order {draft_id}: {text}")
        return order

    def _order_after_attempt(self, draft_id: str, cause: Exception | None) -> dict[str, JSON] | None:
        """Re-read a draft after a completion attempt: its order, or ``None``
        while it is open.

        :raises AdapterUnavailableError: the draft cannot be read: the outcome
            is unknown (``outcome_unknown``; never a rejection): the order may exist.
        """
        try:
            return self._completed_order(draft_id)
        except AdapterError as exc:
            raise AdapterUnavailableError(
                f"completing Shopify draft order {draft_id} has an unknown outcome ({cause or exc}); "
                "it is re-read on the next attempt", retry_after=1, outcome_unknown=True) from exc

    def _completed_order(self, draft_id: str) -> dict[str, JSON] | None:
        """The order of a completed draft, ``None`` if the draft is still open.

        :raises AdapterRejectedError: the draft does not exist.
        """
        return _completed(self._draft_status(draft_id))

    def _draft_status(self, draft_id: str) -> dict[str, JSON]:
        """``AcpDraftOrderStatus``: ``{id, status, ready, totalPriceSet, order}``.

        :raises AdapterRejectedError: the draft does not exist.
        """
        draft = self._read_status(draft_id)
        if draft is None:
            raise AdapterRejectedError(f"Shopify draft order {draft_id} no longer exists")
        return draft

    def _read_status(self, draft_id: str) -> dict[str, JSON] | None:
        data = self.client.execute(queries.DRAFT_ORDER_STATUS, {"id": draft_id},
                                   operation_name="AcpDraftOrderStatus")
        return t.cast(dict[str, JSON] | None, data.get("draftOrder"))

    def _tag_order(self, order: dict[str, JSON], payment: PaymentRecord, session: CheckoutSession) -> None:
        if not payment.payment_id:
            return
        tag = f"payment:{payment.payment_id}"
        if tag in t.cast(list[str], order.get("tags") or []):
            return
        try:
            data = self.client.execute(queries.TAGS_ADD, {"id": order["id"], "tags": [TAG, tag]},
                                       operation_name="AcpTagsAdd")
        except AdapterError as exc:
            # the order exists and is paid; the tag is bookkeeping (the draft's
            # customAttributes still link it to the session)
            log.warning("could not tag Shopify order %s with %s (checkout %s): %s",
                        order.get("id"), tag, session.id, exc)
            return
        payload = data.get("tagsAdd")
        errors = payload.get("userErrors") if isinstance(payload, dict) else None
        if errors:
            log.warning("Shopify refused tag %s on order %s: %s", tag, order.get("id"), errors)

    def release(self, session: CheckoutSession) -> None:
        """Delete the session's draft order, releasing its reservation.
        Idempotent: a draft already gone is fine. Best effort: when Shopify is
        unreachable the failure is logged, not raised (the reservation lapses
        at the session's expiry and :meth:`cleanup_abandoned_drafts` deletes
        the draft later), so cancel and expiry never fail on the platform."""
        draft_id = session.quote.adapter_state.get("draft_id")
        if draft_id:
            self._delete_draft(str(draft_id))

    def _delete_draft(self, draft_id: str) -> bool:
        try:
            data = self.client.execute(queries.DRAFT_ORDER_DELETE, {"input": {"id": draft_id}},
                                       operation_name="AcpDraftOrderDelete")
        except AdapterError as exc:
            log.warning("could not delete Shopify draft order %s: %s", draft_id, exc)
            return False
        payload = t.cast(dict[str, JSON], data.get("draftOrderDelete") or {})
        errors = payload.get("userErrors")
        if errors:
            log.info("Shopify draft order %s not deleted (already gone?): %s", draft_id, errors)
            return False
        return True

    # -- after the sale ---------------------------------------------------------------

    def parse_webhook(self, headers: cabc.Mapping[str, str], body: bytes) -> PlatformWebhook:
        """Verify a Shopify webhook delivery and map it (:mod:`.webhooks`).

        ``X-Shopify-Hmac-Sha256`` must be the base64 HMAC-SHA256 of the raw body
        under one of :attr:`webhook_secrets`; nothing is parsed before. The key
        is ``{X-Shopify-Topic}:{SHA-256 of the signed body}`` (:func:`.webhooks.event_key`).
        Topics other than :data:`.webhooks.TOPICS`, orders we did not make, a
        body that is no JSON object, and a delivery naming another shop in
        ``X-Shopify-Shop-Domain`` (when :attr:`shop_domain` is known) are
        acknowledged with no update and not recorded (``event_id`` None).

        :raises NotImplementedError: no webhook secret configured (404).
        :raises WebhookSignatureError: missing or wrong signature (401).
        """
        if not self.webhook_secrets:
            log.warning("Shopify webhook refused: set SHOPIFY_WEBHOOK_SECRET (or SHOPIFY_CLIENT_SECRET)")
            raise NotImplementedError
        given = {k.lower(): v for k, v in headers.items()}
        header = given.get("x-shopify-hmac-sha256", "")
        if not header:
            raise WebhookSignatureError("The X-Shopify-Hmac-Sha256 header is missing.")
        if not signature_matches(self.webhook_secrets, body, header):
            raise WebhookSignatureError("The X-Shopify-Hmac-Sha256 header does not match the body "
                                        "(check SHOPIFY_WEBHOOK_SECRET against the app's client secret).")
        topic = given.get("x-shopify-topic", "").strip().lower()
        domain = given.get("x-shopify-shop-domain", "").strip().lower()
        if self.shop_domain and domain and domain != self.shop_domain:
            log.warning("Shopify webhook %r from shop %s ignored (this app serves %s)", topic, domain,
                        self.shop_domain)
            return PlatformWebhook(event_id=None)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            log.warning("Shopify webhook %r: the body is not a JSON object; ignored", topic)
            return PlatformWebhook(event_id=None)
        updates = webhook_updates(topic, payload)
        products = webhook_products(topic, payload)
        if not updates and not products:
            log.info("Shopify webhook %r (%s): nothing for flask-acp", topic, payload.get("id"))
            return PlatformWebhook(event_id=None)
        return PlatformWebhook(event_id=event_key(topic, body), updates=updates, products=products)

    def reconcile_orders(self, since: dt.datetime | None) -> list[PlatformOrderUpdate]:
        """Re-read the orders flask-acp made (tag ``acp``, with the session
        attribute) that changed at or after ``since``, mapped as webhooks are:
        ``orders(query: "tag:acp updated_at:>='...'", sortKey: UPDATED_AT)``,
        :data:`.queries.ORDER_SYNC_LIMITS` per page. Without ``since``: every
        order not archived yet (``status:not_closed``). Order search is
        eventually consistent: run it with a ``since`` that overlaps the
        previous run (applying is idempotent).

        :raises AdapterUnavailableError: Shopify cannot answer now.
        :raises AdapterRejectedError: Shopify refused the query (credentials, scopes).
        """
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=dt.timezone.utc)
        search = f"tag:{TAG} " + (f"updated_at:>='{mapping.reserve_until(since)}'" if since is not None
                                  else "status:not_closed")
        limits = queries.ORDER_SYNC_LIMITS
        updates: list[PlatformOrderUpdate] = []
        after: str | None = None
        while True:
            data = self.client.execute(queries.ORDERS_CHANGED, {"query": search, "after": after},
                                       operation_name="AcpOrdersChanged")
            connection = t.cast(dict[str, t.Any], data.get("orders") or {})
            for node in connection.get("nodes") or []:
                for key, limit in (("fulfillments", limits["fulfillments"]), ("refunds", limits["refunds"])):
                    if len(node.get(key) or []) >= limit:
                        log.warning("Shopify order %s has %d or more %s; reconcile reads the first %d",
                                    node.get("name"), limit, key, limit)
                update = order_node_update(node)
                if update is not None:
                    updates.append(update)
            page = connection.get("pageInfo") or {}
            if not page.get("hasNextPage") or not page.get("endCursor"):
                break
            after = str(page["endCursor"])
        log.info("Shopify reconcile (%s): %d of our orders", search, len(updates))
        return updates

    def cleanup(self, older_than: float) -> list[str]:
        """``flask acp cleanup``: :meth:`cleanup_abandoned_drafts`."""
        return self.cleanup_abandoned_drafts(older_than)

    # -- maintenance ------------------------------------------------------------------

    def cleanup_abandoned_drafts(self, older_than_seconds: float) -> list[str]:
        """Delete the open draft orders flask-acp created (tag ``acp`` and a
        ``acp_checkout_session_id`` custom attribute) that were last updated
        more than ``older_than_seconds`` ago and hold no live reservation.
        Use a value at least ``ACP_SESSION_TTL``.

        :returns: the GIDs of the deleted drafts.
        :raises AdapterUnavailableError: Shopify unavailable (nothing partial is lost;
            run it again).
        """
        now = self.clock()
        cutoff = now - dt.timedelta(seconds=older_than_seconds)
        search = f"tag:{TAG} status:open updated_at:<'{mapping.reserve_until(cutoff)}'"
        found: list[str] = []
        after: str | None = None
        while True:
            data = self.client.execute(queries.ABANDONED_DRAFTS, {"query": search, "after": after},
                                       operation_name="AcpAbandonedDrafts")
            connection = t.cast(dict[str, t.Any], data.get("draftOrders") or {})
            for node in connection.get("nodes") or []:
                attributes = {a.get("key") for a in node.get("customAttributes") or []}
                updated = mapping.parse_datetime(node.get("updatedAt"))
                until = mapping.parse_datetime(node.get("reserveInventoryUntil"))
                if (node.get("status") == "OPEN" and TAG in (node.get("tags") or [])
                        and SESSION_ATTRIBUTE in attributes and updated is not None and updated < cutoff
                        and (until is None or until <= now)):
                    found.append(str(node["id"]))
            page = connection.get("pageInfo") or {}
            if not page.get("hasNextPage") or not page.get("endCursor"):
                break
            after = str(page["endCursor"])
        return [draft_id for draft_id in found if self._delete_draft(draft_id)]

    # -- product feed -------------------------------------------------------------------

    def iter_products(self) -> cabc.Iterator[ProductRecord]:
        """The shop's active, published products, by id, priced in the shop
        currency: ``AcpProducts`` pages (``products(query: "status:active",
        sortKey: ID)``, :data:`.queries.PRODUCT_PAGE_LIMITS`), mapped by
        :func:`.mapping.product_record`. Item ids are numeric variant ids.

        :raises AdapterUnavailableError: Shopify cannot answer now.
        :raises AdapterRejectedError: Shopify refused the query (credentials, scopes:
            ``read_products``).
        """
        after: str | None = None
        while True:
            data = self.client.execute(queries.PRODUCTS, {"query": "status:active", "after": after},
                                       operation_name="AcpProducts")
            currency = str(t.cast(dict[str, t.Any], data.get("shop") or {}).get("currencyCode") or "")
            connection = t.cast(dict[str, t.Any], data.get("products") or {})
            for node in connection.get("nodes") or []:
                record = self._product(node, currency)
                if record is not None:
                    yield record
            page = connection.get("pageInfo") or {}
            if not page.get("hasNextPage") or not page.get("endCursor"):
                return
            after = str(page["endCursor"])

    def read_products(self, product_ids: cabc.Sequence[str]) -> list[ProductRecord]:
        """The current state of products named by numeric id, product GID, or
        ``gid://shopify/InventoryItem/N`` (the product of that item's variant:
        what :meth:`parse_webhook` names for ``inventory_levels/update``), one
        ``AcpProductsById`` call; products gone or no longer sellable are left out.

        :raises AdapterUnavailableError: Shopify cannot answer now.
        """
        ids = [f"gid://shopify/Product/{i}" if i.isascii() and i.isdigit() else i for i in product_ids]
        if not ids:
            return []
        data = self.client.execute(queries.PRODUCTS_BY_ID, {"ids": ids}, operation_name="AcpProductsById")
        currency = str(t.cast(dict[str, t.Any], data.get("shop") or {}).get("currencyCode") or "")
        found: dict[str, ProductRecord] = {}
        for node in t.cast(list[dict[str, t.Any] | None], data.get("nodes") or []):
            if node is not None and node.get("__typename") == "InventoryItem":
                node = ((node.get("variant") or {}).get("product")) or None
            record = self._product(node, currency) if node else None
            if record is not None:
                found.setdefault(record.id, record)
        return list(found.values())

    def feed_product_id(self, subject: str) -> str | None:
        """``gid://shopify/Product/N`` (or ``N``) -> ``"N"``, the feed's
        ``Product.id``; an ``InventoryItem`` GID is no product: None."""
        number = subject.removeprefix("gid://shopify/Product/")
        return number if number.isascii() and number.isdigit() else None

    def _product(self, node: dict[str, t.Any], currency: str) -> ProductRecord | None:
        if (node.get("variants") or {}).get("pageInfo", {}).get("hasNextPage"):
            log.warning("Shopify product %s has more than %d variants; the feed lists the first %d",
                        node.get("id"), queries.PRODUCT_PAGE_LIMITS["variants"],
                        queries.PRODUCT_PAGE_LIMITS["variants"])
        try:
            return mapping.product_record(node, currency)
        except ValueError as exc:
            log.error("Shopify product %s left out of the feed: %s", node.get("id"), exc)
            return None

    def supported_currencies(self) -> list[str]:
        """The shop currency, then its other enabled presentment currencies,
        lowercase (one ``shop`` query, cached; ``[]`` while Shopify is unreachable)."""
        if self._currencies is None:
            try:
                data = self.client.execute(queries.SHOP_CURRENCIES, operation_name="AcpShopCurrencies")
            except AdapterError as exc:
                log.warning("cannot read the Shopify shop currencies: %s", exc)
                return []
            shop = t.cast(dict[str, t.Any], data.get("shop") or {})
            own = str(shop.get("currencyCode") or "").lower()
            others = {str(c).lower() for c in shop.get("enabledPresentmentCurrencies") or []} - {own, ""}
            self._currencies = ([own] if own else []) + sorted(others)
        return list(self._currencies)

    def check_connection(self) -> str:
        """The shop's currencies, read with the Admin API credentials (one
        ``shop`` query, not cached).

        :raises AdapterError: refused credentials (401/403) or no answer.
        """
        data = self.client.execute(queries.SHOP_CURRENCIES, operation_name="AcpShopCurrencies")
        shop = t.cast(dict[str, t.Any], data.get("shop") or {})
        return f"Admin API {self.client.api_version}: shop currency {shop.get('currencyCode')}"

    def close(self) -> None:
        """Close the HTTP session."""
        self.client.close()


# --- helpers ---------------------------------------------------------------------------


def _note_attributes(draft: dict[str, JSON], session: CheckoutSession) -> list[dict[str, str]] | None:
    """The draft's ``customAttributes`` (note attributes, copied to the order it
    becomes) with the session's write-only inputs set
    (:func:`~flask_acp.adapter.write_only_notes`: affiliate attribution,
    marketing consents), or None when they are there already."""
    current = [{"key": str(a.get("key")), "value": str(a.get("value"))}
               for a in t.cast(list[dict[str, JSON]], draft.get("customAttributes") or [])]
    notes = dict(write_only_notes(session))
    wanted = [a for a in current if a["key"] not in notes]
    wanted += [{"key": key, "value": value} for key, value in notes.items()]
    return None if wanted == current else wanted


def _ceil_second(value: dt.datetime) -> dt.datetime:
    """``value`` rounded up to a whole second (a Shopify ``DateTime`` has none
    below it, and a reservation must not end before the time asked for)."""
    whole = value.replace(microsecond=0)
    return whole if whole == value else whole + dt.timedelta(seconds=1)


def _fx(state: dict[str, JSON]) -> str | None:
    value = state.get("fx")
    return value if isinstance(value, str) and value else None


def _unpriced_quote(request: QuoteRequest, variants: dict[str, dict[str, JSON]], messages: list[Message],
                    state: dict[str, JSON], *, options: list[FulfillmentOption] | None = None,
                    needs_details: bool = False) -> Quote:
    """A quote without a draft: nothing purchasable; options without prices."""
    return Quote(
        lines=tuple(_unpriced(li, variants.get(li.id), purchasable=False) for li in request.line_items),
        fulfillment_options=tuple(dataclasses.replace(o, amount=0, tax=0) for o in options or ()),
        needs_fulfillment_details=needs_details, messages=tuple(messages), adapter_state=state,
    )


def _requested(line_items: cabc.Sequence[LineItemRequest]) -> dict[str, int]:
    return {li.id: li.quantity for li in line_items}


def _address(details: dict[str, JSON] | None) -> dict[str, JSON]:
    address = (details or {}).get("address")
    return address if isinstance(address, dict) else {}


def _email(request: QuoteRequest) -> str | None:
    for source in (request.buyer or {}, request.fulfillment_details or {}):
        email = source.get("email")
        if isinstance(email, str) and email:
            return email
    return None


def _phone(request: QuoteRequest) -> str | None:
    for source in (request.fulfillment_details or {}, request.buyer or {}):
        phone = source.get("phone_number")
        if isinstance(phone, str) and phone:
            return phone
    return None


def _variant_info(node: dict[str, JSON]) -> dict[str, JSON]:
    product = t.cast(dict[str, JSON], node.get("product") or {})
    item = t.cast(dict[str, JSON], node.get("inventoryItem") or {})
    image = t.cast(dict[str, JSON] | None, node.get("image"))
    return {
        "gid": node["id"],
        "name": node.get("displayName") or node.get("title"),
        "sku": node.get("sku") or None,
        "image": image.get("url") if image else None,
        "product_id": mapping.gid_tail(str(product["id"])) if product.get("id") else None,
        "requires_shipping": bool(item.get("requiresShipping", True)),
    }


def _unpriced(li: LineItemRequest, info: dict[str, JSON] | None, *, purchasable: bool) -> PricedLine:
    info = info or {}
    available = info.get("available")
    return PricedLine(
        item_id=li.id, quantity=li.quantity, purchasable=purchasable,
        requires_shipping=bool(info.get("requires_shipping", False)) if info else False,
        name=t.cast(str | None, info.get("name")), sku=t.cast(str | None, info.get("sku")),
        images=(str(info["image"]),) if info.get("image") else (),
        product_id=t.cast(str | None, info.get("product_id")),
        variant_id=li.id if info else None,
        availability_status=t.cast(str | None, info.get("availability_status")),
        available_quantity=available if isinstance(available, int) else None,
    )


def _completed(draft: dict[str, JSON]) -> dict[str, JSON] | None:
    """The order of a draft read by ``AcpDraftOrderStatus``, ``None`` while it is open."""
    order = t.cast(dict[str, JSON] | None, draft.get("order"))
    return order if draft.get("status") == "COMPLETED" and order else None


def _draft_lines(draft: dict[str, JSON]) -> list[dict[str, JSON]]:
    return t.cast(list[dict[str, JSON]], ((draft.get("lineItems") or {}).get("nodes") or []))


def _prices_fixed(draft: dict[str, JSON]) -> bool:
    """Whether every line of ``draft`` carries a ``priceOverride`` (its price no
    longer follows the catalog)."""
    lines = _draft_lines(draft)
    return bool(lines) and all(node.get("priceOverride") for node in lines)


def _fixed_line_items(draft: dict[str, JSON]) -> list[dict[str, JSON] | None]:
    """``DraftOrderLineItemInput`` of every line of ``draft`` (same variant and
    quantity, in order) with ``priceOverride`` = the line's unit price as read:
    ``originalUnitPriceSet.presentmentMoney`` (``{amount, currencyCode}``, the
    draft's presentment currency), passed on as Shopify wrote it. ``None`` for
    a line without a variant or a unit price (it cannot be fixed)."""
    items: list[dict[str, JSON] | None] = []
    for node in _draft_lines(draft):
        variant = t.cast(dict[str, JSON], node.get("variant") or {})
        unit = t.cast(dict[str, JSON], node.get("originalUnitPriceSet") or {}).get("presentmentMoney")
        if not variant.get("id") or not isinstance(unit, dict) or unit.get("amount") is None:
            items.append(None)
            continue
        items.append({"variantId": variant["id"], "quantity": node.get("quantity"),
                      "priceOverride": {"amount": unit["amount"], "currencyCode": unit.get("currencyCode")}})
    return items


def _line_param(request: QuoteRequest, item_id: str) -> str:
    index = next((i for i, li in enumerate(request.line_items) if li.id == item_id), 0)
    return f"$.line_items[{index}]"


def _stock_message(request: QuoteRequest, item_id: str, name: str, available: int) -> Message:
    where = _line_param(request, item_id)
    if available <= 0:
        return Message(type="error", code="out_of_stock", param=f"{where}.item.id",
                       resolution="requires_buyer_input", text_key="out_of_stock", text_args={"name": name})
    return Message(type="error", code="quantity_exceeded", param=f"{where}.quantity",
                   resolution="requires_buyer_input", text_key="quantity_exceeded",
                   text_args={"name": name, "available": str(available)})


def _session_request(session: CheckoutSession, state: dict[str, JSON], *,
                     hold_until: dt.datetime | None = None) -> QuoteRequest:
    return QuoteRequest(
        session_id=session.id, currency=session.currency, line_items=session.line_items,
        fulfillment_details=session.fulfillment_details,
        selected_fulfillment_options=session.requested_fulfillment_options,
        expires_at=session.expires_at, hold_until=hold_until, buyer=session.buyer, adapter_state=state,
        discount_codes=applied_codes(session.quote),
    )


def _one_shipping_method(
    selected: tuple[SelectedFulfillmentOption, ...], options: list[FulfillmentOption], shipped: list[str],
) -> tuple[tuple[SelectedFulfillmentOption, ...], Message | None]:
    """A Shopify order has one shipping line: when the selection splits the
    shipped items over several rates, the first rate ships them all."""
    shipping = [s for s in selected if s.type in ("shipping", "local_delivery")]
    if len(shipping) <= 1:
        return selected, None
    first = shipping[0]
    title = next((o.title for o in options if o.id == first.option_id), first.option_id)
    merged = SelectedFulfillmentOption(type=first.type, option_id=first.option_id, item_ids=tuple(shipped))
    rest = tuple(s for s in selected if s not in shipping)
    return (merged,) + rest, Message(
        type="info", param="$.selected_fulfillment_options",
        content=f"This store ships all items of an order together; every item ships with '{title}'.")


def _draft_missing(errors: list[dict[str, JSON]]) -> bool:
    for error in errors:
        field = error.get("field") or []
        text = str(error.get("message") or "").lower()
        if field == ["id"] or "not exist" in text or "not found" in text:
            return True
    return False


def _user_error_messages(errors: list[dict[str, JSON]], request: QuoteRequest) -> list[Message]:
    """Draft ``userErrors`` as ACP error messages, with a JSONPath where the
    Shopify ``field`` path maps onto the request."""
    messages = []
    for error in errors or [{"message": "Shopify did not return the draft order"}]:
        field = [str(f) for f in (error.get("field") or [])]
        param, resolution = "$", "requires_buyer_review"
        if field[:1] == ["lineItems"] and len(field) > 1 and field[1].isdigit():
            index = int(field[1])
            param, resolution = f"$.line_items[{min(index, len(request.line_items) - 1)}]", "recoverable"
        elif field[:1] == ["shippingAddress"]:
            param, resolution = "$.fulfillment_details.address", "requires_buyer_input"
        elif field[:1] == ["email"]:
            param, resolution = "$.buyer.email", "requires_buyer_input"
        elif field[:1] == ["shippingLine"]:
            param, resolution = "$.selected_fulfillment_options", "recoverable"
        messages.append(Message(type="error", code="invalid", param=param, resolution=resolution,
                                content=str(error.get("message") or "Shopify refused the order details.")))
    return messages
