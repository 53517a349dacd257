"""Progress bars for long CLI commands (``sweep``, ``reconcile``, ``events
replay --all-failed``; ``feed export`` may use it too): drawn with
:func:`click.progressbar` on stderr when stderr is a terminal, and nothing at
all otherwise (cron, pipes, log files, tests), so stdout stays the command's
result.
"""

from __future__ import annotations

import collections.abc as cabc
import sys
import typing as t

import click


def on_terminal() -> bool:
    """Whether stderr is a terminal (a bar would be seen, not logged)."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class Progress:
    """``advance()`` one step at a time toward a total known late (:meth:`total`
    may be called once work is counted); a no-op off a terminal."""

    def __init__(self, label: str, *, enabled: bool | None = None) -> None:
        self.label = label
        self.enabled = on_terminal() if enabled is None else enabled
        self._bar: t.Any = None
        self._closed = False

    def total(self, length: int) -> None:
        """Start the bar at ``length`` steps (nothing when ``length`` is 0)."""
        if self.enabled and self._bar is None and length > 0:
            self._bar = click.progressbar(length=length, label=self.label, file=sys.stderr,
                                          show_pos=True, show_eta=True)
            self._bar.__enter__()

    def advance(self, steps: int = 1) -> None:
        """Move on ``steps`` steps."""
        if self._bar is not None:
            self._bar.update(steps)

    def close(self) -> None:
        """End the bar (its line is finished before the command prints its result)."""
        if self._bar is not None and not self._closed:
            self._closed = True
            self._bar.__exit__(None, None, None)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


T = t.TypeVar("T")


def track(items: cabc.Sequence[T], label: str) -> cabc.Iterator[T]:
    """Iterate ``items`` with a bar on a terminal."""
    with Progress(label) as bar:
        bar.total(len(items))
        for item in items:
            yield item
            bar.advance()
