"""ACP 2025-09-29, the first public release, also answered as ``2025-09-12``
(the version string OpenAI's merchant docs told integrators to send, with
these shapes). Requests in :mod:`.schemas`; sessions and order webhooks by
:mod:`flask_acp.versions.legacy` with :data:`SHAPE`. An idempotency conflict
is 409; ``Idempotency-Key`` is optional; webhooks are signed with a hex
HMAC-SHA256 of the raw body.
"""

from __future__ import annotations

from .. import legacy
from ..base import WireVersion
from ..v2026_04_17 import render_discovery
from .schemas import REQUEST_SCHEMAS

VERSION = "2025-09-29"

SHAPE = legacy.Shape(
    version=VERSION,
    by_address=True,
    option_totals=False,
    line_display=False,
    card_networks=False,
    provider_merchant_id=False,
    statuses=legacy.STATUSES_2025_09_29,
    # return and shipping policies are the shop's policies of this version
    link_types={"terms_of_use": "terms_of_use", "privacy_policy": "privacy_policy",
                "return_policy": "seller_shop_policies", "shipping_policy": "seller_shop_policies"},
)

#: this version's plug-in
WIRE = WireVersion(
    version=VERSION,
    request_schemas=REQUEST_SCHEMAS,
    render_session=legacy.session_renderer(SHAPE),
    render_order=legacy.render_order,
    render_event=legacy.render_event,
    render_discovery=render_discovery,
    aliases=("2025-09-12",),
    idempotency_key_required=False,
    idempotency_conflict_status=409,
    webhook_signature="body",
)

__all__ = ["SHAPE", "VERSION", "WIRE"]
