"""Delivery from the outbox in the foreground, without Redis (no rq import)."""

from __future__ import annotations

import signal
import threading
import typing as t

if t.TYPE_CHECKING:
    from .service import WebhookService


def run_loop(service: WebhookService, *, burst: bool = False, poll_interval: float = 1.0) -> int:
    """Without Redis: deliver due outbox events from this process (for apps
    running with ``ACP_WEBHOOK_DELIVERY_THREAD = False``), until SIGINT /
    SIGTERM or, with ``burst``, after one pass.

    :returns: attempts made.
    """
    stop = threading.Event()
    in_main = threading.current_thread() is threading.main_thread()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
    if in_main:
        for sig in handlers:
            signal.signal(sig, lambda *_: stop.set())
    attempts = 0
    try:
        while True:
            attempts += service.run_pending()
            if burst or stop.wait(poll_interval):
                return attempts
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, t.cast(t.Any, handler))
        service.sender.close_thread_session()
