"""Carts (ACP 2026-04-17 Cart API, an optional service: ``openapi.cart.yaml``,
``rfcs/rfc.cart.md``): items and estimated prices before a checkout.

A cart has no status and holds no stock: its estimate is the platform
adapter's quote (the same prices, tax and availability rules as a checkout
session) made with ``QuoteRequest.hold_until`` None, so a cart never keeps
a unit from a buyer who checks out. It exists until it expires
(``ACP_CART_TTL`` after its last change) or is canceled; then it is gone (404).

- create: 201 with the cart; lines that cannot be bought (unknown item, out of
  stock, too many) stay in the cart with error messages (partial availability;
  messages about fulfillment, chosen at checkout, are left out);
  when no line can be bought, nothing is stored and
  :class:`~flask_acp.errors.UnprocessableError` (422 ``out_of_stock``) is raised;
- update: a full replacement (``line_items`` and ``buyer``), same rules; a 422
  leaves the cart as it was;
- cancel: the cart as it was, then deleted (the adapter releases what it made
  on the platform for it: a Shopify draft, a WooCommerce cart).

No Flask, no wire version: the pipeline parses and renders.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import datetime as dt
import logging
import secrets
import typing as t

from .adapter import PlatformAdapter
from .adapter import QuoteRequest
from .adapter import as_unavailable
from .adapter import store_currency
from .errors import AdapterError
from .errors import NotFoundError
from .errors import UnprocessableError
from .inputs import CartInput
from .models import Cart
from .models import CheckoutSession
from .models import Quote
from .models import Status
from .sessions import utcnow
from .store.base import Carts

__all__ = ["CartService", "CartSettings"]

log = logging.getLogger("flask_acp")

#: JSONPaths of checkout-only fields a quote's messages may point at
_CHECKOUT_ONLY = ("$.fulfillment_details", "$.selected_fulfillment_options")


class CartSettings(t.Protocol):
    @property
    def cart_ttl(self) -> int:
        """Seconds a cart lives after its creation or last update."""
        ...


class CartService:
    """Create, read, replace and cancel carts.

    :param adapter: the platform adapter (quotes without holding stock).
    :param carts: where carts live (the storage's ``carts`` port).
    :param settings: the app's settings (``cart_ttl`` in seconds).
    :param clock: returns the current aware UTC time (tests inject their own).
    """

    def __init__(self, *, adapter: PlatformAdapter, carts: Carts, settings: CartSettings,
                 clock: cabc.Callable[[], dt.datetime] = utcnow) -> None:
        self.adapter = adapter
        self.carts = carts
        self.settings = settings
        self.clock = clock

    def create(self, agent: str, data: CartInput) -> Cart:
        """A new cart priced in the store's currency.

        :raises UnprocessableError: no line can be bought (422 ``out_of_stock``).
        :raises UnavailableError: the platform cannot answer now (503).
        """
        now = self.clock()
        cart_id = "cart_" + secrets.token_hex(16)
        expires_at = now + dt.timedelta(seconds=self.settings.cart_ttl)
        currency = store_currency(self.adapter)
        quote = self._estimate(cart_id, currency, data, expires_at, {})
        cart = Cart(id=cart_id, agent=agent, currency=currency, line_items=data.line_items, quote=quote,
                    created_at=now, updated_at=now, expires_at=expires_at, buyer=data.buyer,
                    locale=data.locale)
        self.carts.put(cart)
        return cart

    def get(self, agent: str, cart_id: str) -> Cart:
        """The cart as last estimated (not re-priced: totals are estimates).

        :raises NotFoundError: unknown, expired, canceled, or another agent's (404).
        """
        cart = self.carts.get(cart_id, now=self.clock().timestamp())
        if cart is None or cart.agent != agent:
            raise NotFoundError("Cart not found or has expired.")
        return cart

    def update(self, agent: str, cart_id: str, data: CartInput) -> Cart:
        """Replace the cart's items and buyer (a full replacement: a buyer not
        sent is removed; the locale is kept), re-estimate, extend its expiry.

        :raises NotFoundError: (404). :raises UnprocessableError: no line can
            be bought; the cart is unchanged (422). :raises UnavailableError: (503).
        """
        cart = self.get(agent, cart_id)
        now = self.clock()
        expires_at = now + dt.timedelta(seconds=self.settings.cart_ttl)
        quote = self._estimate(cart.id, cart.currency, data, expires_at, cart.quote.adapter_state)
        cart = cart.replace(line_items=data.line_items, buyer=data.buyer, quote=quote, updated_at=now,
                            expires_at=expires_at)
        if not self.carts.replace(cart):  # canceled meanwhile: it stays canceled
            raise NotFoundError("Cart not found or has expired.")
        return cart

    def cancel(self, agent: str, cart_id: str) -> Cart:
        """Delete the cart and return it as it was (later calls: 404).

        :raises NotFoundError: (404).
        """
        cart = self.get(agent, cart_id)
        self.carts.delete(cart.id)
        try:
            self.adapter.release(_as_session(cart))
        except AdapterError as exc:  # nothing is held; what is left expires on the platform
            log.warning("cart %s: the platform did not release it: %s", cart.id, exc)
        return cart

    def purge_expired(self) -> int:
        """Delete the carts whose expiry has passed; returns how many."""
        return self.carts.purge(before=self.clock().timestamp())

    def _estimate(self, cart_id: str, currency: str, data: CartInput, expires_at: dt.datetime,
                  adapter_state: dict[str, t.Any]) -> Quote:
        try:
            quote = self.adapter.quote(QuoteRequest(
                session_id=cart_id, currency=currency, line_items=data.line_items,
                fulfillment_details=None, selected_fulfillment_options=(), expires_at=expires_at,
                buyer=data.buyer, adapter_state=adapter_state, hold_until=None))
        except AdapterError as exc:
            raise as_unavailable(exc) from exc
        # fulfillment is chosen at checkout (cart RFC §2.2): its messages have no place here
        quote = dataclasses.replace(quote, messages=tuple(
            m for m in quote.messages if not (m.param or "").startswith(_CHECKOUT_ONLY)))
        if not any(line.purchasable for line in quote.lines):
            raise UnprocessableError("None of the requested items can be bought now.", code="out_of_stock",
                                     param="$.line_items")
        return quote



def _as_session(cart: Cart) -> CheckoutSession:
    """The cart as the adapter's :meth:`~flask_acp.adapter.PlatformAdapter.release`
    takes it: an id and the adapter state of its last quote."""
    return CheckoutSession(id=cart.id, agent=cart.agent, api_version="", status=Status.CANCELED,
                           currency=cart.currency, line_items=cart.line_items, quote=cart.quote,
                           created_at=cart.created_at, updated_at=cart.updated_at,
                           expires_at=cart.expires_at, buyer=cart.buyer)
