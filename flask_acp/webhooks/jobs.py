"""RQ job functions: top-level, importable, JSON-primitive arguments only.

Life cycle of one job (see :mod:`flask_acp.webhooks.queue` for how it is
enqueued): a worker started by ``flask acp worker`` runs it inside the app
context; the job reads the event's outbox row first (not ``pending`` any
more, e.g. delivered by another job's batch: nothing is sent), then the
agent's URL and secret from the app's configuration and the order's current
state from the store, and makes one attempt (``WebhookSender.deliver``).
After that it delivers up to :data:`BATCH_EVENTS` other due, never attempted
events for at most :data:`BATCH_SECONDS` (each claimed with ``Outbox.claim``
and sent under its order's lock, as always), so RQ's fixed cost per job is
shared by a batch; the jobs of those events then find them delivered. It

- returns a small JSON-able summary when the event was delivered, refused
  for good (other 4xx), skipped, or was no longer pending;
- raises :class:`WebhookDeliveryError` when the attempt should be retried
  (RQ schedules the retry from the job's ``Retry``; also when another job's
  batch made a failed attempt and the next one is not due yet), and when the
  retries ran out, so the job stays in RQ's failed registry for inspection
  (the outbox row is ``failed`` by then).
"""

from __future__ import annotations

import logging
import time
import typing as t

from flask import current_app

from ..models import JSON
from .delivery import PENDING
from .delivery import DeliveryOutcome

if t.TYPE_CHECKING:
    from ..state import ACPState
    from .service import WebhookService

log = logging.getLogger("flask_acp.webhooks")

#: most events one job delivers after its own (its batch)
BATCH_EVENTS = 100
#: seconds after which a job starts no further batch attempt
BATCH_SECONDS = 1.0
#: seconds of clock slack when checking that a retried event is due (RQ schedules
#: retries with one-second precision)
NOT_DUE_SLACK = 2.0


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
    """Deliver outbox event ``event_id`` once (the RQ job; needs an app context),
    then other due events as a batch (see :func:`drain_after`).

    The event's outbox row is read first: an event no longer ``pending`` (a
    batch of another job delivered it) is not sent again. An event a batch
    already attempted once, whose next attempt is not due yet, is not sent
    either: the job raises, so RQ schedules its retry with the configured
    interval.

    :param event_id: the outbox event id, e.g. ``evt_0123...``.
    :returns: the outcome as a dict (``result``, ``attempts``, ``status_code``...).
    :raises WebhookDeliveryError: retryable failure, or retries exhausted.
    """
    if not isinstance(event_id, str):
        raise TypeError("deliver_order_event takes the event id (a string)")
    state = t.cast("ACPState", current_app.extensions["acp"])
    webhooks = state.webhooks
    started = time.monotonic()
    entry = webhooks.storage.outbox.get(event_id)
    if entry is None or entry.status != PENDING:
        outcome = DeliveryOutcome(event_id, "missing" if entry is None else "unchanged",
                                  0 if entry is None else entry.attempts)
    elif entry.attempts > 0 and entry.next_attempt_at > webhooks.clock() + NOT_DUE_SLACK:
        # attempted (and failed) by another job's batch: this job's RQ retry makes the next one
        raise WebhookDeliveryError(DeliveryOutcome(
            event_id, "retry", entry.attempts, entry.last_status, "next attempt not due yet",
            entry.next_attempt_at))
    else:
        outcome = webhooks.sender.deliver(event_id, entry=entry)
    drain_after(webhooks, started)
    if outcome.retry or outcome.gave_up:
        raise WebhookDeliveryError(outcome)
    return outcome.to_dict()


def drain_after(webhooks: WebhookService, started: float) -> int:
    """The batch of a job: deliver up to :data:`BATCH_EVENTS` other due, never
    attempted events for at most :data:`BATCH_SECONDS` (never past the job's
    timeout), so one RQ job's fixed cost is shared by many events. Their own
    jobs find them delivered and return at once. Errors are logged, never raised
    (the job's own outcome stands).

    :returns: attempts made.
    """
    timeout = webhooks.settings.webhook_timeout
    job_timeout = 2 * timeout + 60
    # an attempt started before the deadline still fits in the job's timeout
    deadline = started + job_timeout - (2 * timeout + 10)
    try:
        outcomes = webhooks.sender.drain(limit=BATCH_EVENTS, seconds=BATCH_SECONDS, lease=job_timeout,
                                         deadline=deadline)
    except Exception:
        log.exception("webhook batch failed; the events left are delivered by their own jobs")
        return 0
    return len(outcomes)
