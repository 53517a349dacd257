"""The embedded delivery loop: a daemon thread in the app's process (no Redis).

Life cycle: nothing runs at import or at ``init_app``. The thread starts on
the first order event or the first request of a process (so a gunicorn
``--preload`` master forks before any thread exists, and each worker starts
its own), and again in a forked child. Every pass takes the due ``pending``
rows of the outbox, **claims** each one (``Outbox.claim``: one process wins,
the others skip it; a crashed claimer's lease runs out) and makes one
delivery attempt. Between passes it sleeps ``poll_interval`` seconds or until
woken by a new event.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import typing as t

from ..store.base import Outbox
from .delivery import PENDING
from .delivery import WebhookSender

log = logging.getLogger("flask_acp.webhooks")


class DeliveryThread:
    """Delivers due outbox events from a background thread of this process.

    :param sender: makes the attempts.
    :param outbox: the outbox.
    :param poll_interval: seconds between passes when idle (events written by
        other processes are found within this delay).
    :param lease: seconds a claim lasts; after it, a crashed claimer's event
        is due again.
    :param batch: rows read per query.
    """

    def __init__(self, sender: WebhookSender, outbox: Outbox, *, poll_interval: float = 1.0,
                 lease: float = 120.0, batch: int = 50,
                 clock: t.Callable[[], float] = time.time) -> None:
        self.sender = sender
        self.outbox = outbox
        self.poll_interval = poll_interval
        self.lease = lease
        self.batch = batch
        self.clock = clock
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
        """One pass: claim and attempt every due pending event (network calls).

        :returns: how many attempts were made.
        """
        now = self.clock() if now is None else now
        done = 0
        for entry in self.outbox.entries(statuses=[PENDING], due_before=now, limit=self.batch):
            if self._stop.is_set():
                break
            if not self.outbox.claim(entry.event_id, now=now, lease=self.lease):
                continue  # another process has it
            try:
                self.sender.deliver(entry.event_id)
            except Exception:
                log.exception("webhook event %s: delivery attempt crashed; retried after %g s",
                              entry.event_id, self.lease)
            done += 1
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
            self.sender.close_thread_session()
