"""Stripe webhooks: signed ``event`` POSTs, sent on demand
(:meth:`StripeWebhooks.send_webhook`) or after each action of the fake
(:meth:`StripeWebhooks.subscribe_webhooks`)."""

from __future__ import annotations

import collections.abc as cabc
import copy
import json

from .state import StripeState
from .state import WebhookTarget
from .wire import JSONDict
from .wire import WebhookDelivery
from .wire import new_id
from .wire import stripe_signature_header

#: the events the fake emits (what :meth:`StripeWebhooks.subscribe_webhooks` sends by default).
WEBHOOK_EVENTS: tuple[str, ...] = (
    "payment_intent.succeeded", "payment_intent.amount_capturable_updated",
    "payment_intent.payment_failed", "payment_intent.requires_action", "payment_intent.canceled",
    "charge.refunded", "refund.created", "shared_payment.granted_token.used")


class StripeWebhooks(StripeState):
    """Webhook sending (a layer of :class:`~flask_acp.testing.fakes.stripe.FakeStripe`)."""

    def send_webhook(self, url: str, event_type: str, data_object: JSONDict, *, secret: str | None = None,
                     api_version: str | None = None, timeout: float | None = None) -> WebhookDelivery:
        """POST a signed Stripe ``event`` (``{id: "evt_…", object: "event", type, created,
        api_version, livemode: false, data: {object: data_object}}``, JSON indented like
        Stripe's) to ``url`` with ``Stripe-Signature`` computed with ``secret`` (a
        ``whsec_…`` string; default :attr:`webhook_secret`) at each attempt. Retried
        :attr:`webhook_retries` times (default 0). Never raises for HTTP problems: see the
        returned delivery (its last attempt), also appended to :attr:`webhook_log`.

        :param timeout: seconds to wait for the answer (default :attr:`webhook_timeout`).
        """
        event = {
            "id": new_id("evt"), "object": "event",
            "api_version": api_version or self.spt_api_version,
            "created": self.now(), "livemode": False, "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type, "data": {"object": data_object},
        }
        key = self.webhook_secret if secret is None else secret
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"}
        attempts = self._deliver(url, json.dumps(event, indent=2).encode("utf-8"), headers, topic=event_type,
                                 sign=lambda body: {"Stripe-Signature": stripe_signature_header(body, key)},
                                 timeout=timeout)
        delivery = WebhookDelivery(url, event, attempts[-1].status, attempts[-1].error)
        with self._lock:
            self._webhook_log.append(delivery)
        return delivery

    def subscribe_webhooks(self, url: str | None, *, secret: str | None = None,
                           topics: cabc.Iterable[str] | None = None) -> None:
        """From now on, send events to ``url`` (from a background thread, in order) after
        each action: ``payment_intent.succeeded``, ``payment_intent.amount_capturable_updated``,
        ``payment_intent.payment_failed``, ``payment_intent.requires_action``,
        ``payment_intent.canceled``, ``charge.refunded``, ``refund.created`` and
        ``shared_payment.granted_token.used`` (:data:`WEBHOOK_EVENTS`), or only those of
        ``topics``; signed with ``secret`` (default :attr:`webhook_secret`). ``None`` turns
        this off."""
        with self._lock:
            self._webhook_target = None if url is None else WebhookTarget(
                url, self.webhook_secret if secret is None else secret,
                None if topics is None else frozenset(topics))

    def auto_webhooks(self, url: str | None, secret: str = "") -> None:
        """:meth:`subscribe_webhooks` to every event, signed with ``secret``."""
        self.subscribe_webhooks(url, secret=secret)

    def stop(self) -> None:
        """Stop the server; interrupts ``"slow"`` and ``"timeout"`` waits; turns
        :meth:`subscribe_webhooks` off."""
        self._webhook_target = None
        super().stop()

    def _emit(self, event_type: str, obj: JSONDict) -> None:
        target = self._webhook_target
        if target is not None and (target.topics is None or event_type in target.topics):
            snapshot = copy.deepcopy(obj)
            self._queue_webhook(lambda: self._send_event(event_type, snapshot))

    def _send_event(self, event_type: str, obj: JSONDict) -> None:
        target = self._webhook_target
        if target is not None:
            self.send_webhook(target.url, event_type, obj, secret=target.secret)
