"""The load benchmark of the update server (run by scripts/loadbench): wrk and N downloads.

    scripts/loadbench [--quick] [--duration S] [--wrk-threads N] [--workdir DIR]

All on 127.0.0.1, plain HTTP. Publishes a small repository (three builds, packages of about
5 MB; ``tests.conftest.make_vendor``) with a license registry (1,000 numbers the checks take
in turn, 8,000 that one check each uses, one per download client), starts the project's
server (``opusi-repo serve``, its default thread count, request log on) and nginx in front of
it (the shipped ``deploy/nginx/opusi.conf.template`` rendered by ``tests/support/nginx.py``,
one worker per core, each license decision cached for 60 s), then measures:

1. The start-up check. An install is brought to the newest build by the updater, then
   ``opusi-update check --at-startup`` runs once against the server: the requests it made
   (read from the server's request log) are what wrk sends (``scripts/loadbench.lua``), in that
   order, with the license header, each check the next number. One check = that sequence. wrk
   runs closed-loop (the next request as soon as the answer is in) at 100 and 1,000 connections
   against the server alone and through nginx (every number asked once through nginx before,
   so its decision is cached), then through nginx paced to the goal (10,000 checks a second
   over 1,000 connections, random pauses before each request) and with every check a new
   number (a release morning: nginx asks the server once per check), and once the server's
   ``GET /license-check`` (what nginx asks on a cache miss). A status the real check did not
   get, a socket error or an answer slower than 30 s (the updater's timeout) is an error.
2. Downloads: N clients (200) fetch a package each at once, through nginx (their numbers not
   yet cached) and from the server alone; each answer is checked against the length and sha256
   in the signed targets metadata.

Prints Markdown tables, the goals, the date, machine and load average. Exit code 0 even when a
goal is missed or errors were counted (they are in the table); 1 when a section could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import urllib3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench import BenchError, load, machine  # noqa: E402
from loadbench_runs import (  # noqa: E402
    WRK_TIMEOUT,
    Downloads,
    Run,
    RunError,
    Step,
    download_all,
    lag,
    run_wrk,
)

from tests.conftest import LICENSE, Vendor, make_install, make_vendor  # noqa: E402
from tests.support.nginx import Nginx, nginx_path, running  # noqa: E402
from tests.support.processes import clean_env, serve_process  # noqa: E402
from updater.core.protocol import LICENSE_HEADER  # noqa: E402
from updater.publisher import repository  # noqa: E402
from updater.publisher.licenses import open_registry  # noqa: E402
from updater.publisher.status import read_requests  # noqa: E402

BUILDS = (1190, 1191, 1192)  # at or above the start-up check's minimum build (1190)
CHECK_LICENSES = [f"LOAD-{i:04d}" for i in range(1000)]
AUTH_CACHE = "60s"  # how long nginx keeps a license decision here
NEW_NUMBERS = "nginx in front, every check a new license number"
TWO_SERVICES = "nginx in front, 2 license services, every check a new license number"
GOAL_RATIO, GOAL_CHECKS, GOAL_P99_MS = 10.0, 10_000, 50.0
MB = 1_000_000


@dataclass(frozen=True)
class Config:
    quick: bool
    duration: int
    connections: tuple[int, ...]
    downloads: int
    new_numbers: int  #: license numbers for the run in which every check brings a new one
    new_duration: int
    wrk_threads: int
    work: Path


@dataclass
class Results:
    steps: list[Step]
    runs: list[Run] = field(default_factory=list)
    downloads: list[Downloads] = field(default_factory=list)
    packages: list[int] = field(default_factory=list)
    error_log: int = 0  #: bytes nginx wrote to its error log
    asked: float = 0.0  #: license checks nginx sent the server per new number


def log(text: str) -> None:
    print(f"[loadbench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def download_licenses(n: int) -> list[str]:
    return [f"LOAD-D{i:04d}" for i in range(n)]


def new_licenses(n: int) -> list[str]:
    return [f"LOAD-N{i:05d}" for i in range(n)]


# --- set-up ---------------------------------------------------------------------------------


def make_repository(cfg: Config) -> Vendor:
    """Three builds, each changing a 3 MB and a 2 MB file (random bytes: packages ~5 MB)."""
    base = cfg.work / "vendor"
    base.mkdir(parents=True)
    builds = {b: {"opusi.exe": os.urandom(3 << 20), "Program/opusi.dll": os.urandom(2 << 20),
                  "README.txt": f"build {b}".encode()} for b in BUILDS}
    vendor = make_vendor(base, builds)
    with open_registry(vendor.db) as registry:
        for number in [*CHECK_LICENSES, *download_licenses(cfg.downloads),
                       *new_licenses(cfg.new_numbers)]:
            registry.add(number, entitled_until=None, note="loadbench")
    (cfg.work / "licenses.txt").write_text("\n".join(CHECK_LICENSES) + "\n")
    (cfg.work / "new-licenses.txt").write_text("\n".join(new_licenses(cfg.new_numbers)) + "\n")
    return vendor


def start_server(stack: ExitStack, vendor: Vendor, work: Path, name: str = "server"
                 ) -> tuple[str, int]:
    """``opusi-repo serve`` (default threads) with a request log; its URL and process id."""
    return stack.enter_context(serve_process(vendor.repo, vendor.db, work / f"{name}.log",
                                             work / f"{name}-requests.log"))


def discover_check(vendor: Vendor, url: str, work: Path) -> list[Step]:
    """The requests of one real start-up check with nothing new published (the install at the
    newest build, by the updater), read from the server's request log."""
    install, requests_log = work / "install", work / "server-requests.log"
    make_install(install, vendor.trees[BUILDS[0]], BUILDS[0], url, LICENSE)
    env = {**clean_env(), "OPUSI_STATE_DIR": str(work / "state")}
    tools, root = Path(sys.executable).parent, str(vendor.root_file)
    mark, output = 0, ""
    for cmd in ([tools / "opusi-INSTALLUpdate", "--install-dir", install, "--yes", "--no-gui",
                 "--progress", "none", "--trusted-root", root],
                [tools / "opusi-update", "check", "--at-startup", "--install-dir", install,
                 "--trusted-root", root]):
        time.sleep(0.5)  # the server logs a request once its answer is sent
        mark = requests_log.stat().st_size
        done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise BenchError(f"{cmd[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
        output = done.stdout
    answer = json.loads(output)
    if answer.get("status") != "up-to-date" or answer.get("installed") != BUILDS[-1]:
        raise BenchError(f"the check did not find the install up to date: {answer}")
    time.sleep(0.5)
    lines = requests_log.read_bytes()[mark:].decode().splitlines()
    steps = [(p[2], int(p[3])) for p in map(str.split, lines) if len(p) > 3 and p[1] == "GET"]
    if not steps or any(status >= 500 for _, status in steps):
        raise BenchError(f"unexpected requests of the check: {lines}")
    return steps


def warm_up(front: Nginx, numbers: Sequence[str]) -> None:
    """One request per license number through nginx, so that every decision is cached before
    wrk measures (on a miss nginx asks the server, which answers ~1,000 a second)."""
    host, port = front.url.removeprefix("http://").split(":")
    pool = urllib3.HTTPConnectionPool(host, int(port), maxsize=8, retries=False, timeout=30)

    def ask(number: str) -> int:
        return pool.request("GET", "/metadata/timestamp.json",
                            headers={LICENSE_HEADER: number}).status

    with ThreadPoolExecutor(8) as workers:
        statuses = set(workers.map(ask, numbers))
    pool.close()
    if statuses != {200}:
        raise BenchError(f"nginx answered the warm-up with {sorted(statuses)}, not 200")


def server_threads() -> str:
    """``opusi-repo serve``'s default ``--threads``, which the server here runs with."""
    from updater.publisher import cli

    try:
        return str(cli._parser().parse_args(["serve", "--repo", "."]).threads)
    except (AttributeError, SystemExit):  # the parser changed: say so rather than guess
        return "?"


def nginx_pid(front: Nginx) -> int:
    """nginx's master process (its pid file may still be empty when the port answers)."""
    for _ in range(100):
        text = (front.folder / "nginx.pid").read_text().strip()
        if text.isdigit():
            return int(text)
        time.sleep(0.05)
    raise BenchError(f"nginx wrote no process id to {front.folder / 'nginx.pid'}")


def paced_pause(connections: int, steps: int) -> int:
    """The mean pause (ms) before each request that has ``connections`` send 5 % above the
    goal's checks a second (the answers' own time slows them down a little)."""
    return max(1, int(connections * 1000 / (GOAL_CHECKS * 1.05 * steps)))


# --- the run --------------------------------------------------------------------------------


def measure(cfg: Config, stack: ExitStack) -> Results:
    started = time.monotonic()
    vendor = make_repository(cfg)
    url, server = start_server(stack, vendor, cfg.work)
    result = Results(discover_check(vendor, url, cfg.work))
    steps, licenses = result.steps, cfg.work / "licenses.txt"
    log(f"set up in {time.monotonic() - started:.0f} s; one start-up check: {steps}")

    def wrk(label: str, target: str, connections: int, watched: dict[str, int],
            only: Sequence[Step] = steps, pause_ms: int = 0, numbers: Path = licenses,
            duration: int = cfg.duration) -> None:
        result.runs.append(run_wrk(
            label, target, only, numbers, connections=connections, threads=cfg.wrk_threads,
            duration=duration, watched=watched, pause_ms=pause_ms,
            log=cfg.work / "wrk.log", env=clean_env()))
        log(result.runs[-1].row())

    for connections in cfg.connections:
        wrk("server alone", url, connections, {"server": server})
    wrk("server alone, `/license-check` only", url, cfg.connections[0], {"server": server},
        [("/license-check", 204)])
    front = stack.enter_context(running(vendor.repo, url, cfg.work / "nginx", AUTH_CACHE, "auto"))
    watched = {"nginx": nginx_pid(front), "server": server}
    warm_up(front, CHECK_LICENSES)
    for connections in cfg.connections:
        wrk("nginx in front", front.url, connections, watched)
    most = cfg.connections[-1]
    wrk(f"nginx in front, paced to {GOAL_CHECKS:,} checks/s", front.url, most, watched,
        pause_ms=paced_pause(most, len(steps)))
    # a release morning: every check from another practice, so nginx asks the server once
    # per check (its second request finds the decision cached)
    wrk(NEW_NUMBERS, front.url, cfg.connections[0], watched,
        numbers=cfg.work / "new-licenses.txt", duration=cfg.new_duration)
    made = round(result.runs[-1].requests / len(steps)) + lag(cfg.connections[0],
                                                              cfg.wrk_threads)
    if made > cfg.new_numbers:  # then the figure counts checks with a cached decision
        result.runs[-1] = replace(result.runs[-1], label=f"{NEW_NUMBERS} (**{made:,} checks "
                                  f"for {cfg.new_numbers:,} numbers: too high**)")
    result.error_log = (front.folder / "error.log").stat().st_size
    time.sleep(0.5)  # the server logs a request once it is answered
    log_lines = (cfg.work / "server-requests.log").read_text().splitlines()
    asked = [r.license for r in read_requests(log_lines)
             if r.path == "/license-check" and r.license.startswith("LOAD-N")]
    result.asked = len(asked) / max(1, len(set(asked)))
    # the same with a second license service on the same registry (nginx's upstream of both;
    # a fresh nginx, so every number is new to it again)
    url2, server2 = start_server(stack, vendor, cfg.work, "server2")
    front2 = stack.enter_context(running(vendor.repo, [url, url2], cfg.work / "nginx2",
                                         AUTH_CACHE, "auto"))
    wrk(TWO_SERVICES, front2.url, cfg.connections[0],
        {"nginx": nginx_pid(front2), "server": server, "server 2": server2},
        numbers=cfg.work / "new-licenses.txt", duration=cfg.new_duration)
    targets = repository.load_state(vendor.repo).builds().values()
    served = vendor.repo / "targets"
    files = [(f"/targets/{repository.target_file(vendor.repo, t).relative_to(served)}",
              t.length, t.hashes["sha256"]) for t in targets]
    result.packages = [t.length for t in targets]
    for label, where in (("nginx in front", front.url), ("server alone", url)):
        result.downloads.append(download_all(label, where, files,
                                             download_licenses(cfg.downloads)))
        log(result.downloads[-1].row())
    return result


def goals(r: Results) -> list[str]:
    rows = []
    for run in r.runs:
        alone = next((x for x in r.runs if x.label == "server alone"
                      and x.connections == run.connections), None)
        if run.label == "nginx in front" and alone is not None:
            ratio = run.checks / alone.checks
            rows.append((f"nginx / server alone, checks/s at {run.connections:,} connections",
                         f">= {GOAL_RATIO:g}x", f"{ratio:.1f}x", ratio >= GOAL_RATIO))
    paced = next(x for x in r.runs if x.label.startswith("nginx in front, paced"))
    rows.append((f"one machine: checks/s and p99 of a check (nginx, paced, "
                 f"{paced.connections:,} connections)",
                 f">= {GOAL_CHECKS:,}/s, p99 < {GOAL_P99_MS:g} ms",
                 f"{paced.checks:,.0f}/s, p99 <= {paced.check_p99:.1f} ms",
                 paced.checks >= GOAL_CHECKS and paced.check_p99 < GOAL_P99_MS))
    new = next(x for x in r.runs if x.label.startswith(NEW_NUMBERS))
    rows.append((f"the same, every check a new license number (nginx asks the server once per "
                 f"check; {new.connections:,} connections)", "(the same)",
                 f"{new.checks:,.0f}/s, p99 <= {new.check_p99:.1f} ms",
                 new.checks >= GOAL_CHECKS and new.check_p99 < GOAL_P99_MS))
    two = next(x for x in r.runs if x.label == TWO_SERVICES)
    rows.append((f"the same with 2 license services ({two.connections:,} connections)",
                 "(the same)", f"{two.checks:,.0f}/s, p99 <= {two.check_p99:.1f} ms",
                 two.checks >= GOAL_CHECKS and two.check_p99 < GOAL_P99_MS))
    errors = sum(sum(x.errors.values()) for x in r.runs)
    rows.append(("errors in the wrk runs", "0", str(errors), errors == 0))
    for d in r.downloads:
        rows.append((f"{d.clients} downloads at once, {d.label}", "all complete and verified",
                     f"{d.clients - len(d.failures)} of {d.clients}", not d.failures))
    lines = ["| goal | wanted | measured | met? |", "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {'yes' if ok else '**no**'} |" for a, b, c, ok in rows]
    return lines


def report(r: Results, cfg: Config, load_before: str, started: float) -> str:
    sequence = ", ".join(f"`GET {p}` -> {s}" for p, s in r.steps)
    version = subprocess.run([str(nginx_path()), "-v"], capture_output=True, text=True)
    sizes = " / ".join(sorted({f"{s / MB:.1f}" for s in r.packages}))
    return "\n".join([
        f"One start-up check = {sequence}, as `opusi-update check --at-startup` made them.", "",
        "| server | connections | requests/s | checks/s | p50 / p99 of a request (ms) | "
        "p99 of a check (ms, at most) | errors | CPU, % of one core (of 200) |",
        "|" + " --- |" * 8, *(x.row() for x in r.runs), "",
        "| downloads at once (each checked: length, sha256) | clients | total | wall (s) | MB/s "
        "| slowest client (s) | failures | client CPU |", "|" + " --- |" * 8,
        *(d.row() for d in r.downloads), "", *goals(r), "",
        f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; {machine()}; "
        f"{'quick' if cfg.quick else 'full'} run; load average {load_before} at the start, "
        f"{load()} at the end; total {time.monotonic() - started:.0f} s. Server: `opusi-repo "
        f"serve`, its default {server_threads()} threads, request log on. "
        f"{version.stderr.strip().rpartition(': ')[2]}: the shipped template, "
        f"`worker_processes auto` ({os.cpu_count()} workers), `worker_connections 4096`, "
        f"license decisions cached {AUTH_CACHE}; its error log after the runs: {r.error_log:,} "
        f"bytes. wrk {cfg.duration} s a run ({cfg.new_duration} s with new numbers, "
        f"{cfg.new_numbers:,} of them: nginx asked the server {r.asked:.2f} times per number), "
        f"-t{cfg.wrk_threads}, --timeout {WRK_TIMEOUT}, {len(CHECK_LICENSES):,} license numbers "
        f"in turn; a check's p99 is at most "
        f"{len(r.steps)} x the requests' p99.5. Downloads: Python threads (http.client), "
        f"one connection and license number each, packages of {sizes} MB, each read into a "
        f"buffer made beforehand and checked after the last one arrived. CPU: wrk, nginx "
        f"(master and workers), the server, and the whole machine (`all`; includes the "
        f"kernel's network work)."])


def config_from(args: argparse.Namespace) -> Config:
    quick = bool(args.quick)
    return Config(
        quick=quick, duration=args.duration or (2 if quick else 10),
        connections=(50,) if quick else (100, 1000), downloads=20 if quick else 200,
        # numbers enough for 3 s (quick 1 s) at 2,500 checks a second (the server's license
        # check answered ~1,000-1,300 a second here); registering takes ~1 ms a number
        new_numbers=2500 if quick else 8000, new_duration=1 if quick else 3,
        wrk_threads=args.wrk_threads,
        work=(args.workdir or ROOT / "build" / ("loadbench-quick" if quick else "loadbench"))
        .resolve())  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/loadbench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="2 s runs, 50 connections, 20 downloads (for the tests)")
    parser.add_argument("--duration", type=int, help="seconds per wrk run (10; quick 2)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk -t (default 2)")
    parser.add_argument("--workdir", type=Path, help="work folder (default build/loadbench)")
    cfg = config_from(parser.parse_args(argv))
    started, load_before = time.monotonic(), load()
    if shutil.which("wrk") is None or nginx_path() is None:
        print("scripts/loadbench: needs wrk and nginx (scripts/loadbench installs them)",
              file=sys.stderr)
        return 1
    shutil.rmtree(cfg.work, ignore_errors=True)
    cfg.work.mkdir(parents=True)
    # 1,000 connections for wrk (it inherits the limit), 200 sockets for the downloads
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    try:
        with ExitStack() as stack:
            result = measure(cfg, stack)
    except (BenchError, RunError, OSError, subprocess.SubprocessError, ValueError) as e:
        print(f"scripts/loadbench: {e}", file=sys.stderr)
        return 1
    finally:
        # nginx's access log: ~100 bytes a request, some hundred MB after a full run
        for front in ("nginx", "nginx2"):
            (cfg.work / front / "access.log").unlink(missing_ok=True)
    print(report(result, cfg, load_before, started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
