"""Outbox -> RQ: enqueue one delivery job per order event (``ACP_REDIS_URL`` set).

Job shape (``rq>=2.8``; written against rq 3.0):

- function ``flask_acp.webhooks.jobs.deliver_order_event(event_id)``: its only
  argument is the outbox event id. No URL, secret or payload goes to Redis;
  the worker reads them from its app's configuration and store;
- ``JSONSerializer`` on the queue (and on the worker), never pickle;
- job id ``acp-evt-<event id>``, enqueued with ``unique=True``: an event is
  never queued twice; enqueueing it again while its job is queued, scheduled
  or running is a no-op;
- ``Retry(max=<retries left>, interval=<their intervals>)`` from
  ``ACP_WEBHOOK_RETRY_INTERVALS`` (seconds; needs a worker running the RQ
  scheduler), ``job_timeout`` = 2 x ``ACP_WEBHOOK_TIMEOUT`` + 60 s,
  ``result_ttl`` = :data:`RESULT_TTL`, ``failure_ttl`` = :data:`FAILURE_TTL`.

The outbox stays the source of truth: a row's ``enqueued_at`` records the
hand-over, and :meth:`WebhookQueue.sweep` re-enqueues any pending row that
was never handed over (Redis down at commit time, a crash right after the
commit) or whose job vanished (Redis restarted without persistence).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import typing as t

from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry as RedisRetry
from rq import Queue
from rq import Retry
from rq.exceptions import DuplicateJobError
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from ..config import Settings
from ..store.base import Outbox
from .delivery import PENDING

log = logging.getLogger("flask_acp.webhooks")

#: the job function, as the worker imports it
JOB_FUNCTION = "flask_acp.webhooks.jobs.deliver_order_event"
#: seconds a finished job's result is kept (the outbox keeps the outcome anyway)
RESULT_TTL = 3600
#: seconds a failed job is kept in RQ's failed registry for inspection (30 days)
FAILURE_TTL = 30 * 86400
#: seconds after which a pending row handed to RQ is checked again by the sweeper
STALE_AFTER = 60.0

_ALIVE = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.STARTED, JobStatus.DEFERRED})


def job_id(event_id: str) -> str:
    """The RQ job id of an event: ``acp-evt-<event id>`` (RQ allows only
    letters, digits, ``_`` and ``-``; anything else becomes ``_``)."""
    return "acp-evt-" + re.sub(r"[^A-Za-z0-9_-]", "_", event_id)


def connect(url: str, *, fail_fast: bool = True) -> Redis:
    """A Redis client for ``url``.

    :param fail_fast: for the web process: 2 s connect / 5 s socket timeouts
        and a single retry, so a Redis outage costs a completion milliseconds,
        not the client library's default back-off.
    """
    if fail_fast:
        return Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5,
                              retry=RedisRetry(NoBackoff(), 1))
    return Redis.from_url(url, socket_connect_timeout=5)


class WebhookQueue:
    """Hands outbox events to RQ. One per app; the Redis client is created
    lazily and again after a fork (one per process).

    :param settings: ``redis_url``, ``webhook_queue``, retry intervals, timeout.
    :param outbox: the outbox.
    """

    def __init__(self, settings: Settings, outbox: Outbox, *,
                 clock: t.Callable[[], float] = time.time) -> None:
        if not settings.redis_url:
            raise ValueError("WebhookQueue needs ACP_REDIS_URL")
        self.settings = settings
        self.outbox = outbox
        self.clock = clock
        self.url: str = settings.redis_url
        self.name = settings.webhook_queue
        self._pid = -1
        self._redis: Redis | None = None
        self._queue: Queue | None = None
        self._lock = threading.Lock()

    @property
    def job_timeout(self) -> int:
        """Seconds a job may run: two HTTP timeouts (lock wait + send) and a minute."""
        return int(2 * self.settings.webhook_timeout + 60)

    @property
    def connection(self) -> Redis:
        """This process's Redis client (fail-fast settings, see :func:`connect`)."""
        return self.queue.connection

    @property
    def queue(self) -> Queue:
        """This process's RQ queue (``JSONSerializer``)."""
        with self._lock:
            if self._queue is None or self._pid != os.getpid():
                self._redis = connect(self.url)
                self._queue = Queue(self.name, connection=self._redis, serializer=JSONSerializer)
                self._pid = os.getpid()
            return self._queue

    def enqueue(self, event_id: str, *, attempts: int = 0) -> str:
        """Queue the delivery job of ``event_id`` unless it already is (Redis
        writes; marks the row ``enqueued_at``).

        :param attempts: attempts already made; the job gets the remaining
            retries and their intervals.
        :returns: ``queued``, or ``already_queued`` (its job is queued,
            scheduled or running).
        :raises redis.exceptions.RedisError: Redis unreachable.
        """
        queue = self.queue
        jid = job_id(event_id)
        for _ in range(3):
            try:
                self._enqueue(queue, event_id, attempts)
                result = "queued"
                break
            except DuplicateJobError:
                try:
                    job = Job.fetch(jid, connection=queue.connection, serializer=JSONSerializer)
                except NoSuchJobError:
                    continue  # expired in between: try again
                if job.get_status(refresh=True) in _ALIVE:
                    result = "already_queued"
                    break
                # a finished or failed job of an event that is pending again
                entry = self.outbox.get(event_id)
                if entry is None or entry.status != PENDING:
                    return "already_queued"
                job.delete()
                attempts = entry.attempts
        else:  # pragma: no cover - three races in a row
            raise RuntimeError(f"could not enqueue {jid}")
        self.outbox.update(event_id, enqueued_at=self.clock())
        return result

    def _enqueue(self, queue: Queue, event_id: str, attempts: int) -> Job:
        intervals = list(self.settings.webhook_retry_intervals)
        retries = len(intervals) - attempts
        return queue.enqueue_call(
            JOB_FUNCTION,
            args=(event_id,),
            job_id=job_id(event_id),
            unique=True,
            retry=Retry(max=retries, interval=intervals[attempts:]) if retries > 0 else None,
            timeout=self.job_timeout,
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            description=f"deliver order event {event_id}",
        )

    def sweep(self, *, now: float | None = None, stale_after: float = STALE_AFTER) -> int:
        """Enqueue every due ``pending`` row not handed to RQ since
        ``stale_after`` seconds (never handed over: always). Idempotent.

        :returns: how many jobs were actually queued (already queued ones not counted).
        :raises redis.exceptions.RedisError: Redis unreachable.
        """
        now = self.clock() if now is None else now
        queued = 0
        seen: set[str] = set()
        while True:
            batch = [e for e in self.outbox.entries(
                statuses=[PENDING], due_before=now, not_enqueued_since=now - stale_after, limit=100)
                if e.event_id not in seen]
            if not batch:
                return queued
            for entry in batch:
                seen.add(entry.event_id)
                if self.enqueue(entry.event_id, attempts=entry.attempts) == "queued":
                    queued += 1

    def discard(self, event_id: str) -> None:
        """Delete the job of ``event_id`` if it is not running (before a replay).

        :raises RuntimeError: the job is running right now.
        """
        try:
            job = Job.fetch(job_id(event_id), connection=self.connection, serializer=JSONSerializer)
        except NoSuchJobError:
            return
        if job.get_status(refresh=True) == JobStatus.STARTED:
            raise RuntimeError(f"event {event_id} is being delivered right now; try again in a moment")
        job.delete()

    def close(self) -> None:
        """Disconnect this process's Redis client."""
        with self._lock:
            redis, self._redis, self._queue = self._redis, None, None
        if redis is not None:
            redis.close()
