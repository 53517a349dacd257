"""ACP 2025-12-12: ``fulfillment_details`` and nested
``selected_fulfillment_options``, line-item display fields, card networks on
``payment_provider``, 3-D Secure fields, intent traces. Requests in
:mod:`.schemas`; sessions and order webhooks by
:mod:`flask_acp.versions.legacy` with :data:`SHAPE`. An idempotency conflict
is 409; ``Idempotency-Key`` is optional; webhooks are signed with a hex
HMAC-SHA256 of the raw body.
"""

from __future__ import annotations

from .. import legacy
from ..base import WireVersion
from ..v2026_04_17 import render_discovery
from .schemas import REQUEST_SCHEMAS

VERSION = "2025-12-12"

SHAPE = legacy.Shape(
    version=VERSION,
    by_address=False,
    option_totals=False,
    line_display=True,
    card_networks=True,
    provider_merchant_id=False,
    statuses=legacy.STATUSES_2025_09_29 | {"authentication_required"},
    link_types={"terms_of_use": "terms_of_use", "privacy_policy": "privacy_policy",
                "return_policy": "return_policy"},
)

#: this version's plug-in
WIRE = WireVersion(
    version=VERSION,
    request_schemas=REQUEST_SCHEMAS,
    render_session=legacy.session_renderer(SHAPE),
    render_order=legacy.render_order,
    render_event=legacy.render_event,
    render_discovery=render_discovery,
    idempotency_key_required=False,
    idempotency_conflict_status=409,
    webhook_signature="body",
)

__all__ = ["SHAPE", "VERSION", "WIRE"]
