"""What a shopper can buy and what it costs: stock net of reservations, taxes,
money bags in shop and presentment currencies, and the variant and product views."""

from __future__ import annotations

import decimal
import typing as t

from .model import D
from .model import DiscountCode
from .model import Draft
from .model import Variant
from .model import connection
from .model import exponent
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

    def _discount_plan(self, draft: Draft) -> tuple[list[DiscountCode], list[dict[str, t.Any]]]:
        """The draft's ``discountCodes`` that apply, in order, and a
        ``DraftOrderDiscountNotAppliedWarning`` for each of the others."""
        now = self.now()
        subtotal = sum((round_money(line.unit[self.currency] * line.quantity, self.currency)
                        for line in draft.lines), D(0))
        applied: list[DiscountCode] = []
        warnings: list[dict[str, t.Any]] = []
        for code in draft.discount_codes:
            discount = self.discount_codes.get(code.casefold())
            if discount is None or (discount.starts_at is not None and now < discount.starts_at):
                problem = f"Discount code {code} is not valid."
            elif discount.ends_at is not None and now >= discount.ends_at:
                problem = f"Discount code {code} has expired."
            elif discount.usage_limit is not None and discount.usage_count >= discount.usage_limit:
                problem = f"Discount code {code} has reached its usage limit."
            elif discount.minimum_subtotal is not None and subtotal < discount.minimum_subtotal:
                problem = (f"Discount code {code} requires a minimum purchase of "
                           f"{shopify_decimal(discount.minimum_subtotal)} {self.currency}.")
            elif discount in applied:
                problem = f"Discount code {code} is already applied."
            elif applied and not (discount.combines and all(d.combines for d in applied)):
                problem = f"Discount code {code} cannot be combined with other discounts."
            else:
                applied.append(discount)
                continue
            warnings.append({"__typename": "DraftOrderDiscountNotAppliedWarning", "discountCode": code,
                             "discountTitle": discount.title if discount else None,
                             "errorCode": "DISCOUNT_NOT_APPLIED", "field": "discount_codes",
                             "message": problem})
        return applied, warnings

    def _money(self, draft: Draft, *, calculated: bool) -> dict[str, t.Any]:
        """Every amount of a draft, per currency (shop and presentment): the
        discount codes that apply take, in order, their share of what each line
        still costs (a percentage per line, half-up; an amount, converted and
        capped, split over the lines in proportion, largest remainder), and the
        lines are taxed after their discounts."""
        currencies = [self.currency] + ([draft.presentment] if draft.presentment != self.currency else [])
        rate = self._tax_rate(draft.address) if calculated else D(0)
        applied, warnings = self._discount_plan(draft)
        out: dict[str, t.Any] = {"lines": [], "currencies": currencies, "warnings": warnings,
                                 "discounts": [{"discount": d, "lines": [{} for _ in draft.lines]}
                                               for d in applied]}
        per: dict[str, dict[str, decimal.Decimal]] = {c: {} for c in currencies}
        line_rows: list[dict[str, t.Any]] = [{} for _ in draft.lines]
        for cur in currencies:
            subtotal = tax_total = exact_total = discounts_total = D(0)
            originals = [round_money(line.unit[cur] * line.quantity, cur) for line in draft.lines]
            left = list(originals)
            for row in out["discounts"]:
                shares = self._discount_shares(row["discount"], left, cur)
                for index, share in enumerate(shares):
                    row["lines"][index][cur] = share
                    left[index] -= share
            for index, line in enumerate(draft.lines):
                variant = self.variants.get(line.variant_id)
                original = originals[index]
                discount = original - left[index]
                exact = self._tax(left[index], rate) if variant is not None and variant.taxable else D(0)
                tax = round_money(exact, cur)
                line_rows[index].setdefault("original", {})[cur] = original
                line_rows[index].setdefault("discount", {})[cur] = discount
                line_rows[index].setdefault("tax", {})[cur] = tax
                subtotal += left[index]
                discounts_total += discount
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
                        "discounts": discounts_total,
                        "total": subtotal + shipping + (D(0) if self.taxes_included else tax_total)}
        out["lines"] = line_rows
        out["totals"] = per
        out["rate"] = rate
        return out

    def _discount_shares(self, discount: DiscountCode, left: list[decimal.Decimal],
                         cur: str) -> list[decimal.Decimal]:
        """What ``discount`` takes off each line that still costs ``left``, in ``cur``."""
        if discount.percentage is not None:
            return [round_money(amount * discount.percentage, cur) for amount in left]
        unit = D(1).scaleb(-exponent(cur))
        wanted = round_money(t.cast(decimal.Decimal, discount.amount) * self.fx[cur], cur)
        total = sum(left, D(0))
        units = int(min(wanted, total) / unit)
        weights = [int(amount / unit) for amount in left]
        weight = sum(weights)
        if weight == 0:
            return [D(0) for _ in left]
        shares = [units * w // weight for w in weights]
        order = sorted(range(len(left)), key=lambda i: (-(units * weights[i] % weight), i))
        for i in order[:units - sum(shares)]:
            shares[i] += 1
        return [share * unit for share in shares]

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
            "inventoryItem": self._inventory_item_view(variant, with_variant=False),
            "product": self._product_view(variant),
            "barcode": variant.barcode,
            "compareAtPrice": (None if variant.compare_at_price is None
                               else shopify_decimal(variant.compare_at_price)),
            "selectedOptions": [{"name": n, "value": v} for n, v in variant.options]
                               or [{"name": "Title", "value": variant.title}],
        }

    def set_inventory(self, variant_id: int, quantity: int, *, notify: bool = False) -> None:
        """Set a variant's on-hand quantity; ``notify``: send ``inventory_levels/update``
        (``{inventory_item_id, location_id, available, updated_at}``, as Shopify's
        REST ``InventoryLevel``) to the subscribed webhook URL."""
        with self._lock:
            self.variants[int(variant_id)].inventory = quantity
            level = {"inventory_item_id": int(variant_id), "location_id": 1, "available": quantity,
                     "updated_at": self.now().strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                     "admin_graphql_api_id": f"gid://shopify/InventoryLevel/1?inventory_item_id={variant_id}"}
        if notify:
            self.emit("inventory_levels/update", level)

    def update_product(self, product_id: int, *, title: str | None = None, status: str | None = None) -> None:
        """Rename a product (every variant's ``product_title``) or set its
        ``status`` (``ACTIVE``, ``DRAFT``, ``ARCHIVED``) as the merchant's admin
        does, and send ``products/update`` (the REST product) to the subscribed
        webhook URL."""
        with self._lock:
            variants = [v for v in self.variants.values() if v.product_id == int(product_id)]
            if not variants:
                raise KeyError(product_id)
            for variant in variants:
                variant.product_title = title if title is not None else variant.product_title
                variant.status = status.upper() if status is not None else variant.status
        self.emit("products/update", self._product_rest(int(product_id)))

    def delete_product(self, product_id: int) -> None:
        """Delete a product and its variants as the merchant's admin does (its
        nodes read ``null`` from then on), and send ``products/delete``
        (``{"id": N}``, what Shopify sends) to the subscribed webhook URL."""
        with self._lock:
            gone = [i for i, v in self.variants.items() if v.product_id == int(product_id)]
            if not gone:
                raise KeyError(product_id)
            for variant_id in gone:
                del self.variants[variant_id]
        self.emit("products/delete", {"id": int(product_id)})

    def _inventory_item_view(self, variant: Variant, *, with_variant: bool = True) -> dict[str, t.Any]:
        view: dict[str, t.Any] = {
            "__typename": "InventoryItem", "id": gid("InventoryItem", variant.id), "tracked": variant.tracked,
            "requiresShipping": variant.requires_shipping, "sku": variant.sku}
        if with_variant:
            view["variant"] = self._variant_view(variant)
        return view

    def _product_view(self, variant: Variant) -> dict[str, t.Any]:
        """The ``Product`` of ``variant`` (its first variant gives the product's
        fields); ``variants`` and ``description`` resolve when selected."""
        product_id = variant.product_id
        handle = variant.product_title.lower().replace(" ", "-")
        image = variant.image

        def variants(info: t.Any, first: int | None = None, after: str | None = None, **_: t.Any
                     ) -> dict[str, t.Any]:
            with self._lock:
                siblings = [v for _, v in sorted(self.variants.items()) if v.product_id == product_id]
            if after is not None:
                ids = [str(v.id) for v in siblings]
                siblings = siblings[ids.index(after) + 1:] if after in ids else []
            limit = max(0, min(250, first if first is not None else 250))
            page = [self._variant_view(v) for v in siblings[:limit]]
            return connection(page, lambda n: str(n["legacyResourceId"]), has_next=len(siblings) > limit)

        def description(info: t.Any, truncateAt: int | None = None) -> str:
            text = variant.product_description
            return text[:truncateAt] if truncateAt is not None else text

        return {"__typename": "Product", "id": gid("Product", product_id),
                "legacyResourceId": str(product_id), "title": variant.product_title,
                "handle": handle, "status": variant.status,
                "publishedAt": "2026-01-01T00:00:00Z" if variant.published else None,
                "onlineStoreUrl": f"https://{self.domain}/products/{handle}" if variant.published else None,
                "featuredMedia": None if not image else {
                    "__typename": "MediaImage", "id": gid("MediaImage", product_id),
                    "alt": variant.product_title,
                    "mediaContentType": "IMAGE",
                    "image": {"url": image, "altText": variant.product_title, "width": None, "height": None,
                              "id": None}},
                "description": description, "variants": variants}

    def _products(self, query: str | None) -> list[Variant]:
        """The first variant of each product (by product id) ``query`` matches:
        ``status:active|draft|archived`` is understood, other terms ignored."""
        status = None
        for term in (query or "").split():
            name, _, value = term.partition(":")
            if name == "status":
                status = value.upper()
        firsts: dict[int, Variant] = {}
        for _, v in sorted(self.variants.items()):
            firsts.setdefault(v.product_id, v)
        return [v for pid, v in sorted(firsts.items()) if status is None or v.status == status]

    def _product_rest(self, product_id: int) -> dict[str, t.Any]:
        """The REST ``Product`` of a ``products/*`` webhook (the fields flask-acp reads)."""
        with self._lock:
            variants = [v for _, v in sorted(self.variants.items()) if v.product_id == product_id]
            first = variants[0]
            return {"id": product_id, "admin_graphql_api_id": gid("Product", product_id),
                    "title": first.product_title, "status": first.status.lower(),
                    "updated_at": self.now().strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                    "variants": [{"id": v.id, "product_id": product_id, "title": v.title,
                                  "price": shopify_decimal(v.price), "sku": v.sku,
                                  "inventory_item_id": v.id} for v in variants]}

