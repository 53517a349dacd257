"""The storage contract test kit: the behaviour every storage implementation owes.

One pytest suite per port (:class:`SessionsContract`, :class:`LocksContract`,
:class:`IdempotencyContract`, :class:`OutboxContract`, :class:`InboundLogContract`,
:class:`CartsContract`; :class:`StorageContract` is all six), written against the Protocols of
:mod:`flask_acp.store.base` only. It includes the races that matter for money:
several threads, and several processes, claiming one idempotency key, one
lock, one outbox event or one order's events -- exactly one wins -- and
claimers draining the outbox together -- each event is taken once.

How an implementation reuses it (flask-acp's own SQLite run is
``tests/test_storage_contract.py``)::

    import functools
    import pytest
    from flask_acp.testing.storage_contract import StorageContract

    @pytest.fixture(params=["mystore"])
    def storage_opener(request, tmp_path):
        # a fresh, empty backing store for this test; every call of the returned
        # callable opens a new handle on that same store (as another worker
        # process would). It must be picklable: processes are spawned with it.
        return functools.partial(my_package.open_my_storage, f"mystore://test/{tmp_path.name}")

    class TestMyStorage(StorageContract):
        pass

Call ``pytest.register_assert_rewrite("flask_acp.testing.storage_contract")``
in your ``conftest.py`` (before anything imports the kit) for pytest's
detailed assertion messages. The ``storage_opener`` fixture may be
parametrized over several implementations; each test then runs once per
implementation. Subclass a single port's suite (e.g. ``OutboxContract``) to
check one port only.

What the suites take for granted: the bundle's ``sessions`` check fences of
its own ``locks``; a lock held by a process of this machine that has died is
taken over at once (not after its lease); leases of a fraction of a second
are honoured (an implementation with a coarser resolution fails the timing
tests); the outbox's times are the ``now`` values passed in, never its own
clock. Nothing here is skipped.
"""

from __future__ import annotations

import collections.abc as cabc
import datetime as dt
import multiprocessing
import os
import threading
import time
import typing as t
import uuid

try:
    import pytest
except ModuleNotFoundError:  # pragma: no cover - exercised in a subprocess by the tests
    raise ModuleNotFoundError("the storage contract kit is a pytest suite: pip install pytest") from None

from ..models import Cart
from ..models import CheckoutSession
from ..models import LineItemRequest
from ..models import Order
from ..models import OrderEvent
from ..models import PaymentRecord
from ..models import PricedLine
from ..models import Quote
from ..models import Status
from ..store.base import Fence
from ..store.base import LockLostError
from ..store.base import LockTimeoutError
from ..store.base import OutboxClaimedError
from ..store.base import OutboxEntry
from ..store.base import StaleSessionError
from ..store.base import Storage

__all__ = [
    "CartsContract",
    "IdempotencyContract",
    "InboundLogContract",
    "LocksContract",
    "OutboxContract",
    "SessionsContract",
    "StorageContract",
    "StorageOpener",
    "make_cart",
    "make_event",
    "make_session",
]

#: Opens a handle on the test's backing store (a picklable zero-argument callable).
StorageOpener = t.Callable[[], Storage]

#: processes of the cross-process races (each opens its own handle)
PROCESSES = 4
#: threads of the in-process races
THREADS = 8
#: seconds the racers of one race may take to line up
LINE_UP = 60.0


def make_session(session_id: str | None = None, *, status: Status = Status.READY_FOR_PAYMENT,
                 now: dt.datetime | None = None, expires_in: float = 3600.0,
                 order: Order | None = None, payment: PaymentRecord | None = None) -> CheckoutSession:
    """A small valid session (one line of 10.00 USD) for storage tests.

    :param expires_in: seconds from ``now`` (default: the current time) to its expiry.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    return CheckoutSession(
        id=session_id or f"cs_{uuid.uuid4().hex}",
        agent="agent-one",
        api_version="2026-04-17",
        status=status,
        currency="usd",
        line_items=(LineItemRequest(id="item_1", quantity=1),),
        quote=Quote(lines=(PricedLine(item_id="item_1", quantity=1, unit_amount=1000, name="Item"),)),
        created_at=now,
        updated_at=now,
        expires_at=now + dt.timedelta(seconds=expires_in),
        order=order,
        payment=payment,
    )


def make_event(session: CheckoutSession, *, order_id: str = "ord_1", kind: str = "order_create",
               created_at: float | None = None, event_id: str | None = None) -> OrderEvent:
    """An order event of ``session`` created at ``created_at`` (unix seconds; default now)."""
    created = dt.datetime.fromtimestamp(time.time() if created_at is None else created_at, dt.timezone.utc)
    return OrderEvent(id=event_id or f"evt_{uuid.uuid4().hex}", order_id=order_id,
                      checkout_session_id=session.id, agent=session.agent, type=kind, created_at=created)


_R = t.TypeVar("_R")


def race(count: int, action: t.Callable[[int], _R]) -> list[_R | BaseException]:
    """Run ``action(i)`` in ``count`` threads released at the same moment;
    their results (or exceptions) in thread order."""
    barrier = threading.Barrier(count)
    results: list[_R | BaseException] = [RuntimeError("did not run")] * count

    def run(i: int) -> None:
        barrier.wait(LINE_UP)
        try:
            results[i] = action(i)
        except BaseException as exc:  # noqa: B036 - reported to the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LINE_UP + 30)
    return results


# --------------------------------------------------------------------------- processes
# (module-level functions: spawned processes import them by name)


def _in_process(target: t.Callable[..., None], opener: StorageOpener, count: int,
                *args: object) -> list[str]:
    """Run ``target(opener, barrier, results, index, *args)`` in ``count`` spawned
    processes lined up on one barrier; what they put in ``results``, sorted."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(count)
    results: multiprocessing.Queue[str] = ctx.Queue()
    procs = [ctx.Process(target=target, args=(opener, barrier, results, i, *args), daemon=True)
             for i in range(count)]
    for proc in procs:
        proc.start()
    found: list[str] = []
    try:
        for _ in procs:
            found.append(results.get(timeout=LINE_UP + 30))
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():  # pragma: no cover - a stuck racer
                proc.kill()
                proc.join()
    return sorted(found)


def _proc_begin(opener: StorageOpener, barrier: t.Any, results: t.Any, index: int, scope: str,
                key: str) -> None:
    storage = opener()
    barrier.wait(LINE_UP)
    outcome = storage.idempotency.begin(scope, key, "fp", now=time.time(), lease=60, retention=86400)
    results.put(outcome.state)


def _proc_lock(opener: StorageOpener, barrier: t.Any, results: t.Any, index: int, name: str,
               hold: float) -> None:
    storage = opener()
    barrier.wait(LINE_UP)
    try:
        with storage.locks.lock(name, lease=60, wait=0):
            results.put("held")
            time.sleep(hold)
    except LockTimeoutError:
        results.put("busy")


