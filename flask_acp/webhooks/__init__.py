"""Signed order webhooks: merchant -> agent (ACP 2026-04-17, spec §16).

Every order change writes an outbox row in the same transaction as the
change (``order_create`` at completion, ``order_update`` afterwards). This
package delivers those rows to the agent's ``webhook_url``:

- :mod:`.signing` -- ``Merchant-Signature`` (compute, format, parse, verify);
- :mod:`.delivery` -- one attempt of one event (:class:`WebhookSender`);
- :mod:`.queue` / :mod:`.jobs` -- RQ mode (``ACP_REDIS_URL``);
- :mod:`.thread` -- the embedded delivery thread (no Redis);
- :mod:`.service` -- the per-app facade, ``app.extensions["acp"].webhooks``;
- :mod:`.cli` -- ``flask acp worker`` and ``flask acp events ...``.

Outbox statuses: ``pending`` (to send; ``attempts`` so far, next attempt at
``next_attempt_at``), ``delivered`` (a 2xx came back), ``failed`` (refused
with a non-retryable status, or retries exhausted; ``last_error`` says
which), ``skipped`` (the agent has no ``webhook_url``). ``flask acp events
replay`` turns any of them back into ``pending``.
"""

from __future__ import annotations

import typing as t

from flask import current_app

from .delivery import DELIVERED
from .delivery import FAILED
from .delivery import PENDING
from .delivery import SKIPPED
from .delivery import STATUSES
from .delivery import DeliveryOutcome
from .delivery import WebhookSender
from .service import WebhookService
from .service import check_agents
from .signing import SignatureError
from .signing import sign
from .signing import verify_header

if t.TYPE_CHECKING:
    from ..state import ACPState

__all__ = [
    "DELIVERED",
    "FAILED",
    "PENDING",
    "SKIPPED",
    "STATUSES",
    "DeliveryOutcome",
    "SignatureError",
    "WebhookSender",
    "WebhookService",
    "check_agents",
    "deliver_event",
    "sign",
    "verify_header",
]


def deliver_event(event_id: str) -> DeliveryOutcome:
    """Make one delivery attempt of outbox event ``event_id`` for the current
    app (needs an app context): the function both delivery modes run.

    :returns: the outcome (``delivered``, ``retry``, ``failed``, ``skipped``,
        ``unchanged`` or ``missing``).
    """
    state = t.cast("ACPState", current_app.extensions["acp"])
    return state.webhooks.deliver(event_id)
