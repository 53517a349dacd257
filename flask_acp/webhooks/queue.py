"""Outbox -> RQ: hand due order events to RQ, one job per event (``ACP_REDIS_URL`` set).

RQ only runs the attempts; it schedules nothing. The outbox decides when an
event is due (its first attempt at once, each retry after its interval of
``ACP_WEBHOOK_RETRY_INTERVALS``) and who holds it (its claim); this module
wakes a worker for each due event:

- right after the commit that wrote it (:meth:`WebhookQueue.enqueue`, from
  the web process);
- from :meth:`WebhookQueue.sweep` (run every ``--sweep-interval`` seconds by
  ``flask acp worker``, and by ``flask acp sweep``) for every due event the
  outbox says awaits a runner: a retry now due, an event never handed over
  (Redis down at commit time, a crash right after the commit), or one handed
  over more than :data:`STALE_AFTER` seconds ago whose job vanished (Redis
  restarted without persistence).

Job shape (``rq>=2.8``; written against rq 3.0):

- function ``flask_acp.webhooks.jobs.deliver_order_event(event_id)``: its only
  argument is the outbox event id. No URL, secret or payload goes to Redis;
  the worker reads them from its app's configuration and store;
- ``JSONSerializer`` on the queue (and on the worker), never pickle;
- job id ``acp-evt-<event id>``, enqueued with ``unique=True``: while its job
  is queued or running an event is not queued twice (a finished or failed job
  of an event due again is replaced);
- no RQ ``Retry``; ``job_timeout`` = 2 x ``ACP_WEBHOOK_TIMEOUT`` + 60 s,
  ``result_ttl`` = :data:`RESULT_TTL`, ``failure_ttl`` = :data:`FAILURE_TTL`
  (a job whose event was given up stays in RQ's failed registry).

A row's ``enqueued_at`` records the last hand-over.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import typing as t

from redis import Redis
from rq import Queue
from rq.exceptions import DuplicateJobError
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from ..config import Settings
from ..store._redis import make_client
from ..store._redis import parse_redis_url
from ..store.base import Outbox
from .outbox import PENDING

log = logging.getLogger("flask_acp.webhooks")

#: the job function, as the worker imports it
JOB_FUNCTION = "flask_acp.webhooks.jobs.deliver_order_event"
#: seconds a finished job's result is kept (the outbox keeps the outcome anyway)
RESULT_TTL = 3600
#: seconds a failed job is kept in RQ's failed registry for inspection (30 days)
FAILURE_TTL = 30 * 86400
#: seconds after which a due row handed to RQ is handed over again by the sweep
STALE_AFTER = 60.0

#: job states that will still run the job (nothing of ours is scheduled or deferred in RQ:
#: such a job is a leftover of an older release and is replaced)
_ALIVE = frozenset({JobStatus.QUEUED, JobStatus.STARTED})


def job_id(event_id: str) -> str:
    """The RQ job id of an event: ``acp-evt-<event id>`` (RQ allows only
    letters, digits, ``_`` and ``-``; anything else becomes ``_``)."""
    return "acp-evt-" + re.sub(r"[^A-Za-z0-9_-]", "_", event_id)


def connect(url: str, *, fail_fast: bool = True) -> Redis:
    """A Redis client for ``url`` (``redis://``, ``rediss://``, ``unix://`` or
    ``redis+sentinel://``: the master the sentinels name, found again after a
    failover; the storage URL's options are accepted).

    :param fail_fast: for the web process: the URL's connect / socket timeouts
        (2 s / 5 s by default) and a single retry, so a Redis outage costs a
        completion milliseconds, not the client library's default back-off;
        ``False`` (a worker): no read timeout.
    :raises ValueError: a malformed URL, or a Redis Cluster (RQ needs one server).
    """
    parsed = parse_redis_url(url)
    if parsed.topology == "cluster":
        raise ValueError("RQ cannot use a Redis Cluster; name a single Redis or a Sentinel")
    return t.cast(Redis, make_client(parsed, timeouts=fail_fast))


class WebhookQueue:
    """Hands due outbox events to RQ. One per app; the Redis client is created
    lazily and again after a fork (one per process).

    :param settings: ``redis_url``, ``webhook_queue``, timeout.
    :param outbox: the outbox.
    :param clock: returns unix seconds.
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

    def enqueue(self, event_id: str) -> str:
        """Queue the delivery job of ``event_id`` unless it is queued or running
        (Redis writes; records the hand-over in the row's ``enqueued_at``).

        :returns: ``queued``, or ``already_queued`` (its job is queued or
            running, or the event is no longer pending).
        :raises redis.exceptions.RedisError: Redis unreachable.
        """
        queue = self.queue
        jid = job_id(event_id)
        for _ in range(3):
            try:
                self._enqueue(queue, event_id)
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
                # the finished or failed job of an earlier attempt: the event is due again
                entry = self.outbox.get(event_id)
                if entry is None or entry.status != PENDING:
                    return "already_queued"
                job.delete()
        else:  # pragma: no cover - three races in a row
            raise RuntimeError(f"could not enqueue {jid}")
        self.outbox.mark_handed_over(event_id, at=self.clock())
        return result

    def _enqueue(self, queue: Queue, event_id: str) -> Job:
        return queue.enqueue_call(
            JOB_FUNCTION,
            args=(event_id,),
            job_id=job_id(event_id),
            unique=True,
            timeout=self.job_timeout,
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            description=f"deliver order event {event_id}",
        )

    def sweep(self, *, now: float | None = None, stale_after: float = STALE_AFTER) -> int:
        """Enqueue every due event awaiting a runner
        (:meth:`~flask_acp.store.base.Outbox.awaiting_handover`): retries now
        due, events never handed over, and events handed over more than
        ``stale_after`` seconds ago. Idempotent.

        :param now: unix seconds (default: the clock).
        :returns: how many jobs were actually queued (already queued ones not counted).
        :raises redis.exceptions.RedisError: Redis unreachable.
        """
        now = self.clock() if now is None else now
        queued = 0
        seen: set[str] = set()
        while True:
            batch = [e for e in self.outbox.awaiting_handover(now=now, stale_after=stale_after, limit=100)
                     if e.event_id not in seen]
            if not batch:
                return queued
            for entry in batch:
                seen.add(entry.event_id)
                if self.enqueue(entry.event_id) == "queued":
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
