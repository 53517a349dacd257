"""Read-only views of the store for operators, shared by the CLI views
(``flask acp orders list``, ``sessions list|show``, ``events list``) and the
merchant console (:mod:`flask_acp.console`).

Everything here reads the storage ports (:mod:`flask_acp.store.base`) and
returns plain rows: amounts stay ``int`` minor units beside their currency,
times are timezone-aware UTC datetimes (or ISO strings in the summaries), the
buyer's e-mail is masked and no address, token or secret appears.

The ports list ids, not pages, so these views read every session they look
at: an operator's view, not a hot path. :func:`recent_sessions` bounds the
work by the last update (``Sessions.session_ids(updated_since=...)``).
"""

from __future__ import annotations

import collections
import collections.abc as cabc
import dataclasses
import datetime as dt
import typing as t

from .models import CheckoutSession
from .models import Status
from .store.base import Outbox
from .store.base import OutboxEntry
from .store.base import Sessions

#: outbox statuses, as :mod:`flask_acp.webhooks.outbox` names them
OUTBOX_STATUSES = ("pending", "delivered", "failed", "skipped")

#: how many outbox entries per status :func:`outbox_overview` reads at most
OUTBOX_SCAN = 1000

#: the statuses of the funnel's columns, in order
FUNNEL_STATUSES = tuple(s.value for s in Status)


def mask_email(email: object) -> str | None:
    """``jane.doe@example.com`` -> ``j***@example.com`` (None when not an e-mail)."""
    if not isinstance(email, str) or "@" not in email:
        return None
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}"


def iso(when: dt.datetime | None) -> str | None:
    """``2026-01-02T03:04:05Z`` (UTC), or None."""
    return None if when is None else when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_unix(seconds: float | None) -> dt.datetime | None:
    """Unix seconds as an aware UTC datetime (None stays None)."""
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


def newest_sessions(sessions: Sessions, statuses: cabc.Iterable[str], *, agent: str | None = None,
                    limit: int | None = None, updated_since: dt.datetime | None = None,
                    keep: cabc.Callable[[CheckoutSession], bool] = lambda s: True) -> list[CheckoutSession]:
    """Sessions in ``statuses`` (of ``agent``; updated at or after ``updated_since``)
    that ``keep`` accepts, last updated first, at most ``limit`` (None: all)."""
    since = None if updated_since is None else updated_since.timestamp()
    ids = sessions.session_ids(statuses=statuses, updated_since=since)
    found = [s for s in map(sessions.get, ids)
             if s is not None and (agent is None or s.agent == agent) and keep(s)]
    found.sort(key=lambda s: (s.updated_at, s.id), reverse=True)
    return found if limit is None else found[:limit]


def session_summary(session: CheckoutSession) -> dict[str, t.Any]:
    """What an operator sees of a session: no address, no token, the buyer's
    e-mail masked; amounts in minor units of ``currency``."""
    buyer = session.buyer or {}
    address = (session.fulfillment_details or {}).get("address")
    return {
        "id": session.id, "status": session.status.value, "agent": session.agent,
        "api_version": session.api_version, "currency": session.currency,
        "total": session.totals.total,
        "line_items": [{"id": li.id, "quantity": li.quantity} for li in session.line_items],
        "buyer_email": mask_email(buyer.get("email")),
        "ship_to_country": address.get("country") if isinstance(address, dict) else None,
        "messages": [m.code for m in session.messages],
        "payment_status": session.payment.status if session.payment else None,
        "payment_failures": session.payment_failures,
        "order_id": session.order.id if session.order else None,
        "created_at": iso(session.created_at), "updated_at": iso(session.updated_at),
        "expires_at": iso(session.expires_at),
    }


def order_summary(session: CheckoutSession) -> dict[str, t.Any]:
    """An order's row: ids, status, amounts (minor units), the masked buyer e-mail,
    the payment (processor id, status, capture status) and the platform's order id."""
    order = t.cast("t.Any", session.order)
    payment = session.payment
    return {
        "order_id": order.id, "order_number": order.order_number, "status": order.status,
        "checkout_session_id": session.id, "agent": session.agent,
        "total": order.total, "refunded": order.amount_refunded, "currency": order.currency,
        "buyer_email": mask_email((session.buyer or {}).get("email")),
        "payment_id": order.payment_id or (payment.payment_id if payment else None),
        "payment_status": payment.status if payment else None,
        "capture_status": payment.capture_status if payment else None,
        "platform_order_id": order.platform_order_id,
        "fulfillments": [f.status for f in order.fulfillments],
        "completed_at": iso(session.updated_at),
    }


