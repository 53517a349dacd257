"""Rate limits of the checkout API, on the ``limits`` library (the engine of
Flask-Limiter, without Flask: both bindings, REST and MCP, reach them through
the request pipeline).

Five limits, each a list of ``limits`` items (``"20/second;600/minute"``:
every item applies), counted with the sliding-window-counter strategy in the
storage ``ACP_RATE_LIMIT_STORAGE_URL`` names (Redis when the app has one,
else ``memory://``, per process):

- ``ACP_RATE_LIMIT_PER_IP``: every request of one client address, counted
  before authentication (unauthenticated floods, key guessing);
- ``ACP_RATE_LIMIT_PER_AGENT``: every checkout request of one agent;
- ``ACP_RATE_LIMIT_COMPLETE_PER_AGENT`` and ``..._PER_SESSION``: ``complete``
  requests of one agent, and of one agent on one session (card testing);
- ``ACP_RATE_LIMIT_DISCOUNT_REJECTIONS_PER_AGENT``: discount codes of one agent
  the platform rejected, over all its sessions (code guessing). It refuses no
  request: the checkout core reads :meth:`RateLimits.discount_code_standing`
  before it sends new codes to the platform, and counts each rejection with
  :meth:`RateLimits.count_discount_rejections` (a :class:`~flask_acp.counters.WindowBudget`).

A request over a limit raises :class:`~flask_acp.errors.RateLimitedError`
(429 ``rate_limit_exceeded``, ``Retry-After`` in seconds until the window lets
one more through); it is never stored under its ``Idempotency-Key``. The
per-session cool-down after failed payments is the core's
(``ACP_PAYMENT_FAILURE_LIMIT``), on the session itself.

A storage that fails (Redis down) lets requests through and logs a warning
(at most once a minute): the limits protect the service, they must not stop it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time

from limits import RateLimitItem
from limits import parse_many
from limits.errors import StorageError
from limits.storage import Storage
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from ..counters import Standing
from ..counters import WindowBudget
from ..errors import RateLimitedError
from ..store import safe_store_url
from ..store._redis import is_redis_url
from ..store._redis import limits_url

log = logging.getLogger("flask_acp")

def storage_url(explicit: str | None, *, store_url: str | None, redis_url: str | None) -> str:
    """The ``limits`` storage URL: ``ACP_RATE_LIMIT_STORAGE_URL`` when set, else the
    Redis of ``ACP_STORE_URL``, else ``ACP_REDIS_URL``'s (single server, Sentinel
    or Cluster, without flask-acp's URL options), else ``memory://``."""
    if explicit:
        return explicit
    for url in (store_url, redis_url):
        if url and is_redis_url(url):
            translated = limits_url(url)
            if translated is not None:
                return translated
            log.warning("the rate limits cannot share %s (TLS to a Sentinel or a Cluster, or a sentinel "
                        "password): they count per process; set ACP_RATE_LIMIT_STORAGE_URL",
                        safe_store_url(url))
    return "memory://"


@dataclasses.dataclass(frozen=True, slots=True)
class Refusals:
    """Requests of one agent refused by one kind of limit, counted by this
    process since it started (``limit``: ``agent``, ``complete`` or
    ``complete-session``; ``last_at``: unix seconds)."""

    agent: str
    limit: str
    count: int
    last_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class WindowState:
    """Where one agent stands in one limit's window, read from the shared
    counters: ``remaining`` requests allowed until ``reset_at`` (unix seconds)."""

    agent: str
    limit: str
    item: str
    remaining: int
    reset_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class LimitSettings:
    """The five limits, each ``limits`` notation (empty: none)."""

    per_ip: str = ""
    per_agent: str = ""
    complete_per_agent: str = ""
    complete_per_session: str = ""
    discount_rejections_per_agent: str = ""


