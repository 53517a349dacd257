"""Start-up cost of the CLI: ``flask --app example_app acp --help`` against
baselines measured in the same run.

    python benchmarks/bench_import.py [--rounds 7]

Each command runs ``--rounds`` times in a fresh process (wall time, median):

- ``python -c pass``: the interpreter alone;
- ``flask --help``: Flask's CLI without an app;
- ``acp --help (Stripe key)``: the example app with ``STRIPE_SECRET_KEY`` set,
  as a production app loads: no fake Stripe, no test package;
- ``acp --help (demo, server up)``: the example app in demo mode while
  ``python example_app.py`` runs (started here, on a free port): the CLI uses
  the server's fake Stripe without importing the fakes;
- ``acp --help (demo, alone)``: demo mode with no server: the CLI starts a fake
  Stripe of its own (the fakes and jsonschema's format checkers are imported).

Printed: the medians of wall and CPU time (the CPU time stays meaningful on a
machine shared with other work), the ratios to ``flask --help``, whether the
production-like command stays under ``--target`` seconds (1 s), and the ten
slowest imports (cumulative) of ``import example_app`` with a Stripe key, from
``python -X importtime``.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _env(folder: pathlib.Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACP_", "FLASK_", "STRIPE_", "FAKE_"))}
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
               ACP_SQLITE_PATH=str(folder / "acp.sqlite3"), **extra)
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _median_seconds(command: list[str], env: dict[str, str], rounds: int) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds) of ``rounds`` fresh processes."""
    walls, cpus = [], []
    for _ in range(rounds):
        cpu, started = _children_cpu(), time.perf_counter()
        subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True)
        walls.append(time.perf_counter() - started)
        cpus.append(_children_cpu() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _slowest_imports(env: dict[str, str], count: int = 10) -> list[tuple[int, str]]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import example_app"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line.split(":", 1)[1].split("|"))
        if cumulative.isdigit():
            rows.append((int(cumulative), name))
    return sorted(rows, reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--target", type=float, default=1.0, help="seconds for acp --help with a Stripe key")
    args = parser.parse_args()
    acp_help = [sys.executable, "-m", "flask", "--app", "example_app", "acp", "--help"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        keyed = _env(folder / "keyed", STRIPE_SECRET_KEY="sk_test_bench_0000",  # noqa: S106 - never used
                     STRIPE_ACCOUNT_ID="acct_bench")
        (folder / "keyed").mkdir()
        results = {
            "python -c pass": _median_seconds([sys.executable, "-c", "pass"], keyed, args.rounds),
            "flask --help": _median_seconds([sys.executable, "-m", "flask", "--help"], keyed, args.rounds),
            "acp --help (Stripe key)": _median_seconds(acp_help, keyed, args.rounds),
        }
        (folder / "alone").mkdir()
        results["acp --help (demo, alone)"] = _median_seconds(acp_help, _env(folder / "alone"), args.rounds)
        (folder / "served").mkdir()
        served = _env(folder / "served", PORT=str(_free_port()))
        server = subprocess.Popen([sys.executable, "example_app.py"], cwd=ROOT, env=served,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert server.stderr is not None
            for line in server.stderr:  # the banner: the server and its fake Stripe are up
                if line.startswith("flask-acp demo on"):
                    break
            time.sleep(0.5)
            results["acp --help (demo, server up)"] = _median_seconds(acp_help, served, args.rounds)
        finally:
            server.terminate()
            server.wait(10)
        slowest = _slowest_imports(keyed)
    base_wall, base_cpu = results["flask --help"]
    print(f"median of {args.rounds} fresh processes each: wall time, CPU time (user + system), ratios to "
          "flask --help")
    for name, (wall, cpu) in results.items():
        print(f"  {name:30} wall {wall * 1000:6.0f} ms x{wall / base_wall:4.2f}   "
              f"cpu {cpu * 1000:6.0f} ms x{cpu / base_cpu:4.2f}")
    wall, cpu = results["acp --help (Stripe key)"]
    verdict = "OK" if wall < args.target else "OVER (a loaded machine? compare the CPU time)"
    print(f"acp --help with a Stripe key: wall {wall:.2f} s, cpu {cpu:.2f} s; "
          f"target wall < {args.target:g} s: {verdict}")
    print("slowest imports of example_app with a Stripe key (cumulative, python -X importtime):")
    for micros, name in slowest:
        print(f"  {micros / 1000:7.1f} ms  {name}")


if __name__ == "__main__":
    main()
