"""One delivery attempt of one outbox event: the code both delivery modes share.

:meth:`WebhookSender.deliver` is the whole attempt:

1. read the outbox row; anything but ``pending`` is left alone;
2. look the agent up in the configuration (URL and secrets come from
   ``ACP_AGENTS`` only; an agent without ``webhook_url`` gets ``skipped``);
3. under the store lock ``order-send:<order id>`` (so two workers never
   interleave the sends of one order): re-read the row, read the order's
   **current** state, render the ``WebhookEvent`` in the session's API
   version, serialise it once, sign those bytes with a fresh timestamp and
   POST them (explicit timeout, no redirects);
4. record the outcome in the row and return it.

Outcome rules: 2xx is ``delivered``; 408, 429, 5xx, timeouts and connection
errors are retried after ``ACP_WEBHOOK_RETRY_INTERVALS[attempts - 1]``
seconds, and after the last interval the row is ``failed``; any other status
(3xx, 4xx) is a permanent ``failed`` at once, logged at warning level.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.metadata
import json
import logging
import os
import threading
import time
import typing as t

import requests
from requests.adapters import HTTPAdapter

from ..config import Agent
from ..config import Settings
from ..models import JSON
from ..models import Order
from ..store.base import LockTimeoutError
from ..store.base import OutboxEntry
from ..store.base import Storage
from ..versions import VERSIONS
from .signing import sign

log = logging.getLogger("flask_acp.webhooks")

#: outbox statuses: waiting / done / given up or refused / nowhere to send
PENDING, DELIVERED, FAILED, SKIPPED = "pending", "delivered", "failed", "skipped"
STATUSES: tuple[str, ...] = (PENDING, DELIVERED, FAILED, SKIPPED)

#: HTTP statuses retried besides 5xx (timeouts and connection errors are too). 401 is
#: the spec's answer to a signature the agent cannot verify (clock skew, a secret being
#: rotated): both get fixed, so the event is retried rather than given up at once.
RETRYABLE_STATUSES = frozenset({401, 408, 429})


def _version() -> str:
    try:
        return importlib.metadata.version("flask-acp")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
        return "0"


USER_AGENT = f"flask-acp/{_version()} (order webhooks)"


@dataclasses.dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What one call of :meth:`WebhookSender.deliver` did.

    :ivar result: ``delivered``, ``retry`` (will be tried again at
        ``next_attempt_at``), ``failed`` (permanently, or retries exhausted),
        ``skipped`` (no ``webhook_url`` for the agent), ``unchanged`` (the
        event was not pending: nothing sent) or ``missing`` (no such event).
    :ivar attempts: attempts made so far, this one included.
    :ivar status_code: the receiver's HTTP status, if it answered.
    :ivar next_attempt_at: unix seconds of the next attempt (``retry`` only).
    :ivar gave_up: ``failed`` because the retries ran out (not a refusal).
    """

    event_id: str
    result: str
    attempts: int = 0
    status_code: int | None = None
    error: str | None = None
    next_attempt_at: float | None = None
    gave_up: bool = False

    @property
    def retry(self) -> bool:
        return self.result == "retry"

    def to_dict(self) -> dict[str, JSON]:
        """The outcome as JSON-able data (an RQ job's result)."""
        return dataclasses.asdict(self)


class _Response(t.NamedTuple):
    status_code: int | None
    error: str | None  # None for 2xx
    retryable: bool


