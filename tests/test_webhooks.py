"""Order webhooks: signed delivery to a local receiver, through a REAL Redis
server and REAL RQ workers (in-process burst workers and one ``flask acp
worker`` subprocess), plus the attempt rules shared with the thread mode.

The receiver verifies every request with an independent implementation,
``stripe.WebhookSignature.verify_header`` (same scheme), and answers 401 when
it fails. Redis: each test session starts its own ``redis-server`` on a free
loopback port (never touching a shared one). Without the binary these tests
skip, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import datetime as dt
import json
import logging
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import typing as t
import zlib

import pytest
import redis
import stripe
from flask import Flask
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer
from werkzeug.serving import make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from flask_acp.webhooks import signing
from flask_acp.webhooks.queue import job_id
from flask_acp.webhooks.worker import run_worker
from tests.conftest import AGENT_KEY
from tests.conftest import AGENT_KEY_ROTATED
from tests.conftest import OTHER_KEY
from tests.conftest import Agent
from tests.conftest import build_app
from tests.spec import validate

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment

ROOT = pathlib.Path(__file__).resolve().parent.parent
SECRET = "whsec_agent_one_primary_0001"
OLD_SECRET = "whsec_agent_one_previous_0002"
EVENT_TYPES = {"order_create", "order_update"}


# --------------------------------------------------------------------------- receiver


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One request the receiver got, and what it answered."""

    body: bytes
    headers: dict[str, str]
    status: int

    @property
    def event(self) -> dict[str, t.Any]:
        return t.cast(dict[str, t.Any], json.loads(self.body))

    @property
    def request_id(self) -> str:
        return self.headers["Request-Id"]

    @property
    def signed_at(self) -> int:
        return signing.parse_header(self.headers["Merchant-Signature"])[0]


class Receiver:
    """An agent's webhook endpoint on 127.0.0.1 (werkzeug server thread).

    Verifies ``Merchant-Signature`` with Stripe's verifier against any of
    ``secrets`` (401 otherwise), then answers the next status of ``plan``, or
    ``default_status`` once the plan is used up.
    """

    path = "/agentic_checkout/webhooks/order_events"

    def __init__(self, secrets: cabc.Sequence[str] = (SECRET,), tolerance: int = 300) -> None:
        self.secrets = list(secrets)
        self.tolerance = tolerance
        self.plan: list[int] = []
        self.default_status = 200
        self.log: list[Delivery] = []
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}{self.path}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _verified(self, body: bytes, header: str | None) -> bool:
        for secret in self.secrets:
            try:
                stripe.WebhookSignature.verify_header(body, header, secret, tolerance=self.tolerance)
                return True
            except stripe.SignatureVerificationError:
                continue
        return False

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> cabc.Iterable[bytes]:
        request = Request(environ)
        body = request.get_data()
        if request.method != "POST" or request.path != self.path or request.mimetype != "application/json":
            status = 400
        elif not self._verified(body, request.headers.get("Merchant-Signature")):
            status = 401
        else:
            with self._lock:
                status = self.plan.pop(0) if self.plan else self.default_status
        with self._lock:
            self.log.append(Delivery(body, dict(request.headers), status))
        if 200 <= status < 300:
            answer = {"received": True, "request_id": request.headers.get("Request-Id", "")}
        else:
            answer = {"type": "invalid_request", "code": "invalid_signature" if status == 401 else "error",
                      "message": f"status {status}"}
        response = Response(json.dumps(answer), status=status, mimetype="application/json")
        return response(environ, start_response)

    @property
    def delivered(self) -> list[Delivery]:
        with self._lock:
            return [d for d in self.log if 200 <= d.status < 300]

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while len(self.delivered) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.delivered)} deliveries, expected {count}: {self.log}")
            time.sleep(0.02)
        return self.delivered


