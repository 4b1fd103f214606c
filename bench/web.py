"""HTTP benchmark: our service (SQLite, 1 worker; PostgreSQL + Redis, 2 workers) against Isso 0.14.

Run: .venv/bin/python bench/web.py [--quick] [--rounds N] [--grow COPIES] [--only sqlite|postgres]

Everything runs on 127.0.0.1 in one run on one machine. Load comes from wrk (closed loop,
fixed connections); the fixed-rate POST test uses a paced Python client (open loop: latency is
measured from each request's scheduled send time, so a stall is not hidden). Each endpoint runs
on our server and on Isso in turn, several rounds, so that both see the same machine. Figures
are printed, not asserted: this is not a test.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import servers  # bench/servers.py: starts our app and Isso, seeds them

WRK_THREADS = 2
WRK_CONNECTIONS = 8

# A fresh client address per request: per-address limits stay on without turning into 429s.
LUA_COMMON = """
local counter = 0
function setup(thread)
  __tid = (__tid or 0) + 1
  thread:set("tid", __tid)
end
function init(args)
  math.randomseed(os.time() * 100 + (tid or 1))
end
local function addr()
  return string.format("10.%d.%d.%d", math.random(0, 255), math.random(0, 255),
                       math.random(1, 254))
end
"""

LUA_GET = LUA_COMMON + """
request = function()
  return wrk.format("GET", "{path}", {{["X-Forwarded-For"] = addr()}})
end
"""

LUA_POST = LUA_COMMON + """
request = function()
  counter = counter + 1
  local body = string.format('{body}', tid or 0, counter, math.random(1, 1000000000))
  return wrk.format("POST", "{path}", {{["Content-Type"] = "application/json",
                                        ["X-Forwarded-For"] = addr()}}, body)
end
"""


@dataclass
class Result:
    """What one load run measured."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if match is None:
        raise RuntimeError(f"unexpected latency figure from wrk: {value!r}")
    number, unit = match.groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def ensure_wrk() -> str | None:
    """Return the wrk binary, installing Debian's package if it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False,
                       capture_output=True)
    return shutil.which("wrk")


def run_wrk(wrk: str, url: str, script: str, seconds: int) -> Result:
    """Run wrk with a Lua script for the given seconds and parse its report."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
    try:
        out = subprocess.run(
            [wrk, "-t", str(WRK_THREADS), "-c", str(WRK_CONNECTIONS), "-d", f"{seconds}s",
             "--latency", "--timeout", "30s", "-s", fh.name, url],
            check=True, capture_output=True, text=True,
        ).stdout
    finally:
        os.unlink(fh.name)
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    if not total or not re.search(r"^\s+50%\s+[\d.]+", out, re.MULTILINE):
        # Nothing finished within the run (a very slow server): report zero, do not guess.
        return Result(0.0, float("nan"), float("nan"), 0, 0)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", out)
    if socket_errors:
        errors += sum(int(x) for x in socket_errors.groups())
    return Result(rps, p50, p99, errors, total)


def paced_posts(host: str, port: int, path: str, body: Callable[[int], str], rate: int,
                seconds: float) -> Result:
    """Send POSTs at a fixed rate (open loop) and return latency from the scheduled times."""
    total = int(rate * seconds)
    start = time.perf_counter() + 0.2
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def one(i: int) -> None:
        nonlocal errors
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        addr = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255 or 1}"
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            conn.request("POST", path, body(i).encode(),
                         {"Content-Type": "application/json", "X-Forwarded-For": addr})
            status = conn.getresponse().status
        except OSError:
            status = 599
        finally:
            conn.close()
        elapsed = (time.perf_counter() - scheduled) * 1000
        with lock:
            latencies.append(elapsed)
            if status not in (200, 201, 202):
                errors += 1

    with ThreadPoolExecutor(max_workers=64) as pool:
        list(pool.map(one, range(total)))
    latencies.sort()
    wall = time.perf_counter() - start
    return Result(total / wall, statistics.median(latencies),
                  latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], errors, total)


