"""``flask acp feed`` commands.

- ``flask acp feed export [--out FILE]``: the catalog as JSON Lines, one ACP
  ``Product`` per line (``schema.feed.json``), to stdout or ``FILE`` (written
  to a temporary file, renamed when complete);
- ``flask acp feed push [--agent NAME] [--full]``: push it to the Feed API of
  each agent with a ``feed_url`` (or of ``NAME``): only what changed since the
  last push, or everything with ``--full``; resumes a push that stopped midway
  (:mod:`flask_acp.feed.push`).

A progress bar goes to stderr when stderr is a terminal (never in cron).
Exit status 1 when something failed (the message says what and how to resume).
"""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import itertools
import os
import pathlib
import sys
import tempfile
import typing as t

import click
from click._termui_impl import ProgressBar
from flask import current_app

from ..errors import AdapterError
from ..state import current_state
from .client import FeedClient
from .export import product_json
from .export import write_lines
from .push import FeedPush
from .push import FeedPushError
from .push import FeedState
from .push import feed_state_path


@contextlib.contextmanager
def _progress(label: str) -> cabc.Iterator[cabc.Callable[[int], None]]:
    """A ``click.progressbar`` on stderr when stderr is a TTY (the total is not
    known in advance: it counts); else a no-op."""
    if not sys.stderr.isatty():
        yield lambda n: None
        return
    # an endless iterable: the bar counts what update() reports (no percentage)
    bar: ProgressBar[None]
    with click.progressbar(itertools.repeat(None), label=label, file=sys.stderr, show_pos=True) as bar:
        yield bar.update


def _counted(products: cabc.Iterable[t.Any], tick: cabc.Callable[[int], None]) -> cabc.Iterator[t.Any]:
    for product in products:
        yield product
        tick(1)


def register(cli: click.Group) -> None:
    """Add the ``feed`` group to ``cli`` (the ``acp`` group)."""

    @cli.group("feed")
    def feed() -> None:
        """The product feed: export the catalog, push it to agents."""

    @feed.command("export")
    @click.option("--out", "out", type=click.Path(dir_okay=False, writable=True), default=None,
                  help="Write to this file (default: stdout).")
    def export(out: str | None) -> None:
        """The catalog as ACP feed JSON Lines (one Product per line)."""
        adapter = current_state().adapter
        try:
            with _progress("products") as tick:
                products = _counted(product_json(adapter), tick)
                if out is None:
                    count = write_lines(products, sys.stdout)
                else:
                    count = _write_file(pathlib.Path(out), products)
        except NotImplementedError:
            raise click.ClickException(f"the {adapter.name} adapter cannot list its catalog") from None
        except AdapterError as exc:
            raise click.ClickException(f"the platform cannot answer: {exc}") from None
        click.echo(f"{count} products exported" + (f" to {out}" if out else ""), err=True)

    @feed.command("push")
    @click.option("--agent", "agent_name", default=None, help="Only this agent (default: every agent "
                  "with a feed_url).")
    @click.option("--full", is_flag=True, help="Send every product, not only the changed ones.")
    def push(agent_name: str | None, full: bool) -> None:
        """Push the catalog to the agents' Feed APIs (resumes a push that stopped midway)."""
        state = current_state()
        agents = [a for a in state.settings.agents if a.feed_url and agent_name in (None, a.name)]
        if not agents:
            raise click.ClickException(
                f"agent {agent_name!r} has no feed_url in ACP_AGENTS" if agent_name
                else "no agent has a feed_url in ACP_AGENTS")
        store = FeedState(feed_state_path(state.settings, current_app.instance_path))
        try:
            store.load()
        except ValueError as exc:  # edited by hand, or another program's file
            raise click.ClickException(str(exc)) from None
        failed = False
        for agent in agents:
            client = FeedClient(t.cast(str, agent.feed_url), token=agent.feed_token,
                                timeout=state.settings.webhook_timeout)
            try:
                with _progress(f"feed of {agent.name}") as tick:
                    pusher = FeedPush(state.adapter, agent, client, store,
                                      batch_size=state.settings.feed_batch_size, progress=tick)
                    result = pusher.run("full" if full else "incremental")
            except NotImplementedError:
                raise click.ClickException(
                    f"the {state.adapter.name} adapter cannot list its catalog") from None
            except FeedPushError as exc:
                click.echo(f"Error: {exc}", err=True)
                failed = True
                continue
            finally:
                client.close()
            click.echo(f"agent {result.agent}: feed {result.feed_id}"
                       + (" (created)" if result.created else "")
                       + f": {result.sent} products sent in {result.batches} batches, {result.unchanged} "
                       + ("already sent" if result.resumed and result.mode == "full" else "unchanged")
                       + f" ({result.mode}" + (", resumed)" if result.resumed else ")")
                       + (f"; {result.withdrawn} no longer listed, withdrawn" if result.withdrawn else ""))
        if failed:
            sys.exit(1)


def _write_file(path: pathlib.Path, products: cabc.Iterable[t.Any]) -> int:
    """Write JSON Lines next to ``path`` and rename it over ``path`` once complete."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent or None)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            count = write_lines(products, out)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return count
