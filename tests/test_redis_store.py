"""The Redis store beyond the storage contract kit: the catalog's stock holds
on Redis (the same answers as the SQLite ledger for any mix of operations,
and the last unit never sold twice by racing processes, on a single server
and on a 3-master Redis Cluster), the app on ``ACP_STORE_URL=redis://``
(and ``redis+cluster://``), the RQ queue on the store's server by default,
releases that wait out a Redis outage, and ``wait_replicas``.

Real ``redis-server`` processes on free loopback ports (``tests/redis_servers.py``).
"""

from __future__ import annotations

import datetime as dt
import pathlib
import tempfile
import time
import typing as t

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings

from flask_acp.catalog import CatalogAdapter
from flask_acp.catalog.stock import StockLedger
from flask_acp.catalog.stock_redis import RedisStockLedger
from flask_acp.errors import AdapterRejectedError
from flask_acp.errors import StorageUnavailableError
from flask_acp.models import CheckoutSession
from flask_acp.models import Order
from flask_acp.models import Status
from flask_acp.store import open_storage
from flask_acp.store.redis import RedisSessions
from flask_acp.testing.storage_contract import make_cart
from flask_acp.testing.storage_contract import make_session
from tests.conftest import ADDRESS
from tests.conftest import Agent
from tests.conftest import build_app
from tests.redis_servers import RedisClusterServers
from tests.redis_servers import RedisServer
from tests.redis_servers import unique_prefix
from tests.test_catalog import SF
from tests.test_catalog import _place_worker
from tests.test_catalog import _quote_worker
from tests.test_catalog import _run
from tests.test_catalog import feed_doc
from tests.test_catalog import request
from tests.test_catalog import store_doc
from tests.test_catalog import write

ON_HAND: dict[str, int | None] = {"a": 5, "b": 2, "c": None}
SESSIONS = [f"cs_{n}" for n in range(4)]


