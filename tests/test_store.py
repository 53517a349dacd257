"""Storage selection: ``ACP_STORE_URL`` / ``ACP_SQLITE_PATH`` and :func:`flask_acp.store.open_storage`."""

from __future__ import annotations

import pathlib
import sqlite3
import typing as t

import pytest
from redis.crc import key_slot

from flask_acp.store import open_storage
from flask_acp.store import parse_store_url
from flask_acp.store._redis import SHARD_TAGS
from flask_acp.store._redis import limits_url
from flask_acp.store._redis import parse_redis_url
from flask_acp.store._redis import shard_of
from flask_acp.store.sqlite import SQLiteSessions
from tests.conftest import build_app


def test_store_url_forms(tmp_path: pathlib.Path) -> None:
    assert parse_store_url("sqlite:///var/lib/acp.sqlite3") == ("sqlite", "/var/lib/acp.sqlite3")
    assert parse_store_url("sqlite:data/acp.sqlite3", base_dir="/srv/instance") == (
        "sqlite", "/srv/instance/data/acp.sqlite3")
    assert parse_store_url("SQLITE:///x.db") == ("sqlite", "/x.db")
    assert parse_store_url("redis://localhost:6379/0") == ("redis", "redis://localhost:6379/0")


def test_redis_url_forms() -> None:
    url = parse_redis_url("redis://:s3cret@cache.internal:6380/2?key_prefix=shop1:&socket_timeout=3")
    assert (url.topology, url.hosts, url.db, url.password, url.key_prefix, url.socket_timeout) == (
        "single", (("cache.internal", 6380),), 2, "s3cret", "shop1:", 3.0)
    assert url.safe == "redis://:***@cache.internal:6380/2?key_prefix=shop1:&socket_timeout=3"
    assert parse_redis_url("rediss://cache.internal").tls
    assert parse_redis_url("redis://cache.internal").hosts == (("cache.internal", 6379),)
    unix = parse_redis_url("unix:///run/redis.sock?db=3")
    assert (unix.unix_path, unix.db) == ("/run/redis.sock", 3)
    sentinel = parse_redis_url("redis+sentinel://u:pw@s1:26379,s2,s3:26380/shop/1?wait_replicas=1"
                               "&sentinel_password=sp")
    assert (sentinel.topology, sentinel.hosts, sentinel.service, sentinel.db, sentinel.username) == (
        "sentinel", (("s1", 26379), ("s2", 26379), ("s3", 26380)), "shop", 1, "u")
    assert (sentinel.password, sentinel.sentinel_password, sentinel.wait_replicas) == ("pw", "sp", 1)
    assert "pw" not in sentinel.safe
    assert "sp" not in sentinel.safe
    cluster = parse_redis_url("rediss+cluster://n1:7000,n2:7001")
    assert (cluster.topology, cluster.tls, cluster.hosts) == ("cluster", True, (("n1", 7000), ("n2", 7001)))


@pytest.mark.parametrize(("url", "expected"), [
    ("redis://:pw@h:6380/2?key_prefix=x:&wait_replicas=1", "redis://:pw@h:6380/2"),
    ("rediss://u:p%40ss@h/0", "rediss://u:p%40ss@h:6379/0"),
    ("unix:///run/redis.sock?db=3&socket_timeout=2", "redis+unix:///run/redis.sock?db=3"),
    ("redis+sentinel://s1:26379,s2:26380/shop/1?key_prefix=a:", "redis+sentinel://s1:26379,s2:26380/shop"),
    ("redis+cluster://n1:7000,n2:7001?key_prefix=a:", "redis+cluster://n1:7000,n2:7001"),
    ("rediss+cluster://n1:7000", None),
    ("redis+sentinel://s1:26379/shop?sentinel_password=x", None),
])
def test_the_rate_limits_get_the_stores_redis_in_their_own_url_form(url: str, expected: str | None) -> None:
    assert limits_url(url) == expected


