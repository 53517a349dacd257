"""The per-app webhook facade kept in ``app.extensions["acp"].webhooks``.

Modes, chosen once from the configuration:

- ``rq`` (``ACP_REDIS_URL`` set): :meth:`WebhookService.on_events` enqueues
  one RQ job per event right after the commit, best effort; ``flask acp
  worker`` runs the jobs and sweeps the outbox every ``--sweep-interval``
  seconds, handing over the events that came due (retries) or never reached
  the queue.
- ``thread`` (no Redis, ``ACP_WEBHOOK_DELIVERY_THREAD`` true, at least one
  agent with a ``webhook_url``): a daemon thread per process delivers from
  the outbox (:mod:`flask_acp.webhooks.thread`).
- ``manual``: nothing runs by itself; call :meth:`WebhookService.deliver` or
  :meth:`WebhookService.run_pending` (tests, or ``flask acp worker`` without
  Redis).

Every runner makes its attempts through one
:class:`~flask_acp.webhooks.outbox.OutboxDelivery` (:attr:`WebhookService.delivery`):
the outbox decides when an event is due and who holds it, with the same retry
rules in every mode.
"""

from __future__ import annotations

import collections.abc as cabc
import logging
import time
import typing as t
import urllib.parse

import flask

from ..config import Settings
from ..config import config_error
from ..models import OrderEvent
from ..store.base import OutboxClaimedError
from ..store.base import OutboxEntry
from ..store.base import Storage
from .delivery import WebhookSender
from .outbox import DELIVERED
from .outbox import FAILED
from .outbox import PENDING
from .outbox import SKIPPED
from .outbox import DeliveryOutcome
from .outbox import OutboxDelivery
from .outbox import Send
from .outbox import SendResult
from .thread import DeliveryThread

if t.TYPE_CHECKING:
    from .queue import WebhookQueue

log = logging.getLogger("flask_acp.webhooks")


def check_agents(settings: Settings, *, allow_http: bool) -> None:
    """Validate the agents' webhook settings at ``init_app``.

    :param allow_http: plain ``http://`` URLs are accepted (debug/testing); plain
        http to a loopback host (a local receiver) is always accepted.
    :raises RuntimeError: naming the agent: a non-https ``webhook_url``
        outside debug/testing, or a ``webhook_url`` without ``webhook_secrets``.
    """
    for agent in settings.agents:
        if agent.feed_url:
            parts = urllib.parse.urlsplit(agent.feed_url)
            loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
            scheme = parts.scheme.lower()
            if scheme != "https" and not (scheme == "http" and (allow_http or loopback)):
                raise RuntimeError(
                    f"ACP_AGENTS[{agent.name!r}].feed_url must be an https:// URL (plain http is accepted "
                    f"for loopback hosts, or in debug or testing mode), got {agent.feed_url!r}")
        if not agent.webhook_url:
            continue
        parts = urllib.parse.urlsplit(agent.webhook_url)
        scheme = parts.scheme.lower()
        loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
        if scheme != "https" and not (scheme == "http" and (allow_http or loopback)):
            raise config_error([(f"ACP_AGENTS[{agent.name!r}].webhook_url",
                                 "must be an https:// URL (plain http is accepted for loopback hosts, or "
                                 f"when the app runs in debug or testing mode), got {agent.webhook_url!r}")])
        if not agent.webhook_secrets:
            raise config_error([(f"ACP_AGENTS[{agent.name!r}]",
                                 "has a webhook_url but no webhook_secrets: set webhook_secrets to "
                                 "[\"<shared secret, 16+ chars>\"] to sign its order webhooks")])


