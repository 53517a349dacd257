"""Readiness checks, as plain Python (no web framework).

Each check is one cheap call to a dependency, run in its own thread and
bounded by a time limit (``ACP_READYZ_TIMEOUT``):

- ``store``: one read (``Sessions.get`` of an id that does not exist);
- ``queue``: a Redis ``PING`` on the webhook queue's connection, only when
  ``ACP_REDIS_URL`` is set (else ``skipped``);
- ``processor``: the processor's optional ``ready()`` hook, when it has one
  (it raises, or returns ``False``, when the processor cannot be reached);
  ``skipped`` otherwise. The Stripe processor has none: a probe every few
  seconds from every instance would spend Stripe's rate limit.

A check's answer is ``ok``, ``down`` or ``skipped``; why a check failed is
logged (``flask_acp`` logger), never returned.
"""

from __future__ import annotations

import collections.abc as cabc
import concurrent.futures
import logging
import typing as t

from ..payments.base import PaymentProcessor
from ..store.base import Storage

log = logging.getLogger("flask_acp")

#: a check: returns when the dependency answered; raises (or returns False) when not
Check = cabc.Callable[[], object]

OK, DOWN, SKIPPED = "ok", "down", "skipped"

#: the probe id the store check reads (no session has it)
PROBE_ID = "readyz-probe"


def readiness_checks(storage: Storage, payments: PaymentProcessor,
                     ping_queue: Check | None) -> dict[str, Check | None]:
    """The checks by dependency name (``None``: skipped).

    :param ping_queue: a Redis ``PING`` of the webhook queue (None: no queue).
    """
    ready = getattr(payments, "ready", None)
    return {
        "store": lambda: storage.sessions.get(PROBE_ID),
        "queue": ping_queue,
        "processor": ready if callable(ready) else None,
    }


def run_checks(checks: cabc.Mapping[str, Check | None], *, timeout: float) -> dict[str, str]:
    """Run every check at once, each for at most ``timeout`` seconds.

    :returns: dependency name -> ``ok``, ``down`` or ``skipped``.
    """
    results = {name: SKIPPED for name, check in checks.items() if check is None}
    todo = {name: check for name, check in checks.items() if check is not None}
    if not todo:
        return results
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(todo), thread_name_prefix="acp-readyz")
    try:
        futures = {name: pool.submit(check) for name, check in todo.items()}
        done, _ = concurrent.futures.wait(futures.values(), timeout=timeout)
        for name, future in futures.items():
            results[name] = _outcome(name, future, future in done, timeout)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a hung check is left to its own timeout
    return {name: results[name] for name in checks}


def _outcome(name: str, future: concurrent.futures.Future[t.Any], finished: bool, timeout: float) -> str:
    if not finished:
        log.warning("readiness: %s did not answer within %g s", name, timeout)
        return DOWN
    exc = future.exception()
    if exc is not None:
        log.warning("readiness: %s is down (%s: %s)", name, type(exc).__name__, exc)
        return DOWN
    if future.result() is False:
        log.warning("readiness: %s reports it is not ready", name)
        return DOWN
    return OK