def _proc_claim(opener: StorageOpener, barrier: t.Any, results: t.Any, index: int,
                event_id: str) -> None:
    storage = opener()
    barrier.wait(LINE_UP)
    claimed = storage.outbox.claim(event_id, owner=f"proc-{index}", now=time.time(), lease=60)
    results.put("lost" if claimed is None else "claimed")


def _proc_claim_due(opener: StorageOpener, barrier: t.Any, results: t.Any, index: int) -> None:
    storage = opener()
    barrier.wait(LINE_UP)
    taken: list[str] = []
    while True:
        batch = storage.outbox.claim_due(owner=f"proc-{index}", now=time.time(), lease=60, limit=3)
        if not batch:
            break
        taken += [entry.event_id for entry in batch]
    results.put(",".join(taken))


def _proc_die_holding(opener: StorageOpener, barrier: t.Any, results: t.Any, index: int,
                      name: str) -> None:
    storage = opener()
    barrier.wait(LINE_UP)
    holding = storage.locks.lock(name, lease=600, wait=5)
    holding.__enter__()
    results.put("held")
    results.close()
    results.join_thread()  # the message is out before the crash
    os._exit(0)  # a crash: the lock is never released


# --------------------------------------------------------------------------- suites


class _Base:
    @pytest.fixture
    def storage(self, storage_opener: StorageOpener) -> Storage:
        """A handle on the test's (empty) backing store."""
        return storage_opener()