@pytest.fixture
def receiver() -> cabc.Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def check_event(delivery: Delivery, kind: str | None = None) -> dict[str, t.Any]:
    """The body is a 2026-04-17 ``WebhookEvent`` with a full ``Order``; the
    headers are the spec's."""
    event = delivery.event
    assert set(event) == {"type", "data"}
    assert event["type"] in EVENT_TYPES
    if kind:
        assert event["type"] == kind
    data = dict(event["data"])
    assert data.pop("type") == "order"
    validate(data, "Order")
    assert delivery.headers["Content-Type"] == "application/json"
    assert signing.SCHEME == "v1"
    assert re.fullmatch(r"t=\d+,v1=[a-f0-9]{64}", delivery.headers["Merchant-Signature"])
    stamp = delivery.signed_at
    assert delivery.headers["Timestamp"] == dt.datetime.fromtimestamp(
        stamp, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return event

# --------------------------------------------------------------------------- redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _need(what: str) -> t.NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required under CI=true")
    pytest.skip(f"{what} not available")


class RedisServer:
    """A private ``redis-server`` on 127.0.0.1 (no persistence), startable
    again on the same port."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            _need("redis-server")
        self.binary = binary
        self.port = port or _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    _need(f"redis-server on port {self.port}")
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture(scope="session")
def redis_server() -> cabc.Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


# --------------------------------------------------------------------------- apps


MakeApp = t.Callable[..., Flask]


def app_factory(tmp_path: pathlib.Path) -> cabc.Iterator[MakeApp]:
    """Build apps whose agent-one posts to ``url`` signed with ``secrets``;
    every app's delivery machinery is closed afterwards (a fixture body)."""
    made: list[Flask] = []

    def make(url: str | None, *, secrets: cabc.Sequence[str] = (SECRET,), path: pathlib.Path | None = None,
             **config: t.Any) -> Flask:
        agent_one: dict[str, t.Any] = {"api_keys": [AGENT_KEY, AGENT_KEY_ROTATED],
                                       "webhook_secrets": list(secrets)}
        if url:
            agent_one["webhook_url"] = url
        config.setdefault("ACP_AGENTS", {"agent-one": agent_one, "agent-two": {"api_keys": [OTHER_KEY]}})
        config.setdefault("ACP_WEBHOOK_RETRY_INTERVALS", [1, 1, 1])
        config.setdefault("ACP_WEBHOOK_TIMEOUT", 2.0)
        app = build_app(path or tmp_path, **config)
        made.append(app)
        return app

    yield make
    for app in made:
        app.extensions["acp"].webhooks.close()


@pytest.fixture
def make_app(tmp_path: pathlib.Path) -> cabc.Iterator[MakeApp]:
    yield from app_factory(tmp_path)


def buy(app: Flask, items: list[dict[str, t.Any]] | None = None) -> dict[str, t.Any]:
    agent = Agent(app.test_client())
    session = agent.ready_session(items)
    response = agent.complete(session["id"])
    assert response.status_code == 200, response.get_json()
    done = response.get_json()
    assert done["status"] == "completed"
    return t.cast(dict[str, t.Any], done)


def outbox(app: Flask, *statuses: str) -> list[t.Any]:
    return t.cast(list[t.Any], app.extensions["acp"].storage.outbox.entries(
        statuses=statuses or ("pending", "delivered", "failed", "skipped")))


def drain(app: Flask, until: t.Callable[[], bool], timeout: float = 15.0) -> None:
    """Run burst RQ workers (with the scheduler, so due retries run) until
    ``until()`` holds."""
    service = app.extensions["acp"].webhooks
    deadline = time.monotonic() + timeout
    with app.app_context():
        while True:
            run_worker(service, burst=True, logging_level="WARNING")
            if until():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not reached; outbox: {outbox(app)}")
            time.sleep(0.1)


def rq_queue(app: Flask, conn: redis.Redis) -> Queue:
    return Queue(app.extensions["acp"].settings.webhook_queue, connection=conn, serializer=JSONSerializer)


# --------------------------------------------------------------------------- configuration


def test_webhook_url_must_be_https_outside_debug_and_testing(make_app: MakeApp) -> None:
    with pytest.raises(RuntimeError, match=r"ACP_AGENTS\['agent-one'\].webhook_url: must be an https"):
        make_app("http://agent.example/hooks", TESTING=False)
    app = make_app("https://agent.example/hooks", TESTING=False, ACP_WEBHOOK_DELIVERY_THREAD=False)
    assert app.extensions["acp"].webhooks.mode == "manual"
    assert make_app("http://127.0.0.1:9/hooks", ACP_WEBHOOK_DELIVERY_THREAD=False)  # testing


def test_webhook_url_needs_a_secret(make_app: MakeApp) -> None:
    with pytest.raises(RuntimeError, match=r"'agent-one'.*no webhook_secrets"):
        make_app("https://agent.example/hooks", secrets=())


def test_modes(make_app: MakeApp, redis_url: str) -> None:
    assert make_app("https://a.example/h", ACP_REDIS_URL=redis_url).extensions["acp"].webhooks.mode == "rq"
    thread_app = make_app("https://a.example/h")
    assert thread_app.extensions["acp"].webhooks.mode == "thread"
    assert not thread_app.extensions["acp"].webhooks.thread.running  # lazy: nothing at init_app
    assert make_app(None).extensions["acp"].webhooks.mode == "manual"  # no agent has a URL


def test_example_app_takes_webhook_settings_from_the_environment(
        monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.setenv("ACP_API_KEYS", "shop-agent:shop-agent-key-0123456789")
    monkeypatch.setenv("ACP_WEBHOOK_URL", "https://agent.example/agentic_checkout/webhooks/order_events")
    monkeypatch.setenv("ACP_WEBHOOK_SECRET", "whsec_from_the_environment_01")
    monkeypatch.setenv("ACP_SQLITE_PATH", str(tmp_path / "example.sqlite3"))
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_example_not_used_0000")  # no fake Stripe server
    monkeypatch.setenv("STRIPE_ACCOUNT_ID", "acct_example")
    monkeypatch.syspath_prepend(str(ROOT))
    import example_app

    app = example_app.create_app({"ACP_WEBHOOK_DELIVERY_THREAD": False})
    agent = app.extensions["acp"].settings.agent("shop-agent")
    assert agent.webhook_url == "https://agent.example/agentic_checkout/webhooks/order_events"
    assert agent.webhook_secrets == ("whsec_from_the_environment_01",)
    app.extensions["acp"].webhooks.close()


# --------------------------------------------------------------------------- one attempt (shared)


def test_attempt_signs_sends_current_state_and_records(make_app: MakeApp, receiver: Receiver) -> None:
    app = make_app(receiver.url, ACP_WEBHOOK_DELIVERY_THREAD=False)
    state = app.extensions["acp"]
    done = buy(app)
    order_id = done["order"]["id"]
    state.orders.ship(order_id, carrier="USPS", tracking_number="9400")
    create, update = outbox(app, "pending")
    assert (create.type, update.type) == ("order_create", "order_update")
    # the order_create attempt happens after the shipment: it carries the
    # order as it is now, never an older state than one already sent
    outcome = state.webhooks.deliver(create.event_id)
    assert (outcome.result, outcome.status_code, outcome.attempts) == ("delivered", 200, 1)
    first = receiver.delivered[0]
    event = check_event(first, "order_create")
    assert event["data"]["id"] == order_id
    assert event["data"]["status"] == "shipped"
    assert event["data"]["fulfillments"][0]["tracking_number"] == "9400"
    assert first.request_id == create.event_id
    # our verifier agrees with the receiver's (stripe)
    assert signing.verify_header(first.headers["Merchant-Signature"], first.body, [SECRET]) == first.signed_at
    assert state.webhooks.deliver(update.event_id).result == "delivered"
    assert check_event(receiver.delivered[1], "order_update")["data"]["status"] == "shipped"
    # delivered rows are never sent again
    assert state.webhooks.deliver(create.event_id).result == "unchanged"
    assert len(receiver.log) == 2
    row = state.storage.outbox.get(create.event_id)
    assert (row.status, row.attempts, row.last_status) == ("delivered", 1, 200)
    assert row.delivered_at is not None


def test_each_attempt_is_signed_at_send_time(make_app: MakeApp, receiver: Receiver) -> None:
    app = make_app(receiver.url, ACP_WEBHOOK_DELIVERY_THREAD=False)
    webhooks = app.extensions["acp"].webhooks
    buy(app)
    (event,) = outbox(app, "pending")
    receiver.plan = [503]
    now = time.time()
    webhooks.sender.clock = webhooks.delivery.clock = lambda: now  # the signer's and the outbox's
    outcome = webhooks.deliver(event.event_id)
    assert (outcome.result, outcome.status_code, outcome.next_attempt_at) == ("retry", 503, now + 1)
    webhooks.sender.clock = webhooks.delivery.clock = lambda: now + 0.5
    assert webhooks.delivery.deliver(event.event_id, due_only=True).result == "not_due"
    assert len(receiver.log) == 1
    webhooks.sender.clock = webhooks.delivery.clock = lambda: now + 7200  # the retry runs two hours later
    assert webhooks.delivery.deliver(event.event_id, due_only=True).result == "delivered"
    first, second = receiver.log
    assert (first.signed_at, second.signed_at) == (int(now), int(now + 7200))
    assert first.request_id == second.request_id == event.event_id  # stable across retries
    assert first.body == second.body
    with pytest.raises(signing.SignatureError, match="window"):
        signing.verify_header(first.headers["Merchant-Signature"], first.body, [SECRET], now=now + 7200)
    with pytest.raises(signing.SignatureError, match="verification failed"):
        signing.verify_header(second.headers["Merchant-Signature"], second.body.replace(b"order", b"odrer"),
                              [SECRET], now=now + 7200)


def test_sends_of_one_order_are_serialised_by_the_outbox_claim(make_app: MakeApp,
                                                               receiver: Receiver) -> None:
    app = make_app(receiver.url, ACP_WEBHOOK_DELIVERY_THREAD=False)
    state = app.extensions["acp"]
    done = buy(app)
    state.orders.ship(done["order"]["id"], carrier="USPS", tracking_number="9400")
    create, update = outbox(app, "pending")
    # another runner (say, a worker process in the middle of a send) holds this order's order_create
    assert state.storage.outbox.claim(create.event_id, owner="other-runner", now=time.time(),
                                      lease=30) is not None
    results: list[str] = []
    worker = threading.Thread(
        target=lambda: results.append(state.webhooks.deliver(update.event_id).result))
    worker.start()
    time.sleep(0.4)
    assert receiver.log == []  # waiting for the order, not sending
    assert state.storage.outbox.release(create.event_id, owner="other-runner")
    worker.join(10)
    assert results == ["delivered"]
    assert [d.request_id for d in receiver.log] == [update.event_id]
    state.webhooks.sender.close()


def test_agent_without_webhook_url_is_skipped(make_app: MakeApp, receiver: Receiver) -> None:
    app = make_app(receiver.url, ACP_WEBHOOK_DELIVERY_THREAD=False)
    state = app.extensions["acp"]
    agent_two = Agent(app.test_client(), key=OTHER_KEY)
    session = agent_two.ready_session()
    assert agent_two.complete(session["id"]).status_code == 200
    (event,) = outbox(app, "pending")
    assert event.agent == "agent-two"
    outcome = state.webhooks.deliver(event.event_id)
    assert (outcome.result, outcome.error) == ("skipped", "no webhook_url configured for agent 'agent-two'")
    assert state.storage.outbox.get(event.event_id).status == "skipped"
    assert receiver.log == []


@pytest.mark.parametrize(("answer", "result"), [(404, "failed"), (301, "failed"), (408, "retry"),
                                                (429, "retry"), (500, "retry")])
def test_status_classification(make_app: MakeApp, receiver: Receiver, answer: int, result: str) -> None:
    app = make_app(receiver.url, ACP_WEBHOOK_DELIVERY_THREAD=False)
    buy(app)
    (event,) = outbox(app, "pending")
    receiver.plan = [answer]
    outcome = app.extensions["acp"].webhooks.deliver(event.event_id)
    assert (outcome.result, outcome.status_code) == (result, answer)


def test_timeouts_and_refused_connections_are_retried(make_app: MakeApp) -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        app = make_app(f"http://127.0.0.1:{silent.getsockname()[1]}/hooks", ACP_WEBHOOK_DELIVERY_THREAD=False,
                       ACP_WEBHOOK_TIMEOUT=0.3)
        buy(app)
        (event,) = outbox(app, "pending")
        outcome = app.extensions["acp"].webhooks.deliver(event.event_id)
    assert (outcome.result, outcome.error) == ("retry", "timed out after 0.3 s")
    # a manual attempt runs whatever the schedule; the port is closed now
    outcome = app.extensions["acp"].webhooks.deliver(event.event_id)
    assert outcome.result == "retry"
    assert "ConnectionError" in str(outcome.error)
    assert outcome.attempts == 2


# --------------------------------------------------------------------------- RQ mode


def test_rq_delivers_order_create_then_order_update(make_app: MakeApp, receiver: Receiver,
                                                    redis_url: str) -> None:
    app = make_app(receiver.url, ACP_REDIS_URL=redis_url)
    state = app.extensions["acp"]
    done = buy(app)
    (event,) = outbox(app, "pending")
    assert event.enqueued_at is not None  # queued right after the commit
    conn = redis.Redis.from_url(redis_url)
    try:
        job = Job.fetch(job_id(event.event_id), connection=conn, serializer=JSONSerializer)
        assert job.id == f"acp-evt-{event.event_id}"
        assert (job.func_name, job.args, job.kwargs) == (
            "flask_acp.webhooks.jobs.deliver_order_event", [event.event_id], {})
        # no RQ Retry: the outbox alone schedules retries (test_rq_retries_5xx_on_the_outbox_schedule)
        assert (job.retries_left, job.retry_intervals) == (None, None)
        assert (job.result_ttl, job.failure_ttl, job.timeout) == (3600, 30 * 86400, 64)
        raw = zlib.decompress(t.cast(bytes, conn.hget(job.key, "data")))
        assert json.loads(raw)  # JSON, not pickle; and no secret, URL or payload in Redis
        assert SECRET.encode() not in raw
        assert receiver.url.encode() not in raw
        # enqueueing again is a no-op while the job waits
        assert state.webhooks.queue.enqueue(event.event_id) == "already_queued"
        assert rq_queue(app, conn).count == 1
    finally:
        conn.close()
    drain(app, lambda: len(receiver.delivered) == 1)
    check_event(receiver.delivered[0], "order_create")
    state.orders.ship(done["order"]["id"], carrier="UPS", tracking_number="1Z999")
    drain(app, lambda: len(receiver.delivered) == 2)
    update = check_event(receiver.delivered[1], "order_update")
    assert update["data"]["fulfillments"][0]["carrier"] == "UPS"
    assert [r.status for r in outbox(app)] == ["delivered", "delivered"]
    assert len(receiver.log) == 2


def test_rq_retries_5xx_on_the_outbox_schedule(make_app: MakeApp, receiver: Receiver,
                                                redis_url: str) -> None:
    app = make_app(receiver.url, ACP_REDIS_URL=redis_url)
    receiver.plan = [500, 502]
    buy(app)
    drain(app, lambda: len(receiver.delivered) == 1)
    assert [d.status for d in receiver.log] == [500, 502, 200]
    assert len({d.request_id for d in receiver.log}) == 1
    (row,) = outbox(app)
    assert (row.status, row.attempts, row.last_status) == ("delivered", 3, 200)
    # each retry waited its ACP_WEBHOOK_RETRY_INTERVALS entry (1 s), and RQ scheduled nothing
    first, second, third = (d.signed_at for d in receiver.log)
    assert second - first >= 1
    assert third - second >= 1
    conn = redis.Redis.from_url(redis_url)
    try:
        assert rq_queue(app, conn).scheduled_job_registry.get_job_ids() == []
    finally:
        conn.close()


def test_rq_gives_up_after_the_last_interval_then_replay_delivers(
        make_app: MakeApp, receiver: Receiver, redis_url: str) -> None:
    app = make_app(receiver.url, ACP_REDIS_URL=redis_url, ACP_WEBHOOK_RETRY_INTERVALS=[1, 1])
    receiver.default_status = 503
    buy(app)
    drain(app, lambda: bool(outbox(app, "failed")))
    (row,) = outbox(app)
    assert (row.status, row.attempts) == ("failed", 3)
    assert row.last_error.startswith("gave up after 3 attempts: HTTP 503")
    assert [d.status for d in receiver.log] == [503, 503, 503]
    conn = redis.Redis.from_url(redis_url)
    try:
        assert rq_queue(app, conn).failed_job_registry.get_job_ids() == [job_id(row.event_id)]
    finally:
        conn.close()
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["acp", "events", "list", "--status", "failed"])
    assert listed.exit_code == 0, listed.output
    assert row.event_id in listed.output
    assert "gave up after 3 attempts" in listed.output
    receiver.default_status = 200
    replayed = runner.invoke(args=["acp", "events", "replay", "--all-failed"])
    assert replayed.exit_code == 0, replayed.output
    assert f"{row.event_id}\tqueued" in replayed.output
    drain(app, lambda: len(receiver.delivered) == 1)
    (row,) = outbox(app)
    assert (row.status, row.attempts) == ("delivered", 1)
    assert runner.invoke(args=["acp", "events", "list", "--status", "failed"]).output.count("\n") == 1


def test_rq_4xx_is_permanent_without_retries(make_app: MakeApp, receiver: Receiver, redis_url: str,
                                            caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(receiver.url, ACP_REDIS_URL=redis_url)
    receiver.default_status = 422
    buy(app)
    (event,) = outbox(app)
    with caplog.at_level(logging.WARNING, logger="flask_acp.webhooks"):
        drain(app, lambda: bool(outbox(app, "failed")))
    (row,) = outbox(app)
    assert (row.status, row.attempts, row.last_status) == ("failed", 1, 422)
    (warning,) = [r.getMessage() for r in caplog.records
                  if r.name == "flask_acp.webhooks" and r.levelno == logging.WARNING]
    assert event.event_id in warning
    assert "422" in warning
    conn = redis.Redis.from_url(redis_url)
    try:
        queue = rq_queue(app, conn)
        assert queue.scheduled_job_registry.get_job_ids() == []
        job = Job.fetch(job_id(event.event_id), connection=conn, serializer=JSONSerializer)
        assert job.get_status() == "finished"
        assert t.cast(dict[str, t.Any], job.return_value())["result"] == "failed"
    finally:
        conn.close()
    drain(app, lambda: True)
    assert len(receiver.log) == 1


def test_rq_key_rotation_signs_with_the_first_secret(make_app: MakeApp, redis_url: str) -> None:
    rotating = Receiver(secrets=[SECRET, OLD_SECRET])  # accepts either during the rotation
    try:
        app = make_app(rotating.url, secrets=(SECRET, OLD_SECRET), ACP_REDIS_URL=redis_url)
        buy(app)
        drain(app, lambda: len(rotating.delivered) == 1)
        delivery = rotating.delivered[0]
    finally:
        rotating.close()
    header = delivery.headers["Merchant-Signature"]
    assert stripe.WebhookSignature.verify_header(delivery.body, header, SECRET, tolerance=300)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(delivery.body, header, OLD_SECRET, tolerance=300)
    assert signing.verify_header(header, delivery.body, [OLD_SECRET, SECRET]) == delivery.signed_at
    with pytest.raises(signing.SignatureError):
        signing.verify_header(header, delivery.body, [OLD_SECRET])
    with pytest.raises(signing.SignatureError, match="verification failed"):
        signing.verify_header(header, delivery.body + b"\n", [SECRET])
    with pytest.raises(signing.SignatureError, match="window"):
        signing.verify_header(header, delivery.body, [SECRET], now=delivery.signed_at + 301)


def test_rq_stale_signature_is_refused_by_the_receiver(make_app: MakeApp, receiver: Receiver,
                                                       redis_url: str) -> None:
    app = make_app(receiver.url, ACP_REDIS_URL=redis_url)
    app.extensions["acp"].webhooks.sender.clock = lambda: time.time() - 301  # a skewed merchant clock
    buy(app)
    drain(app, lambda: bool(outbox(app, "failed")))
    # the receiver refuses every attempt (401: stale signature); 401 is retried, since a
    # skewed clock or a secret being rotated gets fixed, then the event is given up
    statuses = [d.status for d in receiver.log]
    assert statuses == [401] * len(statuses)
    assert len(statuses) > 1
    assert "HTTP 401" in outbox(app)[0].last_error


def test_redis_outage_during_completion_loses_nothing(make_app: MakeApp, receiver: Receiver) -> None:
    server = RedisServer().start()  # a separate server this test can kill
    try:
        app = make_app(receiver.url, ACP_REDIS_URL=server.url)
        server.stop()
        started = time.monotonic()
        done = buy(app)  # still 200 while Redis is down
        assert time.monotonic() - started < 5
        (event,) = outbox(app, "pending")
        assert event.enqueued_at is None
        runner = app.test_cli_runner()
        result = runner.invoke(args=["acp", "sweep"])
        assert result.exit_code != 0
        assert "webhook events not queued" in result.output
        server.start()  # same port, empty: the job was never queued
        result = runner.invoke(args=["acp", "sweep"])
        assert result.exit_code == 0, result.output
        assert "webhooks_queued=1" in result.output
        drain(app, lambda: len(receiver.delivered) == 1)
        assert runner.invoke(args=["acp", "sweep"]).output.endswith("webhooks_queued=0\n")
        result = runner.invoke(args=["acp", "worker", "--burst"])
        assert result.exit_code == 0, result.output
        assert len(receiver.log) == 1
        assert check_event(receiver.log[0], "order_create")["data"]["id"] == done["order"]["id"]
    finally:
        server.stop()


def test_sweeper_requeues_a_job_lost_with_redis(make_app: MakeApp, receiver: Receiver,
                                                redis_url: str) -> None:
    app = make_app(receiver.url, ACP_REDIS_URL=redis_url)
    buy(app)
    (event,) = outbox(app, "pending")
    conn = redis.Redis.from_url(redis_url)
    conn.flushall()  # Redis restarted without persistence: the queued job is gone
    conn.close()
    service = app.extensions["acp"].webhooks
    assert service.sweep() == 0  # handed over less than a minute ago: left alone
    assert service.sweep(now=time.time() + 61) == 1
    drain(app, lambda: len(receiver.delivered) == 1)
    assert len(receiver.log) == 1


# --------------------------------------------------------------------------- a real worker process


def worker_app() -> Flask:
    """App factory for the ``flask acp worker`` subprocess (reads its settings
    from ``ACP_TEST_WORKER_APP``)."""
    spec = json.loads(os.environ["ACP_TEST_WORKER_APP"])
    return build_app(pathlib.Path(spec["tmp"]), **spec["config"])


def test_flask_acp_worker_process_delivers_and_retries(make_app: MakeApp, receiver: Receiver,
                                                       redis_url: str, tmp_path: pathlib.Path) -> None:
    app = make_app(receiver.url, ACP_REDIS_URL=redis_url)
    settings = app.extensions["acp"].settings
    agents = {a.name: {"api_keys": list(a.api_keys), "webhook_url": a.webhook_url,
                       "webhook_secrets": list(a.webhook_secrets)} for a in settings.agents}
    for agent in agents.values():
        if agent["webhook_url"] is None:
            del agent["webhook_url"]
    spec = {"tmp": str(tmp_path / "worker"), "config": {
        "ACP_SQLITE_PATH": settings.sqlite_path, "ACP_AGENTS": agents, "ACP_REDIS_URL": redis_url,
        "ACP_WEBHOOK_RETRY_INTERVALS": [1, 1, 1], "ACP_WEBHOOK_TIMEOUT": 2.0}}
    env = {**os.environ, "ACP_TEST_WORKER_APP": json.dumps(spec), "PYTHONWARNINGS": "ignore"}
    receiver.plan = [500]
    done = buy(app)
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "tests.test_webhooks:worker_app", "acp", "worker",
             "--sweep-interval", "1"], cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            receiver.wait_for(1, timeout=20)
            app.extensions["acp"].orders.ship(done["order"]["id"], carrier="USPS")
            receiver.wait_for(2, timeout=20)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:  # pragma: no cover
                proc.kill()
                proc.wait()
    output = log_path.read_text()
    assert [d.status for d in receiver.log] == [500, 200, 200], output
    assert [check_event(d)["type"] for d in receiver.delivered] == ["order_create", "order_update"]
    assert [r.status for r in outbox(app)] == ["delivered", "delivered"]


def test_rq_job_delivers_a_batch_and_the_batched_events_jobs_send_nothing(
        make_app: MakeApp, receiver: Receiver, redis_url: str) -> None:
    from flask_acp.webhooks.jobs import deliver_order_event

    app = make_app(receiver.url, ACP_REDIS_URL=redis_url)
    for _ in range(4):
        buy(app)
    events = outbox(app, "pending")
    assert len(events) == 4
    conn = redis.Redis.from_url(redis_url)
    try:
        assert rq_queue(app, conn).count == 4  # one job per event, as before
    finally:
        conn.close()
    with app.app_context():
        first = deliver_order_event(events[0].event_id)  # its own event, then the others
        assert (first["result"], first["attempts"]) == ("delivered", 1)
        assert sorted(d.request_id for d in receiver.delivered) == sorted(e.event_id for e in events)
        assert [r.status for r in outbox(app)] == ["delivered"] * 4
        # the jobs of the batched events find them delivered: no second POST
        for event in events[1:]:
            assert deliver_order_event(event.event_id)["result"] == "unchanged"
    drain(app, lambda: True)  # and the queued jobs themselves, run by a real worker
    assert len(receiver.log) == 4
    assert [r.attempts for r in outbox(app)] == [1, 1, 1, 1]


def test_rq_batch_leaves_a_failed_events_retry_to_the_outbox_schedule(
        make_app: MakeApp, receiver: Receiver, redis_url: str) -> None:
    from flask_acp.webhooks.jobs import deliver_order_event

    app = make_app(receiver.url, ACP_REDIS_URL=redis_url, ACP_WEBHOOK_RETRY_INTERVALS=[30, 30])
    state = app.extensions["acp"]
    buy(app)
    buy(app)
    first, second = outbox(app, "pending")
    receiver.plan = [200, 503]  # own event delivered, the batched one refused for now
    with app.app_context():
        assert deliver_order_event(first.event_id)["result"] == "delivered"
        row = state.storage.outbox.get(second.event_id)
        assert (row.status, row.attempts, row.last_status) == ("pending", 1, 503)
        assert row.next_attempt_at >= time.time() + 25
        # its own job does not send before the interval: the outbox says it is not due
        result = deliver_order_event(second.event_id)
        assert (result["result"], result["next_attempt_at"]) == ("not_due", row.next_attempt_at)
    drain(app, lambda: True)  # the queued jobs of both events, run by a real worker: nothing sent
    assert len(receiver.log) == 2
    # the retry is handed to RQ when the outbox says it is due, not before
    assert state.webhooks.sweep() == 0
    assert state.webhooks.sweep(now=row.next_attempt_at) == 1


def test_a_webhook_url_set_later_gets_no_backlog(make_app: MakeApp, receiver: Receiver) -> None:
    """Events made while the agent had no URL are ``skipped`` when a delivery looks at
    them; the URL configured afterwards receives only what happens from then on."""
    before = make_app(None, ACP_WEBHOOK_DELIVERY_THREAD=False)
    old = buy(before)
    assert before.extensions["acp"].webhooks.run_pending() >= 1
    assert {e.status for e in outbox(before)} == {"skipped"}
    before.extensions["acp"].webhooks.close()
    after = make_app(receiver.url, ACP_WEBHOOK_DELIVERY_THREAD=False)  # same store, the URL set now
    new = buy(after)
    after.extensions["acp"].webhooks.run_pending()
    assert [d.event["data"]["checkout_session_id"] for d in receiver.log] == [new["id"]]
    assert old["id"] != new["id"]
