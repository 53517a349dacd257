"""Stock holds, sold counters and orders of the embedded catalog, in Redis
(``ACP_STORE_URL=redis://...``): the same ledger as :mod:`.stock`, shared by
every app server.

Keys (one hash tag, ``{stock}``, so one slot of a Redis Cluster: every
reservation sees every other one; ``P`` is the URL's key prefix)::

    P{stock}:sold            hash  item id -> units sold
    P{stock}:held            hash  item id -> units in holds (the held counter)
    P{stock}:hold:<session>  hash  item id -> units the session holds
    P{stock}:hexp            zset  session id -> its hold's expiry (unix seconds)
    P{stock}:orders          hash  session id -> the order (JSON)
    P{stock}:onum            string the last order's sequence number

Every change is one Lua script, so two sessions never both get the last
unit: ``available = on hand - sold - (held counter - the session's own
hold)`` is computed and acted on in the same script, after the holds expired
at ``now`` have been purged (their units taken off the counter). A
reservation asks the caller's ``decide`` in Python, between two scripts: the
first purges and reads the counters, the second writes the hold only if every
unit held still fits what is available then; if another session took units
meanwhile, ``decide`` runs again on the new numbers (optimistic concurrency
on the items concerned, never a read-modify-write race). Placing an order
takes the next order number the same way (no gaps, no duplicates).
"""

from __future__ import annotations

import collections.abc as cabc
import json
import typing as t

from flask_acp.errors import AdapterRejectedError
from flask_acp.errors import StorageUnavailableError
from flask_acp.models import Order
from flask_acp.store._redis import STOCK_TAG
from flask_acp.store._redis import RedisConnection
from flask_acp.store._redis import shared_connection

from .stock import Decide
from .stock import MakeOrder

#: attempts of a reservation or an order before a 503 (each lost only to a
#: rival that took units of the same items, or the next order number)
ATTEMPTS = 50

_PURGE = """
local function purge(base, now)
  for _, sid in ipairs(redis.call('ZRANGEBYSCORE', base .. 'hexp', '-inf', now)) do
    local hk = base .. 'hold:' .. sid
    local hold = redis.call('HGETALL', hk)
    for j = 1, #hold, 2 do redis.call('HINCRBY', base .. 'held', hold[j], -tonumber(hold[j + 1])) end
    redis.call('DEL', hk)
    redis.call('ZREM', base .. 'hexp', sid)
  end
end
local function available(base, sid, item, on_hand)
  local sold = tonumber(redis.call('HGET', base .. 'sold', item) or '0')
  local held = tonumber(redis.call('HGET', base .. 'held', item) or '0')
  local own = tonumber(redis.call('HGET', base .. 'hold:' .. sid, item) or '0')
  return math.max(on_hand - sold - (held - own), 0)
end
local function drop_hold(base, sid)
  local hk = base .. 'hold:' .. sid
  local hold = redis.call('HGETALL', hk)
  for j = 1, #hold, 2 do redis.call('HINCRBY', base .. 'held', hold[j], -tonumber(hold[j + 1])) end
  redis.call('DEL', hk)
  redis.call('ZREM', base .. 'hexp', sid)
end
"""

# KEYS[1] the expiry index; ARGV base, session, now, then item / on hand pairs ('' = unlimited)
# -> available units per item ('' unlimited), in ARGV order
_MEASURE = _PURGE + """
local base, sid = ARGV[1], ARGV[2]
purge(base, ARGV[3])
local out = {}
for i = 4, #ARGV, 2 do
  if ARGV[i + 1] == '' then table.insert(out, '') else
    table.insert(out, tostring(available(base, sid, ARGV[i], tonumber(ARGV[i + 1]))))
  end
end
return out
"""

# KEYS[1] the expiry index; ARGV base, session, now, expires_at,
#      then per item: id, on hand ('' unlimited), units available when decided ('' unlimited), units to hold
# -> {'ok'} or {'retry', available per item...}
_RESERVE = _PURGE + """
local base, sid = ARGV[1], ARGV[2]
purge(base, ARGV[3])
local now_available, changed = {}, false
for i = 5, #ARGV, 4 do
  if ARGV[i + 1] == '' then table.insert(now_available, '') else
    local avail = available(base, sid, ARGV[i], tonumber(ARGV[i + 1]))
    table.insert(now_available, tostring(avail))
    if tostring(avail) ~= ARGV[i + 2] and tonumber(ARGV[i + 3]) > avail then changed = true end
  end
end
if changed then
  table.insert(now_available, 1, 'retry')
  return now_available
end
drop_hold(base, sid)
local any = false
for i = 5, #ARGV, 4 do
  local qty = tonumber(ARGV[i + 3])
  if qty > 0 then
    redis.call('HSET', base .. 'hold:' .. sid, ARGV[i], qty)
    redis.call('HINCRBY', base .. 'held', ARGV[i], qty)
    any = true
  end
end
if any then redis.call('ZADD', base .. 'hexp', ARGV[4], sid) end
return {'ok'}
"""

