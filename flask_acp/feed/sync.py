"""Incremental feed updates from platform webhooks, through the outbox.

A verified platform webhook that names catalog products
(:attr:`flask_acp.adapter.PlatformWebhook.products`: Shopify ``products/update``,
``inventory_levels/update``; WooCommerce ``product.updated``) becomes, per agent
with a ``feed_url``, one outbox event of kind
:data:`~flask_acp.products.FEED_PRODUCTS_EVENT` per product
(:func:`feed_events`, :meth:`~flask_acp.store.base.Outbox.add`). The order
webhooks' machinery delivers them -- the thread, the RQ jobs, ``flask acp
worker``, the retries and ``flask acp events replay`` -- with
:class:`FeedSender` as the send of that kind: it reads the product's
**current** state from the adapter (a retry hours later sends what is true
then) and ``PATCH``\\es it to ``/feeds/{id}/products``.

Entry fields of such an event: ``order_id`` = ``product:<subject>`` (the sends
of one product never overlap), ``session_id`` = ``feed:<agent>``, ``agent``,
``type`` = ``feed_products``. The subject is what the adapter named (a product
id, or for Shopify an inventory item GID whose product is read).
"""

from __future__ import annotations

import collections.abc as cabc
import datetime as dt
import hashlib
import logging
import threading
import typing as t

from ..adapter import PlatformAdapter
from ..config import Settings
from ..errors import AdapterError
from ..models import OrderEvent
from ..products import FEED_PRODUCTS_EVENT
from ..store.base import Outbox
from ..store.base import OutboxEntry
from ..versions.v2026_04_17.feed import render_product
from ..webhooks.outbox import SendResult
from .client import FeedApiError
from .client import FeedClient
from .export import digest
from .push import FeedState
from .push import variant_titles
from .push import withdrawal

log = logging.getLogger("flask_acp.feed")

SUBJECT_PREFIX = "product:"
FEED_PREFIX = "feed:"


def feed_events(settings: Settings, subjects: cabc.Sequence[str], *, source: str, cause: str | None,
                now: dt.datetime) -> list[OrderEvent]:
    """The outbox events of an incremental update of ``subjects``, one per agent
    with a ``feed_url`` and subject. Their ids derive from ``cause`` (the inbound
    webhook's event id) when given, so a webhook processed twice adds nothing.

    :param source: the adapter's name (part of the id).
    """
    events = []
    for agent in settings.agents:
        if not agent.feed_url:
            continue
        for subject in dict.fromkeys(subjects):
            if cause is not None:
                key = hashlib.sha256(f"{source}\x1f{cause}\x1f{agent.name}\x1f{subject}".encode()).hexdigest()
            else:
                key = hashlib.sha256(f"{now.timestamp()}\x1f{agent.name}\x1f{subject}".encode()).hexdigest()
            events.append(OrderEvent(id=f"evt_feed_{key[:32]}", order_id=SUBJECT_PREFIX + subject,
                                     checkout_session_id=FEED_PREFIX + agent.name, agent=agent.name,
                                     type=FEED_PRODUCTS_EVENT, created_at=now))
    return events


