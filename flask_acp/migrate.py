"""Copy a SQLite store into a Redis store (``flask acp migrate-store``), for
moving from one app server to several.

What is copied, as it is (nothing is recomputed): every checkout session,
whatever its status (completed ones carry their orders: ``flask acp orders``
keeps working on them), with the order and payment ids that find them; the
payment credentials bound to sessions; the stored Idempotency-Key responses
still within ``ACP_IDEMPOTENCY_TTL`` (an agent's retry is still replayed);
the whole order-event outbox (pending events are delivered from Redis,
delivered ones stay for ``flask acp events``); the inbound-webhook log; the
embedded catalog's stock (units sold, open holds, orders and their
numbering); and the carts not yet expired (Cart API). Locks and in-flight
Idempotency-Key claims are not copied: the app must be stopped while the copy
runs (README "Scaling out").

The target must hold no key under its prefix (a half-done copy is not
mixed with live data); the source is only read.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import json
import pathlib
import sqlite3
import time
import typing as t

from .catalog.stock_redis import RedisStockLedger
from .models import Cart
from .models import CheckoutSession
from .models import from_record
from .store import is_redis
from .store import parse_store_url
from .store._redis import RedisConnection
from .store.base import OutboxEntry
from .store.redis import RedisIdempotencyRecords
from .store.redis import RedisInboundLog
from .store.redis import RedisOutbox
from .store.redis import RedisSessions
from .store.redis import redis_storage

__all__ = ["MigrationReport", "copy_sqlite_to_redis", "target_is_empty"]


@dataclasses.dataclass(frozen=True, slots=True)
class MigrationReport:
    """How many of each thing were copied."""

    sessions: int = 0
    pointers: int = 0
    credentials: int = 0
    idempotency_responses: int = 0
    outbox_events: int = 0
    inbound_events: int = 0
    stock_items: int = 0
    stock_holds: int = 0
    orders: int = 0
    carts: int = 0

    def line(self) -> str:
        return " ".join(f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self))


def target_is_empty(url: str) -> bool:
    """Whether a Redis store holds no key under its prefix (every node of a cluster)."""
    connection = RedisConnection(url)
    try:
        with connection.translated():
            for _ in connection.client.scan_iter(match=f"{connection.prefix}*", count=1000):
                return False
        return True
    finally:
        connection.close()


def copy_sqlite_to_redis(sqlite_path: str, redis_url: str, *, idempotency_ttl: float,
                         now: float | None = None,
                         progress: cabc.Callable[[str], None] | None = None) -> MigrationReport:
    """Copy everything the module docstring lists from the SQLite file to the Redis store.

    :param idempotency_ttl: ``ACP_IDEMPOTENCY_TTL`` (seconds): responses
        older than this are not copied; younger ones keep their remaining time.
    :param now: unix seconds (default: the clock).
    :raises ValueError: the target is not a Redis URL, or not empty.
    :raises sqlite3.Error: the SQLite file cannot be read.
    :raises StorageUnavailableError: Redis failed (the copy may be partial:
        empty the target's prefix and run it again).
    """
    if not is_redis(redis_url):
        raise ValueError(f"the target must be a Redis store URL, not {redis_url!r}")
    parse_store_url(redis_url)
    if not target_is_empty(redis_url):
        raise ValueError("the target Redis already holds keys under its key_prefix; migrate into an empty "
                         "prefix (or delete those keys first)")
    now = time.time() if now is None else now
    say = progress or (lambda text: None)
    storage = redis_storage(redis_url)
    sessions = t.cast(RedisSessions, storage.sessions)
    idempotency = t.cast(RedisIdempotencyRecords, storage.idempotency)
    outbox = t.cast(RedisOutbox, storage.outbox)
    inbound = t.cast(RedisInboundLog, storage.inbound)
    counts: dict[str, int] = {}
    # a file: URI from the resolved path (quoted: '?', '#', '%' and '//tmp' are plain path text)
    db = sqlite3.connect(pathlib.Path(sqlite_path).resolve().as_uri() + "?mode=ro", uri=True)
    try:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

        def rows(sql: str, *args: t.Any) -> list[tuple[t.Any, ...]]:
            return db.execute(sql, args).fetchall()

        if "acp_sessions" in tables:
            found = rows("SELECT record FROM acp_sessions")
            for (record,) in found:
                sessions.create(from_record(CheckoutSession, json.loads(record)))
            counts["sessions"] = len(found)
            say(f"sessions: {counts['sessions']}")
        pointers = 0
        for table, kind, column in (("acp_orders", "ord", "order_id"), ("acp_payments", "pay", "payment_id")):
            if table in tables:
                pointers += sessions.import_pointers(kind, [
                    (str(name), str(session_id))
                    for name, session_id in rows(f"SELECT {column}, session_id FROM {table}")])  # noqa: S608
        counts["pointers"] = pointers
        if "acp_payment_tokens" in tables:
            found = rows("SELECT token_sha256, session_id, claimed_at FROM acp_payment_tokens")
            for token, session_id, claimed_at in found:
                sessions.claim_token(token, session_id, now=claimed_at)
            counts["credentials"] = len(found)
        if "acp_idempotency" in tables:
            found = rows("SELECT scope, key, fingerprint, status, body, headers, created_at"
                         " FROM acp_idempotency WHERE state = 'done' AND created_at > ?",
                         now - idempotency_ttl)
            for scope, key, fingerprint, status, body, headers, finished_at in found:
                idempotency.import_response(scope, key, fingerprint=fingerprint, status=int(status),
                                            body=bytes(body), headers=json.loads(headers),
                                            finished_at=float(finished_at), retention=idempotency_ttl)
            counts["idempotency_responses"] = len(found)
            say(f"idempotency responses: {len(found)}")
        if "acp_outbox" in tables:
            columns = ", ".join(OutboxEntry._fields)
            found = rows(f"SELECT {columns} FROM acp_outbox")  # noqa: S608
            for row in found:
                outbox.import_entry(OutboxEntry(*row))
            counts["outbox_events"] = len(found)
            say(f"outbox events: {len(found)}")
        if "acp_inbound_events" in tables:
            found = rows("SELECT source, event_id, received_at FROM acp_inbound_events")
            for source, event_id, received_at in found:
                inbound.import_record(source, event_id, received_at=float(received_at))
            counts["inbound_events"] = len(found)
        if "acp_carts" in tables:
            found = rows("SELECT record FROM acp_carts WHERE expires_at > ?", now)
            for (record,) in found:
                storage.carts.put(from_record(Cart, json.loads(record)))
            counts["carts"] = len(found)
        if "acp_catalog_sold" in tables:
            counts.update(_copy_stock(rows, RedisStockLedger(redis_url)))
            say(f"catalog: {counts['stock_items']} items sold, {counts['stock_holds']} holds, "
                f"{counts['orders']} orders")
    finally:
        db.close()
    return MigrationReport(**counts)


def _copy_stock(rows: cabc.Callable[..., list[tuple[t.Any, ...]]],
                ledger: RedisStockLedger) -> dict[str, int]:
    sold = {str(item): int(quantity)
            for item, quantity in rows("SELECT item_id, quantity FROM acp_catalog_sold")}
    holds = [(str(s), str(i), int(q), float(e)) for s, i, q, e in rows(
        "SELECT session_id, item_id, quantity, expires_at FROM acp_catalog_holds")]
    orders = []
    last = 0
    for (number, order_id, session_id, order_number, permalink_url, lines, amount, currency, payment_id,
         created_at) in rows("SELECT number, id, session_id, order_number, permalink_url, lines, amount,"
                             " currency, payment_id, created_at FROM acp_catalog_orders"):
        last = max(last, int(number))
        orders.append((str(session_id), {"id": order_id, "order_number": order_number,
                                         "permalink_url": permalink_url, "number": int(number),
                                         "lines": json.loads(lines), "amount": amount, "currency": currency,
                                         "payment_id": payment_id, "created_at": created_at}))
    ledger.import_state(sold=sold, holds=holds, orders=orders, last_number=last)
    return {"stock_items": len(sold), "stock_holds": len(holds), "orders": len(orders)}
