"""SQLite storage: the embedded default (stdlib ``sqlite3``, WAL mode).

:func:`sqlite_storage` opens one database file and returns a
:class:`~flask_acp.store.base.Storage` whose six port objects share it
(one :class:`~flask_acp.store._sqlite.SQLiteDatabase`), so a session save
checks the lock fence and writes the outbox in the same transaction.

Safe with several worker processes on one machine: every write runs in a
``BEGIN IMMEDIATE`` transaction, connections are per thread and per process,
and locks are lease rows that a crashed holder cannot keep forever. A lock
row names its holder (host, pid, process start time, random token): a holder
on this host whose process is gone is taken over at once, so a retry after a
crash does not wait (and hold a worker) for the lease or the lock wait.
"""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import datetime as dt
import json
import os
import sqlite3
import time

from ..models import ERASABLE_STATUSES
from ..models import Cart
from ..models import CheckoutSession
from ..models import OrderEvent
from ..models import from_record
from ..models import to_record
from ..models import without_personal_data
from ._holders import holder_is_dead
from ._holders import new_owner
from ._sqlite import SQLiteDatabase
from .base import Fence
from .base import IdempotencyOutcome
from .base import LockLostError
from .base import LockTimeoutError
from .base import OutboxClaimedError
from .base import OutboxEntry
from .base import StaleSessionError
from .base import Storage

