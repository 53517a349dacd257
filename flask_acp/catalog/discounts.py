"""The embedded catalog's discounts: the store file's ``coupons`` applied to
priced lines (ACP discount extension; rules in :mod:`.store_rules`).

* A requested code matches a coupon's ``code`` case-insensitively. Unknown, or
  before ``starts_at``: ``discount_code_invalid``; from ``ends_at`` on:
  ``discount_code_expired``; the purchasable lines' base amount below
  ``minimum_subtotal``: ``discount_code_minimum_not_met``; no purchasable line
  it applies to: ``discount_code_invalid``; a code with a non-combinable one
  (whichever comes second in the request): ``discount_code_combination_disallowed``.
* Automatic coupons (no ``code``) apply whenever those conditions hold.
* Application order: ``priority``, then automatic before codes, then request
  (or file) order; each applies to what the lines cost after the discounts
  before it. ``percent_off``: each eligible line ``round(remaining * p / 100)``
  half-up (method ``each``); ``amount_off``: ``min(amount_off, remaining)`` split
  over the eligible lines in proportion to what they still cost, by largest
  remainder (method ``across``). These allocations are the lines': the
  amounts land in the lines' ``discount`` (``items_discount``), and tax is
  then computed on the discounted lines by the adapter.
* A coupon with ``applies_to: "shipping"`` takes its share off the selected
  shipping options' price (after the option is chosen: :func:`discount_shipping`);
  it is order-level (the ``discount`` total, allocation ``$.totals.fulfillment``);
  with no shipping selected it applies with amount 0. Shipping tax, when the
  store taxes shipping, stays on the option's price.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import datetime as dt
import decimal

from flask_acp.adapter import split_amount
from flask_acp.models import AppliedDiscount
from flask_acp.models import DiscountAllocation
from flask_acp.models import PricedLine
from flask_acp.models import RejectedDiscount

from .store_rules import Coupon


@dataclasses.dataclass(frozen=True, slots=True)
class Discounted:
    """The lines with their ``discount`` set, and what was applied and rejected."""

    lines: tuple[PricedLine, ...]
    applied: tuple[AppliedDiscount, ...]
    rejected: tuple[RejectedDiscount, ...]
    #: shipping coupons chosen (with the code that asked for them), for :func:`discount_shipping`
    shipping: tuple[tuple[Coupon, str | None], ...] = ()


def _problem(coupon: Coupon, lines: cabc.Sequence[PricedLine], base: int, now: dt.datetime) -> str | None:
    if coupon.starts_at is not None and now < coupon.starts_at:
        return "discount_code_invalid"
    if coupon.ends_at is not None and now >= coupon.ends_at:
        return "discount_code_expired"
    if base < coupon.minimum_subtotal:
        return "discount_code_minimum_not_met"
    if coupon.applies_to == "items" and not any(line.purchasable and _eligible(coupon, line)
                                                for line in lines):
        return "discount_code_invalid"
    return None


def _eligible(coupon: Coupon, line: PricedLine) -> bool:
    return coupon.items is None or line.item_id in coupon.items


def apply_coupons(coupons: cabc.Sequence[Coupon], lines: cabc.Sequence[PricedLine],
                  codes: cabc.Sequence[str], now: dt.datetime) -> Discounted:
    """Apply the automatic coupons and the requested ``codes`` to ``lines``
    (module docstring). Amounts are minor units; each applied discount's
    allocations sum to its amount exactly.

    :param codes: distinct codes (case-insensitively), in the agent's order.
    """
    base = sum(line.base_amount for line in lines if line.purchasable)
    by_code = {c.code.casefold(): c for c in coupons if c.code is not None}
    chosen: list[tuple[Coupon, str | None, int]] = []
    rejected: list[RejectedDiscount] = []
    for position, rule in enumerate(coupons):
        if rule.code is None and _problem(rule, lines, base, now) is None:
            chosen.append((rule, None, position))
    exclusive = False
    for position, code in enumerate(codes):
        coupon = by_code.get(code.casefold())
        reason = "discount_code_invalid" if coupon is None else _problem(coupon, lines, base, now)
        if reason is None and coupon is not None:
            codes_chosen = any(c is not None for _, c, _ in chosen)
            if exclusive or (codes_chosen and not coupon.combinable):
                reason = "discount_code_combination_disallowed"
        if reason is not None or coupon is None:
            rejected.append(RejectedDiscount(code=code, reason=reason or "discount_code_invalid"))
            continue
        exclusive = exclusive or not coupon.combinable
        chosen.append((coupon, code, len(coupons) + position))
    chosen.sort(key=lambda entry: (entry[0].priority, entry[2]))

    remaining = [line.base_amount - line.discount if line.purchasable else 0 for line in lines]
    discounts = [line.discount for line in lines]
    applied: list[AppliedDiscount] = []
    for coupon, requested, _ in chosen:
        if coupon.applies_to == "shipping":
            continue
        targets = [i for i, line in enumerate(lines) if line.purchasable and _eligible(coupon, line)]
        if coupon.percent_off is not None:
            rate = coupon.percent_off / 100
            shares = [int((decimal.Decimal(remaining[i]) * rate).quantize(
                decimal.Decimal(1), rounding=decimal.ROUND_HALF_UP)) for i in targets]
            method = "each"
        else:
            amount_off = min(int(coupon.amount_off or 0), sum(remaining[i] for i in targets))
            shares = split_amount(amount_off, [remaining[i] for i in targets])
            method = "across"
        allocations = []
        for i, share in zip(targets, shares, strict=True):
            remaining[i] -= share
            discounts[i] += share
            allocations.append(DiscountAllocation(item_id=lines[i].item_id, amount=share))
        applied.append(_applied(coupon, requested, method, tuple(allocations)))
    out = tuple(dataclasses.replace(line, discount=discount) for line, discount in zip(lines, discounts,
                                                                                        strict=True))
    shipping = tuple((c, r) for c, r, _ in chosen if c.applies_to == "shipping")
    return Discounted(lines=out, applied=tuple(applied), rejected=tuple(rejected), shipping=shipping)


def discount_shipping(chosen: cabc.Sequence[tuple[Coupon, str | None]],
                      shipping: int) -> list[AppliedDiscount]:
    """Apply the chosen shipping coupons, in order, to ``shipping`` (the
    selected options' price, minor units): each takes its share of what is
    left, half-up, or its ``amount_off`` at most what is left."""
    applied = []
    left = shipping
    for coupon, requested in chosen:
        if coupon.percent_off is not None:
            amount = int((decimal.Decimal(left) * coupon.percent_off / 100).quantize(
                decimal.Decimal(1), rounding=decimal.ROUND_HALF_UP))
        else:
            amount = min(int(coupon.amount_off or 0), left)
        left -= amount
        applied.append(_applied(coupon, requested, "across",
                                (DiscountAllocation(amount=amount, fulfillment=True),)))
    return applied


def _applied(coupon: Coupon, requested: str | None, method: str,
             allocations: tuple[DiscountAllocation, ...]) -> AppliedDiscount:
    return AppliedDiscount(
        id="di_" + coupon.id, coupon_id=coupon.id, name=coupon.name, code=requested,
        automatic=requested is None, amount=sum(a.amount for a in allocations),
        percent_off=None if coupon.percent_off is None else str(coupon.percent_off),
        amount_off=coupon.amount_off, method=method, priority=coupon.priority,
        starts_at=coupon.starts_at, ends_at=coupon.ends_at, allocations=allocations)
