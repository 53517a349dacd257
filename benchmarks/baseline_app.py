"""Baseline for bench_checkout.py: a bare Flask app doing the same store work as flask-acp.

    BASELINE_SQLITE_PATH=/tmp/b.sqlite3 gunicorn --pythonpath benchmarks -w 2 baseline_app:app

Same routes and status codes as the ACP checkout API (create 201, update,
get, complete), same SQLite set-up as ``flask_acp.store.sqlite`` /
``flask_acp.catalog.stock`` (one connection per thread and process,
``isolation_level=None``, ``PRAGMA journal_mode=WAL``, ``PRAGMA
synchronous=NORMAL``, 30 s busy timeout, every write in ``BEGIN IMMEDIATE``),
tables of the same shape and indexes, and a JSON response of about the same
size (~2.1 KB create, ~2.9 KB update/get, ~3.1 KB complete). What it leaves
out is everything that is *not* store I/O: authentication, API-Version and
content negotiation, marshmallow validation, the session model, the catalog
rules (tax, shipping, availability messages), i18n and version rendering.

Store operations per request, counted from a SQLite trace of flask-acp
(``sqlite3`` ``set_trace_callback`` on every connection; re-check with
``python benchmarks/count_store_ops.py``, which prints both sides).
"tx" = one ``BEGIN IMMEDIATE ... COMMIT`` write transaction; statements in
brackets run inside it. Both sides do exactly these, in this order:

create (POST /checkout_sessions) - 4 tx, 9 statements inside them:
    1. idempotency begin   tx [SELECT idempotency row, INSERT in_flight claim]
    2. stock hold          tx [DELETE expired holds, SELECT SUM sold, SELECT SUM
                              other sessions' unexpired holds, DELETE own hold,
                              INSERT hold]
    3. session insert      tx [INSERT session row (~1.2 KB JSON record)]
    4. idempotency finish  tx [UPDATE claim with status + response body]

update (POST /checkout_sessions/{id}) - 6 tx (11 statements inside) + 1 autocommit read:
    1. idempotency begin   tx [SELECT, INSERT]
    2. lock acquire        tx [INSERT .. ON CONFLICT DO UPDATE (lease row)]
    3. session read        SELECT record (autocommit)
    4. stock hold          tx [DELETE expired, SELECT SUM sold, SELECT SUM holds,
                              DELETE own, INSERT]
    5. session save        tx [UPDATE .. WHERE id = ? AND revision = ?]
    6. lock release        tx [DELETE lease row]
    7. idempotency finish  tx [UPDATE]

get (GET /checkout_sessions/{id}) - no tx, 1 autocommit read:
    1. session read        SELECT record (autocommit)

complete (POST /checkout_sessions/{id}/complete) - 9 tx on the store file +
1 tx on the payment ledger file (22 statements inside them) + 2 autocommit reads:
    1. idempotency begin   tx [SELECT, INSERT]
    2. lock acquire        tx [upsert lease row]
    3. session read        SELECT record
    4. re-quote hold       tx [DELETE expired, SELECT SUM sold, SELECT SUM holds,
                              DELETE own, INSERT]
    5. save                tx [UPDATE status = complete_in_progress + payment attempt]
    6. charge              tx on the ledger file [SELECT by idempotency key, INSERT charge]
    7. save                tx [UPDATE payment succeeded]
    8. order lookup        SELECT order by session (autocommit)
    9. place order         tx [SELECT order by session, SELECT SUM sold, SELECT SUM
                              holds, UPSERT sold, DELETE hold, SELECT MAX(number),
                              INSERT order]
   10. save                tx [UPDATE status = completed + order]
   11. lock release        tx [DELETE lease row]
   12. idempotency finish  tx [UPDATE]

One deliberate difference: flask-acp's ``FakePaymentProcessor`` opens a new
SQLite connection (plus ``PRAGMA journal_mode=WAL``) for every charge; the
baseline keeps one ledger connection per thread like the session store does.
That reconnect is counted as ACP overhead in the complete ratio.

Session records and responses are plain ``json`` of dicts; every item costs
300 minor units, as every variant of benchmarks/data/feed.json does.

Environment: ``BASELINE_SQLITE_PATH`` (required), ``BASELINE_LEDGER_PATH``
(default: ``<BASELINE_SQLITE_PATH>.ledger``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from datetime import timezone
from typing import Any

from flask import Flask
from flask import Response
from flask import request

SESSION_TTL = 3600.0
LOCK_LEASE = 120.0
LOCK_WAIT = 10.0
#: every variant of benchmarks/data/feed.json costs 300 (item_123, bench_01 .. bench_63).
UNIT_AMOUNT = 300

_SCHEMA = """
CREATE TABLE IF NOT EXISTS b_sessions (id TEXT PRIMARY KEY, status TEXT NOT NULL,
    revision INTEGER NOT NULL, expires_at REAL NOT NULL, updated_at REAL NOT NULL,
    record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS b_sessions_status ON b_sessions (status, expires_at);
CREATE TABLE IF NOT EXISTS b_idempotency (scope TEXT NOT NULL, key TEXT NOT NULL,
    fingerprint TEXT NOT NULL, state TEXT NOT NULL, status INTEGER, body BLOB, headers TEXT,
    created_at REAL NOT NULL, claimed_at REAL NOT NULL, PRIMARY KEY (scope, key));
CREATE TABLE IF NOT EXISTS b_locks (name TEXT PRIMARY KEY, owner TEXT NOT NULL,
    lease_until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS b_sold (item_id TEXT PRIMARY KEY, quantity INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS b_holds (session_id TEXT NOT NULL, item_id TEXT NOT NULL,
    quantity INTEGER NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (session_id, item_id));
CREATE INDEX IF NOT EXISTS b_holds_item ON b_holds (item_id, expires_at);
CREATE TABLE IF NOT EXISTS b_orders (number INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
    session_id TEXT NOT NULL UNIQUE, order_number TEXT NOT NULL, permalink_url TEXT NOT NULL,
    lines TEXT NOT NULL, amount INTEGER, currency TEXT, payment_id TEXT, created_at REAL NOT NULL);
"""
_LEDGER_SCHEMA = ("CREATE TABLE IF NOT EXISTS b_charges (idempotency_key TEXT PRIMARY KEY,"
                  " request TEXT NOT NULL, result TEXT NOT NULL)")

# Static parts of the response, shaped like flask-acp's so bodies are the same size.
_CAPABILITIES = {
    "payment": {"handlers": [{
        "id": "card_tokenized", "name": "dev.acp.tokenized.card",
        "display_name": "Card (test mode)", "version": "2026-01-22",
        "spec": "https://acp.dev/handlers/tokenized.card", "requires_delegate_payment": True,
        "requires_pci_compliance": False, "psp": "stripe",
        "config_schema": "https://acp.dev/schemas/handlers/tokenized.card/config.json",
        "instrument_schemas": ["https://acp.dev/schemas/handlers/tokenized.card/instrument.json"],
        "config": {"merchant_id": "acct_fake", "psp": "stripe", "environment": "test"},
    }]},
    "interventions": {"supported": [], "required": [], "enforcement": "conditional"},
}
_LINKS = [
    {"type": "terms_of_use", "url": "https://shop.example/terms"},
    {"type": "privacy_policy", "url": "https://shop.example/privacy"},
    {"type": "return_policy", "url": "https://shop.example/returns"},
]
_SHIPPING = [("fulfillment_option_123", "Standard", "Arrives in 4-5 days", 100, 4, 5),
             ("fulfillment_option_456", "Express", "Arrives in 1-2 days", 500, 1, 2)]


class _Store:
    """Per-thread, per-process connections, as in flask_acp.store.sqlite."""

    def __init__(self, path: str, ledger_path: str) -> None:
        self.path = path
        self.ledger_path = ledger_path
        self._local = threading.local()
        self.conn().executescript(_SCHEMA)
        self.ledger().execute(_LEDGER_SCHEMA)

    def _open(self, path: str) -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _get(self, attr: str, path: str) -> sqlite3.Connection:
        if getattr(self._local, "pid", None) != os.getpid():
            self._local.__dict__.clear()
            self._local.pid = os.getpid()
        conn = getattr(self._local, attr, None)
        if conn is None:
            conn = self._open(path)
            setattr(self._local, attr, conn)
        return conn

    def conn(self) -> sqlite3.Connection:
        return self._get("conn", self.path)

    def ledger(self) -> sqlite3.Connection:
        return self._get("ledger", self.ledger_path)

    @contextmanager
    def tx(self, ledger: bool = False) -> Iterator[sqlite3.Connection]:
        db = self.ledger() if ledger else self.conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def _now_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status=status,
                    mimetype="application/json")


def create_app() -> Flask:
    path = os.environ["BASELINE_SQLITE_PATH"]
    store = _Store(path, os.environ.get("BASELINE_LEDGER_PATH") or path + ".ledger")
    app = Flask(__name__)

    # -- the store operations (each one counted in the module docstring) -------------

    def idem_begin(key: str, raw: bytes) -> Response | None:
        scope = request.path
        fp = hashlib.sha256(raw).hexdigest()
        now = time.time()
        with store.tx() as db:
            row = db.execute("SELECT fingerprint, state, status, body, headers, claimed_at"
                             " FROM b_idempotency WHERE scope = ? AND key = ?", (scope, key)).fetchone()
            if row is None:
                db.execute("INSERT INTO b_idempotency (scope, key, fingerprint, state, created_at,"
                           " claimed_at) VALUES (?, ?, ?, 'in_flight', ?, ?)", (scope, key, fp, now, now))
                return None
        if row[0] != fp:
            return _json({"type": "invalid_request", "code": "idempotency_conflict"}, 422)
        if row[1] == "done":
            return Response(bytes(row[3]), status=row[2], mimetype="application/json")
        return _json({"type": "invalid_request", "code": "idempotency_in_flight"}, 409)

    def idem_finish(key: str, response: Response) -> Response:
        now = time.time()
        with store.tx() as db:
            db.execute("UPDATE b_idempotency SET state = 'done', status = ?, body = ?, headers = ?,"
                       " created_at = ?, claimed_at = ? WHERE scope = ? AND key = ?",
                       (response.status_code, response.get_data(),
                        json.dumps({"Content-Type": response.content_type}), now, now,
                        request.path, key))
        return response

    @contextmanager
    def lock(name: str) -> Iterator[None]:
        owner = uuid.uuid4().hex
        deadline = time.monotonic() + LOCK_WAIT
        delay = 0.005
        while True:
            now = time.time()
            with store.tx() as db:
                acquired = db.execute(
                    "INSERT INTO b_locks (name, owner, lease_until) VALUES (?, ?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,"
                    " lease_until = excluded.lease_until WHERE b_locks.lease_until < ?",
                    (name, owner, now + LOCK_LEASE, now)).rowcount == 1
            if acquired:
                break
            if time.monotonic() >= deadline:
                raise TimeoutError(name)
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        try:
            yield
        finally:
            with store.tx() as db:
                db.execute("DELETE FROM b_locks WHERE name = ? AND owner = ?", (name, owner))

    def available(db: sqlite3.Connection, item_id: str, session_id: str, now: float) -> int:
        (sold,) = db.execute("SELECT COALESCE(SUM(quantity), 0) FROM b_sold WHERE item_id = ?",
                             (item_id,)).fetchone()
        (held,) = db.execute("SELECT COALESCE(SUM(quantity), 0) FROM b_holds WHERE item_id = ?"
                             " AND session_id != ? AND expires_at > ?",
                             (item_id, session_id, now)).fetchone()
        return 10**9 - sold - held

    def hold(session_id: str, lines: list[dict[str, Any]], expires_at: float) -> None:
        now = time.time()
        with store.tx() as db:
            db.execute("DELETE FROM b_holds WHERE expires_at <= ?", (now,))
            for li in lines:  # one line item per session in the benchmark, as on the ACP side
                available(db, li["id"], session_id, now)
            db.execute("DELETE FROM b_holds WHERE session_id = ?", (session_id,))
            db.executemany("INSERT INTO b_holds (session_id, item_id, quantity, expires_at)"
                           " VALUES (?, ?, ?, ?)",
                           [(session_id, li["id"], li["quantity"], expires_at) for li in lines])

    def read(session_id: str) -> dict[str, Any] | None:
        row = store.conn().execute("SELECT record FROM b_sessions WHERE id = ?",
                                   (session_id,)).fetchone()
        return None if row is None else json.loads(row[0])

    def save(record: dict[str, Any]) -> dict[str, Any]:
        new = dict(record, revision=record["revision"] + 1, updated_at=time.time())
        with store.tx() as db:
            cur = db.execute("UPDATE b_sessions SET status = ?, revision = ?, expires_at = ?,"
                             " updated_at = ?, record = ? WHERE id = ? AND revision = ?",
                             (new["status"], new["revision"], new["expires_at"], new["updated_at"],
                              json.dumps(new, separators=(",", ":")), new["id"], record["revision"]))
            if cur.rowcount != 1:
                raise RuntimeError("stale session")
        return new

    # -- pricing and rendering (plain dicts) -----------------------------------------

    def price(record: dict[str, Any]) -> None:
        lines = []
        for li in record["line_items"]:
            base = UNIT_AMOUNT * li["quantity"]
            lines.append({"id": "li_" + hashlib.sha256(li["id"].encode()).hexdigest()[:12],
                          "item": {"id": li["id"]}, "quantity": li["quantity"],
                          "name": "Vintage Denim Jacket", "unit_amount": UNIT_AMOUNT,
                          "base_amount": base})
        address = (record.get("fulfillment_details") or {}).get("address")
        record["lines"] = lines
        record["ship"] = bool(address)
        record["status"] = "ready_for_payment" if address else "not_ready_for_payment"

    def render(record: dict[str, Any]) -> dict[str, Any]:
        subtotal = sum(li["base_amount"] for li in record["lines"])
        tax = subtotal // 10 if record["ship"] else 0
        shipping = 100 if record["ship"] else 0
        totals = [{"type": "items_base_amount", "display_text": "Item(s) total", "amount": subtotal},
                  {"type": "subtotal", "display_text": "Subtotal", "amount": subtotal}]
        if shipping:
            totals.append({"type": "fulfillment", "display_text": "Shipping", "amount": shipping})
        totals += [{"type": "tax", "display_text": "Tax", "amount": tax},
                   {"type": "total", "display_text": "Total", "amount": subtotal + tax + shipping}]
        body: dict[str, Any] = {
            "id": record["id"], "protocol": {"version": "2026-04-17"}, "capabilities": _CAPABILITIES,
            "status": record["status"], "currency": record["currency"],
            "line_items": [dict(li, description="Classic blue denim jacket with brass buttons",
                                product_id="prod_jacket", variant_id=li["item"]["id"],
                                availability_status="in_stock", available_quantity=10**9,
                                max_quantity_per_order=10,
                                totals=[{"type": k, "display_text": k.replace("_", " ").title(),
                                         "amount": 0 if k in ("discount", "tax") else li["base_amount"]}
                                        for k in ("items_base_amount", "discount", "subtotal",
                                                  "tax", "total")])
                           for li in record["lines"]],
            "fulfillment_details": record.get("fulfillment_details"),
            "fulfillment_options": [
                {"type": "shipping", "id": i, "title": t, "description": d, "carrier": "USPS",
                 "totals": [{"type": "subtotal", "display_text": "Subtotal", "amount": a},
                            {"type": "tax", "display_text": "Tax", "amount": 0},
                            {"type": "total", "display_text": "Total", "amount": a}],
                 "earliest_delivery_time": _now_iso(record["updated_at"] + lo * 86400),
                 "latest_delivery_time": _now_iso(record["updated_at"] + hi * 86400)}
                for i, t, d, a, lo, hi in (_SHIPPING if record["ship"] else ())],
            "totals": totals,
            "messages": [] if record["ship"] else [{
                "type": "error", "code": "missing", "param": "$.fulfillment_details.address",
                "resolution": "requires_buyer_input", "content_type": "plain",
                "content": "A shipping address is needed to offer delivery options."}],
            "links": _LINKS,
            "created_at": _now_iso(record["created_at"]),
            "updated_at": _now_iso(record["updated_at"]),
            "expires_at": _now_iso(record["expires_at"]),
        }
        if record.get("order"):
            body["order"] = record["order"]
        return body

    # -- views ------------------------------------------------------------------------

    def post(view: Any) -> Response:
        raw = request.get_data()
        body = json.loads(raw)
        key = request.headers.get("Idempotency-Key") or ""
        early = idem_begin(key, raw)
        if early is not None:
            return early
        return idem_finish(key, view(body))

    @app.post("/checkout_sessions")
    def create() -> Response:
        def view(body: dict[str, Any]) -> Response:
            now = time.time()
            record: dict[str, Any] = {
                "id": "cs_" + secrets.token_hex(16), "revision": 0, "currency": body["currency"],
                "line_items": [{"id": li["id"], "quantity": li.get("quantity", 1)}
                               for li in body["line_items"]],
                "fulfillment_details": body.get("fulfillment_details"), "buyer": body.get("buyer"),
                "created_at": now, "updated_at": now, "expires_at": now + SESSION_TTL,
            }
            price(record)
            hold(record["id"], record["line_items"], record["expires_at"])
            with store.tx() as db:
                db.execute("INSERT INTO b_sessions (id, status, revision, expires_at, updated_at,"
                           " record) VALUES (?, ?, ?, ?, ?, ?)",
                           (record["id"], record["status"], 0, record["expires_at"], now,
                            json.dumps(record, separators=(",", ":"))))
            return _json(render(record), 201)
        return post(view)

    @app.post("/checkout_sessions/<session_id>")
    def update(session_id: str) -> Response:
        def view(body: dict[str, Any]) -> Response:
            with lock("session:" + session_id):
                record = read(session_id)
                if record is None:
                    return _json({"type": "invalid_request", "code": "not_found"}, 404)
                for name in ("line_items", "fulfillment_details", "buyer"):
                    if body.get(name) is not None:
                        record[name] = body[name]
                record["line_items"] = [{"id": li["id"], "quantity": li.get("quantity", 1)}
                                        for li in record["line_items"]]
                record["expires_at"] = time.time() + SESSION_TTL
                price(record)
                hold(session_id, record["line_items"], record["expires_at"])
                record = save(record)
            return _json(render(record))
        return post(view)

    @app.get("/checkout_sessions/<session_id>")
    def get(session_id: str) -> Response:
        record = read(session_id)
        if record is None:
            return _json({"type": "invalid_request", "code": "not_found"}, 404)
        return _json(render(record))

    @app.post("/checkout_sessions/<session_id>/complete")
    def complete(session_id: str) -> Response:
        def view(body: dict[str, Any]) -> Response:
            token = body["payment_data"]["instrument"]["credential"]["token"]
            with lock("session:" + session_id):
                record = read(session_id)
                if record is None:
                    return _json({"type": "invalid_request", "code": "not_found"}, 404)
                if record["status"] != "ready_for_payment":
                    return _json(render(record))
                hold(session_id, record["line_items"], record["expires_at"])  # re-quote
                amount = sum(li["base_amount"] for li in record["lines"])
                ikey = f"acp-{session_id}-{hashlib.sha256(token.encode()).hexdigest()[:32]}"
                record["payment"] = {"idempotency_key": ikey, "amount": amount, "status": "pending"}
                record["status"] = "complete_in_progress"
                record = save(record)
                with store.tx(ledger=True) as db:  # the charge
                    row = db.execute("SELECT request, result FROM b_charges WHERE idempotency_key = ?",
                                     (ikey,)).fetchone()
                    if row is None:
                        result = {"status": "succeeded", "payment_id": "pi_fake_" + uuid.uuid4().hex[:24],
                                  "amount": amount, "currency": record["currency"]}
                        db.execute("INSERT INTO b_charges VALUES (?, ?, ?)",
                                   (ikey, json.dumps({"amount": amount, "currency": record["currency"]}),
                                    json.dumps(result)))
                    else:
                        result = json.loads(row[1])
                record["payment"] = dict(record["payment"], status="succeeded",
                                         payment_id=result["payment_id"])
                record = save(record)
                order_sql = "SELECT id, permalink_url, order_number FROM b_orders WHERE session_id = ?"
                order_row = store.conn().execute(order_sql, (session_id,)).fetchone()
                if order_row is None:
                    now = time.time()
                    with store.tx() as db:
                        order_row = db.execute(order_sql, (session_id,)).fetchone()
                        if order_row is None:
                            wanted = {li["id"]: li["quantity"] for li in record["line_items"]}
                            for item_id in wanted:
                                available(db, item_id, session_id, now)
                            db.executemany("INSERT INTO b_sold (item_id, quantity) VALUES (?, ?)"
                                           " ON CONFLICT (item_id) DO UPDATE SET"
                                           " quantity = quantity + excluded.quantity",
                                           list(wanted.items()))
                            db.execute("DELETE FROM b_holds WHERE session_id = ?", (session_id,))
                            (last,) = db.execute("SELECT COALESCE(MAX(number), 0) FROM b_orders").fetchone()
                            order_id = "ord_" + hashlib.sha256(session_id.encode()).hexdigest()[:24]
                            order_row = (order_id, f"https://shop.example/orders/{order_id}",
                                         f"#{1000 + last + 1}")
                            db.execute("INSERT INTO b_orders (number, id, session_id, order_number,"
                                       " permalink_url, lines, amount, currency, payment_id, created_at)"
                                       " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                       (last + 1, order_row[0], session_id, order_row[2], order_row[1],
                                        json.dumps(wanted), amount, record["currency"],
                                        result["payment_id"], now))
                record["order"] = {"id": order_row[0], "checkout_session_id": session_id,
                                   "permalink_url": order_row[1], "status": "created",
                                   "order_number": order_row[2]}
                record["status"] = "completed"
                record = save(record)
            return _json(render(record))
        return post(view)

    return app


app = create_app() if os.environ.get("BASELINE_SQLITE_PATH") else None
