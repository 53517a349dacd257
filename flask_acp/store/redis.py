"""Redis storage: every storage port on one Redis (single server, Sentinel or
Cluster), for several app servers sharing one store.

:func:`redis_storage` opens a URL (:mod:`flask_acp.store._redis` lists the
forms and options) and returns a :class:`~flask_acp.store.base.Storage` whose
six ports share one connection.

Every change is one Lua script on one shard (a hash tag, hence one slot of a
Redis Cluster): a session, its lock, its order events and the indexes that
find them share the shard of the session id, so a fenced save checks the lock,
compares the revision, writes the session, its index entries and its outbox
events atomically -- never a read-modify-write from Python. What spans shards
is written first and only ever points at the truth (write-once pointers: an
event id, an order id or a payment id to its session), so a crash between two
calls leaves nothing inconsistent. Readers across shards (the sweeper's
``session_ids``, ``claim_due``, ``entries``) ask every shard, then merge.

Layout (``P`` = the key prefix, ``{T}`` = the shard's hash tag)::

    P{T}:sess:<session id>        hash  rec (JSON), rev, status, exp, upd, erased (unix s, once erased)
    P{T}:sx:<status>:exp|upd      zset  session id -> expires_at | updated_at
    P{T}:lock:<name>              string owner, PX lease (Redis's own clock)
    P{T}:evt:<event id>           hash  the OutboxEntry fields
    P{T}:ox:st:<status>           zset  event id -> created_at
    P{T}:ox:due                   zset  pending event id -> next_attempt_at
    P{T}:ox:ord:<order id>        set   the order's event ids (one owner per order)
    P{T}:idem:<sha256 of scope+key>  hash  an Idempotency-Key record (TTL: retention + 1 h)
    P{T}:idem:done                zset  finished records -> finish time (for purge)
    P{T}:tok:<token sha256>       hash  the session a payment credential is bound to
    P{T}:inb / P{T}:inb:t         hash / zset  inbound webhooks seen -> received at
    P{T}:evp:<event id>, P{T}:ord:<order id>, P{T}:pay:<payment id>   pointers
    P{T}:pii:upto                 string  sessions updated before it were looked at for erasure

Times are unix seconds: the outbox and idempotency records keep the ``now``
values they are given; lock leases run on the Redis server's clock (``PX``),
so app servers with skewed clocks agree on them. Idempotency records carry a
Redis TTL of their retention plus an hour, so they vanish even when nobody
runs ``flask acp sweep`` -- which is why the server must not evict keys
(``maxmemory-policy noeviction``; ``flask acp doctor`` checks it).

When Redis fails while a lock or an idempotency claim is being taken or
released, its release is retried in the background until Redis answers
(owner-checked: only the claim of that request is removed; the lock's lease
and the claim's lease bound it anyway): a retry after the outage does not
find its session busy, or its key in flight, for the whole lease.
"""

from __future__ import annotations

import collections
import collections.abc as cabc
import contextlib
import datetime as dt
import hashlib
import json
import logging
import threading
import time
import typing as t

from ..errors import StorageUnavailableError
from ..models import ERASABLE_STATUSES
from ..models import Cart
from ..models import CheckoutSession
from ..models import OrderEvent
from ..models import from_record
from ..models import to_record
from ..models import without_personal_data
from ._holders import holder_is_dead
from ._holders import new_owner
from ._redis import SHARD_TAGS
from ._redis import RedisConnection
from ._redis import shard_of
from ._redis import shared_connection
from .base import Fence
from .base import IdempotencyOutcome
from .base import LockLostError
from .base import LockTimeoutError
from .base import OutboxClaimedError
from .base import OutboxEntry
from .base import StaleSessionError
from .base import Storage

__all__ = [
    "RedisCarts",
    "RedisIdempotencyRecords",
    "RedisInboundLog",
    "RedisLocks",
    "RedisOutbox",
    "RedisSessions",
    "redis_storage",
]

log = logging.getLogger("flask_acp")

#: seconds an idempotency record outlives its retention in Redis (clock skew, sweeps)
IDEMPOTENCY_TTL_MARGIN = 3600
#: seconds a failed release of an Idempotency-Key claim is retried in the background
DEFERRED_RELEASE_WITHIN = 300


def redis_storage(url: str) -> Storage:
    """Every storage port on the Redis of ``url`` (nothing is sent until first use).

    :raises ValueError: a malformed URL (the message says what to write).
    """
    connection = shared_connection(url)
    locks = RedisLocks(connection)
    return Storage(sessions=RedisSessions(connection, locks), locks=locks,
                   idempotency=RedisIdempotencyRecords(connection), outbox=RedisOutbox(connection),
                   inbound=RedisInboundLog(connection), carts=RedisCarts(connection))


def _num(value: float | int) -> str:
    """A number as Redis stores it (``repr``: floats round-trip exactly)."""
    return repr(float(value)) if isinstance(value, float) else str(value)


def _text(value: bytes | str | None) -> str | None:
    return None if value is None else value.decode() if isinstance(value, bytes) else value


def _hash(flat: cabc.Sequence[bytes]) -> dict[str, bytes]:
    """A ``HGETALL`` reply (flat field, value list) as a dict."""
    return {_text(flat[i]) or "": flat[i + 1] for i in range(0, len(flat), 2)}


class _Port:
    """A port on a shared :class:`RedisConnection`."""

    def __init__(self, connection: RedisConnection) -> None:
        self.connection = connection

    @property
    def url(self) -> str:
        """The Redis URL, passwords masked."""
        return self.connection.url.safe

    def _base(self, shard: int) -> str:
        return self.connection.shard_base(shard)

    def _key(self, shard: int, what: str) -> str:
        return self.connection.shard_key(shard, what)


class _Deferred:
    """Calls that must happen once Redis answers again (releases of locks and
    claims that failed during an outage), retried by one daemon thread per
    process until they succeed or their deadline (monotonic) passes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[tuple[float, cabc.Callable[[], object]]] = []
        self._thread: threading.Thread | None = None

    def add(self, call: cabc.Callable[[], object], *, within: float) -> None:
        with self._lock:
            self._calls.append((time.monotonic() + within, call))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="acp-redis-deferred", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(0.5)
            with self._lock:
                calls, self._calls = self._calls, []
            keep = []
            for deadline, call in calls:
                try:
                    call()
                except StorageUnavailableError:
                    if time.monotonic() < deadline:
                        keep.append((deadline, call))
                except Exception:  # pragma: no cover - a bug in a deferred call
                    log.exception("deferred Redis call failed")
            with self._lock:
                self._calls = keep + self._calls
                if not self._calls:
                    self._thread = None
                    return


_deferred = _Deferred()

# --------------------------------------------------------------------------- sessions

_SESSION_CREATE = """
local cur = redis.call('HGET', KEYS[1], 'rec')
if cur then
  if cur == ARGV[3] then return 1 end
  return 0
