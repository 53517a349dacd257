"""Money-safety paths found by fault injection (issue 9): a refund that must
never be followed by an order, a worker frozen past its lock lease, a
same-key retry after a crash that committed, a lock held by a dead process,
and storage failures.

Everything goes through the HTTP API (the validating test client), with the
real SQLite store, the real catalog adapter and a FakePaymentProcessor whose
ledger is a SQLite file we can inspect; faults are injected by small
subclasses, and "time passing beyond a lease" by ageing the lock row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import sqlite3
import subprocess
import sys
import textwrap
import threading
import typing as t
import uuid

import pytest
from flask import Flask

from flask_acp.errors import AdapterUnavailableError
from flask_acp.errors import PaymentUnavailableError
from flask_acp.models import CheckoutSession
from flask_acp.models import Order
from flask_acp.models import OrderEvent
from flask_acp.models import PaymentRecord
from flask_acp.models import Quote
from flask_acp.models import Status
from flask_acp.payments.base import ChargeRequest
from flask_acp.payments.base import ChargeResult
from flask_acp.payments.base import RefundResult
from flask_acp.store.base import Fence
from flask_acp.store.sqlite import SQLiteSessions
from flask_acp.store.sqlite import sqlite_storage
from flask_acp.testing import FakePaymentProcessor
from tests.conftest import Agent
from tests.conftest import build_app
from tests.test_completion import TOTAL
from tests.test_completion import FlakyCatalogAdapter
from tests.test_completion import get
from tests.test_completion import orders


class DownCatalogAdapter(FlakyCatalogAdapter):
    """The catalog adapter with a whole-platform outage switch: while ``down``,
    every call (quote, release, place_order) fails as a platform would;
    ``down_at_place_order`` starts the outage at the order call, i.e. right
    after the charge."""

    down = False
    down_at_place_order = False
    #: place_order calls that end with no answer (they may have placed the order)
    unknown_outcomes = 0

    def _check(self) -> None:
        if self.down:
            raise AdapterUnavailableError("the store is down", retry_after=1)

    def quote(self, request: t.Any) -> Quote:
        self._check()
        return super().quote(request)

    def release(self, session: CheckoutSession) -> None:
        self._check()
        super().release(session)

    def place_order(self, session: CheckoutSession, payment: PaymentRecord) -> Order:
        if self.unknown_outcomes:
            self.unknown_outcomes -= 1
            raise AdapterUnavailableError("no answer to placing the order", outcome_unknown=True)
        if self.down_at_place_order:
            self.down, self.down_at_place_order = True, False
        self._check()
        return super().place_order(session, payment)


class FaultyProcessor(FakePaymentProcessor):
    """FakePaymentProcessor with refund outages and a charge that can be held
    (a worker frozen inside the processor call)."""

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.refund_failures = 0
        self.hold_charge: threading.Event | None = None
        self.charge_entered = threading.Event()

    def refund(self, payment_id: str, *, amount: int, idempotency_key: str,
               metadata: dict[str, str]) -> RefundResult:
        if self.refund_failures:
            self.refund_failures -= 1
            raise PaymentUnavailableError("processor down", retry_after=1, outcome_unknown=False)
        return super().refund(payment_id, amount=amount, idempotency_key=idempotency_key, metadata=metadata)

    def charge(self, request: ChargeRequest) -> ChargeResult:
        if self.hold_charge is not None and request.token.startswith("spt_frozen"):
            self.charge_entered.set()
            assert self.hold_charge.wait(30)
        return super().charge(request)


class FreezingSessions(SQLiteSessions):
    """The SQLite sessions, able to freeze the worker right after it recorded a
    charge attempt (the line before the processor call)."""

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.freeze: threading.Event | None = None
        self.frozen = threading.Event()

    def save(self, session: CheckoutSession, events: t.Sequence[OrderEvent] = (), *,
             fence: Fence | None = None) -> CheckoutSession:
        saved = super().save(session, events, fence=fence)
        if self.freeze is not None and session.status is Status.COMPLETE_IN_PROGRESS \
                and session.payment is not None and session.payment.status == "pending" \
                and threading.current_thread().name == "frozen-worker":
            self.frozen.set()
            assert self.freeze.wait(30)
        return saved


@pytest.fixture
def processor(tmp_path: pathlib.Path) -> FaultyProcessor:
    return FaultyProcessor(str(tmp_path / "ledger.sqlite3"))


def make_app(tmp_path: pathlib.Path, processor: FakePaymentProcessor, **config: t.Any) -> Flask:
    settings: dict[str, t.Any] = {"ACP_ORDER_PLACEMENT_RETRIES": [],
                                  "ACP_ADAPTER": f"{__name__}:DownCatalogAdapter"}
    settings.update(config)
    return build_app(tmp_path, payment_processor=processor, **settings)


def adapter_of(app: Flask) -> DownCatalogAdapter:
    adapter = app.extensions["acp"].adapter
    assert isinstance(adapter, DownCatalogAdapter)
    return adapter


def expire_lock(db_path: pathlib.Path, session_id: str) -> None:
    """What a freeze longer than the lease looks like to everyone else."""
    with sqlite3.connect(db_path) as db:
        changed = db.execute("UPDATE acp_locks SET lease_until = 0 WHERE name = ?",
                             (f"session:{session_id}",)).rowcount
    assert changed == 1


# --- 1. a refund is never followed by an order ---------------------------------------


def test_refund_is_recorded_while_the_platform_stays_down(tmp_path: pathlib.Path,
                                                          processor: FaultyProcessor) -> None:
    """Charged; the platform fails the order and stays down past the deadline:
    the refund is recorded even though releasing and re-pricing fail, and when
    the platform returns no sweep or retry places an order."""
    app = make_app(tmp_path, processor, ACP_ORDER_PLACEMENT_DEADLINE=0)
    agent, adapter = Agent(app.test_client()), adapter_of(app)
    sid = agent.ready_session()["id"]
    adapter.down_at_place_order = True
    response = agent.complete(sid, "spt_refund_me")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "not_ready_for_payment"
    assert [(m["type"], m["code"]) for m in body["messages"]] == [("error", "unsupported")]
    assert "order" not in body
    [refund] = processor.operations("refund")
    assert refund["amount"] == TOTAL

    adapter.down = False
    assert app.extensions["acp"].service.sweep(stuck_after=0).recovered == 0
    again = agent.complete(sid, "spt_refund_me")
    assert again.status_code == 200
    assert again.get_json()["status"] != "completed"
    assert orders(tmp_path) == []
    assert len(processor.charges()) == 1
    assert len(processor.operations("refund")) == 1


def test_a_decided_refund_is_finished_never_turned_into_an_order(tmp_path: pathlib.Path,
                                                                 processor: FaultyProcessor) -> None:
    """The refund call itself fails: the decision to give the money back stands;
    the platform comes back before the processor does, and still the sweep
    finishes the refund instead of placing the order."""
    app = make_app(tmp_path, processor, ACP_ORDER_PLACEMENT_DEADLINE=0)
    agent, adapter = Agent(app.test_client()), adapter_of(app)
    sid = agent.ready_session()["id"]
    adapter.down_at_place_order = True
    processor.refund_failures = 1
    response = agent.complete(sid, "spt_refund_later")
    assert response.status_code == 503
    assert response.get_json()["code"] == "order_not_placed"
    assert response.headers["Retry-After"]
    assert processor.operations("refund") == []

    adapter.down = False  # the platform is back first
    report = app.extensions["acp"].service.sweep(stuck_after=0)
    assert report.recovered == 1
    session = get(agent, sid)
    assert session["status"] == "not_ready_for_payment"
    assert orders(tmp_path) == []
    assert [r["amount"] for r in processor.operations("refund")] == [TOTAL]


# --- 3. a worker frozen past its lease ------------------------------------------------


def _frozen_completion(agent: Agent, sid: str, token: str) -> tuple[threading.Thread, list[t.Any]]:
    result: list[t.Any] = []

    def run() -> None:
        response = agent.complete(sid, token)
        result.append((response.status_code, response.get_json()))

    thread = threading.Thread(target=run, name="frozen-worker", daemon=True)
    thread.start()
    return thread, result


def _paid_by_another_while_frozen(tmp_path: pathlib.Path, agent: Agent, processor: t.Any,
                                           token: str) -> tuple[str, threading.Thread, list[t.Any]]:
    """A ready session whose completion with ``token`` freezes inside the
    processor call past its lease, while another completion (``spt_other``)
    takes over and pays; the frozen one is still held (``processor.hold_charge``)."""
    sid = agent.ready_session()["id"]
    processor.hold_charge = threading.Event()
    thread, result = _frozen_completion(agent, sid, token)
    assert processor.charge_entered.wait(10)
    expire_lock(tmp_path / "acp.sqlite3", sid)
    assert agent.complete(sid, "spt_other").get_json()["status"] == "completed"
    return sid, thread, result


def test_worker_frozen_before_charging_does_not_charge(tmp_path: pathlib.Path,
                                                       processor: FaultyProcessor) -> None:
    """Frozen between recording the attempt and charging, longer than the lease:
    another completion takes over and pays; the frozen worker wakes and must
    not charge its token."""
    storage = sqlite_storage(str(tmp_path / "acp.sqlite3"))
    store = FreezingSessions(t.cast(SQLiteSessions, storage.sessions).db)
    app = make_app(tmp_path, processor, store=dataclasses.replace(storage, sessions=store),
                   ACP_PAYMENT_RECONCILE_WINDOW=0)
    agent = Agent(app.test_client())
    sid = agent.ready_session()["id"]
    store.freeze = threading.Event()
    thread, result = _frozen_completion(agent, sid, "spt_first_worker")
    assert store.frozen.wait(10)
    expire_lock(tmp_path / "acp.sqlite3", sid)

    other = agent.complete(sid, "spt_second_worker")
    assert other.status_code == 200, other.get_json()
    assert other.get_json()["status"] == "completed"

    store.freeze.set()
    thread.join(30)
    [(status, body)] = result
    assert status == 409, body
    assert body["code"] == "checkout_session_busy"
    charges = processor.charges()
    assert [c["amount"] for c in charges] == [TOTAL]
    assert processor.operations("refund") == []
    assert len(orders(tmp_path, sid)) == 1
    assert get(agent, sid)["status"] == "completed"


def test_charge_that_lands_after_the_lock_was_lost_is_given_back(tmp_path: pathlib.Path,
                                                                 processor: FaultyProcessor) -> None:
    """Frozen inside the processor call: its charge lands after another
    completion paid. The fenced write of that charge fails, and the stray
    charge is refunded at once: the buyer pays once."""
    app = make_app(tmp_path, processor, ACP_PAYMENT_RECONCILE_WINDOW=0)
    agent = Agent(app.test_client())
    sid, thread, result = _paid_by_another_while_frozen(tmp_path, agent, processor, "spt_frozen_in_call")

    processor.hold_charge.set()
    thread.join(30)
    [(status, _)] = result
    assert status == 409
    charges = processor.charges()
    assert len(charges) == 2
    stray = next(c for c in charges if c["payment_id"] != get_payment_id(app, sid))
    assert [(r["payment_id"], r["amount"]) for r in processor.operations("refund")] == [
        (stray["payment_id"], TOTAL)]
    assert len(orders(tmp_path, sid)) == 1


def get_payment_id(app: Flask, sid: str) -> str:
    session = app.extensions["acp"].storage.sessions.get(sid)
    assert session is not None
    assert session.payment is not None
    assert session.payment.payment_id
    return session.payment.payment_id


def test_stray_charge_reported_by_the_processor_is_refunded_once(tmp_path: pathlib.Path,
                                                                 processor: FaultyProcessor) -> None:
    """A charge of a completed session that is not its payment (as a signed
    ``payment_intent.succeeded`` reports it) is refunded, once; the session's
    own charge reported again changes nothing."""
    app = make_app(tmp_path, processor)
    agent = Agent(app.test_client())
    sid = agent.ready_session()["id"]
    assert agent.complete(sid, "spt_paid").get_json()["status"] == "completed"
    service = app.extensions["acp"].service
    own = ChargeResult(payment_id=get_payment_id(app, sid), amount=TOTAL, currency="usd")
    service.settle_charge(sid, own, idempotency_key=None)
    assert processor.operations("refund") == []

    # e.g. a worker frozen inside the processor call, whose charge landed late
    stray = processor.charge(ChargeRequest(
        idempotency_key="acp-other-attempt", amount=TOTAL, currency="usd", token="spt_stray",
        handler_id="card_tokenized", checkout_session_id=sid))
    service.settle_charge(sid, stray, idempotency_key="acp-other-attempt")
    service.settle_charge(sid, stray, idempotency_key="acp-other-attempt")  # redelivered
    refunds = processor.operations("refund")
    assert [(r["payment_id"], r["amount"]) for r in refunds] == [(stray.payment_id, TOTAL)]
    assert get(agent, sid)["status"] == "completed"
    assert len(orders(tmp_path, sid)) == 1


def test_lock_lease_must_exceed_the_charge_budget(tmp_path: pathlib.Path) -> None:
    with pytest.raises(RuntimeError, match="ACP_LOCK_LEASE"):
        build_app(tmp_path, ACP_LOCK_LEASE=30)


# --- same-key retry after a crash that committed ---------------------------------------


def test_same_key_retry_after_a_crash_after_the_commit_returns_the_completed_session(
        tmp_path: pathlib.Path, processor: FaultyProcessor) -> None:
    app = make_app(tmp_path, processor)
    agent = Agent(app.test_client())
    sid = agent.ready_session()["id"]
    key = str(uuid.uuid4())
    done = agent.complete(sid, "spt_crash_after_commit", key=key).get_json()
    assert done["status"] == "completed"
    # the worker died after committing the order, before storing the response:
    # the idempotency record is an abandoned in-flight claim
    with sqlite3.connect(tmp_path / "acp.sqlite3") as db:
        changed = db.execute("UPDATE acp_idempotency SET state = 'in_flight', status = NULL, body = NULL,"
                             " headers = NULL, claimed_at = 0 WHERE key = ?", (key,)).rowcount
    assert changed == 1

    retry = agent.complete(sid, "spt_crash_after_commit", key=key)
    assert retry.status_code == 200, retry.get_json()
    assert retry.get_json() == done
    assert len(processor.charges()) == 1
    # another key is still refused: the session is completed
    other = agent.complete(sid, "spt_crash_after_commit")
    assert other.status_code == 405


# --- locks of dead processes ---------------------------------------------------------

_HOLD_LOCK = textwrap.dedent("""
    import os, sys, time
    from flask_acp.store.sqlite import sqlite_storage
    storage = sqlite_storage(sys.argv[1])
    with storage.locks.lock(sys.argv[2], lease=600, wait=1):
        print("held", flush=True)
        if sys.argv[3] == "die":
            os._exit(0)  # a crash: no finally, the lock row stays
        time.sleep(60)
