# ruff: noqa: TID251 - relative imports within the package (installed as flask_acp_adapters)
"""The WooCommerce adapter's config keys (``WOOCOMMERCE_*``), declared once:
validation, defaults and the README's WooCommerce table come from
:data:`WOOCOMMERCE_SETTINGS`."""

from __future__ import annotations

import dataclasses

from marshmallow import fields
from marshmallow import validate

from flask_acp.config import NOT_BLANK
from flask_acp.config import OneOrMany
from flask_acp.config import Section
from flask_acp.config import from_value_error
from flask_acp.config import setting

from .client import validate_site_url

#: ``reconcile_orders(None)`` re-reads the orders modified within this many seconds.
RECONCILE_WINDOW = 7 * 24 * 3600.0


def _positive_seconds() -> fields.Float:
    return fields.Float(validate=validate.Range(min=0, min_inclusive=False))


def _credential() -> fields.String:
    return fields.String(validate=NOT_BLANK)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class WooCommerceSettings:
    """The ``WOOCOMMERCE_*`` keys :meth:`.WooCommerceAdapter.from_config` reads."""

    url: str = setting(
        "WOOCOMMERCE_URL", fields.String(validate=from_value_error(validate_site_url)),
        example='"https://shop.example"', doc="The site (https; plain http only for loopback)")
    consumer_key: str = setting(
        "WOOCOMMERCE_CONSUMER_KEY", _credential(), example='"ck_..."', convert=str.strip,
        doc="REST API key (Read/Write), sent as HTTP Basic")
    consumer_secret: str = setting(
        "WOOCOMMERCE_CONSUMER_SECRET", _credential(), example='"cs_..."', convert=str.strip,
        doc="The REST API key's secret")
    timeout: float = setting("WOOCOMMERCE_TIMEOUT", _positive_seconds(), 10.0, unit="seconds", doc="Per call")
    webhook_secrets: tuple[str, ...] = setting(
        "WOOCOMMERCE_WEBHOOK_SECRET", OneOrMany(fields.String(validate=NOT_BLANK)), [], default_doc="none",
        convert=tuple,
        doc="Secret of the store's webhook (WooCommerce → Settings → Advanced → Webhooks: topic \"Order "
            "updated\", API version \"WP REST API Integration v3\", delivery URL "
            "`{prefix}/webhooks/woocommerce`); a list while rotating, the current one first; unset, the "
            "route answers 404")
    reconcile_window: float = setting(
        "WOOCOMMERCE_RECONCILE_WINDOW", _positive_seconds(), RECONCILE_WINDOW, unit="seconds",
        doc="How far back `flask acp reconcile` reads without `--since` (WooCommerce never retries a "
            "failed webhook: run reconcile on a schedule)")


WOOCOMMERCE_SETTINGS = Section("woocommerce", WooCommerceSettings)