class SessionsContract(_Base):
    """:class:`~flask_acp.store.base.Sessions`: revisions, fencing, atomic events, indexes."""

    def test_get_of_an_unknown_id_is_none(self, storage: Storage) -> None:
        assert storage.sessions.get("cs_missing") is None

    def test_create_then_get_returns_the_same_session(self, storage: Storage) -> None:
        session = make_session()
        storage.sessions.create(session)
        assert storage.sessions.get(session.id) == session

    def test_save_stores_the_next_revision(self, storage: Storage) -> None:
        session = make_session()
        storage.sessions.create(session)
        saved = storage.sessions.save(session.replace(status=Status.CANCELED))
        assert saved.revision == session.revision + 1
        assert saved.status is Status.CANCELED
        assert storage.sessions.get(session.id) == saved
        again = storage.sessions.save(saved.replace(locale="fr-FR"))
        assert (again.revision, storage.sessions.get(session.id)) == (saved.revision + 1, again)

    def test_save_of_a_stale_revision_raises_and_writes_nothing(self, storage: Storage) -> None:
        session = make_session()
        storage.sessions.create(session)
        current = storage.sessions.save(session.replace(locale="en-US"))
        event = make_event(session)
        with pytest.raises(StaleSessionError):
            storage.sessions.save(session.replace(status=Status.CANCELED), [event])
        assert storage.sessions.get(session.id) == current
        assert storage.outbox.get(event.id) is None

    def test_concurrent_saves_of_one_revision_exactly_one_wins(self, storage: Storage,
                                                               storage_opener: StorageOpener) -> None:
        session = make_session()
        storage.sessions.create(session)
        handles = [storage_opener() for _ in range(THREADS)]
        results = race(THREADS, lambda i: handles[i].sessions.save(session.replace(locale=f"l{i}")))
        won = [r for r in results if isinstance(r, CheckoutSession)]
        assert len(won) == 1, results
        assert all(isinstance(r, StaleSessionError) for r in results if r not in won), results
        assert storage.sessions.get(session.id) == won[0]

    def test_events_are_written_with_the_session(self, storage: Storage) -> None:
        session = make_session()
        storage.sessions.create(session)
        created = time.time() - 5
        first = make_event(session, created_at=created)
        second = make_event(session, kind="order_update", created_at=created + 1)
        storage.sessions.save(session, [first, second])
        entry = storage.outbox.get(first.id)
        assert entry is not None
        assert (entry.event_id, entry.order_id, entry.session_id, entry.agent, entry.type) == (
            first.id, "ord_1", session.id, "agent-one", "order_create")
        assert (entry.status, entry.attempts, entry.enqueued_at, entry.delivered_at) == (
            "pending", 0, None, None)
        assert (entry.last_status, entry.last_error) == (None, None)
        assert entry.created_at == pytest.approx(created, abs=1e-3)
        assert entry.next_attempt_at == pytest.approx(created, abs=1e-3)  # due at once
        assert [e.event_id for e in storage.outbox.entries(statuses=["pending"])] == [first.id, second.id]

    def test_an_event_already_in_the_outbox_is_not_written_twice(self, storage: Storage) -> None:
        session = make_session()
        storage.sessions.create(session)
        event = make_event(session)
        saved = storage.sessions.save(session, [event])
        assert storage.outbox.claim(event.id, owner="runner", now=time.time(), lease=60) is not None
        assert storage.outbox.record(event.id, owner="runner", status="delivered", attempts=1,
                                     next_attempt_at=0.0, delivered_at=time.time(), last_status=200,
                                     last_error=None)
        storage.sessions.save(saved, [event])
        entry = storage.outbox.get(event.id)
        assert entry is not None
        assert (entry.status, entry.attempts) == ("delivered", 1)
        assert len(storage.outbox.entries(statuses=["pending", "delivered"])) == 1

    def test_fenced_save_while_holding_the_lock(self, storage: Storage) -> None:
        session = make_session()
        storage.sessions.create(session)
        event = make_event(session)
        with storage.locks.lock(f"session:{session.id}", lease=30, wait=1) as fence:
            saved = storage.sessions.save(session.replace(locale="de-DE"), [event], fence=fence)
        assert storage.sessions.get(session.id) == saved
        assert storage.outbox.get(event.id) is not None

    def test_fenced_save_after_the_lock_passed_on_raises_and_writes_nothing(self, storage: Storage) -> None:
        """A holder frozen past its lease: another one took the lock; the frozen
        holder's save (session and events) is refused as a whole."""
        session = make_session()
        storage.sessions.create(session)
        name = f"session:{session.id}"
        frozen = storage.locks.lock(name, lease=0.2, wait=1)
        fence = frozen.__enter__()
        time.sleep(0.3)
        event = make_event(session)
        with storage.locks.lock(name, lease=30, wait=1) as other:
            assert other != fence
            with pytest.raises(LockLostError):
                storage.sessions.save(session.replace(status=Status.CANCELED), [event], fence=fence)
            assert storage.sessions.get(session.id) == session
            assert storage.outbox.get(event.id) is None
            saved = storage.sessions.save(session.replace(locale="it-IT"), fence=other)
        frozen.__exit__(None, None, None)
        assert storage.sessions.get(session.id) == saved

    def test_fenced_save_after_release_raises(self, storage: Storage) -> None:
        session = make_session()
        storage.sessions.create(session)
        with storage.locks.lock(f"session:{session.id}", lease=30, wait=1) as fence:
            pass
        with pytest.raises(LockLostError):
            storage.sessions.save(session, fence=fence)
        assert storage.sessions.get(session.id) == session

    def test_a_fence_is_checked_before_the_revision(self, storage: Storage) -> None:
        session = make_session()
        storage.sessions.create(session)
        storage.sessions.save(session)
        with storage.locks.lock("other", lease=30, wait=1) as fence:
            pass
        with pytest.raises(LockLostError):
            storage.sessions.save(session, fence=fence)  # stale too: the fence decides

    def test_session_ids_filter_by_status_expiry_and_update(self, storage: Storage) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        old = now - dt.timedelta(hours=2)
        due = make_session(now=old, expires_in=60)  # expired an hour ago
        fresh = make_session(now=now)
        progress = make_session(now=old, status=Status.COMPLETE_IN_PROGRESS)
        for session in (due, fresh, progress):
            storage.sessions.create(session)
        open_ = ("ready_for_payment", "not_ready_for_payment")
        assert sorted(storage.sessions.session_ids(statuses=open_)) == sorted([due.id, fresh.id])
        assert storage.sessions.session_ids(statuses=open_, expires_before=now.timestamp()) == [due.id]
        assert storage.sessions.session_ids(statuses=["complete_in_progress"],
                                            updated_before=now.timestamp() - 60) == [progress.id]
        assert storage.sessions.session_ids(statuses=["complete_in_progress"],
                                            updated_before=old.timestamp() - 60) == []
        assert storage.sessions.session_ids(statuses=["canceled"]) == []
        every = [s.value for s in Status]
        assert storage.sessions.session_ids(statuses=every, updated_since=now.timestamp()) == [fresh.id]
        assert sorted(storage.sessions.session_ids(statuses=every, updated_since=old.timestamp())) == sorted(
            [due.id, fresh.id, progress.id])  # at or after: the bound itself is in
        assert storage.sessions.session_ids(statuses=every, updated_since=now.timestamp() + 1) == []
        assert storage.sessions.session_ids(statuses=open_, updated_since=old.timestamp(),
                                            updated_before=now.timestamp()) == [due.id]
        assert storage.sessions.session_ids(statuses=open_, expires_before=now.timestamp(),
                                            updated_since=now.timestamp()) == []

    def _personal(self, status: Status, updated: dt.datetime) -> CheckoutSession:
        order = Order(id=f"ord_{uuid.uuid4().hex[:8]}", checkout_session_id="x",
                      permalink_url="https://shop.example/o/1")
        return make_session(status=status, now=updated,
                            order=order if status is Status.COMPLETED else None).replace(
            buyer={"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
                   "phone_number": "+15551234567"},
            fulfillment_details={"name": "Ada Lovelace", "email": "ada@example.com",
                                 "address": {"line_one": "1 Main St", "city": "SF", "country": "US"}},
            order_notes="leave it with the neighbour",
            quote=Quote(lines=make_session().quote.lines, adapter_state={"cart_token": "secret"}),
        )

    def test_erase_personal_data_of_old_terminal_sessions_only(self, storage: Storage) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        old = now - dt.timedelta(days=40)
        cutoff = (now - dt.timedelta(days=30)).timestamp()
        sessions = {status: self._personal(status, old) for status in Status}
        recent = self._personal(Status.COMPLETED, now)
        for session in (*sessions.values(), recent):
            storage.sessions.create(session)
        assert storage.sessions.erase_personal_data(updated_before=cutoff, now=now.timestamp()) == 3
        for status, session in sessions.items():
            stored = storage.sessions.get(session.id)
            assert stored is not None
            if status in (Status.COMPLETED, Status.CANCELED, Status.EXPIRED):
                assert (stored.buyer, stored.fulfillment_details, stored.order_notes) == (None, None, None)
                assert stored.quote.adapter_state == {}
                assert stored.personal_data_erased_at is not None
                assert stored.revision == session.revision + 1
                # what the money and the order need stays
                assert (stored.status, stored.order, stored.totals, stored.updated_at) == \
                    (session.status, session.order, session.totals, session.updated_at)
            else:  # open, and complete_in_progress: never touched
                assert stored == session
        assert storage.sessions.get(recent.id) == recent
        # idempotent: nothing left to erase
        assert storage.sessions.erase_personal_data(updated_before=cutoff, now=now.timestamp()) == 0
        # the indexes still find them
        assert sorted(storage.sessions.session_ids(statuses=["canceled", "expired"])) == sorted(
            [sessions[Status.CANCELED].id, sessions[Status.EXPIRED].id])
        order = sessions[Status.COMPLETED].order
        assert order is not None
        erased = storage.sessions.get(sessions[Status.COMPLETED].id)
        assert erased is not None
        storage.sessions.save(erased)  # an erased session saves as any other
        assert storage.sessions.session_id_for_order(order.id) == erased.id

    def test_erase_personal_data_later_and_in_batches(self, storage: Storage) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        cutoff = (now - dt.timedelta(days=30)).timestamp()
        first = [self._personal(Status.CANCELED, now - dt.timedelta(days=40 + i)) for i in range(3)]
        for session in first:
            storage.sessions.create(session)
        assert storage.sessions.erase_personal_data(updated_before=cutoff, now=now.timestamp(), limit=2) == 2
        assert storage.sessions.erase_personal_data(updated_before=cutoff, now=now.timestamp(), limit=2) == 1
        # a session that ages past the retention after a sweep is erased by a later one
        later = self._personal(Status.EXPIRED, now - dt.timedelta(days=20))
        storage.sessions.create(later)
        assert storage.sessions.erase_personal_data(updated_before=cutoff, now=now.timestamp()) == 0
        ten_days = now + dt.timedelta(days=11)
        assert storage.sessions.erase_personal_data(
            updated_before=(ten_days - dt.timedelta(days=30)).timestamp(), now=ten_days.timestamp()) == 1
        stored = storage.sessions.get(later.id)
        assert stored is not None
        assert stored.buyer is None

    def test_erasure_is_a_revision_like_any_other(self, storage: Storage) -> None:
        """Erasure writes the revision after the stored one: a save of the
        revision before it is stale (nothing written back)."""
        now = dt.datetime.now(dt.timezone.utc)
        session = self._personal(Status.COMPLETED, now - dt.timedelta(days=40))
        storage.sessions.create(session)
        saved = storage.sessions.save(session)  # e.g. a shipment recorded meanwhile
        cutoff = (now - dt.timedelta(days=30)).timestamp()
        assert storage.sessions.erase_personal_data(updated_before=cutoff, now=now.timestamp()) == 1
        stored = storage.sessions.get(session.id)
        assert stored is not None
        assert stored.revision == saved.revision + 1
        with pytest.raises(StaleSessionError):  # the erasure is a revision like any other
            storage.sessions.save(saved)

    def test_orders_and_payments_find_their_session(self, storage: Storage) -> None:
        session = make_session()
        storage.sessions.create(session)
        assert storage.sessions.session_id_for_order("ord_1") is None
        order = Order(id="ord_1", checkout_session_id=session.id, permalink_url="https://shop.example/o/1",
                      platform_order_id="gid://shop/Order/9")
        payment = PaymentRecord(idempotency_key="acp-key", handler_id="card_tokenized", amount=1000,
                                currency="usd", status="succeeded", payment_id="pi_123",
                                token_sha256="0" * 64)
        storage.sessions.save(session.replace(status=Status.COMPLETED, order=order, payment=payment))
        assert storage.sessions.session_id_for_order("ord_1") == session.id
        assert storage.sessions.session_id_for_order("gid://shop/Order/9") == session.id
        assert storage.sessions.session_id_for_payment("pi_123") == session.id
        assert storage.sessions.session_id_for_payment("pi_other") is None

    def test_a_token_is_held_by_the_first_session_that_claims_it(self, storage: Storage) -> None:
        token = "a" * 64
        assert storage.sessions.claim_token(token, "cs_1", now=1000.0) == "cs_1"
        assert storage.sessions.claim_token(token, "cs_1", now=1001.0) == "cs_1"
        assert storage.sessions.claim_token(token, "cs_2", now=1002.0) == "cs_1"
        assert storage.sessions.claim_token("b" * 64, "cs_2", now=1003.0) == "cs_2"

    def test_threads_racing_for_one_token_agree_on_one_session(self, storage_opener: StorageOpener) -> None:
        results = race(8, lambda i: storage_opener().sessions.claim_token("c" * 64, f"cs_{i}", now=1.0))
        assert len(set(results)) == 1, results
        assert str(results[0]).startswith("cs_"), results


