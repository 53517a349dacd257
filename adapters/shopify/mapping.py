"""Pure conversions between Shopify Admin GraphQL JSON and flask-acp values.

Every money conversion of the Shopify adapter happens here, with
:class:`decimal.Decimal` only (never ``float``):

* Shopify returns money as ``MoneyV2 {amount: Decimal, currencyCode}`` where
  ``amount`` is a decimal *string* whose trailing zeros are not guaranteed
  (``"10.0"``), usually inside a ``MoneyBag {shopMoney, presentmentMoney}``
  (https://shopify.dev/docs/api/admin-graphql/latest/objects/MoneyBag).
* flask-acp wants ``int`` minor units of the session currency, whose exponent
  comes from ISO 4217 (the ``iso4217`` package): USD 2, JPY 0, KWD 3.
* An amount the currency cannot represent (``"12.345"`` USD, ``"0.5"`` JPY) is
  refused with :class:`AmountNotRepresentableError`, never rounded.

Nothing here does I/O; the functions take parsed JSON (``dict``/``list``) and
return flask-acp values or plain dataclasses.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import datetime as dt
import decimal
import hashlib
import typing as t

from iso4217 import Currency

from flask_acp.models import JSON
from flask_acp.models import AppliedDiscount
from flask_acp.models import DiscountAllocation
from flask_acp.models import FulfillmentOption
from flask_acp.models import RejectedDiscount
from flask_acp.products import MediaRecord
from flask_acp.products import Money
from flask_acp.products import ProductRecord
from flask_acp.products import VariantRecord

__all__ = [
    "VARIANT_GID_PREFIX",
    "AmountNotRepresentableError",
    "CurrencyMismatchError",
    "DraftAmounts",
    "LineAmounts",
    "StockVerdict",
    "address_input",
    "draft_amounts",
    "exponent",
    "gid_tail",
    "implied_fx",
    "minor_to_decimal_string",
    "money",
    "money_v2",
    "option_id",
    "parse_datetime",
    "product_record",
    "rate_amount",
    "rate_options",
    "reserve_until",
    "stock_verdict",
    "to_minor",
    "variant_gid",
]

#: prefix of a product variant's global id (``gid://shopify/ProductVariant/4449``).
VARIANT_GID_PREFIX = "gid://shopify/ProductVariant/"

class AmountNotRepresentableError(ValueError):
    """A Shopify amount has more decimals than its currency's ISO 4217 exponent.

    :ivar amount: the decimal string as Shopify sent it.
    :ivar currency: uppercase ISO 4217 code.
    """

    def __init__(self, amount: str, currency: str) -> None:
        super().__init__(
            f"the amount {amount} {currency} cannot be expressed in {currency}, which has "
            f"{exponent(currency)} decimals"
        )
        self.amount = amount
        self.currency = currency


class CurrencyMismatchError(ValueError):
    """A ``MoneyBag`` holds neither its shop nor its presentment money in the wanted currency."""


def exponent(currency: str) -> int:
    """ISO 4217 exponent (number of minor-unit digits) of ``currency`` (any case).

    :raises CurrencyMismatchError: not an ISO 4217 code.
    """
    member = Currency.__members__.get(currency.upper())
    if member is None or member.exponent is None:
        raise CurrencyMismatchError(f"{currency!r} is not an ISO 4217 currency with minor units")
    return int(member.exponent)


def to_minor(amount: str | int, currency: str) -> int:
    """Convert a Shopify ``Decimal`` amount (string, e.g. ``"29.99"``, ``"10.0"``)
    to an integer count of minor units of ``currency``.

    :raises AmountNotRepresentableError: the amount has more decimals than the
        currency (``"12.345"`` USD), or is not a finite number.
    """
    text = str(amount).strip()
    try:
        value = decimal.Decimal(text)
    except decimal.InvalidOperation:
        raise AmountNotRepresentableError(text, currency.upper()) from None
    if not value.is_finite():
        raise AmountNotRepresentableError(text, currency.upper())
    scaled = value.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise AmountNotRepresentableError(text, currency.upper())
    return int(scaled)


def minor_to_decimal_string(minor: int, currency: str) -> str:
    """The Shopify ``Decimal`` string for ``minor`` units of ``currency``
    (``1999, "usd"`` -> ``"19.99"``; ``1500, "jpy"`` -> ``"1500"``)."""
    exp = exponent(currency)
    return str(decimal.Decimal(minor).scaleb(-exp).quantize(decimal.Decimal(1).scaleb(-exp)))


def money_v2(node: cabc.Mapping[str, JSON] | None, currency: str) -> int:
    """Minor units of a ``MoneyV2 {amount currencyCode}`` that must be in ``currency``.

    :raises CurrencyMismatchError: missing, or in another currency.
    :raises AmountNotRepresentableError: see :func:`to_minor`.
    """
    if not node:
        raise CurrencyMismatchError("missing MoneyV2 value")
    code = str(node.get("currencyCode") or "")
    if code.upper() != currency.upper():
        raise CurrencyMismatchError(
            f"Shopify returned {node.get('amount')} {code}, expected {currency.upper()}")
    return to_minor(t.cast(str, node.get("amount")), currency)


def money(bag: cabc.Mapping[str, JSON] | None, currency: str) -> int:
    """Minor units of a ``MoneyBag`` in ``currency``: its ``presentmentMoney``
    when that is in ``currency`` (a draft with ``presentmentCurrencyCode``),
    else its ``shopMoney``.

    :raises CurrencyMismatchError: neither side is in ``currency``.
    :raises AmountNotRepresentableError: see :func:`to_minor`.
    """
    if not bag:
        raise CurrencyMismatchError("missing MoneyBag value")
    for side in ("presentmentMoney", "shopMoney"):
        node = bag.get(side)
        if isinstance(node, dict) and str(node.get("currencyCode", "")).upper() == currency.upper():
            return to_minor(t.cast(str, node["amount"]), currency)
    raise CurrencyMismatchError(f"no {currency.upper()} amount in Shopify MoneyBag {dict(bag)!r}")


def _sum_tax(tax_lines: JSON, currency: str) -> int:
    return sum(money(line.get("priceSet"), currency) for line in (tax_lines or []))


# --- ids -------------------------------------------------------------------------


def variant_gid(item_id: str) -> str | None:
    """The ``ProductVariant`` GID of an ACP item id: a numeric variant id
    (``"4449"``) or the GID itself. ``None`` when it can be neither (never
    sent to Shopify: such an item does not exist)."""
    if item_id.isascii() and item_id.isdigit():
        return VARIANT_GID_PREFIX + str(int(item_id))
    if item_id.startswith(VARIANT_GID_PREFIX):
        tail = item_id[len(VARIANT_GID_PREFIX):]
        if tail.isascii() and tail.isdigit():
            return item_id
    return None


def gid_tail(gid: str) -> str:
    """The numeric id at the end of a GID (``gid://shopify/Product/7`` -> ``"7"``)."""
    return gid.rsplit("/", 1)[-1]


def option_id(rate: cabc.Mapping[str, JSON]) -> str:
    """A stable ACP fulfillment option id for a ``DraftOrderShippingRate``:
    ``ship_`` + 12 hex of SHA-256 over source, code and title. (Rate
    ``handle`` values are opaque and may change between calls.)"""
    key = "\x1f".join(str(rate.get(k) or "") for k in ("source", "code", "title"))
    return "ship_" + hashlib.sha256(key.encode()).hexdigest()[:12]


# --- addresses -------------------------------------------------------------------


def address_input(address: cabc.Mapping[str, JSON], *, phone: str | None = None) -> dict[str, JSON]:
    """A Shopify ``MailingAddressInput`` from an ACP ``Address``
    (``name, line_one, line_two?, city, state, country, postal_code, company?``).

    The full ``name`` is split at its last space into ``firstName`` and
    ``lastName`` (a one-word name is the ``lastName``).
    """
    name = str(address.get("name") or "").strip()
    first, _, last = name.rpartition(" ")
    out: dict[str, JSON] = {
        "firstName": first or None,
        "lastName": last or None,
        "address1": address.get("line_one"),
        "address2": address.get("line_two"),
        "city": address.get("city"),
        "provinceCode": address.get("state"),
        "countryCode": str(address.get("country") or "").upper() or None,
        "zip": address.get("postal_code"),
        "company": address.get("company"),
        "phone": phone,
    }
    return {k: v for k, v in out.items() if v not in (None, "")}


# --- stock -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class StockVerdict:
    """What a variant's stock allows for a requested quantity.

    :ivar status: ``ok``, ``out_of_stock`` or ``quantity_exceeded``.
    :ivar available: units this session may buy (``None``: not limited).
    :ivar availability_status: ACP ``LineItem.availability_status``.
    """

    status: str
    available: int | None
    availability_status: str


def stock_verdict(variant: cabc.Mapping[str, JSON], quantity: int, held: int = 0) -> StockVerdict:
    """Decide whether ``quantity`` units of a ``ProductVariant`` can be sold.

    Only variants whose ``inventoryItem.tracked`` is true and whose
    ``inventoryPolicy`` is ``DENY`` are limited; their limit is
    ``sellableOnlineQuantity`` plus ``held``, the units this session's own
    draft already reserves (Shopify counts reserved units as unavailable).
    Other variants are out of stock only when ``availableForSale`` is false.
    """
    item = variant.get("inventoryItem") or {}
    limited = bool(item.get("tracked")) and variant.get("inventoryPolicy") == "DENY"
    if not limited:
        if not variant.get("availableForSale", True) and held == 0:
            return StockVerdict("out_of_stock", 0, "out_of_stock")
        sellable = variant.get("sellableOnlineQuantity")
        backorder = isinstance(sellable, int) and bool(item.get("tracked")) and sellable + held <= 0
        return StockVerdict("ok", None, "backorder" if backorder else "in_stock")
    available = max(0, int(t.cast(int, variant.get("sellableOnlineQuantity") or 0)) + held)
    if available <= 0:
        return StockVerdict("out_of_stock", 0, "out_of_stock")
    if available < quantity:
        return StockVerdict("quantity_exceeded", available, "low_stock")
    return StockVerdict("ok", available, "in_stock")


# --- delivery options ------------------------------------------------------------


def rate_options(
    delivery: cabc.Mapping[str, JSON] | None,
    *,
    currency: str,
    item_ids: cabc.Sequence[str],
    fx: str | None = None,
) -> tuple[list[FulfillmentOption], dict[str, dict[str, JSON]]]:
    """ACP options from a ``DraftOrderAvailableDeliveryOptions`` result
    (``availableShippingRates`` as ``shipping``, then ``availableLocalDeliveryRates``
    as ``local_delivery``; each ``{handle title code source price{amount currencyCode}}``).

    The option ``amount`` is the rate's price in minor units of ``currency``
    (see :func:`rate_amount` for a price in another currency). The ``carrier``
    is the rate ``source`` unless that is Shopify itself (manual rates);
    Shopify gives no delivery window for draft-order rates.

    :param item_ids: the items the options ship (every shipped item).
    :returns: the options and, per option id, ``{handle, title, code, source, price}``.
    :raises AmountNotRepresentableError: a price has too many decimals for its currency.
    """
    options: list[FulfillmentOption] = []
    rates: dict[str, dict[str, JSON]] = {}
    groups = (
        ("shipping", (delivery or {}).get("availableShippingRates") or []),
        ("local_delivery", (delivery or {}).get("availableLocalDeliveryRates") or []),
    )
    for kind, group in groups:
        for rate in t.cast(list[dict[str, JSON]], group):
            oid = option_id(rate)
            if oid in rates:
                continue
            price = dict(t.cast(dict[str, JSON], rate.get("price") or {}))
            source = str(rate.get("source") or "")
            carrier = source if source and source.lower() not in ("shopify", "manual", "custom") else None
            options.append(FulfillmentOption(
                type=kind, id=oid, title=str(rate.get("title") or "Shipping"),
                item_ids=tuple(item_ids), amount=rate_amount(price, currency, fx), carrier=carrier,
            ))
            rates[oid] = {"handle": rate.get("handle"), "title": rate.get("title"),
                          "code": rate.get("code"), "source": source, "price": price}
    return options, rates


def rate_amount(price: cabc.Mapping[str, JSON], currency: str, fx: str | None) -> int:
    """Minor units of ``currency`` for a rate ``price`` (``MoneyV2``).

    A price in another currency (Shopify may quote rates in the shop currency
    for a draft in a presentment currency) is converted with ``fx``
    (a decimal string: ``currency`` units per unit of the price's currency,
    see :func:`implied_fx`; half-up to the exponent) as an estimate: the
    selected rate's exact amount is read back from the draft. Without ``fx``
    the estimate uses 1, which only keeps the rates' order (to pick the cheapest).

    :raises AmountNotRepresentableError: a price has too many decimals for its currency.
    """
    code = str(price.get("currencyCode") or currency).upper()
    amount = str(price.get("amount") or "0")
    if code == currency.upper():
        return to_minor(amount, currency)
    to_minor(amount, code)  # refuse what the rate's own currency cannot represent
    try:
        rate = decimal.Decimal(fx) if fx else decimal.Decimal(1)
    except decimal.InvalidOperation:
        rate = decimal.Decimal(1)
    value = decimal.Decimal(amount) * rate
    return int(value.scaleb(exponent(currency)).quantize(decimal.Decimal(1), rounding=decimal.ROUND_HALF_UP))


def implied_fx(draft: cabc.Mapping[str, JSON], currency: str) -> str | None:
    """Presentment units per shop unit implied by a draft's ``subtotalPriceSet``,
    as a decimal string (``None`` when the draft is in the shop currency or empty)."""
    bag = t.cast(dict[str, dict[str, str]] | None, draft.get("subtotalPriceSet"))
    if not bag:
        return None
    shop, pres = bag.get("shopMoney") or {}, bag.get("presentmentMoney") or {}
    if str(pres.get("currencyCode", "")).upper() != currency.upper():
        return None
    try:
        shop_amount = decimal.Decimal(str(shop.get("amount")))
        pres_amount = decimal.Decimal(str(pres.get("amount")))
    except decimal.InvalidOperation:
        return None
    if not shop_amount or str(shop.get("currencyCode", "")).upper() == currency.upper():
        return None
    return str(pres_amount / shop_amount)


# --- draft totals ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class LineAmounts:
    """One draft line in minor units, shaped for :class:`flask_acp.models.PricedLine`
    (``unit_amount * quantity - discount + tax`` is the line's total)."""

    variant_id: str
    quantity: int
    unit_amount: int
    discount: int
    tax: int


@dataclasses.dataclass(frozen=True, slots=True)
class DraftAmounts:
    """A draft order's money in minor units of the session currency, reconciled
    so that the parts add up to Shopify's ``totalPriceSet`` exactly::

        sum(line totals) - discount + shipping + shipping_tax + fee == total

    :ivar lines: by variant GID.
    :ivar shipping: the shipping line's price without its tax.
    :ivar total: ``totalPriceSet``; what the buyer is charged.
    :ivar tax: ``totalTaxSet`` as Shopify reports it (informational).
    """

    lines: dict[str, LineAmounts]
    shipping: int
    shipping_tax: int
    discount: int
    fee: int
    total: int
    tax: int
    taxes_included: bool


def draft_amounts(draft: cabc.Mapping[str, JSON], currency: str) -> DraftAmounts:
    """Read a ``DraftOrder`` (the adapter's ``AcpDraft`` fragment) in minor units of ``currency``.

    Per line: ``base = originalTotalSet``, ``discount = originalTotalSet -
    discountedTotalSet``, ``tax = sum(taxLines.priceSet)``. When
    ``taxesIncluded`` is true, Shopify's prices contain the tax; ACP adds tax
    on top, so lines and shipping are reported net (``base - tax``) with the
    tax beside them, which keeps each line's total equal to Shopify's.
    ``unit_amount`` is ``base // quantity``; a remainder, and any difference
    between the parts and ``totalPriceSet`` (Shopify rounding tax per order,
    order-level discounts, fees), is absorbed per platforms.md §1.2 rule 4:
    up to one minor unit per line goes into the tax of the line with the most
    tax, a larger shortfall becomes the order ``discount``, a larger excess a
    ``fee``. ``total`` is never changed.

    :raises AmountNotRepresentableError: an amount has too many decimals.
    :raises CurrencyMismatchError: an amount is not in ``currency``.
    """
    included = bool(draft.get("taxesIncluded"))
    nodes = t.cast(list[dict[str, t.Any]], ((draft.get("lineItems") or {}).get("nodes") or []))
    lines: dict[str, LineAmounts] = {}
    for node in nodes:
        variant = node.get("variant") or {}
        gid = str(variant.get("id") or node.get("id"))
        quantity = max(1, int(node.get("quantity") or 1))
        original = money(node.get("originalTotalSet"), currency)
        discounted = money(node.get("discountedTotalSet"), currency)
        tax = _sum_tax(node.get("taxLines"), currency)
        discount = max(0, original - discounted)
        base = original - tax if included else original
        unit = base // quantity
        tax += base - unit * quantity
        previous = lines.get(gid)
        if previous is not None:  # the same variant twice: merge (ACP forbids duplicates)
            quantity += previous.quantity
            total_base = unit * (quantity - previous.quantity) + previous.unit_amount * previous.quantity
            unit = total_base // quantity
            tax += previous.tax + total_base - unit * quantity
            discount += previous.discount
        lines[gid] = LineAmounts(gid, quantity, unit, discount, tax)

    shipping_gross = money(draft.get("totalShippingPriceSet"), currency)
    shipping_line = t.cast(dict[str, t.Any] | None, draft.get("shippingLine"))
    shipping_tax = _sum_tax(shipping_line.get("taxLines"), currency) if shipping_line else 0
    shipping = shipping_gross - shipping_tax if included else shipping_gross
    total = money(draft.get("totalPriceSet"), currency)
    tax_total = money(draft.get("totalTaxSet"), currency)

    computed = sum(x.unit_amount * x.quantity - x.discount + x.tax for x in lines.values())
    computed += shipping + shipping_tax
    residual = total - computed
    discount = fee = 0
    tolerance = len(lines) + 1
    if residual:
        target = max(lines.values(), key=lambda x: (x.tax, x.unit_amount * x.quantity), default=None)
        if target is not None and abs(residual) <= tolerance and target.tax + residual >= 0:
            lines[target.variant_id] = dataclasses.replace(target, tax=target.tax + residual)
        elif residual < 0:
            discount = -residual
        else:
            fee = residual
    return DraftAmounts(lines=lines, shipping=shipping, shipping_tax=shipping_tax, discount=discount,
                        fee=fee, total=total, tax=tax_total, taxes_included=included)


#: Shopify's "discount not applied" warning texts (lower case) -> ``DiscountErrorCode``
_DISCOUNT_REASONS = (
    ("expired", "discount_code_expired"),
    ("minimum", "discount_code_minimum_not_met"),
    ("usage limit", "discount_code_usage_limit_reached"),
    ("combined", "discount_code_combination_disallowed"),
    ("already applied", "discount_code_already_applied"),
    ("customer", "discount_code_user_ineligible"),
)


def discount_rejection(message: str) -> str:
    """The ``discount_code_*`` reason of a ``DraftOrderDiscountNotAppliedWarning``
    from its message; ``discount_code_invalid`` when nothing more precise fits."""
    lowered = message.lower()
    return next((reason for fragment, reason in _DISCOUNT_REASONS if fragment in lowered),
                "discount_code_invalid")


def draft_discounts(draft: cabc.Mapping[str, JSON], currency: str, codes: cabc.Sequence[str],
                    items: cabc.Mapping[str, str]
                    ) -> tuple[tuple[AppliedDiscount, ...], tuple[RejectedDiscount, ...]]:
    """The draft's ``platformDiscounts`` as applied discounts and its
    ``DraftOrderDiscountNotAppliedWarning`` entries as rejected codes.

    Each allocation to a draft line (``reductionAmountSet``, minor units of
    ``currency``) goes to the line's item (``items``: variant GID -> ACP item
    id); any other (shipping, the order) is order-level. The amount is the sum
    of the allocations (Shopify's ``totalAmountPriceSet`` when there are none,
    order-level). A code keeps the agent's spelling (``codes``); a discount
    without one, or ``automaticDiscount``, is automatic.
    """
    requested = {c.casefold(): c for c in codes}
    applied: list[AppliedDiscount] = []
    for node in t.cast(list[dict[str, t.Any]], draft.get("platformDiscounts") or []):
        allocations: list[DiscountAllocation] = []
        for allocation in node.get("allocations") or []:
            amount = money(allocation.get("reductionAmountSet"), currency)
            target = allocation.get("target") or {}
            item_id = items.get(str((target.get("variant") or {}).get("id"))) \
                if target.get("__typename") == "DraftOrderLineItem" else None
            allocations.append(DiscountAllocation(amount=amount, item_id=item_id))
        if not allocations:
            allocations.append(DiscountAllocation(amount=money(node.get("totalAmountPriceSet"), currency)))
        raw = node.get("code")
        automatic = bool(node.get("automaticDiscount")) or not raw
        code = None if automatic else requested.get(str(raw).casefold(), str(raw))
        ident = str(node.get("id") or f"shopify_discount_{str(raw or node.get('title')).casefold()}")
        applied.append(AppliedDiscount(
            id=ident, coupon_id=ident, name=str(node.get("title") or raw or "Discount"), code=code,
            automatic=automatic, amount=sum(a.amount for a in allocations), allocations=tuple(allocations),
            method="each" if node.get("presentationLevel") == "line" else "across"))
    rejected: list[RejectedDiscount] = []
    for warning in t.cast(list[dict[str, t.Any]], draft.get("warnings") or []):
        raw = warning.get("discountCode")
        if raw:
            text = str(warning.get("message") or "")
            rejected.append(RejectedDiscount(code=requested.get(str(raw).casefold(), str(raw)),
                                             reason=discount_rejection(text), content=text or None))
    return tuple(applied), tuple(rejected)


def reserve_until(value: dt.datetime) -> str:
    """An aware datetime as the RFC 3339 UTC string Shopify's ``DateTime`` takes."""
    return value.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_datetime(value: JSON) -> dt.datetime | None:
    """Parse a Shopify ``DateTime`` (``2026-11-29T11:00:00Z``) to an aware datetime."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


# --- product feed ------------------------------------------------------------------


#: a stock-limited variant with this many sellable units or fewer is ``limited_stock`` in the feed.
LOW_STOCK_UNITS = 5

#: digits-only barcode lengths that are GTINs (GTIN-8, UPC-A/GTIN-12, EAN-13, GTIN-14).
_GTIN_LENGTHS = frozenset({8, 12, 13, 14})


def _image(node: cabc.Mapping[str, JSON] | None) -> MediaRecord | None:
    if not node or not node.get("url"):
        return None
    width, height = node.get("width"), node.get("height")
    return MediaRecord(url=str(node["url"]), alt_text=t.cast(str | None, node.get("altText")) or None,
                       width=width if isinstance(width, int) else None,
                       height=height if isinstance(height, int) else None)


def _barcodes(value: JSON) -> tuple[tuple[str, str], ...]:
    text = str(value or "").strip()
    if not text:
        return ()
    gtin = text.isascii() and text.isdigit() and len(text) in _GTIN_LENGTHS
    return (("GTIN" if gtin else "barcode", text),)


def product_record(node: cabc.Mapping[str, JSON], currency: str) -> ProductRecord | None:
    """The feed record of an ``AcpProduct`` node (:data:`.queries.PRODUCTS`).

    Ids are numeric (``legacyResourceId``): the variant's is the ACP item id the
    checkout accepts. ``price`` and ``compareAtPrice`` are ``Money`` decimal
    strings of the shop ``currency``, converted with :func:`to_minor`;
    ``list_price`` is the compare-at price when above the price. Availability
    is :func:`stock_verdict` for one unit (stock-limited variants: ``limited_stock``
    at :data:`LOW_STOCK_UNITS` or fewer sellable units). A product that is not ``ACTIVE`` and
    published is not sellable: ``None``.

    :raises AmountNotRepresentableError: a price the currency cannot express.
    """
    if node.get("status") != "ACTIVE" or not node.get("publishedAt"):
        return None
    url = t.cast(str | None, node.get("onlineStoreUrl")) or None
    media = t.cast(cabc.Mapping[str, JSON] | None, node.get("featuredMedia")) or {}
    featured = _image(t.cast(cabc.Mapping[str, JSON] | None, media.get("image")))
    variants = []
    connection = t.cast(cabc.Mapping[str, JSON], node.get("variants") or {})
    for variant in t.cast(list[cabc.Mapping[str, JSON]], connection.get("nodes") or []):
        item_id = str(variant.get("legacyResourceId") or gid_tail(str(variant["id"])))
        verdict = stock_verdict(variant, 1)
        status = verdict.availability_status
        if status == "in_stock" and verdict.available is not None and verdict.available <= LOW_STOCK_UNITS:
            status = "limited_stock"
        price = to_minor(str(variant["price"]), currency)
        compare = variant.get("compareAtPrice")
        list_price = to_minor(str(compare), currency) if compare not in (None, "") else None
        options = tuple((str(o["name"]), str(o["value"]))
                        for o in t.cast(list[cabc.Mapping[str, JSON]], variant.get("selectedOptions") or [])
                        if not (o.get("name") == "Title" and o.get("value") == "Default Title"))
        image = _image(t.cast(cabc.Mapping[str, JSON] | None, variant.get("image")))
        title = str(variant.get("title") or "")
        variants.append(VariantRecord(
            id=item_id,
            title=str(node.get("title") or "") if title in ("", "Default Title")
            else f"{node.get('title')} - {title}",
            price=Money(amount=price, currency=currency.upper()),
            list_price=Money(amount=list_price, currency=currency.upper())
            if list_price is not None and list_price > price else None,
            available=verdict.status != "out_of_stock", status=status,
            url=f"{url}?variant={item_id}" if url else None,
            sku=t.cast(str | None, variant.get("sku")) or None,
            barcodes=_barcodes(variant.get("barcode")), options=options,
            media=(image,) if image else ()))
    return ProductRecord(
        id=str(node.get("legacyResourceId") or gid_tail(str(node["id"]))),
        title=t.cast(str | None, node.get("title")) or None,
        description=t.cast(str | None, node.get("description")) or None, url=url,
        media=(featured,) if featured else (), variants=tuple(variants))
