"""Catalog records as ACP 2026-04-17 feed JSON (``schema.feed.json``,
``openapi.feed.yaml``; spec digest §3.1, §18.10).

:func:`render_product` turns a :class:`~flask_acp.products.ProductRecord` into a
``Product``: ``{id, title?, description?: {plain}, url?, media?: [Media],
variants: [Variant]}``; a ``Variant`` is ``{id, title, description?, url?,
barcodes?, price?, list_price?, availability: {available, status},
variant_options?, media?}`` with ``Price = {amount: int minor units, currency:
"USD"}``. Empty optional fields are left out (the schema's ``Description``
needs at least one property, and ``Media.url`` must be a URI).
"""

from __future__ import annotations

import collections.abc as cabc
import typing as t

from ...products import MediaRecord
from ...products import Money
from ...products import ProductRecord
from ...products import VariantRecord

#: the feed API version these shapes belong to.
FEED_VERSION = "2026-04-17"


def _price(money: Money) -> dict[str, t.Any]:
    return {"amount": money.amount, "currency": money.currency.upper()}


def _media(media: tuple[MediaRecord, ...]) -> list[dict[str, t.Any]]:
    out = []
    for m in media:
        item: dict[str, t.Any] = {"type": m.type, "url": m.url}
        if m.alt_text:
            item["alt_text"] = m.alt_text
        if m.width is not None:
            item["width"] = m.width
        if m.height is not None:
            item["height"] = m.height
        out.append(item)
    return out


def render_variant(variant: VariantRecord) -> dict[str, t.Any]:
    """A ``Variant`` object."""
    out: dict[str, t.Any] = {"id": variant.id, "title": variant.title}
    if variant.description:
        out["description"] = {"plain": variant.description}
    if variant.url:
        out["url"] = variant.url
    if variant.barcodes:
        out["barcodes"] = [{"type": kind, "value": value} for kind, value in variant.barcodes]
    if variant.price is not None:
        out["price"] = _price(variant.price)
    if variant.list_price is not None:
        out["list_price"] = _price(variant.list_price)
    out["availability"] = {"available": variant.available, "status": variant.status}
    if variant.options:
        out["variant_options"] = [{"name": name, "value": value} for name, value in variant.options]
    if variant.media:
        out["media"] = _media(variant.media)
    return out


def render_product(product: ProductRecord) -> dict[str, t.Any]:
    """A ``Product`` object (one line of ``products.jsonl``, one item of
    ``UpsertProductsRequest.products``)."""
    out: dict[str, t.Any] = {"id": product.id}
    if product.title:
        out["title"] = product.title
    if product.description:
        out["description"] = {"plain": product.description}
    if product.url:
        out["url"] = product.url
    if product.media:
        out["media"] = _media(product.media)
    out["variants"] = [render_variant(v) for v in product.variants]
    return out


#: the ``Availability`` of a variant whose product the platform no longer lists
DISCONTINUED: dict[str, t.Any] = {"available": False, "status": "discontinued"}


def render_withdrawn(product_id: str, variants: cabc.Sequence[tuple[str, str]]) -> dict[str, t.Any]:
    """The ``Product`` that withdraws one the platform no longer lists (deleted,
    unpublished): the Feed API has no delete (a ``PATCH`` upserts by
    ``Product.id``; omitted products stay as they were), so the product is
    upserted with its variants as last pushed, ``(id, title)``, each
    ``availability: {available: false, status: "discontinued"}``; with none
    known, ``variants: []`` (nothing left to buy)."""
    return {"id": product_id,
            "variants": [{"id": vid, "title": title, "availability": dict(DISCONTINUED)}
                         for vid, title in variants]}
