"""Inbound webhooks from the payment processor (Stripe), on their own route.

``POST {ACP_URL_PREFIX}/webhooks/stripe``: the raw body is verified with
``Stripe-Signature`` (``stripe.Webhook.construct_event``, 300 s tolerance)
before any JSON is read; a bad or stale signature gets 400. Each event is
processed once (``acp_inbound_events``) and every handler is idempotent, so a
redelivery changes nothing. Handled events (Stripe API reference, "Types of
events"; ``../shared/docs/stripe.md`` §7):

- ``payment_intent.succeeded``, ``payment_intent.amount_capturable_updated``
  (manual capture): settle a completion whose outcome was lost (the session
  is ``complete_in_progress`` and the PaymentIntent carries that attempt's
  ``acp_idempotency_key``), or give back a stray charge of one of our
  sessions that no order accounts for (refund, or release of an
  authorization); a charge naming a session this store does not know is
  logged at error level;
- ``payment_intent.payment_failed``: settle the pending attempt it belongs to;
- ``payment_intent.canceled``: an authorization was canceled or expired
  before capture: the order is canceled;
- ``charge.refunded``: each listed refund becomes (or updates) a ``refund``
  adjustment; since API version 2022-11-15 the charge lists no refunds, and
  its ``amount_refunded`` beyond the known refunds becomes one adjustment;
- ``charge.dispute.created``: a ``dispute`` adjustment.

Unknown event types are acknowledged (200) and ignored. An event that cannot
be applied now (a busy session, Stripe unreachable) gets a non-2xx answer
and is not recorded, so Stripe delivers it again.

Amounts in events are Stripe's (``amount``, ``amount_refunded``): converted
to ISO 4217 minor units of the object's ``currency`` before use
(:func:`flask_acp.payments.stripe_amounts.from_stripe`: ``amount=50000`` in
ISK is 500 ISK). An amount that does not convert exactly is logged at error
level and answered 500, not recorded (Stripe delivers it again): never rounded.
"""

from __future__ import annotations

import datetime as dt
import logging
import typing as t

import stripe
from flask import Blueprint
from flask import Response
from flask import request
from werkzeug.exceptions import HTTPException

from .adapter import PlatformAdapter
from .adapter import WebhookSignatureError
from .api.errors import render_error
from .api.response import json_response
from .blueprint import check_transport
from .blueprint import secure_headers
from .blueprint import to_flask
from .errors import ACPError
from .errors import BodyTooLargeError
from .errors import ProcessingError
from .errors import is_transient
from .feed.sync import queue_product_changes
from .models import Adjustment
from .models import Status
from .payments.base import ChargeResult
from .payments.stripe_amounts import StripeAmountError
from .payments.stripe_amounts import from_stripe
from .state import ACPState
from .state import current_state

log = logging.getLogger("flask_acp")


def _state() -> ACPState:
    return current_state()


def _json(body: dict[str, t.Any], status: int = 200) -> Response:
    return to_flask(json_response(body, status))


def _retry_later(exc: ACPError) -> bool:
    """Whether the sender should deliver the event again: busy or unavailable
    now, or a failure on our side (never acknowledged as processed)."""
    return is_transient(exc) or isinstance(exc, ProcessingError)


def _handle_error(exc: Exception) -> Response | HTTPException:
    """Any failure outside the handlers (the de-duplication log's storage...):
    the flat JSON error, never HTML; 5xx, so the sender tries again."""
    if isinstance(exc, HTTPException):
        if exc.code == 413:  # a streamed body past ACP_MAX_WEBHOOK_BYTES
            return _handle_error(BodyTooLargeError("The webhook body is too large."))
        return exc
    if isinstance(exc, ACPError):
        rendered = render_error(exc)
        return to_flask(json_response(rendered.body, rendered.status, rendered.headers))
    log.exception("unhandled error in an inbound webhook")
    return _handle_error(ProcessingError("An unexpected error occurred; it has been logged."))


def stripe_webhook() -> Response:
    state = _state()
    secret = state.stripe_settings.webhook_secret
    if not secret:
        return _json({"type": "invalid_request", "code": "not_configured",
                      "message": "ACP_STRIPE_WEBHOOK_SECRET is not set."}, 404)
    payload = _body()
    try:
        event = stripe.Webhook.construct_event(payload, request.headers.get("Stripe-Signature", ""), secret)
    except (ValueError, stripe.SignatureVerificationError) as exc:
        log.warning("rejected a Stripe webhook: %s", exc)
        return _json({"type": "invalid_request", "code": "invalid_signature",
                      "message": "The Stripe-Signature header does not match the body."}, 400)
    if state.storage.inbound.seen("stripe", event.id):
        return _json({"received": True, "duplicate": True})
    try:
        handle_stripe_event(state, event.type, event.data.object.to_dict())
    except StripeAmountError as exc:
        log.error("Stripe event %s (%s) not processed: %s", event.id, event.type, exc)
        return _json({"type": "processing_error", "code": "invalid_amount",
                      "message": "An amount in the event is not a whole number of minor units."}, 500)
    except ACPError as exc:
        if _retry_later(exc):  # a busy session lock, a processor outage, a failure of ours
            log.warning("Stripe event %s not processed yet: %s", event.id, exc.message)
            rendered = render_error(exc)
            return _json(rendered.body, rendered.status)  # Stripe retries it later
        log.warning("Stripe event %s (%s) ignored: %s", event.id, event.type, exc.message)
    state.storage.inbound.record("stripe", event.id)
    return _json({"received": True})