""")


@contextlib.contextmanager
def hold_lock(db_path: pathlib.Path, name: str, mode: str) -> t.Iterator[subprocess.Popen[str]]:
    """Another worker process holding the named lock (``mode``: ``die`` right
    away, or ``live`` until the block ends)."""
    with subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(db_path), name, mode],
                          stdout=subprocess.PIPE, text=True, cwd=os.getcwd()) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        try:
            yield proc
        finally:
            proc.kill()
            proc.wait(10)


def test_lock_of_a_dead_process_is_taken_over_without_waiting(tmp_path: pathlib.Path,
                                                              processor: FaultyProcessor) -> None:
    """A retry after a worker crashed mid-request gets the session at once (no
    wait at all here), instead of waiting out the lock wait on the dead lease."""
    app = make_app(tmp_path, processor, ACP_LOCK_WAIT=0)
    agent = Agent(app.test_client())
    sid = agent.ready_session()["id"]
    with hold_lock(tmp_path / "acp.sqlite3", f"session:{sid}", "die") as crashed:
        assert crashed.wait(10) == 0
        response = agent.complete(sid, "spt_after_crash")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "completed"


def test_lock_of_a_live_process_is_respected(tmp_path: pathlib.Path, processor: FaultyProcessor) -> None:
    app = make_app(tmp_path, processor, ACP_LOCK_WAIT=0)
    agent = Agent(app.test_client())
    sid = agent.ready_session()["id"]
    with hold_lock(tmp_path / "acp.sqlite3", f"session:{sid}", "live"):
        response = agent.complete(sid, "spt_busy")
        assert response.status_code == 409
        assert response.get_json()["code"] == "checkout_session_busy"
        assert processor.charges() == []
    assert agent.complete(sid, "spt_busy").get_json()["status"] == "completed"


# --- storage failures ----------------------------------------------------------------


@pytest.mark.parametrize("operation", ["create", "update", "complete"])
def test_storage_failure_is_503_with_retry_after(tmp_path: pathlib.Path, processor: FaultyProcessor,
                                                 operation: str) -> None:
    """The database locked by someone else past the busy timeout: 503 in the
    flat error shape with Retry-After, nothing changed."""
    storage = sqlite_storage(str(tmp_path / "acp.sqlite3"), busy_timeout=0.05)
    app = make_app(tmp_path, processor, store=storage)
    agent = Agent(app.test_client())
    sid = agent.ready_session()["id"]
    blocker = sqlite3.connect(tmp_path / "acp.sqlite3", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        if operation == "create":
            response = agent.create()
        elif operation == "update":
            response = agent.post(f"/checkout_sessions/{sid}", {"line_items": [{"id": "item_123",
                                                                                "quantity": 2}]})
        else:
            response = agent.complete(sid, "spt_locked_out")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["type"] == "service_unavailable"
    assert response.get_json()["code"] == "storage_unavailable"
    assert response.headers["Retry-After"] == "1"
    assert processor.charges() == []
    assert get(agent, sid)["status"] == "ready_for_payment"


def test_charge_naming_an_unknown_session_is_flagged_not_refunded(
        tmp_path: pathlib.Path, processor: FaultyProcessor, caplog: pytest.LogCaptureFixture) -> None:
    """A charge whose metadata names a session this store does not have may
    belong to another deployment on the same processor account: it is logged
    at error level for the merchant, never refunded blindly."""
    app = make_app(tmp_path, processor)
    charge = ChargeResult(payment_id="pi_elsewhere", amount=TOTAL, currency="usd")
    with caplog.at_level("ERROR", logger="flask_acp"):
        result = app.extensions["acp"].service.settle_charge("cs_unknown", charge,
                                                             idempotency_key="acp-cs_unknown-x")
    assert result is None
    assert any("pi_elsewhere" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    assert processor.operations("refund") == []


def test_stripe_webhook_with_the_store_locked_is_a_json_503(tmp_path: pathlib.Path,
                                                             processor: FaultyProcessor) -> None:
    """Stripe must deliver the event again, and never see HTML."""
    from tests.test_stripe_payments import WHSEC
    from tests.test_stripe_payments import signed

    store = sqlite_storage(str(tmp_path / "acp.sqlite3"), busy_timeout=0.05)
    app = make_app(tmp_path, processor, store=store, ACP_STRIPE_WEBHOOK_SECRET=WHSEC)
    body, headers = signed("charge.refunded", {"id": "ch_1", "object": "charge"})
    blocker = sqlite3.connect(tmp_path / "acp.sqlite3", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        response = app.test_client().post("/webhooks/stripe", data=body, headers=headers)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert response.status_code == 503
    assert response.get_json()["code"] == "storage_unavailable"
    assert response.headers["Retry-After"] == "1"
    again = app.test_client().post("/webhooks/stripe", data=body, headers=headers)
    assert again.get_json() == {"received": True}


def test_a_store_locked_at_start_up_does_not_stop_the_app(tmp_path: pathlib.Path,
                                                         processor: FaultyProcessor) -> None:
    """A worker (re)started while another process holds the SQLite file: the
    app still starts (a gunicorn worker that fails to boot takes the whole
    server down); requests meanwhile get 503, and the tables are set up on
    first use once the file is free."""
    path = tmp_path / "locked.sqlite3"
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        store = sqlite_storage(str(path), busy_timeout=0.05)  # does not raise
        app = make_app(tmp_path, processor, store=store)
        agent = Agent(app.test_client())
        locked = agent.create()
        assert locked.status_code == 503
        assert locked.get_json()["code"] == "storage_unavailable"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert agent.create().status_code == 201


_CLAIM_AND_DIE = textwrap.dedent("""
    import os, sys, time
    from flask_acp.store.sqlite import sqlite_storage
    storage = sqlite_storage(sys.argv[1])
    outcome = storage.idempotency.begin(sys.argv[2], sys.argv[3], sys.argv[4], now=time.time(),
                                        lease=120, retention=86400)
    print(outcome.state, flush=True)
    os._exit(0)  # the worker dies mid-request: its claim stays in flight