class LocksContract(_Base):
    """:class:`~flask_acp.store.base.Locks`: exclusion, wait, lease, takeover, renewal."""

    def test_a_held_lock_yields_its_fence(self, storage: Storage) -> None:
        with storage.locks.lock("a", lease=30, wait=1) as fence:
            assert isinstance(fence, Fence)
            assert fence.name == "a"
            with storage.locks.lock("b", lease=30, wait=0) as other:  # other names are independent
                assert other.owner != fence.owner

    def test_a_held_lock_times_out_after_the_wait(self, storage: Storage) -> None:
        with storage.locks.lock("a", lease=30, wait=1):
            started = time.monotonic()
            with pytest.raises(LockTimeoutError), storage.locks.lock("a", lease=30, wait=0.3):
                pass  # pragma: no cover
            assert time.monotonic() - started >= 0.25

    def test_a_waiter_gets_the_lock_when_it_is_released(self, storage: Storage) -> None:
        holding = storage.locks.lock("a", lease=30, wait=1)
        holding.__enter__()
        released = threading.Timer(0.2, holding.__exit__, (None, None, None))
        released.start()
        started = time.monotonic()
        with storage.locks.lock("a", lease=30, wait=5):
            assert time.monotonic() - started >= 0.15
        released.join()

    def test_a_lock_is_reusable_after_release(self, storage: Storage) -> None:
        for _ in range(3):
            with storage.locks.lock("a", lease=30, wait=0):
                pass

    def test_a_lock_is_taken_over_after_its_lease_only(self, storage: Storage) -> None:
        holding = storage.locks.lock("a", lease=0.4, wait=1)
        first = holding.__enter__()
        with pytest.raises(LockTimeoutError), storage.locks.lock("a", lease=30, wait=0):
            pass  # pragma: no cover - the lease still runs
        time.sleep(0.5)
        with storage.locks.lock("a", lease=30, wait=0) as second:
            assert second.owner != first.owner
            holding.__exit__(None, None, None)  # the first holder's late release frees nothing
            with pytest.raises(LockTimeoutError), storage.locks.lock("a", lease=30, wait=0):
                pass  # pragma: no cover

    def test_renew_extends_the_lease(self, storage: Storage) -> None:
        with storage.locks.lock("a", lease=0.4, wait=1) as fence:
            assert storage.locks.lock_renew(fence, lease=30)
            time.sleep(0.5)
            with pytest.raises(LockTimeoutError), storage.locks.lock("a", lease=30, wait=0):
                pass  # pragma: no cover
            session = make_session()
            storage.sessions.create(session)
            storage.sessions.save(session, fence=fence)  # still the holder

    def test_renew_after_a_takeover_fails_and_changes_nothing(self, storage: Storage) -> None:
        holding = storage.locks.lock("a", lease=0.2, wait=1)
        fence = holding.__enter__()
        time.sleep(0.3)
        with storage.locks.lock("a", lease=0.5, wait=0) as other:
            assert not storage.locks.lock_renew(fence, lease=60)
            assert storage.locks.lock_renew(other, lease=60)
            time.sleep(0.6)  # past other's first lease: the renewal of other counts, not fence's
            with pytest.raises(LockTimeoutError), storage.locks.lock("a", lease=30, wait=0):
                pass  # pragma: no cover
        holding.__exit__(None, None, None)

    def test_held_says_whether_the_fence_still_holds(self, storage: Storage) -> None:
        holding = storage.locks.lock("a", lease=0.2, wait=1)
        fence = holding.__enter__()
        assert storage.locks.lock_held(fence)
        time.sleep(0.3)
        with storage.locks.lock("a", lease=30, wait=0) as other:
            assert not storage.locks.lock_held(fence)
            assert storage.locks.lock_held(other)
        assert not storage.locks.lock_held(other)
        holding.__exit__(None, None, None)

    def test_renew_after_release_fails(self, storage: Storage) -> None:
        with storage.locks.lock("a", lease=30, wait=1) as fence:
            pass
        assert not storage.locks.lock_renew(fence, lease=30)
        with storage.locks.lock("a", lease=30, wait=0):
            pass

    def test_threads_exactly_one_holds_the_lock(self, storage_opener: StorageOpener) -> None:
        handles = [storage_opener() for _ in range(THREADS)]
        inside: list[int] = []

        def attempt(i: int) -> str:
            try:
                with handles[i].locks.lock("money", lease=30, wait=0):
                    inside.append(i)
                    time.sleep(0.3)
                    return "held"
            except LockTimeoutError:
                return "busy"

        assert sorted(race(THREADS, attempt), key=str) == ["busy"] * (THREADS - 1) + ["held"]
        assert len(inside) == 1

    def test_waiting_threads_hold_the_lock_one_after_another(self, storage_opener: StorageOpener) -> None:
        handles = [storage_opener() for _ in range(4)]
        active: list[int] = []
        overlaps: list[int] = []

        def attempt(i: int) -> None:
            with handles[i].locks.lock("money", lease=30, wait=20):
                active.append(i)
                if len(active) > 1:
                    overlaps.append(i)
                time.sleep(0.05)
                active.remove(i)

        assert race(4, attempt) == [None] * 4
        assert overlaps == []

    def test_processes_exactly_one_holds_the_lock(self, storage_opener: StorageOpener) -> None:
        assert _in_process(_proc_lock, storage_opener, PROCESSES, "money", 2.0) == (
            ["busy"] * (PROCESSES - 1) + ["held"])

    def test_lock_of_a_dead_local_process_is_taken_over_at_once(self, storage: Storage,
                                                                storage_opener: StorageOpener) -> None:
        """A worker process of this machine crashed while holding a lock with a
        long lease: the next holder does not wait for that lease."""
        assert _in_process(_proc_die_holding, storage_opener, 1, "crashed") == ["held"]
        started = time.monotonic()
        with storage.locks.lock("crashed", lease=30, wait=5):
            pass
        assert time.monotonic() - started < 5


