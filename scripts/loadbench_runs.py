"""The measurements of scripts/loadbench: a wrk run, and N downloads at once.

A wrk run uses ``scripts/loadbench.lua`` (one start-up check after the other, every status
tallied) and notes the CPU time that wrk, the watched processes (nginx, the server) and the
whole machine used meanwhile. The downloads are Python threads (``http.client``), one
connection and license number each, released together by a barrier.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import resource
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from updater.core.protocol import LICENSE_HEADER

LUA = Path(__file__).resolve().parent / "loadbench.lua"
WRK_TIMEOUT = "30s"  # the updater's network timeout: a slower answer is an error
MB = 1_000_000

Step = tuple[str, int]  # path, and the status the real check got for it


class RunError(Exception):
    """wrk could not run, or printed no figures."""


@dataclass(frozen=True)
class Run:
    """The figures of one wrk run."""

    label: str
    connections: int
    steps: int  #: requests per check
    seconds: float
    requests: int
    p50: float  #: ms, of a request
    p99: float
    p995: float
    errors: dict[str, int]  #: what went wrong, by kind ("status 500", "timeout", ...)
    cpu: str  #: CPU used, % of one core, by whom

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def checks(self) -> float:
        return self.rate / self.steps

    @property
    def check_p99(self) -> float:
        """At most a check's p99 (ms): a check is its requests one after the other; if each
        is under the requests' p99.5, the check is under twice that (for 2 steps), and that
        fails for at most 0.5 % + 0.5 % of checks."""
        return self.steps * self.p995

    def row(self) -> str:
        errors = sum(self.errors.values())
        told = ", ".join(f"{k}: {v}" for k, v in self.errors.items())
        many = self.steps > 1
        return (f"| {self.label} | {self.connections:,} | {self.rate:,.0f} | "
                f"{f'{self.checks:,.0f}' if many else '-'} | {self.p50:.2f} / {self.p99:.1f} | "
                f"{f'{self.check_p99:.1f}' if many else '-'} | {errors}"
                f"{f' ({told})' if told else ''} | {self.cpu} |")


@dataclass(frozen=True)
class Downloads:
    """The figures of N downloads at once."""

    label: str
    clients: int
    total_bytes: int
    wall: float
    slowest: float
    failures: list[str]
    client_cpu: float

    def row(self) -> str:
        why = f" ({'; '.join(sorted(set(self.failures))[:3])})" if self.failures else ""
        return (f"| {self.label} | {self.clients} | {self.total_bytes / MB:,.0f} MB | "
                f"{self.wall:.2f} | {self.total_bytes / MB / self.wall:,.0f} | "
                f"{self.slowest:.2f} | {len(self.failures)}{why} | {self.client_cpu:.1f} s |")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of ``pid`` and its descendants so far, from /proc."""
    table: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            table[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    tree, todo = set(), [pid]
    while todo:
        current = todo.pop()
        tree.add(current)
        todo += [p for p, (parent, _) in table.items() if parent == current and p not in tree]
    return sum(table[p][1] for p in tree if p in table) / os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU time the whole machine spent not idle so far (all cores, /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def lag(connections: int, threads: int) -> int:
    """How many requests later a thread of wrk sends a check's next step (loadbench.lua)."""
    return 2 * -(-connections // threads)


def run_wrk(label: str, url: str, steps: Sequence[Step], licenses: Path, *, connections: int,
            threads: int, duration: int, watched: dict[str, int], pause_ms: int = 0,
            log: Path | None = None, env: dict[str, str] | None = None) -> Run:
    """wrk sending ``steps`` as checks to ``url`` over ``connections`` for ``duration`` s."""
    threads = min(threads, connections)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout",
           WRK_TIMEOUT, "--latency", "-s", str(LUA), url, "--", LICENSE_HEADER, str(licenses),
           str(pause_ms), str(threads), str(lag(connections, threads)),
           *(f"{path}={status}" for path, status in steps)]
    before = {name: cpu_seconds(pid) for name, pid in watched.items()}
    usage, busy = resource.getrusage(resource.RUSAGE_CHILDREN), busy_seconds()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = {"wrk": after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime,
            **{name: cpu_seconds(pid) - before[name] for name, pid in watched.items()},
            "all": busy_seconds() - busy}
    if log is not None:
        with log.open("a") as out:
            out.write(f"### {label}: {' '.join(cmd[:10])} ...\n{done.stdout}{done.stderr}\n")
    line = next((x for x in done.stdout.splitlines() if x.startswith("LOADBENCH ")), None)
    if done.returncode != 0 or line is None:
        raise RunError(f"wrk failed ({done.returncode}): {done.stderr[-2000:]}")
    got = json.loads(line.removeprefix("LOADBENCH "))
    seconds = got["us"] / 1e6
    errors = {f"status {k}": v for k, v in got["unexpected"].items()}
    errors.update({kind: got[kind] for kind in ("connect", "read", "write", "timeout")
                   if got[kind]})
    # each expected status must come as often as the steps that get it, up to the requests
    # under way when wrk stopped: a 404 where the real check got 200 is an error too
    for status in {s for _, s in steps}:
        want = got["requests"] * sum(s == status for _, s in steps) / len(steps)
        off = abs(got["statuses"].get(str(status), 0) - want) - connections - threads
        if off > 0:
            errors[f"status {status} off by"] = round(off)
    cpu = " / ".join(f"{name} {100 * s / seconds:.0f}" for name, s in used.items())
    return Run(label, connections, len(steps), seconds, got["requests"], got["p50"] / 1000,
               got["p99"] / 1000, got["p995"] / 1000, errors, cpu)


def download_all(label: str, url: str, files: Sequence[tuple[str, int, str]],
                 licenses: Sequence[str]) -> Downloads:
    """One client per license number, all at once, each fetching ``files`` in turn (path,
    length, sha256) over its own connection (``http.client``). The wall time runs from the
    start to the last byte. Each answer is read into a buffer of its file's size, allocated and
    touched before the start, and its length and sha256 are checked afterwards: the client's
    hashing and page faults do not take CPU from the servers on a shared machine."""
    host, port = url.removeprefix("http://").split(":")
    clients = len(licenses)
    barrier = threading.Barrier(clients + 1)
    buffers = [bytearray(b"\xff") * files[i % len(files)][1] for i in range(clients)]
    got: list[tuple[float, int, int]] = [(0.0, 0, 0)] * clients  # seconds, status, bytes
    failed: list[str] = [""] * clients

    def client(i: int) -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        view, size, status = memoryview(buffers[i]), 0, 0
        barrier.wait()
        started = time.perf_counter()
        try:
            connection.request("GET", files[i % len(files)][0],
                               headers={LICENSE_HEADER: licenses[i]})
            answer = connection.getresponse()
            status = answer.status
            while size < len(view) and (n := answer.readinto(view[size:])):
                size += n
            if answer.read(1):
                failed[i] = "longer than the signed length"
        except (OSError, http.client.HTTPException) as e:
            failed[i] = f"{type(e).__name__}: {e}"
        finally:
            got[i] = (time.perf_counter() - started, status, size)
            connection.close()

    workers = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for worker in workers:
        worker.start()
    before = resource.getrusage(resource.RUSAGE_SELF)
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    for i, (_, status, size) in enumerate(got):
        _, length, sha = files[i % len(files)]
        if not failed[i]:
            failed[i] = (f"status {status}" if status != 200 else
                         f"{size} bytes, not {length}" if size != length else
                         "sha256 differs" if hashlib.sha256(buffers[i]).hexdigest() != sha
                         else "")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Downloads(label, clients, sum(g[2] for g in got), wall, max(g[0] for g in got),
                     [f for f in failed if f], cpu)
