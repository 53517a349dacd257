"""Budgets of events per key, counted in ``limits`` windows (the rate limits'
engine and storage), for what is checked before an action and spent after it:
an agent's rejected discount codes (:mod:`flask_acp.api.limits`), a client's
wrong console passwords (:mod:`flask_acp.console.access`).

A request over a rate limit is refused when it arrives; these budgets are
read first (:meth:`WindowBudget.standing`: how many are left, and when one
more is allowed) and spent once the outcome is known (:meth:`WindowBudget.spend`).
A storage that fails counts nothing and limits nothing (``on_error`` is told).
"""

from __future__ import annotations

import collections.abc as cabc
import math
import time
import typing as t

from limits import RateLimitItem
from limits.errors import StorageError
from limits.strategies import RateLimiter


class Standing(t.NamedTuple):
    """Where one key stands: ``left`` events before the budget is spent (the
    tightest window), and ``wait`` seconds until a window lets one more
    through when none is left (0 otherwise)."""

    left: int
    wait: int


class WindowBudget:
    """One kind of event, counted per key in every window of ``items``.

    :param limiter: counts in the storage (sliding-window-counter strategy).
    :param items: the windows (``limits.parse_many("10/minute;100/hour")``);
        none: unbounded.
    :param namespace: the counters' key prefix (``("acp", "discount")``).
    :param on_error: told of a storage failure.
    """

    def __init__(self, limiter: RateLimiter, items: cabc.Sequence[RateLimitItem], *namespace: str,
                 on_error: cabc.Callable[[StorageError], None] = lambda exc: None) -> None:
        self.limiter = limiter
        self.items = tuple(items)
        self.namespace = namespace
        self.on_error = on_error

    def standing(self, key: str) -> Standing | None:
        """``key``'s standing now, or None when unbounded (no window, or the
        storage failing)."""
        if not self.items:
            return None
        left, wait, now = [], 0, time.time()
        for item in self.items:
            try:
                stats = self.limiter.get_window_stats(item, *self.namespace, key)
            except StorageError as exc:
                self.on_error(exc)
                return None
            left.append(stats.remaining)
            if stats.remaining <= 0:
                wait = max(wait, max(1, math.ceil(stats.reset_time - now)))
        return Standing(max(0, min(left)), wait)

    def spend(self, key: str, count: int = 1) -> None:
        """Count ``count`` events of ``key`` in every window (a full window
        stays full)."""
        for item in self.items:
            for _ in range(count):
                try:
                    if not self.limiter.hit(item, *self.namespace, key):
                        break
                except StorageError as exc:
                    self.on_error(exc)
                    return
