"""The checkout API on the Redis store against the SQLite store, and how the
Redis store scales with worker processes.

    python benchmarks/bench_stores.py [--seconds N] [--workers N] [--scale 1,2,4]

In one run (the machinery of ``bench_checkout.py``: gunicorn sync workers on
127.0.0.1, client processes with their own ``requests.Session``, the timed
window cut into slices that alternate the servers, CPU from /proc):

1. Starts a private ``redis-server`` on a free port, with the production
   persistence the README recommends (``appendonly yes``, ``appendfsync
   everysec``), and two ``benchmarks/acp_wsgi.py`` servers (``--workers``
   each, default 2) that differ only in ``ACP_STORE_URL``: a temporary SQLite
   file, or that Redis. For create, update, get and complete it prints
   requests/s, p50/p99 and the ratios **Redis/SQLite**.
2. Then runs create and complete on the Redis store with 1, 2 and 4 worker
   processes (``--scale``; the clients: 2 per worker) and prints requests/s
   and the speed-up over one worker. On a machine with fewer cores than
   workers (and the clients, Redis and the servers sharing them) the speed-up
   flattens at the core count: the numbers to read are how close it stays to
   linear up to that count, and the server CPU per request, which stays flat
   when the shared store adds no contention.

The last line printed is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import typing as t

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_checkout import API_KEY  # noqa: E402
from bench_checkout import OPS  # noqa: E402
from bench_checkout import Server  # noqa: E402
from bench_checkout import _denan  # noqa: E402
from bench_checkout import _fmt  # noqa: E402
from bench_checkout import _free_port  # noqa: E402
from bench_checkout import _loadavg  # noqa: E402
from bench_checkout import _ratio  # noqa: E402
from bench_checkout import run_phase  # noqa: E402
from bench_checkout import summarize  # noqa: E402


def start_redis(tmp: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is needed (apt-get install redis-server)")
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp,
                             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                             "--maxmemory-policy", "noeviction", "--daemonize", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    import redis

    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(host="127.0.0.1", port=port).ping()
            return proc, f"redis://127.0.0.1:{port}/0"
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise SystemExit("redis-server did not start") from None
            time.sleep(0.05)


def acp_server(name: str, store: dict[str, str], workers: int, tmp: str) -> Server:
    return Server(name, "acp_wsgi:app", {
        "ACP_API_KEYS": f"bench-agent:{API_KEY}",
        "ACP_CATALOG_FILE": os.path.join(HERE, "data", "feed.json"),
        "ACP_STORE_FILE": os.path.join(HERE, "data", "store.json"),
        "BENCH_INSTANCE_PATH": os.path.join(tmp, f"{name}-instance"),
        **store,
    }, workers, tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="timed window per operation per server")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers in part 1")
    parser.add_argument("--rounds", type=int, default=4, help="alternating slices per operation")
    parser.add_argument("--warmup", type=int, default=10, help="untimed requests per client per slice")
    parser.add_argument("--scale", default="1,2,4", help="worker counts of part 2")
    parser.add_argument("--setup-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    args.concurrency = 2 * args.workers
    scale = [int(n) for n in args.scale.split(",") if n.strip()]
    items = ["item_123"] + [f"bench_{i:02d}" for i in range(1, 64)]

    def _terminate(signum: int, frame: t.Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)
    tmp = tempfile.mkdtemp(prefix="acp-bench-stores-")
    redis_proc, redis_url = start_redis(tmp)
    servers: list[Server] = []
    compare: dict[str, dict[str, t.Any]] = {op: {} for op in OPS}
    scaling: dict[str, dict[int, dict[str, t.Any]]] = {"create": {}, "complete": {}}
    started = time.monotonic()
    try:
        sqlite = acp_server("sqlite", {"ACP_SQLITE_PATH": os.path.join(tmp, "acp.sqlite3")}, args.workers,
                            tmp)
        red = acp_server("redis", {"ACP_STORE_URL": f"{redis_url}?key_prefix=bench1:"}, args.workers, tmp)
        for server in (sqlite, red):
            servers.append(server)
            server.start(args.setup_timeout)
        print(f"# part 1: {args.workers} sync workers per server, {args.concurrency} clients, "
              f"{args.seconds:g} s per op per store in {args.rounds} slices; redis {redis_url} "
              f"(AOF everysec); {os.cpu_count()} CPUs, loadavg {_loadavg()}", flush=True)
        slice_s = args.seconds / args.rounds
        for op in OPS:
            slices: dict[str, list[dict[str, t.Any]]] = {"sqlite": [], "redis": []}
            for rnd in range(args.rounds):
                for server in ((sqlite, red) if rnd % 2 == 0 else (red, sqlite)):
                    n_ready = 0
                    if op == "complete":
                        n_ready = math.ceil(compare["create"][server.name]["rps"] * slice_s * 1.3
                                            / args.concurrency) + 5
                    slices[server.name].append(run_phase(server, op, args, items, slice_s, n_ready))
            for server in (sqlite, red):
                res = compare[op][server.name] = summarize(slices[server.name])
                print(f"#   {op:8} {server.name:7} {res['rps']:8.1f} req/s  p50 {res['p50_ms']:6.2f} ms"
                      f"  p99 {res['p99_ms']:6.2f} ms  errors {sum(res['errors'].values())}", flush=True)
        for server in servers:
            server.stop()
        servers.clear()

        for workers in scale:
            scaled = argparse.Namespace(**{**vars(args), "concurrency": 2 * workers})
            server = acp_server(f"redis-{workers}w",
                                {"ACP_STORE_URL": f"{redis_url}?key_prefix=bench{workers}w:"}, workers, tmp)
            servers.append(server)
            server.start(args.setup_timeout)
            for op in ("create", "complete"):
                n_ready = 0
                if op == "complete":
                    n_ready = math.ceil(scaling["create"][workers]["rps"] * args.seconds * 1.3
                                        / scaled.concurrency) + 5
                res = scaling[op][workers] = summarize([run_phase(server, op, scaled, items, args.seconds,
                                                                  n_ready)])
                print(f"# part 2: {workers} worker(s) {op:8} {res['rps']:8.1f} req/s"
                      f"  p50 {res['p50_ms']:6.2f} ms  errors {sum(res['errors'].values())}", flush=True)
            server.stop()
            servers.remove(server)
    finally:
        for server in servers:
            server.stop()
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    header = f"{'op':9}{'SQLite req/s':>13}{'Redis req/s':>13}{'tput R/S':>10}{'p50 R/S':>9}{'p99 R/S':>9}"
    print(header)
    print("-" * len(header))
    ratios: dict[str, dict[str, float]] = {}
    for op in OPS:
        s, r = compare[op]["sqlite"], compare[op]["redis"]
        ratios[op] = {"throughput": _ratio(r["rps"], s["rps"]), "p50": _ratio(r["p50_ms"], s["p50_ms"]),
                      "p99": _ratio(r["p99_ms"], s["p99_ms"])}
        print(f"{op:9}{s['rps']:13.1f}{r['rps']:13.1f}{_fmt(ratios[op]['throughput']):>10}"
              f"{_fmt(ratios[op]['p50']):>9}{_fmt(ratios[op]['p99']):>9}")
    print()
    header = (f"{'workers':>8}{'create req/s':>14}{'x 1 worker':>12}{'CPU ms/req':>12}"
              f"{'complete req/s':>16}{'x 1 worker':>12}{'CPU ms/req':>12}")
    print(header)
    print("-" * len(header))
    speedup: dict[int, dict[str, float]] = {}
    base_workers = scale[0]
    for workers in scale:
        c, k = scaling["create"][workers], scaling["complete"][workers]
        speedup[workers] = {"create": _ratio(c["rps"], scaling["create"][base_workers]["rps"]),
                            "complete": _ratio(k["rps"], scaling["complete"][base_workers]["rps"])}
        print(f"{workers:8d}{c['rps']:14.1f}{_fmt(speedup[workers]['create']):>12}"
              f"{_fmt(c['server_cpu_ms_per_req']):>12}{k['rps']:16.1f}{_fmt(speedup[workers]['complete']):>12}"
              f"{_fmt(k['server_cpu_ms_per_req']):>12}")
    print("(server CPU per request that stays flat as workers are added: no contention in the store; "
          "requests/s then grow with the cores the workers get)")
    print(f"total {time.monotonic() - started:.1f} s; {os.cpu_count()} CPUs; loadavg {_loadavg()}")
    print(json.dumps(_denan({
        "benchmark": "flask-acp checkout: Redis store vs SQLite store, and Redis scaling",
        "config": {"seconds": args.seconds, "workers": args.workers, "rounds": args.rounds,
                   "scale": scale, "cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "compare": compare, "ratios_redis_over_sqlite": ratios,
        "scaling": {op: {str(k): v for k, v in by.items()} for op, by in scaling.items()},
        "speedup": {str(k): v for k, v in speedup.items()},
    }), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