end
redis.call('HSET', KEYS[1], 'rec', ARGV[3], 'rev', ARGV[4], 'status', ARGV[5], 'exp', ARGV[6], 'upd', ARGV[7])
redis.call('ZADD', ARGV[1] .. 'sx:' .. ARGV[5] .. ':exp', ARGV[6], ARGV[2])
redis.call('ZADD', ARGV[1] .. 'sx:' .. ARGV[5] .. ':upd', ARGV[7], ARGV[2])
return 1
"""

# A Lua function the scripts that add order events share: ``count`` events from
# ARGV[first + 1], 6 values each (id, order id, session id, agent, type, created_at);
# an event already there is left as it is.
_LUA_ADD_EVENTS = """
local function add_events(base, first, count)
  for i = 0, count - 1 do
    local o = first + i * 6
    local eid, oid, created = ARGV[o + 1], ARGV[o + 2], ARGV[o + 6]
    local ek = base .. 'evt:' .. eid
    if redis.call('EXISTS', ek) == 0 then
      redis.call('HSET', ek, 'event_id', eid, 'order_id', oid, 'session_id', ARGV[o + 3],
        'agent', ARGV[o + 4], 'type', ARGV[o + 5], 'created_at', created, 'status', 'pending',
        'attempts', '0', 'next_attempt_at', created)
      redis.call('ZADD', base .. 'ox:st:pending', created, eid)
      redis.call('ZADD', base .. 'ox:due', created, eid)
      redis.call('SADD', base .. 'ox:ord:' .. oid, eid)
    end
  end
end
"""

# KEYS[1] the session, KEYS[2] the fence's lock (KEYS[1] when none)
# ARGV base, sid, expected rev, rec, new rev, status, exp, upd, fence owner ('' none), event count,
#      then per event: id, order id, session id, agent, type, created_at
_SESSION_SAVE = _LUA_ADD_EVENTS + """
local base, sid = ARGV[1], ARGV[2]
if ARGV[9] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[9] then return 'lock_lost' end
local cur = redis.call('HMGET', KEYS[1], 'rev', 'status', 'rec')
if not cur[1] then return 'stale' end
if tonumber(cur[1]) ~= tonumber(ARGV[3]) then
  if tonumber(cur[1]) == tonumber(ARGV[5]) and cur[3] == ARGV[4] then return 'ok' end
  return 'stale'
end
local old = cur[2]
redis.call('HSET', KEYS[1], 'rec', ARGV[4], 'rev', ARGV[5], 'status', ARGV[6], 'exp', ARGV[7], 'upd', ARGV[8])
if old ~= ARGV[6] then
  redis.call('ZREM', base .. 'sx:' .. old .. ':exp', sid)
  redis.call('ZREM', base .. 'sx:' .. old .. ':upd', sid)
end
redis.call('ZADD', base .. 'sx:' .. ARGV[6] .. ':exp', ARGV[7], sid)
redis.call('ZADD', base .. 'sx:' .. ARGV[6] .. ':upd', ARGV[8], sid)
add_events(base, 10, tonumber(ARGV[10]))
return 'ok'
"""

# KEYS[1] any key of the shard; ARGV base, expires_before, updated_before, updated_since ('' none), statuses
_SESSION_IDS = """
local base, eb, ub, us = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local out = {}
for i = 5, #ARGV do
  local st = ARGV[i]
  local ids
  if eb ~= '' then
    ids = redis.call('ZRANGEBYSCORE', base .. 'sx:' .. st .. ':exp', '-inf', '(' .. eb)
  elseif ub ~= '' or us ~= '' then
    ids = redis.call('ZRANGEBYSCORE', base .. 'sx:' .. st .. ':upd', us == '' and '-inf' or us,
                     ub == '' and '+inf' or '(' .. ub)
  else
    ids = redis.call('ZRANGE', base .. 'sx:' .. st .. ':exp', 0, -1)
  end
  for _, id in ipairs(ids) do
    if eb == '' or (ub == '' and us == '') then
      table.insert(out, id)
    else
      local u = tonumber(redis.call('ZSCORE', base .. 'sx:' .. st .. ':upd', id))
      if u and (ub == '' or u < tonumber(ub)) and (us == '' or u >= tonumber(us)) then
        table.insert(out, id)
      end
    end
  end
end
return out
"""

# KEYS[1] any key of the shard; ARGV base, updated_before, statuses...
# -> flat id, upd pairs of the sessions in those statuses updated in [watermark, updated_before)
#    and not erased, oldest first per status (the watermark: P{T}:pii:upto, see erase_personal_data)
_ERASE_CANDIDATES = """
local base, before = ARGV[1], ARGV[2]
local from = redis.call('GET', base .. 'pii:upto') or '-inf'
local out = {}
for i = 3, #ARGV do
  local index = base .. 'sx:' .. ARGV[i] .. ':upd'
  local found = redis.call('ZRANGEBYSCORE', index, from, '(' .. before, 'WITHSCORES')
  for j = 1, #found, 2 do
    if redis.call('HEXISTS', base .. 'sess:' .. found[j], 'erased') == 0 then
      table.insert(out, found[j])
      table.insert(out, found[j + 1])
    end
  end
end
return out
"""

# KEYS[1] the session; ARGV expected rev, rec, new rev, erased at, statuses...
_ERASE = """
local cur = redis.call('HMGET', KEYS[1], 'rev', 'status')
if not cur[1] or tonumber(cur[1]) ~= tonumber(ARGV[1]) then return 0 end
if redis.call('HEXISTS', KEYS[1], 'erased') == 1 then return 0 end
for i = 5, #ARGV do
  if cur[2] == ARGV[i] then
    redis.call('HSET', KEYS[1], 'rec', ARGV[2], 'rev', ARGV[3], 'erased', ARGV[4])
    return 1
  end
end
return 0
"""

# KEYS[1] the shard's watermark; ARGV the new one (only ever raised)
_RAISE_WATERMARK = """
local cur = redis.call('GET', KEYS[1])
if not cur or tonumber(cur) < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""