__all__ = [
    "SQLiteCarts",
    "SQLiteIdempotencyRecords",
    "SQLiteInboundLog",
    "SQLiteLocks",
    "SQLiteOutbox",
    "SQLiteSessions",
    "open_database",
    "sqlite_storage",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS acp_sessions (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    revision INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS acp_sessions_status ON acp_sessions (status, expires_at);
CREATE TABLE IF NOT EXISTS acp_carts (
    id TEXT PRIMARY KEY,
    expires_at REAL NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS acp_carts_expiry ON acp_carts (expires_at);
CREATE TABLE IF NOT EXISTS acp_idempotency (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    status INTEGER,
    body BLOB,
    headers TEXT,
    created_at REAL NOT NULL,
    claimed_at REAL NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE TABLE IF NOT EXISTS acp_locks (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    lease_until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS acp_orders (
    order_id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS acp_payments (
    payment_id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS acp_payment_tokens (
    token_sha256 TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    claimed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS acp_inbound_events (
    source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (source, event_id)
);
CREATE TABLE IF NOT EXISTS acp_outbox (
    event_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    type TEXT NOT NULL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    enqueued_at REAL,
    delivered_at REAL,
    last_status INTEGER,
    last_error TEXT,
    claimed_by TEXT,
    claim_until REAL
);
CREATE INDEX IF NOT EXISTS acp_outbox_due ON acp_outbox (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS acp_outbox_order ON acp_outbox (order_id);
"""

#: columns added since the first release, added to older files on open
_ADDED_COLUMNS = {"acp_outbox": (("claimed_by", "TEXT"), ("claim_until", "REAL")),
                  "acp_idempotency": (("claimed_by", "TEXT"),)}


def open_database(path: str, *, busy_timeout: float = 30.0) -> SQLiteDatabase:
    """The database of :func:`sqlite_storage` at ``path`` (file and tables
    created if missing; the parent folder must exist).

    :param busy_timeout: seconds a writer waits for SQLite's own write lock.
    :raises StorageUnavailableError: the file cannot be opened or set up.
    """
    return SQLiteDatabase(path, _SCHEMA, busy_timeout=busy_timeout, setup=_add_columns)


def _add_columns(conn: sqlite3.Connection) -> None:
    """Bring a file made by an older release up to date (added columns)."""
    for table, columns in _ADDED_COLUMNS.items():
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns:
            if name not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def sqlite_storage(path: str, *, busy_timeout: float = 30.0) -> Storage:
    """Every storage port on one SQLite file (created with its tables if missing).

    :param path: the database file; its folder is created if missing.
    :param busy_timeout: seconds a writer waits for SQLite's own write lock
        before the operation fails with
        :class:`~flask_acp.errors.StorageUnavailableError` (503).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    db = open_database(path, busy_timeout=busy_timeout)
    return Storage(sessions=SQLiteSessions(db), locks=SQLiteLocks(db),
                   idempotency=SQLiteIdempotencyRecords(db), outbox=SQLiteOutbox(db),
                   inbound=SQLiteInboundLog(db), carts=SQLiteCarts(db))


class _Port:
    """A port on a shared :class:`SQLiteDatabase`.

    :param db: the database (see :func:`open_database`).
    """

    def __init__(self, db: SQLiteDatabase) -> None:
        self.db = db
        self._tx = db.tx
        self._read = db.read

    @property
    def path(self) -> str:
        """The database file."""
        return self.db.path


class SQLiteSessions(_Port):
    """:class:`~flask_acp.store.base.Sessions` in SQLite; fenced by :class:`SQLiteLocks`
    on the same database."""

    def create(self, session: CheckoutSession) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO acp_sessions (id, status, revision, expires_at, updated_at, record)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                _row(session),
            )

    def get(self, session_id: str) -> CheckoutSession | None:
        row = self.db.fetch_one("SELECT record FROM acp_sessions WHERE id = ?", (session_id,))
        return None if row is None else from_record(CheckoutSession, json.loads(row[0]))

    def save(self, session: CheckoutSession, events: cabc.Sequence[OrderEvent] = (), *,
             fence: Fence | None = None) -> CheckoutSession:
        saved = session.replace(revision=session.revision + 1)
        with self._tx() as db:
            if fence is not None and db.execute(
                    "SELECT 1 FROM acp_locks WHERE name = ? AND owner = ?",
                    (fence.name, fence.owner)).fetchone() is None:
                raise LockLostError(fence.name)
            cur = db.execute(
                "UPDATE acp_sessions SET status = ?, revision = ?, expires_at = ?,"
                " updated_at = ?, record = ? WHERE id = ? AND revision = ?",
                (*_row(saved)[1:], session.id, session.revision),
            )
            if cur.rowcount != 1:
                raise StaleSessionError(session.id)
            if saved.order is not None:
                for order_id in {saved.order.id, saved.order.platform_order_id} - {None}:
                    db.execute("INSERT OR IGNORE INTO acp_orders (order_id, session_id) VALUES (?, ?)",
                               (order_id, saved.id))
            if saved.payment is not None and saved.payment.payment_id:
                db.execute("INSERT OR IGNORE INTO acp_payments (payment_id, session_id) VALUES (?, ?)",
                           (saved.payment.payment_id, saved.id))
            _insert_events(db, events)
        return saved

    def session_ids(self, *, statuses: cabc.Iterable[str], expires_before: float | None = None,
                    updated_before: float | None = None, updated_since: float | None = None) -> list[str]:
        statuses = list(statuses)
        sql = f"SELECT id FROM acp_sessions WHERE status IN ({','.join('?' * len(statuses))})"  # noqa: S608
        args: list[object] = list(statuses)
        if expires_before is not None:
            sql += " AND expires_at < ?"
            args.append(expires_before)
        if updated_before is not None:
            sql += " AND updated_at < ?"
            args.append(updated_before)
        if updated_since is not None:
            sql += " AND updated_at >= ?"
            args.append(updated_since)
        with self._read() as db:
            return [r[0] for r in db.execute(sql, args)]

    def session_id_for_order(self, order_id: str) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT session_id FROM acp_orders WHERE order_id = ?", (order_id,)).fetchone()
        return None if row is None else str(row[0])

    def session_id_for_payment(self, payment_id: str) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT session_id FROM acp_payments WHERE payment_id = ?",
                             (payment_id,)).fetchone()
        return None if row is None else str(row[0])

    def erase_personal_data(self, *, updated_before: float, now: float, limit: int = 1000) -> int:
        statuses = [s.value for s in ERASABLE_STATUSES]
        erased_at = dt.datetime.fromtimestamp(now, dt.timezone.utc)
        count = 0
        with self._tx() as db:
            marks = ",".join("?" * len(statuses))
            rows = db.execute(
                f"SELECT id, revision, record FROM acp_sessions WHERE status IN ({marks})"  # noqa: S608
                " AND updated_at < ? AND json_extract(record, '$.personal_data_erased_at') IS NULL LIMIT ?",
                (*statuses, updated_before, limit)).fetchall()
            for session_id, revision, record in rows:
                session = from_record(CheckoutSession, json.loads(record))
                erased = without_personal_data(session, erased_at).replace(revision=revision + 1)
                db.execute("UPDATE acp_sessions SET revision = ?, record = ? WHERE id = ? AND revision = ?",
                           (revision + 1, _row(erased)[5], session_id, revision))
                count += 1
        if count:
            self.db.checkpoint()  # no copy of what was erased left in the -wal file
        return count

    def claim_token(self, token_sha256: str, session_id: str, *, now: float) -> str:
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO acp_payment_tokens (token_sha256, session_id, claimed_at)"
                       " VALUES (?, ?, ?)", (token_sha256, session_id, now))
            row = db.execute("SELECT session_id FROM acp_payment_tokens WHERE token_sha256 = ?",
                             (token_sha256,)).fetchone()
        return str(row[0])


def _row(session: CheckoutSession) -> tuple[object, ...]:
    return (
        session.id,
        session.status.value,
        session.revision,
        session.expires_at.timestamp(),
        session.updated_at.timestamp(),
        json.dumps(to_record(session), separators=(",", ":")),
    )


class SQLiteLocks(_Port):
    """:class:`~flask_acp.store.base.Locks` as lease rows naming their holder.

    Releasing a lock also deletes the rows whose lease has passed (holders
    that crashed), so the table holds only live locks and a few stale ones.
    """

    @contextlib.contextmanager
    def lock(self, name: str, *, lease: float, wait: float) -> cabc.Iterator[Fence]:
        fence = Fence(name, new_owner())
        deadline = time.monotonic() + wait
        delay = 0.005
        while True:
            now = time.time()
            with self._tx() as db:
                cur = db.execute(
                    "INSERT INTO acp_locks (name, owner, lease_until) VALUES (?, ?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,"
                    " lease_until = excluded.lease_until WHERE acp_locks.lease_until < ?",
                    (name, fence.owner, now + lease, now),
                )
                acquired = cur.rowcount == 1
                if not acquired:
                    row = db.execute("SELECT owner FROM acp_locks WHERE name = ?", (name,)).fetchone()
                    if row is not None and holder_is_dead(str(row[0])):
                        db.execute("UPDATE acp_locks SET owner = ?, lease_until = ? WHERE name = ?"
                                   " AND owner = ?", (fence.owner, now + lease, name, row[0]))
                        acquired = True
            if acquired:
                break
            if time.monotonic() >= deadline:
                raise LockTimeoutError(name)
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        try:
            yield fence
        finally:
            with self._tx() as db:
                db.execute("DELETE FROM acp_locks WHERE name = ? AND owner = ?", (name, fence.owner))
                db.execute("DELETE FROM acp_locks WHERE lease_until < ?", (time.time(),))

    def lock_renew(self, fence: Fence, *, lease: float) -> bool:
        with self._tx() as db:
            cur = db.execute("UPDATE acp_locks SET lease_until = ? WHERE name = ? AND owner = ?",
                             (time.time() + lease, fence.name, fence.owner))
            return cur.rowcount == 1

    def lock_held(self, fence: Fence) -> bool:
        with self._read() as db:
            return db.execute("SELECT 1 FROM acp_locks WHERE name = ? AND owner = ?",
                              (fence.name, fence.owner)).fetchone() is not None


class SQLiteIdempotencyRecords(_Port):
    """:class:`~flask_acp.store.base.IdempotencyRecords` in SQLite."""

    def begin(self, scope: str, key: str, fingerprint: str, *, now: float, lease: float,
              retention: float) -> IdempotencyOutcome:
        """(See the port.) An in-flight claim whose holder is a process of this
        host that has ended is taken over at once, as a lock would be: a
        same-key retry after a crash does not wait out the lease."""
        owner = new_owner()
        with self._tx() as db:
            row = db.execute(
                "SELECT fingerprint, state, status, body, headers, claimed_at, claimed_by"
                " FROM acp_idempotency WHERE scope = ? AND key = ?",
                (scope, key),
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO acp_idempotency (scope, key, fingerprint, state, created_at,"
                    " claimed_at, claimed_by) VALUES (?, ?, ?, 'in_flight', ?, ?, ?)",
                    (scope, key, fingerprint, now, now, owner),
                )
                return IdempotencyOutcome("new")
            stored_fingerprint, state, status, body, headers, claimed_at, claimed_by = row
            if state == "done" and claimed_at + retention < now:
                db.execute(
                    "UPDATE acp_idempotency SET fingerprint = ?, state = 'in_flight', status = NULL,"
                    " body = NULL, headers = NULL, created_at = ?, claimed_at = ?, claimed_by = ?"
                    " WHERE scope = ? AND key = ?",
                    (fingerprint, now, now, owner, scope, key),
                )
                return IdempotencyOutcome("new")
            if stored_fingerprint != fingerprint:
                return IdempotencyOutcome("conflict")
            if state == "done":
                return IdempotencyOutcome("replay", status, bytes(body), json.loads(headers))
            if claimed_at + lease > now and not (claimed_by and holder_is_dead(str(claimed_by))):
                return IdempotencyOutcome("in_flight")
            db.execute(
                "UPDATE acp_idempotency SET claimed_at = ?, claimed_by = ? WHERE scope = ? AND key = ?",
                (now, owner, scope, key),
            )
            return IdempotencyOutcome("new")

    def finish(self, scope: str, key: str, *, status: int, body: bytes, headers: dict[str, str],
               now: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE acp_idempotency SET state = 'done', status = ?, body = ?, headers = ?,"
                " created_at = ?, claimed_at = ? WHERE scope = ? AND key = ?",
                (status, body, json.dumps(headers), now, now, scope, key),
            )

    def release(self, scope: str, key: str) -> None:
        with self._tx() as db:
            db.execute(
                "DELETE FROM acp_idempotency WHERE scope = ? AND key = ? AND state = 'in_flight'",
                (scope, key),
            )

    def purge(self, *, before: float) -> int:
        with self._tx() as db:
            purged = db.execute("DELETE FROM acp_idempotency WHERE state = 'done' AND created_at < ?",
                                (before,)).rowcount
        if purged:
            self.db.checkpoint()  # stored responses repeat buyers' details: no copy left in the -wal
        return purged


class SQLiteOutbox(_Port):
    """:class:`~flask_acp.store.base.Outbox` in SQLite (rows written by
    :meth:`SQLiteSessions.save`). Claims are two columns of the row
    (``claimed_by``, ``claim_until``); each claim and each record is one
    ``BEGIN IMMEDIATE`` transaction, so claimers in several processes
    serialize on SQLite's write lock."""

    _COLUMNS = ("event_id, order_id, session_id, agent, type, created_at, status, attempts,"
                " next_attempt_at, enqueued_at, delivered_at, last_status, last_error, claimed_by,"
                " claim_until")
    #: no live claim of another owner on the row's order (``o`` is the row)
    _ORDER_FREE = ("NOT EXISTS (SELECT 1 FROM acp_outbox AS other WHERE other.order_id = o.order_id"
                   " AND other.event_id != o.event_id AND other.claim_until > :now"
                   " AND other.claimed_by != :owner)")
    _CLAIM = ("UPDATE acp_outbox AS o SET claimed_by = :owner, claim_until = :until"  # noqa: S608
              " WHERE event_id = :id AND status = 'pending' AND (:due = 0 OR next_attempt_at <= :now)"
              " AND (claim_until IS NULL OR claim_until <= :now) AND " + _ORDER_FREE)

    def add(self, events: cabc.Sequence[OrderEvent]) -> None:
        with self._tx() as db:
            _insert_events(db, events)

    def get(self, event_id: str) -> OutboxEntry | None:
        with self._read() as db:
            row = db.execute(
                f"SELECT {self._COLUMNS} FROM acp_outbox WHERE event_id = ?",  # noqa: S608
                (event_id,)).fetchone()
        return None if row is None else OutboxEntry(*row)

    def entries(self, *, statuses: cabc.Iterable[str], limit: int = 100) -> list[OutboxEntry]:
        statuses = list(statuses)
        sql = (f"SELECT {self._COLUMNS} FROM acp_outbox"  # noqa: S608
               f" WHERE status IN ({','.join('?' * len(statuses))}) ORDER BY created_at LIMIT ?")
        with self._read() as db:
            return [OutboxEntry(*row) for row in db.execute(sql, [*statuses, limit])]

    def claim(self, event_id: str, *, owner: str, now: float, lease: float,
              due_only: bool = True) -> OutboxEntry | None:
        args = {"id": event_id, "owner": owner, "now": now, "until": now + lease, "due": int(due_only)}
        with self._tx() as db:
            cur = db.execute(self._CLAIM, args)
            if cur.rowcount != 1:
                return None
            row = db.execute(f"SELECT {self._COLUMNS} FROM acp_outbox WHERE event_id = ?",  # noqa: S608
                             (event_id,)).fetchone()
        return OutboxEntry(*row)

    def claim_due(self, *, owner: str, now: float, lease: float, limit: int,
                  first_attempts_only: bool = False) -> list[OutboxEntry]:
        args = {"owner": owner, "now": now, "until": now + lease, "limit": limit}
        sql = (f"SELECT {self._COLUMNS} FROM acp_outbox AS o"  # noqa: S608
               " WHERE status = 'pending' AND next_attempt_at <= :now"
               " AND (claim_until IS NULL OR claim_until <= :now)"
               + (" AND attempts = 0" if first_attempts_only else "")
               + " AND " + self._ORDER_FREE + " ORDER BY next_attempt_at, created_at LIMIT :limit")
        with self._tx() as db:
            rows = [OutboxEntry(*row) for row in db.execute(sql, args)]
            if rows:
                ids = [row.event_id for row in rows]
                db.execute(f"UPDATE acp_outbox SET claimed_by = ?, claim_until = ?"  # noqa: S608
                           f" WHERE event_id IN ({','.join('?' * len(ids))})", [owner, now + lease, *ids])
        return [row._replace(claimed_by=owner, claim_until=now + lease) for row in rows]

    def release(self, event_id: str, *, owner: str) -> bool:
        with self._tx() as db:
            return db.execute("UPDATE acp_outbox SET claimed_by = NULL, claim_until = NULL"
                              " WHERE event_id = ? AND claimed_by = ?", (event_id, owner)).rowcount == 1

    def record(self, event_id: str, *, owner: str, status: str, attempts: int, next_attempt_at: float,
               delivered_at: float | None, last_status: int | None, last_error: str | None) -> bool:
        with self._tx() as db:
            return db.execute(
                "UPDATE acp_outbox SET status = ?, attempts = ?, next_attempt_at = ?, delivered_at = ?,"
                " last_status = ?, last_error = ?, claimed_by = NULL, claim_until = NULL"
                " WHERE event_id = ? AND claimed_by = ?",
                (status, attempts, next_attempt_at, delivered_at, last_status, last_error, event_id, owner),
            ).rowcount == 1

    def awaiting_handover(self, *, now: float, stale_after: float, limit: int = 100) -> list[OutboxEntry]:
        sql = (f"SELECT {self._COLUMNS} FROM acp_outbox"  # noqa: S608
               " WHERE status = 'pending' AND next_attempt_at <= ?"
               " AND (claim_until IS NULL OR claim_until <= ?)"
               " AND (enqueued_at IS NULL OR enqueued_at < next_attempt_at OR enqueued_at < ?)"
               " ORDER BY next_attempt_at, created_at LIMIT ?")
        with self._read() as db:
            return [OutboxEntry(*row) for row in db.execute(sql, (now, now, now - stale_after, limit))]

    def mark_handed_over(self, event_id: str, *, at: float | None) -> None:
        with self._tx() as db:
            db.execute("UPDATE acp_outbox SET enqueued_at = ? WHERE event_id = ?", (at, event_id))

    def reset(self, event_id: str, *, now: float) -> bool:
        with self._tx() as db:
            row = db.execute("SELECT claim_until FROM acp_outbox WHERE event_id = ?", (event_id,)).fetchone()
            if row is None:
                return False
            if row[0] is not None and row[0] > now:
                raise OutboxClaimedError(event_id)
            db.execute(
                "UPDATE acp_outbox SET status = 'pending', attempts = 0, next_attempt_at = ?,"
                " enqueued_at = NULL, delivered_at = NULL, last_status = NULL, last_error = NULL,"
                " claimed_by = NULL, claim_until = NULL WHERE event_id = ?", (now, event_id))
        return True


class SQLiteInboundLog(_Port):
    """:class:`~flask_acp.store.base.InboundLog` in SQLite."""

    def seen(self, source: str, event_id: str) -> bool:
        with self._read() as db:
            row = db.execute("SELECT 1 FROM acp_inbound_events WHERE source = ? AND event_id = ?",
                             (source, event_id)).fetchone()
        return row is not None

    def record(self, source: str, event_id: str) -> bool:
        with self._tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO acp_inbound_events (source, event_id, received_at)"
                             " VALUES (?, ?, ?)", (source, event_id, time.time()))
            return cur.rowcount == 1

    def purge(self, *, before: float) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM acp_inbound_events WHERE received_at < ?", (before,)).rowcount


class SQLiteCarts(_Port):
    """:class:`~flask_acp.store.base.Carts` in SQLite (one row per cart, its record as JSON)."""

    def put(self, cart: Cart) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO acp_carts (id, expires_at, record) VALUES (?, ?, ?)",
                       (cart.id, cart.expires_at.timestamp(), json.dumps(to_record(cart))))

    def replace(self, cart: Cart) -> bool:
        with self._tx() as db:
            cur = db.execute("UPDATE acp_carts SET expires_at = ?, record = ? WHERE id = ?",
                             (cart.expires_at.timestamp(), json.dumps(to_record(cart)), cart.id))
            return cur.rowcount == 1

    def get(self, cart_id: str, *, now: float) -> Cart | None:
        row = self.db.fetch_one("SELECT record FROM acp_carts WHERE id = ? AND expires_at > ?",
                                (cart_id, now))
        return None if row is None else from_record(Cart, json.loads(row[0]))

    def delete(self, cart_id: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM acp_carts WHERE id = ?", (cart_id,)).rowcount == 1

    def purge(self, *, before: float) -> int:
        with self._tx() as db:
            purged = db.execute("DELETE FROM acp_carts WHERE expires_at < ?", (before,)).rowcount
        if purged:
            self.db.checkpoint()  # carts hold buyers' details: no copy left in the -wal
        return purged


def _insert_events(db: sqlite3.Connection, events: cabc.Iterable[OrderEvent]) -> None:
    """Add ``events`` to the outbox, pending and due at once; one already there is left as it is."""
    db.executemany(
        "INSERT OR IGNORE INTO acp_outbox (event_id, order_id, session_id, agent, type,"
        " created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(e.id, e.order_id, e.checkout_session_id, e.agent, e.type, e.created_at.timestamp(),
          e.created_at.timestamp()) for e in events],
    )