class FeedSender:
    """The send of ``feed_products`` outbox events (see the module docstring).

    :param settings: the app's settings (agents, ``ACP_WEBHOOK_TIMEOUT``).
    :param adapter: reads the products' current state.
    :param state: the feed state file (the feed id when the agent's config has none).
    """

    def __init__(self, settings: Settings, adapter: PlatformAdapter, state: FeedState) -> None:
        self.settings = settings
        self.adapter = adapter
        self.state = state
        self._clients: dict[str, FeedClient] = {}
        self._lock = threading.Lock()

    def send(self, entry: OutboxEntry) -> SendResult:
        """``PATCH`` the current state of the event's product to its agent's feed
        (network calls; nothing written). ``skipped`` when the agent has no
        ``feed_url`` or no feed yet (run ``flask acp feed push``). A product
        the platform no longer lists is withdrawn (see :meth:`_withdrawn`)."""
        try:
            agent = self.settings.agent(entry.agent)
        except KeyError:
            return SendResult(None, f"agent {entry.agent!r} is not configured", skipped=True)
        if not agent.feed_url:
            return SendResult(None, f"no feed_url configured for agent {agent.name!r}", skipped=True)
        feed_id = agent.feed_id or self.state.feed_id(agent.name)
        if not feed_id:
            return SendResult(None, f"agent {agent.name!r} has no feed yet: run 'flask acp feed push'",
                              skipped=True)
        subject = entry.order_id.removeprefix(SUBJECT_PREFIX)
        try:
            products = self.adapter.read_products([subject])
        except NotImplementedError:
            return SendResult(None, f"the {self.adapter.name} adapter cannot list products", skipped=True)
        except AdapterError as exc:
            return SendResult(None, f"the platform cannot answer: {exc}", retryable=True)
        if products:
            body = [render_product(p) for p in products]
        else:
            product_id = self.adapter.feed_product_id(subject)
            withdrawn = None if product_id is None else self._withdrawn(agent.name, feed_id, product_id)
            if withdrawn is None:
                return SendResult(None, f"product {subject} is no longer listed (and this feed never "
                                        "had it, as far as the state file knows)", skipped=True)
            body = [withdrawn]
        try:
            self._client(agent.name, agent.feed_url, agent.feed_token).upsert_products(feed_id, body)
        except FeedApiError as exc:
            return SendResult(exc.status, str(exc), retryable=exc.retryable)
        log.info("feed %s of agent %s: product(s) %s %s", feed_id, agent.name,
                 ", ".join(p["id"] for p in body), "updated" if products else "withdrawn")
        self._record(agent.name, feed_id, body)
        return SendResult(200)

    def _record(self, agent: str, feed_id: str, sent: list[dict[str, t.Any]]) -> None:
        """Write what the feed now has into the state file (where this process
        has the push's state of that feed), as a push does: the next incremental
        push compares with it, so a later change whose webhook was never
        delivered is still sent. A state file that cannot be written is logged."""
        def change(state: dict[str, t.Any]) -> dict[str, t.Any] | None:
            if state.get("pushed_to") != feed_id:
                return None
            pushed, variants = dict(state.get("pushed") or {}), dict(state.get("variants") or {})
            for product in sent:
                pushed[product["id"]] = digest(product)
                variants[product["id"]] = variant_titles(product)
            return {**state, "pushed": pushed, "variants": variants}

        try:
            self.state.update_agent(agent, change)
        except (OSError, ValueError) as exc:
            log.warning("feed %s of agent %s: the state file was not updated: %s", feed_id, agent, exc)

    def _withdrawn(self, agent: str, feed_id: str, product_id: str) -> dict[str, t.Any] | None:
        """The withdrawal of ``product_id`` when the state file says this feed
        received it (:func:`~flask_acp.versions.v2026_04_17.feed.render_withdrawn`);
        None otherwise (an inventory item, another host's push: the next
        ``flask acp feed push`` withdraws it)."""
        state = self.state.agent(agent)
        if state.get("pushed_to") != feed_id or product_id not in (state.get("pushed") or {}):
            return None
        return withdrawal(state, product_id)

    def _client(self, name: str, url: str, token: str | None) -> FeedClient:
        """One client per agent and thread (a ``requests.Session`` is not shared between threads)."""
        key = f"{name}\x1f{threading.get_ident()}"
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = FeedClient(url, token=token, retries=0,
                                                         timeout=self.settings.webhook_timeout)
        return client

    def close(self) -> None:
        """Close the HTTP sessions."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()


def queue_product_changes(settings: Settings, outbox: Outbox, subjects: cabc.Sequence[str], *, source: str,
                          cause: str | None, now: dt.datetime | None = None) -> list[OrderEvent]:
    """Add the outbox events of an incremental update (see :func:`feed_events`);
    returns them (hand them to the webhook service's ``on_events``)."""
    events = feed_events(settings, subjects, source=source, cause=cause,
                         now=now or dt.datetime.now(dt.timezone.utc))
    if events:
        outbox.add(events)
    return events