class IdempotencyContract(_Base):
    """:class:`~flask_acp.store.base.IdempotencyRecords`: claim, replay, conflict,
    in-flight, lease takeover, retention, release, purge."""

    SCOPE = "agent-one /checkout_sessions"

    def _begin(self, storage: Storage, key: str, fingerprint: str = "fp", *, now: float = 1000.0,
               lease: float = 60, retention: float = 86400, scope: str | None = None) -> str:
        return storage.idempotency.begin(scope or self.SCOPE, key, fingerprint, now=now, lease=lease,
                                         retention=retention).state

    def test_a_new_key_is_claimed_then_in_flight(self, storage: Storage) -> None:
        assert self._begin(storage, "k1") == "new"
        assert self._begin(storage, "k1", now=1001) == "in_flight"
        assert self._begin(storage, "k1", "other", now=1001) == "conflict"

    def test_a_finished_key_replays_its_response(self, storage: Storage) -> None:
        assert self._begin(storage, "k1") == "new"
        body = b'{"id":"cs_1","note":"caf\xc3\xa9"}'
        storage.idempotency.finish(self.SCOPE, "k1", status=201, body=body,
                                   headers={"Content-Type": "application/json"}, now=1001)
        outcome = storage.idempotency.begin(self.SCOPE, "k1", "fp", now=1002, lease=60, retention=86400)
        assert (outcome.state, outcome.status, outcome.body, outcome.headers) == (
            "replay", 201, body, {"Content-Type": "application/json"})
        assert isinstance(outcome.body, bytes)
        assert self._begin(storage, "k1", "other", now=1002) == "conflict"

    def test_scopes_are_independent(self, storage: Storage) -> None:
        assert self._begin(storage, "k1") == "new"
        assert self._begin(storage, "k1", "other", scope="agent-two /checkout_sessions") == "new"

    def test_an_abandoned_claim_is_taken_over_after_its_lease(self, storage: Storage) -> None:
        assert self._begin(storage, "k1", now=1000, lease=60) == "new"
        assert self._begin(storage, "k1", now=1059, lease=60) == "in_flight"
        assert self._begin(storage, "k1", now=1061, lease=60) == "new"  # its worker died
        assert self._begin(storage, "k1", now=1062, lease=60) == "in_flight"  # the new claim counts
        assert self._begin(storage, "k1", "other", now=1200, lease=60) == "conflict"

    def test_a_response_is_forgotten_after_its_retention(self, storage: Storage) -> None:
        assert self._begin(storage, "k1") == "new"
        storage.idempotency.finish(self.SCOPE, "k1", status=200, body=b"{}", headers={}, now=1000)
        assert self._begin(storage, "k1", now=1000 + 86399) == "replay"
        assert self._begin(storage, "k1", "other", now=1000 + 86401) == "new"
        assert self._begin(storage, "k1", "other", now=1000 + 86402) == "in_flight"

    def test_release_forgets_a_claim_but_not_a_response(self, storage: Storage) -> None:
        assert self._begin(storage, "k1") == "new"
        storage.idempotency.release(self.SCOPE, "k1")
        assert self._begin(storage, "k1", "other", now=1001) == "new"
        storage.idempotency.finish(self.SCOPE, "k1", status=200, body=b"{}", headers={}, now=1002)
        storage.idempotency.release(self.SCOPE, "k1")
        assert self._begin(storage, "k1", "other", now=1003) == "replay"
        storage.idempotency.release(self.SCOPE, "never-claimed")  # no error

    def test_purge_deletes_old_responses_only(self, storage: Storage) -> None:
        for key, finished in (("old", 1000.0), ("new", 5000.0)):
            assert self._begin(storage, key, now=finished) == "new"
            storage.idempotency.finish(self.SCOPE, key, status=200, body=b"{}", headers={}, now=finished)
        assert self._begin(storage, "running", now=1000) == "new"
        assert storage.idempotency.purge(before=2000) == 1
        assert self._begin(storage, "old", "other", now=5001) == "new"
        assert self._begin(storage, "new", now=5001) == "replay"
        assert self._begin(storage, "running", now=1001) == "in_flight"
        assert storage.idempotency.purge(before=2000) == 0

    def test_threads_exactly_one_claims_a_key(self, storage_opener: StorageOpener) -> None:
        handles = [storage_opener() for _ in range(THREADS)]
        now = time.time()
        states = race(THREADS, lambda i: handles[i].idempotency.begin(
            self.SCOPE, "money", "fp", now=now, lease=60, retention=86400).state)
        assert sorted(t.cast(list[str], states)) == ["in_flight"] * (THREADS - 1) + ["new"]

    def test_processes_exactly_one_claims_a_key(self, storage_opener: StorageOpener) -> None:
        assert _in_process(_proc_begin, storage_opener, PROCESSES, self.SCOPE, "money") == (
            ["in_flight"] * (PROCESSES - 1) + ["new"])


