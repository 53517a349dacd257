"""Storage ports: one small Protocol per concern, bundled in :class:`Storage`.

- :class:`Sessions` -- checkout sessions; a save writes the session, its
  order-event outbox entries and checks the lock fence in one transaction;
- :class:`Locks` -- named leases that fence the writes of their holder;
- :class:`IdempotencyRecords` -- claims and stored responses of the HTTP layer;
- :class:`Outbox` -- the order-event outbox: the one owner of when an event
  is due and who holds it (claims with a lease, per order);
- :class:`InboundLog` -- de-duplication of inbound webhooks;
- :class:`Carts` -- carts of the optional Cart API (no lock, no revision:
  a cart is replaced whole).

Every method is atomic on its own, and implementations must be safe with
several threads and several worker processes. Times are unix seconds
(``float``), durations are seconds.

One implementation ships: :mod:`flask_acp.store.sqlite`
(:func:`~flask_acp.store.sqlite.sqlite_storage`). :func:`flask_acp.store.open_storage`
picks one from ``ACP_STORE_URL``. A third-party implementation provides the
six Protocols and checks them with the contract test kit,
:mod:`flask_acp.testing.storage_contract`.
"""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import dataclasses
import typing as t

from ..models import Cart
from ..models import CheckoutSession
from ..models import OrderEvent

__all__ = [
    "Carts",
    "Fence",
    "IdempotencyOutcome",
    "IdempotencyRecords",
    "InboundLog",
    "LockLostError",
    "LockTimeoutError",
    "Locks",
    "Outbox",
    "OutboxClaimedError",
    "OutboxEntry",
    "Sessions",
    "StaleSessionError",
    "Storage",
]


class StaleSessionError(Exception):
    """The session changed since it was read (revision mismatch)."""


class LockTimeoutError(Exception):
    """A named lock stayed held by someone else for the whole wait."""


class LockLostError(Exception):
    """A fenced write found its lock held by someone else: the writer was
    frozen past its lease and another request took over. Nothing was written."""


