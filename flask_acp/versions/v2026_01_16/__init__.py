"""ACP 2026-01-16: 2025-12-12's requests (:mod:`flask_acp.versions.v2025_12_12.schemas`)
and session, plus ``payment_provider.merchant_id`` and fulfillment options
priced with ``totals[]`` (and ``description`` instead of ``subtitle``).
Rendered by :mod:`flask_acp.versions.legacy` with :data:`SHAPE`. An
idempotency conflict is 409; ``Idempotency-Key`` is optional; webhooks are
signed with a hex HMAC-SHA256 of the raw body.
"""

from __future__ import annotations

import dataclasses

from .. import legacy
from ..base import WireVersion
from ..v2025_12_12 import SHAPE as SHAPE_2025_12_12
from ..v2025_12_12.schemas import REQUEST_SCHEMAS
from ..v2026_04_17 import render_discovery

VERSION = "2026-01-16"

SHAPE = dataclasses.replace(SHAPE_2025_12_12, version=VERSION, option_totals=True,
                            provider_merchant_id=True)

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