class WebhookService:
    """Delivery of order events to agents for one app.

    :param settings: the app's settings.
    :param storage: the storage holding orders (sessions) and the outbox.
    :param clock: returns unix seconds.
    """

    def __init__(self, settings: Settings, storage: Storage, *,
                 clock: t.Callable[[], float] = time.time,
                 senders: cabc.Mapping[str, Send] | None = None) -> None:
        self.settings = settings
        self.storage = storage
        self.clock = clock
        self.sender = WebhookSender(settings, storage.sessions, clock=clock)
        #: the send of other event kinds than order events (``feed_products``:
        #: :class:`flask_acp.feed.sync.FeedSender`), by ``OutboxEntry.type``
        self.senders: dict[str, Send] = dict(senders or {})
        #: claims, attempts, records: what every runner calls
        self.delivery = OutboxDelivery(storage.outbox, self._send,
                                       intervals=settings.webhook_retry_intervals,
                                       lease=self.claim_lease(settings), clock=clock)
        self.queue: WebhookQueue | None = None
        self.thread: DeliveryThread | None = None
        if settings.redis_url:
            from .queue import WebhookQueue  # rq and redis are needed in this mode only

            self.queue = WebhookQueue(settings, storage.outbox, clock=clock)
        elif settings.webhook_delivery_thread and any(a.webhook_url or a.feed_url for a in settings.agents):
            self.thread = DeliveryThread(self.delivery, on_exit=self.sender.close_thread_session)

    def _send(self, entry: OutboxEntry) -> SendResult:
        send = self.senders.get(entry.type, self.sender.send)
        return send(entry)

    @staticmethod
    def claim_lease(settings: Settings) -> float:
        """Seconds an attempt holds its event (and its order): above one send's
        worst case (two HTTP timeouts: connect, read), plus 30 s."""
        return 2 * settings.webhook_timeout + 30

    @property
    def mode(self) -> str:
        """``rq``, ``thread`` or ``manual`` (see the module docstring)."""
        return "rq" if self.queue is not None else "thread" if self.thread is not None else "manual"

    # -- hand-over -----------------------------------------------------------------

    def on_events(self, events: cabc.Sequence[OrderEvent]) -> None:
        """Hook called by the checkout and order services right after the events
        were committed. Never raises: a failure here (Redis down) only delays
        delivery until the next sweep."""
        if self.queue is not None:
            for event in events:
                try:
                    self.queue.enqueue(event.id)
                except Exception as exc:
                    log.warning("webhook event %s not queued (%s: %s); the outbox sweeper will queue it",
                                event.id, type(exc).__name__, exc)
        elif self.thread is not None and events:
            if not flask.has_request_context():
                # a CLI command or a script: a daemon thread would die with it mid-send;
                # make one attempt now, the app's thread (or a sweep) does the retries
                for event in events:
                    try:
                        self.deliver(event.id)
                    except Exception:
                        log.exception("webhook event %s: attempt failed; it stays pending", event.id)
                return
            try:
                self.thread.wake()
            except Exception:  # pragma: no cover - thread creation failing
                log.exception("could not start the webhook delivery thread")

    def start(self) -> None:
        """Start the delivery thread of this process if the mode has one (the
        extension calls this before each request; cheap when running)."""
        if self.thread is not None:
            self.thread.start()

    # -- delivery ------------------------------------------------------------------

    def deliver(self, event_id: str) -> DeliveryOutcome:
        """One delivery attempt of pending event ``event_id`` now, whatever its
        schedule (network call, outbox writes), waiting up to
        ``ACP_WEBHOOK_TIMEOUT`` + 5 seconds while another runner sends an event
        of its order (then ``busy``). See :meth:`OutboxDelivery.deliver`."""
        return self.delivery.deliver(event_id, wait=self.settings.webhook_timeout + 5)

    def run_pending(self, now: float | None = None) -> int:
        """Claim and attempt the due pending events (up to 50), in the calling
        thread (network calls). Works in every mode; RQ mode normally leaves this
        to jobs.

        :param now: unix seconds to judge due-ness by (default: the clock).
        :returns: how many attempts were made.
        """
        return len(self.delivery.deliver_due(limit=50, now=now))

    def sweep(self, *, now: float | None = None, stale_after: float | None = None) -> int:
        """RQ mode: enqueue the due events the outbox says await a runner
        (retries come due, events never handed to RQ, or handed over more than
        ``stale_after`` seconds ago). Thread mode: attempt the due pending
        events once, in the calling thread. Manual mode: nothing.

        :param now: unix seconds (default: the clock).
        :returns: jobs queued (thread mode: attempts made).
        :raises redis.exceptions.RedisError: Redis unreachable.
        """
        if self.queue is None:
            # thread mode: attempt the due events now, so a cron'd `flask acp sweep`
            # delivers even before the restarted app has seen a request
            return self.run_pending(now) if self.thread is not None else 0
        if stale_after is None:
            return self.queue.sweep(now=now)
        return self.queue.sweep(now=now, stale_after=stale_after)

    def replay(self, event_id: str) -> str:
        """Reset an event (any status) to ``pending`` with no attempts and hand it
        to the delivery again: RQ mode enqueues it; thread mode wakes the thread
        (in a process without one, e.g. the CLI, the app's thread finds it).

        :returns: ``queued``, ``pending`` (left to the thread / sweeper).
        :raises KeyError: unknown event id.
        :raises RuntimeError: an attempt of it is running right now (its claim,
            or its RQ job).
        :raises redis.exceptions.RedisError: Redis unreachable (when checking for
            an old job: nothing changed; when enqueueing: the row is pending and
            the sweeper queues it later).
        """
        if self.storage.outbox.get(event_id) is None:
            raise KeyError(event_id)
        if self.queue is not None:
            self.queue.discard(event_id)
        try:
            if not self.storage.outbox.reset(event_id, now=self.clock()):
                raise KeyError(event_id)
        except OutboxClaimedError:
            raise RuntimeError(
                f"event {event_id} is being delivered right now; try again in a moment") from None
        log.info("webhook event %s reset to pending for replay", event_id)
        if self.queue is not None:
            self.queue.enqueue(event_id)
            return "queued"
        if self.thread is not None:
            self.thread.wake()
        return PENDING

    def replay_failed(self, *, on_each: cabc.Callable[[], None] | None = None) -> list[tuple[str, str]]:
        """:meth:`replay` every ``failed`` event, oldest first.

        :param on_each: called after each event (a progress bar).
        :returns: ``(event id, replay result or "error: ...")`` per event.
        """
        seen: set[str] = set()
        results: list[tuple[str, str]] = []
        while True:
            batch = [e for e in self.storage.outbox.entries(statuses=[FAILED], limit=100)
                     if e.event_id not in seen]
            if not batch:
                return results
            for entry in batch:
                seen.add(entry.event_id)
                try:
                    results.append((entry.event_id, self.replay(entry.event_id)))
                except Exception as exc:
                    results.append((entry.event_id, f"error: {type(exc).__name__}: {exc}"))
                if on_each is not None:
                    on_each()

    def close(self) -> None:
        """Stop the thread, close HTTP sessions and the Redis client (tests,
        shutdown hooks)."""
        if self.thread is not None:
            self.thread.stop()
        self.sender.close()
        if self.queue is not None:
            self.queue.close()


__all__ = ["DELIVERED", "FAILED", "PENDING", "SKIPPED", "WebhookService", "check_agents"]


def current_webhooks() -> WebhookService:
    """The webhook service of the app handling the current request, job or CLI
    command (needs an app context)."""
    service = flask.current_app.extensions["acp"].webhooks
    if not isinstance(service, WebhookService):  # pragma: no cover - init_app builds it
        raise RuntimeError("flask-acp is not initialised on this app")
    return service
