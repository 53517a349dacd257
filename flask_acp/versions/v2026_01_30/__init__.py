"""ACP 2026-01-30: the first version with capabilities, payment handlers and
line-item ``totals[]``. Requests and sessions are 2026-04-17's minus what
2026-04-17 added (:mod:`.render`, :mod:`.schemas`); order webhooks are still
the legacy ``EventDataOrder`` with a body-HMAC signature; an idempotency
conflict is 409; ``Idempotency-Key`` is optional.
"""

from __future__ import annotations

from .. import legacy
from ..base import WireVersion
from ..v2026_04_17 import render_discovery
from .render import VERSION
from .render import render_session
from .schemas import REQUEST_SCHEMAS

#: this version's plug-in
WIRE = WireVersion(
    version=VERSION,
    request_schemas=REQUEST_SCHEMAS,
    render_session=render_session,
    render_order=legacy.render_order,
    render_event=legacy.render_event,
    render_discovery=render_discovery,
    idempotency_key_required=False,
    idempotency_conflict_status=409,
    webhook_signature="body",
)

__all__ = ["VERSION", "WIRE"]
