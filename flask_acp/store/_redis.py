"""Redis connections shared by the Redis storage (:mod:`flask_acp.store.redis`)
and the catalog's Redis stock ledger (:mod:`flask_acp.catalog.stock_redis`).

URL forms (``ACP_STORE_URL``)::

    redis://[[user]:password@]host[:port][/db][?option=value...]
    rediss://...                                   (TLS)
    unix://[[user]:password@]/path/to/redis.sock[?db=N&option=value...]
    redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db][?...]
    rediss+sentinel://...                          (TLS to the master and the sentinels)
    redis+cluster://[[user]:password@]host:port[,host:port...][?...]
    rediss+cluster://...                           (TLS)

Options (query string):

- ``key_prefix`` (default ``acp:``): every key starts with it, so several
  apps (or a test per prefix) share one server;
- ``wait_replicas`` (default 0): after each write, wait (``WAIT``) until that
  many replicas have it, else answer 503: a write the client saw succeed then
  survives a failover (single server and Sentinel only);
- ``wait_timeout`` (seconds, default 1): how long such a wait may take;
- ``socket_timeout`` (seconds, default 5) and ``connect_timeout`` (seconds,
  default 2): a dead server costs a request this long at most, then 503;
- ``sentinel_password``: the sentinels' own password (Sentinel only).

Keys are hash-tagged by *shard*: ``<prefix>{<shard tag>}:<what>``. A session,
its lock, its order events and the indexes that find them share the shard of
the session id, so every change to a session is one Lua script on one slot of
a Redis Cluster (:data:`SHARD_TAGS`: 16 tags whose slots are spread evenly
over the 16384 slots, hence over the masters). The catalog's stock, which
every session shares, has a slot of its own (:data:`STOCK_TAG`).

Every :class:`redis.exceptions.RedisError` becomes a
:class:`~flask_acp.errors.StorageUnavailableError` (503 with ``Retry-After``).
A connection error is retried once on a fresh connection (a pooled connection
left over from before a restart or a failover); every script is written so
that running it again after an unanswered success changes nothing more (a
revision check, an owner check, or an "already there" test).
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import logging
import os
import threading
import typing as t
import urllib.parse

from ..errors import StorageUnavailableError

try:
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.cluster import ClusterNode
    from redis.cluster import RedisCluster
    from redis.commands.core import Script
    from redis.crc import key_slot
    from redis.retry import Retry
    from redis.sentinel import Sentinel
except ModuleNotFoundError as exc:  # pragma: no cover - redis is a core dependency
    raise ModuleNotFoundError(f"Redis storage needs the redis package ({exc}): "
                              "pip install 'redis>=5'") from None

log = logging.getLogger("flask_acp")

#: the hash tags of the 16 shards: tag ``i`` hashes to a slot in ``[1024 i, 1024 (i + 1))``
SHARD_TAGS = ("s0.10", "s1.13", "s2", "s3.20", "s4.4", "s5.3", "s6.40", "s7.43", "s8.23", "s9.20",
              "s10.22", "s11.21", "s12.2", "s13.1", "s14.41", "s15.42")
#: the hash tag of the catalog's stock (holds, sold counters, orders)
STOCK_TAG = "stock"
#: schemes -> (topology, TLS)
SCHEMES: dict[str, tuple[str, bool]] = {
    "redis": ("single", False), "rediss": ("single", True), "unix": ("single", False),
    "redis+sentinel": ("sentinel", False), "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False), "rediss+cluster": ("cluster", True),
}
_OPTIONS = ("key_prefix", "wait_replicas", "wait_timeout", "socket_timeout", "connect_timeout",
            "sentinel_password", "db")

Client = t.Union["redis.Redis", "RedisCluster"]


def shard_of(name: str) -> int:
    """The shard (0-15) of a session id or any other name: its Redis Cluster
    slot's sixteenth."""
    return int(key_slot(name.encode())) * len(SHARD_TAGS) // 16384