# KEYS[1] the orders hash; ARGV session -> {'order', json} or {'next', number}
_NEXT_ORDER = """
local found = redis.call('HGET', KEYS[1], ARGV[1])
if found then return {'order', found} end
return {'next', tostring(tonumber(redis.call('GET', ARGV[2]) or '0') + 1)}
"""

# KEYS[1] the orders hash; ARGV base, session, now, number, order json, then item / on hand / units
# -> {'order', json} (placed earlier), {'retry', next number}, {'short', item, wanted, available}, {'ok'}
_PLACE = _PURGE + """
local base, sid = ARGV[1], ARGV[2]
local found = redis.call('HGET', KEYS[1], sid)
if found then return {'order', found} end
local last = tonumber(redis.call('GET', base .. 'onum') or '0')
if last + 1 ~= tonumber(ARGV[4]) then return {'retry', tostring(last + 1)} end
purge(base, ARGV[3])
for i = 6, #ARGV, 3 do
  if ARGV[i + 1] ~= '' then
    local avail = available(base, sid, ARGV[i], tonumber(ARGV[i + 1]))
    if tonumber(ARGV[i + 2]) > avail then return {'short', ARGV[i], ARGV[i + 2], tostring(avail)} end
  end
end
for i = 6, #ARGV, 3 do redis.call('HINCRBY', base .. 'sold', ARGV[i], tonumber(ARGV[i + 2])) end
drop_hold(base, sid)
redis.call('SET', base .. 'onum', ARGV[4])
redis.call('HSET', KEYS[1], sid, ARGV[5])
return {'ok'}
"""