def ours_scenarios(server: servers.Server) -> dict[str, tuple[str, str]]:
    site = server.extra["site"]
    count_body = ('{"site":"' + site + '","uris":['
                  + ",".join(f'"{u}"' for u in servers.COUNT_URIS) + "]}")
    post_body = ('{"site":"' + site + '","uri":"/posted","text":"'
                 + servers.TEXT.replace('"', "") + ' %d-%d-%d"}')
    return {
        "GET thread of 50": (
            "GET", LUA_GET.format(path=f"/api/v1/comments?site={site}&uri=/t50&per_page=200")),
        "GET thread of 500": (
            "GET", LUA_GET.format(path=f"/api/v1/comments?site={site}&uri=/t500&per_page=200")),
        "POST comment": ("POST", LUA_POST.format(path="/api/v1/comments", body=post_body)),
        "POST counts (20 URIs)": ("POST", LUA_POST.format(path="/api/v1/counts",
                                                          body=count_body.replace("%", "%%"))),
    }


def isso_scenarios() -> dict[str, tuple[str, str]]:
    count_body = "[" + ",".join(f'"{u}"' for u in servers.COUNT_URIS) + "]"
    post_body = '{"text":"' + servers.TEXT.replace('"', "") + ' %d-%d-%d","title":"Bench"}'
    return {
        "GET thread of 50": ("GET", LUA_GET.format(path="/?uri=/t50")),
        "GET thread of 500": ("GET", LUA_GET.format(path="/?uri=/t500")),
        "POST comment": ("POST", LUA_POST.format(path="/new?uri=/posted", body=post_body)),
        "POST counts (20 URIs)": ("POST", LUA_POST.format(path="/count", body=count_body)),
    }


def check_equivalent(ours: servers.Server, isso: servers.Server) -> None:
    """Make sure both return whole threads of the same size before timing them."""
    site = ours.extra["site"]
    for uri, (roots, replies) in servers.THREADS.items():
        _, mine = servers.http("GET", f"{ours.url}/api/v1/comments?site={site}&uri={uri}"
                                      "&per_page=200")
        got = len(mine["comments"]) + sum(len(c["replies"]) for c in mine["comments"])
        _, theirs = servers.http("GET", f"{isso.url}/?uri={uri}")
        got_isso = len(theirs["replies"]) + sum(len(c["replies"]) for c in theirs["replies"])
        expected = roots * (1 + replies)
        if not got == got_isso == expected:
            raise RuntimeError(f"{uri}: ours {got}, Isso {got_isso}, expected {expected}")


TARGETS = {"GET thread of 50": 20.0, "GET thread of 500": 100.0, "POST comment": 1.5,
           "POST counts (20 URIs)": 1.5}


def settle(server: servers.Server, path: str) -> None:
    """Wait until the server has worked off requests left queued by the previous run."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            servers.http("GET", server.url + path, timeout=30)
        except OSError:
            continue
        if time.monotonic() - started < 0.5:
            return


def measure(server: servers.Server, scenarios: dict[str, tuple[str, str]], wrk: str,
            seconds: int, probe: str) -> dict[str, Result]:
    results = {}
    for name, (_, script) in scenarios.items():
        settle(server, probe)
        results[name] = run_wrk(wrk, server.url, script, seconds)
        print(f"  {server.name:<30} {name:<22} {results[name].rps:9.1f} req/s", flush=True)
    return results


@dataclass
class Paired:
    """Alternating runs of one endpoint on both servers: ours, Isso, ours, Isso, ..."""

    ours: list[Result]
    isso: list[Result]

    @staticmethod
    def _median(runs: list[Result]) -> Result:
        return sorted(runs, key=lambda r: r.rps)[(len(runs) - 1) // 2]

    @property
    def mine(self) -> Result:
        """Our median run (by throughput)."""
        return self._median(self.ours)

    @property
    def theirs(self) -> Result:
        """Isso's median run (by throughput)."""
        return self._median(self.isso)

    @property
    def ratios(self) -> list[float]:
        """Our throughput over Isso's, for each back-to-back pair of runs."""
        return [m.rps / t.rps if t.rps else float("nan")
                for m, t in zip(self.ours, self.isso, strict=True)]


