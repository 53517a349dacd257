"""One SQLite file shared by threads and worker processes (stdlib ``sqlite3``).

Connections are per thread and per process (a forked worker never reuses its
parent's), in autocommit mode with WAL journaling; :meth:`SQLiteDatabase.tx`
runs a ``BEGIN IMMEDIATE`` transaction, so writers serialize on SQLite's own
write lock (waiting up to ``busy_timeout`` seconds).

Every :class:`sqlite3.Error` raised through :meth:`SQLiteDatabase.tx` or
:meth:`SQLiteDatabase.read` becomes a
:class:`~flask_acp.errors.StorageUnavailableError` (503 with ``Retry-After``),
never an unhandled 500.
"""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import logging
import os
import sqlite3
import threading
import typing as t

from ..errors import StorageUnavailableError

log = logging.getLogger("flask_acp")

#: seconds a checkpoint after an erasure waits for other connections (best effort)
CHECKPOINT_WAIT = 0.2


def _create_private(path: str) -> None:
    """Create ``path`` readable and writable by its owner only (0600) when it
    does not exist: it holds buyers' names and addresses. SQLite gives its
    ``-wal`` and ``-shm`` files the same permissions. An existing file is left
    as it is (the merchant may have chosen otherwise)."""
    if path == ":memory:" or path.startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:  # a missing folder...: SQLite reports it on first use
        log.debug("could not pre-create %s: %s", path, exc)


class SQLiteDatabase:
    """Per-thread, per-process connections to one SQLite file.

    The tables are set up (``schema``, then ``setup``) once per process, before
    the first transaction or read; when the file cannot be set up at
    construction (locked past the busy timeout by another process...), that is
    logged and tried again on first use, where a failure is a 503 for that one
    request, never a worker that fails to boot.

    :param path: the database file.
    :param schema: ``CREATE ... IF NOT EXISTS`` statements run once, one at a time.
    :param busy_timeout: seconds a writer waits for the write lock.
    :param setup: migrations run in the same transaction as ``schema``
        (added columns, triggers); must be idempotent.
    """

    def __init__(self, path: str, schema: str, *, busy_timeout: float = 30.0,
                 setup: cabc.Callable[[sqlite3.Connection], None] | None = None) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._schema = schema
        self._setup = setup
        self._ready = False
        self._ready_lock = threading.Lock()
        _create_private(path)
        try:
            self._ensure_ready()
        except StorageUnavailableError:
            log.warning("SQLite database %s could not be set up now; trying again on first use", path)

    def _ensure_ready(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            with self._transaction() as db:
                # one statement at a time: executescript() would COMMIT the transaction
                for statement in self._schema.split(";"):
                    if statement.strip():
                        db.execute(statement)
                if self._setup is not None:
                    self._setup(db)
            self._ready = True

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use, again after a fork)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # deleted and overwritten content is zeroed, not left in free pages (erased personal data)
            conn.execute("PRAGMA secure_delete=ON")
            self._local.conn = conn
            self._local.pid = os.getpid()
        return conn

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database file and truncate it, so
        that content just erased (zeroed by ``secure_delete``) leaves no older
        copy in the ``-wal`` file. Best effort: a reader still on an older
        snapshot keeps part of it until the next checkpoint."""
        conn = self.conn()
        try:
            # a TRUNCATE checkpoint holds SQLite's write lock while it waits (the busy
            # timeout) for readers: behind a long reader (a .backup) every writer, requests
            # too, would stall that long; it waits CHECKPOINT_WAIT at the most
            conn.execute(f"PRAGMA busy_timeout = {int(CHECKPOINT_WAIT * 1000)}")
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            finally:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        except sqlite3.Error as exc:
            log.warning("SQLite checkpoint of %s failed: %s", self.path, exc)

    @contextlib.contextmanager
    def tx(self) -> cabc.Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction, committed on success, rolled back on error.

        :raises StorageUnavailableError: SQLite failed (nothing was committed).
        """
        self._ensure_ready()
        with self._transaction() as db:
            yield db

    @contextlib.contextmanager
    def _transaction(self) -> cabc.Iterator[sqlite3.Connection]:
        with self._translated():
            db = self.conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            try:
                db.execute("COMMIT")
            except sqlite3.Error:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def read(self) -> cabc.Iterator[sqlite3.Connection]:
        """This thread's connection for reads outside a transaction.

        :raises StorageUnavailableError: SQLite failed.
        """
        self._ensure_ready()
        with self._translated():
            yield self.conn()

    def fetch_one(self, sql: str, params: cabc.Sequence[object] = ()) -> tuple[t.Any, ...] | None:
        """One row of a read outside a transaction (the hot path of reads).

        :raises StorageUnavailableError: SQLite failed.
        """
        self._ensure_ready()
        try:
            row: tuple[t.Any, ...] | None = self.conn().execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            log.error("SQLite database %s failed: %s", self.path, exc)
            raise StorageUnavailableError() from exc
        return row

    @contextlib.contextmanager
    def _translated(self) -> cabc.Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            log.error("SQLite database %s failed: %s", self.path, exc)
            raise StorageUnavailableError() from exc

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            conn.close()
        self._local.conn = None