def orders(sessions: Sessions, *, statuses: cabc.Collection[str] = (), agent: str | None = None,
           limit: int | None = None) -> list[dict[str, t.Any]]:
    """:func:`order_summary` of the completed sessions' orders (in ``statuses``
    when given, of ``agent``), newest first, at most ``limit``."""
    found = newest_sessions(sessions, [Status.COMPLETED.value], agent=agent, limit=limit, keep=lambda s: (
        s.order is not None and (not statuses or s.order.status in statuses)))
    return [order_summary(s) for s in found]


@dataclasses.dataclass(frozen=True, slots=True)
class FunnelRow:
    """Sessions one agent created on one UTC day, by their current status.

    ``reached_ready`` counts the sessions that are ready for payment, being
    completed or completed now: a lower bound of those that ever were ready
    (the store keeps a session's current status, not its history, so a
    canceled or expired session counts as canceled or expired whatever it
    reached before).
    """

    day: dt.date
    agent: str
    counts: dict[str, int]

    @property
    def created(self) -> int:
        return sum(self.counts.values())

    @property
    def reached_ready(self) -> int:
        return sum(self.counts.get(s.value, 0) for s in (
            Status.READY_FOR_PAYMENT, Status.COMPLETE_IN_PROGRESS, Status.COMPLETED))

    def __getitem__(self, status: str) -> int:
        return self.counts.get(status, 0)


def funnel(sessions: Sessions, *, days: int, now: dt.datetime) -> list[FunnelRow]:
    """The conversion funnel per agent and UTC day, for the sessions created in
    the last ``days`` days (today included), newest day first, agents by name.

    Reads the sessions updated since the first day's midnight (a session is
    updated at or after its creation), then keeps those created since then.
    """
    start = dt.datetime.combine(now.astimezone(dt.timezone.utc).date() - dt.timedelta(days=days - 1),
                                dt.time(), dt.timezone.utc)
    counts: dict[tuple[dt.date, str], collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for session in newest_sessions(sessions, FUNNEL_STATUSES, updated_since=start):
        if session.created_at >= start:
            day = session.created_at.astimezone(dt.timezone.utc).date()
            counts[(day, session.agent)][session.status.value] += 1
    ordered = sorted(counts.items(), key=lambda kv: (-kv[0][0].toordinal(), kv[0][1]))
    return [FunnelRow(day=day, agent=agent, counts=dict(c)) for (day, agent), c in ordered]


def stuck_completions(sessions: Sessions) -> list[CheckoutSession]:
    """Every session in ``complete_in_progress``, longest untouched first
    (``flask acp sweep`` recovers those untouched for ``ACP_LOCK_LEASE``)."""
    found = newest_sessions(sessions, [Status.COMPLETE_IN_PROGRESS.value])
    return sorted(found, key=lambda s: (s.updated_at, s.id))


def declines(sessions: Sessions, *, since: dt.datetime, limit: int = 100) -> list[CheckoutSession]:
    """Sessions updated since ``since`` with failed payment attempts (declined,
    unusable credential, 3-D Secure required: ``payment_failures``) or whose
    payment record failed, last updated first."""
    return newest_sessions(sessions, FUNNEL_STATUSES, updated_since=since, limit=limit, keep=lambda s: (
        s.payment_failures > 0 or (s.payment is not None and s.payment.status == "failed")))


@dataclasses.dataclass(frozen=True, slots=True)
class OutboxCount:
    """Outbox entries of one agent in one status; ``oldest``: the oldest's
    ``created_at`` (unix seconds)."""

    agent: str
    status: str
    count: int
    oldest: float


@dataclasses.dataclass(frozen=True, slots=True)
class OutboxOverview:
    """The outbox per agent and status (each status read up to
    :data:`OUTBOX_SCAN` entries, oldest first: ``capped`` names the statuses
    that had more), and the failed entries themselves."""

    counts: list[OutboxCount]
    failed: list[OutboxEntry]
    pending: list[OutboxEntry]
    capped: list[str]


def outbox_overview(outbox: Outbox, *, scan: int = OUTBOX_SCAN) -> OutboxOverview:
    """Count the outbox per agent and status (see :class:`OutboxOverview`)."""
    counts: list[OutboxCount] = []
    capped: list[str] = []
    by_status: dict[str, list[OutboxEntry]] = {}
    for status in OUTBOX_STATUSES:
        entries = outbox.entries(statuses=[status], limit=scan)
        by_status[status] = entries
        if len(entries) >= scan:
            capped.append(status)
        per_agent: dict[str, list[OutboxEntry]] = collections.defaultdict(list)
        for entry in entries:
            per_agent[entry.agent].append(entry)
        counts += [OutboxCount(agent, status, len(found), min(e.created_at for e in found))
                   for agent, found in sorted(per_agent.items())]
    return OutboxOverview(counts=counts, failed=by_status["failed"], pending=by_status["pending"],
                          capped=capped)
