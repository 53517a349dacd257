"""Locked, fenced access to stored checkout sessions, shared by the checkout
and order services (no Flask, no wire version).

Every change to a session happens under its lock (``session:<id>``, waiting
``ACP_LOCK_WAIT`` seconds, leased ``ACP_LOCK_LEASE`` seconds), and every save
made while this context holds the lock is fenced with it: a worker frozen past
its lease cannot overwrite what the request that took over wrote.
"""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import contextvars
import dataclasses
import datetime as dt
import time
import typing as t

from .errors import BusyError
from .errors import NotFoundError
from .models import CheckoutSession
from .models import Order
from .models import OrderEvent
from .store.base import Fence
from .store.base import LockLostError
from .store.base import Locks
from .store.base import LockTimeoutError
from .store.base import Sessions


class LockSettings(t.Protocol):
    """The settings session locks need (``flask_acp.config.Settings`` has them)."""

    @property
    def lock_wait(self) -> float:
        """Seconds a request waits for another one on the same session."""

    @property
    def lock_lease(self) -> float:
        """Seconds a lock lasts if its holder dies."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


#: session id -> the session lock this context holds
_fences: contextvars.ContextVar[dict[str, _Holding] | None] = contextvars.ContextVar("acp_fences",
                                                                                    default=None)

#: seconds of clock difference allowed between processes judging a lease
CLOCK_MARGIN = 30.0


@dataclasses.dataclass(slots=True)
class _Holding:
    """A session lock this context holds: its fence and when its lease ends
    (unix seconds, as this process last set it)."""

    fence: Fence
    lease_until: float


class SessionAccess:
    """Find, lock and save sessions; hand committed order events on.

    :param store: where sessions are stored.
    :param locks: the named locks (``session:<id>``).
    :param settings: lock wait and lease (seconds).
    :param clock: returns the current aware UTC time.
    :param on_events: called with order events after they are committed.
    """

    def __init__(self, store: Sessions, locks: Locks, settings: LockSettings, *,
                 clock: cabc.Callable[[], dt.datetime] = utcnow,
                 on_events: cabc.Callable[[cabc.Sequence[OrderEvent]], None] | None = None) -> None:
        self.store = store
        self.locks = locks
        self.settings = settings
        self.clock = clock
        self.on_events: cabc.Callable[[cabc.Sequence[OrderEvent]], None] = on_events or _ignore

    def find(self, agent: str, session_id: str) -> CheckoutSession:
        """The agent's session.

        :raises NotFoundError: unknown id, or a session of another agent.
        """
        session = self.store.get(session_id)
        if session is None or session.agent != agent:
            raise NotFoundError(f"Checkout session '{session_id}' does not exist.",
                                code="checkout_session_not_found")
        return session

    def find_order(self, order_id: str) -> tuple[CheckoutSession, Order]:
        """The session that produced ``order_id`` (ours or the platform's id) and the order.

        :raises NotFoundError: unknown order.
        """
        session_id = self.store.session_id_for_order(order_id)
        session = self.store.get(session_id) if session_id else None
        if session is None or session.order is None:
            raise NotFoundError(f"Order '{order_id}' does not exist.", code="order_not_found")
        return session, session.order

    def order_session_id(self, order_id: str) -> str:
        """:raises NotFoundError: unknown order."""
        session_id = self.store.session_id_for_order(order_id)
        if session_id is None:
            raise NotFoundError(f"Order '{order_id}' does not exist.", code="order_not_found")
        return session_id

    @contextlib.contextmanager
    def locked(self, session_id: str) -> cabc.Iterator[None]:
        """Hold the session's lock; every :meth:`save` of it inside is fenced.

        :raises BusyError: still held by another request after the wait, or
            lost to another request while held (this one was frozen past its lease).
        """
        lock = self.locks.lock(f"session:{session_id}", lease=self.settings.lock_lease,
                               wait=self.settings.lock_wait)
        try:
            fence = lock.__enter__()
        except LockTimeoutError:
            raise BusyError("Another request on this checkout session is still running; retry shortly.",
                            code="checkout_session_busy") from None
        holding = _Holding(fence, time.time() + self.settings.lock_lease)
        token = _fences.set({**(_fences.get() or {}), session_id: holding})
        try:
            yield
        except LockLostError as exc:
            raise BusyError("Another request took this checkout session over while this one was "
                            "stalled; retry to see its outcome.", code="checkout_session_busy") from exc
        finally:
            _fences.reset(token)
            lock.__exit__(None, None, None)

    @contextlib.contextmanager
    def unfenced(self) -> cabc.Iterator[None]:
        """Forget the locks this context holds (after one was lost), so that
        it can take them again."""
        token = _fences.set({})
        try:
            yield
        finally:
            _fences.reset(token)

    def save(self, session: CheckoutSession, events: cabc.Sequence[OrderEvent] = ()) -> CheckoutSession:
        """Store the session and outbox ``events`` in one transaction, fenced by
        its lock when this context holds it; ``events`` are handed to
        ``on_events`` after the commit.

        :raises LockLostError: the lock passed to another request meanwhile.
        :raises StaleSessionError: saved by someone else since it was read.
        """
        holding = (_fences.get() or {}).get(session.id)
        saved = self.store.save(session, events, fence=holding.fence if holding is not None else None)
        if events:
            self.on_events(events)
        return saved

    def keep_lock(self, session_id: str, *, for_seconds: float) -> None:
        """Before an irreversible call (a charge, placing the order): make sure
        this context still holds the session's lock, with a lease that lasts
        ``for_seconds`` more (plus :data:`CLOCK_MARGIN`): a read when the
        lease suffices, else a renewal for a whole lease.

        :raises LockLostError: another request holds it now (this one was
            frozen past its lease).
        """
        holding = (_fences.get() or {}).get(session_id)
        if holding is None:
            return
        now = time.time()
        if holding.lease_until - now >= for_seconds + CLOCK_MARGIN:
            if not self.locks.lock_held(holding.fence):
                raise LockLostError(holding.fence.name)
            return
        if not self.locks.lock_renew(holding.fence, lease=self.settings.lock_lease):
            raise LockLostError(holding.fence.name)
        holding.lease_until = now + self.settings.lock_lease


def _ignore(events: cabc.Sequence[OrderEvent]) -> None:
    return None


__all__ = ["LockSettings", "SessionAccess", "utcnow"]

