"""RQ job functions: top-level, importable, JSON-primitive arguments only.

Life cycle of one job (see :mod:`flask_acp.webhooks.queue` for when it is
enqueued): a worker started by ``flask acp worker`` runs it inside the app
context. The job is a runner and decides nothing: it asks the outbox for its
event (:meth:`~flask_acp.webhooks.outbox.OutboxDelivery.deliver` with
``due_only``: sent only if pending, due and claimable; the agent's URL and
secret from the app's configuration, the order's current state from the
store), then delivers up to :data:`BATCH_EVENTS` other due, never attempted
events for at most :data:`BATCH_SECONDS` (``deliver_due``), so RQ's fixed cost
per job is shared by a batch; the jobs of those events then find them
delivered. It

- returns a small JSON-able summary: the outcome of its event (``delivered``,
  ``retry`` with the outbox's ``next_attempt_at``, ``failed`` when refused,
  ``skipped``, ``unchanged``, ``not_due``, ``busy``). A retry is not RQ's:
  the outbox makes the event due again after its interval, and the worker's
  sweep hands it to a new run of this job then;
- raises :class:`WebhookDeliveryError` when its event was given up (the
  retries ran out), so the job stays in RQ's failed registry for inspection
  (the outbox row is ``failed`` by then).
"""

from __future__ import annotations

import logging
import time

from ..models import JSON
from .outbox import DeliveryOutcome
from .service import WebhookService
from .service import current_webhooks

log = logging.getLogger("flask_acp.webhooks")

#: most events one job delivers after its own (its batch)
BATCH_EVENTS = 100
#: seconds after which a job starts no further batch attempt
BATCH_SECONDS = 1.0


class WebhookDeliveryError(Exception):
    """The job's event was given up: its last retry failed.

    :ivar outcome: what the last attempt recorded.
    """

    def __init__(self, outcome: DeliveryOutcome) -> None:
        super().__init__(f"webhook event {outcome.event_id}: attempt {outcome.attempts} failed "
                         f"({outcome.error}); gave up")
        self.outcome = outcome


def deliver_order_event(event_id: str) -> dict[str, JSON]:
    """Deliver outbox event ``event_id`` if it is due (the RQ job; needs an app
    context), then other due events as a batch (see :func:`drain_after`).

    An event no longer ``pending`` (a batch of another job delivered it) or not
    due yet (a batch attempted it and its retry comes later) is not sent. When
    another runner holds an event of its order for longer than an attempt can
    take, the job gives up waiting (``busy``) and leaves the event to the next
    sweep.

    :param event_id: the outbox event id, e.g. ``evt_0123...``.
    :returns: the outcome as a dict (``result``, ``attempts``, ``status_code``,
        ``next_attempt_at`` in unix seconds...).
    :raises WebhookDeliveryError: the event was given up (retries exhausted).
    """
    if not isinstance(event_id, str):
        raise TypeError("deliver_order_event takes the event id (a string)")
    webhooks = current_webhooks()
    started = time.monotonic()
    outcome = webhooks.delivery.deliver(event_id, due_only=True,
                                        wait=webhooks.settings.webhook_timeout + 5)
    if outcome.result == "busy":
        webhooks.storage.outbox.mark_handed_over(event_id, at=None)  # the next sweep queues it again
    drain_after(webhooks, started)
    if outcome.gave_up:
        raise WebhookDeliveryError(outcome)
    return outcome.to_dict()


def drain_after(webhooks: WebhookService, started: float) -> int:
    """The batch of a job: deliver up to :data:`BATCH_EVENTS` other due, never
    attempted events for at most :data:`BATCH_SECONDS` (never past the job's
    timeout), so one RQ job's fixed cost is shared by many events. Their own
    jobs find them delivered and return at once; retries are left to the
    events' own jobs (so a given-up event's job is the one in RQ's failed
    registry). Errors are logged, never raised (the job's own outcome stands).

    :param started: ``time.monotonic()`` when the job started.
    :returns: attempts made.
    """
    timeout = webhooks.settings.webhook_timeout
    job_timeout = 2 * timeout + 60
    # an attempt started before the deadline still fits in the job's timeout
    deadline = started + job_timeout - (2 * timeout + 10)
    try:
        outcomes = webhooks.delivery.deliver_due(limit=BATCH_EVENTS, seconds=BATCH_SECONDS,
                                                 deadline=deadline, first_attempts_only=True)
    except Exception:
        log.exception("webhook batch failed; the events left are delivered by their own jobs")
        return 0
    return len(outcomes)
