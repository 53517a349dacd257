"""Delivery decisions (:mod:`flask_acp.webhooks.outbox`) on their own: the pure
outcome rules, and :class:`OutboxDelivery` over a real SQLite outbox with a
fake ``send`` (no Flask, no HTTP, no RQ)."""

from __future__ import annotations

import ast
import logging
import pathlib
import threading
import time
import typing as t

import pytest

from flask_acp.store.base import OutboxEntry
from flask_acp.store.base import Storage
from flask_acp.store.sqlite import sqlite_storage
from flask_acp.testing.storage_contract import make_event
from flask_acp.testing.storage_contract import make_session
from flask_acp.webhooks import outbox as outbox_module
from flask_acp.webhooks.outbox import OutboxDelivery
from flask_acp.webhooks.outbox import SendResult
from flask_acp.webhooks.outbox import decide

INTERVALS = (10, 60)


def entry(attempts: int = 0, *, next_attempt_at: float = 1000.0) -> OutboxEntry:
    return OutboxEntry("evt_1", "ord_1", "cs_1", "agent-one", "order_create", 1000.0, "pending", attempts,
                       next_attempt_at, None, None, None, None, "me", 2000.0)


# --------------------------------------------------------------------------- decide (pure)


def test_a_2xx_is_delivered() -> None:
    decision = decide(entry(), SendResult(204), now=1500.0, intervals=INTERVALS)
    assert (decision.status, decision.attempts, decision.delivered_at, decision.last_status,
            decision.last_error) == ("delivered", 1, 1500.0, 204, None)
    assert decision.outcome.result == "delivered"


@pytest.mark.parametrize(("attempts", "next_at"), [(0, 1510.0), (1, 1560.0)])
def test_a_retryable_failure_is_due_again_after_its_interval(attempts: int, next_at: float) -> None:
    decision = decide(entry(attempts), SendResult(503, "HTTP 503", retryable=True), now=1500.0,
                      intervals=INTERVALS)
    assert (decision.status, decision.attempts, decision.next_attempt_at) == (
        "pending", attempts + 1, next_at)
    assert (decision.outcome.result, decision.outcome.next_attempt_at) == ("retry", next_at)


def test_after_the_last_interval_the_event_is_given_up() -> None:
    decision = decide(entry(2), SendResult(None, "timed out after 10 s", retryable=True), now=1500.0,
                      intervals=INTERVALS)
    assert (decision.status, decision.attempts) == ("failed", 3)
    assert decision.last_error == "gave up after 3 attempts: timed out after 10 s"
    assert decision.outcome.gave_up


def test_a_refusal_fails_at_once() -> None:
    decision = decide(entry(), SendResult(422, "HTTP 422"), now=1500.0, intervals=INTERVALS)
    assert (decision.status, decision.attempts, decision.last_status) == ("failed", 1, 422)
    assert not decision.outcome.gave_up


def test_a_skip_is_no_attempt() -> None:
    decision = decide(entry(1), SendResult(None, "no webhook_url", skipped=True), now=1500.0,
                      intervals=INTERVALS)
    assert (decision.status, decision.attempts, decision.last_error) == ("skipped", 1, "no webhook_url")


@pytest.mark.parametrize(("code", "retryable"), [(401, True), (408, True), (429, True), (500, True),
                                                 (503, True), (400, False), (404, False), (301, False)])
def test_retryable_statuses(code: int, retryable: bool) -> None:
    assert outbox_module.retryable_status(code) is retryable


def test_the_decisions_import_no_flask_rq_or_http_client() -> None:
    tree = ast.parse(pathlib.Path(outbox_module.__file__).read_text())
    imported = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
    assert imported <= {"__future__", "collections.abc", "dataclasses", "logging", "os", "time", "typing",
                        "uuid", "models", "store.base", "logs"}, imported


# --------------------------------------------------------------------------- OutboxDelivery


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def storage(tmp_path: pathlib.Path) -> Storage:
    return sqlite_storage(str(tmp_path / "outbox.sqlite3"))


def events(storage: Storage, count: int, *, created: float = 1000.0,
           orders: t.Sequence[str] | None = None) -> list[str]:
    session = make_session()
    storage.sessions.create(session)
    made = [make_event(session, order_id=orders[i] if orders else f"ord_{i}", created_at=created + i)
            for i in range(count)]
    storage.sessions.save(session, made)
    return [e.id for e in made]


