"""Load an ACP product feed (``schema.feed.json``, ACP 2026-04-17) into catalog items.

Accepted files:

* ``*.json``: ``{"products": [Product, ...]}`` (the ``ProductsResponse`` /
  ``UpsertProductsRequest`` shape);
* ``*.jsonl`` / ``*.ndjson``: JSON Lines, one ``Product`` object per line
  (blank lines ignored).

Each ``Variant`` is one purchasable item; its ``id`` is the ACP item id. The
fields used are::

    Product  {id, title?, description?: {plain?}, media?: [Media], variants: [Variant]}
    Variant  {id, title, description?: {plain?}, media?: [Media],
              price: {amount: int minor units >= 0, currency: "USD"},
              availability?: {available?: bool, status?: str}}
    Media    {type, url}          (only ``type == "image"`` is used)

For the product feed (:func:`load_catalog`) ``url``, ``list_price``,
``variant_options``, ``barcodes`` and media ``alt_text``/``width``/``height``
are read too. Everything else in the feed is ignored (``unknown=EXCLUDE``). ``price`` is
required here although the feed schema makes it optional: a variant without a
price cannot be sold. ``availability`` defaults to ``{available: true,
status: "in_stock"}``; ``available: false`` or a status of ``out_of_stock`` /
``discontinued`` makes the variant unsellable whatever the stock says.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import typing as t

from iso4217 import Currency
from marshmallow import EXCLUDE
from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import validate
from marshmallow import validates

from flask_acp.products import MediaRecord
from flask_acp.products import Money
from flask_acp.products import ProductRecord
from flask_acp.products import VariantRecord

from ._fields import MinorUnits
from ._fields import flatten_errors

#: feed ``availability.status`` values that make a variant unsellable.
UNSELLABLE_STATUSES = frozenset({"out_of_stock", "discontinued"})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CatalogItem:
    """One purchasable variant.

    :ivar item_id: the variant id (the ACP item id).
    :ivar product_id: the parent product's id.
    :ivar name: the variant title.
    :ivar description: ``description.plain`` of the variant, else of the product.
    :ivar images: image URLs of the variant, else of the product.
    :ivar unit_amount: price of one unit, minor units of ``currency``.
    :ivar currency: uppercase ISO 4217 code, as in the feed.
    :ivar available: ``False`` when the feed says the variant cannot be bought.
    :ivar status: the feed's ``availability.status`` (``in_stock``,
        ``limited_stock``, ``backorder``, ``preorder``, ...).
    """

    item_id: str
    product_id: str
    name: str
    description: str | None
    images: tuple[str, ...]
    unit_amount: int
    currency: str
    available: bool
    status: str


class _Base(Schema):
    class Meta:
        unknown = EXCLUDE


class _Description(_Base):
    plain = fields.String()


class _Media(_Base):
    type = fields.String(required=True)
    url = fields.String(required=True)
    alt_text = fields.String()
    width = fields.Integer(strict=True)
    height = fields.Integer(strict=True)


class _Option(_Base):
    name = fields.String(required=True)
    value = fields.String(required=True)


class _Barcode(_Base):
    type = fields.String(required=True)
    value = fields.String(required=True)


class _Price(_Base):
    amount = MinorUnits(required=True)
    currency = fields.String(required=True, validate=validate.Regexp(
        r"^[A-Z]{3}$", error="must be an uppercase ISO 4217 code like \"USD\""))

    @validates("currency")
    def _known_currency(self, value: str, **kwargs: t.Any) -> None:
        try:
            Currency(value)
        except ValueError:
            raise ValidationError(f"{value!r} is not an ISO 4217 currency") from None


class _Availability(_Base):
    available = fields.Boolean(truthy={True}, falsy={False})
    status = fields.String()


class _Variant(_Base):
    id = fields.String(required=True, validate=validate.Length(min=1))
    title = fields.String(required=True)
    description = fields.Nested(_Description)
    price = fields.Nested(_Price, required=True)
    list_price = fields.Nested(_Price)
    availability = fields.Nested(_Availability)
    media = fields.List(fields.Nested(_Media))
    url = fields.String()
    variant_options = fields.List(fields.Nested(_Option))
    barcodes = fields.List(fields.Nested(_Barcode))


class _Product(_Base):
    id = fields.String(required=True, validate=validate.Length(min=1))
    title = fields.String()
    description = fields.Nested(_Description)
    media = fields.List(fields.Nested(_Media))
    url = fields.String()
    variants = fields.List(fields.Nested(_Variant), required=True)


class _Feed(_Base):
    products = fields.List(fields.Nested(_Product), required=True)


_PATH_RE = re.compile(r"^products\[(\d+)\](?:\.variants\[(\d+)\])?\.?(.*)$")


def load_feed(path: str | pathlib.Path) -> dict[str, CatalogItem]:
    """Read and validate a feed file: its variants as catalog items (see
    :func:`load_catalog`)."""
    return load_catalog(path)[0]


def load_catalog(path: str | pathlib.Path) -> tuple[dict[str, CatalogItem], tuple[ProductRecord, ...]]:
    """Read and validate a feed file.

    :param path: a ``.json`` feed (``{"products": [...]}``) or a ``.jsonl`` /
        ``.ndjson`` file with one Product per line.
    :returns: variant id -> :class:`CatalogItem`, in feed order; and the
        products as :class:`~flask_acp.products.ProductRecord` (the fields read,
        the feed's own availability: the adapter overlays its stock).
    :raises ValueError: unreadable JSON, a schema violation (the message names
        the product and variant index and id, e.g. ``product 1 (id "prod_mug"),
        variant 0 (id "mug_white"): price.amount: must be an integer amount in
        minor units ..., not the float 18.0``), or a variant id used twice.
    :raises OSError: the file cannot be read.
    """
    path = pathlib.Path(path)
    text = path.read_text(encoding="utf-8")
    lines: list[int] | None = None
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        raw_products, lines = _read_json_lines(path, text)
        data: t.Any = {"products": raw_products}
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"feed {path}: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f'feed {path}: must be a JSON object {{"products": [...]}}')
    try:
        feed = _Feed().load(data)
    except ValidationError as exc:
        raw = data.get("products")
        raw = raw if isinstance(raw, list) else []
        problems = [
            _describe(where, problem, raw, lines)
            for where, problem in flatten_errors(exc.messages)
        ]
        raise ValueError(f"feed {path}: " + "; ".join(problems)) from None
    return _items(path, feed["products"]), tuple(_record(p) for p in feed["products"])


def _read_json_lines(path: pathlib.Path, text: str) -> tuple[list[t.Any], list[int]]:
    """Parse JSON Lines; returns the values and the line number of each."""
    products: list[t.Any] = []
    lines: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            products.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"feed {path}: line {number}: invalid JSON: {exc.msg} (column {exc.colno})"
            ) from None
        lines.append(number)
    return products, lines


def _describe(where: str, problem: str, raw: list[t.Any], lines: list[int] | None) -> str:
    """``products[1].variants[0].price.amount`` ->
    ``product 1 (id "p"), variant 0 (id "v"): price.amount``."""
    match = _PATH_RE.match(where)
    if match is None:
        return f"{where}: {problem}" if where else problem
    p_index = int(match[1])
    product = raw[p_index] if p_index < len(raw) and isinstance(raw[p_index], dict) else {}
    label = f"product {p_index}"
    details = []
    if lines is not None and p_index < len(lines):
        details.append(f"line {lines[p_index]}")
    if isinstance(product.get("id"), str):
        details.append(f"id {json.dumps(product['id'])}")
    if details:
        label += f" ({', '.join(details)})"
    if match[2] is not None:
        v_index = int(match[2])
        variants = product.get("variants")
        if not isinstance(variants, list):
            variants = []
        variant = variants[v_index] if v_index < len(variants) else {}
        label += f", variant {v_index}"
        if isinstance(variant, dict) and isinstance(variant.get("id"), str):
            label += f" (id {json.dumps(variant['id'])})"
    field = match[3]
    return f"{label}: {field}: {problem}" if field else f"{label}: {problem}"


def _items(path: pathlib.Path, products: list[dict[str, t.Any]]) -> dict[str, CatalogItem]:
    items: dict[str, CatalogItem] = {}
    where: dict[str, str] = {}
    for p_index, product in enumerate(products):
        product_images = _images(product.get("media", []))
        product_text = product.get("description", {}).get("plain")
        for v_index, variant in enumerate(product["variants"]):
            here = f"product {p_index} (id {json.dumps(product['id'])}), variant {v_index}"
            item_id = variant["id"]
            if item_id in items:
                raise ValueError(
                    f"feed {path}: {here}: variant id {json.dumps(item_id)} is already used by "
                    f"{where[item_id]}; variant ids are item ids and must be unique"
                )
            availability = variant.get("availability", {})
            available = availability.get("available", True)
            status = availability.get("status") or ("in_stock" if available else "out_of_stock")
            items[item_id] = CatalogItem(
                item_id=item_id,
                product_id=product["id"],
                name=variant["title"],
                description=variant.get("description", {}).get("plain") or product_text,
                images=_images(variant.get("media", [])) or product_images,
                unit_amount=variant["price"]["amount"],
                currency=variant["price"]["currency"],
                available=available and status not in UNSELLABLE_STATUSES,
                status=status,
            )
            where[item_id] = here
    return items


def _media(media: list[dict[str, t.Any]]) -> tuple[MediaRecord, ...]:
    return tuple(MediaRecord(url=m["url"], type=m["type"], alt_text=m.get("alt_text"),
                             width=m.get("width"), height=m.get("height")) for m in media)


def _money(price: dict[str, t.Any] | None) -> Money | None:
    return None if price is None else Money(amount=price["amount"], currency=price["currency"])


def _record(product: dict[str, t.Any]) -> ProductRecord:
    variants = []
    for variant in product["variants"]:
        availability = variant.get("availability", {})
        available = availability.get("available", True)
        status = availability.get("status") or ("in_stock" if available else "out_of_stock")
        variants.append(VariantRecord(
            id=variant["id"], title=variant["title"], price=_money(variant["price"]),
            list_price=_money(variant.get("list_price")),
            available=available and status not in UNSELLABLE_STATUSES, status=status,
            description=variant.get("description", {}).get("plain"), url=variant.get("url"),
            barcodes=tuple((b["type"], b["value"]) for b in variant.get("barcodes", [])),
            options=tuple((o["name"], o["value"]) for o in variant.get("variant_options", [])),
            media=_media(variant.get("media", []))))
    return ProductRecord(id=product["id"], title=product.get("title"),
                         description=product.get("description", {}).get("plain"), url=product.get("url"),
                         media=_media(product.get("media", [])), variants=tuple(variants))


def _images(media: list[dict[str, t.Any]]) -> tuple[str, ...]:
    return tuple(m["url"] for m in media if m["type"] == "image")
