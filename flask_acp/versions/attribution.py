"""``AffiliateAttribution`` requests (2025-12-12+; affiliate attribution RFC),
shared by the versions that keep it: structure, and no personal data.

The object is write-only (never rendered) and left open by the spec: unknown
members are dropped, the known ones validated. What is kept is returned as
a plain dict for :attr:`flask_acp.models.CheckoutSession.affiliate_attributions`.

PII (RFC §6.2, §7.4): a string that looks like an e-mail address or a phone
number in any member but ``token`` (an opaque secret, never inspected), or a
``metadata`` key that names personal data (``email``, ``phone``, ``address``...),
is refused with 400 ``pii_not_allowed`` at its JSONPath. False positives are
preferred to leaks (RFC §6.2): a provider identifier of 10 or more digits
reads as a phone number.
"""

from __future__ import annotations

import math
import re
import typing as t
import urllib.parse

from marshmallow import EXCLUDE
from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import post_load
from marshmallow import validate
from marshmallow import validates_schema

__all__ = ["PII_NOT_ALLOWED", "AffiliateAttributionSchema", "find_pii"]

#: the message of a PII refusal; the pipeline answers it with code ``pii_not_allowed``
PII_NOT_ALLOWED = "Must not contain personally identifiable information (affiliate attribution RFC §7.4)."

_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]{2,}")
_PHONE = re.compile(r"^\s*\+?[\d\s().\-/]+$")
#: substrings of ``metadata`` keys that name personal data
_PII_KEYS = ("email", "e_mail", "phone", "mobile", "msisdn", "ssn", "social_security", "address",
             "street", "postal", "postcode", "zip", "first_name", "last_name", "full_name", "surname",
             "birth", "dob", "passport", "ip_addr", "fingerprint")


def _looks_like_phone(value: str) -> bool:
    if not _PHONE.match(value):
        return False
    digits = sum(c.isdigit() for c in value)
    return 7 <= digits <= 15 if value.strip().startswith("+") else 10 <= digits <= 15


def find_pii(value: t.Any) -> bool:
    """Whether a string looks like an e-mail address or a phone number."""
    return isinstance(value, str) and (bool(_EMAIL.search(value)) or _looks_like_phone(value))


def _key_names_pii(key: str) -> bool:
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)  # firstName -> first_Name
    normalized = re.sub(r"[^a-z0-9]+", "_", snake.lower())
    return any(word in normalized for word in _PII_KEYS)


class _Open(Schema):
    class Meta:
        unknown = EXCLUDE


class _Identifier(fields.String):
    """A provider-scoped identifier: 1-256 characters, no personal data."""

    def __init__(self, **kwargs: t.Any) -> None:
        super().__init__(validate=validate.Length(min=1, max=256), **kwargs)

    def _deserialize(self, value: t.Any, attr: str | None, data: t.Any, **kwargs: t.Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if find_pii(text):
            raise ValidationError(PII_NOT_ALLOWED)
        return text


class _FlatMetadata(fields.Field[dict[str, t.Any]]):
    """``AffiliateAttributionMetadata``: at most 20 keys of strings, numbers
    or booleans (no nesting), no personal data in keys or values."""

    def _deserialize(self, value: t.Any, attr: str | None, data: t.Any,
                     **kwargs: t.Any) -> dict[str, t.Any]:
        if not isinstance(value, dict):
            raise ValidationError("Not a valid mapping type.")
        if len(value) > 20:
            raise ValidationError("At most 20 metadata keys.")
        for key, item in value.items():
            infinite = isinstance(item, float) and not math.isfinite(item)
            if isinstance(item, (dict, list)) or item is None or infinite:
                raise ValidationError({key: ["Not a valid metadata value: use a string, number or boolean."]})
            if isinstance(item, str) and len(item) > 512:
                raise ValidationError({key: ["Longer than 512 characters."]})
            number = isinstance(item, int) and not isinstance(item, bool)
            if _key_names_pii(key) or find_pii(str(item) if number else item):
                raise ValidationError({key: [PII_NOT_ALLOWED]})
        return dict(value)


class _SourceSchema(_Open):
    type = fields.String(required=True, validate=validate.OneOf(["url", "platform", "unknown"]))
    url = fields.Url(require_tld=False, validate=validate.Length(max=2048))

    @validates_schema
    def _no_pii(self, data: dict[str, t.Any], **kwargs: t.Any) -> None:
        if "url" in data and _EMAIL.search(urllib.parse.unquote(data["url"])):
            raise ValidationError(PII_NOT_ALLOWED, "url")


class AffiliateAttributionSchema(_Open):
    """``AffiliateAttribution``: ``provider`` and at least one of ``token`` /
    ``publisher_id``; loads to a dict of the known members (timestamps as
    ISO 8601 strings). The request schema that nests it fills a missing
    ``touchpoint`` (``first`` on create, ``last`` on complete)."""

    provider = fields.String(required=True, validate=validate.Length(min=1, max=256))
    token = fields.String(validate=validate.Length(min=1, max=4096))
    publisher_id = _Identifier()
    campaign_id = _Identifier()
    creative_id = _Identifier()
    sub_id = _Identifier()
    source = fields.Nested(_SourceSchema)
    issued_at = fields.AwareDateTime(format="iso")
    expires_at = fields.AwareDateTime(format="iso")
    metadata = _FlatMetadata()
    touchpoint = fields.String(validate=validate.OneOf(["first", "last"]))

    @validates_schema
    def _token_or_publisher(self, data: dict[str, t.Any], **kwargs: t.Any) -> None:
        if "token" not in data and "publisher_id" not in data:
            raise ValidationError("Send a token or a publisher_id (or both).", "publisher_id")
        if find_pii(data.get("provider")):
            raise ValidationError(PII_NOT_ALLOWED, "provider")

    @post_load
    def _plain(self, data: dict[str, t.Any], **kwargs: t.Any) -> dict[str, t.Any]:
        for name in ("issued_at", "expires_at"):
            if name in data:
                data[name] = data[name].isoformat()
        return data