_POINTER = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
"""

_BIND_CREDENTIAL = """
if redis.call('HSETNX', KEYS[1], 'session_id', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'claimed_at', ARGV[2])
end
return redis.call('HGET', KEYS[1], 'session_id')
"""


class RedisSessions(_Port):
    """:class:`~flask_acp.store.base.Sessions` in Redis; fenced by :class:`RedisLocks`
    on the same connection.

    A fence is checked inside the save's script when its lock lives in the
    session's shard -- always for the lock the core takes, ``session:<id>``,
    and for any lock on a single server or Sentinel. On a Redis Cluster, a
    fence of a lock named otherwise is checked by a read just before the save.
    """

    def __init__(self, connection: RedisConnection, locks: RedisLocks) -> None:
        super().__init__(connection)
        self.locks = locks
        self._pointers: set[tuple[str, str]] = set()
        self._pointers_lock = threading.Lock()

    def _session_key(self, session_id: str) -> tuple[int, str]:
        shard = shard_of(session_id)
        return shard, self._key(shard, f"sess:{session_id}")

    def create(self, session: CheckoutSession) -> None:
        shard, key = self._session_key(session.id)
        created = self.connection.run(_SESSION_CREATE, [key],
                                      [self._base(shard), session.id, *_fields(session)])
        if not created:
            log.error("Redis %s: checkout session %s exists already", self.url, session.id)
            raise StorageUnavailableError()

    def get(self, session_id: str) -> CheckoutSession | None:
        _, key = self._session_key(session_id)
        record = self.connection.call("HGET", key, "rec")
        return None if record is None else from_record(CheckoutSession, json.loads(record))

    def save(self, session: CheckoutSession, events: cabc.Sequence[OrderEvent] = (), *,
             fence: Fence | None = None) -> CheckoutSession:
        saved = session.replace(revision=session.revision + 1)
        shard, key = self._session_key(session.id)
        self._point_to(saved, events, shard)
        lock_key = key
        owner = ""
        if fence is not None:
            lock_shard = self.locks.shard(fence.name)
            if lock_shard == shard or not self.connection.cluster:
                lock_key, owner = self.locks.key(fence.name), fence.owner
            elif not self.locks.lock_held(fence):  # a Cluster, another slot: checked just before
                raise LockLostError(fence.name)
        args: list[t.Any] = [self._base(shard), session.id, session.revision, *_fields(saved)[:5], owner,
                             len(events)]
        for event in events:
            args += [event.id, event.order_id, event.checkout_session_id, event.agent, event.type,
                     _num(event.created_at.timestamp())]
        outcome = _text(self.connection.run(_SESSION_SAVE, [key, lock_key], args))
        if outcome == "lock_lost":
            raise LockLostError(t.cast(Fence, fence).name)
        if outcome != "ok":
            raise StaleSessionError(session.id)
        return saved

    def _point_to(self, session: CheckoutSession, events: cabc.Sequence[OrderEvent], shard: int) -> None:
        """Write the pointers to the session (its order ids, its payment id, the
        shard of its new events) before the save: they only ever point at the
        truth, and a crash between the two leaves no event or order unfindable."""
        wanted: list[tuple[str, str, str]] = [("evp", event.id, str(shard)) for event in events]
        if session.order is not None:
            wanted += [("ord", order_id, session.id)
                       for order_id in {session.order.id, session.order.platform_order_id} - {None}
                       if order_id]
        if session.payment is not None and session.payment.payment_id:
            wanted.append(("pay", session.payment.payment_id, session.id))
        for kind, name, value in wanted:
            if (kind, name) in self._pointers:
                continue
            self.connection.run(_POINTER, [self._key(shard_of(name), f"{kind}:{name}")], [value])
            with self._pointers_lock:
                if len(self._pointers) > 100_000:
                    self._pointers.clear()
                self._pointers.add((kind, name))

    def import_pointers(self, kind: str, pairs: cabc.Iterable[tuple[str, str]]) -> int:
        """Write ``order`` or ``payment`` id -> session id pointers as they are
        (a store migration, :mod:`flask_acp.migrate`); returns how many."""
        count = 0
        for name, session_id in pairs:
            self.connection.run(_POINTER, [self._key(shard_of(name), f"{kind}:{name}")], [session_id])
            count += 1
        return count

    def session_ids(self, *, statuses: cabc.Iterable[str], expires_before: float | None = None,
                    updated_before: float | None = None, updated_since: float | None = None) -> list[str]:
        statuses = list(statuses)
        if not statuses:
            return []
        found = self.connection.each_shard(
            _SESSION_IDS, lambda i: [self._key(i, "sx")],
            lambda i: [self._base(i), "" if expires_before is None else _num(float(expires_before)),
                       "" if updated_before is None else _num(float(updated_before)),
                       "" if updated_since is None else _num(float(updated_since)), *statuses],
            write=False)
        return [_text(sid) or "" for ids in found for sid in ids]

    def erase_personal_data(self, *, updated_before: float, now: float, limit: int = 1000) -> int:
        """See :meth:`flask_acp.store.base.Sessions.erase_personal_data`. Per
        shard, one script lists the candidates (terminal statuses, updated in
        ``[watermark, updated_before)``, no ``erased`` mark), the record is
        erased here (:func:`~flask_acp.models.without_personal_data`, the one
        rule) and written back by a script that compares the revision and the
        status; then the shard's watermark ``P{T}:pii:upto`` is raised to the
        oldest candidate left (one written meanwhile, or past ``limit``) or to
        ``updated_before``, so a sweep reads only what aged since the last one.
        """
        statuses = [s.value for s in ERASABLE_STATUSES]
        erased_at = dt.datetime.fromtimestamp(now, dt.timezone.utc)
        before = _num(float(updated_before))
        found = self.connection.each_shard(
            _ERASE_CANDIDATES, lambda i: [self._key(i, "pii:upto")],
            lambda i: [self._base(i), before, *statuses], write=False)
        count = 0
        for shard, flat in enumerate(found):
            pairs = sorted((float(flat[j + 1]), _text(flat[j]) or "") for j in range(0, len(flat), 2))
            watermark = float(updated_before)
            for upd, session_id in pairs:
                if count >= limit:
                    watermark = min(watermark, upd)
                    break
                erased = self._erase(session_id, erased_at, statuses)
                if erased is None:
                    watermark = min(watermark, upd)  # saved meanwhile: look again next time
                count += int(bool(erased))
            self.connection.run(_RAISE_WATERMARK, [self._key(shard, "pii:upto")], [_num(watermark)])
        return count

    def _erase(self, session_id: str, erased_at: dt.datetime, statuses: list[str]) -> bool | None:
        """Erase one session: True if erased now, False if it was already
        (e.g. migrated erased), None if it changed meanwhile."""
        _, key = self._session_key(session_id)
        current = self.get(session_id)
        if current is None or current.status.value not in statuses:
            return None
        if current.personal_data_erased_at is not None:
            return False
        erased = without_personal_data(current, erased_at).replace(revision=current.revision + 1)
        done = self.connection.run(_ERASE, [key], [
            current.revision, _fields(erased)[0], erased.revision, _num(erased_at.timestamp()), *statuses])
        return True if done else None

    def _pointer(self, kind: str, name: str) -> str | None:
        return _text(self.connection.call("GET", self._key(shard_of(name), f"{kind}:{name}")))

    def session_id_for_order(self, order_id: str) -> str | None:
        return self._pointer("ord", order_id)

    def session_id_for_payment(self, payment_id: str) -> str | None:
        return self._pointer("pay", payment_id)

    def claim_token(self, token_sha256: str, session_id: str, *, now: float) -> str:
        key = self._key(shard_of(token_sha256), f"tok:{token_sha256}")
        holder = self.connection.run(_BIND_CREDENTIAL, [key], [session_id, _num(float(now))])
        return _text(holder) or session_id


def _fields(session: CheckoutSession) -> list[t.Any]:
    """rec, rev, status, exp, upd of a session, as the scripts take them."""
    return [json.dumps(to_record(session), separators=(",", ":")), session.revision, session.status.value,
            _num(session.expires_at.timestamp()), _num(session.updated_at.timestamp())]


# --------------------------------------------------------------------------- locks

_LOCK_TAKEOVER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""

_LOCK_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_LOCK_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisLocks(_Port):
    """:class:`~flask_acp.store.base.Locks` as ``SET NX PX`` keys naming their
    holder; the lease runs on the Redis server's clock. A lock named
    ``session:<id>`` lives in the session's shard (its saves check it in the
    same script); a holder that is a dead process of this machine is taken
    over at once. A release that fails (Redis down) is retried in the
    background until Redis answers, within the lease."""

    @staticmethod
    def shard(name: str) -> int:
        """The shard of a lock: the session's for ``session:<id>``, else the name's."""
        kind, sep, rest = name.partition(":")
        return shard_of(rest if sep and kind == "session" and rest else name)

    def key(self, name: str) -> str:
        """The Redis key of the lock ``name``."""
        return self._key(self.shard(name), f"lock:{name}")

    @contextlib.contextmanager
    def lock(self, name: str, *, lease: float, wait: float) -> cabc.Iterator[Fence]:
        fence = Fence(name, new_owner())
        key = self.key(name)
        deadline = time.monotonic() + wait
        delay = 0.005
        while not self._try_acquire(key, fence.owner, lease):
            if time.monotonic() >= deadline:
                raise LockTimeoutError(name)
            time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
            delay = min(delay * 2, 0.1)
        try:
            yield fence
        finally:
            self._release(key, fence.owner, within=lease)

    def _try_acquire(self, key: str, owner: str, lease: float) -> bool:
        """:meth:`_acquire`; when Redis fails meanwhile (the lock may be ours
        without our knowing), its release is retried in the background."""
        try:
            return self._acquire(key, owner, lease)
        except StorageUnavailableError:
            _deferred.add(lambda: self.connection.run(_LOCK_RELEASE, [key], [owner], quiet=True),
                          within=lease)
            raise

    def _acquire(self, key: str, owner: str, lease: float) -> bool:
        if self.connection.call("SET", key, owner, "NX", "PX", _ms(lease)):
            return True
        holder = _text(self.connection.call("GET", key))
        if holder == owner:  # our SET was applied, its answer lost
            return True
        if holder is not None and holder_is_dead(holder):
            return bool(self.connection.run(_LOCK_TAKEOVER, [key], [holder, owner, _ms(lease)]))
        return False

    def _release(self, key: str, owner: str, *, within: float) -> None:
        def release(quiet: bool = False) -> None:
            self.connection.run(_LOCK_RELEASE, [key], [owner], quiet=quiet)

        try:
            release()
        except StorageUnavailableError:
            log.warning("lock %s not released (Redis unavailable); retrying in the background", key)
            _deferred.add(lambda: release(quiet=True), within=within)

    def lock_renew(self, fence: Fence, *, lease: float) -> bool:
        return bool(self.connection.run(_LOCK_RENEW, [self.key(fence.name)], [fence.owner, _ms(lease)]))

    def lock_held(self, fence: Fence) -> bool:
        return _text(self.connection.call("GET", self.key(fence.name))) == fence.owner


# --------------------------------------------------------------------------- idempotency

# KEYS[1] the record; ARGV fingerprint, now, lease, retention, owner, ttl, base, hash
_IDEM_BEGIN = """
local k = KEYS[1]
local now = tonumber(ARGV[2])
local r = redis.call('HMGET', k, 'fp', 'state', 'status', 'body', 'headers', 'claimed', 'by')
local function claim()
  redis.call('DEL', k)
  redis.call('ZREM', ARGV[7] .. 'idem:done', ARGV[8])
  redis.call('HSET', k, 'fp', ARGV[1], 'state', 'in_flight', 'created', ARGV[2], 'claimed', ARGV[2],
    'by', ARGV[5], 'ret', ARGV[4])
  redis.call('EXPIRE', k, ARGV[6])
  return {'new'}