def encode_body(payload: t.Mapping[str, JSON]) -> bytes:
    """Serialise a webhook payload once: compact UTF-8 JSON, the bytes that
    are signed and sent."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def rfc3339(timestamp: int) -> str:
    """``2026-04-17T10:00:00Z`` for a unix time in seconds (``Timestamp`` header)."""
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class WebhookSender:
    """Delivers outbox events of one app to the agents' webhook URLs.

    Thread-safe: each thread gets its own ``requests.Session`` (HTTP
    keep-alive to the agents), re-created after a fork.

    :param settings: the app's settings (agents, timeout in seconds, retry
        intervals in seconds).
    :param storage: the storage holding orders (sessions), the outbox and the locks.
    :param clock: returns unix seconds (tests inject their own).
    """

    def __init__(self, settings: Settings, storage: Storage, *,
                 clock: t.Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.storage = storage
        self.clock = clock
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self._env_cache: dict[str, dict[str, t.Any]] = {}

    # -- public --------------------------------------------------------------------

    def deliver(self, event_id: str, *, entry: OutboxEntry | None = None,
                skip_if_busy: bool = False) -> DeliveryOutcome:
        """Make one delivery attempt of outbox event ``event_id`` (network call,
        store writes). Safe to call twice or concurrently: only a ``pending``
        event is sent, and sends of one order are serialised by a store lock.

        :param entry: the event's outbox row, if the caller just read it.
        :param skip_if_busy: when another send of the same order holds the
            order's lock, return ``busy`` at once and record nothing (instead
            of waiting for the lock and recording a retry).

        Unexpected errors (store failures) propagate; the row is then unchanged.
        """
        if entry is None:
            entry = self.storage.outbox.get(event_id)
        if entry is None:
            log.warning("webhook event %s: not in the outbox", event_id)
            return DeliveryOutcome(event_id, "missing")
        if entry.status != PENDING:
            return DeliveryOutcome(event_id, "unchanged", entry.attempts)
        agent = self._agent(entry.agent)
        if agent is None or not agent.webhook_url or not agent.webhook_secrets:
            why = (f"agent {entry.agent!r} is not configured" if agent is None
                   else f"no webhook_url configured for agent {entry.agent!r}" if not agent.webhook_url
                   else f"no webhook_secrets configured for agent {entry.agent!r}")
            self.storage.outbox.update(event_id, status=SKIPPED, last_error=why)
            log.info("webhook event %s skipped: %s", event_id, why)
            return DeliveryOutcome(event_id, SKIPPED, entry.attempts, error=why)
        timeout = self.settings.webhook_timeout
        try:
            with self.storage.locks.lock(f"order-send:{entry.order_id}", lease=2 * timeout + 30,
                                 wait=0.0 if skip_if_busy else timeout + 5):
                current = self.storage.outbox.get(event_id)
                if current is None or current.status != PENDING:
                    return DeliveryOutcome(event_id, "unchanged", entry.attempts if current is None
                                           else current.attempts)
                order, version = self._order(current)
                if order is None:
                    return self._record(current, _Response(None, f"order {current.order_id} not found",
                                                           retryable=False))
                body = encode_body(VERSIONS[version].render_event(current.type, order))
                response = self._post(agent.webhook_url, agent.webhook_secrets[0], event_id, body)
                return self._record(current, response)
        except LockTimeoutError:
            if skip_if_busy:
                return DeliveryOutcome(event_id, "busy", entry.attempts)
            latest = self.storage.outbox.get(event_id) or entry
            if latest.status != PENDING:
                return DeliveryOutcome(event_id, "unchanged", latest.attempts)
            return self._record(latest, _Response(
                None, "another delivery of this order is still running", retryable=True))

    def drain(self, *, limit: int, seconds: float, lease: float, deadline: float | None = None,
              first_attempts_only: bool = True) -> list[DeliveryOutcome]:
        """Deliver other due ``pending`` events in the calling thread, oldest first,
        until none is left, ``limit`` attempts were made or ``seconds`` have passed
        (network calls, store writes): the batch an RQ job runs after its own event.

        Each event is first claimed with ``Outbox.claim`` (``lease`` seconds), so
        two drains never pick the same one; the attempt itself is :meth:`deliver`
        (order lock, re-read of the row, current state), made with
        ``skip_if_busy``: an order whose lock is held is left to its own job.

        :param deadline: ``time.monotonic()`` value after which no attempt starts
            (an attempt may take up to ``ACP_WEBHOOK_TIMEOUT`` more).
        :param first_attempts_only: only events never attempted (retries are left
            to their own jobs, which schedule them with the configured intervals).
        :returns: the outcomes of the attempts made.
        """
        started = time.monotonic()
        stop = started + seconds if deadline is None else min(started + seconds, deadline)
        outcomes: list[DeliveryOutcome] = []
        skipped: set[str] = set()
        while len(outcomes) < limit and time.monotonic() < stop:
            now = self.clock()
            rows = [e for e in self.storage.outbox.entries(
                statuses=[PENDING], due_before=now, limit=min(100, limit - len(outcomes)) + len(skipped),
                max_attempts=0 if first_attempts_only else None) if e.event_id not in skipped]
            if not rows:
                break
            for row in rows:
                if len(outcomes) >= limit or time.monotonic() >= stop:
                    break
                skipped.add(row.event_id)
                if not self.storage.outbox.claim(row.event_id, now=now, lease=lease):
                    continue  # someone else has it
                try:
                    outcome = self.deliver(row.event_id, entry=row, skip_if_busy=True)
                except Exception:
                    log.exception("webhook event %s: delivery attempt crashed; its own job retries it",
                                  row.event_id)
                    continue
                if outcome.result != "busy":
                    outcomes.append(outcome)
        return outcomes

    def close(self) -> None:
        """Close the HTTP sessions (connections to the agents)."""
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()

    def close_thread_session(self) -> None:
        """Close the calling thread's HTTP session (a delivery thread ending)."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            return
        self._local.session = None
        with self._sessions_lock:
            if session in self._sessions:
                self._sessions.remove(session)
        session.close()

    # -- machinery -----------------------------------------------------------------

    def _agent(self, name: str) -> Agent | None:
        try:
            return self.settings.agent(name)
        except KeyError:
            return None

    def _order(self, entry: OutboxEntry) -> tuple[Order | None, str]:
        session = self.storage.sessions.get(entry.session_id)
        newest = self.settings.api_versions[0]
        if session is None or session.order is None or session.order.id != entry.order_id:
            return None, newest
        version = session.api_version if session.api_version in VERSIONS else newest
        return session.order, version

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None or getattr(self._local, "pid", None) != os.getpid():
            session = requests.Session()
            adapter = HTTPAdapter(max_retries=0)  # retries are ours, with back-off
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session.headers["User-Agent"] = USER_AGENT
            # environment (proxies, CA bundle) read once per URL by _environment(),
            # not on every request; never .netrc credentials
            session.trust_env = False
            self._local.session = session
            self._local.pid = os.getpid()
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def _environment(self, session: requests.Session, url: str) -> dict[str, t.Any]:
        """``proxies`` and ``verify`` for ``url`` from the environment
        (``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``...), as requests
        would read them, computed once per URL."""
        found = self._env_cache.get(url)
        if found is None:
            probe = requests.Session()
            try:
                merged = probe.merge_environment_settings(url, {}, False, None, None)
            finally:
                probe.close()
            found = self._env_cache[url] = {"proxies": merged["proxies"], "verify": merged["verify"]}
        return found

    def _post(self, url: str, secret: str, event_id: str, body: bytes) -> _Response:
        stamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            "Merchant-Signature": sign(body, secret, timestamp=stamp),
            "Request-Id": event_id,
            "Timestamp": rfc3339(stamp),
        }
        timeout = self.settings.webhook_timeout
        session = self._session()
        try:
            with session.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False,
                              stream=True, **self._environment(session, url)) as response:
                code = response.status_code
                # never read more of the agent's answer than we log: its size is not ours to trust
                head = next(response.iter_content(512), b"") if code >= 300 else b""
                snippet = head.decode("utf-8", "replace")[:200].strip()
        except requests.Timeout:
            return _Response(None, f"timed out after {timeout:g} s", retryable=True)
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as exc:
            return _Response(None, f"invalid webhook_url: {exc}", retryable=False)
        except requests.RequestException as exc:
            return _Response(None, f"{type(exc).__name__}: {exc}"[:300], retryable=True)
        if 200 <= code < 300:
            return _Response(code, None, retryable=False)
        detail = f"HTTP {code}" + (f": {snippet}" if snippet else "")
        if 300 <= code < 400:
            detail += " (redirects are not followed; fix webhook_url)"
        return _Response(code, detail, retryable=code >= 500 or code in RETRYABLE_STATUSES)

    def _record(self, entry: OutboxEntry, response: _Response) -> DeliveryOutcome:
        now = self.clock()
        attempts = entry.attempts + 1
        event_id = entry.event_id
        if response.error is None:
            self.storage.outbox.update(event_id, status=DELIVERED, attempts=attempts, delivered_at=now,
                                     last_status=response.status_code, last_error=None)
            log.info("webhook event %s (%s, order %s) delivered to %s: HTTP %s, attempt %d",
                     event_id, entry.type, entry.order_id, entry.agent, response.status_code, attempts)
            return DeliveryOutcome(event_id, DELIVERED, attempts, response.status_code)
        intervals = self.settings.webhook_retry_intervals
        if not response.retryable:
            self.storage.outbox.update(event_id, status=FAILED, attempts=attempts,
                                     last_status=response.status_code, last_error=response.error)
            log.warning("webhook event %s (%s, order %s) refused by agent %s, not retried: status %s: %s",
                        event_id, entry.type, entry.order_id, entry.agent, response.status_code,
                        response.error)
            return DeliveryOutcome(event_id, FAILED, attempts, response.status_code, response.error)
        if attempts > len(intervals):
            error = f"gave up after {attempts} attempts: {response.error}"
            self.storage.outbox.update(event_id, status=FAILED, attempts=attempts,
                                     last_status=response.status_code, last_error=error)
            log.error("webhook event %s (%s, order %s) to agent %s failed: %s",
                      event_id, entry.type, entry.order_id, entry.agent, error)
            return DeliveryOutcome(event_id, FAILED, attempts, response.status_code, error, gave_up=True)
        next_at = now + intervals[attempts - 1]
        self.storage.outbox.update(event_id, attempts=attempts, next_attempt_at=next_at,
                                 last_status=response.status_code, last_error=response.error)
        log.warning("webhook event %s (%s, order %s) to agent %s: attempt %d failed (%s); next in %d s",
                    event_id, entry.type, entry.order_id, entry.agent, attempts, response.error,
                    intervals[attempts - 1])
        return DeliveryOutcome(event_id, "retry", attempts, response.status_code, response.error, next_at)