""")


def test_same_key_retry_after_a_crash_does_not_wait_out_the_idempotency_lease(
        tmp_path: pathlib.Path, processor: FaultyProcessor) -> None:
    """A worker that claimed an Idempotency-Key died (SIGKILL, OOM): the agent's
    retry with the same key runs at once instead of 409 for ACP_IDEMPOTENCY_LEASE."""
    from flask_acp.api.idempotency import fingerprint

    app = make_app(tmp_path, processor)
    agent = Agent(app.test_client())
    body = {"currency": "usd", "line_items": [{"id": "item_123"}], "capabilities": {}}
    key = str(uuid.uuid4())
    claimed = subprocess.run(
        [sys.executable, "-c", _CLAIM_AND_DIE, str(tmp_path / "acp.sqlite3"),
         "agent-one /checkout_sessions", key, "2026-04-17:" + fingerprint(body, present=True)],
        capture_output=True, text=True, timeout=30, check=True)
    assert claimed.stdout.strip() == "new"
    response = agent.post("/checkout_sessions", body, key=key)
    assert response.status_code == 201, response.get_json()


def test_an_unknown_placement_outcome_is_never_refunded_by_the_deadline(tmp_path: pathlib.Path,
                                                                        processor: FaultyProcessor) -> None:
    """Placing the order got no answer (the order may exist), then the store is
    plainly down past the deadline, for a sweep in another process: the money
    is not given back on a guess; once the store answers, the order is placed."""
    app = make_app(tmp_path, processor, ACP_ORDER_PLACEMENT_DEADLINE=0)
    agent, adapter = Agent(app.test_client()), adapter_of(app)
    sid = agent.ready_session()["id"]
    adapter.unknown_outcomes = 1
    response = agent.complete(sid, "spt_unknown_outcome")
    assert response.status_code == 503
    assert get(agent, sid)["status"] == "complete_in_progress"

    adapter.down = True  # "connection refused" from now on: certainly not placed, each time
    other_process = make_app(tmp_path, processor, ACP_ORDER_PLACEMENT_DEADLINE=0)
    adapter_of(other_process).down = True
    assert other_process.extensions["acp"].service.sweep(stuck_after=0).recovered == 0
    assert processor.operations("refund") == []

    adapter_of(other_process).down = False
    assert other_process.extensions["acp"].service.sweep(stuck_after=0).recovered == 1
    assert get(agent, sid)["status"] == "completed"
    assert processor.operations("refund") == []
    assert len(orders(tmp_path, sid)) == 1


class HeldPlacementAdapter(DownCatalogAdapter):
    """Its ``place_order`` can be held (a worker frozen inside the platform call)."""

    hold: threading.Event | None = None
    entered = threading.Event()

    def place_order(self, session: CheckoutSession, payment: PaymentRecord) -> Order:
        if self.hold is not None and threading.current_thread().name == "frozen-worker":
            self.entered.set()
            assert self.hold.wait(30)
        return super().place_order(session, payment)


def test_order_placed_after_the_lock_was_lost_is_adopted_once(
        tmp_path: pathlib.Path, processor: FaultyProcessor, caplog: pytest.LogCaptureFixture) -> None:
    """Frozen inside the order call past its lease: the retry that took over
    places the (same, idempotent) order; the frozen worker's late answer finds
    it recorded and writes nothing: one charge, one order, one order_create."""
    app = make_app(tmp_path, processor, ACP_ADAPTER=f"{__name__}:HeldPlacementAdapter")
    adapter = app.extensions["acp"].adapter
    assert isinstance(adapter, HeldPlacementAdapter)
    agent = Agent(app.test_client())
    sid = agent.ready_session()["id"]
    adapter.hold = threading.Event()
    thread, result = _frozen_completion(agent, sid, "spt_frozen_placing")
    assert adapter.entered.wait(10)
    expire_lock(tmp_path / "acp.sqlite3", sid)
    retry = agent.complete(sid, "spt_frozen_placing")
    assert retry.get_json()["status"] == "completed"

    with caplog.at_level("ERROR", logger="flask_acp"):
        adapter.hold.set()
        thread.join(30)
    [(status, _)] = result
    assert status == 409
    assert any("placed after the lock passed" in r.getMessage() for r in caplog.records)
    assert len(processor.charges()) == 1
    assert processor.operations("refund") == []
    assert len(orders(tmp_path, sid)) == 1
    outbox = app.extensions["acp"].storage.outbox.entries(statuses=["pending", "delivered", "skipped",
                                                                    "failed"])
    assert [e.type for e in outbox if e.session_id == sid] == ["order_create"]


class DecliningHeldProcessor(FaultyProcessor):
    """Holds the frozen worker's charge (whatever its token) until released."""

    def charge(self, request: ChargeRequest) -> ChargeResult:
        if self.hold_charge is not None and threading.current_thread().name == "frozen-worker":
            self.charge_entered.set()
            assert self.hold_charge.wait(30)
        return FakePaymentProcessor.charge(self, request)


def test_a_decline_that_lands_after_the_lock_was_lost_touches_no_stock(tmp_path: pathlib.Path) -> None:
    """Frozen inside a charge that is declined: another completion took over and
    paid meanwhile. The frozen worker's late decline must not give back (or
    re-take) the stock of a session it no longer holds: it writes nothing."""
    processor = DecliningHeldProcessor(str(tmp_path / "ledger.sqlite3"))
    app = make_app(tmp_path, processor, ACP_PAYMENT_RECONCILE_WINDOW=0)
    adapter = adapter_of(app)
    agent = Agent(app.test_client())
    sid, thread, result = _paid_by_another_while_frozen(tmp_path, agent, processor, "spt_decline_frozen")
    held = adapter.ledger.held_counts()
    calls: list[str] = []
    quote = adapter.quote
    adapter.quote = lambda request: calls.append(request.session_id) or quote(request)  # type: ignore[method-assign]

    processor.hold_charge.set()
    thread.join(30)
    [(status, _)] = result
    assert status == 409
    assert calls == []
    assert adapter.ledger.held_counts() == held
    assert len(orders(tmp_path, sid)) == 1
    assert get(agent, sid)["status"] == "completed"