def measure_paired(ours: servers.Server, isso: servers.Server, wrk: str, seconds: int,
                   rounds: int, only: tuple[str, ...] = ()) -> dict[str, Paired]:
    """Run every endpoint on both servers in turn, ``rounds`` times.

    Back-to-back pairs see the same machine: on a shared VM whose speed drifts by tens of
    percent within minutes, measuring one server's endpoints and then the other's would put
    the drift into the ratio. Every run starts from the seeded data: Isso's count query groups
    its whole comment table, so its rate falls as earlier runs' posts pile up.
    """
    mine, theirs = ours_scenarios(ours), isso_scenarios()
    results: dict[str, Paired] = {}
    for name in mine:
        if only and name not in only:
            continue
        pair = results[name] = Paired([], [])
        for _ in range(rounds):
            # Both start every run from the seeded data (Server.reset).
            ours.reset()
            settle(ours, "/livez")
            pair.ours.append(run_wrk(wrk, ours.url, mine[name][1], seconds))
            isso.reset()
            settle(isso, "/info")
            pair.isso.append(run_wrk(wrk, isso.url, theirs[name][1], seconds))
            print(f"  {name:<22} ours {pair.ours[-1].rps:9.1f} req/s, Isso "
                  f"{pair.isso[-1].rps:9.1f} req/s, ratio {pair.ratios[-1]:6.2f}", flush=True)
    return results


