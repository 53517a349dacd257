"""Webhook commands on the ``flask acp`` group.

- ``flask acp worker``: run delivery jobs (RQ) with the periodic outbox
  sweep that hands RQ the events come due; without Redis, run the delivery
  loop in the foreground.
- ``flask acp events list [--status S]``: the outbox, oldest first.
- ``flask acp events replay EVENT_ID`` / ``--all-failed``: back to pending
  and handed to the delivery again.
"""

from __future__ import annotations

import datetime as dt
import json

import click

from ..progress import Progress
from .delivery import STATUSES
from .outbox import FAILED
from .service import WebhookService
from .service import current_webhooks


def _service() -> WebhookService:
    return current_webhooks()


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def register(cli: click.Group) -> None:
    """Add ``worker`` and ``events`` to ``cli`` (the ``acp`` group)."""

    @cli.command("worker")
    @click.option("--burst", is_flag=True, help="Run what is queued or due now, then exit.")
    @click.option("--fork", is_flag=True,
                  help="RQ's forking Worker (a child process per job) instead of SimpleWorker.")
    @click.option("--sweep-interval", type=click.FloatRange(min=0), default=1.0, show_default=True,
                  help="Seconds between outbox sweeps that queue the events come due (retries, events "
                       "never queued); bounds how late a retry starts (0: at start only).")
    @click.option("--name", help="RQ worker name (default: random).")
    @click.option("--log-level", default="INFO", show_default=True,
                  type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), help="RQ worker log level.")
    def worker(burst: bool, fork: bool, sweep_interval: float, name: str | None, log_level: str) -> None:
        """Deliver order webhooks: an RQ worker on ACP_WEBHOOK_QUEUE (JSON serializer)
        plus the outbox sweep, which queues each event when the outbox says it is due.
        Without ACP_REDIS_URL, delivers from the outbox in this process instead."""
        service = _service()
        if service.queue is None:
            from .loop import run_loop

            click.echo("ACP_REDIS_URL is not set: delivering from the outbox in this process", err=True)
            attempts = run_loop(service, burst=burst)
            click.echo(f"attempts={attempts}")
            return
        from .worker import run_worker

        run_worker(service, burst=burst, fork=fork, sweep_interval=sweep_interval, name=name,
                   logging_level=log_level)

    @cli.group("events")
    def events() -> None:
        """Order webhook events (the outbox): list and replay."""

    @events.command("list")
    @click.option("--status", type=click.Choice(STATUSES), help="Only events in this status.")
    @click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
    def list_events(status: str | None, limit: int, as_json: bool) -> None:
        """List outbox events, oldest first."""
        entries = _service().storage.outbox.entries(statuses=[status] if status else STATUSES, limit=limit)
        if as_json:
            for entry in entries:
                click.echo(json.dumps(entry._asdict()))
            return
        click.echo("\t".join(("event_id", "type", "order_id", "agent", "status", "attempts", "created_at",
                              "next_attempt_at", "delivered_at", "last_status", "last_error")))
        for e in entries:
            click.echo("\t".join((
                e.event_id, e.type, e.order_id, e.agent, e.status, str(e.attempts), _when(e.created_at),
                _when(e.next_attempt_at) if e.status == "pending" else "-", _when(e.delivered_at),
                "-" if e.last_status is None else str(e.last_status), e.last_error or "-")))

    @events.command("replay")
    @click.argument("event_id", required=False)
    @click.option("--all-failed", is_flag=True, help="Replay every failed event.")
    def replay(event_id: str | None, all_failed: bool) -> None:
        """Reset an event (or every failed one) to pending and deliver it again."""
        if bool(event_id) == all_failed:
            raise click.UsageError("give either EVENT_ID or --all-failed")
        service = _service()
        if event_id:
            try:
                results = [(event_id, service.replay(event_id))]
            except KeyError:
                raise click.ClickException(f"no webhook event {event_id!r} in the outbox") from None
            except Exception as exc:
                raise click.ClickException(f"{event_id}: {type(exc).__name__}: {exc}") from None
        else:
            with Progress("replaying failed events") as bar:
                if bar.enabled:  # counted for the bar only
                    bar.total(len(service.storage.outbox.entries(statuses=[FAILED], limit=1_000_000)))
                results = service.replay_failed(on_each=bar.advance)
        for eid, result in results:
            click.echo(f"{eid}\t{result}")
        if service.mode != "rq":
            click.echo("(pending events are delivered by the app's delivery thread or `flask acp worker`)",
                       err=True)
        if any(result.startswith("error") for _, result in results):
            raise SystemExit(1)
