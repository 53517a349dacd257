"""Store rules of the embedded catalog: currency, stock, shipping, tax, order links.

The store file is one JSON object. Every money amount is a JSON integer in ISO
4217 minor units of ``currency`` (``599`` = $5.99, ``500`` = ¥500, ``1500`` =
1.500 KWD); a float anywhere money or a count is expected is refused with a
``ValueError``. Keys (unknown keys are ignored)::

    currency               str, required     ISO 4217 code, any case ("usd"). Every
                                             feed price must be in this currency.
    order_url_template     str, required     order permalink; placeholders {order_id},
                                             {order_number} (digits, no "#"), {session_id}.
                                             e.g. "https://shop.example/orders/{order_id}"
    order_number_start     int >= 1 = 1001   first order number ("#1001"), then +1 each.
    stock                  {variant id: int >= 0 | null} = {}
                                             units on hand; null = unlimited. Units sold
                                             through this adapter are counted in the
                                             SQLite file and subtracted from this figure.
    default_stock          int >= 0 = 0      units on hand of a variant absent from
                                             ``stock``. So a variant missing from ``stock``
                                             is OUT OF STOCK unless default_stock is set.
    max_quantity_per_order int >= 1 | null = null
                                             cap on the units of one variant per order.
    low_stock_threshold    int >= 0 | null = null
                                             availability <= this shows "low_stock" and
                                             adds a low_stock warning; null = never.
    digital_items          [variant id] = [] fulfilled digitally; every other variant
                                             needs shipping.
    digital_title          str = "Digital delivery"
                                             title of the digital fulfillment option.
    shipping_methods       [ShippingMethod] = []
        id                 str, required     unique, not "digital".
        title              str, required
        description        str | null = null
        carrier            str | null = null
        amount             int >= 0, required    minor units, tax excluded.
        min_days, max_days int >= 0, required    delivery window in calendar days
                                                 from the quote (min_days <= max_days).
        countries          [str], required       ISO 3166-1 alpha-2 ("US"), or ["*"]
                                                 for anywhere.
    free_shipping_over     int >= 0 | null = null
                                             when the purchasable items' subtotal (minor
                                             units, before tax) is >= this, every shipping
                                             method costs 0.
    tax                    [TaxRule] = []    the rate of the most specific rule matching
                                             the shipping address applies (country+region
                                             before country alone); no match = no tax.
        country            str, required     ISO 3166-1 alpha-2.
        region             str | null = null the address's ``state`` ("CA").
        rate               str, required     decimal string, a fraction: "0.0875" = 8.75 %.
    tax_shipping           bool = false      also tax shipping amounts at the same rate.
    prices_include_tax     bool = false      only ``false`` is supported.
    coupons                [Coupon] = []     discount codes and automatic discounts
                                             (ACP discount extension; :mod:`.discounts`).
        id                 str, required     unique; ``Coupon.id``.
        name               str, required     shown to the buyer (``Coupon.name``).
        code               str | null = null the code, matched case-insensitively (unique);
                                             null: an automatic discount, applied whenever
                                             its conditions hold.
        percent_off        str               decimal string, 0 < p <= 100 ("20", "12.5"):
                                             that share of each eligible line, half-up.
        amount_off         int >= 1          minor units off the eligible lines, split in
                                             proportion to them (largest remainder), at
                                             most what they cost. Exactly one of the two.
        applies_to         "items" | "shipping" = "items"
                                             shipping: off the selected shipping options'
                                             price (order-level, e.g. free shipping).
        items              [variant id] | null = null
                                             the lines it applies to; null: every line.
        minimum_subtotal   int >= 0 = 0      the purchasable lines' base amount (minor
                                             units, before discounts) it needs.
        starts_at, ends_at str | null = null RFC 3339 with an offset; before starts_at the
                                             code is invalid, from ends_at on expired.
        combinable         bool = true       false: a code that is applied alone (another
                                             code with it is rejected
                                             discount_code_combination_disallowed).
        priority           int >= 1 = 1      stacking order: lower first, each on what the
                                             lines cost after the discounts before it.

Tax is ``round(amount * rate)`` per line (and per shipping option) with
``decimal.Decimal`` and ``ROUND_HALF_UP`` to whole minor units.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import pathlib
import typing as t

from iso4217 import Currency
from marshmallow import EXCLUDE
from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import validate
from marshmallow import validates
from marshmallow import validates_schema

from ._fields import DecimalString
from ._fields import MinorUnits
from ._fields import StrictInt
from ._fields import flatten_errors

DIGITAL_OPTION_ID = "digital"

_ALPHA2 = 'must be an uppercase ISO 3166-1 alpha-2 code like "US"'
_COUNTRY = validate.Regexp(r"^[A-Z]{2}$", error=_ALPHA2)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShippingMethod:
    """A shipping method; ``amount`` in minor units, days are calendar days."""

    id: str
    title: str
    amount: int
    min_days: int
    max_days: int
    countries: frozenset[str]
    description: str | None = None
    carrier: str | None = None

    def ships_to(self, country: str) -> bool:
        """Whether the method serves ``country`` (alpha-2, any case)."""
        return "*" in self.countries or country.upper() in self.countries


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TaxRule:
    """A tax rate (a fraction) for a country, optionally one region of it."""

    country: str
    region: str | None
    rate: decimal.Decimal


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Coupon:
    """A discount rule of the store file (see the module docstring).

    :ivar percent_off: a fraction of 100 (``Decimal("20")``), or None.
    :ivar amount_off: minor units of the store currency, or None.
    :ivar code: None for an automatic discount.
    """

    id: str
    name: str
    code: str | None = None
    percent_off: decimal.Decimal | None = None
    amount_off: int | None = None
    applies_to: str = "items"
    items: frozenset[str] | None = None
    minimum_subtotal: int = 0
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    combinable: bool = True
    priority: int = 1


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class StoreRules:
    """The parsed store file (see the module docstring for every key).

    :ivar currency: lowercase ISO 4217 code.
    :ivar exponent: minor-unit exponent of ``currency`` (2 for USD, 0 for JPY,
        3 for KWD); amounts are already minor units, this is for display.
    """

    currency: str
    exponent: int
    order_url_template: str
    order_number_start: int = 1001
    stock: dict[str, int | None] = dataclasses.field(default_factory=dict)
    default_stock: int = 0
    max_quantity_per_order: int | None = None
    low_stock_threshold: int | None = None
    digital_items: frozenset[str] = frozenset()
    digital_title: str = "Digital delivery"
    shipping_methods: tuple[ShippingMethod, ...] = ()
    free_shipping_over: int | None = None
    tax: tuple[TaxRule, ...] = ()
    tax_shipping: bool = False
    coupons: tuple[Coupon, ...] = ()

    def on_hand(self, item_id: str) -> int | None:
        """Units on hand per the file (before sales), or ``None`` for unlimited."""
        return self.stock.get(item_id, self.default_stock)

    def requires_shipping(self, item_id: str) -> bool:
        """``False`` for ``digital_items``, ``True`` for everything else."""
        return item_id not in self.digital_items

    def methods_for(self, country: str) -> list[ShippingMethod]:
        """Shipping methods that ship to ``country`` (alpha-2, any case), file order."""
        return [m for m in self.shipping_methods if m.ships_to(country)]

    def tax_rate(self, country: str | None, region: str | None) -> decimal.Decimal:
        """The rate for an address: country+region rule, else country rule, else 0."""
        if not country:
            return decimal.Decimal(0)
        country = country.upper()
        region = region.upper() if region else None
        general = decimal.Decimal(0)
        for rule in self.tax:
            if rule.country != country:
                continue
            if rule.region is None:
                general = rule.rate
            elif rule.region == region:
                return rule.rate
        return general


def tax_amount(amount: int, rate: decimal.Decimal) -> int:
    """``round(amount * rate)`` half-up to a whole minor unit; ``amount`` in minor units."""
    product = decimal.Decimal(amount) * rate
    return int(product.quantize(decimal.Decimal(1), rounding=decimal.ROUND_HALF_UP))


class _Base(Schema):
    class Meta:
        unknown = EXCLUDE


class _ShippingMethod(_Base):
    id = fields.String(required=True, validate=[
        validate.Length(min=1),
        validate.NoneOf([DIGITAL_OPTION_ID], error='"digital" is reserved for digital delivery'),
    ])
    title = fields.String(required=True)
    description = fields.String(load_default=None, allow_none=True)
    carrier = fields.String(load_default=None, allow_none=True)
    amount = MinorUnits(required=True)
    min_days = StrictInt(required=True)
    max_days = StrictInt(required=True)
    countries = fields.List(
        fields.String(validate=validate.Regexp(r"^([A-Z]{2}|\*)$", error=_ALPHA2 + ' or "*"')),
        required=True,
        validate=validate.Length(min=1),
    )

    @validates_schema
    def _window(self, data: dict[str, t.Any], **kwargs: t.Any) -> None:
        if data["min_days"] > data["max_days"]:
            raise ValidationError("min_days must not exceed max_days", "max_days")


class _TaxRule(_Base):
    country = fields.String(required=True, validate=_COUNTRY)
    region = fields.String(load_default=None, allow_none=True)
    rate = DecimalString(required=True)


class _Percent(fields.Field[decimal.Decimal]):
    """``percent_off``: a decimal string, 0 < p <= 100."""

    def _deserialize(self, value: t.Any, attr: str | None, data: t.Any, **kwargs: t.Any) -> decimal.Decimal:
        if isinstance(value, float):
            raise ValidationError(f'must be a decimal string like "20" or "12.5", not the float {value!r}')
        try:
            number = decimal.Decimal(value) if isinstance(value, str) else None
        except decimal.InvalidOperation:
            number = None
        if number is None or not number.is_finite() or not 0 < number <= 100:
            raise ValidationError(
                f'must be a decimal string above 0 and at most 100 like "20", not {value!r}')
        return number


class _Coupon(_Base):
    id = fields.String(required=True, validate=validate.Length(min=1, max=256))
    name = fields.String(required=True, validate=validate.Length(min=1, max=256))
    code = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=256))
    percent_off = _Percent(load_default=None, allow_none=True)
    amount_off = StrictInt(minimum=1, load_default=None, allow_none=True)
    applies_to = fields.String(load_default="items", validate=validate.OneOf(["items", "shipping"]))
    items = fields.List(fields.String(), load_default=None, allow_none=True)
    minimum_subtotal = MinorUnits(load_default=0)
    starts_at = fields.AwareDateTime(load_default=None, allow_none=True)
    ends_at = fields.AwareDateTime(load_default=None, allow_none=True)
    combinable = fields.Boolean(truthy={True}, falsy={False}, load_default=True)
    priority = StrictInt(minimum=1, load_default=1)

    @validates_schema
    def _one_amount(self, data: dict[str, t.Any], **kwargs: t.Any) -> None:
        if (data.get("percent_off") is None) == (data.get("amount_off") is None):
            raise ValidationError("give exactly one of percent_off and amount_off", "percent_off")


class _Store(_Base):
    currency = fields.String(required=True)
    order_url_template = fields.String(required=True)
    order_number_start = StrictInt(minimum=1, load_default=1001)
    stock = fields.Dict(keys=fields.String(), values=StrictInt(allow_none=True), load_default=dict)
    default_stock = StrictInt(load_default=0)
    max_quantity_per_order = StrictInt(minimum=1, load_default=None, allow_none=True)
    low_stock_threshold = StrictInt(load_default=None, allow_none=True)
    digital_items = fields.List(fields.String(), load_default=list)
    digital_title = fields.String(load_default="Digital delivery")
    shipping_methods = fields.List(fields.Nested(_ShippingMethod), load_default=list)
    free_shipping_over = MinorUnits(load_default=None, allow_none=True)
    tax = fields.List(fields.Nested(_TaxRule), load_default=list)
    tax_shipping = fields.Boolean(truthy={True}, falsy={False}, load_default=False)
    coupons = fields.List(fields.Nested(_Coupon), load_default=list)
    prices_include_tax = fields.Boolean(
        truthy={True}, falsy={False}, load_default=False,
        validate=validate.Equal(False, error="prices that include tax are not supported"),
    )

    @validates("currency")
    def _currency(self, value: str, **kwargs: t.Any) -> None:
        try:
            currency = Currency(value.upper())
        except ValueError:
            raise ValidationError(f"{value!r} is not an ISO 4217 currency") from None
        if currency.exponent is None:
            raise ValidationError(f"{value!r} has no minor unit and cannot be sold in")

    @validates("order_url_template")
    def _template(self, value: str, **kwargs: t.Any) -> None:
        try:
            value.format(order_id="ord_x", order_number="1001", session_id="cs_x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValidationError(
                f"bad placeholder {exc}; use {{order_id}}, {{order_number}}, {{session_id}}"
            ) from None

    @validates_schema
    def _unique(self, data: dict[str, t.Any], **kwargs: t.Any) -> None:
        ids = [m["id"] for m in data.get("shipping_methods", [])]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValidationError(f"duplicate ids {duplicates}", "shipping_methods")
        places = [(r["country"], (r["region"] or "").upper()) for r in data.get("tax", [])]
        twice = sorted({p for p in places if places.count(p) > 1})
        if twice:
            raise ValidationError(f"more than one rule for {twice}", "tax")
        coupons = data.get("coupons", [])
        for key, values in (("id", [c["id"] for c in coupons]),
                            ("code", [c["code"].casefold() for c in coupons if c["code"]])):
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValidationError(f"duplicate {key}s {repeated}", "coupons")


def load_store(path: str | pathlib.Path) -> StoreRules:
    """Read and validate a store file (format: the module docstring).

    :raises ValueError: invalid JSON or a rule violation, naming the key, e.g.
        ``store file s.json: shipping_methods[0].amount: must be an integer
        amount in minor units (e.g. 1999 for 19.99), not the float 5.99``.
    :raises OSError: the file cannot be read.
    """
    path = pathlib.Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"store file {path}: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"store file {path}: must be a JSON object")
    try:
        raw = _Store().load(data)
    except ValidationError as exc:
        problems = [f"{where}: {problem}" if where else problem
                    for where, problem in flatten_errors(exc.messages)]
        raise ValueError(f"store file {path}: " + "; ".join(problems)) from None
    return StoreRules(
        currency=raw["currency"].lower(),
        exponent=t.cast(int, Currency(raw["currency"].upper()).exponent),
        order_url_template=raw["order_url_template"],
        order_number_start=raw["order_number_start"],
        stock=dict(raw["stock"]),
        default_stock=raw["default_stock"],
        max_quantity_per_order=raw["max_quantity_per_order"],
        low_stock_threshold=raw["low_stock_threshold"],
        digital_items=frozenset(raw["digital_items"]),
        digital_title=raw["digital_title"],
        shipping_methods=tuple(
            ShippingMethod(
                id=m["id"],
                title=m["title"],
                description=m["description"],
                carrier=m["carrier"],
                amount=m["amount"],
                min_days=m["min_days"],
                max_days=m["max_days"],
                countries=frozenset(m["countries"]),
            )
            for m in raw["shipping_methods"]
        ),
        free_shipping_over=raw["free_shipping_over"],
        tax=tuple(
            TaxRule(country=r["country"], region=r["region"].upper() if r["region"] else None,
                    rate=r["rate"])
            for r in raw["tax"]
        ),
        tax_shipping=raw["tax_shipping"],
        coupons=tuple(
            Coupon(id=c["id"], name=c["name"], code=c["code"], percent_off=c["percent_off"],
                   amount_off=c["amount_off"], applies_to=c["applies_to"],
                   items=None if c["items"] is None else frozenset(c["items"]),
                   minimum_subtotal=c["minimum_subtotal"], starts_at=c["starts_at"], ends_at=c["ends_at"],
                   combinable=c["combinable"], priority=c["priority"])
            for c in raw["coupons"]
        ),
    )