def handle_stripe_event(state: ACPState, event_type: str, obj: dict[str, t.Any]) -> None:
    """Apply one Stripe event (``obj`` is its ``data.object``) to our sessions
    and orders. Idempotent.

    :raises ACPError: the change could not be applied (5xx: try again later).
    """
    if event_type in ("payment_intent.succeeded", "payment_intent.amount_capturable_updated"):
        _settle_completion(state, obj, charged=True)
    elif event_type == "payment_intent.payment_failed":
        _settle_completion(state, obj, charged=False)
    elif event_type == "payment_intent.canceled":
        order_id = _order_for_payment(state, obj.get("id"))
        if order_id is not None:
            sessions = state.storage.sessions
            session = sessions.get(sessions.session_id_for_payment(obj["id"]) or "")
            if session is not None and session.payment is not None \
                    and session.payment.capture_status == "authorized":
                state.orders.cancel(order_id, reason="payment authorization canceled")
    elif event_type == "charge.refunded":
        order_id = _order_for_payment(state, obj.get("payment_intent"))
        if order_id is None:
            return
        refunds = (obj.get("refunds") or {}).get("data")
        if refunds:  # listed: API versions before 2022-11-15, or an expanded charge
            for refund in refunds:
                state.orders.record_adjustment(order_id, _refund_adjustment(refund))
        elif isinstance(obj.get("amount_refunded"), int):
            state.orders.record_refunded_total(
                order_id, refunded=from_stripe(obj["amount_refunded"], str(obj.get("currency") or "")),
                reference=str(obj.get("id")),
                currency=str(obj.get("currency") or "").lower() or None)
    elif event_type == "charge.dispute.created":
        order_id = _order_for_payment(state, obj.get("payment_intent"))
        if order_id is not None:
            state.orders.record_adjustment(order_id, Adjustment(
                id=obj["id"], type="dispute", status="pending", amount=_iso(obj, "amount"),
                currency=str(obj.get("currency") or "").lower() or None, reason=obj.get("reason"),
                occurred_at=_time(obj.get("created"))))


def _settle_completion(state: ACPState, intent: dict[str, t.Any], *, charged: bool) -> None:
    """Settle what a PaymentIntent event says about one of our charges.

    ``charged``: :meth:`CheckoutService.settle_charge` records the pending
    attempt it belongs to and places the order, or gives back a stray charge
    (an attempt already settled as failed, a second charge of a completed
    session). A PaymentIntent without our metadata is not ours (the merchant's
    other sales) and is ignored. Not charged: the pending attempt it belongs to
    is settled (an event about another attempt of the session changes nothing).
    When the event says "charged" but the search cannot see the charge yet
    (Stripe's search lags), nothing is settled: 503, Stripe sends the event again."""
    metadata = intent.get("metadata") or {}
    session_id = metadata.get("acp_checkout_session_id")
    key = metadata.get("acp_idempotency_key")
    if not isinstance(session_id, str) or not isinstance(key, str):
        return
    if charged:
        # the event is signed by Stripe: it is the charge's own evidence
        currency = str(intent["currency"])
        charge = ChargeResult(payment_id=str(intent["id"]), amount=from_stripe(intent["amount"], currency),
                              currency=currency, status=str(intent.get("status")))
        state.service.settle_charge(session_id, charge, idempotency_key=key)
        return
    session = state.storage.sessions.get(session_id)
    if session is None or session.status is not Status.COMPLETE_IN_PROGRESS:
        return
    with state.service.locked(session.id):
        session = state.storage.sessions.get(session.id)
        if session is None or session.status is not Status.COMPLETE_IN_PROGRESS \
                or session.payment is None or key != session.payment.idempotency_key:
            return
        state.service.reconcile(session, None)


def _order_for_payment(state: ACPState, payment_id: t.Any) -> str | None:
    if not isinstance(payment_id, str):
        return None
    session_id = state.storage.sessions.session_id_for_payment(payment_id)
    session = state.storage.sessions.get(session_id) if session_id else None
    return session.order.id if session is not None and session.order is not None else None


def _refund_adjustment(refund: dict[str, t.Any]) -> Adjustment:
    status = refund.get("status")
    return Adjustment(
        id=(refund.get("metadata") or {}).get("acp_refund_id") or refund["id"],
        type="refund",
        status="completed" if status == "succeeded" else "failed" if status in ("failed", "canceled")
        else "pending",
        amount=_iso(refund, "amount"),
        currency=str(refund.get("currency") or "").lower() or None,
        reason=refund.get("reason"),
        description=f"Refund {refund['id']}",
        occurred_at=_time(refund.get("created")),
    )


