"""The catalog's stock ledger: what the adapter asks of it (:class:`Ledger`)
and which one a store names (:func:`open_ledger`): SQLite
(:class:`.stock.StockLedger`) or Redis (:class:`.stock_redis.RedisStockLedger`)."""

from __future__ import annotations

import collections.abc as cabc
import os
import typing as t

from flask_acp.models import Order
from flask_acp.store import is_redis

from .stock import Decide
from .stock import MakeOrder
from .stock import StockLedger
from .stock_redis import RedisStockLedger

__all__ = ["Ledger", "open_ledger"]


class Ledger(t.Protocol):
    """What the catalog adapter asks of its stock ledger (SQLite:
    :class:`StockLedger`; Redis: :class:`~flask_acp.catalog.stock_redis.RedisStockLedger`).
    Every method is atomic across threads, processes and, for Redis, app servers."""

    def reserve(self, session_id: str, on_hand: cabc.Mapping[str, int | None], decide: Decide,
                *, expires_at: float, now: float) -> tuple[dict[str, int | None], dict[str, int]]:
        """Replace the session's hold: ``(available, held)`` (see :meth:`StockLedger.reserve`)."""
        ...

    def place(self, session_id: str, wanted: cabc.Mapping[str, int],
              on_hand: cabc.Mapping[str, int | None], make_order: MakeOrder, *, now: float,
              amount: int | None = None, currency: str | None = None,
              payment_id: str | None = None) -> Order:
        """Sell the units and record the order, once per session (see :meth:`StockLedger.place`)."""
        ...

    def release(self, session_id: str) -> None:
        """Delete the session's hold."""
        ...

    def order_for(self, session_id: str) -> Order | None:
        """The order placed for the session, if any."""
        ...

    def held(self, session_id: str) -> dict[str, int]:
        """item id -> units the session holds."""
        ...

    def held_counts(self) -> dict[str, int]:
        """item id -> units in holds (non-zero counters)."""
        ...

    def sold(self, item_id: str) -> int:
        """Units of the item sold."""
        ...

    def close(self) -> None:
        """Release this thread's resources."""
        ...


def open_ledger(target: str | os.PathLike[str] | Ledger) -> Ledger:
    """The stock ledger ``target`` names: a ledger as is, a Redis storage URL
    (``redis://``, ``redis+cluster://``... the catalog's stock then lives with
    the sessions, shared by every app server), or a SQLite file path.

    :raises ValueError: a malformed Redis URL.
    """
    if isinstance(target, (str, os.PathLike)):
        text = os.fspath(target)
        if is_redis(text):
            return RedisStockLedger(text)
        return StockLedger(text)
    return target