_RELEASE = _PURGE + """
drop_hold(ARGV[1], ARGV[2])
return 1
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _units(value: bytes | str) -> int | None:
    text = _text(value)
    return None if text == "" else int(text)


class RedisStockLedger:
    """The catalog's holds, sales and orders in Redis; the same methods and
    guarantees as :class:`~flask_acp.catalog.stock.StockLedger`.

    :param url: a Redis storage URL (``redis://``, ``rediss://``, ``unix://``,
        ``redis+sentinel://``, ``redis+cluster://``; the key prefix is the URL's).
    :raises ValueError: a malformed URL.
    """

    def __init__(self, url: str | RedisConnection) -> None:
        self.connection = url if isinstance(url, RedisConnection) else shared_connection(url)
        self.base = self.connection.key(STOCK_TAG, "")

    @property
    def url(self) -> str:
        """The Redis URL, passwords masked."""
        return self.connection.url.safe

    def _key(self, what: str) -> str:
        return self.base + what

    def reserve(self, session_id: str, on_hand: cabc.Mapping[str, int | None], decide: Decide,
                *, expires_at: float, now: float) -> tuple[dict[str, int | None], dict[str, int]]:
        """Replace the session's hold, atomically (see
        :meth:`flask_acp.catalog.stock.StockLedger.reserve`; ``decide`` may run
        more than once, each time on fresher numbers).

        :raises StorageUnavailableError: Redis failed, or rivals kept taking the
            same units for :data:`ATTEMPTS` rounds.
        """
        items = list(on_hand)
        args: list[t.Any] = [self.base, session_id, repr(float(now))]
        for item_id in items:
            args += [item_id, "" if on_hand[item_id] is None else on_hand[item_id]]
        measured = self.connection.run(_MEASURE, [self._key("hexp")], args)
        available = {item_id: _units(value) for item_id, value in zip(items, measured, strict=True)}
        for _ in range(ATTEMPTS):
            held = {item_id: qty for item_id, qty in decide(dict(available)).items() if qty > 0}
            args = [self.base, session_id, repr(float(now)), repr(float(expires_at))]
            order = list(dict.fromkeys([*items, *held]))
            for item_id in order:
                units = on_hand.get(item_id)
                seen = available.get(item_id)
                args += [item_id, "" if units is None else units, "" if seen is None else seen,
                         held.get(item_id, 0)]
            reply = self.connection.run(_RESERVE, [self._key("hexp")], args)
            if _text(reply[0]) == "ok":
                return available, held
            fresh = dict(zip(order, (_units(v) for v in reply[1:]), strict=True))
            available = {item_id: fresh[item_id] for item_id in items}
        raise StorageUnavailableError("The stock is being reserved by many buyers at once; "
                                      "retry the request.")

    def place(self, session_id: str, wanted: cabc.Mapping[str, int],
              on_hand: cabc.Mapping[str, int | None], make_order: MakeOrder, *, now: float,
              amount: int | None = None, currency: str | None = None,
              payment_id: str | None = None) -> Order:
        """Turn the session's hold into sold units and record the order,
        atomically; idempotent per ``session_id`` (see
        :meth:`flask_acp.catalog.stock.StockLedger.place`).

        :raises AdapterRejectedError: an item no longer has the units.
        :raises StorageUnavailableError: Redis failed.
        """
        reply = self.connection.run(_NEXT_ORDER, [self._key("orders")], [session_id, self._key("onum")],
                                    write=False)
        for _ in range(ATTEMPTS):
            if _text(reply[0]) == "order":
                return _order(session_id, reply[1])
            number = int(reply[1])
            order = make_order(number)
            record = json.dumps({"id": order.id, "order_number": order.order_number,
                                 "permalink_url": order.permalink_url, "number": number,
                                 "lines": dict(wanted),
                                 "amount": amount, "currency": currency, "payment_id": payment_id,
                                 "created_at": now}, separators=(",", ":"))
            args: list[t.Any] = [self.base, session_id, repr(float(now)), number, record]
            for item_id, qty in wanted.items():
                units = on_hand.get(item_id, 0)
                args += [item_id, "" if units is None else units, qty]
            reply = self.connection.run(_PLACE, [self._key("orders")], args)
            outcome = _text(reply[0])
            if outcome == "ok":
                return order
            if outcome == "short":
                raise AdapterRejectedError(
                    f"item {_text(reply[1])!r} is no longer available: {_text(reply[2])} wanted, "
                    f"{_text(reply[3])} left")
        raise StorageUnavailableError("Orders are being placed by many buyers at once; retry the request.")

    def release(self, session_id: str) -> None:
        """Delete the session's hold; a no-op when there is none."""
        self.connection.run(_RELEASE, [self._key("hexp")], [self.base, session_id])

    def import_state(self, *, sold: cabc.Mapping[str, int],
                     holds: cabc.Iterable[tuple[str, str, int, float]],
                     orders: cabc.Iterable[tuple[str, dict[str, t.Any]]], last_number: int) -> None:
        """Load another ledger's state into this empty one (a store migration,
        :mod:`flask_acp.migrate`; nothing else may use either ledger meanwhile).

        :param sold: item id -> units sold.
        :param holds: ``(session id, item id, units, expires_at)`` rows.
        :param orders: ``(session id, record)``: ``id``, ``order_number``,
            ``permalink_url``, ``number``, ``lines``, ``amount``, ``currency``,
            ``payment_id``, ``created_at``.
        :param last_number: the last order's sequence number.
        """
        for item_id, quantity in sold.items():
            self.connection.call("HSET", self._key("sold"), item_id, quantity)
        for session_id, item_id, quantity, expires_at in holds:
            self.connection.call("HSET", self._key(f"hold:{session_id}"), item_id, quantity)
            self.connection.call("HINCRBY", self._key("held"), item_id, quantity)
            self.connection.call("ZADD", self._key("hexp"), repr(float(expires_at)), session_id)
        for session_id, record in orders:
            self.connection.call("HSET", self._key("orders"), session_id,
                                 json.dumps(record, separators=(",", ":")))
        self.connection.call("SET", self._key("onum"), last_number)

    # -- inspection ----------------------------------------------------------------

    def order_for(self, session_id: str) -> Order | None:
        """The order placed for the session, if any."""
        found = self.connection.call("HGET", self._key("orders"), session_id)
        return None if found is None else _order(session_id, found)

    def held(self, session_id: str) -> dict[str, int]:
        """item id -> units held by the session (expired holds included until purged)."""
        found = self.connection.call("HGETALL", self._key(f"hold:{session_id}"))
        return {_text(k): int(v) for k, v in found.items()}

    def held_counts(self) -> dict[str, int]:
        """item id -> units in holds per the held counters (zero counters left out)."""
        found = self.connection.call("HGETALL", self._key("held"))
        return dict(sorted((_text(k), int(v)) for k, v in found.items() if int(v) != 0))

    def sold(self, item_id: str) -> int:
        """Units of the item sold through this ledger."""
        found = self.connection.call("HGET", self._key("sold"), item_id)
        return 0 if found is None else int(found)

    def close(self) -> None:
        """Nothing to do: the connection is shared (per process) with the storage."""


def _order(session_id: str, record: bytes | str) -> Order:
    data = json.loads(record)
    return Order(id=data["id"], checkout_session_id=session_id, permalink_url=data["permalink_url"],
                 order_number=data["order_number"])
