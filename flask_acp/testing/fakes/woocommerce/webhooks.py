"""WooCommerce webhooks: registered per topic (:meth:`WooWebhooks.add_webhook`),
pinged when created, queued on every order save and sent in order from one
background thread, the payload built when sent; signed with the webhook's
secret; never retried; disabled after more than
:data:`~.model.MAX_WEBHOOK_FAILURES` failures in a row."""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import functools
import json
import secrets
import typing as t

from ..base import WebhookAttempt
from ..base import hmac_sha256_base64
from .model import MAX_WEBHOOK_FAILURES
from .model import WEBHOOK_USER_AGENT
from .model import JSONDict
from .model import Webhook
from .model import WebhookDelivery
from .model import wp_specialchars_decode
from .state import WooState


class WooWebhooks(WooState):
    """Webhooks (a layer of :class:`~flask_acp.testing.fakes.woocommerce.FakeWooCommerce`)."""

    def add_webhook(self, delivery_url: str, *, topic: str = "order.updated", secret: str | None = None,
                    status: str = "active") -> int:
        """Register a webhook (``secret`` default: :attr:`webhook_secret`); an
        active one is pinged at once (see :meth:`ping`). Returns its id."""
        with self._lock:
            hook = Webhook(self._next_webhook_id, topic, delivery_url,
                           self.webhook_secret if secret is None else secret, status)
            self._next_webhook_id += 1
            self._webhooks[hook.id] = hook
        if status == "active":
            self.ping(hook.id)
        return hook.id

    def set_webhook(self, webhook_id: int, *, status: str | None = None, secret: str | None = None,
                    delivery_url: str | None = None) -> None:
        """Change a webhook (re-activating resets its failure count)."""
        with self._lock:
            hook = self._webhooks[webhook_id]
            if status is not None:
                hook.status = status
                hook.failure_count = 0 if status == "active" else hook.failure_count
            hook.secret = hook.secret if secret is None else secret
            hook.delivery_url = delivery_url or hook.delivery_url

    def ping(self, webhook_id: int) -> WebhookDelivery:
        """Send the ping of a new webhook now: ``POST`` form body ``webhook_id=N``,
        no ``X-WC-Webhook-*`` headers and no signature (``WC_Webhook::deliver_ping``)."""
        with self._lock:
            hook = self._webhooks[webhook_id]
            delivery = WebhookDelivery(
                delivery_id="", webhook_id=hook.id, topic="ping", resource_id=None,
                body=f"webhook_id={hook.id}".encode(),
                headers={"User-Agent": WEBHOOK_USER_AGENT,
                         "Content-Type": "application/x-www-form-urlencoded"})
            url = hook.delivery_url
        return self._send(delivery, url, count_failures=False)

    def drop_next_deliveries(self, count: int = 1) -> None:
        """Lose the next ``count`` order deliveries (WooCommerce's queue never
        runs them): recorded in :attr:`deliveries` with ``dropped``, never sent."""
        with self._lock:
            self._drop_next += count

    def redeliver(self, delivery_id: str) -> WebhookDelivery:
        """Send a recorded delivery's body again now, with its headers and a new
        ``X-WC-Webhook-Delivery-ID``; returns the new attempt."""
        with self._lock:
            original = next(d for d in self._deliveries if d.delivery_id == delivery_id)
            hook = self._webhooks[original.webhook_id]
            new_id = secrets.token_hex(16)
            headers = {**original.headers, "X-WC-Webhook-Delivery-ID": new_id}
            delivery = dataclasses.replace(original, delivery_id=new_id, headers=headers, status=None,
                                           response=b"", error=None, dropped=False)
            url = hook.delivery_url
        return self._send(delivery, url)

    def subscribe_webhooks(self, url: str | None, *, secret: str | None = None,
                           topics: cabc.Iterable[str] | None = None) -> None:
        """Register an active webhook delivering to ``url`` for each of ``topics``
        (default ``order.updated``), each pinged at once (:meth:`add_webhook`);
        ``url=None`` pauses every active webhook."""
        if url is None:
            with self._lock:
                for hook in self._webhooks.values():
                    if hook.status == "active":
                        hook.status = "paused"
            return
        for topic in topics or ("order.updated",):
            self.add_webhook(url, topic=topic, secret=secret)

    def send_webhook(self, url: str, topic: str, payload: dict[str, t.Any], *,
                     secret: str | None = None) -> WebhookDelivery:
        """POST one delivery of ``topic`` (``"order.updated"``...) carrying ``payload`` to
        ``url`` now, with WooCommerce's headers, signed with ``secret`` (default
        :attr:`webhook_secret`), outside any registered webhook (``X-WC-Webhook-ID: 0``);
        recorded in :attr:`deliveries`; returns it."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        resource_id = payload.get("id")
        with self._lock:
            delivery = self._signed(0, topic, resource_id if isinstance(resource_id, int) else None, body,
                                    self.webhook_secret if secret is None else secret)
        return self._send(delivery, url, count_failures=False)

    @property
    def deliveries(self) -> list[WebhookDelivery]:
        """Every ping and delivery attempt, in order (copies)."""
        with self._lock:
            return [dataclasses.replace(d) for d in self._deliveries]

    @property
    def webhook_log(self) -> list[WebhookDelivery]:
        """:attr:`deliveries`."""
        return self.deliveries

    @property
    def webhooks(self) -> list[JSONDict]:
        """``{id, topic, delivery_url, secret, status, failure_count}`` per webhook."""
        with self._lock:
            return [dataclasses.asdict(h) for h in self._webhooks.values()]

    def _emit(self, topic: str, order: JSONDict) -> None:
        """An order was saved (caller holds the lock): record the event and queue
        a delivery for every active webhook of ``topic``."""
        self._webhook_events.append({"topic": topic, "resource": "order", "resource_id": order["id"],
                                     "at": self.now()})
        for hook in self._webhooks.values():
            if hook.status != "active" or hook.topic != topic:
                continue
            if self._drop_next > 0:
                self._drop_next -= 1
                delivery = self._delivery(hook, topic, order)
                delivery.dropped = True
                self._deliveries.append(delivery)
                continue
            self._queue_webhook(functools.partial(self._send_saved, hook.id, topic, order["id"]))

    def _delivery(self, hook: Webhook, topic: str, order: JSONDict) -> WebhookDelivery:
        """A signed delivery of ``order`` as it is now (caller holds the lock)."""
        body = json.dumps(self._order_json(order, None), separators=(",", ":")).encode()
        return self._signed(hook.id, topic, order["id"], body, hook.secret)

    def _signed(self, webhook_id: int, topic: str, resource_id: int | None, body: bytes,
                secret: str) -> WebhookDelivery:
        """A delivery of ``body`` with WooCommerce's headers and a new delivery id,
        signed with ``secret`` as WordPress stores it (entities decoded)."""
        delivery_id = secrets.token_hex(16)
        resource, _, event = topic.partition(".")
        return WebhookDelivery(
            delivery_id=delivery_id, webhook_id=webhook_id, topic=topic, resource_id=resource_id, body=body,
            headers={
                "Content-Type": "application/json", "User-Agent": WEBHOOK_USER_AGENT,
                "X-WC-Webhook-Source": f"{self._site()}/", "X-WC-Webhook-Topic": topic,
                "X-WC-Webhook-Resource": resource, "X-WC-Webhook-Event": event,
                "X-WC-Webhook-Signature": hmac_sha256_base64(wp_specialchars_decode(secret), body),
                "X-WC-Webhook-ID": str(webhook_id), "X-WC-Webhook-Delivery-ID": delivery_id,
            })

    def _send_saved(self, webhook_id: int, topic: str, order_id: int) -> None:
        """A queued delivery (on the webhook thread): the order as it is now, to the
        webhook as it is now (nothing when it is gone or no longer active)."""
        with self._lock:
            hook = self._webhooks.get(webhook_id)
            order = self._orders.get(order_id)
            if hook is None or hook.status != "active" or order is None:
                return
            delivery = self._delivery(hook, topic, order)
            url = hook.delivery_url
        self._send(delivery, url)

    def _send(self, delivery: WebhookDelivery, url: str, *, count_failures: bool = True) -> WebhookDelivery:
        """POST ``delivery`` to ``url`` (no lock held), record it and the webhook's
        failure count (``WC_Webhook::log_delivery``); 2xx, 301 and 302 are successes.
        Returns (a copy of) the record of the last attempt."""
        records: list[WebhookDelivery] = []

        def record(attempt: WebhookAttempt) -> None:
            sent = dataclasses.replace(delivery, status=attempt.status, response=attempt.response[:4096],
                                       error=attempt.error)
            records.append(sent)
            with self._lock:
                self._deliveries.append(sent)
                hook = self._webhooks.get(sent.webhook_id)
                if hook is not None and count_failures:
                    if sent.ok:
                        hook.failure_count = 0
                    elif hook.failure_count > MAX_WEBHOOK_FAILURES:
                        hook.status = "disabled"
                    else:
                        hook.failure_count += 1

        self._deliver(url, delivery.body, delivery.headers, topic=delivery.topic,
                      ok=lambda status: 200 <= status < 303, on_attempt=record)
        return dataclasses.replace(records[-1])
