"""Order webhook delivery: one RQ worker process vs a bare ``requests`` loop.

    python benchmarks/bench_webhooks.py [--events 300] [--latency-events 100] [--fork]

In one run, on 127.0.0.1 only (``trust_env`` off, no proxy):

1. Starts a private ``redis-server`` (free port, no persistence) and a
   receiver in its own process (``http.server``, threaded, HTTP/1.1 keep-alive) that
   only records each request's ``Request-Id`` and arrival time (unix seconds).
2. Builds the app (SQLite store in a temp folder, catalog adapter on
   benchmarks/data, ``FakePaymentProcessor``, ``ACP_REDIS_URL`` set) and makes
   ``--events`` purchases through the Flask test client with no worker
   running: each completion commits an ``order_create`` outbox row and
   enqueues its RQ job.
3. **Bare loop**: the same bodies (each event rendered and encoded as the
   worker would send it) POSTed back to back with one ``requests.Session``.
4. **Worker throughput**: ``flask acp worker --burst`` in a subprocess (one
   worker process, SimpleWorker by default, ``--fork`` for RQ's forking
   Worker) drains the queue; rate = deliveries / (last arrival - first
   arrival), so process start-up is not counted (printed separately).
5. **Latency**: a long-running ``flask acp worker`` idles on the queue while
   ``--latency-events`` more purchases are made, ``--pace`` seconds apart
   (below the worker's capacity, so no backlog builds up); for each event,
   delay = arrival at the receiver - the event's ``created_at`` (the commit of
   the state change). p50 / p99 in milliseconds.
6. **RQ floor**: the same worker class and job options running a no-op job
   (``os.getpid``) in this process: what RQ itself costs per job, i.e. the
   best rate any job function could reach in one worker process.

Target: worker rate >= 0.3 x bare-loop rate. Every phase is bounded in time;
child processes are always stopped and temporary files removed. The last
line printed is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
import uuid

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from flask import Flask  # noqa: E402

from flask_acp import ACP  # noqa: E402
from flask_acp.testing import FakePaymentProcessor  # noqa: E402
from flask_acp.testing import acp_headers  # noqa: E402
from flask_acp.versions import VERSIONS  # noqa: E402
from flask_acp.webhooks.delivery import encode_body  # noqa: E402

API_KEY = "bench-agent-key-0123456789abcdef"
SECRET = "whsec_bench_secret_0123456789"  # noqa: S105 - a local test secret
ADDRESS = {"name": "Ada Lovelace", "line_one": "1 Main St", "city": "San Francisco",
           "state": "CA", "country": "US", "postal_code": "94131"}
TARGET = 0.3
ENV = "BENCH_WEBHOOKS_CONFIG"


# --------------------------------------------------------------------------- receiver process


def serve_receiver(port_file: str, keep_alive: bool = True) -> None:
    """Receiver process: POST records (Request-Id, arrival time) and answers 200
    on a kept-alive HTTP/1.1 connection; GET returns the records as JSON."""
    import http.server

    receipts: dict[str, float] = {}
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like a real agent endpoint
        wbufsize = 65536  # headers and body leave in one write (flushed per response)
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                receipts[self.headers.get("Request-Id", "?")] = time.time()
            self._answer(b'{"received":true}')

        def do_GET(self) -> None:
            with lock:
                body = json.dumps(receipts).encode()
            self._answer(body)

        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if not keep_alive:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: t.Any) -> None:
            pass  # no access log: the receiver should cost both loops as little as possible

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever(poll_interval=0.05)


# --------------------------------------------------------------------------- the app


def bench_app() -> Flask:
    """App factory for the worker subprocesses (settings from ``BENCH_WEBHOOKS_CONFIG``)."""
    spec = json.loads(os.environ[ENV])
    app = Flask(__name__, instance_path=spec["instance"])
    app.config.update(
        TESTING=True,  # plain-http webhook URL on loopback
        ACP_AGENTS={"bench": {"api_keys": [API_KEY], "webhook_url": spec["receiver"],
                              "webhook_secrets": [SECRET]}},
        ACP_SQLITE_PATH=spec["sqlite"],
        ACP_CATALOG_FILE=os.path.join(HERE, "data", "feed.json"),
        ACP_STORE_FILE=os.path.join(HERE, "data", "store.json"),
        ACP_LINKS=[{"type": "terms_of_use", "url": "https://shop.example/terms"}],
        ACP_REDIS_URL=spec["redis"],
        ACP_WEBHOOK_QUEUE="bench-webhooks",
    )
    ACP(app, payment_processor=FakePaymentProcessor(os.path.join(spec["instance"], "ledger.sqlite3")))
    return app


def purchase(client: t.Any, n: int) -> None:
    body = {"currency": "usd", "line_items": [{"id": f"bench_{n % 63 + 1:02d}"}], "capabilities": {},
            "fulfillment_details": {"address": ADDRESS}}
    created = client.post("/checkout_sessions", data=json.dumps(body),
                          headers=acp_headers(API_KEY, idempotency_key=str(uuid.uuid4())))
    if created.status_code != 201:
        raise SystemExit(f"create failed: {created.status_code} {created.get_data(as_text=True)[:300]}")
    session = created.get_json()
    complete = {"payment_data": {"handler_id": "card_tokenized", "instrument": {
        "type": "card", "credential": {"type": "spt", "token": f"spt_{n}"}}}}
    done = client.post(f"/checkout_sessions/{session['id']}/complete", data=json.dumps(complete),
                       headers=acp_headers(API_KEY, idempotency_key=str(uuid.uuid4())))
    if done.status_code != 200:
        raise SystemExit(f"complete failed: {done.status_code} {done.get_data(as_text=True)[:300]}")


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: t.Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 10) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=300, help="events for the throughput phase")
    parser.add_argument("--latency-events", type=int, default=100, help="events for the latency phase")
    parser.add_argument("--pace", type=float, default=0.02,
                        help="seconds between purchases in the latency phase")
    parser.add_argument("--fork", action="store_true", help="RQ's forking Worker instead of SimpleWorker")
    parser.add_argument("--log-level", default="INFO", help="worker log level (its log goes to a file)")
    parser.add_argument("--no-keepalive", action="store_true",
                        help="the receiver closes the connection after each response")
    parser.add_argument("--serve-receiver", metavar="PORT_FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_receiver:
        serve_receiver(args.serve_receiver, keep_alive=not args.no_keepalive)
        return
    if not 10 <= args.events <= 5000 or not 10 <= args.latency_events <= 2000:
        raise SystemExit("--events must be 10..5000 and --latency-events 10..2000")
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found")
    tmp = tempfile.mkdtemp(prefix="acp-bench-webhooks-")
    procs: list[subprocess.Popen[bytes]] = []
    http = requests.Session()
    http.trust_env = False
    try:
        redis_port = free_port()
        procs.append(subprocess.Popen(
            [binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        port_file = os.path.join(tmp, "receiver.port")
        procs.append(subprocess.Popen([sys.executable, __file__, "--serve-receiver", port_file]
                                      + (["--no-keepalive"] if args.no_keepalive else [])))
        wait_for(lambda: os.path.exists(port_file), 10, "the receiver")
        with open(port_file) as f:
            base = f"http://127.0.0.1:{f.read()}"
        receiver_url = f"{base}/agentic_checkout/webhooks/order_events"
        spec = {"instance": os.path.join(tmp, "instance"), "sqlite": os.path.join(tmp, "acp.sqlite3"),
                "redis": f"redis://127.0.0.1:{redis_port}/0", "receiver": receiver_url}
        os.makedirs(spec["instance"])
        os.environ[ENV] = json.dumps(spec)
        app = bench_app()
        state = app.extensions["acp"]
        wait_for(lambda: _ping(spec["redis"]), 10, "redis-server")

        def receipts() -> dict[str, float]:
            return t.cast(dict[str, float], http.get(f"{base}/receipts", timeout=10).json())

        # -- events, queued with no worker running ------------------------------
        client = app.test_client()
        started = time.perf_counter()
        for n in range(args.events):
            purchase(client, n)
        make_s = time.perf_counter() - started
        events = state.storage.outbox.entries(statuses=["pending"], limit=args.events + 10)
        assert len(events) == args.events, len(events)
        assert state.webhooks.queue.queue.count == args.events

        # -- bare loop ----------------------------------------------------------
        bodies = []
        for e in events:
            session = state.storage.sessions.get(e.session_id)
            if session is None or session.order is None:
                raise SystemExit(f"no order for {e.event_id}")
            bodies.append(encode_body(VERSIONS[session.api_version].render_event(e.type, session.order)))
        http.post(receiver_url, data=b"{}", headers={"Request-Id": "warmup"}, timeout=10)
        started = time.perf_counter()
        for i, body in enumerate(bodies):
            response = http.post(receiver_url, data=body, timeout=10, allow_redirects=False,
                                 headers={"Content-Type": "application/json", "Request-Id": f"bare-{i}"})
            response.raise_for_status()
        bare_s = time.perf_counter() - started
        bare_rate = len(bodies) / bare_s

        # -- one worker process, burst ------------------------------------------
        worker_cmd = [sys.executable, "-m", "flask", "--app", "benchmarks.bench_webhooks:bench_app", "acp",
                      "worker", "--log-level", args.log_level] + (["--fork"] if args.fork else [])
        log = open(os.path.join(tmp, "worker.log"), "wb")  # closed in finally
        try:
            started = time.perf_counter()
            burst = subprocess.Popen(worker_cmd + ["--burst"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
            procs.append(burst)
            burst.wait(300)
            burst_wall = time.perf_counter() - started
            if burst.returncode != 0:
                raise SystemExit(f"worker exited with {burst.returncode}")
            got = receipts()
            arrivals = sorted(got[e.event_id] for e in events if e.event_id in got)
            if len(arrivals) != len(events):
                raise SystemExit(f"{len(arrivals)} of {len(events)} events delivered")
            worker_rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
            undelivered = state.storage.outbox.entries(statuses=["pending", "failed"], limit=10)
            if undelivered:
                raise SystemExit(f"outbox not drained: {undelivered[:3]}")

            # -- latency with an idle long-running worker -------------------------
            long_running = subprocess.Popen(worker_cmd + ["--sweep-interval", "30"], cwd=REPO, stdout=log,
                                            stderr=subprocess.STDOUT)
            procs.append(long_running)
            purchase(client, 10_000)  # warm-up: wait until the worker delivers it
            wait_for(lambda: len(receipts()) >= len(events) + len(bodies) + 2, 30, "the warm-up delivery")
            for n in range(args.latency_events):
                purchase(client, 20_000 + n)
                time.sleep(args.pace)
            wait_for(lambda: len(receipts()) >= len(events) + len(bodies) + 2 + args.latency_events, 60,
                     "the latency-phase deliveries")
            stop(long_running)
        finally:
            log.close()
        floor_rate = rq_floor(spec["redis"], len(events))
        got = receipts()
        delays = []
        for e in state.storage.outbox.entries(statuses=["delivered"], limit=100_000):
            if e.event_id not in {x.event_id for x in events} and e.event_id in got:
                delays.append((got[e.event_id] - e.created_at) * 1000)
        delays = delays[1:]  # the warm-up
        results = {
            "events": len(events),
            "worker_class": "Worker (fork)" if args.fork else "SimpleWorker",
            "bare_loop_events_per_s": round(bare_rate, 1),
            "worker_events_per_s": round(worker_rate, 1),
            "ratio_worker_to_bare": round(worker_rate / bare_rate, 3),
            "target_ratio": TARGET,
            "meets_target": worker_rate / bare_rate >= TARGET,
            "worker_burst_wall_s_incl_startup": round(burst_wall, 2),
            "rq_noop_jobs_per_s": round(floor_rate, 1),
            "ratio_rq_noop_to_bare": round(floor_rate / bare_rate, 3),
            "receiver_keep_alive": not args.no_keepalive,
            "latency_events": len(delays),
            "delay_p50_ms": round(statistics.median(delays), 1),
            "delay_p99_ms": round(percentile(delays, 0.99), 1),
            "delay_max_ms": round(max(delays), 1),
            "purchases_per_s_in_process": round(args.events / make_s, 1),
        }
        print(f"events: {len(events)} order_create webhooks; receiver in its own process, "
              f"{'closing each connection' if args.no_keepalive else 'HTTP/1.1 keep-alive'}")
        print(f"bare requests loop : {bare_rate:8.1f} events/s")
        print(f"one RQ worker      : {worker_rate:8.1f} events/s  ({results['worker_class']}; "
              f"{burst_wall:.2f} s wall incl. start-up)")
        print(f"ratio worker/bare  : {worker_rate / bare_rate:8.3f}  (target >= {TARGET}: "
              f"{'met' if results['meets_target'] else 'NOT met'})")
        print(f"RQ floor (no-op job): {floor_rate:8.1f} jobs/s  (ratio to bare {floor_rate / bare_rate:.3f}: "
              f"the most one RQ worker process can do here)")
        print(f"state change -> delivery, idle worker, {len(delays)} events: "
              f"p50 {results['delay_p50_ms']} ms, p99 {results['delay_p99_ms']} ms, "
              f"max {results['delay_max_ms']} ms")
        print(json.dumps(results))
    finally:
        http.close()
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def rq_floor(url: str, n: int) -> float:
    """Jobs/s of the same worker class and job options running a no-op job
    (``os.getpid``): RQ's own cost per job, in this process."""
    import redis
    from rq import Queue
    from rq.serializers import JSONSerializer
    from rq.timeouts import UnixSignalDeathPenalty

    from flask_acp.webhooks.queue import FAILURE_TTL
    from flask_acp.webhooks.queue import RESULT_TTL
    from flask_acp.webhooks.worker import DeliveryWorker

    conn = redis.Redis.from_url(url)
    try:
        queue = Queue("bench-noop", connection=conn, serializer=JSONSerializer)
        for i in range(n):
            queue.enqueue_call("os.getpid", job_id=f"noop-{i}", unique=True, timeout=80,
                               result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL)
        worker = DeliveryWorker([queue], connection=conn, serializer=JSONSerializer)
        worker.death_penalty_class = UnixSignalDeathPenalty  # as run_worker does on a main thread
        started = time.perf_counter()
        worker.work(burst=True, logging_level="WARNING")
        return n / (time.perf_counter() - started)
    finally:
        conn.close()


def _ping(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
    finally:
        client.close()


if __name__ == "__main__":
    main()