class RateLimits:
    """Counts requests against the configured limits.

    :param settings: the limits (``limits`` notation strings).
    :param storage_url: a ``limits`` storage URL (``memory://``, ``redis://...``).
    :param namespace: prefixes every counter (apps sharing a Redis keep apart).
    """

    def __init__(self, settings: LimitSettings, storage_url: str, *, namespace: str = "acp") -> None:
        storage = storage_from_string(storage_url, wrap_exceptions=True)
        if not isinstance(storage, Storage):  # an async+ storage URL
            raise ValueError(f"{storage_url}: an async storage cannot count requests of a WSGI app")
        self.storage: Storage = storage
        self.limiter = SlidingWindowCounterRateLimiter(self.storage)
        self.namespace = namespace
        self.per_ip = _items(settings.per_ip)
        self.per_agent = _items(settings.per_agent)
        self.complete_per_agent = _items(settings.complete_per_agent)
        self.complete_per_session = _items(settings.complete_per_session)
        self.discount_rejections = WindowBudget(self.limiter, _items(settings.discount_rejections_per_agent),
                                                namespace, "discount", on_error=self._warn)
        self._warned_at = -math.inf
        self._warn_lock = threading.Lock()
        self._refused: dict[tuple[str, str], Refusals] = {}
        self._refused_ips = 0
        self._refused_lock = threading.Lock()

    def check_client(self, address: str | None) -> None:
        """Count one request of the client ``address`` (None: not known, not counted).

        :raises RateLimitedError: over ``ACP_RATE_LIMIT_PER_IP``.
        """
        if address:
            self._hit(self.per_ip, "the client address", "ip", address)

    def check_agent(self, agent: str, operation: str, session_id: str | None) -> None:
        """Count one checkout request of ``agent`` (and, for ``complete``, one
        of that agent and of that agent on ``session_id``).

        :raises RateLimitedError: over one of the limits.
        """
        self._hit(self.per_agent, "this agent", "agent", agent)
        if operation == "complete":
            self._hit(self.complete_per_agent, "complete requests of this agent", "complete", agent)
            self._hit(self.complete_per_session, "complete requests on this checkout session",
                      "complete-session", agent, session_id or "")

    def discount_code_standing(self, agent: str) -> Standing | None:
        """Rejected discount codes ``agent`` has left before its new codes
        pause, and the seconds until one more is allowed when none is left
        (``ACP_RATE_LIMIT_DISCOUNT_REJECTIONS_PER_AGENT``); None: unbounded
        (no limit, or its storage failing)."""
        return self.discount_rejections.standing(agent)

    def count_discount_rejections(self, agent: str, count: int) -> None:
        """Count ``count`` discount codes of ``agent`` the platform rejected."""
        self.discount_rejections.spend(agent, count)

    def _hit(self, items: tuple[RateLimitItem, ...], what: str, *identifiers: str) -> None:
        keys = (self.namespace, *identifiers)
        for item in items:
            try:
                allowed = self.limiter.hit(item, *keys)
                if allowed:
                    continue
                reset = self.limiter.get_window_stats(item, *keys).reset_time
            except StorageError as exc:
                self._warn(exc)
                return
            self._count_refusal(identifiers)
            retry_after = max(1, math.ceil(reset - time.time()))
            raise RateLimitedError(f"Too many requests for {what} (limit {item}); retry after "
                                   f"{retry_after} s.", retry_after=retry_after)

    def _count_refusal(self, identifiers: tuple[str, ...]) -> None:
        kind, name = identifiers[0], identifiers[1]
        now = time.time()
        with self._refused_lock:
            if kind == "ip":  # addresses are not kept: a count only
                self._refused_ips += 1
                return
            before = self._refused.get((name, kind))
            self._refused[(name, kind)] = Refusals(name, kind, (before.count if before else 0) + 1, now)

    def refusals(self) -> tuple[list[Refusals], int]:
        """The requests this process refused since it started: per agent and
        limit (most recent first), and the number refused by the per-address
        limit (before authentication: no agent). Other processes count their own."""
        with self._refused_lock:
            found = sorted(self._refused.values(), key=lambda r: r.last_at, reverse=True)
            return found, self._refused_ips

    def agent_windows(self, agent: str) -> list[WindowState]:
        """``agent``'s standing in ``ACP_RATE_LIMIT_PER_AGENT`` and
        ``..._COMPLETE_PER_AGENT`` now, from the shared counters (every process's
        requests). A storage that fails yields nothing.
        """
        states = []
        for kind, items in (("agent", self.per_agent), ("complete", self.complete_per_agent)):
            for item in items:
                try:
                    stats = self.limiter.get_window_stats(item, self.namespace, kind, agent)
                except StorageError as exc:
                    self._warn(exc)
                    return []
                states.append(WindowState(agent, kind, str(item), stats.remaining, stats.reset_time))
        return states

    def _warn(self, exc: StorageError) -> None:
        with self._warn_lock:
            now = time.monotonic()
            if now - self._warned_at < 60:
                return
            self._warned_at = now
        log.warning("rate limits not applied: their storage failed (%s)", exc.storage_error)


def _items(text: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(text)) if text.strip() else ()
