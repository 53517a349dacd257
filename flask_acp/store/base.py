"""The session store port.

A store keeps checkout sessions, the idempotency records of the HTTP layer and
short-lived named locks. Every method is atomic on its own; implementations
must be safe with several worker processes.
"""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import dataclasses
import typing as t

from ..models import CheckoutSession
from ..models import OrderEvent


class StaleSessionError(Exception):
    """The session changed since it was read (revision mismatch)."""


class LockTimeoutError(Exception):
    """A named lock stayed held by someone else for the whole wait."""


class LockLostError(Exception):
    """A fenced write found its lock held by someone else: the writer was
    frozen past its lease and another request took over. Nothing was written."""


@dataclasses.dataclass(frozen=True, slots=True)
class Fence:
    """Proof of holding the named lock, yielded by :meth:`SessionStore.lock`.
    A write made with it is refused (:class:`LockLostError`) once another
    owner holds the lock.

    :ivar name: the lock's name. :ivar owner: this holder's unique token.
    """

    name: str
    owner: str


@dataclasses.dataclass(frozen=True, slots=True)
class IdempotencyOutcome:
    """Result of claiming an idempotency key.

    :ivar state: ``new`` (you own it now; run the request), ``replay`` (a stored
        response follows), ``conflict`` (same key, another body), ``in_flight``
        (another request with this key is running).
    """

    state: str
    status: int | None = None
    body: bytes | None = None
    headers: dict[str, str] | None = None


class OutboxEntry(t.NamedTuple):
    """A row of the order-event outbox (times are unix seconds)."""

    event_id: str
    order_id: str
    session_id: str
    agent: str
    type: str
    created_at: float
    status: str  # pending | delivered | failed
    attempts: int
    next_attempt_at: float
    enqueued_at: float | None
    delivered_at: float | None
    last_status: int | None
    last_error: str | None


class SessionStore(t.Protocol):
    def create(self, session: CheckoutSession) -> None:
        """Insert a new session (its ``revision`` is stored as given)."""
        ...

    def get(self, session_id: str) -> CheckoutSession | None:
        """The stored session, or None."""
        ...

    def save(self, session: CheckoutSession, events: cabc.Sequence[OrderEvent] = (), *,
             fence: Fence | None = None) -> CheckoutSession:
        """Store ``session`` if the stored revision still equals ``session.revision``,
        together with ``events`` (order-event outbox entries), in one transaction;
        returns it with ``revision + 1``. With ``fence``, the same transaction
        first checks that the fence's owner still holds its lock.

        :raises StaleSessionError: someone else saved in between.
        :raises LockLostError: ``fence`` no longer holds its lock.
        """
        ...

    def session_id_for_order(self, order_id: str) -> str | None:
        """The session whose completion produced ``order_id`` (our order id or
        the platform's, ``Order.platform_order_id``)."""
        ...

    def session_id_for_payment(self, payment_id: str) -> str | None:
        """The session whose charge has the processor id ``payment_id``."""
        ...

    def inbound_seen(self, source: str, event_id: str) -> bool:
        """Whether an inbound webhook (``source``: stripe, shopify...) was processed."""
        ...

    def inbound_record(self, source: str, event_id: str) -> bool:
        """Remember a processed inbound webhook; False if it was already recorded."""
        ...

    def outbox_get(self, event_id: str) -> OutboxEntry | None:
        ...

    def outbox_list(self, *, statuses: cabc.Iterable[str], limit: int = 100,
                    due_before: float | None = None,
                    not_enqueued_since: float | None = None,
                    max_attempts: int | None = None) -> list[OutboxEntry]:
        """Outbox entries in ``statuses``, oldest first; optionally only those due
        (``next_attempt_at <= due_before``), not enqueued since a unix time, or
        attempted at most ``max_attempts`` times."""
        ...

    def outbox_claim(self, event_id: str, *, now: float, lease: float) -> bool:
        """Atomically take a due pending entry for one delivery attempt (pushes its
        ``next_attempt_at`` by ``lease`` seconds); False if someone else has it."""
        ...

    def outbox_update(self, event_id: str, **fields: object) -> None:
        """Set columns of an outbox entry (status, attempts, next_attempt_at,
        enqueued_at, delivered_at, last_status, last_error)."""
        ...

    def session_ids(self, *, statuses: cabc.Iterable[str], expires_before: float | None = None,
                    updated_before: float | None = None) -> list[str]:
        """Ids of sessions in one of ``statuses`` (optionally expiring / last
        updated before a unix time in seconds); for sweepers."""
        ...

    def lock(self, name: str, *, lease: float, wait: float) -> contextlib.AbstractContextManager[Fence]:
        """Hold the named lock for at most ``lease`` seconds, waiting up to
        ``wait`` seconds for it; yields the :class:`Fence` of this holding.
        A lock whose holder is known to be dead (a process of this machine
        that no longer exists) is taken over at once, without waiting.

        :raises LockTimeoutError: still held by another owner after ``wait``.
        """
        ...

    def lock_renew(self, fence: Fence, *, lease: float) -> bool:
        """Extend a held lock to ``lease`` seconds from now; False (and nothing
        changed) when ``fence`` no longer holds it."""
        ...

    def idempotency_begin(self, scope: str, key: str, fingerprint: str, *, now: float,
                          lease: float, retention: float) -> IdempotencyOutcome:
        """Claim ``key`` in ``scope`` for a request whose body hashes to
        ``fingerprint``. An in-flight claim older than ``lease`` seconds is
        considered abandoned (its worker died) and is taken over; a stored
        response older than ``retention`` seconds is forgotten (all unix seconds)."""
        ...

    def idempotency_finish(self, scope: str, key: str, *, status: int, body: bytes,
                           headers: dict[str, str], now: float) -> None:
        """Store the response of a claimed key for replay."""
        ...

    def idempotency_release(self, scope: str, key: str) -> None:
        """Forget a claim without storing a response (5xx outcomes)."""
        ...

    def purge(self, *, idempotency_before: float) -> int:
        """Delete idempotency records created before a unix time; returns how many."""
        ...