@pytest.fixture(params=["redis", "redis-cluster"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """A fresh store (a new key prefix) on the single server or the cluster."""
    name = "redis_single" if request.param == "redis" else "redis_cluster"
    server: RedisServer | RedisClusterServers = request.getfixturevalue(name)
    return f"{server.url}?key_prefix={unique_prefix()}"


# --------------------------------------------------------------------------- stock


def _order(session_id: str) -> t.Callable[[int], Order]:
    return lambda number: Order(id=f"ord_{session_id}", checkout_session_id=session_id,
                                permalink_url=f"https://shop.test/{number}", order_number=f"#{number}")


_session = st.sampled_from(SESSIONS)
_ops = st.one_of(
    st.tuples(st.just("reserve"), _session,
              st.fixed_dictionaries({k: st.integers(0, 4) for k in ON_HAND}), st.integers(1, 90)),
    st.tuples(st.just("release"), _session),
    st.tuples(st.just("place"), _session, st.fixed_dictionaries({k: st.integers(0, 3) for k in ON_HAND})),
    st.tuples(st.just("wait"), st.integers(0, 60)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                               HealthCheck.function_scoped_fixture])
@given(st.lists(_ops, min_size=1, max_size=12))
def test_the_redis_ledger_answers_as_the_sqlite_ledger(redis_single: RedisServer,
                                                       ops: list[tuple[t.Any, ...]]) -> None:
    """Any mix of reserve / release / place / expiry: the same availabilities
    seen, the same holds, counters, sales and orders as the SQLite ledger."""
    with tempfile.TemporaryDirectory() as directory:
        sqlite = StockLedger(str(pathlib.Path(directory) / "stock.sqlite3"))
        redis = RedisStockLedger(f"{redis_single.url}?key_prefix={unique_prefix()}")
        now = 1000.0
        try:
            for op in ops:
                outcomes = []
                for ledger in (sqlite, redis):
                    if op[0] == "reserve":
                        _, session_id, wanted, ttl = op
                        seen: list[dict[str, int | None]] = []

                        def decide(available: dict[str, int | None], wanted: dict[str, int] = wanted,
                                   seen: list[dict[str, int | None]] = seen) -> dict[str, int]:
                            seen.append(dict(available))
                            return {i: q if available[i] is None else min(q, t.cast(int, available[i]))
                                    for i, q in wanted.items()}

                        result = ledger.reserve(session_id, ON_HAND, decide, expires_at=now + ttl, now=now)
                        outcomes.append((result, seen))
                    elif op[0] == "release":
                        ledger.release(op[1])
                    elif op[0] == "place":
                        wanted = {i: q for i, q in op[2].items() if q}
                        if not wanted:
                            continue
                        try:
                            outcomes.append(ledger.place(op[1], wanted, ON_HAND, _order(op[1]), now=now))
                        except AdapterRejectedError as exc:
                            outcomes.append(str(exc))
                    else:
                        now += op[1]
                if outcomes:
                    assert outcomes[0] == outcomes[1], op
                for ledger in (sqlite, redis):  # purge what expired (SQLite undoes a purge with a refusal)
                    ledger.reserve("cs_none", {}, lambda available: {}, expires_at=now, now=now)
                assert sqlite.held_counts() == redis.held_counts(), op
                for session_id in SESSIONS:
                    assert sqlite.held(session_id) == redis.held(session_id)
                    assert sqlite.order_for(session_id) == redis.order_for(session_id)
                for item_id in ON_HAND:
                    assert sqlite.sold(item_id) == redis.sold(item_id)
        finally:
            sqlite.close()


def test_processes_racing_for_the_last_units_on_redis(tmp_path: pathlib.Path, redis_url: str) -> None:
    feed = str(write(tmp_path / "feed.json", feed_doc(a=1000)))
    store = str(write(tmp_path / "store.json", store_doc(stock={"a": 2})))
    outcomes = _run(_quote_worker, [(feed, store, redis_url, f"cs_{n}", 1) for n in range(6)])
    assert len([session for session, won in outcomes if won]) == 2
    ledger = CatalogAdapter(feed, store, redis_url).ledger
    assert isinstance(ledger, RedisStockLedger)
    assert sum(sum(ledger.held(f"cs_{n}").values()) for n in range(6)) == 2


def test_processes_racing_to_place_orders_for_the_last_unit_on_redis(tmp_path: pathlib.Path,
                                                                     redis_url: str) -> None:
    feed = str(write(tmp_path / "feed.json", feed_doc(a=1000)))
    store = str(write(tmp_path / "store.json", store_doc(stock={"a": 1})))
    outcomes = _run(_place_worker, [(feed, store, redis_url, f"cs_{n}") for n in range(4)])
    assert len([order for _session, order in outcomes if order is not None]) == 1
    assert CatalogAdapter(feed, store, redis_url).ledger.sold("a") == 1


def test_order_numbers_follow_each_other_across_processes(tmp_path: pathlib.Path, redis_url: str) -> None:
    feed = str(write(tmp_path / "feed.json", feed_doc(a=1000)))
    store = str(write(tmp_path / "store.json", store_doc(stock={"a": 10})))
    outcomes = _run(_place_worker, [(feed, store, redis_url, f"cs_{n}") for n in range(5)])
    adapter = CatalogAdapter(feed, store, redis_url)
    numbers = sorted(t.cast(Order, adapter.ledger.order_for(session)).order_number for session, _ in outcomes)
    assert numbers == [f"#{n}" for n in range(1001, 1006)]  # no gap, no duplicate


# --------------------------------------------------------------------------- the app on Redis


def test_the_app_keeps_everything_in_redis(tmp_path: pathlib.Path, redis_url: str) -> None:
    app = build_app(tmp_path, ACP_STORE_URL=redis_url, ACP_SQLITE_PATH=None)
    state = app.extensions["acp"]
    assert isinstance(state.storage.sessions, RedisSessions)
    assert isinstance(state.adapter.ledger, RedisStockLedger)
    agent = Agent(app.test_client())
    session = agent.ready_session([{"id": "item_123", "quantity": 2}])
    key = "complete-1"
    first = agent.complete(session["id"], key=key)
    assert first.status_code == 200, first.get_json()
    replay = agent.complete(session["id"], key=key)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_data() == first.get_data()
    order = first.get_json()["order"]
    assert state.storage.sessions.session_id_for_order(order["id"]) == session["id"]
    assert state.adapter.ledger.sold("item_123") == 2
    [event] = state.storage.outbox.entries(statuses=["pending", "delivered", "skipped"])
    assert (event.type, event.order_id) == ("order_create", order["id"])
    assert not list(tmp_path.rglob("*.sqlite3"))  # nothing on the local disk


def test_the_queue_uses_the_stores_redis_unless_told_otherwise(tmp_path: pathlib.Path,
                                                               redis_single: RedisServer,
                                                               redis_cluster: RedisClusterServers) -> None:
    url = f"{redis_single.url}?key_prefix={unique_prefix()}"
    app = build_app(tmp_path, ACP_STORE_URL=url, ACP_REDIS_URL=None)
    assert app.config["ACP_REDIS_URL"] == url
    assert app.extensions["acp"].webhooks.mode == "rq"
    app.extensions["acp"].webhooks.close()
    thread = build_app(tmp_path, ACP_STORE_URL=url, ACP_REDIS_URL="",
                       ACP_AGENTS={"a": {"api_keys": ["k" * 20], "webhook_url": "http://127.0.0.1:9/h",
                                         "webhook_secrets": ["s" * 20]}})
    assert thread.extensions["acp"].webhooks.mode == "thread"
    cluster = build_app(tmp_path, ACP_STORE_URL=f"{redis_cluster.url}?key_prefix={unique_prefix()}",
                        ACP_REDIS_URL=None)
    assert cluster.config["ACP_REDIS_URL"] is None  # RQ cannot use a Cluster
    assert cluster.extensions["acp"].webhooks.mode == "manual"
    with pytest.raises(RuntimeError, match="ACP_REDIS_URL: RQ cannot use a Redis Cluster"):
        build_app(tmp_path, ACP_REDIS_URL=redis_cluster.url)


# --------------------------------------------------------------------------- outages


def test_a_lock_released_while_redis_is_down_is_freed_when_it_is_back() -> None:
    """The release of a lock fails (Redis restarting): it is retried in the
    background, so the next request gets the lock as soon as Redis is back
    instead of waiting out the lease."""
    with RedisServer(persistence="aof") as server:
        storage = open_storage(server.url + "?socket_timeout=1&connect_timeout=0.5")
        holding = storage.locks.lock("session:cs_1", lease=600, wait=0)
        holding.__enter__()
        server.kill()
        holding.__exit__(None, None, None)  # no error: deferred
        server.start()
        started = time.monotonic()
        with storage.locks.lock("session:cs_1", lease=30, wait=10):
            pass
        assert time.monotonic() - started < 5


def test_an_idempotency_claim_released_while_redis_is_down_is_freed_when_it_is_back() -> None:
    with RedisServer(persistence="aof") as server:
        storage = open_storage(server.url + "?socket_timeout=1&connect_timeout=0.5")
        assert storage.idempotency.begin("s", "k", "fp", now=time.time(), lease=120,
                                         retention=86400).state == "new"
        server.kill()
        storage.idempotency.release("s", "k")  # no error: deferred
        with pytest.raises(StorageUnavailableError):
            storage.idempotency.begin("s", "k", "fp", now=time.time(), lease=120, retention=86400)
        server.start()
        deadline = time.monotonic() + 10
        while storage.idempotency.begin("s", "k", "fp", now=time.time(), lease=120,
                                        retention=86400).state != "new":
            assert time.monotonic() < deadline, "the claim was never released"
            time.sleep(0.2)


def test_wait_replicas_makes_a_write_wait_for_a_replica() -> None:
    with RedisServer() as master:
        url = f"{master.url}?wait_replicas=1&wait_timeout=0.3&key_prefix={unique_prefix()}"
        storage = open_storage(url)
        with pytest.raises(StorageUnavailableError):  # no replica acknowledges
            storage.sessions.create(make_session())
        with RedisServer(args=["--replicaof", "127.0.0.1", str(master.port)]) as replica:
            deadline = time.monotonic() + 10
            while replica.client().info("replication").get("master_link_status") != "up":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            # the replica acknowledges: a write waits for it (a roomier 4 s: a loaded machine)
            patient = url.replace("wait_timeout=0.3", "wait_timeout=4")  # below socket_timeout (5 s)
            session = make_session()
            open_storage(patient).sessions.create(session)
            assert open_storage(url).sessions.get(session.id) == session


def test_the_app_answers_503_with_retry_after_while_redis_is_down(tmp_path: pathlib.Path) -> None:
    with RedisServer(persistence="aof") as server:
        app = build_app(tmp_path, ACP_STORE_URL=f"{server.url}?socket_timeout=1&connect_timeout=0.5",
                        ACP_REDIS_URL="")
        agent = Agent(app.test_client())
        session = agent.ready_session()
        server.kill()
        for response in (agent.create(), agent.complete(session["id"]),
                         agent.client.get(f"/checkout_sessions/{session['id']}", headers=agent.headers())):
            assert response.status_code == 503, response.get_json()
            assert response.get_json()["code"] == "storage_unavailable"
            assert int(response.headers["Retry-After"]) > 0
        server.start()
        assert agent.complete(session["id"]).get_json()["status"] == "completed"


def test_hold_expiry_uses_the_quote_clock(tmp_path: pathlib.Path, redis_url: str) -> None:
    """Holds expire at the session's ``expires_at`` on Redis as on SQLite."""
    now = dt.datetime.now(dt.timezone.utc)
    feed = write(tmp_path / "feed.json", feed_doc(a=1000))
    store = write(tmp_path / "store.json", store_doc(stock={"a": 1}))
    adapter = CatalogAdapter(feed, store, redis_url, clock=lambda: now)
    assert adapter.quote(request(("a", 1), address=SF, expires_at=now + dt.timedelta(seconds=5))
                         ).lines[0].purchasable
    assert not adapter.quote(request(("a", 1), session="cs_2", address=SF,
                                     expires_at=now + dt.timedelta(hours=1))).lines[0].purchasable
    later = CatalogAdapter(feed, store, redis_url, clock=lambda: now + dt.timedelta(seconds=6))
    assert later.quote(request(("a", 1), session="cs_2", address=SF,
                               expires_at=now + dt.timedelta(hours=1))).lines[0].purchasable


def test_example_app_honours_a_redis_store_url(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path,
                                               redis_single: RedisServer) -> None:
    """``ACP_STORE_URL=redis://...`` moves the example's state to Redis (and its
    order webhooks to RQ on the same Redis); without it, nothing needs Redis."""
    url = f"{redis_single.url}?key_prefix={unique_prefix()}"
    monkeypatch.setenv("ACP_STORE_URL", url)
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_example_not_used_0000")  # no fake Stripe server
    monkeypatch.setenv("STRIPE_ACCOUNT_ID", "acct_example")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(pathlib.Path(__file__).resolve().parent.parent))
    import example_app

    app = example_app.create_app({"ACP_WEBHOOK_DELIVERY_THREAD": False})
    state = app.extensions["acp"]
    assert isinstance(state.storage.sessions, RedisSessions)
    assert isinstance(state.adapter.ledger, RedisStockLedger)
    assert (app.config["ACP_REDIS_URL"], state.webhooks.mode) == (url, "rq")
    state.webhooks.close()
    monkeypatch.delenv("ACP_STORE_URL")
    monkeypatch.setenv("ACP_SQLITE_PATH", str(tmp_path / "example.sqlite3"))
    plain = example_app.create_app({"ACP_WEBHOOK_DELIVERY_THREAD": False})
    assert plain.config["ACP_REDIS_URL"] is None
    assert plain.config["ACP_STORE_URL"] == f"sqlite://{tmp_path / 'example.sqlite3'}"


# --------------------------------------------------------------------------- migration


def test_migrate_store_copies_a_sqlite_store_into_redis(tmp_path: pathlib.Path, redis_url: str) -> None:
    """``flask acp migrate-store --to URL`` on the SQLite app: the Redis app
    then replays its Idempotency-Keys, manages its orders, delivers its
    pending events, keeps the open session's hold and numbers orders on."""
    old = build_app(tmp_path, ACP_WEBHOOK_DELIVERY_THREAD=False)
    agent = Agent(old.test_client())
    done = agent.ready_session([{"id": "item_456", "quantity": 2}])
    first = agent.complete(done["id"], key="pay-1")
    assert first.status_code == 200
    order_id = first.get_json()["order"]["id"]
    held = agent.ready_session([{"id": "item_456", "quantity": 3}])  # the last 3 units, held
    old.extensions["acp"].storage.inbound.record("stripe", "evt_seen")
    cart = make_cart()
    old.extensions["acp"].storage.carts.put(cart)
    old.extensions["acp"].storage.carts.put(make_cart(expires_in=-1))  # expired: not copied

    result = old.test_cli_runner().invoke(args=["acp", "migrate-store", "--to", redis_url])
    assert result.exit_code == 0, result.output
    assert "sessions=2" in result.output
    assert "outbox_events=1" in result.output
    assert "orders=1" in result.output
    assert "carts=1" in result.output
    again = old.test_cli_runner().invoke(args=["acp", "migrate-store", "--to", redis_url])
    assert again.exit_code == 1
    assert "already holds keys" in again.output

    new = build_app(tmp_path / "new", ACP_STORE_URL=redis_url, ACP_REDIS_URL="",
                    ACP_WEBHOOK_DELIVERY_THREAD=False)
    moved = Agent(new.test_client())
    replay = moved.complete(done["id"], key="pay-1")
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_data() == first.get_data()
    state = new.extensions["acp"]
    assert state.storage.inbound.seen("stripe", "evt_seen")
    assert state.storage.carts.get(cart.id, now=time.time()) == cart
    assert [e.order_id for e in state.storage.outbox.entries(statuses=["pending"])] == [order_id]
    shipped = new.test_cli_runner().invoke(args=["acp", "orders", "ship", order_id, "--carrier", "UPS"])
    assert shipped.exit_code == 0, shipped.output
    assert len(state.storage.outbox.entries(statuses=["pending"])) == 2  # order_update queued
    other = moved.create([{"id": "item_456", "quantity": 1}], fulfillment_details={"address": ADDRESS})
    assert other.get_json()["status"] == "not_ready_for_payment"  # the 3 units are still held
    finished = moved.complete(held["id"])
    assert finished.get_json()["order"]["order_number"] == "#1002"  # numbering goes on
    assert state.adapter.ledger.sold("item_456") == 5


def test_rate_limits_are_counted_in_the_stores_redis_across_instances(tmp_path: pathlib.Path,
                                                                      redis_url: str) -> None:
    """Two app instances on one Redis store share the rate-limit counters: the
    limit holds for the agent, not per instance."""
    first, second = (build_app(tmp_path / name, ACP_STORE_URL=redis_url, ACP_REDIS_URL="",
                               ACP_RATE_LIMIT_PER_AGENT="3/minute", ACP_RATE_LIMIT_PER_IP="",
                               ACP_RATE_LIMIT_COMPLETE_PER_AGENT="", ACP_RATE_LIMIT_COMPLETE_PER_SESSION="")
                     for name in ("one", "two"))
    a, b = Agent(first.test_client()), Agent(second.test_client())
    assert [a.create().status_code, b.create().status_code, a.create().status_code] == [201, 201, 201]
    refused = b.create()
    assert refused.status_code == 429
    assert refused.get_json()["code"] == "rate_limit_exceeded"


def test_migrate_store_reads_any_sqlite_path(tmp_path: pathlib.Path, redis_url: str) -> None:
    """The SQLite file's path is plain text in the URI migrate-store opens:
    '?', '#', '%' and a doubled leading slash neither break it nor trace back."""
    odd = tmp_path / "odd ?#% dir"
    odd.mkdir()
    old = build_app(tmp_path, ACP_SQLITE_PATH=str(odd / "acp?#%.sqlite3"), ACP_WEBHOOK_DELIVERY_THREAD=False)
    agent = Agent(old.test_client())
    agent.ready_session()
    result = old.test_cli_runner().invoke(args=["acp", "migrate-store", "--to", redis_url])
    assert result.exit_code == 0, result.output
    assert "sessions=1" in result.output
    doubled = build_app(tmp_path / "d", ACP_SQLITE_PATH="/" + str(tmp_path / "d.sqlite3"),
                        ACP_WEBHOOK_DELIVERY_THREAD=False)
    target = redis_url + "?key_prefix=d:"
    result = doubled.test_cli_runner().invoke(args=["acp", "migrate-store", "--to", target])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output


def test_erasure_leaves_a_session_saved_meanwhile_for_the_next_sweep(redis_url: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A session saved between the erasure's read and its write is not
    overwritten (the write compares the revision), and the shard's watermark
    stays below it, so the next call erases it."""
    storage = open_storage(redis_url)
    sessions = storage.sessions
    assert isinstance(sessions, RedisSessions)
    now = dt.datetime.now(dt.timezone.utc)
    old = now - dt.timedelta(days=40)
    session = make_session(now=old).replace(status=Status.CANCELED, buyer={"email": "ada@example.com"})
    sessions.create(session)
    read = sessions.get

    def read_then_saved_by_someone_else(session_id: str) -> CheckoutSession | None:
        found = read(session_id)
        assert found is not None
        sessions.save(found.replace(order_notes="changed meanwhile"))
        return found

    monkeypatch.setattr(sessions, "get", read_then_saved_by_someone_else)
    cutoff = (now - dt.timedelta(days=30)).timestamp()
    assert sessions.erase_personal_data(updated_before=cutoff, now=now.timestamp()) == 0
    monkeypatch.setattr(sessions, "get", read)
    stored = sessions.get(session.id)
    assert stored is not None
    assert stored.order_notes == "changed meanwhile"  # the other save stands
    assert stored.buyer == {"email": "ada@example.com"}
    assert sessions.erase_personal_data(updated_before=cutoff, now=now.timestamp()) == 1
    stored = sessions.get(session.id)
    assert stored is not None
    assert (stored.buyer, stored.order_notes) == (None, None)
