"""Catalog records: what a platform lists for the product feed, version-free.

An adapter that can list its catalog (:meth:`flask_acp.adapter.PlatformAdapter.iter_products`)
yields :class:`ProductRecord` values; a wire version renders them as the feed's
``Product`` JSON (ACP 2026-04-17: ``flask_acp.versions.v2026_04_17.feed``,
``schema.feed.json``). Field names follow that schema; money is an ``int`` in
ISO 4217 minor units with the uppercase currency code beside it, converted in
each adapter's mapping module (never a float).

The ids are the ids the checkout accepts: a :class:`VariantRecord`'s ``id`` is
an ACP item id (``line_items[].id``), so an agent can buy what it read in the feed.
"""

from __future__ import annotations

import dataclasses

#: the outbox event kind of an incremental feed update: ``PATCH /feeds/{id}/products``
#: with the current state of one product (:mod:`flask_acp.feed.sync`).
FEED_PRODUCTS_EVENT = "feed_products"

#: ``Availability.status`` values known to the spec (the field is extensible).
AVAILABILITY_STATUSES = ("in_stock", "limited_stock", "backorder", "preorder", "out_of_stock",
                         "discontinued")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Money:
    """``Price``: ``amount`` in ISO 4217 minor units (>= 0) of ``currency`` (uppercase)."""

    amount: int
    currency: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MediaRecord:
    """``Media``: ``type`` (``image``...), absolute ``url``, optional alt text and pixel size."""

    url: str
    type: str = "image"
    alt_text: str | None = None
    width: int | None = None
    height: int | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class VariantRecord:
    """One purchasable variant (``Variant``).

    :ivar id: the ACP item id the checkout accepts for it.
    :ivar price: the active selling price.
    :ivar list_price: the reference (pre-discount) price, when the platform has one
        above ``price`` (Shopify ``compareAtPrice``, WooCommerce ``regular_price``
        of an item on sale).
    :ivar available: whether it can be bought now.
    :ivar status: an ``Availability.status`` (see :data:`AVAILABILITY_STATUSES`).
    :ivar barcodes: ``(type, value)`` pairs, e.g. ``("GTIN", "00012345600012")``.
    :ivar options: ``(name, value)`` pairs (``("Size", "M")``).
    """

    id: str
    title: str
    price: Money | None = None
    list_price: Money | None = None
    available: bool = True
    status: str = "in_stock"
    description: str | None = None
    url: str | None = None
    sku: str | None = None
    barcodes: tuple[tuple[str, str], ...] = ()
    options: tuple[tuple[str, str], ...] = ()
    media: tuple[MediaRecord, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ProductRecord:
    """A product grouping its variants (``Product``).

    :ivar id: the platform's stable product id (the feed upserts by it).
    :ivar description: plain text.
    :ivar url: the product page.
    """

    id: str
    title: str | None = None
    description: str | None = None
    url: str | None = None
    media: tuple[MediaRecord, ...] = ()
    variants: tuple[VariantRecord, ...] = ()


def availability_status(*, available: bool, quantity: int | None, backorder: bool = False,
                        low_stock: int = 0) -> str:
    """The ``Availability.status`` of a variant: ``out_of_stock`` when it cannot
    be bought, ``backorder`` when it sells past zero stock, ``limited_stock``
    when ``quantity`` (None: untracked) is at most ``low_stock``, else ``in_stock``."""
    if not available:
        return "out_of_stock"
    if quantity is not None and quantity <= 0 and backorder:
        return "backorder"
    if quantity is not None and 0 < quantity <= low_stock:
        return "limited_stock"
    return "in_stock"
