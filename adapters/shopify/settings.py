# ruff: noqa: TID251 - relative imports within the package (installed as flask_acp_adapters)
"""The Shopify adapter's config keys (``SHOPIFY_*``), declared once: validation,
defaults and the README's Shopify table come from :data:`SHOPIFY_SETTINGS`."""

from __future__ import annotations

import dataclasses

from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import validate

from flask_acp.config import NOT_BLANK
from flask_acp.config import OneOrMany
from flask_acp.config import Section
from flask_acp.config import from_value_error
from flask_acp.config import setting

from .client import DEFAULT_API_VERSION
from .client import validate_shop_url


def _api_version(value: str) -> None:
    year, sep, month = value.partition("-")
    if value != "unstable" and not (sep and len(year) == 4 and year.isdigit()
                                    and month in ("01", "04", "07", "10")):
        raise ValidationError(f"must look like '2026-10' (or 'unstable'), got {value!r}")


def _seconds(*, allow_zero: bool = False) -> fields.Float:
    return fields.Float(validate=validate.Range(min=0, min_inclusive=allow_zero))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShopifySettings:
    """The ``SHOPIFY_*`` keys :meth:`.ShopifyAdapter.from_config` reads."""

    shop_url: str = setting(
        "SHOPIFY_SHOP_URL", fields.String(validate=from_value_error(validate_shop_url)),
        example='"https://{shop}.myshopify.com"',
        doc="`https://{shop}.myshopify.com` (scheme and host; plain http only for loopback)")
    access_token: str | None = setting(
        "SHOPIFY_ACCESS_TOKEN", fields.String(allow_none=True, validate=NOT_BLANK), None, default_doc="–",
        doc="Static Admin API token, **or** the client-credentials pair below")
    client_id: str | None = setting(
        "SHOPIFY_CLIENT_ID", fields.String(allow_none=True, validate=NOT_BLANK), None, default_doc="–",
        doc="Client-credentials grant, with `SHOPIFY_CLIENT_SECRET`; the token is refreshed before it "
            "expires")
    client_secret: str | None = setting(
        "SHOPIFY_CLIENT_SECRET", fields.String(allow_none=True, validate=NOT_BLANK), None, default_doc="–",
        doc="The client-credentials grant's secret, with `SHOPIFY_CLIENT_ID`")
    api_version: str = setting(
        "SHOPIFY_API_VERSION", fields.String(validate=_api_version), DEFAULT_API_VERSION,
        doc="Admin API version")
    timeout: float = setting("SHOPIFY_TIMEOUT", _seconds(), 10.0, unit="seconds", doc="Per call")
    max_throttle_wait: float = setting(
        "SHOPIFY_MAX_THROTTLE_WAIT", _seconds(allow_zero=True), 5.0, unit="seconds",
        doc="Longest back-off for a throttled call before a 503")
    ready_timeout: float = setting(
        "SHOPIFY_READY_TIMEOUT", _seconds(allow_zero=True), 5.0, unit="seconds",
        doc="Longest wait for a draft to be `ready`")
    accept_automatic_discounts: bool = setting(
        "SHOPIFY_ACCEPT_AUTOMATIC_DISCOUNTS", fields.Boolean(truthy={True}, falsy={False}), False,
        doc="`DraftOrderInput.acceptAutomaticDiscounts`")
    webhook_secrets: tuple[str, ...] | None = setting(
        "SHOPIFY_WEBHOOK_SECRET",
        OneOrMany(fields.String(validate=NOT_BLANK), allow_none=True, validate=validate.Length(
            min=1, error="give the webhooks' signing key, or a list of them while rotating")),
        None, default_doc="`SHOPIFY_CLIENT_SECRET`", convert=tuple,
        doc="Key of `X-Shopify-Hmac-Sha256` on `POST {prefix}/webhooks/shopify` (orders "
            "updated/cancelled/fulfilled/partially fulfilled, fulfillments create/update, refunds create); "
            "a list while rotating; with no key the route answers 404")


def _one_kind_of_credentials(settings: ShopifySettings) -> None:
    if settings.access_token and (settings.client_id or settings.client_secret):
        raise ValidationError("exclusive with SHOPIFY_CLIENT_ID/SHOPIFY_CLIENT_SECRET; set one of them",
                              "SHOPIFY_ACCESS_TOKEN")
    if not settings.access_token and not (settings.client_id and settings.client_secret):
        missing = ("SHOPIFY_CLIENT_SECRET" if settings.client_id else
                   "SHOPIFY_CLIENT_ID" if settings.client_secret else "SHOPIFY_ACCESS_TOKEN")
        raise ValidationError("required: set SHOPIFY_ACCESS_TOKEN, or both SHOPIFY_CLIENT_ID and "
                              "SHOPIFY_CLIENT_SECRET (client-credentials grant)", missing)


SHOPIFY_SETTINGS = Section("shopify", ShopifySettings, checks=(_one_kind_of_credentials,))
