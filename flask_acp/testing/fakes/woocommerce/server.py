"""FakeWooCommerce: routing (``/wp-json/...`` and ``?rest_route=``), faults,
recorded calls, and the standalone server
(``python -m flask_acp.testing.fake_woocommerce``)."""

from __future__ import annotations

import argparse
import collections.abc as cabc
import typing as t

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from ..base import DropConnection
from ..base import Fault
from .cart import StoreApi
from .model import DEMO_SEED
from .model import URLS
from .model import WooError
from .model import json_response


class FakeWooCommerce(StoreApi):
    """A fake WooCommerce site (see :mod:`flask_acp.testing.fakes.woocommerce`).

    :param seed: a seed mapping, a JSON file path, or ``None`` for the demo seed.
    :param salt: the secret that signs Cart-Tokens and nonces (random by default).
    :param host: interface :meth:`start` listens on by default.
    :param port: port :meth:`start` uses by default (0: a free one).
    :param quiet: do not log each request.
    :param clock: the clock to follow (:class:`~flask_acp.testing.fakes.FakeClock`);
        ``None``: its own.

    Thread-safe: every request is handled under one lock (faults' waits excepted).
    """

    fault_kinds = ("500", "500_after", "html_503", "429", "timeout", "drop_after", "slow")
    cli_module = "flask_acp.testing.fake_woocommerce"
    cli_description = "Run a fake WooCommerce site (Store API + REST v3)."
    cli_port = 8089

    def fail_next(self, kind: str, *, count: int = 1, after: int = 0, match: str | None = None,
                  seconds: float | None = None, route: str | None = None, **params: t.Any) -> Fault:
        """Make ``count`` calls of ``route`` (alias ``match``: a counter name such as
        ``"PUT /wc/v3/orders/{id}"``; any route when ``None``) fail, once ``after``
        matching calls have passed untouched:

        * ``"500"``: 500 ``internal_server_error`` before anything is done.
        * ``"500_after"``: done, then answered 500.
        * ``"html_503"``: a 503 HTML maintenance page, nothing done.
        * ``"429"``: 429 ``rate_limit_exceeded`` with ``RateLimit-Retry-After: 2``, nothing done.
        * ``"timeout"``: waits ``seconds`` (default 1), then closes the connection; nothing done.
        * ``"drop_after"``: done and saved, then the connection is closed unanswered.
        * ``"slow"``: done, then answered ``seconds`` (default 1) late.
        """
        return super().fail_next(kind, count=count, after=after, seconds=seconds,
                                 match=route if match is None else match, **params)

    def _respond(self, request: Request) -> Response:
        path = request.path
        if path.rstrip("/") == "" and "rest_route" in request.args:
            path = "/wp-json" + request.args["rest_route"]
        route = path[len("/wp-json"):] if path.startswith("/wp-json/") else None
        try:
            if route is None:
                raise HTTPException()
            endpoint, args = URLS.bind("fake").match(route, request.method)
        except HTTPException:
            return json_response(404, WooError(404, "rest_no_route", "No route was found matching the URL "
                                                    "and request method.").body())
        name = str(endpoint)
        fault = self._take_fault(name)
        if fault is not None and fault.kind == "timeout":
            self._record(request.method, path, name, 0)
            self._hold(fault.seconds)
            raise DropConnection("FakeWooCommerce timeout fault")
        if fault is not None and fault.kind in ("500", "html_503", "429"):
            self._record(request.method, path, name, {"500": 500, "html_503": 503, "429": 429}[fault.kind])
            return _fault_response(fault.kind)
        with self._lock:
            try:
                status, body, headers = self._dispatch(name, args, request)
            except WooError as exc:
                status, body, headers = exc.status, exc.body(), self._store_headers(request, name)
            except Exception as exc:  # a bug in the fake: answer like WordPress, keep it for tests
                self._record_error(exc)
                status, body, headers = 500, WooError(500, "internal_server_error", repr(exc)).body(), {}
            self._record(request.method, path, name, status)
        if fault is not None and fault.kind == "slow":
            self._hold(fault.seconds)
        if fault is not None and fault.kind == "drop_after":
            raise DropConnection("FakeWooCommerce dropped the connection")
        if fault is not None and fault.kind == "500_after":
            return _fault_response("500")
        return json_response(status, body, headers)

    def _dispatch(self, name: str, args: cabc.Mapping[str, t.Any],
                  request: Request) -> tuple[int, t.Any, dict[str, str]]:
        body = request.get_json(silent=True) if request.data else None
        if name.split(" ", 1)[1].startswith("/wc/v3/"):
            self._authenticate(request)
            status, data, headers = self._rest(name, args, body, request.args)
            return status, data, headers
        if name == "POST /wc/store/v1/batch":
            return self._batch(request, body)
        cart, token = self._cart_for(dict(request.headers), mutating=request.method != "GET" and
                                     name != "GET /wc/store/v1/checkout")
        status, data = self._store(name, args, body or {}, request.args, cart)
        return status, data, self._session_headers(token)

    # ----------------------------------------------------------------- command line

    @classmethod
    def _cli_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--seed", default=str(DEMO_SEED), help="seed JSON file (default: the demo seed)")
        parser.add_argument("--webhook", metavar="URL",
                            help="deliver order.updated webhooks there (pinged at startup), e.g. "
                                 "http://127.0.0.1:8000/webhooks/woocommerce")

    @classmethod
    def _from_cli(cls, args: argparse.Namespace) -> FakeWooCommerce:
        return cls(args.seed, quiet=not args.verbose)

    def _cli_banner(self, args: argparse.Namespace) -> cabc.Iterator[str]:
        yield f"FakeWooCommerce at {self.url}/wp-json  (seed: {args.seed})"
        yield f"WOOCOMMERCE_URL={self.url}"
        yield f"WOOCOMMERCE_CONSUMER_KEY={self.consumer_key}"
        yield f"WOOCOMMERCE_CONSUMER_SECRET={self.consumer_secret}"
        yield f"WOOCOMMERCE_WEBHOOK_SECRET={self.webhook_secret}"
        if args.webhook:
            self.add_webhook(args.webhook)
            ping = self.deliveries[-1]
            yield f"webhook -> {args.webhook} (ping answered {ping.status or ping.error})"


def _fault_response(kind: str) -> Response:
    if kind == "html_503":
        return Response("<!DOCTYPE html><html><body><h1>Briefly unavailable for scheduled maintenance."
                        "</h1></body></html>", 503, {"Retry-After": "3"}, mimetype="text/html")
    if kind == "429":
        return json_response(429, WooError(429, "rate_limit_exceeded", "Too many requests. Please wait and "
                                                                         "try again.").body(),
                             {"RateLimit-Limit": "25", "RateLimit-Remaining": "0", "RateLimit-Reset": "10",
                              "RateLimit-Retry-After": "2"})
    return json_response(500, WooError(500, "internal_server_error", "There has been a critical error on "
                                                                      "this website.").body())


def main(argv: cabc.Sequence[str] | None = None) -> None:
    """``python -m flask_acp.testing.fake_woocommerce [--host H] [--port N] [--seed FILE]
    [--webhook URL] [--verbose]``."""
    FakeWooCommerce.main(argv)