def _iso(obj: dict[str, t.Any], field: str) -> int | None:
    """``obj[field]``, a Stripe amount of ``obj["currency"]``, in ISO minor
    units (``None`` when absent).

    :raises StripeAmountError: not a whole number of ISO minor units.
    """
    amount = obj.get(field)
    return None if amount is None else from_stripe(amount, str(obj.get("currency") or ""))


def _time(unix: t.Any) -> dt.datetime:
    if isinstance(unix, int):
        return dt.datetime.fromtimestamp(unix, dt.timezone.utc)
    return dt.datetime.now(dt.timezone.utc)


def platform_webhook() -> Response:
    """``POST {prefix}/webhooks/<adapter name>``: a platform's order webhook,
    verified and parsed by the adapter, de-duplicated by its event id, applied
    through the order service (which sends the agent ``order_update`` events);
    a catalog webhook (products, inventory) queues a feed ``PATCH`` of the
    products it names for every agent with a ``feed_url`` (:mod:`flask_acp.feed.sync`)."""
    state = _state()
    source = state.adapter.name
    try:
        webhook = state.adapter.parse_webhook(dict(request.headers), _body())
    except NotImplementedError:
        return _json({"type": "invalid_request", "code": "not_found",
                      "message": f"The {source} adapter takes no webhooks."}, 404)
    except WebhookSignatureError as exc:
        log.warning("rejected a %s webhook: %s", source, exc)
        return _json({"type": "invalid_request", "code": "invalid_signature", "message": str(exc)}, 401)
    if webhook.event_id is not None and state.storage.inbound.seen(source, webhook.event_id):
        return _json({"received": True, "duplicate": True})
    try:
        for update in webhook.updates:
            state.orders.apply_platform_update(update, source=source)
    except ACPError as exc:
        if _retry_later(exc):
            return _json(render_error(exc).body, 503)  # the platform delivers it again
        log.warning("%s webhook %s not applied: %s", source, webhook.event_id, exc.message)
    if webhook.products:
        # catalog changes: a PATCH of each product to every agent's feed, through the outbox
        # (ids derived from the webhook's: a redelivery adds nothing); a storage failure here
        # answers 5xx before the webhook is recorded, so the platform delivers it again
        events = queue_product_changes(state.settings, state.storage.outbox, webhook.products, source=source,
                                       cause=webhook.event_id)
        state.webhooks.on_events(events)
    if webhook.event_id is not None:
        state.storage.inbound.record(source, webhook.event_id)
    return _json({"received": True})


def _before_request() -> None:
    """The transport rules of every route: HTTPS (as for the checkout API),
    and a body of at most ``ACP_MAX_WEBHOOK_BYTES`` — a larger declared body
    is answered 413 before it is read, a larger streamed one when the limit is
    passed (werkzeug stops reading there)."""
    check_transport()
    limit = current_state().settings.max_webhook_bytes
    # a streamed (chunked) body may be read one byte past the limit: werkzeug answers
    # 413 once a read reaches its maximum, which a body of exactly the limit does
    request.max_content_length = limit if request.content_length is not None else limit + 1
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLargeError(f"The webhook body is larger than {limit} bytes.")


def _body() -> bytes:
    """The webhook body, at most ``ACP_MAX_WEBHOOK_BYTES``: a streamed
    (chunked) one is read up to one byte past the limit (``_before_request``),
    so a longer one is 413, not a truncated body whose signature fails, and
    one of exactly the limit is read, as with a ``Content-Length``."""
    raw = request.get_data(cache=True)
    limit = current_state().settings.max_webhook_bytes
    if len(raw) > limit:
        raise BodyTooLargeError(f"The webhook body is larger than {limit} bytes.")
    return raw


def takes_webhooks(adapter: PlatformAdapter) -> bool:
    """Whether ``adapter`` implements :meth:`PlatformAdapter.parse_webhook`."""
    return type(adapter).parse_webhook is not PlatformAdapter.parse_webhook


def make_blueprint(url_prefix: str, adapter_name: str, *, takes_webhooks: bool = True) -> Blueprint:
    """The blueprint of inbound webhooks: Stripe's, and the platform adapter's
    when it takes webhooks (no route at all otherwise); no ACP auth (signed
    bodies), HTTPS and a body limit."""
    bp = Blueprint("acp_inbound", __name__, url_prefix=url_prefix or None)
    bp.before_request(_before_request)
    bp.after_request(secure_headers)
    bp.add_url_rule("/webhooks/stripe", view_func=stripe_webhook, methods=["POST"])
    bp.register_error_handler(Exception, _handle_error)
    if adapter_name != "stripe" and takes_webhooks:
        bp.add_url_rule(f"/webhooks/{adapter_name}", view_func=platform_webhook, methods=["POST"])
    return bp
