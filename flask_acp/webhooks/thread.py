"""The embedded delivery loop: a daemon thread in the app's process (no Redis).

Life cycle: nothing runs at import or at ``init_app``. The thread starts on
the first order event or the first request of a process (so a gunicorn
``--preload`` master forks before any thread exists, and each worker starts
its own), and again in a forked child. Every pass runs
:meth:`~flask_acp.webhooks.outbox.OutboxDelivery.deliver_due`: the outbox
hands out the due events (each to one claimer across processes; a crashed
claimer's lease runs out) and each gets one attempt. Between passes it sleeps
``poll_interval`` seconds or until woken by a new event.
"""

from __future__ import annotations

import logging
import os
import threading
import typing as t

from .outbox import OutboxDelivery

log = logging.getLogger("flask_acp.webhooks")


class DeliveryThread:
    """Delivers due outbox events from a background thread of this process.

    :param delivery: claims, attempts and records.
    :param on_exit: called in the thread when it ends (closes its HTTP session).
    :param poll_interval: seconds between passes when idle (events written by
        other processes, and retries coming due, are found within this delay).
    :param batch: attempts per pass at most.
    """

    #: attempts between two looks at the stop flag
    CHUNK = 10

    def __init__(self, delivery: OutboxDelivery, *, on_exit: t.Callable[[], None] | None = None,
                 poll_interval: float = 1.0, batch: int = 50) -> None:
        self.delivery = delivery
        self.on_exit = on_exit
        self.poll_interval = poll_interval
        self.batch = batch
        self._pid = os.getpid()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        return self._pid == os.getpid() and self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread in this process unless it runs already (cheap; called
        on every event and request)."""
        if self.running:
            return
        if self._pid != os.getpid():  # forked: the parent's thread and locks are not ours
            self._pid = os.getpid()
            self._guard = threading.Lock()
            self._thread = None
            self._wake = threading.Event()
            self._stop = threading.Event()
        with self._guard:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="acp-webhook-delivery", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Make the thread look at the outbox now (starting it if needed)."""
        self.start()
        self._wake.set()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the thread and wait up to ``timeout`` seconds for the attempt in
        progress (at most ``ACP_WEBHOOK_TIMEOUT``) to finish."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and self._pid == os.getpid():
            thread.join(timeout)
        self._thread = None

    def run_once(self, now: float | None = None) -> int:
        """One pass: claim and attempt up to :attr:`batch` due events (network calls).

        :param now: unix seconds to judge due-ness by (default: the clock).
        :returns: how many attempts were made.
        """
        done = 0
        while done < self.batch and not self._stop.is_set():  # a stop waits for one chunk at most
            made = len(self.delivery.deliver_due(limit=min(self.CHUNK, self.batch - done), now=now))
            if not made:
                break
            done += made
        return done

    def _run(self) -> None:
        log.debug("webhook delivery thread started (pid %d)", os.getpid())
        try:
            while not self._stop.is_set():
                try:
                    busy = self.run_once() >= self.batch
                except Exception:
                    log.exception("webhook delivery pass failed")
                    busy = False
                if not busy:
                    self._wake.wait(self.poll_interval)
                    self._wake.clear()
        finally:
            if self.on_exit is not None:
                self.on_exit()