@dataclasses.dataclass(frozen=True, slots=True)
class RedisURL:
    """A parsed Redis storage URL (see the module docstring)."""

    url: str
    scheme: str
    topology: str  # single | sentinel | cluster
    tls: bool
    hosts: tuple[tuple[str, int], ...] = ()
    unix_path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    service: str | None = None
    sentinel_password: str | None = None
    key_prefix: str = "acp:"
    wait_replicas: int = 0
    wait_timeout: float = 1.0
    socket_timeout: float = 5.0
    connect_timeout: float = 2.0

    @property
    def safe(self) -> str:
        """The URL with its passwords masked, for messages and logs."""
        parts = urllib.parse.urlsplit(self.url)
        netloc = parts.netloc
        if "@" in netloc:
            creds, _, hosts = netloc.rpartition("@")
            user = creds.partition(":")[0]
            netloc = f"{user}:***@{hosts}" if ":" in creds else f"***@{hosts}"
        query = "&".join(p if not p.startswith("sentinel_password=") else "sentinel_password=***"
                         for p in parts.query.split("&") if p)
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def limits_url(url: str) -> str | None:
    """The same Redis as a storage URL for the ``limits`` package (the rate
    limits' counters): ``redis://``, ``rediss://``, ``redis+unix://``,
    ``redis+sentinel://``, ``redis+cluster://``, without flask-acp's options.
    ``None`` when ``limits`` cannot say it in a URL (TLS to a Sentinel or a
    Cluster, a sentinel password): then set ``ACP_RATE_LIMIT_STORAGE_URL``.

    :raises ValueError: a malformed URL.
    """
    parsed = parse_redis_url(url)
    auth = ""
    if parsed.username or parsed.password is not None:
        user = urllib.parse.quote(parsed.username or "", safe="")
        secret = "" if parsed.password is None else ":" + urllib.parse.quote(parsed.password, safe="")
        auth = f"{user}{secret}@"
    hosts = ",".join(f"{host}:{port}" for host, port in parsed.hosts)
    if parsed.topology == "single":
        if parsed.unix_path is not None:
            return f"redis+unix://{auth}{parsed.unix_path}?db={parsed.db}"
        return f"{'rediss' if parsed.tls else 'redis'}://{auth}{hosts}/{parsed.db}"
    if parsed.tls or parsed.sentinel_password:
        return None
    if parsed.topology == "sentinel":
        return f"redis+sentinel://{auth}{hosts}/{parsed.service}"
    return f"redis+cluster://{auth}{hosts}"


def is_redis_url(url: str) -> bool:
    """Whether ``url`` has one of the Redis schemes (:data:`SCHEMES`)."""
    return url.partition(":")[0].lower() in SCHEMES


