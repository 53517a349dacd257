"""FakeShopify: HTTP routing (the GraphQL endpoint, the client-credentials
grant, the ``/__fake__/`` control routes), faults, and the standalone server
(``python -m flask_acp.testing.fake_shopify``)."""

from __future__ import annotations

import argparse
import collections.abc as cabc
import datetime as dt
import secrets
import typing as t

from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from ..base import Fault
from .execution import ShopGraphQL
from .model import DEMO_SEED
from .model import iso
from .model import json_response


class FakeShopify(ShopGraphQL):
    """The fake shop: state, GraphQL execution, faults, counters and the HTTP server.

    :param seed: a seed dict, or the path of a seed JSON file (see
        :mod:`flask_acp.testing.fakes.shopify`); ``None`` uses :data:`DEMO_SEED`.
    :param host: interface :meth:`start` listens on by default.
    :param port: TCP port :meth:`start` uses by default; 0 picks a free one.
    :param quiet: do not log each request.
    :param clock: the clock to follow (:class:`~flask_acp.testing.fakes.FakeClock`);
        ``None``: its own.

    :ivar calls: HTTP requests per GraphQL operation name (every attempt,
        faults and throttled ones included; ``"access_token"`` for the token
        endpoint).
    :ivar executed: operations actually executed, per name.
    :ivar documents: every GraphQL document received, by operation name.
    :ivar events: resource events (``orders/create``...), see :meth:`emit`.
    :ivar deliveries: the webhooks sent or queued, oldest first (:class:`WebhookDelivery`).
    """

    fault_kinds = ("status", "throttled", "timeout", "drop", "delay", "500_after")
    fault_aliases = {"500": ("status", {"status": 500}),
                     "429": ("status", {"status": 429, "retry_after": "2.0"}),
                     "drop_after": ("drop", {}), "slow": ("delay", {})}
    fault_seconds = {"timeout": 30.0, "delay": 0.1}
    cli_module = "flask_acp.testing.fake_shopify"
    cli_description = "Serve a fake Shopify Admin GraphQL API (flask-acp demos)."
    cli_port = 8765
    cli_stream = "stderr"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (``SHOPIFY_SHOP_URL``), also when not running."""
        return self._address()

    def add_fault(self, kind: str, *, operation: str | None = None, times: int = 1, **params: t.Any) -> None:
        """Make the next ``times`` requests for ``operation`` (any if ``None``) fail
        (:meth:`fail_next` with ``count=times``, ``match=operation``, ``after=skip``).

        :param kind: ``"status"`` (``status=500``, optional ``retry_after="2.0"``, ``body``),
            ``"throttled"`` (``currently_available``, ``restore_rate``,
            ``requested_cost``, ``maximum_available``), ``"timeout"``
            (``seconds``, default 30: hold the request, do not execute, drop the
            connection), ``"drop"`` (execute, then drop the connection), ``"delay"``
            (``seconds``, default 0.1, then answer normally), ``"500_after"``
            (execute, then answer 500), or a common kind (``"500"``, ``"429"``,
            ``"drop_after"``, ``"slow"``). ``skip=n`` lets the first ``n`` matching
            requests through.
        """
        self.fail_next(kind, count=times, after=int(params.pop("skip", 0)), match=operation,
                       seconds=params.pop("seconds", None), **params)

    def fail_next(self, kind: str, *, count: int = 1, after: int = 0, match: str | None = None,
                  seconds: float | None = None, operation: str | None = None, **params: t.Any) -> Fault:
        """:meth:`~flask_acp.testing.fakes.base.FakeServer.fail_next` for the requests of
        the GraphQL operation ``match`` (alias ``operation``); kinds as in :meth:`add_fault`.
        Faults apply before authentication."""
        return super().fail_next(kind, count=count, after=after, seconds=seconds,
                                 match=operation if match is None else match, **params)

    def state(self) -> dict[str, t.Any]:
        """JSON-able snapshot: variants, drafts, orders, counters, events."""
        with self._lock:
            return {
                "variants": [_jsonable(self._variant_view(v)) for v in self.variants.values()],
                "drafts": self.draft_list(),
                "orders": self.order_list(),
                "calls": dict(self.calls),
                "executed": dict(self.executed),
                "events": list(self.events),
                "now": iso(self.now()),
            }

    def _respond(self, request: Request) -> Response:
        path = request.path
        if request.method == "POST" and path == "/admin/oauth/access_token":
            return self._oauth(request)
        if path.startswith("/admin/api/") and path.endswith("/graphql.json"):
            if request.method != "POST":
                return json_response({"errors": "Not Found"}, 404)
            version = path[len("/admin/api/"):-len("/graphql.json")]
            return self._graphql(request, version)
        if path.startswith("/__fake__/"):
            return self._control(request, path[len("/__fake__/"):])
        return json_response({"errors": "Not Found"}, 404)

    def _control(self, request: Request, action: str) -> Response:
        body = request.get_json(silent=True) or {}
        if action == "state" and request.method == "GET":
            return json_response(self.state())
        if action == "webhooks" and request.method == "GET":
            return json_response([{"topic": d.topic, "event_id": d.event_id, "webhook_id": d.webhook_id,
                                   "url": d.url, "statuses": d.statuses, "error": d.error}
                                  for d in self.webhooks()])
        if request.method != "POST":
            return json_response({"error": "method not allowed"}, 405)
        if action.startswith("events/"):
            return self._merchant_event(action[len("events/"):], dict(body))
        if action == "webhooks":
            self.subscribe_webhooks(body.get("url"), secret=body.get("secret"), topics=body.get("topics"))
        elif action == "reset":
            self.reset(body or None)
        elif action == "seed":
            self.reset(body)
        elif action == "clock":
            self.advance_clock(float(body.get("advance_seconds", 0)))
        elif action == "faults":
            params = dict(body)
            self.add_fault(str(params.pop("kind")), operation=params.pop("operation", None),
                           times=int(params.pop("times", 1)), **params)
        else:
            return json_response({"error": f"unknown control action {action!r}"}, 404)
        return json_response({"ok": True})

    def _merchant_event(self, action: str, body: dict[str, t.Any]) -> Response:
        """``POST /__fake__/events/{fulfill,fulfillment,refund,cancel}``: the
        merchant actions of :meth:`fulfill`, :meth:`update_fulfillment`,
        :meth:`refund` and :meth:`cancel` (JSON bodies with their argument
        names; ``order`` / ``id`` name the resource; ``lines`` maps variant ids
        to units)."""
        try:
            if action == "fulfill":
                lines = {int(k): int(v) for k, v in (body.pop("lines", None) or {}).items()} or None
                return json_response(self.fulfill(body.pop("order"), lines, **body))
            if action == "fulfillment":
                return json_response(self.update_fulfillment(body.pop("id"), **body))
            if action == "refund":
                return json_response(self.refund(body.pop("order"), body.pop("amount", None), **body))
            if action == "cancel":
                return json_response(self.cancel(body.pop("order"), **body))
        except (KeyError, TypeError, ValueError) as exc:
            return json_response({"error": f"{type(exc).__name__}: {exc}"}, 400)
        return json_response({"error": f"unknown merchant event {action!r}"}, 404)

    def _oauth(self, request: Request) -> Response:
        self.calls["access_token"] += 1
        form: cabc.Mapping[str, t.Any] = request.get_json(silent=True) or request.form
        client = self._clients.get(str(form.get("client_id", "")))
        if form.get("grant_type") != "client_credentials":
            return json_response({"error": "unsupported_grant_type"}, 400)
        if client is None or str(form.get("client_secret", "")) != str(client.get("secret")):
            return json_response({"error": "invalid_client",
                                  "error_description": "Client authentication failed"}, 401)
        expires_in = int(client.get("expires_in", 86399))
        token = "shpat_" + secrets.token_hex(16)
        with self._lock:
            self._issued[token] = self.now() + dt.timedelta(seconds=expires_in)
        return json_response({"access_token": token, "scope": str(client.get("scope", "write_draft_orders")),
                              "expires_in": expires_in})

    # -- command line ---------------------------------------------------------------------------

    @classmethod
    def _cli_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--seed", default=str(DEMO_SEED), help="seed JSON file (default: the demo seed)")
        parser.add_argument("--webhook-url", help="send signed order webhooks there, e.g. "
                                                  "http://127.0.0.1:5000/webhooks/shopify")

    @classmethod
    def _from_cli(cls, args: argparse.Namespace) -> FakeShopify:
        fake = cls(args.seed, quiet=not args.verbose)
        if args.webhook_url:
            fake.subscribe_webhooks(args.webhook_url)
        return fake

    def _cli_banner(self, args: argparse.Namespace) -> cabc.Iterator[str]:
        yield f"Fake Shopify on {self.url} (shop currency {self.currency})"
        yield (f"  SHOPIFY_SHOP_URL={self.url} SHOPIFY_ACCESS_TOKEN={self.access_token} "
               f"SHOPIFY_WEBHOOK_SECRET={self.webhook_secret}")


def _jsonable(value: t.Any) -> t.Any:
    """A view without its lazily resolved fields (callables the GraphQL executor calls)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if not callable(v)}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def main(argv: cabc.Sequence[str] | None = None) -> None:
    """``python -m flask_acp.testing.fake_shopify [--host H] [--port N] [--seed FILE]
    [--webhook-url URL] [--verbose]``."""
    FakeShopify.main(argv)