class OutboxContract(_Base):
    """:class:`~flask_acp.store.base.Outbox`: listing, claims (due only, one owner
    at a time, one owner per order, lapsing after the lease), outcomes recorded
    by the claim's owner only, hand-over bookkeeping, replay."""

    def _events(self, storage: Storage, count: int, *, start: float = 1000.0,
                orders: cabc.Sequence[str] | None = None) -> list[OrderEvent]:
        """``count`` events created at ``start``, ``start + 1``... (one order
        each unless ``orders`` names them), written in reverse order."""
        session = make_session()
        storage.sessions.create(session)
        events = [make_event(session, order_id=orders[i] if orders else f"ord_{i}", created_at=start + i)
                  for i in range(count)]
        storage.sessions.save(session, list(reversed(events)))
        return events

    def _entry(self, storage: Storage, event_id: str) -> OutboxEntry:
        entry = storage.outbox.get(event_id)
        assert entry is not None
        return entry

    def _record(self, storage: Storage, event_id: str, owner: str, status: str = "delivered", *,
                attempts: int = 1, next_attempt_at: float = 0.0, last_status: int | None = 200,
                last_error: str | None = None, delivered_at: float | None = 1500.0) -> bool:
        return storage.outbox.record(event_id, owner=owner, status=status, attempts=attempts,
                                     next_attempt_at=next_attempt_at, delivered_at=delivered_at,
                                     last_status=last_status, last_error=last_error)

    def test_get_of_an_unknown_event_is_none(self, storage: Storage) -> None:
        assert storage.outbox.get("evt_missing") is None

    def test_entries_are_oldest_first_per_status(self, storage: Storage) -> None:
        events = self._events(storage, 4)
        ids = [e.id for e in events]
        assert [e.event_id for e in storage.outbox.entries(statuses=["pending"])] == ids
        assert [e.event_id for e in storage.outbox.entries(statuses=["pending"], limit=2)] == ids[:2]
        assert storage.outbox.claim(ids[1], owner="a", now=2000.0, lease=60) is not None
        assert self._record(storage, ids[1], "a")
        assert [e.event_id for e in storage.outbox.entries(statuses=["delivered"])] == [ids[1]]
        assert [e.event_id for e in storage.outbox.entries(statuses=["pending", "delivered"])] == ids
        assert storage.outbox.entries(statuses=["failed"]) == []

    def test_claim_takes_a_due_pending_event_for_one_owner(self, storage: Storage) -> None:
        (event,) = self._events(storage, 1)
        assert storage.outbox.claim(event.id, owner="a", now=999.0, lease=60) is None  # not due yet
        claimed = storage.outbox.claim(event.id, owner="a", now=1000.0, lease=60)
        assert claimed is not None
        assert (claimed.event_id, claimed.status, claimed.claimed_by, claimed.claim_until) == (
            event.id, "pending", "a", 1060.0)
        assert claimed.next_attempt_at == pytest.approx(1000.0, abs=1e-3)  # the schedule is untouched
        assert storage.outbox.claim(event.id, owner="b", now=1001.0, lease=60) is None  # a has it
        assert storage.outbox.claim(event.id, owner="a", now=1001.0, lease=60) is None  # held already
        assert self._entry(storage, event.id).claimed_by == "a"
        assert storage.outbox.claim("evt_missing", owner="a", now=5000.0, lease=60) is None

    def test_claim_out_of_schedule(self, storage: Storage) -> None:
        (event,) = self._events(storage, 1)
        claimed = storage.outbox.claim(event.id, owner="a", now=900.0, lease=60, due_only=False)
        assert claimed is not None
        assert self._record(storage, event.id, "a")
        assert storage.outbox.claim(event.id, owner="a", now=5000.0, lease=60, due_only=False) is None

    def test_record_stores_the_outcome_and_ends_the_claim(self, storage: Storage) -> None:
        (event,) = self._events(storage, 1)
        assert storage.outbox.claim(event.id, owner="a", now=1000.0, lease=60) is not None
        assert storage.outbox.record(event.id, owner="a", status="pending", attempts=1,
                                     next_attempt_at=1030.0, delivered_at=None, last_status=503,
                                     last_error="HTTP 503")
        entry = self._entry(storage, event.id)
        assert (entry.status, entry.attempts, entry.next_attempt_at, entry.delivered_at) == (
            "pending", 1, 1030.0, None)
        assert (entry.last_status, entry.last_error, entry.claimed_by, entry.claim_until) == (
            503, "HTTP 503", None, None)
        assert not self._record(storage, event.id, "a")  # the claim has ended
        assert storage.outbox.claim(event.id, owner="b", now=1029.0, lease=60) is None  # retry not due
        assert storage.outbox.claim(event.id, owner="b", now=1030.0, lease=60) is not None
        assert self._record(storage, event.id, "b", "failed", attempts=2, next_attempt_at=1030.0,
                            last_status=404, last_error="HTTP 404", delivered_at=None)
        assert self._entry(storage, event.id)[6:] == (
            "failed", 2, 1030.0, None, None, 404, "HTTP 404", None, None)
        assert storage.outbox.claim(event.id, owner="c", now=9000.0, lease=60) is None  # not pending

    def test_a_lapsed_claim_is_taken_over_and_its_owner_cannot_record(self, storage: Storage) -> None:
        (event,) = self._events(storage, 1)
        assert storage.outbox.claim(event.id, owner="frozen", now=1000.0, lease=60) is not None
        assert storage.outbox.claim(event.id, owner="next", now=1059.0, lease=60) is None
        assert storage.outbox.claim(event.id, owner="next", now=1060.0, lease=60) is not None
        assert not self._record(storage, event.id, "frozen")  # frozen past its lease: refused
        assert not storage.outbox.release(event.id, owner="frozen")
        assert self._entry(storage, event.id).status == "pending"
        assert self._record(storage, event.id, "next")
        assert self._entry(storage, event.id).status == "delivered"

    def test_a_lapsed_claim_nobody_took_can_still_be_recorded(self, storage: Storage) -> None:
        (event,) = self._events(storage, 1)
        assert storage.outbox.claim(event.id, owner="slow", now=1000.0, lease=60) is not None
        assert self._record(storage, event.id, "slow")  # late, but nobody else claimed it

    def test_release_ends_a_claim_and_keeps_the_schedule(self, storage: Storage) -> None:
        (event,) = self._events(storage, 1)
        assert storage.outbox.claim(event.id, owner="a", now=1000.0, lease=60) is not None
        assert not storage.outbox.release(event.id, owner="b")
        assert storage.outbox.release(event.id, owner="a")
        entry = self._entry(storage, event.id)
        assert (entry.status, entry.attempts, entry.claimed_by, entry.claim_until) == (
            "pending", 0, None, None)
        assert storage.outbox.claim(event.id, owner="b", now=1001.0, lease=60) is not None  # due at once

    def test_one_owner_at_a_time_per_order(self, storage: Storage) -> None:
        create, update, other = self._events(storage, 3, orders=["ord_a", "ord_a", "ord_b"])
        assert storage.outbox.claim(create.id, owner="a", now=2000.0, lease=60) is not None
        assert storage.outbox.claim(update.id, owner="b", now=2000.0, lease=60) is None  # ord_a is a's
        assert [e.event_id for e in storage.outbox.claim_due(owner="b", now=2000.0, lease=60, limit=10)] == [
            other.id]
        assert storage.outbox.claim(update.id, owner="a", now=2000.0, lease=60) is not None  # a's own order
        assert self._record(storage, create.id, "a")
        assert storage.outbox.claim(update.id, owner="b", now=2000.0, lease=60) is None  # a still holds it
        assert storage.outbox.release(update.id, owner="a")
        assert storage.outbox.claim(update.id, owner="b", now=2000.0, lease=60) is not None
        assert storage.outbox.claim(create.id, owner="c", now=2100.0, lease=60) is None  # delivered
        # b's claim lapses at 2060: the order is free again
        assert storage.outbox.claim(update.id, owner="c", now=2060.0, lease=60) is not None

    def test_add_writes_events_of_no_session_once(self, storage: Storage) -> None:
        def feed_event(event_id: str, product: str, agent: str, created: float) -> OrderEvent:
            return OrderEvent(id=event_id, order_id=f"product:{product}", checkout_session_id=f"feed:{agent}",
                              agent=agent, type="feed_products",
                              created_at=dt.datetime.fromtimestamp(created, dt.timezone.utc))

        first, again, other = (feed_event("evt_f1", "7", "one", 1000.0),
                               feed_event("evt_f2", "7", "one", 1001.0),
                               feed_event("evt_f3", "8", "two", 1002.0))
        storage.outbox.add([first, again, other])
        storage.outbox.add([feed_event("evt_f1", "9", "one", 5000.0)])  # the id exists: left as it is
        entry = self._entry(storage, "evt_f1")
        assert (entry.order_id, entry.session_id, entry.agent, entry.type, entry.status, entry.attempts) == (
            "product:7", "feed:one", "one", "feed_products", "pending", 0)
        assert entry.next_attempt_at == pytest.approx(1000.0, abs=1e-3)
        pending = storage.outbox.entries(statuses=["pending"])
        assert [e.event_id for e in pending] == ["evt_f1", "evt_f2", "evt_f3"]
        # the same rules as order events: one owner at a time per subject
        assert storage.outbox.claim("evt_f1", owner="a", now=2000.0, lease=60) is not None
        assert storage.outbox.claim("evt_f2", owner="b", now=2000.0, lease=60) is None
        assert [e.event_id for e in storage.outbox.claim_due(owner="b", now=2000.0, lease=60, limit=10)] == [
            "evt_f3"]
        assert self._record(storage, "evt_f1", "a")
        assert self._entry(storage, "evt_f1").status == "delivered"

    def test_claim_due_takes_the_longest_due_first(self, storage: Storage) -> None:
        retried, fresh = self._events(storage, 2)  # created at 1000 and 1001
        assert storage.outbox.claim(retried.id, owner="a", now=1000.0, lease=60) is not None
        assert self._record(storage, retried.id, "a", "pending", next_attempt_at=1010.0, last_status=500,
                            last_error="HTTP 500", delivered_at=None)
        assert [e.event_id for e in storage.outbox.claim_due(owner="b", now=1020.0, lease=60, limit=10)] == [
            fresh.id, retried.id]  # due since 1001, then since 1010

    def test_claim_due_takes_the_oldest_due_events(self, storage: Storage) -> None:
        events = self._events(storage, 5)
        ids = [e.id for e in events]
        first = storage.outbox.claim_due(owner="a", now=1003.0, lease=60, limit=2)
        assert [e.event_id for e in first] == ids[:2]
        assert {(e.claimed_by, e.claim_until) for e in first} == {("a", 1063.0)}
        assert self._entry(storage, ids[0]).claimed_by == "a"
        second = storage.outbox.claim_due(owner="b", now=1003.0, lease=60, limit=10)
        assert [e.event_id for e in second] == ids[2:4]  # ids[4] is due at 1004
        assert storage.outbox.claim_due(owner="c", now=1003.0, lease=60, limit=10) == []
        assert [e.event_id for e in storage.outbox.claim_due(owner="c", now=1004.0, lease=60, limit=10)] == [
            ids[4]]

    def test_claim_due_first_attempts_only(self, storage: Storage) -> None:
        retried, fresh = self._events(storage, 2)
        assert storage.outbox.claim(retried.id, owner="a", now=1500.0, lease=60) is not None
        assert self._record(storage, retried.id, "a", "pending", next_attempt_at=1600.0, last_status=500,
                            last_error="HTTP 500", delivered_at=None)
        due = storage.outbox.claim_due(owner="b", now=2000.0, lease=60, limit=10, first_attempts_only=True)
        assert [e.event_id for e in due] == [fresh.id]
        assert [e.event_id for e in storage.outbox.claim_due(owner="b", now=2000.0, lease=60, limit=10)] == [
            retried.id]

    def test_claim_due_gives_one_owner_several_events_of_an_order(self, storage: Storage) -> None:
        create, update, other = self._events(storage, 3, orders=["ord_a", "ord_a", "ord_b"])
        assert storage.outbox.claim(other.id, owner="b", now=2000.0, lease=60) is not None
        taken = storage.outbox.claim_due(owner="a", now=2000.0, lease=60, limit=10)
        assert [e.event_id for e in taken] == [create.id, update.id]

    def test_handover_bookkeeping(self, storage: Storage) -> None:
        (event,) = self._events(storage, 1)

        def awaiting(now: float) -> list[str]:
            return [e.event_id for e in storage.outbox.awaiting_handover(now=now, stale_after=60)]

        assert awaiting(999.0) == []  # not due
        assert awaiting(1000.0) == [event.id]  # never handed over
        storage.outbox.mark_handed_over(event.id, at=1001.0)
        assert self._entry(storage, event.id).enqueued_at == 1001.0
        assert awaiting(1002.0) == []
        assert awaiting(1062.0) == [event.id]  # handed over too long ago: its job was lost
        assert storage.outbox.claim(event.id, owner="a", now=1062.0, lease=60) is not None
        assert awaiting(1063.0) == []  # claimed
        assert self._record(storage, event.id, "a", "pending", next_attempt_at=1100.0, last_status=503,
                            last_error="HTTP 503", delivered_at=None)
        assert awaiting(1099.0) == []  # the retry is not due
        assert awaiting(1100.0) == [event.id]  # due again, handed over before that
        storage.outbox.mark_handed_over(event.id, at=1100.5)
        assert awaiting(1101.0) == []
        storage.outbox.mark_handed_over(event.id, at=None)
        assert awaiting(1101.0) == [event.id]
        assert storage.outbox.claim(event.id, owner="b", now=1101.0, lease=60) is not None
        assert self._record(storage, event.id, "b")
        assert awaiting(5000.0) == []  # delivered

    def test_reset_replays_any_event_not_being_sent(self, storage: Storage) -> None:
        (event,) = self._events(storage, 1)
        storage.outbox.mark_handed_over(event.id, at=1001.0)
        assert storage.outbox.claim(event.id, owner="a", now=1001.0, lease=60) is not None
        with pytest.raises(OutboxClaimedError):
            storage.outbox.reset(event.id, now=1002.0)
        assert self._record(storage, event.id, "a", "failed", attempts=3, last_status=500,
                            last_error="gave up", delivered_at=None)
        assert storage.outbox.reset(event.id, now=3000.0)
        entry = self._entry(storage, event.id)
        assert entry[6:] == ("pending", 0, 3000.0, None, None, None, None, None, None)
        assert not storage.outbox.reset("evt_missing", now=3000.0)
        assert storage.outbox.claim(event.id, owner="b", now=3000.0, lease=60) is not None
        assert storage.outbox.reset(event.id, now=3060.0)  # a lapsed claim does not stop a replay
        assert self._entry(storage, event.id).claimed_by is None

    def test_threads_exactly_one_claims_an_event(self, storage: Storage,
                                                 storage_opener: StorageOpener) -> None:
        (event,) = self._events(storage, 1, start=time.time() - 1)
        handles = [storage_opener() for _ in range(THREADS)]
        now = time.time()
        won = race(THREADS, lambda i: handles[i].outbox.claim(event.id, owner=f"t{i}", now=now, lease=60))
        claimed = [r for r in won if isinstance(r, OutboxEntry)]
        assert len(claimed) == 1, won
        assert won.count(None) == THREADS - 1, won

    def test_threads_exactly_one_claims_an_order(self, storage: Storage,
                                                 storage_opener: StorageOpener) -> None:
        events = self._events(storage, THREADS, start=time.time() - 10, orders=["ord_x"] * THREADS)
        handles = [storage_opener() for _ in range(THREADS)]
        now = time.time()
        won = race(THREADS, lambda i: handles[i].outbox.claim(events[i].id, owner=f"t{i}", now=now, lease=60))
        assert len([r for r in won if isinstance(r, OutboxEntry)]) == 1, won

    def test_threads_claim_due_takes_each_event_once(self, storage: Storage,
                                                     storage_opener: StorageOpener) -> None:
        events = self._events(storage, 40, start=time.time() - 100)
        handles = [storage_opener() for _ in range(THREADS)]
        now = time.time()

        def drain(i: int) -> list[str]:
            taken: list[str] = []
            while batch := handles[i].outbox.claim_due(owner=f"t{i}", now=now, lease=60, limit=3):
                taken += [e.event_id for e in batch]
            return taken

        results = race(THREADS, drain)
        taken = [event_id for r in results for event_id in t.cast(list[str], r)]
        assert sorted(taken) == sorted(e.id for e in events)  # every event, none twice

    def test_processes_exactly_one_claims_an_event(self, storage: Storage,
                                                   storage_opener: StorageOpener) -> None:
        (event,) = self._events(storage, 1, start=time.time() - 1)
        assert _in_process(_proc_claim, storage_opener, PROCESSES, event.id) == (
            ["claimed"] + ["lost"] * (PROCESSES - 1))

    def test_processes_claim_due_takes_each_event_once(self, storage: Storage,
                                                       storage_opener: StorageOpener) -> None:
        events = self._events(storage, 30, start=time.time() - 100)
        taken = [event_id for batch in _in_process(_proc_claim_due, storage_opener, PROCESSES)
                 for event_id in batch.split(",") if event_id]
        assert sorted(taken) == sorted(e.id for e in events)


