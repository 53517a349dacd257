"""Order-event delivery decisions: when an event is due, who holds it, what an
attempt's outcome makes of it. No Flask, RQ, HTTP client or wire version here.

The outbox (:class:`~flask_acp.store.base.Outbox`) is the one owner of an
event: runners -- the delivery thread, the RQ jobs, the CLI -- only call
:class:`OutboxDelivery`, which claims due events, makes each attempt through an
injected ``send`` callable (:meth:`flask_acp.webhooks.delivery.WebhookSender.send`:
render the order's current state, sign at send time, POST) and records the
outcome with :func:`decide`.

Life of an event: :meth:`~flask_acp.store.base.Sessions.save` writes it
``pending``, due at its ``created_at``. A runner claims it under its own owner
token for ``lease`` seconds (:meth:`~flask_acp.store.base.Outbox.claim`,
``claim_due``); nobody else can claim any event of the same order meanwhile,
so the sends of one order never overlap. Then:

- a 2xx answer: ``delivered``;
- a retryable failure (timeout, connection error, 401, 408, 429, 5xx):
  ``pending`` again, due ``ACP_WEBHOOK_RETRY_INTERVALS[attempts - 1]`` seconds
  later; after the last interval, ``failed`` (``gave up after N attempts``);
- any other answer (3xx, other 4xx, an invalid URL, the order gone): ``failed``
  at once;
- an agent without ``webhook_url`` or secrets: ``skipped``.

A runner that dies while holding a claim leaves it to lapse: after ``lease``
seconds the event is due again. A runner frozen past its lease cannot record
over the next holder (the record is refused; its outcome is only logged).
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import logging
import os
import time
import typing as t
import uuid

from ..logs import scope as log_scope
from ..models import JSON
from ..store.base import Outbox
from ..store.base import OutboxEntry

log = logging.getLogger("flask_acp.webhooks")

__all__ = [
    "DELIVERED",
    "FAILED",
    "PENDING",
    "RETRYABLE_STATUSES",
    "SKIPPED",
    "STATUSES",
    "Decision",
    "DeliveryOutcome",
    "OutboxDelivery",
    "Send",
    "SendResult",
    "decide",
    "retryable_status",
]

#: outbox statuses: waiting / done / given up or refused / nowhere to send
PENDING, DELIVERED, FAILED, SKIPPED = "pending", "delivered", "failed", "skipped"
STATUSES: tuple[str, ...] = (PENDING, DELIVERED, FAILED, SKIPPED)

#: HTTP statuses retried besides 5xx (timeouts and connection errors are too). 401 is
#: the spec's answer to a signature the agent cannot verify (clock skew, a secret being
#: rotated): both get fixed, so the event is retried rather than given up at once.
RETRYABLE_STATUSES = frozenset({401, 408, 429})


def retryable_status(code: int) -> bool:
    """Whether an agent's non-2xx HTTP status is worth another attempt."""
    return code >= 500 or code in RETRYABLE_STATUSES


@dataclasses.dataclass(frozen=True, slots=True)
class SendResult:
    """What one send of one event got.

    :ivar status_code: the agent's HTTP status, None when it did not answer.
    :ivar error: what went wrong (None for a 2xx, or a skip's reason).
    :ivar retryable: the failure may pass (timeouts, connection errors,
        :func:`retryable_status`).
    :ivar skipped: nothing was sent: the agent has nowhere to receive events.
    """

    status_code: int | None
    error: str | None = None
    retryable: bool = False
    skipped: bool = False


#: One send of a claimed event (network call): render, sign, POST, classify.
Send = t.Callable[[OutboxEntry], SendResult]