end
if not r[2] then return claim() end
if r[2] == 'done' and tonumber(r[6]) + tonumber(ARGV[4]) < now then return claim() end
if r[1] ~= ARGV[1] then return {'conflict'} end
if r[2] == 'done' then return {'replay', r[3], r[4], r[5]} end
if r[7] == ARGV[5] then return {'new'} end
if tonumber(r[6]) + tonumber(ARGV[3]) > now then return {'in_flight', r[7] or ''} end
redis.call('HSET', k, 'claimed', ARGV[2], 'by', ARGV[5])
return {'new'}
"""

_IDEM_TAKEOVER = """
local r = redis.call('HMGET', KEYS[1], 'state', 'by')
if r[1] == 'in_flight' and r[2] == ARGV[1] then
  redis.call('HSET', KEYS[1], 'claimed', ARGV[2], 'by', ARGV[3])
  return 1
end
return 0
"""

# ARGV status, body, headers, now, base, hash, ttl margin, owner ('' any: the port's finish)
_IDEM_FINISH = """
local r = redis.call('HMGET', KEYS[1], 'state', 'by')
if not r[1] then return 0 end
if ARGV[8] ~= '' and (r[1] ~= 'in_flight' or r[2] ~= ARGV[8]) then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[1], 'body', ARGV[2], 'headers', ARGV[3],
  'created', ARGV[4], 'claimed', ARGV[4])
