"""The cart engine: lines, taxes (per line or at subtotal), coupons, fees and
shipping packages, all in the store's minor unit, as WooCommerce computes them."""

from __future__ import annotations

import decimal

from .model import Calc
from .model import Cart
from .model import D
from .model import JSONDict
from .model import Line
from .model import Package
from .model import Rate
from .model import ShipRate
from .model import esc
from .model import half_up
from .products import Products


class Pricing(Products):
    """Cart totals (a layer of :class:`~flask_acp.testing.fakes.woocommerce.FakeWooCommerce`)."""

    def _location(self, cart_or_order: tuple[JSONDict, JSONDict]) -> tuple[str, str, str]:
        billing, shipping = cart_or_order
        for address in (shipping, billing):
            if address.get("country"):
                return (str(address["country"]), str(address.get("state") or ""),
                        str(address.get("postcode") or ""))
        base = self.settings.get("base_location") or {}
        return str(base.get("country") or ""), str(base.get("state") or ""), ""

    def _rates_for(self, location: tuple[str, str, str], tax_class: str, *,
                   shipping: bool = False) -> list[Rate]:
        country, state, _postcode = location
        found: dict[int, Rate] = {}
        for raw, rate in zip(self._tax_rules, self._tax_rates, strict=True):
            if str(raw.get("class") or "") != tax_class:
                continue
            if raw.get("country") and raw["country"] != country:
                continue
            if raw.get("state") and raw["state"] != state:
                continue
            if shipping and not rate.shipping:
                continue
            found.setdefault(int(raw.get("priority") or 1), rate)
        return list(found.values())

    def _calculate(self, cart: Cart, *, coupons: list[str] | None = None) -> Calc:
        items = [(key, self._products[i["product_id"]], int(i["quantity"])) for key, i in cart.items.items()]
        return self._calc(items, (cart.billing, cart.shipping), coupons=coupons, cart=cart)

    def _calc(self, items: list[tuple[str, JSONDict, int]], addresses: tuple[JSONDict, JSONDict], *,
              coupons: list[str] | None = None, cart: Cart | None = None,
              shipping_lines: list[JSONDict] | None = None) -> Calc:
        inclusive = bool(self.settings["prices_include_tax"])
        location = self._location(addresses)
        errors: list[JSONDict] = []
        lines: list[Line] = []
        for key, product, quantity in items:
            line = Line(key, product, quantity)
            price = self._price(product)
            exact = D(price or "0") * quantity
            line.basis = half_up(exact.scaleb(int(self.settings["price_decimals"])))
            line.rates = (self._rates_for(location, str(product["tax_class"]))
                          if product["tax_status"] == "taxable" else [])
            lines.append(line)
            if cart is not None:
                errors.extend(self._item_errors(product, quantity, cart))
        # coupons
        if coupons is None and cart is not None:
            subtotal = sum(self._ex_tax(line.basis, line.rates, inclusive)[0] for line in lines)
            coupons = []
            for code in [c.lower() for c in cart.coupons] + self._auto_coupons(cart):
                coupon = self._coupons.get(code)
                if coupon is None or code in coupons:
                    continue
                problem = self._coupon_problem(coupon, subtotal)
                if problem is None:
                    coupons.append(code)
                elif code not in self._auto_coupons(cart):
                    errors.append({"code": "woocommerce_rest_cart_coupon_errors", "message": problem})
        remaining = [line.basis for line in lines]
        coupon_rows: list[tuple[str, str, int, int]] = []
        for code in coupons or []:
            coupon = self._coupons[code]
            discounts = self._coupon_discounts(coupon, lines, remaining)
            remaining = [r - d for r, d in zip(remaining, discounts, strict=True)]
            total_d = tax_d = 0
            exact_tax = D(0)
            for line, d in zip(lines, discounts, strict=True):
                r = sum((x.rate for x in line.rates), D(0))
                if inclusive:
                    part = half_up(D(d) * r / (1 + r))
                    total_d += d - part
                    tax_d += part
                else:
                    total_d += d
                    exact_tax += D(d) * r
            if not inclusive:
                tax_d = half_up(exact_tax)
            coupon_rows.append((str(coupon["code"]), str(coupon["discount_type"]), total_d, tax_d))
        items_tax_exact = D(0)
        for line, left in zip(lines, remaining, strict=True):
            line.subtotal, line.subtotal_tax, _exact = self._ex_tax(line.basis, line.rates, inclusive)
            line.total, line.total_tax, line.total_tax_exact = self._ex_tax(left, line.rates, inclusive)
            items_tax_exact += line.total_tax_exact
        calc = Calc(lines=lines, coupons=coupon_rows, fees=[], packages=[], needs_shipping=False,
                    has_calculated_shipping=False, tax_lines=[], errors=errors)
        calc.total_items = sum(line.subtotal for line in lines)
        calc.total_items_tax = sum(line.subtotal_tax for line in lines)
        calc.total_discount = sum(line.subtotal - line.total for line in lines)
        calc.total_discount_tax = sum(line.subtotal_tax - line.total_tax for line in lines)
        std_rates = self._rates_for(location, "")
        for index, fee in enumerate(self._fees if lines else []):
            amount = self._cents(fee.get("amount"))
            tax = half_up(D(amount) * sum((r.rate for r in std_rates), D(0))) if fee.get("taxable") else 0
            calc.fees.append((f"fee-{index}", str(fee.get("name") or "Fee"), amount, tax))
        calc.total_fees = sum(f[2] for f in calc.fees)
        calc.total_fees_tax = sum(f[3] for f in calc.fees)
        self._shipping(calc, location, cart, coupons or [], shipping_lines)
        items_tax = (half_up(items_tax_exact) if self.settings["tax_round_at_subtotal"]
                     else sum(line.total_tax for line in lines))
        calc.total_tax = items_tax + calc.total_shipping_tax + calc.total_fees_tax
        calc.total_price = (sum(line.total for line in lines) + calc.total_shipping + calc.total_fees
                            + calc.total_tax)
        by_rate: dict[int, tuple[Rate, D]] = {}
        for line in lines:
            r = sum((x.rate for x in line.rates), D(0))
            for rate in line.rates:
                share = line.total_tax_exact * (rate.rate / r) if r else D(0)
                by_rate[rate.id] = (rate, by_rate.get(rate.id, (rate, D(0)))[1] + share)
        ship_rates = self._rates_for(location, "", shipping=True)
        ship_r = sum((x.rate for x in ship_rates), D(0))
        for rate in ship_rates if ship_r else []:
            share = D(calc.total_shipping_tax) * (rate.rate / ship_r)
            by_rate[rate.id] = (rate, by_rate.get(rate.id, (rate, D(0)))[1] + share)
        std_r = sum((x.rate for x in std_rates), D(0))
        for rate in std_rates if std_r else []:
            share = D(calc.total_fees_tax) * (rate.rate / std_r)
            by_rate[rate.id] = (rate, by_rate.get(rate.id, (rate, D(0)))[1] + share)
        calc.tax_lines = [(rate, half_up(amount)) for rate, amount in by_rate.values()]
        return calc

    @staticmethod
    def _ex_tax(amount: int, rates: list[Rate], inclusive: bool) -> tuple[int, int, decimal.Decimal]:
        """``(amount ex tax, tax, exact tax)`` of a line amount in store minor units."""
        r = sum((x.rate for x in rates), D(0))
        if inclusive:
            exact = D(amount) * r / (1 + r)
            tax = half_up(exact)
            return amount - tax, tax, exact
        exact = D(amount) * r
        return amount, half_up(exact), exact

    def _coupon_discounts(self, coupon: JSONDict, lines: list[Line], remaining: list[int]) -> list[int]:
        kind = coupon["discount_type"]
        amount = D(str(coupon["amount"]))
        if kind == "fixed_product":
            per_unit = self._cents(coupon["amount"])
            return [min(per_unit * line.quantity, left) for line, left in zip(lines, remaining, strict=True)]
        total = sum(remaining)
        if total <= 0:
            return [0 for _ in lines]
        if kind == "percent":
            discounts = [int((D(left) * amount / 100).to_integral_value(rounding=decimal.ROUND_FLOOR))
                         for left in remaining]
            target = half_up(D(total) * amount / 100)
        else:  # fixed_cart
            target = min(self._cents(coupon["amount"]), total)
            discounts = [int((D(target) * left / total).to_integral_value(rounding=decimal.ROUND_FLOOR))
                         for left in remaining]
        leftover = target - sum(discounts)
        while leftover > 0:
            moved = False
            for i, left in enumerate(remaining):
                if leftover > 0 and discounts[i] < left:
                    discounts[i] += 1
                    leftover -= 1
                    moved = True
            if not moved:
                break
        return discounts

    def _item_errors(self, product: JSONDict, quantity: int, cart: Cart) -> list[JSONDict]:
        name = esc(product["name"])
        if product["status"] != "publish":
            return [{"code": "woocommerce_rest_cart_invalid_product",
                     "message": f"&quot;{name}&quot; is no longer available."}]
        if self._price(product) is None:
            return [{"code": "woocommerce_rest_product_not_purchasable",
                     "message": f"&quot;{name}&quot; is not available for purchase."}]
        available = self._available(product, cart)
        if available is not None and quantity > available:
            if available <= 0:
                return [{"code": "woocommerce_rest_product_out_of_stock",
                         "message": f"&quot;{name}&quot; is out of stock and cannot be purchased."}]
            return [{"code": "woocommerce_rest_product_partially_out_of_stock",
                     "message": f"There is not enough &quot;{name}&quot; in stock ({available} remaining)."}]
        return []

    def _shipping(self, calc: Calc, location: tuple[str, str, str], cart: Cart | None,
                  coupons: list[str], shipping_lines: list[JSONDict] | None) -> None:
        shipped = [line for line in calc.lines if not line.product["virtual"]]
        calc.needs_shipping = bool(shipped)
        if shipping_lines is not None:  # an order created through REST: explicit lines
            for row in shipping_lines:
                cost = self._cents(row.get("total"))
                ship_r = sum((r.rate for r in self._rates_for(location, "", shipping=True)), D(0))
                taxes = half_up(D(cost) * ship_r)
                rate = ShipRate(f"{row.get('method_id')}:{row.get('instance_id') or 0}",
                                str(row.get("method_id") or ""), int(row.get("instance_id") or 0),
                                str(row.get("method_title") or ""), "", "", cost, taxes)
                calc.packages.append(Package(len(calc.packages), "Shipping", [], [rate], rate.rate_id))
            calc.total_shipping = sum(p.rates[0].cost for p in calc.packages)
            calc.total_shipping_tax = sum(p.rates[0].taxes for p in calc.packages)
            return
        has_address = cart is None or bool(cart.shipping.get("country") or cart.billing.get("country"))
        country = location[0] if has_address else ""
        if not shipped or not country:
            return
        calc.has_calculated_shipping = True
        groups: dict[str, list[Line]] = {}
        for line in shipped:
            by_class = self.settings["packages"] == "by_shipping_class"
            group = str(line.product["shipping_class"]) if by_class else ""
            groups.setdefault(group, []).append(line)
        methods = self._methods_for(location)
        ship_rate = sum((r.rate for r in self._rates_for(location, "", shipping=True)), D(0))
        display_incl = self.settings.get("tax_display_cart") == "incl"
        shown = calc.total_items - calc.total_discount
        if display_incl:
            shown += calc.total_items_tax - calc.total_discount_tax
        has_free_coupon = any(self._coupons[c].get("free_shipping") for c in coupons)
        for package_id, (_group, group_lines) in enumerate(sorted(groups.items())):
            rates: list[ShipRate] = []
            quantity = sum(line.quantity for line in group_lines)
            for method in methods:
                kind = str(method.get("method_id"))
                if kind == "free_shipping":
                    requires = str(method.get("requires") or "")
                    enough = shown >= self._cents(method.get("min_amount") or "0")
                    ok = {"": True, "min_amount": enough, "coupon": has_free_coupon,
                          "either": enough or has_free_coupon,
                          "both": enough and has_free_coupon}.get(requires, True)
                    if not ok:
                        continue
                    cost = 0
                else:
                    cost = self._cents(D(str(method.get("cost") or "0"))
                                       + D(str(method.get("cost_per_item") or "0")) * quantity)
                taxable = str(method.get("tax_status") or "taxable") == "taxable"
                taxes = half_up(D(cost) * ship_rate) if taxable else 0
                rates.append(ShipRate(f"{kind}:{method.get('instance_id')}", kind,
                                      int(method.get("instance_id") or 0),
                                      str(method.get("title") or kind), str(method.get("description") or ""),
                                      str(method.get("delivery_time") or ""), cost, taxes))
            chosen = cart.chosen.get(package_id) if cart is not None else None
            ids = [r.rate_id for r in rates]
            selected = chosen if chosen in ids else (ids[0] if ids else None)
            if cart is not None and selected is not None:
                cart.chosen[package_id] = selected
            label = "Shipping" if package_id == 0 else f"Shipping {package_id + 1}"
            calc.packages.append(Package(package_id, label, [line.key for line in group_lines], rates,
                                         selected))
        for package in calc.packages:
            for rate in package.rates:
                if rate.rate_id == package.selected:
                    calc.total_shipping += rate.cost
                    calc.total_shipping_tax += rate.taxes

    def _methods_for(self, location: tuple[str, str, str]) -> list[JSONDict]:
        country, state, postcode = location
        for zone in self._zones:
            for spec in zone.get("locations") or []:
                spec = str(spec)
                if spec == country or spec == f"{country}:{state}" or (
                        spec.endswith("*") and postcode.replace(" ", "").upper().startswith(spec[:-1].upper())
                        and spec[:-1]) or (spec and spec[0].isdigit() and spec == postcode):
                    return list(zone.get("methods") or [])
        return list(self._world_methods)

    def _coupon_problem(self, coupon: JSONDict, items_subtotal: int) -> str | None:
        code = esc(str(coupon["code"]))
        expires = coupon.get("date_expires")
        if expires is not None and float(expires) <= self.now():
            return f"Coupon &quot;{code}&quot; has expired."
        limit = coupon.get("usage_limit")
        if limit is not None and int(coupon.get("usage_count") or 0) >= int(limit):
            return f"Usage limit for coupon &quot;{code}&quot; has been reached."
        minimum = coupon.get("minimum_amount")
        if minimum and items_subtotal < self._cents(minimum):
            return (f"The minimum spend for coupon &quot;{code}&quot; is "
                    f"{self._format(self._cents(minimum))}.")
        return None

    def _auto_coupons(self, cart: Cart) -> list[str]:
        return [code for code, c in self._coupons.items()
                if c.get("auto_apply") and code not in cart.removed_auto]