def floor_lines(ours: servers.Server, workers: int, threads: int, worker_class: str, wrk: str,
                seconds: int) -> list[str]:
    """Measure the counts request under the same workers and load without our application.

    First gunicorn answering a fixed body: no server can go faster, ours or Isso. Then the
    least work every counts request needs, on ours' own database and limit storage, with no
    framework (bench/floor.py): the most any server reading both on each request can reach.
    """
    script = ours_scenarios(ours)["POST counts (20 URIs)"][1].replace("/api/v1/counts", "/")
    lines = []
    for data_of, what in ((None, "a fixed body, no application: the ceiling for any server"),
                          (ours, "one read-limit hit and our counts query on the same "
                                 "storage and database, no framework (bench/floor.py)")):
        floor = servers.start_floor(workers, threads, worker_class, data_of)
        try:
            result = run_wrk(wrk, floor.url, script, seconds)
        finally:
            floor.stop()
        lines.append(f"{ours.name}: counts request answered by gunicorn with {workers} "
                     f"{worker_class} worker(s) and {what}: {result.rps:.1f} req/s (p50 "
                     f"{result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s per run instead of 10 s")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating runs of each endpoint on both servers (default 3)")
    parser.add_argument("--grow", type=int, default=20, metavar="COPIES",
                        help="then store COPIES copies of the 500-comment thread on another "
                             "page and measure POST and counts again (default 20: 10,000 more "
                             "comments; 0 skips)")
    parser.add_argument("--only", choices=["sqlite", "postgres"],
                        help="run one setup instead of both")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads per worker for both servers (1: sync workers; more: "
                             "gunicorn's gthread workers)")
    parser.add_argument("--worker-class", choices=["sync", "gthread"],
                        help="gunicorn worker class for both servers (default: sync with one "
                             "thread, gthread with more)")
    args = parser.parse_args()
    seconds = 3 if args.quick else 10
    worker_class = args.worker_class or ("sync" if args.threads == 1 else "gthread")
    threads = {"GUNICORN_THREADS": str(args.threads), "GUNICORN_WORKER_CLASS": worker_class}
    per_worker = f" x {args.threads} threads" if args.threads > 1 else ""
    if worker_class != "sync":
        per_worker = f", {worker_class}{per_worker}"
    paced_seconds = 4 if args.quick else 10
    wrk = ensure_wrk()
    if not wrk:
        sys.exit("wrk is not installed (apt-get install wrk)")
    model_dir = str(servers.ROOT / "models")
    model = "shipped model" if (Path(model_dir) / "manifest.json").exists() else "no model"
    if model == "no model":
        model_dir = ""

    configs = [(f"ours, SQLite, 1 worker{per_worker}", "sqlite", 1),
               (f"ours, PG + Redis, 2 workers{per_worker}", "postgres", 2)]
    configs = [c for c in configs if args.only in (None, c[1])]
    table: list[tuple[str, str, Paired]] = []
    extra: list[str] = []
    for label, backend, workers in configs:
        uncached = servers.start_ours(label + ", no page cache", backend, workers, model_dir,
                                      {"MODERATION_READ_CACHE_ENTRIES": "0", **threads})
        try:
            reads = {k: v for k, v in ours_scenarios(uncached).items() if k.startswith("GET")}
            without_cache = measure(uncached, reads, wrk, seconds, "/livez")
        finally:
            uncached.stop()
        ours = servers.start_ours(label, backend, workers, model_dir, threads)
        isso = servers.start_isso(f"Isso 0.14, {workers} worker(s){per_worker}", workers,
                                  args.threads, worker_class)
        try:
            check_equivalent(ours, isso)
            print(f"{label} vs {isso.name}, {args.rounds} alternating round(s):", flush=True)
            paired = measure_paired(ours, isso, wrk, seconds, args.rounds)
            for name, pair in paired.items():
                if name in without_cache:
                    table.append((label + ", no page cache", name,
                                  Paired([without_cache[name]] * args.rounds, pair.isso)))
                table.append((label, name, pair))
            if args.grow:
                ours.grow(args.grow)
                isso.grow(args.grow)
                stored = f"{servers.SEEDED + 500 * args.grow:,} comments stored"
                print(f"{label} vs {isso.name}, {stored}:", flush=True)
                grown = measure_paired(ours, isso, wrk, seconds, args.rounds,
                                       ("POST comment", "POST counts (20 URIs)"))
                for name, pair in grown.items():
                    table.append((f"{label}, {stored}", name, pair))
            site = ours.extra["site"]
            settle(ours, "/livez")
            paced = paced_posts(
                "127.0.0.1", ours.port, "/api/v1/comments",
                lambda i, site=site: json.dumps(
                    {"site": site, "uri": "/paced", "text": f"{servers.TEXT} {i}"}),
                200, paced_seconds)
            rss = ours.worker_rss_mb()
            isso_rss = isso.worker_rss_mb()
            extra += floor_lines(ours, workers, args.threads, worker_class, wrk, seconds)
            extra.append(
                f"{label}: POST at a fixed 200 req/s for {paced_seconds} s ({paced.requests} "
                f"posts, open loop): p50 {paced.p50_ms:.1f} ms, p99 {paced.p99_ms:.1f} ms, "
                f"errors {paced.errors}; worker RSS {', '.join(f'{r:.0f}' for r in rss)} MB "
                f"(Isso {', '.join(f'{r:.0f}' for r in isso_rss)} MB)"
            )
        finally:
            ours.stop()
            isso.stop()

    print()
    print(f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}; wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} "
          f"-d{seconds}s on 127.0.0.1; {model}; gunicorn {worker_class} workers with "
          f"{args.threads} thread(s) for both.")
    print(f"Each endpoint ran {args.rounds} time(s) on each server, alternating ours and Isso; "
          "req/s and latency are each server's median run, the ratio is the median of the "
          "back-to-back pairs' ratios with their range.")
    header = (f"| {'setup':<50} | {'endpoint':<22} | {'ours req/s':>10} | {'p50 ms':>7} | "
              f"{'p99 ms':>7} | {'Isso req/s':>10} | {'p50 ms':>7} | {'p99 ms':>7} | "
              f"{'ratio':>7} | {'range':>13} | target |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for label, name, pair in table:
        goal = TARGETS[name]
        mine, theirs = pair.mine, pair.theirs
        if theirs.rps:
            ratio = statistics.median(pair.ratios)
            spread = f"{min(pair.ratios):.2f}-{max(pair.ratios):.2f}x"
            verdict = "met" if ratio >= goal else "MISSED"
            if label.endswith("no page cache"):
                verdict = "(info: targets apply with the cache)"
            elif label.endswith("stored"):
                verdict = f"(info: {'above' if ratio >= goal else 'below'} the target)"
        else:
            ratio, spread, verdict = float("nan"), "", "n/a (Isso finished none)"
        errs = f" ({mine.errors} non-2xx)" if mine.errors else ""
        print(f"| {label:<50} | {name:<22} | {mine.rps:>10.1f} | {mine.p50_ms:>7.2f} | "
              f"{mine.p99_ms:>7.2f} | {theirs.rps:>10.1f} | {theirs.p50_ms:>7.2f} | "
              f"{theirs.p99_ms:>7.2f} | {ratio:>6.2f}x | {spread:>13} | "
              f"≥{goal:g}x {verdict}{errs} |")
    print()
    for line in extra:
        print(line)


if __name__ == "__main__":
    main()
