"""Long commands draw a progress bar on a terminal and stay quiet elsewhere (cron)."""

from __future__ import annotations

import datetime as dt
import io
import pathlib
import sys

import click._termui_impl
import pytest

from flask_acp import progress
from tests.conftest import Agent
from tests.conftest import build_app


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_is_drawn_on_a_terminal_and_nowhere_else(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert progress.on_terminal()
    assert list(progress.track(["a", "b", "c"], "copying")) == ["a", "b", "c"]
    assert "copying" in terminal.getvalue()
    assert "3/3" in terminal.getvalue()

    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    assert not progress.on_terminal()
    with progress.Progress("copying") as bar:
        bar.total(3)
        bar.advance(3)
    assert piped.getvalue() == ""


def _sweep_two_expired(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    app = build_app(tmp_path, ACP_WEBHOOK_DELIVERY_THREAD=False)
    agent = Agent(app.test_client())
    for _ in range(2):
        assert agent.create().status_code == 201
    service = app.extensions["acp"].service
    clock = service.clock
    monkeypatch.setattr(service, "clock", lambda: clock() + dt.timedelta(hours=2))
    result = app.test_cli_runner().invoke(args=["acp", "sweep"])
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


def test_sweep_in_cron_prints_its_result_only(tmp_path: pathlib.Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = _sweep_two_expired(tmp_path, monkeypatch)
    assert "expired=2" in out
    assert err == ""


def test_sweep_on_a_terminal_draws_a_bar_on_stderr(tmp_path: pathlib.Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    monkeypatch.setattr(click._termui_impl, "isatty", lambda stream: True)
    out, err = _sweep_two_expired(tmp_path, monkeypatch)
    assert "expired=2" in out
    assert "sweeping sessions" in err
    assert "2/2" in err
    assert "sweeping" not in out