local ret = tonumber(redis.call('HGET', KEYS[1], 'ret') or '86400')
redis.call('EXPIRE', KEYS[1], math.floor(ret + tonumber(ARGV[7])))
redis.call('ZADD', ARGV[5] .. 'idem:done', ARGV[4], ARGV[6])
return 1
"""

# ARGV fingerprint, status, body, headers, finished at, retention, ttl, base, hash
_IDEM_IMPORT = """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'state', 'done', 'status', ARGV[2], 'body', ARGV[3],
  'headers', ARGV[4], 'created', ARGV[5], 'claimed', ARGV[5], 'ret', ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('ZADD', ARGV[8] .. 'idem:done', ARGV[5], ARGV[9])
return 1
"""

_IDEM_RELEASE = """
local r = redis.call('HMGET', KEYS[1], 'state', 'by')
if r[1] == 'in_flight' and (ARGV[1] == '' or r[2] == ARGV[1]) then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS[1] the shard's done index; ARGV base, before
_IDEM_PURGE = """
local n = 0
for _, h in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2])) do
  local k = ARGV[1] .. 'idem:' .. h
  local r = redis.call('HMGET', k, 'state', 'created')
  if r[1] == 'done' and tonumber(r[2]) < tonumber(ARGV[2]) then
    redis.call('DEL', k)
    n = n + 1
  end
  redis.call('ZREM', KEYS[1], h)
end
return n
"""


class RedisIdempotencyRecords(_Port):
    """:class:`~flask_acp.store.base.IdempotencyRecords` in Redis: one hash per
    (scope, key), claimed in one script (``new`` / ``replay`` / ``conflict`` /
    ``in_flight``), kept for the retention ``begin`` was given plus an hour
    (a Redis TTL, at least 24 h + 1 h with the spec's minimum)."""

    def __init__(self, connection: RedisConnection) -> None:
        super().__init__(connection)
        self._owners: dict[tuple[str, str], str] = {}
        self._owners_lock = threading.Lock()

    def _where(self, scope: str, key: str) -> tuple[int, str, str]:
        digest = hashlib.sha256(f"{scope}\0{key}".encode()).hexdigest()[:32]
        shard = shard_of(digest)
        return shard, digest, self._key(shard, f"idem:{digest}")

    def begin(self, scope: str, key: str, fingerprint: str, *, now: float, lease: float,
              retention: float) -> IdempotencyOutcome:
        """(See the port.) An in-flight claim whose holder is a process of this
        host that has ended is taken over at once."""
        shard, digest, rkey = self._where(scope, key)
        owner = new_owner()
        ttl = int(retention) + IDEMPOTENCY_TTL_MARGIN
        try:
            reply = self.connection.run(_IDEM_BEGIN, [rkey], [
                fingerprint, _num(float(now)), _num(float(lease)), _num(float(retention)), owner, ttl,
                self._base(shard), digest])
        except StorageUnavailableError:
            # the claim may have been made and its answer lost: give it back once Redis answers
            _deferred.add(lambda: self.connection.run(_IDEM_RELEASE, [rkey], [owner], quiet=True),
                          within=lease)
            raise
        state = _text(reply[0])
        if state == "in_flight":
            holder = _text(reply[1]) or ""
            if not (holder and holder_is_dead(holder)) or not self.connection.run(
                    _IDEM_TAKEOVER, [rkey], [holder, _num(float(now)), owner]):
                return IdempotencyOutcome("in_flight")
            state = "new"
        if state == "new":
            with self._owners_lock:
                self._owners[(scope, key)] = owner
            return IdempotencyOutcome("new")
        if state == "replay":
            return IdempotencyOutcome("replay", int(reply[1]), bytes(reply[2]), json.loads(reply[3]))
        return IdempotencyOutcome(t.cast(str, state))

    def finish(self, scope: str, key: str, *, status: int, body: bytes, headers: dict[str, str],
               now: float) -> None:
        """(See the port.) When Redis fails, the response is stored in the
        background once Redis answers (the request still fails): a retry with
        the key then gets it replayed instead of running again."""
        shard, digest, rkey = self._where(scope, key)
        with self._owners_lock:
            owner = self._owners.pop((scope, key), "")
        args = [status, body, json.dumps(headers), _num(float(now)), self._base(shard), digest,
                IDEMPOTENCY_TTL_MARGIN, owner]
        try:
            self.connection.run(_IDEM_FINISH, [rkey], args)
        except StorageUnavailableError:
            log.warning("Idempotency-Key response not stored (Redis unavailable); storing it in the "
                        "background")
            _deferred.add(lambda: self.connection.run(_IDEM_FINISH, [rkey], args, quiet=True),
                          within=DEFERRED_RELEASE_WITHIN)
            raise

    def release(self, scope: str, key: str) -> None:
        """(See the port.) When Redis fails, the release is retried in the
        background (only while the claim is still this request's)."""
        _, _, rkey = self._where(scope, key)
        with self._owners_lock:
            owner = self._owners.pop((scope, key), "")

        def release(quiet: bool = False) -> None:
            self.connection.run(_IDEM_RELEASE, [rkey], [owner], quiet=quiet)

        try:
            release()
        except StorageUnavailableError:
            if not owner:
                raise
            log.warning("Idempotency-Key claim not released (Redis unavailable); retrying in the background")
            _deferred.add(lambda: release(quiet=True), within=DEFERRED_RELEASE_WITHIN)

    def import_response(self, scope: str, key: str, *, fingerprint: str, status: int, body: bytes,
                        headers: dict[str, str], finished_at: float, retention: float) -> None:
        """Store a finished response as :meth:`finish` would have (a store
        migration, :mod:`flask_acp.migrate`): replayed for ``retention``
        seconds after ``finished_at`` (unix seconds)."""
        shard, digest, rkey = self._where(scope, key)
        ttl = max(int(finished_at + retention - time.time()), 0) + IDEMPOTENCY_TTL_MARGIN
        self.connection.run(_IDEM_IMPORT, [rkey], [fingerprint, status, body, json.dumps(headers),
                                                   _num(float(finished_at)), _num(float(retention)), ttl,
                                                   self._base(shard), digest])

    def purge(self, *, before: float) -> int:
        counts = self.connection.each_shard(_IDEM_PURGE, lambda i: [self._key(i, "idem:done")],
                                            lambda i: [self._base(i), _num(float(before))], write=True)
        return sum(int(n) for n in counts)


# --------------------------------------------------------------------------- outbox

