"""What a shopper can buy and what it costs: stock net of reservations, taxes,
money bags in shop and presentment currencies, and the variant and product views."""

from __future__ import annotations

import decimal
import typing as t

from .model import D
from .model import Draft
from .model import Variant
from .model import gid
from .model import round_money
from .model import shopify_decimal
from .webhooks import ShopWebhooks


class Inventory(ShopWebhooks):
    """Stock, tax and money (a layer of :class:`~flask_acp.testing.fakes.shopify.FakeShopify`)."""

    def sellable(self, variant_id: int) -> int:
        """``sellableOnlineQuantity`` of a variant now."""
        with self._lock:
            return self._sellable(self.variants[int(variant_id)])

    def _reserved(self, variant: Variant, *, excluding: int | None = None) -> int:
        now = self.now()
        return sum(
            line.quantity
            for draft in self.drafts.values()
            if draft.status == "OPEN" and draft.reserve_until is not None and draft.reserve_until > now
            and draft.number != excluding
            for line in draft.lines if line.variant_id == variant.id
        )

    def _sellable(self, variant: Variant) -> int:
        return variant.inventory - (self._reserved(variant) if variant.tracked else 0)

    def _tax_rate(self, address: dict[str, t.Any] | None) -> decimal.Decimal:
        if not address or not address.get("countryCode"):
            return D(0)
        country = str(address["countryCode"]).upper()
        province = str(address.get("provinceCode") or "").upper()
        return self.tax_rates.get(f"{country}-{province}", self.tax_rates.get(country, D(0)))

    def _tax(self, amount: decimal.Decimal, rate: decimal.Decimal) -> decimal.Decimal:
        if self.taxes_included:
            return amount - amount / (1 + rate)
        return amount * rate

    def _bag(self, amounts: dict[str, decimal.Decimal], presentment: str) -> dict[str, t.Any]:
        return {"shopMoney": {"amount": shopify_decimal(amounts[self.currency]),
                              "currencyCode": self.currency},
                "presentmentMoney": {"amount": shopify_decimal(amounts[presentment]),
                                     "currencyCode": presentment}}

    def _money(self, draft: Draft, *, calculated: bool) -> dict[str, t.Any]:
        """Every amount of a draft, per currency (shop and presentment)."""
        currencies = [self.currency] + ([draft.presentment] if draft.presentment != self.currency else [])
        rate = self._tax_rate(draft.address) if calculated else D(0)
        out: dict[str, t.Any] = {"lines": [], "currencies": currencies}
        per: dict[str, dict[str, decimal.Decimal]] = {c: {} for c in currencies}
        line_rows: list[dict[str, t.Any]] = [{} for _ in draft.lines]
        for cur in currencies:
            subtotal = tax_total = exact_total = D(0)
            for index, line in enumerate(draft.lines):
                variant = self.variants.get(line.variant_id)
                original = round_money(line.unit[cur] * line.quantity, cur)
                exact = self._tax(original, rate) if variant is not None and variant.taxable else D(0)
                tax = round_money(exact, cur)
                line_rows[index].setdefault("original", {})[cur] = original
                line_rows[index].setdefault("tax", {})[cur] = tax
                subtotal += original
                tax_total += tax
                exact_total += exact
            shipping = ship_tax = D(0)
            if draft.shipping is not None:
                shipping = draft.shipping["price"][cur]
                if self.tax_shipping:
                    ship_exact = self._tax(shipping, rate)
                    ship_tax = round_money(ship_exact, cur)
                    tax_total += ship_tax
                    exact_total += ship_exact
            if self.tax_rounding == "order":
                tax_total = round_money(exact_total, cur)
            per[cur] = {"subtotal": subtotal, "shipping": shipping, "ship_tax": ship_tax, "tax": tax_total,
                        "total": subtotal + shipping + (D(0) if self.taxes_included else tax_total)}
        out["lines"] = line_rows
        out["totals"] = per
        out["rate"] = rate
        return out

    # -- views ---------------------------------------------------------------------------------

    def _variant_view(self, variant: Variant) -> dict[str, t.Any]:
        sellable = self._sellable(variant)
        listed = variant.published and variant.status == "ACTIVE"
        available = listed and (not variant.tracked or variant.inventory_policy == "CONTINUE" or sellable > 0)
        return {
            "__typename": "ProductVariant",
            "id": gid("ProductVariant", variant.id),
            "legacyResourceId": str(variant.id),
            "title": variant.title,
            "displayName": f"{variant.product_title} - {variant.title}",
            "sku": variant.sku,
            "price": shopify_decimal(variant.price),
            "taxable": variant.taxable,
            "availableForSale": available,
            "inventoryPolicy": variant.inventory_policy,
            "inventoryQuantity": sellable if variant.tracked else None,
            "sellableOnlineQuantity": sellable if variant.tracked else 0,
            "image": {"url": variant.image, "id": None, "altText": None} if variant.image else None,
            "inventoryItem": {"__typename": "InventoryItem", "id": gid("InventoryItem", variant.id),
                              "tracked": variant.tracked, "requiresShipping": variant.requires_shipping,
                              "sku": variant.sku},
            "product": self._product_view(variant),
        }

    def _product_view(self, variant: Variant) -> dict[str, t.Any]:
        return {"__typename": "Product", "id": gid("Product", variant.product_id),
                "legacyResourceId": str(variant.product_id), "title": variant.product_title,
                "handle": variant.product_title.lower().replace(" ", "-"), "status": variant.status,
                "publishedAt": "2026-01-01T00:00:00Z" if variant.published else None}