def test_shard_tags_spread_over_the_slots() -> None:
    """Shard i's hash tag lies in the i-th sixteenth of the 16384 slots, so the
    shards spread evenly over the masters of any cluster."""
    assert [key_slot(tag.encode()) // 1024 for tag in SHARD_TAGS] == list(range(16))
    assert shard_of("cs_1") == key_slot(b"cs_1") // 1024


@pytest.mark.parametrize(("url", "message"), [
    ("postgres://db/acp", "unknown storage scheme 'postgres'"),
    ("acp.sqlite3", "is not a storage URL"),
    ("redis://h1:6379,h2:6379/0", "several hosts; use redis\\+sentinel:// or redis\\+cluster://"),
    ("redis://localhost:6379/x", "database must be a number"),
    ("redis://localhost:6379/0?pool=3", r"unknown option\(s\) \['pool'\]"),
    ("redis+sentinel://localhost:26379", "names no master"),
    ("redis+cluster://localhost:7000/2", "database 0 only"),
    ("redis+cluster://localhost:7000?wait_replicas=1", "not supported on a Redis Cluster"),
    ("redis://localhost?wait_replicas=1&wait_timeout=9", "socket_timeout must exceed wait_timeout"),
    ("unix://", "names no socket"),
    ("sqlite://host/acp.sqlite3", "has a host part"),
    ("sqlite:", "names no file"),
    ("sqlite::memory:", "in-memory"),
])
def test_bad_store_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_store_url(url)


def test_store_url_defaults_to_the_instance_sqlite_file(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, ACP_SQLITE_PATH=None)
    settings = app.extensions["acp"].settings
    expected = tmp_path / "instance" / "acp.sqlite3"
    assert settings.sqlite_path == str(expected)
    assert settings.store_url == f"sqlite://{expected}"
    assert app.config["ACP_STORE_URL"] == f"sqlite://{expected}"
    assert t.cast(SQLiteSessions, app.extensions["acp"].storage.sessions).path == str(expected)


def test_sqlite_path_still_names_the_file(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, ACP_SQLITE_PATH=str(tmp_path / "legacy.sqlite3"))
    assert app.extensions["acp"].settings.store_url == f"sqlite://{tmp_path / 'legacy.sqlite3'}"
    assert (tmp_path / "legacy.sqlite3").exists()


def test_store_url_wins_over_sqlite_path(tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    app = build_app(tmp_path, ACP_STORE_URL="sqlite:data/acp.sqlite3",
                    ACP_SQLITE_PATH=str(tmp_path / "ignored.sqlite3"))
    target = tmp_path / "instance" / "data" / "acp.sqlite3"  # relative to the instance folder
    settings = app.extensions["acp"].settings
    assert (settings.store_url, settings.sqlite_path) == (f"sqlite://{target}", str(target))
    assert app.config["ACP_SQLITE_PATH"] == str(target)  # the catalog's stock goes there too
    assert target.exists()
    assert not (tmp_path / "ignored.sqlite3").exists()
    assert "ACP_SQLITE_PATH is ignored: ACP_STORE_URL is set" in caplog.text


@pytest.mark.parametrize(("url", "message"), [
    ("redis://localhost:6379/zero", r"ACP_STORE_URL: the Redis database must be a number"),
    ("mongodb://localhost/acp", r"ACP_STORE_URL: unknown storage scheme 'mongodb'"),
])
def test_store_url_errors_name_the_key(tmp_path: pathlib.Path, url: str, message: str) -> None:
    with pytest.raises(RuntimeError, match=r"flask-acp configuration is invalid:\s+" + message):
        build_app(tmp_path, ACP_STORE_URL=url)


def test_acp_takes_a_storage_only(tmp_path: pathlib.Path) -> None:
    storage = open_storage(f"sqlite://{tmp_path / 'given.sqlite3'}")
    app = build_app(tmp_path, store=storage)
    assert app.extensions["acp"].storage is storage
    with pytest.raises(TypeError, match="takes a flask_acp.store.Storage"):
        build_app(tmp_path, store=storage.sessions)


def test_an_outbox_of_the_previous_release_is_migrated_on_open(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # acp_outbox as the release before claims had it
        db.execute("CREATE TABLE acp_outbox (event_id TEXT PRIMARY KEY, order_id TEXT NOT NULL,"
                   " session_id TEXT NOT NULL, agent TEXT NOT NULL, type TEXT NOT NULL,"
                   " created_at REAL NOT NULL, status TEXT NOT NULL DEFAULT 'pending',"
                   " attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL, enqueued_at REAL,"
                   " delivered_at REAL, last_status INTEGER, last_error TEXT)")
        db.execute("INSERT INTO acp_outbox (event_id, order_id, session_id, agent, type, created_at,"
                   " next_attempt_at) VALUES ('evt_old', 'ord_1', 'cs_1', 'agent-one', 'order_create', 1, 1)")
    db.close()
    storage = open_storage(f"sqlite://{path}")
    entry = storage.outbox.get("evt_old")
    assert entry is not None
    assert (entry.status, entry.claimed_by, entry.claim_until) == ("pending", None, None)
    assert storage.outbox.claim("evt_old", owner="a", now=10.0, lease=60) is not None
    open_storage(f"sqlite://{path}")  # opening again changes nothing
    assert [e.event_id for e in storage.outbox.entries(statuses=["pending"])] == ["evt_old"]


def test_the_database_file_is_created_private(tmp_path: pathlib.Path) -> None:
    """It holds buyers' names and addresses: owner read/write only, WAL files too."""
    import stat

    from flask_acp.store.sqlite import sqlite_storage

    storage = sqlite_storage(str(tmp_path / "private.sqlite3"))
    storage.sessions.get("cs_none")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes["private.sqlite3"] == 0o600
    assert all(mode == 0o600 for mode in modes.values()), modes


def test_the_checkpoint_after_a_purge_does_not_hold_writers_behind_a_long_reader(
        tmp_path: pathlib.Path) -> None:
    """A reader on an older snapshot (``sqlite3 .backup`` of a large file, the
    README's daily backup) makes a ``wal_checkpoint(TRUNCATE)`` wait the whole
    busy timeout, holding SQLite's write lock all along: every checkout write
    would stall behind the sweep's purge. The checkpoint is best effort: it
    gives up at once instead."""
    import threading
    import time

    from flask_acp.store.sqlite import sqlite_storage

    path = str(tmp_path / "acp.sqlite3")
    storage = sqlite_storage(path, busy_timeout=3.0)
    storage.idempotency.begin("s", "k", "f", now=1.0, lease=60, retention=60)
    storage.idempotency.finish("s", "k", status=200, body=b"{}", headers={}, now=1.0)
    backup = sqlite3.connect(path, isolation_level=None)
    backup.execute("BEGIN")
    backup.execute("SELECT count(*) FROM acp_idempotency").fetchall()  # a snapshot held open
    storage.idempotency.begin("s", "k2", "f", now=1.0, lease=60, retention=60)  # a frame after it
    waited: list[float] = []

    def write() -> None:
        time.sleep(0.3)
        started = time.monotonic()
        sqlite_storage(path, busy_timeout=3.0).idempotency.begin("s", "k3", "f", now=1.0, lease=60,
                                                                retention=60)
        waited.append(time.monotonic() - started)

    writer = threading.Thread(target=write)
    writer.start()
    started = time.monotonic()
    try:
        assert storage.idempotency.purge(before=2.0) == 1
        purged_in = time.monotonic() - started
        writer.join(10)
    finally:
        backup.execute("ROLLBACK")
        backup.close()
    assert purged_in < 1.0
    assert waited
    assert waited[0] < 1.0
