"""Fake Stripe, Shopify and WooCommerce servers on one base, for tests and demos.

Each fake is a real HTTP server on loopback that a platform's own client (the
``stripe`` SDK, the flask-acp adapters, ``requests``) talks to unchanged:

* :class:`~flask_acp.testing.fakes.stripe.FakeStripe` (``fakes.stripe``; also
  ``flask_acp.testing.fake_stripe``),
* :class:`~flask_acp.testing.fakes.shopify.FakeShopify` (``fakes.shopify``; also
  ``flask_acp.testing.fake_shopify``),
* :class:`~flask_acp.testing.fakes.woocommerce.FakeWooCommerce`
  (``fakes.woocommerce``; also ``flask_acp.testing.fake_woocommerce``),
* :class:`~flask_acp.testing.fakes.feed.FakeFeedService` (``fakes.feed``): an
  agent's Feed API (ACP 2026-04-17), validating requests against ``openapi.feed.yaml``.

They share :class:`~flask_acp.testing.fakes.base.FakeServer`, so every fake has
the same controls (each fake's own older names keep working as aliases):

=============================================  ===============================================
Lifecycle
``with Fake(...) as fake`` / ``start(port=None, host=None)`` / ``stop()``
                                               serve on loopback from a daemon thread (port 0:
                                               a free one); ``url``, ``port``, ``running``;
                                               ``reset()`` forgets state, faults and logs
Clock
``clock=FakeClock(start, frozen=...)``         inject a clock (share one between fakes)
``advance_clock(s)``, ``freeze_clock()``       move / stop it; ``timestamp()`` reads it as
                                               Unix seconds, ``now()`` in the platform's form
Faults
``fail_next(kind, *, count=1, after=0,         the next ``count`` requests that ``match`` fail,
match=None, seconds=None, **params)``          once ``after`` have passed; faults queue up in
                                               order (a request meets the first that matches)
common kinds (:data:`COMMON_FAULTS`)           ``"500"``, ``"429"``, ``"500_after"``,
                                               ``"drop_after"``, ``"timeout"``, ``"slow"``
``faults``, ``clear_faults()``                 the armed faults; disarm them all
Webhooks
``send_webhook(url, topic, payload, *,         one webhook now, with the platform's headers and
secret=None)``                                 signature, retried ``webhook_retries`` times
``subscribe_webhooks(url, *, secret=None,      send the webhooks the fake's events cause (in
topics=None)``                                 order, from one background thread)
``flush_webhooks(timeout=10)``                 wait until they are sent; returns ``webhook_log``
``webhook_log``, ``webhook_attempts``          the fake's own records; every POST attempt
                                               (:class:`WebhookAttempt`)
``webhook_secret``, ``webhook_retries``,       the signing key and the retry policy
``webhook_retry_delay``, ``webhook_timeout``
Command line
``python -m flask_acp.testing.fake_<name>      serve until Ctrl-C/SIGTERM and print what to
--port N [--host H] [--verbose] ...``          configure
=============================================  ===============================================

What ``match`` matches, and the fake's own fault kinds:

* Stripe: a path prefix (alias ``path_prefix=``); ``"500"`` is its
  ``"500_before"``.
* Shopify: a GraphQL operation name (``add_fault(kind, operation=, times=,
  skip=)`` is the older spelling); own kinds ``"status"`` (``status=``,
  ``retry_after=``, ``body=``), ``"throttled"``, ``"drop"`` (= ``"drop_after"``),
  ``"delay"`` (= ``"slow"``).
* WooCommerce: a route name such as ``"PUT /wc/v3/orders/{id}"`` (alias
  ``route=``); own kind ``"html_503"`` (a maintenance page).

Webhook names per fake: Stripe ``auto_webhooks`` (= ``subscribe_webhooks``);
Shopify ``deliveries`` (= ``webhook_log``), ``emit``, ``redeliver``,
``suppress_webhooks``; WooCommerce ``add_webhook`` (one registered webhook per
topic; ``subscribe_webhooks`` registers them), ``deliveries``, ``ping``,
``redeliver``, ``drop_next_deliveries``. Retries: Shopify 2 (its seed's
``webhooks.retries``), Stripe and WooCommerce 0 (WooCommerce never retries).

This package imports only the base; each fake's module needs its extra
dependencies (``jsonschema`` for Stripe, ``graphql-core`` for Shopify,
``jsonschema`` and ``PyYAML`` for the Feed API: the ``testing`` extra).
"""

from __future__ import annotations

from .base import COMMON_FAULTS as COMMON_FAULTS
from .base import FakeClock as FakeClock
from .base import FakeServer as FakeServer
from .base import Fault as Fault
from .base import WebhookAttempt as WebhookAttempt

__all__ = ["COMMON_FAULTS", "FakeClock", "FakeServer", "Fault", "WebhookAttempt"]
