"""RQ job functions: top-level, importable, JSON-primitive arguments only.

Life cycle of one job (see :mod:`flask_acp.webhooks.queue` for how it is
enqueued): a worker started by ``flask acp worker`` runs it inside the app
context; the job reads the agent's URL and secret from the app's
configuration and the order's current state from the store, makes one
attempt (:func:`flask_acp.webhooks.deliver_event`), and

- returns a small JSON-able summary when the event was delivered, refused
  for good (other 4xx), skipped, or was no longer pending;
- raises :class:`WebhookDeliveryError` when the attempt should be retried
  (RQ schedules the retry from the job's ``Retry``), and also when the
  retries ran out, so the job stays in RQ's failed registry for inspection
  (the outbox row is ``failed`` by then).
"""

from __future__ import annotations

from ..models import JSON
from .delivery import DeliveryOutcome


class WebhookDeliveryError(Exception):
    """An attempt failed in a way that is retried (timeout, connection error,
    408/429/5xx), or the last retry failed.

    :ivar outcome: what the attempt recorded.
    """

    def __init__(self, outcome: DeliveryOutcome) -> None:
        what = "gave up" if outcome.gave_up else "will retry"
        super().__init__(f"webhook event {outcome.event_id}: attempt {outcome.attempts} failed "
                         f"({outcome.error}); {what}")
        self.outcome = outcome


def deliver_order_event(event_id: str) -> dict[str, JSON]:
    """Deliver outbox event ``event_id`` once (the RQ job; needs an app context).

    :param event_id: the outbox event id, e.g. ``evt_0123...``.
    :returns: the outcome as a dict (``result``, ``attempts``, ``status_code``...).
    :raises WebhookDeliveryError: retryable failure, or retries exhausted.
    """
    from . import deliver_event

    if not isinstance(event_id, str):
        raise TypeError("deliver_order_event takes the event id (a string)")
    outcome = deliver_event(event_id)
    if outcome.retry or outcome.gave_up:
        raise WebhookDeliveryError(outcome)
    return outcome.to_dict()
