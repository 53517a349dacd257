"""Order webhooks without Redis: the embedded delivery thread (the default),
with the same attempt function and retry rules as the RQ jobs."""

from __future__ import annotations

import collections.abc as cabc
import datetime as dt
import os
import pathlib
import signal
import time
import typing as t

import pytest

from flask_acp.models import OrderEvent
from tests.test_webhooks import MakeApp
from tests.test_webhooks import Receiver
from tests.test_webhooks import app_factory
from tests.test_webhooks import buy
from tests.test_webhooks import check_event
from tests.test_webhooks import outbox


@pytest.fixture
def receiver() -> cabc.Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def make_app(tmp_path: pathlib.Path) -> cabc.Iterator[MakeApp]:
    yield from app_factory(tmp_path)


def fast(app: t.Any) -> t.Any:
    """Poll the outbox every 50 ms (default: 1 s)."""
    app.extensions["acp"].webhooks.thread.poll_interval = 0.05
    return app


def wait_until(condition: t.Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def test_thread_starts_lazily_and_delivers_create_and_update(make_app: MakeApp, receiver: Receiver) -> None:
    app = fast(make_app(receiver.url))
    state = app.extensions["acp"]
    assert state.webhooks.mode == "thread"
    assert not state.webhooks.thread.running  # nothing at init_app
    app.test_client().get("/.well-known/acp.json")
    assert state.webhooks.thread.running  # the first request starts it
    done = buy(app)
    check_event(receiver.wait_for(1)[0], "order_create")
    state.orders.ship(done["order"]["id"], carrier="USPS", tracking_number="9400")
    update = check_event(receiver.wait_for(2)[1], "order_update")
    assert update["data"]["status"] == "shipped"
    wait_until(lambda: [r.status for r in outbox(app)] == ["delivered", "delivered"])
    assert len(receiver.log) == 2


def test_first_event_starts_the_thread(make_app: MakeApp, receiver: Receiver, tmp_path: pathlib.Path) -> None:
    shop = make_app(receiver.url, ACP_WEBHOOK_DELIVERY_THREAD=False)
    buy(shop)  # written to the outbox; nothing delivers it in this app
    (row,) = outbox(shop, "pending")
    other = fast(make_app(receiver.url, path=tmp_path / "other",
                          ACP_SQLITE_PATH=shop.extensions["acp"].settings.sqlite_path))
    webhooks = other.extensions["acp"].webhooks
    webhooks.on_events(())
    assert not webhooks.thread.running  # no event, no thread
    event = OrderEvent(id=row.event_id, order_id=row.order_id, checkout_session_id=row.session_id,
                       agent=row.agent, type=row.type, created_at=dt.datetime.now(dt.timezone.utc))
    with other.test_request_context():  # the checkout calls this after its commit, in a request
        webhooks.on_events((event,))
    assert webhooks.thread.running
    assert receiver.wait_for(1)[0].request_id == row.event_id


def test_events_made_outside_a_request_are_attempted_inline(make_app: MakeApp, receiver: Receiver) -> None:
    """A CLI command's process ends right after it: its events are attempted at
    once instead of by a daemon thread that would die mid-send."""
    app = fast(make_app(receiver.url))
    done = buy(app)  # in a request: the app's thread delivers order_create
    receiver.wait_for(1)
    result = app.test_cli_runner().invoke(args=["acp", "orders", "ship", done["order"]["id"],
                                                "--carrier", "UPS", "--tracking-number", "1Z"])
    assert result.exit_code == 0, result.output
    assert [e.status for e in outbox(app, "delivered")] == ["delivered", "delivered"]


def test_thread_retries_then_delivers(make_app: MakeApp, receiver: Receiver) -> None:
    app = fast(make_app(receiver.url))
    receiver.plan = [500, 429]
    buy(app)
    receiver.wait_for(1, timeout=15)
    assert [d.status for d in receiver.log] == [500, 429, 200]
    assert len({d.request_id for d in receiver.log}) == 1
    wait_until(lambda: outbox(app)[0].status == "delivered")
    (row,) = outbox(app)
    assert (row.attempts, row.last_status) == (3, 200)


def test_thread_gives_up_then_replay_delivers(make_app: MakeApp, receiver: Receiver) -> None:
    app = fast(make_app(receiver.url, ACP_WEBHOOK_RETRY_INTERVALS=[1]))
    receiver.default_status = 503
    buy(app)
    wait_until(lambda: bool(outbox(app, "failed")), timeout=15)
    (row,) = outbox(app)
    assert row.attempts == 2
    assert row.last_error == "gave up after 2 attempts: HTTP 503: {\"type\": \"invalid_request\", " \
        "\"code\": \"error\", \"message\": \"status 503\"}"
    time.sleep(1.2)  # no further attempt after the last interval
    assert [d.status for d in receiver.log] == [503, 503]
    receiver.default_status = 200
    result = app.test_cli_runner().invoke(args=["acp", "events", "replay", row.event_id])
    assert result.exit_code == 0, result.output
    assert f"{row.event_id}\tpending" in result.output
    check_event(receiver.wait_for(1)[0], "order_create")
    wait_until(lambda: outbox(app)[0].status == "delivered")


def test_processes_sharing_the_outbox_deliver_each_event_once(
        make_app: MakeApp, receiver: Receiver, tmp_path: pathlib.Path) -> None:
    # two apps on one SQLite file stand for two gunicorn workers: each has its
    # own thread; outbox_claim lets exactly one of them send each event
    first = fast(make_app(receiver.url))
    second = fast(make_app(receiver.url, path=tmp_path / "second",
                           ACP_SQLITE_PATH=first.extensions["acp"].settings.sqlite_path))
    second.extensions["acp"].webhooks.start()
    for _ in range(6):
        buy(first)
    delivered = receiver.wait_for(6)
    wait_until(lambda: len(outbox(first, "delivered")) == 6)
    time.sleep(0.3)
    assert len(receiver.log) == 6
    assert len({d.request_id for d in delivered}) == 6


def test_disabled_thread_leaves_delivery_to_the_worker_command(make_app: MakeApp, receiver: Receiver) -> None:
    app = make_app(receiver.url, ACP_WEBHOOK_DELIVERY_THREAD=False)
    assert app.extensions["acp"].webhooks.mode == "manual"
    buy(app)
    time.sleep(0.2)
    assert receiver.log == []
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["acp", "events", "list", "--status", "pending", "--json"])
    assert '"status": "pending"' in listed.output
    result = runner.invoke(args=["acp", "worker", "--burst"])
    assert result.exit_code == 0, result.output
    assert "attempts=1" in result.output
    check_event(receiver.delivered[0], "order_create")
    assert runner.invoke(args=["acp", "sweep"]).output.endswith("webhooks_queued=0\n")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_worker_process_starts_its_own_thread(make_app: MakeApp, receiver: Receiver) -> None:
    app = make_app(receiver.url)
    webhooks = app.extensions["acp"].webhooks
    webhooks.thread.poll_interval = 60
    webhooks.start()  # the parent's thread: one pass (nothing pending), then asleep
    checkout = app.extensions["acp"].service
    checkout.on_events = lambda events: None  # do not wake it for the purchase
    buy(app)
    (row,) = outbox(app, "pending")
    time.sleep(0.2)  # no thread of ours is inside SQLite when we fork (gunicorn forks before any)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            if not webhooks.thread.running:  # the parent's thread does not exist here
                app.test_client().get("/.well-known/acp.json")  # first request of this process
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    entry = app.extensions["acp"].storage.outbox.get(row.event_id)
                    if entry is not None and entry.status == "delivered":
                        code = 0
                        break
                    time.sleep(0.02)
        finally:
            os._exit(code)
    deadline = time.monotonic() + 15
    while (waited := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked process did not deliver within 15 s")
        time.sleep(0.02)
    assert os.waitstatus_to_exitcode(waited[1]) == 0
    assert [d.request_id for d in receiver.log] == [row.event_id]
    assert webhooks.thread.running  # the parent's own thread is untouched