def parse_redis_url(url: str) -> RedisURL:
    """Check and split a Redis storage URL.

    :raises ValueError: saying what is wrong and what to write instead.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"{url!r} is not a Redis URL; use " + ", ".join(f"{s}://" for s in SCHEMES))
    topology, tls = SCHEMES[scheme]
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - set(_OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} in the Redis URL; known: {', '.join(_OPTIONS)}")
    option = {k: v[-1] for k, v in query.items()}
    username = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    fields: dict[str, t.Any] = {"url": url, "scheme": scheme, "topology": topology, "tls": tls,
                                "username": username, "password": password}
    try:
        if "key_prefix" in option:
            fields["key_prefix"] = option["key_prefix"]
        for name in ("wait_timeout", "socket_timeout", "connect_timeout"):
            if name in option:
                fields[name] = float(option[name])
                if not fields[name] > 0:
                    raise ValueError(f"{name} must be above 0 seconds")
        if "wait_replicas" in option:
            fields["wait_replicas"] = int(option["wait_replicas"])
            if fields["wait_replicas"] < 0:
                raise ValueError("wait_replicas must be 0 or more")
    except ValueError as exc:
        raise ValueError(f"Redis URL option: {exc}") from None
    if fields.get("wait_replicas") and topology == "cluster":
        raise ValueError("wait_replicas is not supported on a Redis Cluster URL")
    if fields.get("wait_replicas") and fields.get("socket_timeout", 5.0) <= fields.get("wait_timeout", 1.0):
        raise ValueError("socket_timeout must exceed wait_timeout")
    fields["sentinel_password"] = option.get("sentinel_password")
    netloc_hosts = parts.netloc.rpartition("@")[2]
    path = parts.path
    if scheme == "unix":
        if not path or path == "/":
            raise ValueError(f"{url!r} names no socket; use unix:///path/to/redis.sock")
        fields["unix_path"] = path
        fields["db"] = _db(option.get("db", "0"))
        return RedisURL(**fields)
    if "db" in option:
        raise ValueError("give the database number in the path (redis://host:6379/2), not as ?db=")
    hosts = []
    for item in filter(None, netloc_hosts.split(",")):
        host, sep, port = item.rpartition(":") if not item.endswith("]") else (item, "", "")
        if not sep:
            host, port = item, ""
        host = host.strip("[]")
        if not host:
            raise ValueError(f"{url!r}: empty host in {item!r}")
        try:
            hosts.append((host, int(port) if port else (26379 if topology == "sentinel" else 6379)))
        except ValueError:
            raise ValueError(f"{url!r}: bad port in {item!r}") from None
    if not hosts:
        raise ValueError(f"{url!r} names no host; e.g. {scheme}://127.0.0.1:6379/0")
    if topology == "single" and len(hosts) > 1:
        raise ValueError(f"{url!r} names several hosts; use redis+sentinel:// or redis+cluster:// for those")
    fields["hosts"] = tuple(hosts)
    segments = [s for s in path.split("/") if s]
    if topology == "sentinel":
        if not segments:
            raise ValueError(f"{url!r} names no master; use {scheme}://host:26379/<service name>[/db]")
        fields["service"] = urllib.parse.unquote(segments[0])
        segments = segments[1:]
    if len(segments) > 1:
        raise ValueError(f"{url!r}: the path must be /<db number> at most")
    if segments:
        if topology == "cluster":
            raise ValueError(f"{url!r}: a Redis Cluster has database 0 only; drop the /{segments[0]}")
        fields["db"] = _db(segments[0])
    return RedisURL(**fields)


def _db(text: str) -> int:
    try:
        db = int(text)
    except ValueError:
        raise ValueError(f"the Redis database must be a number, got {text!r}") from None
    if db < 0:
        raise ValueError("the Redis database must be 0 or more")
    return db


def make_client(url: RedisURL, *, timeouts: bool = True) -> Client:
    """A new client for ``url`` (one connection pool).

    :param timeouts: the URL's socket timeouts (for requests); ``False``:
        no read timeout (a blocking worker).
    """
    common: dict[str, t.Any] = {
        "socket_connect_timeout": url.connect_timeout,
        "socket_timeout": url.socket_timeout if timeouts else None,
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
        "username": url.username, "password": url.password,
        "health_check_interval": 30,
    }
    if url.tls:
        common["ssl"] = True
    if url.topology == "cluster":
        nodes = [ClusterNode(host, port) for host, port in url.hosts]  # type: ignore[no-untyped-call]
        return RedisCluster(startup_nodes=nodes, **common)
    if url.topology == "sentinel":
        sentinel_kwargs = {"socket_connect_timeout": url.connect_timeout,
                           "socket_timeout": url.socket_timeout, "password": url.sentinel_password,
                           "ssl": url.tls}
        sentinel = Sentinel(list(url.hosts), sentinel_kwargs=sentinel_kwargs, **common)
        return t.cast("redis.Redis", sentinel.master_for(t.cast(str, url.service), db=url.db))
    if url.unix_path is not None:
        return redis.Redis(unix_socket_path=url.unix_path, db=url.db, **{
            k: v for k, v in common.items() if k != "ssl"})
    host, port = url.hosts[0]
    return redis.Redis(host=host, port=port, db=url.db, **common)


class RedisConnection:
    """One Redis URL as a storage uses it: a client per process (made on first
    use, again after a fork), Lua scripts, key names, error translation,
    optional replication waits.

    :param url: a Redis URL (see the module docstring).
    :raises ValueError: a malformed URL.
    """

    def __init__(self, url: str | RedisURL) -> None:
        self.url = url if isinstance(url, RedisURL) else parse_redis_url(url)
        self.prefix = self.url.key_prefix
        self.cluster = self.url.topology == "cluster"
        self._lock = threading.Lock()
        self._pid = -1
        self._client: Client | None = None
        self._scripts: dict[str, Script] = {}

    @property
    def client(self) -> Client:
        """This process's client."""
        if self._client is None or self._pid != os.getpid():
            with self._lock:
                if self._client is None or self._pid != os.getpid():
                    self._client = make_client(self.url)
                    self._scripts = {}
                    self._pid = os.getpid()
        return self._client

    # -- keys ----------------------------------------------------------------------

    def key(self, tag: str, what: str) -> str:
        """``<prefix>{<tag>}:<what>``."""
        return f"{self.prefix}{{{tag}}}:{what}"

    def shard_key(self, shard: int, what: str) -> str:
        """A key of shard ``shard`` (0-15)."""
        return self.key(SHARD_TAGS[shard], what)

    def shard_base(self, shard: int) -> str:
        """The prefix every key of shard ``shard`` starts with (Lua scripts add to it)."""
        return self.key(SHARD_TAGS[shard], "")

    # -- calls ---------------------------------------------------------------------

    def script(self, source: str) -> Script:
        """The :class:`Script` of ``source`` for this process's client."""
        client = self.client
        found = self._scripts.get(source)
        if found is None:
            found = self._scripts[source] = client.register_script(source)
        return found

    def run(self, source: str, keys: cabc.Sequence[str], args: cabc.Sequence[t.Any] = (), *,
            write: bool = True, quiet: bool = False) -> t.Any:
        """Run a Lua script (its keys all in one slot).

        :param write: the script may write: with ``wait_replicas``, wait for
            the replicas before returning.
        :param quiet: a failure is not logged (a call retried in the background).
        :raises StorageUnavailableError: Redis failed, or the replicas did not
            acknowledge the write in time.
        """
        script = self.script(source)
        with self.translated(quiet=quiet):
            if write and self.url.wait_replicas:
                pipe = t.cast("redis.Redis", self.client).pipeline(transaction=False)
                script(keys=list(keys), args=list(args), client=pipe)
                pipe.execute_command(  # type: ignore[no-untyped-call]
                    "WAIT", self.url.wait_replicas, int(self.url.wait_timeout * 1000))
                result, acked = pipe.execute()
                if int(acked) < self.url.wait_replicas:
                    log.error("Redis %s: a write reached %s of %s replicas within %s s", self.url.safe,
                              acked, self.url.wait_replicas, self.url.wait_timeout)
                    raise StorageUnavailableError()
                return result
            return script(keys=list(keys), args=list(args))

    def call(self, command: str, *args: t.Any) -> t.Any:
        """One plain command (reads, write-once pointers), translated errors."""
        with self.translated():
            return self.client.execute_command(command, *args)  # type: ignore[no-untyped-call]

    def each_shard(self, source: str, keys: cabc.Callable[[int], cabc.Sequence[str]],
                   args: cabc.Callable[[int], cabc.Sequence[t.Any]], *, write: bool) -> list[t.Any]:
        """Run a script once per shard; the results in shard order. One round
        trip on a single server (a pipeline), one call per shard on a cluster."""
        shards = range(len(SHARD_TAGS))
        if self.cluster or (write and self.url.wait_replicas):
            return [self.run(source, keys(i), args(i), write=write) for i in shards]
        script = self.script(source)
        with self.translated():
            pipe = t.cast("redis.Redis", self.client).pipeline(transaction=False)
            for i in shards:
                script(keys=list(keys(i)), args=list(args(i)), client=pipe)
            return list(pipe.execute())

    def translated(self, *, quiet: bool = False) -> _Translated:
        """A context manager turning Redis errors into :class:`StorageUnavailableError`
        (logged at error level unless ``quiet``)."""
        return _Translated(self, quiet=quiet)

    def server_time(self) -> float:
        """The server's clock, unix seconds (``TIME``; a cluster's first node)."""
        with self.translated():
            seconds, micros = t.cast("redis.Redis", self.client).time()
        return float(seconds) + float(micros) / 1e6

    def close(self) -> None:
        """Disconnect this process's client."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


class _Translated:
    """``with``: a :class:`redis.exceptions.RedisError` becomes a
    :class:`StorageUnavailableError` (logged once, at error level)."""

    def __init__(self, connection: RedisConnection, *, quiet: bool = False) -> None:
        self.connection = connection
        self.quiet = quiet

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: t.Any) -> None:
        if exc is not None and isinstance(exc, redis.exceptions.RedisError):
            if not self.quiet:
                log.error("Redis %s failed: %s: %s", self.connection.url.safe, type(exc).__name__, exc)
            raise StorageUnavailableError() from exc


_connections: dict[tuple[int, str], RedisConnection] = {}
_connections_lock = threading.Lock()


def shared_connection(url: str) -> RedisConnection:
    """The :class:`RedisConnection` of ``url`` shared by this process (the
    storage and the catalog's stock ledger use one pool per URL).

    :raises ValueError: a malformed URL.
    """
    key = (os.getpid(), url)
    with _connections_lock:
        found = _connections.get(key)
        if found is None:
            found = _connections[key] = RedisConnection(url)
        return found
