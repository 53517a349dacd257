"""``flask acp doctor``: check the configuration and every connection, and say
what to fix.

Each check gives findings (``ok``, ``warn``, ``error``) with a fix for every
problem; the command exits 1 when any is an error. Checks, in order:

- configuration: the keys loaded (an invalid key stops the app before this
  runs), unknown ``ACP_*`` keys, plain HTTP outside debug;
- the store: SQLite (the file, WAL) or Redis -- reachable, every master of a
  cluster, the sentinels and the replicas ``wait_replicas`` needs,
  persistence on (AOF, or RDB with a warning), ``maxmemory-policy
  noeviction`` (an evicted idempotency record could mean a second charge);
- the order-webhook queue: RQ's Redis reachable, workers listening;
- Stripe: the key's mode (test / live / restricted) and one authenticated
  call, ``GET /v1/account``, whose id must be ``ACP_STRIPE_MERCHANT_ID``;
- each agent's ``webhook_url``: set, https, its host resolves and accepts
  a TCP connection (nothing is sent);
- the platform: one cheap authenticated call
  (:meth:`~flask_acp.adapter.PlatformAdapter.check_connection`);
- clock skew against Redis's ``TIME`` and Stripe's ``Date`` header: leases
  and outbox claims compare the clocks of several app servers.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import email.utils
import socket
import time
import typing as t
import urllib.parse

import redis

from .config import CORE_SETTINGS
from .config import Section
from .config import unknown_keys
from .errors import ACPError
from .errors import AdapterError
from .payments.stripe import STRIPE_SETTINGS
from .payments.stripe import StripePaymentProcessor
from .state import ACPState
from .store import is_redis
from .store import safe_store_url
from .store._redis import RedisConnection
from .store._redis import parse_redis_url

__all__ = ["CLOCK_SKEW_ERROR", "CLOCK_SKEW_WARN", "Finding", "diagnose"]

#: seconds of clock difference with Redis or Stripe reported as a warning / an error
CLOCK_SKEW_WARN = 1.0
CLOCK_SKEW_ERROR = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    """One line of the report.

    :ivar level: ``ok``, ``warn`` or ``error``.
    :ivar topic: what was checked (``store``, ``stripe``...).
    :ivar text: what was found; for a problem, what to do about it.
    """

    level: str
    topic: str
    text: str

    def line(self) -> str:
        return f"{self.level.upper() if self.level == 'error' else self.level:<6} {self.topic:<9} {self.text}"


Check = cabc.Callable[[ACPState, cabc.Mapping[str, t.Any]], cabc.Iterable[Finding]]


def diagnose(state: ACPState, config: cabc.Mapping[str, t.Any], *,
             debug: bool = False) -> list[Finding]:
    """Run every check on an app's state and config (network calls: the
    store, the queue, Stripe, the agents' hosts, the platform).

    :param debug: the app runs in debug or testing mode.
    """
    findings: list[Finding] = []
    checks: list[tuple[str, Check]] = [
        ("config", lambda s, c: _config(s, c, debug=debug)),
        ("store", _store),
        ("queue", _queue),
        ("stripe", lambda s, c: _stripe(s, c, debug=debug)),
        ("webhooks", _webhook_urls),
        ("platform", _platform),
    ]
    for topic, check in checks:
        try:
            findings.extend(check(state, config))
        except Exception as exc:  # a check must report, never crash the report
            findings.append(Finding("error", topic, f"the check itself failed: {type(exc).__name__}: {exc}"))
    return findings


def _ok(topic: str, text: str) -> Finding:
    return Finding("ok", topic, text)


def _warn(topic: str, text: str) -> Finding:
    return Finding("warn", topic, text)


def _error(topic: str, text: str) -> Finding:
    return Finding("error", topic, text)


# --------------------------------------------------------------------------- configuration


def _config(state: ACPState, config: cabc.Mapping[str, t.Any], *, debug: bool) -> cabc.Iterator[Finding]:
    settings = state.settings
    yield _ok("config", f"the configuration is valid; store {safe_store_url(settings.store_url)}, "
                        f"adapter {state.adapter.name}, webhooks by {state.webhooks.mode}")
    sections: list[Section[t.Any]] = [CORE_SETTINGS, STRIPE_SETTINGS]
    if isinstance(state.adapter.settings_section, Section):
        sections.append(state.adapter.settings_section)
    for key in unknown_keys(config, sections):
        yield _warn("config", f"{key} is not a flask-acp key (ignored): remove it or fix its name")
    if not settings.require_https and not debug:
        yield _warn("config", "ACP_REQUIRE_HTTPS is off outside debug: agents' requests may come over "
                              "plain HTTP; set it to True behind your TLS proxy (and ACP_TRUSTED_PROXY_HOPS)")
    if debug:
        yield _warn("config", "the app runs in debug or testing mode: plain-HTTP webhook URLs are accepted; "
                              "never serve payments that way")


# --------------------------------------------------------------------------- store


def _store(state: ACPState, config: cabc.Mapping[str, t.Any]) -> cabc.Iterator[Finding]:
    url = state.settings.store_url
    if not is_redis(url):
        yield from _sqlite(config.get("ACP_SQLITE_PATH") or url.removeprefix("sqlite://"))
        return
    yield from _redis_server("store", url, for_store=True)


def _sqlite(path: str) -> cabc.Iterator[Finding]:
    import sqlite3

    try:
        with sqlite3.connect(path, timeout=5) as db:
            mode = db.execute("PRAGMA journal_mode").fetchone()[0]
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
        db.close()
    except sqlite3.Error as exc:
        yield _error("store", f"the SQLite file {path} cannot be written: {exc}; check the path, its "
                              "permissions and the disk")
        return
    yield _ok("store", f"SQLite {path} is writable (journal {mode}); it serves the app servers of this "
                       "one machine: to run several, use ACP_STORE_URL=redis://... (README \"Scaling out\")")


def _redis_server(topic: str, url: str, *, for_store: bool) -> cabc.Iterator[Finding]:
    """Reachability, role, persistence, eviction policy, replicas, clock skew."""
    parsed = parse_redis_url(url)
    connection = RedisConnection(parsed)
    try:
        client = connection.client
        nodes: list[tuple[str, t.Any]]
        if parsed.topology == "cluster":
            cluster = t.cast(t.Any, client)
            cluster.ping()
            info = cluster.cluster_info()
            if info.get("cluster_state") != "ok":
                yield _error(topic, f"the Redis Cluster {parsed.safe} is not ok (cluster_state "
                                    f"{info.get('cluster_state')}): fix the cluster before serving")
            nodes = [(f"{node.host}:{node.port}", node) for node in cluster.get_primaries()]
        else:
            nodes = [("", None)]
        for name, node in nodes:
            yield from _redis_node(topic, parsed.safe, client, name, node, for_store=for_store,
                                   wait_replicas=parsed.wait_replicas)
        if parsed.topology == "sentinel":
            yield from _sentinels(topic, parsed)
        skew = time.time() - connection.server_time()
        yield _skew(topic, f"Redis ({parsed.safe})", skew)
    except redis.RedisError as exc:
        yield _error(topic, f"Redis {parsed.safe} does not answer ({type(exc).__name__}: {exc}): check the "
                            "host, port, password and TLS of the URL, and that the server runs")
    except ACPError as exc:
        yield _error(topic, f"Redis {parsed.safe} does not answer ({exc.message}): check the URL and the "
                            "server")
    finally:
        connection.close()


def _redis_node(topic: str, where: str, client: t.Any, name: str, node: t.Any, *, for_store: bool,
                wait_replicas: int) -> cabc.Iterator[Finding]:
    target = {"target_nodes": node} if node is not None else {}
    label = f"{where}" + (f" (master {name})" if name else "")
    info: dict[str, t.Any] = {}
    for section in ("server", "persistence", "memory", "replication"):
        info.update(client.info(section, **target))
    yield _ok(topic, f"Redis {info.get('redis_version')} at {label} answers (role {info.get('role')})")
    if info.get("role") != "master":
        yield _error(topic, f"{label} is a replica: point the URL at the master (or use redis+sentinel://)")
    aof = str(info.get("aof_enabled")) == "1"
    try:
        save = client.config_get("save", **target).get("save", "")
        appendfsync = client.config_get("appendfsync", **target).get("appendfsync", "")
    except redis.ResponseError:  # CONFIG disabled (a managed Redis): judge by INFO only
        save, appendfsync = None, None
    if aof:
        text = f"persistence: AOF on (appendfsync {appendfsync or 'unknown'})"
        if appendfsync == "no":
            yield _warn(topic, text + ": the OS decides when it reaches the disk; set appendfsync everysec")
        else:
            yield _ok(topic, text)
    elif save:
        yield _warn(topic, f"persistence: RDB snapshots only (save {save!r}): a crash loses what changed "
                           "since the last snapshot (sessions, idempotency records, outbox events); turn on "
                           "AOF: appendonly yes, appendfsync everysec")
    elif save is None:
        yield _warn(topic, "persistence: AOF is off and the snapshot settings cannot be read (CONFIG is "
                           "disabled); make sure your provider persists this Redis")
    else:
        level = _error if for_store else _warn
        yield level(topic, "persistence is OFF (no AOF, no RDB): a restart loses every session, order "
                           "event and idempotency record; set appendonly yes (appendfsync everysec)")
    policy = str(info.get("maxmemory_policy") or "")
    if policy == "noeviction":
        yield _ok(topic, "maxmemory-policy noeviction")
    else:
        level = _error if for_store else _warn
        yield level(topic, f"maxmemory-policy is {policy or 'unknown'}: Redis may evict keys under memory "
                           "pressure, and an evicted idempotency record could mean a second charge; set "
                           "maxmemory-policy noeviction (CONFIG SET and redis.conf)")
    if wait_replicas:
        replicas = int(info.get("connected_slaves") or 0)
        if replicas < wait_replicas:
            yield _error(topic, f"wait_replicas={wait_replicas} but {label} has {replicas} connected "
                                "replica(s): every write would answer 503; add replicas or lower "
                                "wait_replicas")
        else:
            yield _ok(topic, f"{replicas} replica(s) connected; writes wait for {wait_replicas}")


def _sentinels(topic: str, parsed: t.Any) -> cabc.Iterator[Finding]:
    answering = 0
    for host, port in parsed.hosts:
        client = redis.Redis(host=host, port=port, password=parsed.sentinel_password, ssl=parsed.tls,
                             socket_connect_timeout=parsed.connect_timeout,
                             socket_timeout=parsed.socket_timeout)
        try:
            client.execute_command(  # type: ignore[no-untyped-call]
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", parsed.service)
            answering += 1
        except redis.RedisError as exc:
            yield _warn(topic, f"sentinel {host}:{port} does not answer ({exc}): a failover needs a majority")
        finally:
            client.close()
    if answering:
        yield _ok(topic, f"{answering} of {len(parsed.hosts)} sentinel(s) answer for {parsed.service}")


def _skew(topic: str, against: str, skew: float) -> Finding:
    text = f"clock: this machine is {skew:+.2f} s from {against}"
    if abs(skew) >= CLOCK_SKEW_ERROR:
        return _error(topic, text + "; run NTP (chrony, systemd-timesyncd) on every app server: outbox "
                                    "claims and leases compare their clocks")
    if abs(skew) >= CLOCK_SKEW_WARN:
        return _warn(topic, text + "; check NTP on this machine")
    return _ok(topic, text)


# --------------------------------------------------------------------------- queue


def _queue(state: ACPState, config: cabc.Mapping[str, t.Any]) -> cabc.Iterator[Finding]:
    webhooks = state.webhooks
    if webhooks.queue is None:
        if webhooks.mode == "thread":
            yield _ok("queue", "order webhooks: a delivery thread in each app process (no RQ)")
        else:
            yield _warn("queue", "order webhooks: nothing delivers them by itself (no RQ, no thread): run "
                                 "`flask acp worker`, or give an agent a webhook_url")
        return
    url = webhooks.queue.url
    if url != state.settings.store_url:
        yield from _redis_server("queue", url, for_store=False)
    from rq import Queue
    from rq import Worker

    try:
        queue = Queue(webhooks.queue.name, connection=webhooks.queue.connection)
        workers = [w for w in Worker.all(connection=webhooks.queue.connection)
                   if queue.name in w.queue_names()]
        waiting = queue.count
    except redis.RedisError as exc:
        yield _error("queue", f"RQ's Redis ({safe_store_url(url)}) does not answer: {exc}")
        return
    if workers:
        yield _ok("queue", f"{len(workers)} RQ worker(s) on {queue.name} ({waiting} job(s) waiting)")
    else:
        yield _warn("queue", f"no RQ worker listens on {queue.name} ({waiting} job(s) waiting): run "
                             "`flask acp worker` (as many as you like, on any machine)")


# --------------------------------------------------------------------------- stripe


def _stripe(state: ACPState, config: cabc.Mapping[str, t.Any], *, debug: bool) -> cabc.Iterator[Finding]:
    payments = state.payments
    if not isinstance(payments, StripePaymentProcessor):
        yield _ok("stripe", f"payments by {type(payments).__name__} (not Stripe): not checked")
        return
    key = state.stripe_settings.secret_key or ""
    mode = ("live" if key.startswith(("sk_live_", "rk_live_")) else
            "test" if key.startswith(("sk_test_", "rk_test_")) else "unknown")
    restricted = key.startswith("rk_")
    if mode == "unknown":
        yield _warn("stripe", "ACP_STRIPE_SECRET_KEY is neither an sk_ nor an rk_ key: check it")
    elif mode == "test" and not debug:
        yield _warn("stripe", "test-mode key (sk_test_): no real money moves; use your live key in "
                              "production")
    elif mode == "live" and debug:
        yield _warn("stripe", "LIVE key while the app runs in debug/testing mode: real money moves")
    else:
        yield _ok("stripe", f"{mode}-mode {'restricted ' if restricted else ''}key")
    import stripe

    client = payments.client
    started = time.time()
    try:
        response = client.raw_request("get", "/v1/account")
    except stripe.AuthenticationError:
        yield _error("stripe", "Stripe refuses ACP_STRIPE_SECRET_KEY (401): copy the secret key of your "
                               "account from the Dashboard, Developers -> API keys")
        return
    except stripe.PermissionError:
        yield _warn("stripe", "the restricted key may not read the account (403): the key works, but "
                              "ACP_STRIPE_MERCHANT_ID cannot be compared with it")
        return
    except stripe.StripeError as exc:
        yield _error("stripe", f"Stripe does not answer: {type(exc).__name__}: {exc}")
        return
    ended = time.time()
    account = str(client.deserialize(response, api_mode="V1")["id"])
    merchant = state.stripe_settings.merchant_id
    if account != merchant:
        yield _error("stripe", f"the key belongs to {account}, but ACP_STRIPE_MERCHANT_ID is {merchant}: "
                               f"agents would scope their tokens to the wrong account; set it to {account}")
    else:
        yield _ok("stripe", f"authenticated as {account}")
    date = response.headers.get("Date") or response.headers.get("date")
    if date:
        at = email.utils.parsedate_to_datetime(date).timestamp()
        # the header has a 1 s resolution: judge against the middle of the call, half a second of slack
        skew = (started + ended) / 2 - at - 0.5
        yield _skew("stripe", "Stripe", skew if abs(skew) > 0.5 else 0.0)


# --------------------------------------------------------------------------- webhooks


def _webhook_urls(state: ACPState, config: cabc.Mapping[str, t.Any]) -> cabc.Iterator[Finding]:
    for agent in state.settings.agents:
        if not agent.webhook_url:
            yield _warn("webhooks", f"agent {agent.name!r} has no webhook_url: its order events are skipped; "
                                    "ask the agent for its order-events URL")
            continue
        parts = urllib.parse.urlsplit(agent.webhook_url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        if parts.scheme != "https":
            yield _warn("webhooks", f"agent {agent.name!r}: {agent.webhook_url} is plain HTTP (accepted for "
                                    "loopback or debug only)")
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            yield _error("webhooks", f"agent {agent.name!r}: the host {host} of its webhook_url does not "
                                     f"resolve ({exc}); check the URL")
            continue
        try:
            with socket.create_connection((host, port), timeout=3):
                pass
        except OSError as exc:
            yield _warn("webhooks", f"agent {agent.name!r}: {host}:{port} refuses connections ({exc}); its "
                                    "events are retried, then fail")
            continue
        yield _ok("webhooks", f"agent {agent.name!r}: {host}:{port} accepts connections")


# --------------------------------------------------------------------------- platform


def _platform(state: ACPState, config: cabc.Mapping[str, t.Any]) -> cabc.Iterator[Finding]:
    adapter = state.adapter
    try:
        text = adapter.check_connection()
    except AdapterError as exc:
        yield _error("platform", f"{adapter.name}: {exc}; check the platform's URL and credentials "
                                 "(the README's settings table of the adapter)")
        return
    except ACPError as exc:
        yield _error("platform", f"{adapter.name}: {exc.message}")
        return
    yield _ok("platform", f"{adapter.name}: {text}")