def test_deliver_due_claims_attempts_and_records(storage: Storage) -> None:
    ids = events(storage, 3)
    answers = {ids[0]: SendResult(200), ids[1]: SendResult(500, "HTTP 500", retryable=True),
               ids[2]: SendResult(404, "HTTP 404")}
    sent: list[str] = []

    def send(e: OutboxEntry) -> SendResult:
        assert e.claimed_by is not None  # only claimed events are sent
        sent.append(e.event_id)
        return answers[e.event_id]

    clock = Clock(2000.0)
    delivery = OutboxDelivery(storage.outbox, send, intervals=INTERVALS, lease=50, clock=clock)
    outcomes = delivery.deliver_due(limit=10)
    assert [o.result for o in outcomes] == ["delivered", "retry", "failed"]
    assert sent == ids  # oldest first
    assert delivery.deliver_due(limit=10) == []  # the retry is not due until 2010
    clock.now = 2010.0
    answers[ids[1]] = SendResult(200)
    assert [o.result for o in delivery.deliver_due(limit=10)] == ["delivered"]
    rows = [storage.outbox.get(i) for i in ids]
    assert [(r.status, r.attempts, r.claimed_by) for r in rows if r] == [
        ("delivered", 1, None), ("delivered", 2, None), ("failed", 1, None)]


def test_deliver_waits_for_the_order_then_sends(storage: Storage) -> None:
    create, update = events(storage, 2, orders=["ord_a", "ord_a"])
    assert storage.outbox.claim(create, owner="other", now=time.time(), lease=30) is not None
    sent: list[str] = []
    delivery = OutboxDelivery(storage.outbox, lambda e: sent.append(e.event_id) or SendResult(200),
                              intervals=INTERVALS, lease=30)
    assert delivery.deliver(update, wait=0.2).result == "busy"
    assert sent == []
    threading.Timer(0.2, storage.outbox.release, (create,), {"owner": "other"}).start()
    assert delivery.deliver(update, wait=5).result == "delivered"
    assert sent == [update]
    assert delivery.deliver(update).result == "unchanged"
    assert delivery.deliver("evt_missing").result == "missing"


def test_deliver_due_only_respects_the_schedule(storage: Storage) -> None:
    (event,) = events(storage, 1, created=time.time() + 60)  # due in a minute
    delivery = OutboxDelivery(storage.outbox, lambda e: SendResult(200), intervals=INTERVALS, lease=30)
    outcome = delivery.deliver(event, due_only=True)
    assert outcome.result == "not_due"
    assert outcome.next_attempt_at == pytest.approx(time.time() + 60, abs=5)
    assert delivery.deliver(event).result == "delivered"  # an operator's attempt runs out of schedule


def test_a_crashed_send_leaves_its_claim_to_lapse(storage: Storage, caplog: pytest.LogCaptureFixture) -> None:
    (event,) = events(storage, 1)
    clock = Clock(2000.0)

    def crash(e: OutboxEntry) -> SendResult:
        raise RuntimeError("store outage")

    delivery = OutboxDelivery(storage.outbox, crash, intervals=INTERVALS, lease=50, clock=clock)
    with caplog.at_level(logging.ERROR, logger="flask_acp.webhooks"):
        assert delivery.deliver_due(limit=10) == []
    assert "delivery attempt crashed" in caplog.text
    delivery.send = lambda e: SendResult(200)
    clock.now = 2049.0
    assert delivery.deliver_due(limit=10) == []  # still claimed by the crashed attempt
    clock.now = 2050.0
    assert [o.result for o in delivery.deliver_due(limit=10)] == ["delivered"]


def test_a_runner_frozen_past_its_lease_does_not_record(storage: Storage,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    (event,) = events(storage, 1)
    clock = Clock(2000.0)
    late = OutboxDelivery(storage.outbox, lambda e: SendResult(None), intervals=INTERVALS, lease=50,
                          clock=clock)

    def frozen_send(e: OutboxEntry) -> SendResult:
        clock.now = 2100.0  # frozen past the lease: another runner took the event over meanwhile
        assert [o.result for o in late.deliver_due(limit=10)] == ["failed"]
        return SendResult(200)

    late.send = lambda e: SendResult(404, "HTTP 404")
    frozen = OutboxDelivery(storage.outbox, frozen_send, intervals=INTERVALS, lease=50, clock=clock)
    with caplog.at_level(logging.WARNING, logger="flask_acp.webhooks"):
        assert [o.result for o in frozen.deliver_due(limit=10)] == ["delivered"]
    assert "is not recorded" in caplog.text
    row = storage.outbox.get(event)
    assert row is not None
    assert (row.status, row.last_status) == ("failed", 404)  # the next holder's outcome stands


def test_deliver_due_releases_what_it_cannot_attempt_in_time(storage: Storage) -> None:
    ids = events(storage, 5)

    def slow(e: OutboxEntry) -> SendResult:
        time.sleep(0.15)
        return SendResult(200)

    delivery = OutboxDelivery(storage.outbox, slow, intervals=INTERVALS, lease=600)
    outcomes = delivery.deliver_due(limit=10, seconds=0.2)
    assert 1 <= len(outcomes) < 5
    rows = [storage.outbox.get(i) for i in ids]
    left = [r for r in rows if r and r.status == "pending"]
    assert left
    assert all(r.claimed_by is None for r in left)  # released: due at once for another runner
