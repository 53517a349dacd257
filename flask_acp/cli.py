"""``flask acp ...`` commands (registered on the ``acp`` blueprint's CLI group).

- ``flask acp sweep``: expire due sessions, recover interrupted completions,
  purge old idempotency records, erase the personal data of old closed sessions.
- ``flask acp orders show|ship|deliver|cancel|refund ORDER_ID``: report order changes;
  each one queues a signed ``order_update`` webhook to the agent.
- ``flask acp orders list``, ``flask acp sessions list|show SESSION_ID``,
  ``flask acp stock``: read-only views, newest first, ``--json`` for one
  JSON object per line; buyer e-mails masked, no address, token or secret
  (the queries live in :mod:`flask_acp.queries`, shared with the merchant console).
- ``flask acp worker``, ``flask acp events list|replay``: order webhook
  delivery (:mod:`flask_acp.webhooks.cli`);
- ``flask acp feed export|push``: the product feed (:mod:`flask_acp.feed.cli`);
- ``flask acp doctor``: check the configuration and connections (:mod:`flask_acp.doctor`);
- ``flask acp migrate-store --to URL``: copy this app's store into another one
  (:mod:`flask_acp.store.migrate`).
"""

from __future__ import annotations

import collections.abc as cabc
import datetime as dt
import json
import sqlite3
import time
import typing as t

import click

from . import queries
from .errors import ACPError
from .errors import AdapterError
from .feed import cli as feed_cli
from .models import Status
from .progress import Progress
from .progress import track
from .queries import session_summary
from .state import ACPState
from .state import current_state
from .versions import VERSIONS
from .webhooks import cli as webhooks_cli


def _state() -> ACPState:
    return current_state()


def _print_order(order: t.Any) -> None:
    state = _state()
    module = VERSIONS[state.settings.api_versions[0]]
    click.echo(json.dumps(module.render_order(order), indent=2))


def _merchant_change(action: t.Callable[[], t.Any]) -> t.Any:
    adapter = _state().adapter
    if adapter.platform_manages_orders:
        raise click.ClickException(
            f"orders of the {adapter.name} adapter are managed in {adapter.name}: ship, cancel or "
            f"refund them there; its webhooks (and 'flask acp reconcile') bring the change here "
            "and to the agent")
    return _run(action)


def _run(action: t.Callable[[], t.Any]) -> t.Any:
    try:
        return action()
    except ACPError as exc:
        raise click.ClickException(exc.message) from None


def _adapter_call(call: t.Callable[[], t.Any]) -> t.Any:
    try:
        return call()
    except AdapterError as exc:
        raise click.ClickException(f"the platform cannot answer: {exc}") from None


def _table(rows: list[dict[str, t.Any]], columns: cabc.Sequence[str], as_json: bool) -> None:
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    click.echo("\t".join(columns))
    for row in rows:
        click.echo("\t".join("-" if row[c] is None else str(row[c]) for c in columns))