class InboundLogContract(_Base):
    """:class:`~flask_acp.store.base.InboundLog`: de-duplication per source."""

    def test_record_once_then_seen(self, storage: Storage) -> None:
        assert not storage.inbound.seen("stripe", "evt_1")
        assert storage.inbound.record("stripe", "evt_1")
        assert storage.inbound.seen("stripe", "evt_1")
        assert not storage.inbound.record("stripe", "evt_1")

    def test_sources_are_independent(self, storage: Storage) -> None:
        assert storage.inbound.record("stripe", "evt_1")
        assert not storage.inbound.seen("shopify", "evt_1")
        assert storage.inbound.record("shopify", "evt_1")

    def test_purge_forgets_old_records(self, storage: Storage) -> None:
        assert storage.inbound.record("stripe", "evt_old")
        assert storage.inbound.purge(before=time.time() - 3600) == 0
        assert storage.inbound.seen("stripe", "evt_old")
        assert storage.inbound.purge(before=time.time() + 1) == 1
        assert not storage.inbound.seen("stripe", "evt_old")

    def test_threads_exactly_one_records_an_event(self, storage_opener: StorageOpener) -> None:
        handles = [storage_opener() for _ in range(THREADS)]
        recorded = race(THREADS, lambda i: handles[i].inbound.record("stripe", "evt_race"))
        assert recorded.count(True) == 1, recorded