class OutboxClaimedError(Exception):
    """The outbox event is held by a live claim (a delivery attempt is running)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Fence:
    """Proof of holding the named lock, yielded by :meth:`Locks.lock`.
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
    :ivar status: the stored HTTP status (``replay`` only).
    :ivar body: the stored response body as bytes (``replay`` only).
    :ivar headers: the stored response headers (``replay`` only).
    """

    state: str
    status: int | None = None
    body: bytes | None = None
    headers: dict[str, str] | None = None


class OutboxEntry(t.NamedTuple):
    """A row of the order-event outbox (times are unix seconds).

    ``next_attempt_at``: when the event is due (its ``created_at`` at first,
    then the retry schedule's). ``enqueued_at``: when it was last handed to a
    runner that is woken per event (an RQ job). ``claimed_by`` /
    ``claim_until``: the owner token of the attempt holding it, and when that
    claim lapses (``None`` when nobody holds it).
    """

    event_id: str
    order_id: str
    session_id: str
    agent: str
    type: str
    created_at: float
    status: str  # pending | delivered | failed | skipped
    attempts: int
    next_attempt_at: float
    enqueued_at: float | None
    delivered_at: float | None
    last_status: int | None
    last_error: str | None
    claimed_by: str | None = None
    claim_until: float | None = None


class Sessions(t.Protocol):
    """Checkout sessions, with the indexes the order and payment webhooks need."""

    def create(self, session: CheckoutSession) -> None:
        """Insert a new session (its ``revision`` is stored as given)."""
        ...

    def get(self, session_id: str) -> CheckoutSession | None:
        """The stored session, or None."""
        ...

    def save(self, session: CheckoutSession, events: cabc.Sequence[OrderEvent] = (), *,
             fence: Fence | None = None) -> CheckoutSession:
        """Store ``session`` if the stored revision still equals ``session.revision``,
        together with ``events`` (new outbox entries, ``pending`` and due at their
        ``created_at``; an event id already in the outbox is ignored), in ONE
        transaction; returns the session with ``revision + 1``. With ``fence``,
        the same transaction first checks that the fence's owner still holds
        its lock (the :class:`Locks` of the same implementation). Also indexes
        the session by its order ids and its payment id.

        :raises StaleSessionError: someone else saved in between; nothing written.
        :raises LockLostError: ``fence`` no longer holds its lock; nothing written.
        """
        ...

    def session_ids(self, *, statuses: cabc.Iterable[str], expires_before: float | None = None,
                    updated_before: float | None = None, updated_since: float | None = None) -> list[str]:
        """Ids of sessions in one of ``statuses``, optionally only those expiring
        before, last updated before, or last updated at or after a unix time in
        seconds (the filters combine); for sweepers and operators' views."""
        ...

    def session_id_for_order(self, order_id: str) -> str | None:
        """The session whose completion produced ``order_id`` (our order id or
        the platform's, ``Order.platform_order_id``), or None."""
        ...

    def session_id_for_payment(self, payment_id: str) -> str | None:
        """The session whose charge has the processor id ``payment_id``, or None."""
        ...

    def erase_personal_data(self, *, updated_before: float, now: float, limit: int = 1000) -> int:
        """Erase the personal data (:func:`flask_acp.models.without_personal_data`,
        marked erased at ``now``) of up to ``limit`` sessions that are
        ``completed``, ``canceled`` or ``expired``, were last updated before
        ``updated_before`` (unix seconds) and are not erased yet. Each session
        is written only if its revision is still the one read (its revision
        then goes up by one; ``updated_at`` and every index stay as they are):
        a session saved meanwhile is left for a later call. Never touches a
        session in another status. Idempotent; returns how many sessions it
        erased (0: nothing left to erase)."""
        ...

    def claim_token(self, token_sha256: str, session_id: str, *, now: float) -> str:
        """Bind a payment credential (the hex SHA-256 of its token, never the
        token) to the first session that presents it, atomically, and return
        the id of the session that holds it: ``session_id`` if it is the first
        (or already held it), another id if that one was first. Claims are
        kept for good: a delegated token is single-use and scoped to one
        checkout session (``Allowance.checkout_session_id``); ``now`` is unix
        seconds (the time of the first claim)."""
        ...


class Locks(t.Protocol):
    """Named leases. A holder that dies keeps its lock for ``lease`` seconds at
    most; a fenced write (:meth:`Sessions.save`) fails once the lock passed on."""

    def lock(self, name: str, *, lease: float, wait: float) -> contextlib.AbstractContextManager[Fence]:
        """Hold the named lock for at most ``lease`` seconds, waiting up to
        ``wait`` seconds for it; yields the :class:`Fence` of this holding and
        releases the lock on exit (if still held by it). A lock whose lease has
        passed is taken over; so is one whose holder is known to be dead (a
        process of this machine that no longer exists), without waiting.

        :raises LockTimeoutError: still held by another owner after ``wait``.
        """
        ...

    def lock_renew(self, fence: Fence, *, lease: float) -> bool:
        """Extend a held lock to ``lease`` seconds from now; False (and nothing
        changed) when ``fence`` no longer holds it."""
        ...

    def lock_held(self, fence: Fence) -> bool:
        """Whether ``fence`` still holds its lock (a read: nothing changes)."""
        ...


class IdempotencyRecords(t.Protocol):
    """The ``Idempotency-Key`` records of the HTTP layer, per (scope, key)."""

    def begin(self, scope: str, key: str, fingerprint: str, *, now: float, lease: float,
              retention: float) -> IdempotencyOutcome:
        """Claim ``key`` in ``scope`` for a request whose body hashes to
        ``fingerprint``. An in-flight claim older than ``lease`` seconds is
        considered abandoned (its worker died) and is taken over (``new``); a
        stored response older than ``retention`` seconds is forgotten (``new``
        for any fingerprint). ``now`` is unix seconds."""
        ...

    def finish(self, scope: str, key: str, *, status: int, body: bytes, headers: dict[str, str],
               now: float) -> None:
        """Store the response of a claimed key for replay: HTTP ``status``, the
        body as bytes, the headers to replay; ``now`` (unix seconds) starts its
        retention."""
        ...

    def release(self, scope: str, key: str) -> None:
        """Forget an in-flight claim without storing a response (5xx outcomes);
        a stored response is kept."""
        ...

    def purge(self, *, before: float) -> int:
        """Delete stored responses finished before a unix time; returns how many."""
        ...


class Outbox(t.Protocol):
    """The order-event outbox: the one owner of when an event is due and who
    holds it. Entries are added by :meth:`Sessions.save` (``pending``, due at
    their ``created_at``), or by :meth:`add` for events that belong to no
    checkout session (a product feed update: ``order_id`` is then the subject
    the sends are serialised by, ``product:<id>``, and ``session_id`` the key
    the entry is stored by, ``feed:<agent>``).

    A runner takes events with :meth:`claim` or :meth:`claim_due` under an
    owner token of its own, for ``lease`` seconds; attempts them; and ends each
    claim with :meth:`record` (the outcome) or :meth:`release` (not attempted).
    An event is claimed by one owner at a time, and while an event of an order
    is claimed no other owner can claim any event of that order, so the sends
    of one order never overlap. A claim whose lease has passed counts as
    abandoned (its runner died): the event can be claimed again. Times are unix
    seconds, durations seconds.
    """

    def add(self, events: cabc.Sequence[OrderEvent]) -> None:
        """Write ``events`` ``pending``, due at their ``created_at``, outside any
        session save; an event id already in the outbox is left as it is."""
        ...

    def get(self, event_id: str) -> OutboxEntry | None:
        """The entry of ``event_id``, or None."""
        ...

    def entries(self, *, statuses: cabc.Iterable[str], limit: int = 100) -> list[OutboxEntry]:
        """Up to ``limit`` entries in ``statuses``, oldest (``created_at``) first."""
        ...

    def claim(self, event_id: str, *, owner: str, now: float, lease: float,
              due_only: bool = True) -> OutboxEntry | None:
        """Claim one ``pending`` entry for ``owner`` until ``now + lease``.

        :param due_only: only if it is due (``next_attempt_at <= now``); False
            for an attempt out of schedule (an operator's "deliver now").
        :returns: the claimed entry, or None when it is missing, not pending,
            not due, claimed by a live claim, or another owner holds a live
            claim on an entry of the same order.
        """
        ...

    def claim_due(self, *, owner: str, now: float, lease: float, limit: int,
                  first_attempts_only: bool = False) -> list[OutboxEntry]:
        """Claim up to ``limit`` due ``pending`` entries for ``owner`` until
        ``now + lease``, longest due first (``next_attempt_at``, then
        ``created_at``: first attempts in the order they were made), skipping
        claimed entries and orders on which another owner holds a live claim
        (several entries of one order may be claimed together by one owner: it
        sends them in this order).

        :param first_attempts_only: only entries never attempted.
        :returns: the claimed entries in that order (empty: nothing is due).
        """
        ...

    def release(self, event_id: str, *, owner: str) -> bool:
        """End ``owner``'s claim without an attempt (the entry stays due as it
        was); False when ``owner`` does not hold it."""
        ...

    def record(self, event_id: str, *, owner: str, status: str, attempts: int, next_attempt_at: float,
               delivered_at: float | None, last_status: int | None, last_error: str | None) -> bool:
        """Store the outcome of ``owner``'s attempt and end its claim, in one step.

        :returns: False (nothing written) when ``owner`` no longer holds the
            claim: its lease passed and another owner claimed the entry.
        """
        ...

    def awaiting_handover(self, *, now: float, stale_after: float, limit: int = 100) -> list[OutboxEntry]:
        """Due, unclaimed ``pending`` entries to hand to a per-event runner
        (RQ), longest due first: never handed over, handed over before their
        current due time (a retry), or handed over more than ``stale_after``
        seconds ago (the runner's job was lost)."""
        ...

    def mark_handed_over(self, event_id: str, *, at: float | None) -> None:
        """Set (or, with None, clear) when the entry was handed to a runner."""
        ...

    def reset(self, event_id: str, *, now: float) -> bool:
        """Replay: make the entry ``pending`` with no attempts, due at ``now``,
        not handed over, whatever its status.

        :returns: False when there is no such entry.
        :raises OutboxClaimedError: a live claim holds it (an attempt is running).
        """
        ...


class InboundLog(t.Protocol):
    """Inbound webhooks already processed, per source (``stripe``, ``shopify``...)."""

    def seen(self, source: str, event_id: str) -> bool:
        """Whether the webhook ``event_id`` of ``source`` was recorded."""
        ...

    def record(self, source: str, event_id: str) -> bool:
        """Remember a processed webhook; False if it was already recorded."""
        ...

    def purge(self, *, before: float) -> int:
        """Forget webhooks recorded before a unix time; returns how many."""
        ...


class Carts(t.Protocol):
    """Carts (ACP Cart API), by id. A cart is written whole; it is gone once
    deleted (canceled) or once its ``expires_at`` has passed."""

    def put(self, cart: Cart) -> None:
        """Insert or replace ``cart`` (last write wins)."""
        ...

    def replace(self, cart: Cart) -> bool:
        """Replace the stored cart of ``cart.id`` only if there is one (a cart
        deleted meanwhile stays deleted); False when there is none."""
        ...

    def get(self, cart_id: str, *, now: float) -> Cart | None:
        """The stored cart, or None when unknown, deleted or expired
        (``expires_at`` at or before ``now``, unix seconds)."""
        ...

    def delete(self, cart_id: str) -> bool:
        """Forget the cart; False when there was none."""
        ...

    def purge(self, *, before: float) -> int:
        """Delete carts that expired before a unix time; returns how many (a
        store that expires them on its own may return 0)."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class Storage:
    """One implementation of every storage port, as the app uses them
    (``app.extensions["acp"].storage``). Fenced saves need ``sessions`` and
    ``locks`` of the same implementation (the fence is checked in the save's
    transaction)."""

    sessions: Sessions
    locks: Locks
    idempotency: IdempotencyRecords
    outbox: Outbox
    inbound: InboundLog
    carts: Carts
