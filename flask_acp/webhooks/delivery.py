"""One send of one claimed outbox event: the HTTP side of delivery.

:meth:`WebhookSender.send` looks the agent up in the configuration (URL and
secrets come from ``ACP_AGENTS`` only; an agent without ``webhook_url`` gets
``skipped``), reads the order's **current** state, renders the
``WebhookEvent`` in the agent's configured API version
(``ACP_AGENTS[name]["api_version"]``), serialises it once, signs those
bytes as that version signs (with a fresh timestamp: a retry hours later is
signed anew) and POSTs them with ``Request-Id`` = the event id (explicit
timeout, no redirects, at most 512 bytes of the answer read). It returns what
happened (:class:`~flask_acp.webhooks.outbox.SendResult`) and writes nothing:
whether and when to try again is decided by :mod:`flask_acp.webhooks.outbox`,
which also holds the claim that keeps other sends of the same order away.

Outcome classes: 2xx is a success; 401, 408, 429, 5xx, timeouts and
connection errors may pass (retried); anything else (3xx, other 4xx, an
invalid URL) is a refusal.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
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
from ..store.base import OutboxEntry
from ..store.base import Sessions
from ..versions import VERSIONS
from .outbox import DELIVERED as DELIVERED
from .outbox import FAILED as FAILED
from .outbox import PENDING as PENDING
from .outbox import RETRYABLE_STATUSES as RETRYABLE_STATUSES
from .outbox import SKIPPED as SKIPPED
from .outbox import STATUSES as STATUSES
from .outbox import DeliveryOutcome as DeliveryOutcome
from .outbox import SendResult
from .outbox import retryable_status
from .signing import sign
from .signing import sign_body


def _version() -> str:
    try:
        return importlib.metadata.version("flask-acp")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
        return "0"


USER_AGENT = f"flask-acp/{_version()} (order webhooks)"


def encode_body(payload: t.Mapping[str, JSON]) -> bytes:
    """Serialise a webhook payload once: compact UTF-8 JSON, the bytes that
    are signed and sent."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def rfc3339(timestamp: int) -> str:
    """``2026-04-17T10:00:00Z`` for a unix time in seconds (``Timestamp`` header)."""
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class WebhookSender:
    """Sends claimed outbox events of one app to the agents' webhook URLs.

    Thread-safe: each thread gets its own ``requests.Session`` (HTTP
    keep-alive to the agents), re-created after a fork.

    :param settings: the app's settings (agents, timeout in seconds).
    :param sessions: the checkout sessions (the orders' current state).
    :param clock: returns unix seconds, the signature's timestamp (tests
        inject their own).
    """

    def __init__(self, settings: Settings, sessions: Sessions, *,
                 clock: t.Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.sessions = sessions
        self.clock = clock
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self._env_cache: dict[str, dict[str, t.Any]] = {}

    # -- public --------------------------------------------------------------------

    def send(self, entry: OutboxEntry) -> SendResult:
        """Send outbox event ``entry`` once, as its order stands now (network
        call; nothing written). The caller holds the event's claim.

        :returns: ``skipped`` when the agent has no ``webhook_url`` or secrets;
            else the agent's status or the transport error, and whether that
            failure may pass; an order that no longer exists is a refusal.
        """
        agent = self._agent(entry.agent)
        if agent is None or not agent.webhook_url or not agent.webhook_secrets:
            why = (f"agent {entry.agent!r} is not configured" if agent is None
                   else f"no webhook_url configured for agent {entry.agent!r}" if not agent.webhook_url
                   else f"no webhook_secrets configured for agent {entry.agent!r}")
            return SendResult(None, why, skipped=True)
        order = self._order(entry)
        if order is None:
            return SendResult(None, f"order {entry.order_id} not found")
        wire = VERSIONS[agent.api_version or self.settings.api_versions[0]]
        body = encode_body(wire.render_event(entry.type, order))
        return self._post(agent.webhook_url, agent.webhook_secrets[0], entry.event_id, body,
                          timestamped=wire.webhook_signature == "timestamped")

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

    def _order(self, entry: OutboxEntry) -> Order | None:
        session = self.sessions.get(entry.session_id)
        if session is None or session.order is None or session.order.id != entry.order_id:
            return None
        return session.order

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

    def _post(self, url: str, secret: str, event_id: str, body: bytes, *, timestamped: bool) -> SendResult:
        stamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            "Merchant-Signature": (sign(body, secret, timestamp=stamp) if timestamped
                                   else sign_body(body, secret)),
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
            return SendResult(None, f"timed out after {timeout:g} s", retryable=True)
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as exc:
            return SendResult(None, f"invalid webhook_url: {exc}", retryable=False)
        except requests.RequestException as exc:
            return SendResult(None, f"{type(exc).__name__}: {exc}"[:300], retryable=True)
        if 200 <= code < 300:
            return SendResult(code)
        detail = f"HTTP {code}" + (f": {snippet}" if snippet else "")
        if 300 <= code < 400:
            detail += " (redirects are not followed; fix webhook_url)"
        return SendResult(code, detail, retryable=retryable_status(code))