@dataclasses.dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What one delivery call did to one event.

    :ivar result: ``delivered``, ``retry`` (due again at ``next_attempt_at``),
        ``failed`` (permanently, or retries exhausted), ``skipped`` (no
        ``webhook_url`` for the agent), ``unchanged`` (not pending: nothing
        sent), ``missing`` (no such event), ``not_due`` (its next attempt is at
        ``next_attempt_at``: nothing sent) or ``busy`` (another runner holds it
        or an event of its order: nothing sent).
    :ivar attempts: attempts made so far, this one included.
    :ivar status_code: the receiver's HTTP status, if it answered.
    :ivar next_attempt_at: unix seconds of the next attempt (``retry``, ``not_due``).
    :ivar gave_up: ``failed`` because the retries ran out (not a refusal).
    """

    event_id: str
    result: str
    attempts: int = 0
    status_code: int | None = None
    error: str | None = None
    next_attempt_at: float | None = None
    gave_up: bool = False

    @property
    def retry(self) -> bool:
        return self.result == "retry"

    def to_dict(self) -> dict[str, JSON]:
        """The outcome as JSON-able data (an RQ job's result)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """The outbox row after an attempt (the fields of
    :meth:`~flask_acp.store.base.Outbox.record`) and the outcome to report."""

    status: str
    attempts: int
    next_attempt_at: float
    delivered_at: float | None
    last_status: int | None
    last_error: str | None
    outcome: DeliveryOutcome


def decide(entry: OutboxEntry, result: SendResult, *, now: float,
           intervals: cabc.Sequence[float]) -> Decision:
    """The outbox row after ``result`` for claimed ``entry`` (pure).

    :param now: unix seconds of the outcome.
    :param intervals: seconds before the 1st, 2nd... retry
        (``ACP_WEBHOOK_RETRY_INTERVALS``); one attempt more than there are
        intervals is made before giving up.
    """
    event_id = entry.event_id
    if result.skipped:
        return Decision(SKIPPED, entry.attempts, entry.next_attempt_at, None, entry.last_status,
                        result.error, DeliveryOutcome(event_id, SKIPPED, entry.attempts, error=result.error))
    attempts = entry.attempts + 1
    code, error = result.status_code, result.error
    if error is None:
        return Decision(DELIVERED, attempts, entry.next_attempt_at, now, code, None,
                        DeliveryOutcome(event_id, DELIVERED, attempts, code))
    if not result.retryable:
        return Decision(FAILED, attempts, entry.next_attempt_at, None, code, error,
                        DeliveryOutcome(event_id, FAILED, attempts, code, error))
    if attempts > len(intervals):
        error = f"gave up after {attempts} attempts: {error}"
        return Decision(FAILED, attempts, entry.next_attempt_at, None, code, error,
                        DeliveryOutcome(event_id, FAILED, attempts, code, error, gave_up=True))
    next_at = now + intervals[attempts - 1]
    return Decision(PENDING, attempts, next_at, None, code, error,
                    DeliveryOutcome(event_id, "retry", attempts, code, error, next_at))


def new_owner() -> str:
    """A claim owner token: ``<pid>-<random hex>`` (the pid helps reading logs)."""
    return f"{os.getpid()}-{uuid.uuid4().hex}"


class OutboxDelivery:
    """Claim, attempt, record: the whole of order-event delivery, for every runner.

    Thread-safe (each call claims under an owner token of its own).

    :param outbox: the outbox.
    :param send: makes one send of a claimed event (network call).
    :param intervals: retry intervals in seconds (``ACP_WEBHOOK_RETRY_INTERVALS``).
    :param lease: seconds a claim lasts: longer than one send can take; a
        runner that dies holding one delays that event (and its order) by as much.
    :param clock: returns unix seconds (tests inject their own).
    """

    def __init__(self, outbox: Outbox, send: Send, *, intervals: cabc.Sequence[float], lease: float,
                 clock: t.Callable[[], float] = time.time) -> None:
        self.outbox = outbox
        self.send = send
        self.intervals = tuple(intervals)
        self.lease = lease
        self.clock = clock

    def deliver(self, event_id: str, *, due_only: bool = False, wait: float = 0.0) -> DeliveryOutcome:
        """Make one attempt of ``event_id`` now, if it is pending (network call,
        outbox writes). Safe to call twice or concurrently: one call claims it,
        and only a pending event is sent.

        :param due_only: only if it is due (an RQ job); False (default) sends
            a pending event whatever its schedule (an operator, a test).
        :param wait: seconds to wait while another runner holds the event or an
            event of its order, before giving up with ``busy``.
        :raises Exception: an unexpected failure of the send (a store outage):
            the claim is left to lapse, and the event is due again after
            :attr:`lease` seconds.
        """
        deadline = time.monotonic() + wait
        delay = 0.005
        owner = new_owner()
        while True:
            current = self.outbox.get(event_id)
            if current is None:
                log.warning("webhook event %s: not in the outbox", event_id)
                return DeliveryOutcome(event_id, "missing")
            if current.status != PENDING:
                return DeliveryOutcome(event_id, "unchanged", current.attempts)
            now = self.clock()
            if due_only and current.next_attempt_at > now:
                return DeliveryOutcome(event_id, "not_due", current.attempts, current.last_status,
                                       current.last_error, current.next_attempt_at)
            held = current.claim_until is not None and current.claim_until > now
            entry = None if held else self.outbox.claim(event_id, owner=owner, now=now, lease=self.lease,
                                                        due_only=due_only)
            if entry is not None:
                return self._attempt(entry, owner)
            if time.monotonic() >= deadline:
                return DeliveryOutcome(event_id, "busy", current.attempts)
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def deliver_due(self, *, limit: int, seconds: float | None = None, deadline: float | None = None,
                    first_attempts_only: bool = False, chunk: int = 10,
                    now: float | None = None) -> list[DeliveryOutcome]:
        """Claim and attempt due events, longest due first, ``chunk`` claims at a time,
        until none is due, ``limit`` attempts were made, or time is up (network
        calls, outbox writes). Claimed events not attempted in time are released.
        A send that fails unexpectedly is logged; its claim lapses after the lease.

        :param seconds: start no attempt after this many seconds.
        :param deadline: nor after this ``time.monotonic()`` value.
        :param first_attempts_only: only events never attempted.
        :param now: unix seconds to judge due-ness by (default: the clock).
        :returns: the outcomes of the attempts made.
        """
        stop = deadline if deadline is not None else float("inf")
        if seconds is not None:
            stop = min(stop, time.monotonic() + seconds)
        owner = new_owner()
        outcomes: list[DeliveryOutcome] = []
        while len(outcomes) < limit and time.monotonic() < stop:
            batch = self.outbox.claim_due(owner=owner, now=self.clock() if now is None else now,
                                          lease=self.lease, limit=min(chunk, limit - len(outcomes)),
                                          first_attempts_only=first_attempts_only)
            if not batch:
                break
            for index, entry in enumerate(batch):
                if time.monotonic() >= stop:
                    for left in batch[index:]:
                        self.outbox.release(left.event_id, owner=owner)
                    return outcomes
                try:
                    outcomes.append(self._attempt(entry, owner))
                except Exception:
                    log.exception("webhook event %s: delivery attempt crashed; due again after %g s",
                                  entry.event_id, self.lease)
        return outcomes

    def _attempt(self, entry: OutboxEntry, owner: str) -> DeliveryOutcome:
        with log_scope(agent=entry.agent, checkout_session_id=entry.session_id, order_id=entry.order_id,
                        event_id=entry.event_id):
            return self._attempt_logged(entry, owner)

    def _attempt_logged(self, entry: OutboxEntry, owner: str) -> DeliveryOutcome:
        result = self.send(entry)
        decision = decide(entry, result, now=self.clock(), intervals=self.intervals)
        outcome = decision.outcome
        if not self.outbox.record(entry.event_id, owner=owner, status=decision.status,
                                  attempts=decision.attempts, next_attempt_at=decision.next_attempt_at,
                                  delivered_at=decision.delivered_at, last_status=decision.last_status,
                                  last_error=decision.last_error):
            log.warning("webhook event %s: the attempt outlived its %g s claim and another runner "
                        "took the event over; this outcome (%s) is not recorded",
                        entry.event_id, self.lease, outcome.result)
            return outcome
        _log(entry, outcome, self.intervals)
        return outcome


def _log(entry: OutboxEntry, outcome: DeliveryOutcome, intervals: cabc.Sequence[float]) -> None:
    event_id, kind, order, agent = entry.event_id, entry.type, entry.order_id, entry.agent
    if outcome.result == SKIPPED:
        log.info("webhook event %s skipped: %s", event_id, outcome.error)
    elif outcome.result == DELIVERED:
        log.info("webhook event %s (%s, order %s) delivered to %s: HTTP %s, attempt %d",
                 event_id, kind, order, agent, outcome.status_code, outcome.attempts)
    elif outcome.gave_up:
        log.error("webhook event %s (%s, order %s) to agent %s failed: %s",
                  event_id, kind, order, agent, outcome.error)
    elif outcome.result == FAILED:
        log.warning("webhook event %s (%s, order %s) refused by agent %s, not retried: status %s: %s",
                    event_id, kind, order, agent, outcome.status_code, outcome.error)
    else:
        log.warning("webhook event %s (%s, order %s) to agent %s: attempt %d failed (%s); next in %d s",
                    event_id, kind, order, agent, outcome.attempts, outcome.error,
                    intervals[outcome.attempts - 1])
