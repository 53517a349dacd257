"""Every ``sh`` block of the README runs as written against a live example app.

The blocks run in order in one bash (``set -euo pipefail``), from the
repository, against ``python3 example_app.py`` started here on a free port
with MCP on (the blocks' ``127.0.0.1:8000`` / ``localhost:8000`` become that
port). Lines that install packages or start a long-running server are the
test's own job; they are listed in :data:`NOT_RUN`, so that any other line
the README adds is run.
"""

from __future__ import annotations

import os
import pathlib
import re
import socket
import subprocess
import sys
import time

import pytest
import requests

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: README lines the test does not run (it installs nothing and starts the server itself)
NOT_RUN = (
    "python3 -m pip install -e . && python3 example_app.py",
    'python3 -m pip install -e ".[tests]" && python3 -m pytest',
    'python3 -m pip install -e ".[mcp]"',
    "FLASK_ACP_MCP_ENABLED=true python3 example_app.py        # REST on :8000, MCP on :8000/mcp",
    "flask --app example_app acp mcp --port 8001              # or standalone: http://127.0.0.1:8001/mcp",
)


def readme_script(port: int) -> str:
    """The README's ``sh`` blocks, one script, pointed at ``port``."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M)
    assert blocks
    lines, skipped = [], []
    for line in "".join(blocks).splitlines():
        if line.strip() in NOT_RUN:
            skipped.append(line.strip())
            continue
        lines.append(line.replace("127.0.0.1:8000", f"127.0.0.1:{port}").replace("localhost:8000",
                                                                              f"localhost:{port}"))
    assert sorted(skipped) == sorted(NOT_RUN)  # a line listed here but gone from the README: update NOT_RUN
    return "set -euo pipefail\n" + "\n".join(lines) + "\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.timeout(180)
def test_the_readme_shell_blocks_run_against_a_live_example_app(tmp_path: pathlib.Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FLASK_", "ACP_", "STRIPE_", "FAKE_STRIPE_"))}
    env.update(ACP_SQLITE_PATH=str(tmp_path / "acp.sqlite3"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    server_log = tmp_path / "server.log"
    with server_log.open("w") as log:
        server = subprocess.Popen([sys.executable, "example_app.py"], cwd=ROOT, stdout=log, stderr=log,
                                  env={**env, "PORT": str(port), "FLASK_ACP_MCP_ENABLED": "true"})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert requests.get(f"http://127.0.0.1:{port}/", timeout=2).json()["discovery"]
                break
            except requests.ConnectionError:
                assert server.poll() is None, server_log.read_text()
                assert time.monotonic() < deadline, server_log.read_text()
                time.sleep(0.2)
        script = readme_script(port)
        for run in (1, 2):  # the walk-through runs again as it is: nothing in it is used up
            done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=120, check=False)
            assert done.returncode == 0, (run, done.stdout, done.stderr, server_log.read_text())
            out = done.stdout
            assert re.search(r"^cs_\w+ not_ready_for_payment$", out, re.M), out
            assert "ready_for_payment total 6037" in out
            assert "total 6937" in out
            [order] = re.findall(r"^completed (ord_\w+)$", out, re.M)
            assert re.search(r"^Idempotent-Replayed: true", out, re.M | re.I), out
            assert re.search(r"^checkout_session_completed$", out, re.M), out  # a POST: the cancel itself
            assert re.search(r"^shipped$", out, re.M), out
            assert '"structuredContent"' in out  # the MCP call by hand found the session
            deadline = time.monotonic() + 30
            shipped = f"[demo agent] webhook received: order_update {order} status=shipped (signature valid)"
            while shipped not in server_log.read_text():  # step 8 visibly happens
                assert time.monotonic() < deadline, server_log.read_text()
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(10)


def test_the_production_units_that_the_readme_enables_can_be_enabled() -> None:
    """``systemctl enable`` refuses a unit without an ``[Install]`` section
    ("no installation config"): every unit the guide enables has one."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    [block] = re.findall(r"^```ini\n(.*?)^```", text, re.S | re.M)
    units = dict(re.findall(r"^# /etc/systemd/system/(\S+)[^\n]*\n(.*?)(?=^# /etc/systemd/|\Z)", block,
                            re.S | re.M))
    enable = re.search(r"`systemctl enable --now ([^`]+)` \(and ([^)]+)\)", text)
    assert enable, "the guide's systemctl enable line moved"
    named = enable.group(1).split() + re.findall(r"`([\w.-]+)`", enable.group(2))
    for name in named:
        unit = name if "." in name else name + ".service"
        if unit not in units:  # "alike" units (flask-acp-reconcile.*) are described, not shown
            continue
        assert "[Install]" in units[unit], unit
    assert {"flask-acp.service", "flask-acp-worker.service", "flask-acp-sweep.timer"} <= {
        n if "." in n else n + ".service" for n in named}
