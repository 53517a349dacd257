"""Shopify webhooks: every resource event (:meth:`ShopWebhooks.emit`), and the
signed deliveries of the subscribed topics, sent in order from one background
thread with Shopify's headers, retried ``webhook_retries`` times."""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import datetime as dt
import json
import typing as t
import uuid

from ..base import WebhookAttempt
from ..base import hmac_sha256_base64
from .model import DEFAULT_WEBHOOK_TOPICS
from .model import WebhookDelivery
from .model import iso
from .state import ShopState


class ShopWebhooks(ShopState):
    """Events and webhooks (a layer of :class:`~flask_acp.testing.fakes.shopify.FakeShopify`)."""

    def emit(self, topic: str, resource: cabc.Mapping[str, t.Any]) -> None:
        """Record a resource event (``orders/create``, ``draft_orders/delete``...)
        with its REST-shaped payload, and send it as a signed webhook when a
        subscription (:meth:`subscribe_webhooks`) covers ``topic`` and webhooks
        are not suppressed (:meth:`suppress_webhooks`). Each event gets its own
        ``X-Shopify-Event-Id`` (kept in the :attr:`events` entry as ``event_id``).
        Sending is asynchronous (one background thread, in order, like
        Shopify's delivery it never blocks the API call that caused it).
        """
        event_id = str(uuid.uuid4())
        entry: dict[str, t.Any] = {"topic": topic, "resource": dict(resource), "at": iso(self.now()),
                                   "event_id": event_id, "webhook_id": None}
        self.events.append(entry)
        if self.webhook_url and topic in self.webhook_topics and not self._muted:
            body = json.dumps(resource, separators=(",", ":")).encode()
            delivery = self._delivery(topic, event_id, body)
            entry["webhook_id"] = delivery.webhook_id
            self._enqueue(delivery)

    def subscribe_webhooks(self, url: str | None, *, secret: str | None = None,
                           topics: cabc.Iterable[str] | None = None) -> None:
        """Send webhooks of ``topics`` (default :data:`DEFAULT_WEBHOOK_TOPICS`) to
        ``url`` (``None``: stop sending), signed with ``secret`` (default: the
        current :attr:`webhook_secret`)."""
        with self._lock:
            self.webhook_url = url
            if secret is not None:
                self.webhook_secret = secret
            self.webhook_topics = frozenset(topics or DEFAULT_WEBHOOK_TOPICS)

    @contextlib.contextmanager
    def suppress_webhooks(self) -> cabc.Iterator[None]:
        """Within the block, events are recorded but no webhook is sent (a
        webhook Shopify never delivered: what ``flask acp reconcile`` is for)."""
        with self._lock:
            self._muted += 1
        try:
            yield
        finally:
            with self._lock:
                self._muted -= 1

    def redeliver(self, delivery: WebhookDelivery, *, new_webhook_id: bool = True) -> WebhookDelivery:
        """Send ``delivery``'s body again with the same ``X-Shopify-Event-Id``, as
        Shopify does for a second subscription to the topic (a new
        ``X-Shopify-Webhook-Id``) or a retry (``new_webhook_id=False``)."""
        with self._lock:
            again = self._delivery(delivery.topic, delivery.event_id, delivery.body,
                                   webhook_id=None if new_webhook_id else delivery.webhook_id,
                                   url=delivery.url)
        self._enqueue(again)
        return again

    def send_webhook(self, url: str, topic: str, payload: dict[str, t.Any], *,
                     secret: str | None = None) -> WebhookDelivery:
        """POST one webhook of ``topic`` carrying ``payload`` (a REST-shaped resource) to
        ``url`` now, with Shopify's headers (a new ``X-Shopify-Event-Id``), signed with
        ``secret`` (default :attr:`webhook_secret`) and retried :attr:`webhook_retries`
        times; recorded in :attr:`deliveries` (not in :attr:`events`: nothing changed)."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        with self._lock:
            delivery = self._delivery(topic, str(uuid.uuid4()), body, url=url, secret=secret)
            self.deliveries.append(delivery)
        self._send(delivery)
        return delivery

    @property
    def webhook_log(self) -> list[WebhookDelivery]:
        """:attr:`deliveries` (a copy)."""
        with self._lock:
            return list(self.deliveries)

    def webhooks(self, topic: str | None = None) -> list[WebhookDelivery]:
        """The deliveries (of ``topic``), oldest first."""
        with self._lock:
            return [d for d in self.deliveries if topic is None or d.topic == topic]

    def _delivery(self, topic: str, event_id: str, body: bytes, *, webhook_id: str | None = None,
                  url: str | None = None, secret: str | None = None) -> WebhookDelivery:
        webhook_id = webhook_id or str(uuid.uuid4())
        signature = hmac_sha256_base64(self.webhook_secret if secret is None else secret, body)
        triggered = self.now().astimezone(dt.timezone.utc).isoformat(timespec="microseconds")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Shopify-Captain-Hook",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": signature,
            "X-Shopify-Shop-Domain": self.domain,
            "X-Shopify-API-Version": self.webhook_api_version,
            "X-Shopify-Webhook-Id": webhook_id,
            "X-Shopify-Event-Id": event_id,
            "X-Shopify-Triggered-At": triggered.replace("+00:00", "Z"),
        }
        return WebhookDelivery(topic=topic, event_id=event_id, webhook_id=webhook_id,
                               url=str(url or self.webhook_url), body=body, headers=headers)

    def _enqueue(self, delivery: WebhookDelivery) -> None:
        with self._lock:
            self.deliveries.append(delivery)
        self._queue_webhook(lambda: self._send(delivery))

    def _send(self, delivery: WebhookDelivery) -> None:
        """POST the delivery; retried :attr:`webhook_retries` times after a non-2xx
        answer or no answer (1 s to connect, 5 s to answer, as Shopify)."""

        def record(attempt: WebhookAttempt) -> None:
            delivery.statuses.append(attempt.status)
            delivery.error = attempt.error
            try:
                delivery.answer = None if attempt.status is None else json.loads(attempt.response)
            except ValueError:
                delivery.answer = None

        self._deliver(delivery.url, delivery.body, delivery.headers, topic=delivery.topic, on_attempt=record)
