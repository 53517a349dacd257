"""``flask acp worker``: run the delivery jobs (RQ) or the delivery loop (no Redis).

RQ mode phases: connect; sweep the outbox once (hand RQ every due event that
awaits a runner: retries come due, events never queued); start a sweeper
thread repeating that every ``sweep_interval`` seconds; run an RQ worker on
``ACP_WEBHOOK_QUEUE`` with ``JSONSerializer`` until SIGINT / SIGTERM, or, with
``burst``, until the queue is empty. RQ schedules nothing (no RQ ``Retry``,
no RQ scheduler): retries are the outbox's, handed over by the sweep when
due, so ``sweep_interval`` bounds how late a retry can start. The caller
provides the app context (Flask CLI commands have one), which jobs inherit.

The default worker class is RQ's ``SimpleWorker`` (jobs run in the worker
process, so HTTP keep-alive connections to the agents and the store's
connection are reused; a job is small, bounded by the HTTP timeout, and
cannot leak state between events). ``fork=True`` uses RQ's forking
``Worker`` (one child process per job) instead.
"""

from __future__ import annotations

import logging
import signal
import threading
import typing as t

from redis import Redis
from rq import Queue
from rq import SimpleWorker
from rq import Worker
from rq.serializers import JSONSerializer
from rq.timeouts import BaseDeathPenalty
from rq.timeouts import TimerDeathPenalty
from rq.timeouts import UnixSignalDeathPenalty
from rq.worker.base import BaseWorker

from .queue import connect
from .service import WebhookService

log = logging.getLogger("flask_acp.webhooks")


#: seconds the workers' command channel (RQ pub/sub) waits per poll
PUBSUB_POLL = 1.0


class _PromptPubSub(BaseWorker):
    """RQ's command-channel subscription, polled every :data:`PUBSUB_POLL`
    seconds instead of RQ's 60: redis-py 8.2 waits for the pub/sub thread when
    it is stopped, so with RQ's poll every worker's shutdown (each burst run)
    took up to a minute."""

    def subscribe(self) -> None:
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]  # rq types it None
            sleep_time=PUBSUB_POLL, daemon=True, exception_handler=self._pubsub_exception_handler)


class DeliveryWorker(_PromptPubSub, SimpleWorker):
    """``SimpleWorker`` whose ``job_timeout`` enforcement works from any thread
    and respects an existing ``SIGALRM`` handler: a timer thread by default;
    :func:`run_worker` switches to RQ's cheaper ``SIGALRM`` penalty when it
    runs on the main thread and nobody else handles ``SIGALRM``."""

    death_penalty_class: type[BaseDeathPenalty] = TimerDeathPenalty


class ForkingDeliveryWorker(_PromptPubSub, Worker):
    """RQ's forking ``Worker`` (``--fork``) with the prompt command channel."""


def _sweep(service: WebhookService) -> int:
    try:
        queued = service.sweep()
    except Exception as exc:
        log.warning("outbox sweep failed: %s: %s", type(exc).__name__, exc)
        return 0
    if queued:
        log.info("outbox sweep queued %d due webhook event(s)", queued)
    return queued


def run_worker(service: WebhookService, *, burst: bool = False, fork: bool = False,
               sweep_interval: float = 1.0, name: str | None = None,
               connection: Redis | None = None, logging_level: str = "INFO") -> bool:
    """Run an RQ worker for the app's webhook queue (blocking).

    :param burst: sweep once, run every queued job (and the events due by
        then), then return.
    :param fork: RQ's forking ``Worker`` instead of :class:`DeliveryWorker`.
    :param sweep_interval: seconds between outbox sweeps (0: only at start;
        retries then wait for another worker's sweep or ``flask acp sweep``).
    :param connection: Redis client (default: one for ``ACP_REDIS_URL``,
        closed on return).
    :returns: whether any job ran.
    :raises RuntimeError: the app has no ``ACP_REDIS_URL``.
    """
    if service.queue is None:
        raise RuntimeError("ACP_REDIS_URL is not set: there is no queue to work on")
    own = connection is None
    redis = connection if connection is not None else connect(service.queue.url, fail_fast=False)
    queue = Queue(service.queue.name, connection=redis, serializer=JSONSerializer)
    worker_class: type[BaseWorker] = ForkingDeliveryWorker if fork else DeliveryWorker
    worker = worker_class([queue], connection=redis, serializer=JSONSerializer, name=name)
    stop = threading.Event()
    sweeper: threading.Thread | None = None
    in_main = threading.current_thread() is threading.main_thread()
    if isinstance(worker, DeliveryWorker) and in_main and signal.getsignal(signal.SIGALRM) in (
            signal.SIG_DFL, None):
        worker.death_penalty_class = UnixSignalDeathPenalty
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
    _sweep(service)
    if not burst and sweep_interval > 0:
        def loop() -> None:
            while not stop.wait(sweep_interval):
                _sweep(service)

        sweeper = threading.Thread(target=loop, name="acp-outbox-sweeper", daemon=True)
        sweeper.start()
    try:
        return bool(worker.work(burst=burst, logging_level=logging_level))
    finally:
        stop.set()
        if sweeper is not None:
            sweeper.join(5)
        for sig, handler in handlers.items():
            signal.signal(sig, t.cast(t.Any, handler))
        service.sender.close_thread_session()
        if own:
            redis.close()
