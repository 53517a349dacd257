"""The merchant console's pages (see :mod:`flask_acp.console`).

``GET /`` the overview (funnel, outbox per agent, stuck completions, declines,
rate-limited agents); ``GET /orders``; ``GET /events`` (failed and pending
deliveries); ``POST /events/<event_id>/replay`` and ``POST /events/replay-failed``
(the service call of ``flask acp events replay``); ``GET|POST /login``,
``POST /logout``. Money is shown from ``int`` minor units with the currency's
ISO 4217 exponent (:func:`flask_acp.payments.base.format_minor`).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import typing as t

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask_wtf.csrf import generate_csrf
from werkzeug.exceptions import HTTPException

from .. import queries
from ..config import Settings
from ..payments.base import format_minor
from ..state import ACPState
from ..state import current_state
from .access import ConsoleAccess

log = logging.getLogger("flask_acp")

#: rows per list on a page
PAGE_ROWS = 100


def money(amount: int | None, currency: str | None) -> str:
    """``(1999, "usd")`` -> ``19.99 USD``; ``(500, "jpy")`` -> ``500 JPY``; None -> ``-``."""
    if amount is None or not currency:
        return "-"
    return f"{format_minor(amount, currency)} {currency.upper()}"


def age(since: float | dt.datetime | None, now: float | None = None) -> str:
    """How long ago ``since`` (unix seconds or a datetime) was: ``42 s``, ``3 min``, ``5 h``, ``2 d``."""
    if since is None:
        return "-"
    then = since.timestamp() if isinstance(since, dt.datetime) else since
    seconds = max(0, int((time.time() if now is None else now) - then))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def when(value: float | dt.datetime | None) -> str:
    """ISO 8601 UTC (``2026-01-02T03:04:05Z``), or ``-``."""
    stamp = queries.from_unix(value) if isinstance(value, (int, float)) else value
    return queries.iso(stamp) or "-"


def make_blueprint(settings: Settings, app: Flask, *, counters_url: str = "memory://") -> Blueprint:
    """The console blueprint (name ``acp_console``) mounted at ``ACP_CONSOLE_PREFIX``;
    wrong passwords are counted in the ``limits`` storage ``counters_url``.

    :raises RuntimeError: see :class:`~flask_acp.console.access.ConsoleAccess`.
    """
    access = ConsoleAccess(settings, app, counters_url=counters_url)
    bp = Blueprint("acp_console", __name__, url_prefix=settings.console_prefix,
                   template_folder="templates")

    bp.before_request(access.gate)

    @bp.after_request
    def _headers(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; "
            "base-uri 'none'")
        return response

    @bp.errorhandler(Exception)
    def _unavailable(exc: Exception) -> Response | HTTPException:
        """A page whose reads or service call failed (the store down...): a
        503 saying so, never a 500 (logged with its traceback)."""
        if isinstance(exc, HTTPException):
            return exc
        log.exception("console: %s %s failed", request.method, request.path)
        return Response(f"The merchant console could not finish this ({type(exc).__name__}: the store "
                        "or a service did not answer; see the log). Reload the page to see where things "
                        "stand, then try again.\n", status=503, mimetype="text/plain",
                        headers={"Retry-After": "5"})

    @bp.context_processor
    def _helpers() -> dict[str, t.Any]:
        return {"csrf_token": generate_csrf, "money": money, "age": age, "when": when,
                "password_login": access.password_hash is not None}

    def state() -> ACPState:
        return current_state()

    @bp.get("/")
    def overview() -> str:
        s = state()
        now = dt.datetime.now(dt.timezone.utc)
        days = s.settings.console_funnel_days
        since = dt.datetime.combine(now.date() - dt.timedelta(days=days - 1), dt.time(), dt.timezone.utc)
        limits = s.pipeline.limits
        refused, refused_ips = limits.refusals() if limits is not None else ([], 0)
        windows = [w for a in s.settings.agents for w in limits.agent_windows(a.name)] if limits else []
        return render_template(
            "acp_console/overview.html", page="overview", days=days,
            funnel=queries.funnel(s.storage.sessions, days=days, now=now),
            outbox=queries.outbox_overview(s.storage.outbox, scan=queries.OUTBOX_SCAN),
            stuck=queries.stuck_completions(s.storage.sessions), lock_lease=s.settings.lock_lease,
            declines=queries.declines(s.storage.sessions, since=since, limit=PAGE_ROWS),
            limits_enabled=limits is not None, refused=refused, refused_ips=refused_ips, windows=windows,
            mode=s.webhooks.mode, scan=queries.OUTBOX_SCAN, current_ts=now.timestamp())

    @bp.get("/orders")
    def orders() -> str:
        agent = request.args.get("agent") or None
        rows = queries.orders(state().storage.sessions, agent=agent, limit=PAGE_ROWS)
        return render_template("acp_console/orders.html", page="orders", orders=rows, agent=agent,
                               agents=[a.name for a in state().settings.agents], limit=PAGE_ROWS)

    @bp.get("/events")
    def events() -> str:
        s = state()
        outbox = s.storage.outbox
        return render_template("acp_console/events.html", page="events",
                               failed=outbox.entries(statuses=["failed"], limit=PAGE_ROWS),
                               pending=outbox.entries(statuses=["pending"], limit=PAGE_ROWS),
                               limit=PAGE_ROWS, mode=s.webhooks.mode)

    @bp.post("/events/<event_id>/replay")
    def replay(event_id: str) -> Response:
        service = state().webhooks
        try:
            result = service.replay(event_id)
        except KeyError:
            flash(f"No webhook event {event_id} in the outbox.", "error")
        except Exception as exc:  # an attempt running right now, Redis down: said, nothing hidden
            flash(f"{event_id}: not replayed: {exc}", "error")
        else:
            log.info("console: webhook event %s replayed (%s)", event_id, result)
            flash(f"{event_id}: {result}" + _mode_note(service.mode), "info")
        return t.cast(Response, redirect(url_for(".events")))

    @bp.post("/events/replay-failed")
    def replay_failed() -> Response:
        service = state().webhooks
        results = service.replay_failed()
        errors = [f"{eid}: {result}" for eid, result in results if result.startswith("error")]
        flash(f"{len(results) - len(errors)} failed event(s) replayed" + _mode_note(service.mode),
              "info")
        for line in errors:
            flash(line, "error")
        return t.cast(Response, redirect(url_for(".events")))

    @bp.route("/login", methods=["GET", "POST"])
    def login() -> Response | tuple[str, int] | str:
        if access.password_hash is None:
            return t.cast(Response, redirect(url_for(".overview")))
        if request.method == "POST":
            wait = access.login_retry_after()
            if wait is not None:
                page = render_template("acp_console/login.html", page="login", wrong=False, wait=wait)
                return Response(page, status=429, headers={"Retry-After": str(wait)})
            if access.check_password(request.form.get("password", "")):
                target = request.args.get("next", "")
                # only a path of this console: never an open redirect
                if not target.startswith(settings.console_prefix + "/") or target.startswith("//"):
                    target = url_for(".overview")
                response = t.cast(Response, redirect(target))
                access.set_login(response)
                # a token a visitor saw before logging in is not the logged-in one
                session.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)
                return response
            access.login_failed()
            return render_template("acp_console/login.html", page="login", wrong=True), 401
        return render_template("acp_console/login.html", page="login", wrong=False)

    @bp.post("/logout")
    def logout() -> Response:
        response = t.cast(Response, redirect(url_for(".login")))
        access.clear_login(response)
        return response

    return bp


def _mode_note(mode: str) -> str:
    if mode == "manual":
        return " (no delivery runs in this app: `flask acp worker` delivers pending events)"
    return ""