def register(cli: click.Group) -> None:
    """Add the commands to ``cli`` (the ``acp`` group)."""

    @cli.command("sweep")
    @click.option("--stuck-after", type=float, default=None,
                  help="Seconds after which an unfinished completion is recovered.")
    def sweep_command(stuck_after: float | None) -> None:
        """Expire due sessions, recover interrupted completions, purge old idempotency keys and
        expired carts,
        erase the personal data of sessions closed longer ago than ACP_PII_RETENTION, and hand
        the due order webhook events to their runner: queue them (Redis mode: retries
        come due, events that never reached the queue) or attempt them here (thread mode)."""
        with Progress("sweeping sessions") as bar:
            def step(done: int, total: int) -> None:
                bar.total(total)
                bar.advance()

            report = _state().service.sweep(stuck_after=stuck_after, progress=step)
        # inbound webhook ids and seen request signatures (ACP_INBOUND_LOG_TTL)
        state = _state()
        purged_inbound = state.storage.inbound.purge(before=time.time() - state.settings.inbound_log_ttl)
        # expired carts (the Cart API's; a Redis store deletes them on its own)
        purged_carts = state.storage.carts.purge(before=time.time())
        click.echo(f"expired={report.expired} recovered={report.recovered} "
                   f"purged_idempotency={report.purged_idempotency} purged_inbound={purged_inbound} "
                   f"erased_personal_data={report.erased_personal_data} purged_carts={purged_carts}")
        try:
            queued = _state().webhooks.sweep()
        except Exception as exc:  # Redis down: a later sweep queues them
            raise click.ClickException(f"webhook events not queued: {type(exc).__name__}: {exc}") from None
        click.echo(f"webhooks_queued={queued}")

    @cli.command("doctor")
    def doctor() -> None:
        """Check the configuration and every connection (store, queue, Stripe, agents'
        webhook URLs, the platform, clock skew) and print what to fix; exit 1 on any error."""
        from flask import current_app

        from .doctor import diagnose

        findings = diagnose(_state(), current_app.config, debug=current_app.debug or current_app.testing)
        for finding in findings:
            click.echo(finding.line())
        errors = sum(1 for f in findings if f.level == "error")
        warnings = sum(1 for f in findings if f.level == "warn")
        click.echo(f"{errors} error(s), {warnings} warning(s)")
        if errors:
            raise SystemExit(1)

    @cli.command("migrate-store")
    @click.option("--to", "target", required=True, metavar="URL",
                  help="The Redis store to copy into (ACP_STORE_URL form), under an empty key prefix.")
    def migrate_store(target: str) -> None:
        """Copy this app's SQLite store (sessions and their orders, idempotency responses,
        the order-event outbox, the inbound-webhook log, the catalog's stock and orders) into a
        Redis store. Stop every app server and worker first; then point ACP_STORE_URL at TARGET."""
        from .migrate import copy_sqlite_to_redis
        from .store import is_redis

        state = _state()
        if is_redis(state.settings.store_url):
            raise click.ClickException("this app's store is Redis already; migrate-store copies a SQLite "
                                       "store")
        try:
            report = copy_sqlite_to_redis(state.settings.sqlite_path, target,
                                          idempotency_ttl=state.settings.idempotency_ttl, progress=click.echo)
        except (ValueError, sqlite3.Error) as exc:
            raise click.ClickException(str(exc)) from None
        except ACPError as exc:
            raise click.ClickException(f"{exc.message} (the copy may be partial: delete the target's keys "
                                       "and run it again)") from None
        click.echo(f"copied: {report.line()}")
        click.echo(f"now set ACP_STORE_URL={target} on every app server and worker, and start them")

    @cli.command("demo-purchase")
    @click.option("--base-url", required=True, help="The ACP server, e.g. http://127.0.0.1:8000")
    @click.option("--api-key", required=True, help="An agent API key of that server.")
    @click.option("--item", "items", multiple=True, default=("tee_red_m",), show_default=True,
                  help="Item id to buy (repeatable).")
    @click.option("--payment-method", default="pm_card_visa", show_default=True,
                  help="Stripe test PaymentMethod behind the minted token.")
    def demo_purchase(base_url: str, api_key: str, items: tuple[str, ...], payment_method: str) -> None:
        """Buy from a running ACP server as an agent would (test mode only).

        Creates a session, sets an address and the cheapest shipping, mints a
        test SharedPaymentToken through the Stripe test helper of this app's
        Stripe (the fake one in demo mode), completes, and prints the completed
        session as JSON on the last line.
        """
        from .demo import demo_purchase as run

        session = _run(lambda: run(_state(), base_url=base_url, api_key=api_key, items=items,
                                   payment_method=payment_method, echo=click.echo))
        click.echo(json.dumps(session))

    @cli.command("reconcile")
    @click.option("--since", type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
                  help="Only orders changed since (UTC); default: every open order.")
    def reconcile(since: t.Any) -> None:
        """Re-read orders from the platform, in case a webhook was missed."""
        state = _state()
        when = since.replace(tzinfo=dt.timezone.utc) if since is not None else None
        updates = _run(lambda: _adapter_call(lambda: state.adapter.reconcile_orders(when)))
        applied = 0
        for update in track(updates, "applying orders"):
            try:
                if state.orders.apply_platform_update(update, source=state.adapter.name) is not None:
                    applied += 1
            except ACPError as exc:
                click.echo(f"not applied ({exc.message}): {update.platform_order_id}", err=True)
        click.echo(f"orders read={len(updates)} applied={applied}")

    @cli.command("cleanup")
    @click.option("--older-than", type=click.FloatRange(min=0), default=86400, show_default=True,
                  help="Seconds.")
    def cleanup(older_than: float) -> None:
        """Delete what abandoned sessions left on the platform (e.g. Shopify drafts)."""
        removed = _run(lambda: _adapter_call(lambda: _state().adapter.cleanup(older_than)))
        click.echo(f"removed={len(removed)}")
        for item in removed:
            click.echo(item)

    @cli.group("orders")
    def orders() -> None:
        """Report order changes to the agent (shipments, deliveries, cancellations)."""

    @orders.command("list")
    @click.option("--status", "statuses", multiple=True,
                  help="Only orders in this status (repeatable): created, confirmed, shipped, ...")
    @click.option("--agent", help="Only this agent's orders.")
    @click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
    def list_orders(statuses: tuple[str, ...], agent: str | None, limit: int, as_json: bool) -> None:
        """List orders, newest first (amounts in minor units, buyer e-mail masked)."""
        _table(queries.orders(_state().storage.sessions, statuses=statuses, agent=agent, limit=limit),
               ("order_id", "status", "total", "refunded", "currency", "agent", "buyer_email",
                "checkout_session_id", "completed_at"), as_json)

    @orders.command("show")
    @click.argument("order_id")
    def show(order_id: str) -> None:
        """Print the order as the agent receives it."""
        _print_order(_run(lambda: _state().orders.get(order_id)))

    @orders.command("ship")
    @click.argument("order_id")
    @click.option("--carrier")
    @click.option("--tracking-number")
    @click.option("--tracking-url")
    @click.option("--line", "lines", multiple=True, metavar="LINE_ID:UNITS",
                  help="Ship only these units (repeatable); default: everything left.")
    @click.option("--fulfillment-id", help="Your shipment id (makes the command idempotent).")
    def ship(order_id: str, carrier: str | None, tracking_number: str | None,
             tracking_url: str | None, lines: tuple[str, ...], fulfillment_id: str | None) -> None:
        """Record a shipment with its carrier and tracking number."""
        wanted = None
        if lines:
            wanted = {}
            for spec in lines:
                line_id, _, units = spec.rpartition(":")
                if not line_id or not units.isdigit():
                    raise click.BadParameter(f"expected LINE_ID:UNITS, got {spec!r}", param_hint="--line")
                wanted[line_id] = int(units)
        _print_order(_merchant_change(lambda: _state().orders.ship(
            order_id, carrier=carrier, tracking_number=tracking_number, tracking_url=tracking_url,
            line_items=wanted, fulfillment_id=fulfillment_id)))

    @orders.command("deliver")
    @click.argument("order_id")
    @click.option("--fulfillment-id", help="Only this shipment (default: all shipped ones).")
    def deliver(order_id: str, fulfillment_id: str | None) -> None:
        """Mark shipments delivered (the order completes when everything is delivered)."""
        _print_order(_merchant_change(
            lambda: _state().orders.deliver(order_id, fulfillment_id=fulfillment_id)))

    @orders.command("refund")
    @click.argument("order_id")
    @click.option("--amount", type=click.IntRange(min=1), help="Minor units (default: all that is left).")
    @click.option("--refund-id", help="Your refund id: running the command again with it never "
                                      "refunds twice.")
    @click.option("--reason")
    def refund(order_id: str, amount: int | None, refund_id: str | None, reason: str | None) -> None:
        """Refund all or part of an order through the payment processor."""
        order = _merchant_change(lambda: _state().orders.refund(
            order_id, amount=amount, refund_id=refund_id, reason=reason))
        _print_order(order)
        refunds = [a for a in order.adjustments if a.type == "refund"]
        mine = next((a for a in refunds if a.id == refund_id), None) if refund_id else (
            refunds[-1] if refunds else None)
        if mine is not None and mine.status == "failed":
            raise click.ClickException(f"the refund failed: {mine.description}")

    @orders.command("cancel")
    @click.argument("order_id")
    @click.option("--reason")
    def cancel(order_id: str, reason: str | None) -> None:
        """Cancel the order (unshipped units are removed)."""
        order = _merchant_change(lambda: _state().orders.cancel(order_id, reason=reason))
        _print_order(order)
        if any(line.fulfilled for line in order.line_items) and order.amount_refunded < (order.total or 0):
            click.echo("Part of the order had shipped, so nothing was refunded automatically: refund "
                       f"what is due with 'flask acp orders refund {order_id} --amount N'.", err=True)

    @cli.group("sessions")
    def sessions() -> None:
        """Checkout sessions (read-only)."""

    @sessions.command("list")
    @click.option("--status", "statuses", multiple=True, type=click.Choice([s.value for s in Status]),
                  help="Only sessions in this status (repeatable); default: all.")
    @click.option("--agent", help="Only this agent's sessions.")
    @click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
    def list_sessions(statuses: tuple[str, ...], agent: str | None, limit: int, as_json: bool) -> None:
        """List checkout sessions, last updated first (buyer e-mail masked)."""
        found = queries.newest_sessions(_state().storage.sessions, statuses or [s.value for s in Status],
                                        agent=agent, limit=limit)
        _table([session_summary(s) for s in found],
               ("id", "status", "agent", "total", "currency", "buyer_email", "order_id", "updated_at"),
               as_json)

    @sessions.command("show")
    @click.argument("session_id")
    def show_session(session_id: str) -> None:
        """Print one session's summary as JSON (no address, no token; e-mail masked)."""
        session = _state().storage.sessions.get(session_id)
        if session is None:
            raise click.ClickException(f"no checkout session {session_id!r}")
        click.echo(json.dumps(session_summary(session), indent=2))

    @cli.command("stock")
    @click.option("--item", "items", multiple=True, help="Only this item id (repeatable).")
    @click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
    def stock(items: tuple[str, ...], as_json: bool) -> None:
        """The embedded catalog's stock per item: on hand, sold, held by open
        sessions, available (on_hand "-": unlimited)."""
        from .catalog import CatalogAdapter

        adapter = _state().adapter
        if not isinstance(adapter, CatalogAdapter):
            raise click.ClickException(f"stock of the {adapter.name} adapter is kept in {adapter.name}")
        held = adapter.ledger.held_counts()
        unknown = sorted(set(items) - set(adapter.items))
        if unknown:
            raise click.ClickException(f"unknown item ids: {unknown}")
        rows = []
        for item_id in sorted(items or adapter.items):
            on_hand = adapter.store.on_hand(item_id)
            sold, holding = adapter.ledger.sold(item_id), held.get(item_id, 0)
            rows.append({"item_id": item_id, "name": adapter.items[item_id].name, "on_hand": on_hand,
                         "sold": sold, "held": holding,
                         "available": None if on_hand is None else max(on_hand - sold - holding, 0)})
        _table(rows, ("item_id", "on_hand", "sold", "held", "available", "name"), as_json)

    webhooks_cli.register(cli)  # worker, events list / replay
    feed_cli.register(cli)  # feed export / push