def make_cart(cart_id: str | None = None, *, now: dt.datetime | None = None,
              expires_in: float = 3600.0, quantity: int = 1) -> Cart:
    """A small cart (``quantity`` units of one 10.00 USD item) for storage tests."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return Cart(
        id=cart_id or f"cart_{uuid.uuid4().hex}",
        agent="agent-one",
        currency="usd",
        line_items=(LineItemRequest(id="item_1", quantity=quantity),),
        quote=Quote(lines=(PricedLine(item_id="item_1", quantity=quantity, unit_amount=1000, name="Item"),)),
        created_at=now,
        updated_at=now,
        expires_at=now + dt.timedelta(seconds=expires_in),
        buyer={"email": "buyer@example.com"},
    )


class CartsContract(_Base):
    """:class:`~flask_acp.store.base.Carts`: whole writes, expiry, deletion."""

    def test_get_of_an_unknown_cart_is_none(self, storage: Storage) -> None:
        assert storage.carts.get("cart_missing", now=time.time()) is None

    def test_put_then_get_returns_the_same_cart(self, storage: Storage) -> None:
        cart = make_cart()
        storage.carts.put(cart)
        assert storage.carts.get(cart.id, now=time.time()) == cart

    def test_put_replaces_the_whole_cart(self, storage: Storage) -> None:
        cart = make_cart()
        storage.carts.put(cart)
        storage.carts.put(cart.replace(line_items=(LineItemRequest(id="item_2", quantity=3),), buyer=None))
        stored = storage.carts.get(cart.id, now=time.time())
        assert stored is not None
        assert stored.line_items == (LineItemRequest(id="item_2", quantity=3),)
        assert stored.buyer is None

    def test_replace_never_brings_back_a_deleted_cart(self, storage: Storage) -> None:
        cart = make_cart()
        assert not storage.carts.replace(cart)
        assert storage.carts.get(cart.id, now=time.time()) is None
        storage.carts.put(cart)
        changed = cart.replace(line_items=(LineItemRequest(id="item_2", quantity=2),))
        assert storage.carts.replace(changed)
        assert storage.carts.get(cart.id, now=time.time()) == changed
        assert storage.carts.delete(cart.id)
        assert not storage.carts.replace(changed)
        assert storage.carts.get(cart.id, now=time.time()) is None

    def test_an_expired_cart_is_gone(self, storage: Storage) -> None:
        cart = make_cart(expires_in=60)
        storage.carts.put(cart)
        assert storage.carts.get(cart.id, now=cart.expires_at.timestamp() - 1) == cart
        assert storage.carts.get(cart.id, now=cart.expires_at.timestamp()) is None

    def test_delete_forgets_the_cart_once(self, storage: Storage) -> None:
        cart = make_cart()
        storage.carts.put(cart)
        assert storage.carts.delete(cart.id)
        assert storage.carts.get(cart.id, now=time.time()) is None
        assert not storage.carts.delete(cart.id)

    def test_purge_keeps_live_carts(self, storage: Storage) -> None:
        live = make_cart()
        storage.carts.put(live)
        storage.carts.purge(before=time.time())
        assert storage.carts.get(live.id, now=time.time()) == live


class StorageContract(SessionsContract, LocksContract, IdempotencyContract, OutboxContract,
                      InboundLogContract, CartsContract):
    """Every port's suite."""

