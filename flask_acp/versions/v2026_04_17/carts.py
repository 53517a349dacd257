"""ACP 2026-04-17 Cart API rendering: a core :class:`~flask_acp.models.Cart`
to the ``Cart`` object of ``schema.cart.json`` (request schemas:
:data:`.schemas.CART_SCHEMAS`).

Line items are the checkout ``LineItem`` (as in a session); ``totals`` are
estimates: ``items_base_amount``, ``subtotal`` and ``total`` always,
``items_discount``, ``discount``, ``tax`` and ``fee`` when not zero (a cart
has no address, so the tax is usually unknown and left out, as the cart RFC
allows); so are a line's ``discount`` and ``tax``. Lines that cannot be bought
count in no total; the messages say why.
"""

from __future__ import annotations

import typing as t

from ...i18n import text
from ...models import JSON
from ...models import Cart
from ...models import PricedLine
from ..common import time as _time
from ..common import total as _total
from .render import _message
from .render import line_body

__all__ = ["render_cart"]

def _line(line: PricedLine, language: str) -> dict[str, JSON]:
    """A cart's ``LineItem``: as a session's, but ``discount`` and ``tax`` only
    when not zero (as the cart's own totals: a cart without an address has no
    known tax, and a line saying ``tax: 0`` would claim one)."""
    amounts = (line.base_amount, line.discount, line.subtotal, line.tax, line.total) \
        if line.purchasable else (0, 0, 0, 0, 0)
    body = line_body(line, amounts, language)
    body["totals"] = [entry for entry in t.cast(list[dict[str, JSON]], body["totals"])
                      if entry["type"] not in ("discount", "tax") or entry["amount"]]
    return body


def render_cart(cart: Cart, *, language: str, continue_url: str | None = None) -> dict[str, JSON]:
    """The ``Cart`` JSON object.

    :param language: language of ``display_text`` and message contents.
    :param continue_url: the cart's ``continue_url`` (None: left out).
    """
    totals = cart.totals
    out_totals = [_total("items_base_amount", totals.items_base_amount,
                         text(language, "total.items_base_amount"))]
    for kind, amount in (("items_discount", totals.items_discount), ("subtotal", None),
                         ("discount", totals.discount), ("tax", totals.tax), ("fee", totals.fee)):
        if amount is None:
            out_totals.append(_total("subtotal", totals.subtotal, text(language, "total.subtotal")))
        elif amount:
            out_totals.append(_total(kind, amount, text(language, f"total.{kind}")))
    out_totals.append(_total("total", totals.total, text(language, "total.total")))
    out: dict[str, JSON] = {
        "id": cart.id,
        "line_items": [_line(line, language) for line in cart.quote.lines],
        "currency": cart.currency,
        "totals": out_totals,
        "messages": [_message(m, language) for m in cart.quote.messages],
    }
    if cart.buyer:
        out["buyer"] = cart.buyer
    if continue_url:
        out["continue_url"] = continue_url
    out["expires_at"] = _time(cart.expires_at)
    return out
