"""Debian's nginx on 127.0.0.1 with the project's shipped configuration
(``deploy/nginx/opusi.conf.template``), started and stopped by a test."""

from __future__ import annotations

import os
import shutil
import socket
import string
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "nginx" / "opusi.conf.template"


def nginx_path() -> str | None:
    """nginx lives in /usr/sbin, which is not on every user's PATH."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Nginx:
    """A running nginx: its URL, folder and access log."""

    url: str
    folder: Path
    access_log: Path


def render(repo: Path, upstream: str, port: int, folder: Path, auth_cache: str) -> str:
    """The shipped template with this test's values (as ``envsubst`` would fill it)."""
    values = {"OPUSI_LISTEN": f"127.0.0.1:{port}", "OPUSI_REPO": str(repo),
              "OPUSI_UPSTREAM": upstream, "OPUSI_CACHE": str(folder / "cache"),
              "OPUSI_AUTH_CACHE": auth_cache, "OPUSI_LOG": str(folder / "access.log")}
    return string.Template(TEMPLATE.read_text("utf-8")).safe_substitute(values)


@contextmanager
def running(repo: Path, upstream_url: str | Sequence[str], folder: Path,
            auth_cache: str = "2s", workers: str = "1") -> Iterator[Nginx]:
    """nginx in front of ``repo`` with the license check at ``upstream_url`` (the project's
    server; several: an ``upstream`` block of them, as the template's head says), on a free
    loopback port; stopped at the end. ``workers``: nginx's ``worker_processes`` (``auto``:
    one per core; scripts/loadbench)."""
    binary = nginx_path()
    if binary is None:
        raise RuntimeError("nginx is not installed (scripts/test installs it with apt-get)")
    port = free_port()
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "tmp").mkdir(parents=True)
    temps = "\n".join(f"  {kind}_temp_path {folder}/tmp/{kind};"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    user = "user root;\n" if os.geteuid() == 0 else ""
    urls = [upstream_url] if isinstance(upstream_url, str) else list(upstream_url)
    upstreams = ""
    if len(urls) == 1:
        site = render(repo, urls[0].removeprefix("http://"), port, folder, auth_cache)
    else:
        servers = "".join(f"    server {url.removeprefix('http://')};\n" for url in urls)
        upstreams = f"  upstream opusi_services {{\n{servers}  }}\n"
        site = render(repo, "opusi_services", port, folder, auth_cache)
    (folder / "nginx.conf").write_text(
        f"daemon off;\n{user}worker_processes {workers};\nworker_rlimit_nofile 8192;\n"
        f"pid {folder}/nginx.pid;\n"
        f"error_log {folder}/error.log;\nevents {{ worker_connections 4096; }}\n"
        f"http {{\n  default_type application/octet-stream;\n{temps}\n{upstreams}{site}\n}}\n")
    proc = subprocess.Popen([binary, "-p", str(folder), "-c", str(folder / "nginx.conf"),
                             "-e", str(folder / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=(folder / "stderr.log").open("w"))
    try:
        for _ in range(200):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None:
                raise RuntimeError("nginx did not start: "
                                   + (folder / "stderr.log").read_text()[-2000:]
                                   + (folder / "error.log").read_text()[-2000:])
            time.sleep(0.05)
        yield Nginx(f"http://127.0.0.1:{port}", folder, folder / "access.log")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
