"""The fake shop's state: the seed it loads, its catalogue, drafts and orders,
counters, and the controls a test sets them with; the bottom layer of
:class:`~flask_acp.testing.fakes.shopify.FakeShopify`."""

from __future__ import annotations

import collections
import collections.abc as cabc
import datetime as dt
import decimal
import json
import pathlib
import typing as t

from ..base import FakeClock
from ..base import FakeServer
from .model import DEFAULT_WEBHOOK_TOPICS
from .model import DEMO_SEED
from .model import SUPPORTED_VERSIONS
from .model import D
from .model import DiscountCode
from .model import Draft
from .model import Order
from .model import Variant
from .model import WebhookDelivery
from .model import exponent
from .model import round_money

Seed = cabc.Mapping[str, t.Any] | str | pathlib.Path


class ShopState(FakeServer[WebhookDelivery]):
    """The seeded state of the fake shop and its controls."""

    name = "FakeShopify"

    def __init__(self, seed: Seed | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 quiet: bool = True, clock: FakeClock | None = None) -> None:
        super().__init__(host=host, port=port, quiet=quiet, clock=clock)
        self.calls: collections.Counter[str] = collections.Counter()
        self.executed: collections.Counter[str] = collections.Counter()
        self.documents: dict[str, str] = {}
        self.events: list[dict[str, t.Any]] = []
        self.deliveries: list[WebhookDelivery] = []
        self.webhook_timeout = (1, 5)  # seconds to connect, to answer (Shopify's)
        self._muted = 0
        self.reset(seed)

    @property
    def access_token(self) -> str:
        """The first seeded static access token."""
        return self._tokens[0] if self._tokens else ""

    def reset(self, seed: Seed | None = None) -> None:
        """Forget all state (drafts, orders, counters, faults) and load ``seed``.

        :raises ValueError: an invalid seed (the message names the key).
        """
        if seed is None:
            seed = DEMO_SEED
        if isinstance(seed, str | pathlib.Path):
            seed = json.loads(pathlib.Path(seed).read_text(encoding="utf-8"))
        data = dict(t.cast(cabc.Mapping[str, t.Any], seed))
        with self._lock:
            shop = dict(data.get("shop") or {})
            self.shop_name = str(shop.get("name", "Fake Shop"))
            self.domain = str(shop.get("domain", "fake-shop.myshopify.com"))
            self.currency = str(shop.get("currency", "USD")).upper()
            exponent(self.currency)
            self.taxes_included = bool(shop.get("taxes_included", False))
            self.tax_shipping = bool(shop.get("tax_shipping", False))
            self.fx: dict[str, decimal.Decimal] = {self.currency: D(1)}
            for code, rate in (shop.get("presentment_currencies") or {}).items():
                exponent(code)
                self.fx[str(code).upper()] = self._decimal(rate, f"shop.presentment_currencies.{code}")
            self._tokens: list[str] = [str(x) for x in data.get("access_tokens", ["shpat_fake_token"])]
            self._clients: dict[str, dict[str, t.Any]] = {
                str(k): dict(v) for k, v in (data.get("clients") or {}).items()}
            self._issued: dict[str, dt.datetime] = {}
            self.tax_rates = {str(k).upper(): self._decimal(v, f"tax_rates.{k}")
                              for k, v in (data.get("tax_rates") or {}).items()}
            self.tax_rounding = str(data.get("tax_rounding", "line"))
            if self.tax_rounding not in ("line", "order"):
                raise ValueError("tax_rounding must be 'line' or 'order'")
            self.shipping_rates = self._rates(data.get("shipping_rates") or {}, "shipping_rates")
            self.local_delivery_rates = self._rates(data.get("local_delivery_rates") or {},
                                                    "local_delivery_rates")
            self.discount_codes: dict[str, DiscountCode] = {}
            for index, raw in enumerate(data.get("discount_codes") or []):
                discount = self._discount_code(raw, index)
                self.discount_codes[discount.code.casefold()] = discount
            self.variants: dict[int, Variant] = {}
            for index, raw in enumerate(data.get("variants") or []):
                variant = self._variant(raw, f"variants[{index}]")
                self.variants[variant.id] = variant
            self.ready_delay_reads = int(data.get("ready_delay_reads", 1))
            bucket = dict(data.get("bucket") or {})
            self.bucket_max = float(bucket.get("maximum_available", 1000))
            self.bucket_rate = float(bucket.get("restore_rate", 100))
            self._buckets: dict[str, tuple[float, float]] = {}
            self.api_versions = tuple(data.get("api_versions") or SUPPORTED_VERSIONS)
            self._next_order = int(data.get("order_number_start", 1001))
            self._next_draft = 1
            self.drafts: dict[int, Draft] = {}
            self.orders: dict[int, Order] = {}
            self._handles: dict[str, dict[str, t.Any]] = {}
            self._seq = 0
            super().reset()
            self.calls.clear()
            self.executed.clear()
            self.documents.clear()
            self.events.clear()
            hooks = dict(data.get("webhooks") or {})
            first_client = next(iter(self._clients.values()), {})
            self.webhook_url: str | None = hooks.get("url")
            #: the key of ``X-Shopify-Hmac-Sha256``: ``webhooks.secret``, else the
            #: first client's secret (Shopify signs with the app's client secret).
            self.webhook_secret = str(hooks.get("secret") or first_client.get("secret")
                                      or "shpss_fake_webhook_secret")
            self.webhook_topics = frozenset(hooks.get("topics") or DEFAULT_WEBHOOK_TOPICS)
            self.webhook_api_version = str(hooks.get("api_version") or self.api_versions[-1])
            self.webhook_retries = int(hooks.get("retries", 2))
            self.webhook_retry_delay = float(hooks.get("retry_delay", 0.1))
            self._next_id = int(data.get("resource_id_start", 5_000_000_001))
            self._muted = 0
            self.deliveries = []

    @staticmethod
    def _decimal(value: t.Any, key: str) -> decimal.Decimal:
        if isinstance(value, float) or isinstance(value, bool):
            raise ValueError(f"{key}: give amounts and rates as strings or integers, not {value!r}")
        try:
            return D(str(value))
        except decimal.InvalidOperation:
            raise ValueError(f"{key}: not a decimal: {value!r}") from None

    def _rates(self, raw: cabc.Mapping[str, t.Any], key: str) -> dict[str, list[dict[str, t.Any]]]:
        out: dict[str, list[dict[str, t.Any]]] = {}
        for country, rates in raw.items():
            out[str(country).upper()] = [
                {"title": str(r["title"]), "code": str(r.get("code") or r["title"]),
                 "source": str(r.get("source", "shopify")),
                 "price": self._decimal(r["price"], f"{key}.{country}[{i}].price")}
                for i, r in enumerate(rates)]
        return out

    def _discount_code(self, raw: cabc.Mapping[str, t.Any], index: int) -> DiscountCode:
        key = f"discount_codes[{index}]"
        if (raw.get("percentage") is None) == (raw.get("amount") is None) or not raw.get("code"):
            raise ValueError(f"{key}: give a code and one of percentage, amount")

        def when(name: str) -> dt.datetime | None:
            value = raw.get(name)
            return None if value is None else dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))

        return DiscountCode(
            id=index + 1, code=str(raw["code"]), title=str(raw.get("title") or raw["code"]),
            percentage=(self._decimal(raw["percentage"], f"{key}.percentage")
                        if raw.get("percentage") is not None else None),
            amount=self._decimal(raw["amount"], f"{key}.amount") if raw.get("amount") is not None else None,
            minimum_subtotal=(self._decimal(raw["minimum_subtotal"], f"{key}.minimum_subtotal")
                              if raw.get("minimum_subtotal") is not None else None),
            starts_at=when("starts_at"), ends_at=when("ends_at"), combines=bool(raw.get("combines", False)),
            usage_limit=raw.get("usage_limit"), usage_count=int(raw.get("usage_count", 0)))

    def _variant(self, raw: cabc.Mapping[str, t.Any], key: str) -> Variant:
        try:
            variant_id = int(raw["id"])
            price = self._decimal(raw["price"], f"{key}.price")
        except KeyError as exc:
            raise ValueError(f"{key}: {exc.args[0]} is required") from None
        policy = str(raw.get("inventory_policy", "DENY")).upper()
        status = str(raw.get("status", "ACTIVE")).upper()
        if policy not in ("DENY", "CONTINUE") or status not in ("ACTIVE", "DRAFT", "ARCHIVED"):
            raise ValueError(f"{key}: inventory_policy must be DENY|CONTINUE, status ACTIVE|DRAFT|ARCHIVED")
        return Variant(
            id=variant_id, product_id=int(raw.get("product_id", variant_id)),
            product_title=str(raw.get("product_title", f"Product {variant_id}")),
            title=str(raw.get("title", "Default Title")), price=price,
            inventory=int(raw.get("inventory", 0)), tracked=bool(raw.get("tracked", True)),
            inventory_policy=policy, requires_shipping=bool(raw.get("requires_shipping", True)),
            taxable=bool(raw.get("taxable", True)), published=bool(raw.get("published", True)),
            status=status, sku=raw.get("sku"), image=raw.get("image"),
            presentment_prices={str(c).upper(): self._decimal(p, f"{key}.presentment_prices.{c}")
                               for c, p in (raw.get("presentment_prices") or {}).items()},
            barcode=raw.get("barcode"),
            compare_at_price=(None if raw.get("compare_at_price") is None
                              else self._decimal(raw["compare_at_price"], f"{key}.compare_at_price")),
            options=tuple((str(n), str(v)) for n, v in (raw.get("options") or {}).items()),
            product_description=str(raw.get("product_description") or ""),
        )

    def now(self) -> dt.datetime:
        """The fake clock (:attr:`clock`) as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.clock.time(), dt.timezone.utc)

    def reset_counters(self) -> None:
        """Zero :attr:`calls` and :attr:`executed`."""
        with self._lock:
            self.calls.clear()
            self.executed.clear()

    def set_price(self, variant_id: int, amount: str, *, currency: str | None = None,
                  reprice_drafts: bool = True) -> None:
        """Change a variant's price (shop currency, or one presentment currency);
        the lines of open drafts holding it at the catalog price (no
        ``priceOverride``) are re-priced and their drafts recalculated (``ready: false``)."""
        with self._lock:
            variant = self.variants[int(variant_id)]
            if currency is None or currency.upper() == self.currency:
                variant.price = D(amount)
            else:
                variant.presentment_prices[currency.upper()] = D(amount)
            if reprice_drafts:
                for draft in self.drafts.values():
                    following = [x for x in draft.lines if x.variant_id == variant.id and x.override is None]
                    if draft.status == "OPEN" and following:
                        for line in following:
                            line.unit = self._unit_prices(variant, draft.presentment)
                        draft.unready_reads = max(1, self.ready_delay_reads)
                        draft.updated_at = self.now()

    def set_tax_rate(self, region: str, rate: str) -> None:
        """Set the tax rate of ``"CC"`` or ``"CC-PROVINCE"`` (open drafts recalculate)."""
        with self._lock:
            self.tax_rates[region.upper()] = D(rate)
            for draft in self.drafts.values():
                if draft.status == "OPEN":
                    draft.unready_reads = max(1, self.ready_delay_reads)

    def _unit_prices(self, variant: Variant, presentment: str) -> dict[str, decimal.Decimal]:
        units = {self.currency: variant.price}
        if presentment != self.currency:
            units[presentment] = variant.presentment_prices.get(presentment) or round_money(
                variant.price * self.fx[presentment], presentment)
        return units

    def _override_prices(self, override: tuple[decimal.Decimal, str], presentment: str,
                         ) -> dict[str, decimal.Decimal]:
        """The unit prices of a line whose ``priceOverride`` is ``override`` (amount,
        currency): in the presentment currency, converted at the shop's rates
        when given in another one (half-up), and in the shop currency."""
        amount, currency = override
        if currency == presentment:
            unit = round_money(amount, presentment)
        else:
            unit = round_money(amount / self.fx[currency] * self.fx[presentment], presentment)
        units = {presentment: unit}
        if presentment != self.currency:
            units[self.currency] = round_money(unit / self.fx[presentment], self.currency)
        return units

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