_ENTRY_FIELDS = ("event_id", "order_id", "session_id", "agent", "type", "created_at", "status", "attempts",
                 "next_attempt_at", "enqueued_at", "delivered_at", "last_status", "last_error", "claimed_by",
                 "claim_until")

#: Lua: is the order of event ``eid`` free for ``owner`` at ``now``? (no live claim of another owner)
_ORDER_FREE = """
local function order_free(base, oid, eid, owner, now)
  for _, other in ipairs(redis.call('SMEMBERS', base .. 'ox:ord:' .. oid)) do
    if other ~= eid then
      local c = redis.call('HMGET', base .. 'evt:' .. other, 'claimed_by', 'claim_until')
      if c[2] and tonumber(c[2]) > now and c[1] ~= owner then return false end
    end
  end
  return true
end
local function claimable(base, eid, owner, now, due_only, first_only)
  local e = redis.call('HMGET', base .. 'evt:' .. eid, 'status', 'next_attempt_at', 'claim_until', 'order_id',
    'attempts')
  if e[1] ~= 'pending' then return false end
  if due_only and tonumber(e[2]) > now then return false end
  if e[3] and tonumber(e[3]) > now then return false end
  if first_only and tonumber(e[5]) ~= 0 then return false end
  return order_free(base, e[4], eid, owner, now)
end
"""

# KEYS[1] the event; ARGV base, owner, now, until, due only ('1'/'0'), event id
_CLAIM = _ORDER_FREE + """
if not claimable(ARGV[1], ARGV[6], ARGV[2], tonumber(ARGV[3]), ARGV[5] == '1', false) then return false end
redis.call('HSET', KEYS[1], 'claimed_by', ARGV[2], 'claim_until', ARGV[4])
return redis.call('HGETALL', KEYS[1])
"""

# KEYS[1] the shard's due index; ARGV base, owner, now, until, first attempts only, event ids...
_CLAIM_MANY = _ORDER_FREE + """
local out = {}
for i = 6, #ARGV do
  if claimable(ARGV[1], ARGV[i], ARGV[2], tonumber(ARGV[3]), true, ARGV[5] == '1') then
    local k = ARGV[1] .. 'evt:' .. ARGV[i]
    redis.call('HSET', k, 'claimed_by', ARGV[2], 'claim_until', ARGV[4])
    table.insert(out, redis.call('HGETALL', k))
  end
end
return out
"""

# KEYS[1] the shard's due index; ARGV base, owner, now, limit, first attempts only
# -> {event id, next_attempt_at, created_at} of up to `limit` claimable due events, longest due
#    first (and every event due at the same time as the last one)
_PEEK_DUE = _ORDER_FREE + """
local base, owner, now, limit = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local out, offset, last = {}, 0, nil
while true do
  local page = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[3], 'WITHSCORES', 'LIMIT', offset, 200)
  if #page == 0 then return out end
  offset = offset + #page / 2
  for j = 1, #page, 2 do
    local eid, score = page[j], tonumber(page[j + 1])
    if #out >= limit and score > last then return out end
    if claimable(base, eid, owner, now, true, ARGV[5] == '1') then
      table.insert(out, {eid, page[j + 1], redis.call('HGET', base .. 'evt:' .. eid, 'created_at')})
      last = score
    end
  end
end
"""

# KEYS[1] the shard's due index; ARGV base, now, handed over before (stale), limit
_AWAITING = """
local base, now, stale, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local out, offset, last = {}, 0, nil
while true do
  local page = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'WITHSCORES', 'LIMIT', offset, 200)
  if #page == 0 then return out end
  offset = offset + #page / 2
  for j = 1, #page, 2 do
    local eid, score = page[j], tonumber(page[j + 1])
    if #out >= limit and score > last then return out end
    local k = base .. 'evt:' .. eid
    local e = redis.call('HMGET', k, 'status', 'next_attempt_at', 'claim_until', 'enqueued_at')
    local next_at = tonumber(e[2])
    if e[1] == 'pending' and next_at <= now and (not e[3] or tonumber(e[3]) <= now)
        and (not e[4] or tonumber(e[4]) < next_at or tonumber(e[4]) < stale) then
      table.insert(out, redis.call('HGETALL', k))
      last = score
    end
  end
end
"""

# KEYS[1] any key of the shard; ARGV base, limit, statuses...
_ENTRIES = """
local out = {}
for i = 3, #ARGV do
  for _, eid in ipairs(redis.call('ZRANGE', ARGV[1] .. 'ox:st:' .. ARGV[i], 0, tonumber(ARGV[2]) - 1)) do
    table.insert(out, redis.call('HGETALL', ARGV[1] .. 'evt:' .. eid))
  end
end
return out
"""

# KEYS[1] the event; ARGV base, event id, order id, status, created_at, next_attempt_at, fields...
_IMPORT_ENTRY = """
redis.call('DEL', KEYS[1])
local fields = {}
for i = 7, #ARGV do table.insert(fields, ARGV[i]) end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', ARGV[1] .. 'ox:st:' .. ARGV[4], ARGV[5], ARGV[2])
if ARGV[4] == 'pending' then redis.call('ZADD', ARGV[1] .. 'ox:due', ARGV[6], ARGV[2]) end
redis.call('SADD', ARGV[1] .. 'ox:ord:' .. ARGV[3], ARGV[2])
return 1
"""

# KEYS[1] any key of the shard; ARGV base, count, then per event: id, order id, session id, agent,
#      type, created_at
_ADD_EVENTS = _LUA_ADD_EVENTS + """
add_events(ARGV[1], 2, tonumber(ARGV[2]))
return 1
"""

_RELEASE = """
if redis.call('HGET', KEYS[1], 'claimed_by') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'claimed_by', 'claim_until')
  return 1
end
return 0
"""

# KEYS[1] the event; ARGV base, owner, status, attempts, next_attempt_at, delivered_at, last_status,
#      last_error, event id  ('\\0' stands for None)
_RECORD = """
local k = KEYS[1]
local e = redis.call('HMGET', k, 'claimed_by', 'status', 'created_at')
if e[1] ~= ARGV[2] then return 0 end
redis.call('HSET', k, 'status', ARGV[3], 'attempts', ARGV[4], 'next_attempt_at', ARGV[5])
local optional = {delivered_at = ARGV[6], last_status = ARGV[7], last_error = ARGV[8]}
for field, value in pairs(optional) do
  if value == '\\0' then redis.call('HDEL', k, field) else redis.call('HSET', k, field, value) end
end
redis.call('HDEL', k, 'claimed_by', 'claim_until')
if e[2] ~= ARGV[3] then
  redis.call('ZREM', ARGV[1] .. 'ox:st:' .. e[2], ARGV[9])
  redis.call('ZADD', ARGV[1] .. 'ox:st:' .. ARGV[3], e[3], ARGV[9])
end
if ARGV[3] == 'pending' then
  redis.call('ZADD', ARGV[1] .. 'ox:due', ARGV[5], ARGV[9])
else
  redis.call('ZREM', ARGV[1] .. 'ox:due', ARGV[9])
end
return 1
"""

