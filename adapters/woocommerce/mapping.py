"""Pure conversions between WooCommerce JSON and flask_acp models (no HTTP here).

Money, the only place the WooCommerce adapter touches ``Decimal``:

* Store API (``/wp-json/wc/store/v1``) amounts are **integer strings in the
  store's own minor unit**: ``"1800"`` with ``currency_minor_unit: 2`` is 18.00.
  ``currency_minor_unit`` is the store's "Number of decimals" setting, not ISO
  4217 (a JPY store misconfigured with 2 decimals reports 2).
  :func:`store_amount` rescales to ISO 4217 minor units (``iso4217`` package)
  and raises :class:`PriceNotRepresentable` when a remainder would be lost
  (``"15050"`` JPY at 2 decimals is ¥150.50: JPY has no sub-units).
* REST v3 (``/wp-json/wc/v3``) amounts are **decimal strings** with the store's
  decimals (``"18.00"``): :func:`rest_amount`. The float line item ``price``
  field is never read.

Carts to quotes, :func:`quote_from_cart` (Store API ``CartSchema`` →
:class:`~flask_acp.models.Quote`), per platforms.md §3.3:

* One :class:`PricedLine` per requested line, matched to the cart item whose
  ``id`` (product or variation id) is the ACP item id. ``base_amount =
  totals.line_subtotal``, ``subtotal = line_total``, ``tax = line_total_tax``,
  ``discount = line_subtotal - line_total`` (coupons, also the ones the store
  applies by itself). ACP needs ``base_amount = unit_amount * quantity``; when
  ``line_subtotal`` is not a multiple of the quantity (tax-inclusive stores)
  ``unit_amount`` is rounded **up** and the few minor units of difference are
  added to the line's ``discount``, so subtotal, tax and total stay WooCommerce's.
* Shipping rates become options ``"{package_id}:{rate_id}"`` (``amount =
  price``, ``tax = taxes``), one set per shipping package, covering that
  package's items; the rate WooCommerce has ``selected`` is the selected option.
  Items in no package (virtual products) get one free ``digital`` option.
* ``totals.total_price`` is the charged amount and is never recomputed: what the
  parts do not explain (fee taxes, taxes rounded at subtotal level, per-amount
  half-up rounding) is put on the tax of the line with the largest tax
  (platforms.md §1.2 rule 4), so ``Totals.of(quote).total == total_price``
  whenever every cart item is a purchasable line (the only quotes that can be
  paid; otherwise the cart items that are no such line are left out).
* Cart ``errors`` (stock, not purchasable, coupons) become error messages with
  WooCommerce's own text (``content``) -- except an error naming one of the
  requested discount codes, which rejects that code instead.
* Discount codes (ACP discount extension): each cart ``coupons[]`` entry is an
  applied discount (``code`` as the agent sent it; a coupon the agent did not
  send, one the store applies by itself, is ``automatic``), ``amount =
  totals.total_discount`` (ex tax, like the lines' discounts). The Store API
  gives no per-coupon split of a line's discount, so each coupon, in cart order,
  is allocated over the lines in proportion to the discount they still have
  unexplained (largest remainder, never more than a line's discount); what a
  coupon reports beyond what the lines hold is clipped (a rounding unit), so
  allocations always sum to the amount and to the lines' discounts.
  ``discount_type`` ``percent``/``fixed_product`` is method ``each``,
  ``fixed_cart`` ``across``. Refusals of ``apply-coupon`` map to a
  ``discount_code_*`` reason from WooCommerce's text (:func:`coupon_rejection`).
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import decimal
import html
import re
import typing as t

from iso4217 import Currency

from flask_acp.adapter import split_amount
from flask_acp.models import JSON
from flask_acp.models import AppliedDiscount
from flask_acp.models import DiscountAllocation
from flask_acp.models import FulfillmentOption
from flask_acp.models import LineItemRequest
from flask_acp.models import Message
from flask_acp.models import PricedLine
from flask_acp.models import Quote
from flask_acp.models import RejectedDiscount
from flask_acp.models import SelectedFulfillmentOption
from flask_acp.models import Totals
from flask_acp.products import MediaRecord
from flask_acp.products import Money
from flask_acp.products import ProductRecord
from flask_acp.products import VariantRecord

__all__ = [
    "DIGITAL_OPTION_ID",
    "STOCK_ERROR_CODES",
    "PriceNotRepresentable",
    "cart_currency",
    "customer_payload",
    "format_amount",
    "iso_exponent",
    "minor_to_rest_amount",
    "option_id",
    "parse_option_id",
    "plain_text",
    "product_record",
    "quote_from_cart",
    "refused_quote",
    "rest_amount",
    "store_amount",
    "unrepresentable_message",
]

#: id of the fulfillment option offered for items in no shipping package.
DIGITAL_OPTION_ID = "digital"

#: Store API error codes that mean "not enough stock".
STOCK_ERROR_CODES = frozenset({
    "woocommerce_rest_product_out_of_stock",
    "woocommerce_rest_product_partially_out_of_stock",
    "woocommerce_rest_product_not_enough_stock",
    "woocommerce_product_out_of_stock",
    "woocommerce_product_not_enough_stock",
    "woocommerce_rest_cart_product_no_stock",
})


class PriceNotRepresentable(ValueError):
    """A WooCommerce amount that the currency cannot express in ISO minor units.

    :ivar amount: the amount as WooCommerce gave it (a string).
    :ivar currency: uppercase ISO 4217 code.
    :ivar decimal_value: the amount in currency units (``Decimal("150.50")``).
    """

    def __init__(self, amount: str, currency: str, decimal_value: decimal.Decimal) -> None:
        super().__init__(
            f"{currency} {decimal_value} cannot be expressed in {currency}'s minor unit "
            f"({iso_exponent(currency)} decimals)")
        self.amount = amount
        self.currency = currency
        self.decimal_value = decimal_value


# --- money ----------------------------------------------------------------------------


def iso_exponent(currency: str) -> int:
    """Decimals of ``currency``'s ISO 4217 minor unit (USD 2, JPY 0, KWD 3).

    :raises ValueError: not an ISO 4217 code, or a code without a minor unit (XAU).
    """
    try:
        exponent = Currency(currency.upper()).exponent
    except ValueError:
        raise ValueError(f"{currency!r} is not an ISO 4217 currency code") from None
    if exponent is None:
        raise ValueError(f"{currency!r} has no minor unit and cannot be sold in")
    return int(exponent)


def _integral(value: decimal.Decimal, raw: str, currency: str, units: decimal.Decimal) -> int:
    if value != value.to_integral_value():
        raise PriceNotRepresentable(raw, currency.upper(), units)
    return int(value)


def store_amount(value: JSON, currency_minor_unit: int, currency: str) -> int:
    """A Store API amount (integer string in the store's minor unit) in ISO 4217
    minor units of ``currency``.

    ``store_amount("150000", 2, "JPY") == 1500``; ``store_amount("1800", 2, "USD") == 1800``;
    ``store_amount("5", 0, "USD") == 500``.

    :raises PriceNotRepresentable: the amount has sub-units the currency lacks
        (``store_amount("15050", 2, "JPY")``).
    :raises ValueError: not an integer string, or an unknown currency.
    """
    raw = str(value)
    if not re.fullmatch(r"-?\d+", raw):
        raise ValueError(f"Store API amount {raw!r} is not an integer string")
    store_minor = decimal.Decimal(raw)
    units = store_minor.scaleb(-currency_minor_unit)
    return _integral(units.scaleb(iso_exponent(currency)), raw, currency, units)


def rest_amount(value: JSON, currency: str) -> int:
    """A REST v3 amount (decimal string, e.g. ``"18.00"``, ``"1500"``, ``"12.500"``)
    in ISO 4217 minor units of ``currency``.

    :raises PriceNotRepresentable: more precision than the currency has (``"10.5"`` JPY).
    :raises ValueError: not a decimal string (a float, ``None``), or an unknown currency.
    """
    if not isinstance(value, str):
        raise ValueError(f"REST amount {value!r} is not a decimal string")
    try:
        units = decimal.Decimal(value)
    except decimal.InvalidOperation:
        raise ValueError(f"REST amount {value!r} is not a decimal string") from None
    if not units.is_finite():
        raise ValueError(f"REST amount {value!r} is not a decimal string")
    return _integral(units.scaleb(iso_exponent(currency)), value, currency, units)


def minor_to_rest_amount(amount: int, currency: str) -> str:
    """ISO 4217 minor units as a REST v3 decimal string: ``(1234, "USD") -> "12.34"``,
    ``(1500, "JPY") -> "1500"``, ``(12500, "KWD") -> "12.500"``."""
    exponent = iso_exponent(currency)
    return str(decimal.Decimal(amount).scaleb(-exponent).quantize(decimal.Decimal(1).scaleb(-exponent)))


def format_amount(value: JSON, currency_minor_unit: int, currency: str) -> str:
    """A Store API amount for humans, in currency units: ``"JPY 150.50"``."""
    return f"{currency.upper()} {decimal.Decimal(str(value)).scaleb(-currency_minor_unit)}"


# --- small helpers ---------------------------------------------------------------------


_TAG = re.compile(r"<[^>]*>")


def plain_text(value: JSON) -> str:
    """WooCommerce text (HTML entities, maybe tags) as plain text."""
    return html.unescape(_TAG.sub("", str(value or ""))).strip()


def option_id(package_id: JSON, rate_id: str) -> str:
    """ACP option id of a shipping rate: ``"{package_id}:{rate_id}"`` (``"0:flat_rate:1"``)."""
    return f"{package_id}:{rate_id}"


def parse_option_id(value: str) -> tuple[int, str] | None:
    """``"0:flat_rate:1" -> (0, "flat_rate:1")``; ``None`` when not of that form."""
    head, sep, rate = value.partition(":")
    if not sep or not rate or not head.isdigit():
        return None
    return int(head), rate


def _split_name(name: str) -> tuple[str, str]:
    first, _sep, last = name.strip().partition(" ")
    return first, last.strip()


def customer_payload(fulfillment_details: cabc.Mapping[str, JSON] | None,
                     buyer: cabc.Mapping[str, JSON] | None) -> dict[str, JSON] | None:
    """The body of Store API ``POST /cart/update-customer`` for an ACP
    ``fulfillment_details`` (``{name, phone_number, email, address{name, line_one,
    line_two, city, state, country, postal_code, company}}``) and ``buyer``
    (``{email, first_name, last_name, full_name, phone_number}``), or ``None`` when
    neither gives anything to send.

    The billing address is the shipping address with the buyer's name, email
    and phone (ACP has no billing address before ``complete``).
    """
    details = dict(fulfillment_details or {})
    who = dict(buyer or {})
    address = details.get("address") if isinstance(details.get("address"), dict) else None
    email = who.get("email") or details.get("email") or ""
    phone = details.get("phone_number") or who.get("phone_number") or ""
    if address is None and not email:
        return None
    ship: dict[str, JSON] = {}
    if address is not None:
        first, last = _split_name(str(address.get("name") or details.get("name") or ""))
        ship = {
            "first_name": first, "last_name": last,
            "company": address.get("company") or "",
            "address_1": address.get("line_one") or "", "address_2": address.get("line_two") or "",
            "city": address.get("city") or "", "state": address.get("state") or "",
            "postcode": address.get("postal_code") or "",
            "country": str(address.get("country") or "").upper(),
            "phone": phone,
        }
    billing: dict[str, JSON] = dict(ship)
    if who.get("first_name") or who.get("last_name"):
        billing["first_name"], billing["last_name"] = who.get("first_name") or "", who.get("last_name") or ""
    elif who.get("full_name"):
        billing["first_name"], billing["last_name"] = _split_name(str(who["full_name"]))
    billing["email"] = email
    billing["phone"] = phone
    body: dict[str, JSON] = {"billing_address": billing}
    if ship:
        body["shipping_address"] = ship
    return body


# --- carts -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Money:
    """Converts the amounts of one cart (its ``currency_minor_unit``/``currency_code``)."""

    minor_unit: int
    currency: str

    def __call__(self, value: JSON) -> int:
        return store_amount(value if value not in (None, "") else "0", self.minor_unit, self.currency)


def _money_of(cart: cabc.Mapping[str, JSON]) -> _Money:
    totals = cart.get("totals") or {}
    return _Money(int(totals.get("currency_minor_unit", 2)), str(totals.get("currency_code") or ""))


def cart_currency(cart: cabc.Mapping[str, JSON]) -> str:
    """The cart's currency, lowercase ISO 4217 (``"usd"``)."""
    return str((cart.get("totals") or {}).get("currency_code") or "").lower()


def refused_quote(line_items: cabc.Sequence[LineItemRequest], message: Message,
                  names: cabc.Mapping[str, str] | None = None) -> Quote:
    """A quote where nothing can be bought, with one explaining ``message``
    (an unsupported currency, amounts the currency cannot represent)."""
    names = names or {}
    return Quote(
        lines=tuple(PricedLine(item_id=li.id, quantity=li.quantity, purchasable=False,
                               requires_shipping=False, name=names.get(li.id)) for li in line_items),
        messages=(message,),
    )


def unrepresentable_message(error: PriceNotRepresentable, minor_unit: int) -> Message:
    """The session error for a cart priced in sub-units the currency does not have."""
    return Message(
        type="error", code="invalid", param="$.currency", resolution="requires_buyer_input",
        content=(
            f"The store priced this cart at {error.currency} {error.decimal_value}, which cannot be "
            f"paid in {error.currency} (it has {iso_exponent(error.currency)} decimals; the store is "
            f"set to {minor_unit}). The merchant must set WooCommerce's number of decimals to "
            f"{iso_exponent(error.currency)} or use whole-unit prices."
        ),
    )


#: WooCommerce's coupon refusal texts (``WC_Coupon`` errors, lower case) -> ``DiscountErrorCode``
_COUPON_REASONS = (
    ("expired", "discount_code_expired"),
    ("already applied", "discount_code_already_applied"),
    ("minimum spend", "discount_code_minimum_not_met"),
    ("maximum spend", "discount_code_minimum_not_met"),
    ("usage limit", "discount_code_usage_limit_reached"),
    ("in conjunction", "discount_code_combination_disallowed"),
    ("individual use", "discount_code_combination_disallowed"),
    ("log in", "discount_code_user_not_logged_in"),
    ("logged in", "discount_code_user_not_logged_in"),
    ("not valid for your", "discount_code_user_ineligible"),
    ("does not exist", "discount_code_invalid"),
)


def coupon_rejection(code: str, text: str) -> str:
    """The ``discount_code_*`` reason of a refused ``apply-coupon`` (or a coupon
    error in the cart) from WooCommerce's error ``code`` and plain ``text``;
    ``discount_code_invalid`` when nothing more precise fits."""
    lowered = text.lower()
    for fragment, reason in _COUPON_REASONS:
        if fragment in lowered:
            return reason
    return "discount_code_invalid"


def cart_coupon_errors(cart: cabc.Mapping[str, JSON],
                       codes: cabc.Sequence[str]) -> dict[str, RejectedDiscount]:
    """The cart's coupon ``errors`` that name one of ``codes`` (a coupon applied
    earlier that the cart no longer honours: expired, minimum no longer met...),
    as rejections by casefolded code."""
    out: dict[str, RejectedDiscount] = {}
    for error in cart.get("errors") or []:
        code = str(error.get("code") or "")
        text = plain_text(error.get("message"))
        named = [c for c in codes if "coupon" in code and c.casefold() in text.casefold()]
        if named:
            out[named[0].casefold()] = RejectedDiscount(code=named[0], reason=coupon_rejection(code, text),
                                                        content=text)
    return out


def _discounts(cart: cabc.Mapping[str, JSON], lines: cabc.Sequence[PricedLine], money: _Money,
               codes: cabc.Sequence[str]) -> tuple[AppliedDiscount, ...]:
    """The cart's ``coupons[]`` as applied discounts (module docstring)."""
    requested = {c.casefold(): c for c in codes}
    left = {line.item_id: line.discount for line in lines if line.purchasable and line.discount > 0}
    applied = []
    for coupon in cart.get("coupons") or []:
        name = str(coupon.get("code") or "")
        totals = coupon.get("totals") or {}
        amount = max(0, money(totals.get("total_discount")))
        ids = list(left)
        shares = split_amount(min(amount, sum(left.values())), [left[i] for i in ids])
        allocations = []
        for item_id, share in zip(ids, shares, strict=True):
            if share:
                left[item_id] -= share
                allocations.append(DiscountAllocation(item_id=item_id, amount=share))
        kind = str(coupon.get("discount_type") or "")
        code = requested.get(name.casefold())
        applied.append(AppliedDiscount(
            id="wc_coupon_" + name.casefold(), coupon_id=name, name=name, code=code, automatic=code is None,
            amount=sum(a.amount for a in allocations), allocations=tuple(allocations),
            method="across" if kind == "fixed_cart" else "each" if kind else None))
    return tuple(applied)


def quote_from_cart(
    cart: cabc.Mapping[str, JSON],
    line_items: cabc.Sequence[LineItemRequest],
    *,
    line_messages: cabc.Mapping[str, cabc.Sequence[Message]] | None = None,
    messages: cabc.Sequence[Message] = (),
    codes: cabc.Sequence[str] = (),
    rejected: cabc.Mapping[str, RejectedDiscount] | None = None,
) -> Quote:
    """Map a Store API cart to a :class:`Quote` for the requested ``line_items``
    (see the module docstring).

    :param line_messages: per item id, messages the adapter already has for a line
        (an ``add-item`` refused); such a line is not purchasable.
    :param messages: further messages to put first (fulfillment choice errors).
    :param codes: the discount codes requested (their spelling is kept).
    :param rejected: codes WooCommerce refused to apply, by casefolded code.
    :returns: a quote whose ``Totals.of(...).total`` equals ``totals.total_price``,
        or a refused quote (see :func:`refused_quote`) when an amount cannot be
        represented in the currency.
    :raises ValueError: a malformed amount in the cart.
    """
    line_messages = line_messages or {}
    money = _money_of(cart)
    items: list[dict[str, JSON]] = [dict(i) for i in cart.get("items") or []]
    by_id = {str(i.get("id")): i for i in items}
    names = {str(i.get("id")): plain_text(i.get("name")) for i in items}
    try:
        quote = _quote(cart, items, by_id, money, line_items, line_messages, messages, codes)
    except PriceNotRepresentable as exc:
        return refused_quote(line_items, unrepresentable_message(exc, money.minor_unit), names)
    refused = dict(rejected or {})
    refused.update({r.code.casefold(): r for r in quote.rejected_discounts})
    return dataclasses.replace(
        quote, applied_discounts=_discounts(cart, quote.lines, money, codes),
        rejected_discounts=tuple(refused[c.casefold()] for c in codes if c.casefold() in refused))


def _quote(cart: cabc.Mapping[str, JSON], items: list[dict[str, JSON]],
           by_id: dict[str, dict[str, JSON]], money: _Money,
           line_items: cabc.Sequence[LineItemRequest],
           line_messages: cabc.Mapping[str, cabc.Sequence[Message]],
           extra: cabc.Sequence[Message], codes: cabc.Sequence[str]) -> Quote:
    out: list[Message] = list(extra)
    key_to_id = {str(i.get("key")): str(i.get("id")) for i in items}
    totals = cart.get("totals") or {}
    needs_shipping = bool(cart.get("needs_shipping"))
    packages = list(cart.get("shipping_rates") or [])
    shipped: set[str] = set()
    for package in packages:
        shipped.update(key_to_id.get(str(p.get("key")), "") for p in package.get("items") or [])
    calculated = bool(cart.get("has_calculated_shipping")) and bool(packages)

    lines: list[PricedLine] = []
    requested = {li.id for li in line_items}
    for index, li in enumerate(line_items):
        item = by_id.get(li.id)
        own = list(line_messages.get(li.id, ()))
        out.extend(own)
        if item is None:
            lines.append(PricedLine(item_id=li.id, quantity=li.quantity, purchasable=False,
                                    requires_shipping=False))
            continue
        name = plain_text(item.get("name"))
        quantity = int(t.cast(int, item.get("quantity")))
        purchasable = not own
        if purchasable and quantity != li.quantity:
            purchasable = False
            out.append(Message(type="error", code="quantity_exceeded",
                               param=f"$.line_items[{index}].quantity",
                               resolution="requires_buyer_input", text_key="quantity_exceeded",
                               text_args={"name": name, "available": str(quantity)}))
        lines.append(_priced_line(li, item, name, money, purchasable,
                                  requires_shipping=(li.id in shipped) if calculated else needs_shipping))

    for item in items:  # in the cart but not asked for (a plugin's gift, a leftover)
        if str(item.get("id")) in requested:
            continue
        item_totals = item.get("totals") or {}
        charged = money(item_totals.get("line_total")) + money(item_totals.get("line_total_tax"))
        what = f"The store added '{plain_text(item.get('name'))}' (quantity {item.get('quantity')})"
        out.append(Message(
            type="info" if charged == 0 else "error",
            code=None if charged == 0 else "invalid", param="$.line_items",
            resolution=None if charged == 0 else "requires_buyer_input",
            content=what + (" for free." if charged == 0 else ", which this checkout cannot show.")))

    coupon_errors = cart_coupon_errors(cart, codes)
    for error in cart.get("errors") or []:
        code = str(error.get("code") or "")
        text = plain_text(error.get("message"))
        if any(r.content == text for r in coupon_errors.values()):
            continue  # an applied code the cart no longer honours: rejected, not an error
        out.append(Message(
            type="error", code=("out_of_stock" if code in STOCK_ERROR_CODES
                                else "coupon_invalid" if "coupon" in code else "invalid"),
            resolution="requires_buyer_input",
            content=plain_text(error.get("message")) or code))

    options: list[FulfillmentOption] = []
    selected: list[SelectedFulfillmentOption] = []
    needs_details = False
    sold = {line.item_id for line in lines if line.purchasable}
    if needs_shipping and sold and not calculated:
        needs_details = True
        out.append(Message(type="error", code="missing", param="$.fulfillment_details.address",
                           resolution="requires_buyer_input", text_key="address_required"))
    for package in packages if calculated else []:
        item_ids = tuple(dict.fromkeys(
            key_to_id[str(p.get("key"))] for p in package.get("items") or []
            if str(p.get("key")) in key_to_id and key_to_id[str(p.get("key"))] in sold))
        rates = list(package.get("shipping_rates") or [])
        if not item_ids:
            continue
        if not rates:
            needs_details = True
            destination = package.get("destination") or {}
            out.append(Message(type="error", code="region_restricted",
                               param="$.fulfillment_details.address.country",
                               resolution="requires_buyer_input", text_key="no_shipping_to_address",
                               text_args={"country": str(destination.get("country") or "")}))
            continue
        for rate in rates:
            option = FulfillmentOption(
                type="shipping",
                id=option_id(package.get("package_id"), str(rate.get("rate_id"))),
                title=plain_text(rate.get("name")) or str(rate.get("rate_id")),
                description=plain_text(rate.get("description") or rate.get("delivery_time")) or None,
                item_ids=item_ids,
                amount=money(rate.get("price")),
                tax=money(rate.get("taxes")),
            )
            options.append(option)
            if rate.get("selected"):
                selected.append(SelectedFulfillmentOption(type="shipping", option_id=option.id,
                                                          item_ids=item_ids))
    digital = tuple(line.item_id for line in lines
                    if line.purchasable and not line.requires_shipping)
    if digital:
        option = FulfillmentOption(type="digital", id=DIGITAL_OPTION_ID, title="Digital delivery",
                                   item_ids=digital)
        options.append(option)
        selected.append(SelectedFulfillmentOption(type="digital", option_id=option.id, item_ids=digital))

    quote = Quote(
        lines=tuple(lines),
        fulfillment_options=tuple(options),
        selected_fulfillment_options=tuple(selected),
        needs_fulfillment_details=needs_details,
        messages=tuple(out),
        fee=money(totals.get("total_fees")),
        rejected_discounts=tuple(coupon_errors.values()),
    )
    # what the cart charges for items that are no purchasable line is left out
    sold_ids = {line.item_id for line in lines if line.purchasable}
    unsold = sum(money((i.get("totals") or {}).get("line_total"))
                 + money((i.get("totals") or {}).get("line_total_tax"))
                 for i in items if str(i.get("id")) not in sold_ids)
    return _absorb(quote, money(totals.get("total_price")) - unsold)


def _priced_line(li: LineItemRequest, item: cabc.Mapping[str, JSON], name: str, money: _Money,
                 purchasable: bool, *, requires_shipping: bool) -> PricedLine:
    totals = item.get("totals") or {}
    quantity = int(t.cast(int, item.get("quantity"))) or 1
    line_subtotal = money(totals.get("line_subtotal"))
    line_total = money(totals.get("line_total"))
    unit_amount = -(-line_subtotal // quantity)  # ceil: the remainder becomes discount
    limits = item.get("quantity_limits") or {}
    low = item.get("low_stock_remaining")
    images = tuple(str(i["src"]) for i in item.get("images") or [] if isinstance(i, dict) and i.get("src"))
    return PricedLine(
        item_id=li.id,
        quantity=quantity,
        unit_amount=unit_amount,
        discount=unit_amount * quantity - line_total,
        tax=money(totals.get("line_total_tax")),
        purchasable=purchasable,
        requires_shipping=requires_shipping,
        name=name or None,
        description=plain_text(item.get("short_description")) or None,
        images=images,
        product_id=str(item.get("id")),
        variant_id=str(item.get("id")),
        sku=str(item.get("sku")) if item.get("sku") else None,
        availability_status="low_stock" if isinstance(low, int) else "in_stock",
        available_quantity=low if isinstance(low, int) else None,
        max_quantity_per_order=(int(limits["maximum"]) if isinstance(limits.get("maximum"), int)
                                else None),
    )


def _absorb(quote: Quote, total_price: int) -> Quote:
    """Make ``Totals.of(quote).total == total_price`` by moving the difference to
    the tax of the purchasable line with the largest tax (its discount when the
    tax would go negative)."""
    diff = total_price - Totals.of(quote).total
    candidates = [i for i, line in enumerate(quote.lines) if line.purchasable]
    if diff == 0 or not candidates:
        return quote
    index = max(candidates, key=lambda i: (quote.lines[i].tax, -i))
    line = quote.lines[index]
    if line.tax + diff >= 0:
        changed = dataclasses.replace(line, tax=line.tax + diff)
    else:
        changed = dataclasses.replace(line, tax=0, discount=line.discount - (diff + line.tax))
    lines = quote.lines[:index] + (changed,) + quote.lines[index + 1:]
    return dataclasses.replace(quote, lines=lines)


# --- product feed ------------------------------------------------------------------------


#: REST ``stock_status`` -> (available, ``Availability.status``).
_STOCK_STATUS = {"instock": (True, "in_stock"), "outofstock": (False, "out_of_stock"),
                 "onbackorder": (True, "backorder")}


def _feed_variant(item: cabc.Mapping[str, JSON], title: str, currency: str, *, low_stock: int,
                  images: tuple[MediaRecord, ...]) -> VariantRecord | None:
    price_text = item.get("price")
    if item.get("status", "publish") != "publish" or price_text in (None, ""):
        return None  # not for sale: no price (WooCommerce's ``purchasable`` is false)
    price = rest_amount(price_text, currency)
    regular = item.get("regular_price")
    list_price = rest_amount(regular, currency) if isinstance(regular, str) and regular else None
    available, status = _STOCK_STATUS.get(str(item.get("stock_status") or "instock"), (True, "in_stock"))
    quantity = item.get("stock_quantity")
    if available and status == "in_stock" and item.get("manage_stock") and isinstance(quantity, int) \
            and 0 < quantity <= low_stock:
        status = "limited_stock"
    gtin = str(item.get("global_unique_id") or "").strip()
    image = t.cast(cabc.Mapping[str, JSON] | None, item.get("image"))
    media = (MediaRecord(url=str(image["src"]), alt_text=str(image.get("alt") or "") or None),) \
        if image and image.get("src") else images
    options = tuple((str(a.get("name")), str(a.get("option")))
                    for a in t.cast(list[cabc.Mapping[str, JSON]], item.get("attributes") or [])
                    if a.get("option") not in (None, ""))
    return VariantRecord(
        id=str(item["id"]), title=title + (" - " + " / ".join(v for _, v in options) if options else ""),
        price=Money(amount=price, currency=currency.upper()),
        list_price=Money(amount=list_price, currency=currency.upper())
        if list_price is not None and list_price > price else None,
        available=available, status=status, url=t.cast(str | None, item.get("permalink")) or None,
        sku=t.cast(str | None, item.get("sku")) or None,
        barcodes=(("GTIN", gtin),) if gtin else (), options=options, media=media)


def product_record(product: cabc.Mapping[str, JSON], variations: cabc.Sequence[cabc.Mapping[str, JSON]],
                   currency: str, *, low_stock: int = 2) -> ProductRecord | None:
    """The feed record of a REST v3 product and, for a ``variable`` one, its
    variations (``GET /wc/v3/products/{id}/variations``).

    Item ids are the ids the checkout accepts: the product id of a simple
    product, the variation ids of a variable one. Prices are REST decimal
    strings (``price``, ``regular_price``) converted by :func:`rest_amount`;
    ``list_price`` is the regular price of an item on sale. ``stock_status``
    gives the availability (``onbackorder``: ``backorder``; managed stock at or
    below ``low_stock`` units, WooCommerce's default "Low stock threshold" of 2
    unless told otherwise: ``limited_stock``); ``global_unique_id``
    (WooCommerce 9.2+: GTIN, UPC, EAN or ISBN) the barcode. A product that is
    not published, or has nothing priced, is left out (``None``).

    :raises PriceNotRepresentable: a price the currency cannot express.
    :raises ValueError: a price that is not a decimal string.
    """
    if product.get("status") != "publish":
        return None
    title = plain_text(product.get("name"))
    images = tuple(MediaRecord(url=str(i["src"]), alt_text=str(i.get("alt") or "") or None)
                   for i in t.cast(list[cabc.Mapping[str, JSON]], product.get("images") or [])
                   if i.get("src"))
    if product.get("type") == "variable":
        found = [_feed_variant(v, title, currency, low_stock=low_stock, images=images) for v in variations]
    else:
        found = [_feed_variant(product, title, currency, low_stock=low_stock, images=images)]
    variants = tuple(v for v in found if v is not None)
    if not variants:
        return None
    description = plain_text(product.get("short_description")) or plain_text(product.get("description"))
    return ProductRecord(id=str(product["id"]), title=title or None, description=description or None,
                         url=t.cast(str | None, product.get("permalink")) or None, media=images,
                         variants=variants)
