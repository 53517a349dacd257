"""Signed order webhooks: merchant -> agent (ACP 2026-04-17, spec §16).

Every order change writes an outbox row in the same transaction as the
change (``order_create`` at completion, ``order_update`` afterwards). This
package delivers those rows to the agent's ``webhook_url``:

- :mod:`.outbox` -- the delivery decisions, with no Flask or RQ: the outbox
  alone decides when an event is due and who holds it (:class:`OutboxDelivery`:
  claim due events, attempt, record the outcome);
- :mod:`.signing` -- ``Merchant-Signature`` (compute, format, parse, verify);
- :mod:`.delivery` -- one send of one claimed event (:class:`WebhookSender`);
- runners, which decide nothing: :mod:`.queue` / :mod:`.jobs` (RQ mode,
  ``ACP_REDIS_URL``), :mod:`.thread` (the embedded delivery thread, no Redis),
  :mod:`.cli`;
- :mod:`.service` -- the per-app facade, ``app.extensions["acp"].webhooks``.

Outbox statuses: ``pending`` (to send; ``attempts`` so far, next attempt at
``next_attempt_at``), ``delivered`` (a 2xx came back), ``failed`` (refused
with a non-retryable status, or retries exhausted; ``last_error`` says
which), ``skipped`` (the agent has no ``webhook_url``). ``flask acp events
replay`` turns any of them back into ``pending``.
"""

from __future__ import annotations

from .delivery import WebhookSender
from .outbox import DELIVERED
from .outbox import FAILED
from .outbox import PENDING
from .outbox import SKIPPED
from .outbox import STATUSES
from .outbox import DeliveryOutcome
from .outbox import OutboxDelivery
from .service import WebhookService
from .service import check_agents
from .service import current_webhooks
from .signing import SignatureError
from .signing import sign
from .signing import verify_header

__all__ = [
    "DELIVERED",
    "FAILED",
    "PENDING",
    "SKIPPED",
    "STATUSES",
    "DeliveryOutcome",
    "OutboxDelivery",
    "SignatureError",
    "WebhookSender",
    "WebhookService",
    "check_agents",
    "deliver_event",
    "sign",
    "verify_header",
]


def deliver_event(event_id: str) -> DeliveryOutcome:
    """Make one delivery attempt of pending outbox event ``event_id`` now, for
    the current app (needs an app context); see :meth:`WebhookService.deliver`.

    :returns: the outcome (``delivered``, ``retry``, ``failed``, ``skipped``,
        ``unchanged``, ``missing`` or ``busy``).
    """
    return current_webhooks().deliver(event_id)