_MARK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '' then
  redis.call('HDEL', KEYS[1], 'enqueued_at')
else
  redis.call('HSET', KEYS[1], 'enqueued_at', ARGV[1])
end
return 1
"""

# ARGV base, now, event id
_RESET = """
local k = KEYS[1]
local e = redis.call('HMGET', k, 'claim_until', 'status', 'created_at')
if not e[2] then return 0 end
if e[1] and tonumber(e[1]) > tonumber(ARGV[2]) then return -1 end
redis.call('HSET', k, 'status', 'pending', 'attempts', '0', 'next_attempt_at', ARGV[2])
redis.call('HDEL', k, 'enqueued_at', 'delivered_at', 'last_status', 'last_error', 'claimed_by', 'claim_until')
if e[2] ~= 'pending' then
  redis.call('ZREM', ARGV[1] .. 'ox:st:' .. e[2], ARGV[3])
  redis.call('ZADD', ARGV[1] .. 'ox:st:pending', e[3], ARGV[3])
end
redis.call('ZADD', ARGV[1] .. 'ox:due', ARGV[2], ARGV[3])
return 1
"""


def _entry(flat: cabc.Sequence[bytes]) -> OutboxEntry:
    fields = _hash(flat)

    def num(name: str) -> float | None:
        value = fields.get(name)
        return None if value is None else float(value)

    last_status = fields.get("last_status")
    return OutboxEntry(
        event_id=_text(fields["event_id"]) or "", order_id=_text(fields["order_id"]) or "",
        session_id=_text(fields["session_id"]) or "", agent=_text(fields["agent"]) or "",
        type=_text(fields["type"]) or "", created_at=float(fields["created_at"]),
        status=_text(fields["status"]) or "", attempts=int(fields["attempts"]),
        next_attempt_at=float(fields["next_attempt_at"]), enqueued_at=num("enqueued_at"),
        delivered_at=num("delivered_at"), last_status=None if last_status is None else int(last_status),
        last_error=_text(fields.get("last_error")), claimed_by=_text(fields.get("claimed_by")),
        claim_until=num("claim_until"))


def _optional(value: float | int | str | None) -> str:
    return "\0" if value is None else value if isinstance(value, str) else _num(value)


class RedisOutbox(_Port):
    """:class:`~flask_acp.store.base.Outbox` in Redis (entries written by
    :meth:`RedisSessions.save`, in the session's shard). Each claim, record,
    release and reset is one script on the event's shard; ``claim_due`` asks
    every shard for its longest-due claimable events, then claims the longest
    due overall, each in one script (an event taken meanwhile is skipped)."""

    def __init__(self, connection: RedisConnection) -> None:
        super().__init__(connection)
        self._shards: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._shards_lock = threading.Lock()

    def _shard(self, event_id: str) -> int | None:
        """The shard of an event (its session's), from its pointer; cached."""
        with self._shards_lock:
            found = self._shards.get(event_id)
        if found is not None:
            return found
        pointer = self.connection.call("GET", self._key(shard_of(event_id), f"evp:{event_id}"))
        if pointer is None:
            return None
        shard = int(pointer)
        with self._shards_lock:
            self._shards[event_id] = shard
            if len(self._shards) > 10_000:
                self._shards.popitem(last=False)
        return shard

    def add(self, events: cabc.Sequence[OrderEvent]) -> None:
        """Each event in the shard of its ``session_id`` (one script per shard);
        its pointer is written first, as :meth:`RedisSessions.save` does."""
        by_shard: dict[int, list[OrderEvent]] = {}
        for event in events:
            shard = shard_of(event.checkout_session_id)
            self.connection.run(_POINTER, [self._key(shard_of(event.id), f"evp:{event.id}")], [str(shard)])
            by_shard.setdefault(shard, []).append(event)
        for shard, group in by_shard.items():
            args: list[t.Any] = [self._base(shard), len(group)]
            for event in group:
                args += [event.id, event.order_id, event.checkout_session_id, event.agent, event.type,
                         _num(event.created_at.timestamp())]
            self.connection.run(_ADD_EVENTS, [self._key(shard, "ox")], args)

    def get(self, event_id: str) -> OutboxEntry | None:
        shard = self._shard(event_id)
        if shard is None:
            return None
        flat = self.connection.call("HGETALL", self._key(shard, f"evt:{event_id}"))
        if not flat:
            return None
        if isinstance(flat, dict):
            flat = [x for pair in flat.items() for x in pair]
        return _entry(flat)

    def entries(self, *, statuses: cabc.Iterable[str], limit: int = 100) -> list[OutboxEntry]:
        statuses = list(statuses)
        if not statuses or limit <= 0:
            return []
        found = self.connection.each_shard(_ENTRIES, lambda i: [self._key(i, "ox")],
                                           lambda i: [self._base(i), limit, *statuses], write=False)
        entries = [_entry(flat) for shard in found for flat in shard]
        return sorted(entries, key=lambda e: (e.created_at, e.event_id))[:limit]

    def claim(self, event_id: str, *, owner: str, now: float, lease: float,
              due_only: bool = True) -> OutboxEntry | None:
        shard = self._shard(event_id)
        if shard is None:
            return None
        flat = self.connection.run(_CLAIM, [self._key(shard, f"evt:{event_id}")], [
            self._base(shard), owner, _num(float(now)), _num(float(now + lease)), "1" if due_only else "0",
            event_id])
        return None if not flat else _entry(flat)

    def claim_due(self, *, owner: str, now: float, lease: float, limit: int,
                  first_attempts_only: bool = False) -> list[OutboxEntry]:
        if limit <= 0:
            return []
        first = "1" if first_attempts_only else "0"
        for _ in range(3):
            peeked = self.connection.each_shard(
                _PEEK_DUE, lambda i: [self._key(i, "ox:due")],
                lambda i: [self._base(i), owner, _num(float(now)), limit, first], write=False)
            candidates = sorted((float(next_at), float(created), _text(eid) or "", shard)
                                for shard, found in enumerate(peeked)
                                for eid, next_at, created in found)[:limit]
            if not candidates:
                return []
            chosen: dict[int, list[str]] = {}
            for _, _, event_id, shard in candidates:
                chosen.setdefault(shard, []).append(event_id)
            claimed: list[OutboxEntry] = []
            for shard, ids in chosen.items():
                replies = self.connection.run(_CLAIM_MANY, [self._key(shard, "ox:due")], [
                    self._base(shard), owner, _num(float(now)), _num(float(now + lease)), first, *ids])
                claimed += [_entry(flat) for flat in replies]
            if claimed:
                return sorted(claimed, key=lambda e: (e.next_attempt_at, e.created_at))
        return []  # every candidate was taken by other claimers three times in a row

    def release(self, event_id: str, *, owner: str) -> bool:
        shard = self._shard(event_id)
        if shard is None:
            return False
        return bool(self.connection.run(_RELEASE, [self._key(shard, f"evt:{event_id}")], [owner]))

    def record(self, event_id: str, *, owner: str, status: str, attempts: int, next_attempt_at: float,
               delivered_at: float | None, last_status: int | None, last_error: str | None) -> bool:
        shard = self._shard(event_id)
        if shard is None:
            return False
        return bool(self.connection.run(_RECORD, [self._key(shard, f"evt:{event_id}")], [
            self._base(shard), owner, status, attempts, _num(float(next_attempt_at)),
            _optional(delivered_at if delivered_at is None else float(delivered_at)),
            _optional(last_status), _optional(last_error), event_id]))

    def import_entry(self, entry: OutboxEntry) -> None:
        """Write an outbox entry as it is, whatever its status (a store
        migration, :mod:`flask_acp.migrate`; its session is the entry's
        ``session_id``, whose shard it joins)."""
        shard = shard_of(entry.session_id)
        pointer = self._key(shard_of(entry.event_id), f"evp:{entry.event_id}")
        self.connection.run(_POINTER, [pointer], [str(shard)])
        fields: list[t.Any] = []
        for name, value in zip(_ENTRY_FIELDS, entry, strict=True):
            if value is not None:
                fields += [name, _num(value) if isinstance(value, (int, float)) else value]
        self.connection.run(_IMPORT_ENTRY, [self._key(shard, f"evt:{entry.event_id}")], [
            self._base(shard), entry.event_id, entry.order_id, entry.status, _num(float(entry.created_at)),
            _num(float(entry.next_attempt_at)), *fields])

    def awaiting_handover(self, *, now: float, stale_after: float, limit: int = 100) -> list[OutboxEntry]:
        found = self.connection.each_shard(
            _AWAITING, lambda i: [self._key(i, "ox:due")],
            lambda i: [self._base(i), _num(float(now)), _num(float(now - stale_after)), limit], write=False)
        entries = [_entry(flat) for shard in found for flat in shard]
        return sorted(entries, key=lambda e: (e.next_attempt_at, e.created_at))[:limit]

    def mark_handed_over(self, event_id: str, *, at: float | None) -> None:
        shard = self._shard(event_id)
        if shard is not None:
            self.connection.run(_MARK, [self._key(shard, f"evt:{event_id}")],
                                ["" if at is None else _num(float(at))])

    def reset(self, event_id: str, *, now: float) -> bool:
        shard = self._shard(event_id)
        if shard is None:
            return False
        done = int(self.connection.run(_RESET, [self._key(shard, f"evt:{event_id}")],
                                       [self._base(shard), _num(float(now)), event_id]))
        if done < 0:
            raise OutboxClaimedError(event_id)
        return done == 1


# --------------------------------------------------------------------------- inbound

_INBOUND_RECORD = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  return 1
end
return 0
"""

# KEYS[1] the shard's log, KEYS[2] its time index; ARGV before
_INBOUND_PURGE = """
local seen = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
for _, field in ipairs(seen) do
  redis.call('HDEL', KEYS[1], field)
  redis.call('ZREM', KEYS[2], field)
end
return #seen
"""


class RedisInboundLog(_Port):
    """:class:`~flask_acp.store.base.InboundLog` in Redis: a hash per shard of
    ``source \\0 event id`` -> received at, with a time index for purges."""

    def _where(self, source: str, event_id: str) -> tuple[int, str]:
        field = f"{source}\0{event_id}"
        return shard_of(field), field

    def seen(self, source: str, event_id: str) -> bool:
        shard, field = self._where(source, event_id)
        return bool(self.connection.call("HEXISTS", self._key(shard, "inb"), field))

    def record(self, source: str, event_id: str) -> bool:
        shard, field = self._where(source, event_id)
        return bool(self.connection.run(_INBOUND_RECORD, [self._key(shard, "inb"), self._key(shard, "inb:t")],
                                        [field, _num(time.time())]))

    def import_record(self, source: str, event_id: str, *, received_at: float) -> None:
        """Remember a webhook received at ``received_at`` (a store migration)."""
        shard, field = self._where(source, event_id)
        self.connection.run(_INBOUND_RECORD, [self._key(shard, "inb"), self._key(shard, "inb:t")],
                            [field, _num(float(received_at))])

    def purge(self, *, before: float) -> int:
        counts = self.connection.each_shard(
            _INBOUND_PURGE, lambda i: [self._key(i, "inb"), self._key(i, "inb:t")],
            lambda i: [_num(float(before))], write=True)
        return sum(int(n) for n in counts)


class RedisCarts(_Port):
    """:class:`~flask_acp.store.base.Carts` in Redis: one string per cart (its
    record as JSON) in the cart id's shard, which Redis deletes at the cart's
    ``expires_at`` (``PXAT``); :meth:`purge` has nothing left to do."""

    def _cart_key(self, cart_id: str) -> str:
        return self._key(shard_of(cart_id), f"cart:{cart_id}")

    def put(self, cart: Cart) -> None:
        self.connection.call("SET", self._cart_key(cart.id), json.dumps(to_record(cart)),
                             "PXAT", _ms(cart.expires_at.timestamp()))

    def replace(self, cart: Cart) -> bool:
        return self.connection.call("SET", self._cart_key(cart.id), json.dumps(to_record(cart)),
                                    "XX", "PXAT", _ms(cart.expires_at.timestamp())) is not None

    def get(self, cart_id: str, *, now: float) -> Cart | None:
        record = self.connection.call("GET", self._cart_key(cart_id))
        cart = None if record is None else from_record(Cart, json.loads(record))
        return None if cart is None or cart.expires_at.timestamp() <= now else cart

    def delete(self, cart_id: str) -> bool:
        return bool(self.connection.call("DEL", self._cart_key(cart_id)))

    def purge(self, *, before: float) -> int:
        return 0


#: the number of shards (hash tags) the keys are spread over
SHARDS = len(SHARD_TAGS)
