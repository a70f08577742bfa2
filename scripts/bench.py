"""The benchmark (run by scripts/bench): the updater against the native tools, on the same data.

    scripts/bench [--quick] [--runs N] [--workdir DIR] [--fresh] [--only 1,4]

From a fixed seed it generates a realistic install (``treegen.BENCH``, about 540 MB; ``--quick``:
``treegen.DEMO``) and five successive builds, publishes them (zstd, the default) into a vendor
repository with a license, serves it with our server (``opusi-repo serve``, 8 threads, its own
process) on 127.0.0.1, and measures, ours and the native tool in turn on the same data, each
time the median of ``--runs`` runs (3; the download row 7, it is cheap and moves most):

1. backup of the install: ``writer.create_backup`` vs ``7zz a -tzip -mx1`` and ``zip -r -1``;
2. apply one build: ``apply.stage_build`` + ``install_build`` vs ``7zz x`` of the same files
   packed as LZMA2 -mx5;
3. download of a large file: ``Fetcher.download_package`` (hash included) vs ``curl`` from our
   server and from nginx serving the same file;
4. the whole update over five builds: the frozen updater vs a shell script with curl, zip, 7zz;
5. peak memory of the frozen updater applying a ~2 GB package (its own small repository);
6. start-up time and size of the frozen updater;
7-10. delta packages on real binaries, the whole update over a 2 MB/s line, the downtime
   with and without ``--prepare``, and the real binaries over that line (:mod:`bench_deltas`).

Peak memory is the summed RSS of a process tree polled every 50 ms (psutil); the in-process
steps of rows 1-3 are not told apart from the benchmark's own memory and show n/a. Row 5 is a
single run (its package alone takes two minutes to publish). The baseline builds are published
with a fast zstd level: their packages are never downloaded here.

It prints a Markdown table, then the date, machine, load average and total time. Everything
generated lives in the work folder (default ``build/bench``) and is reused by the next run when
its key still matches: the trees (seed, spec, treegen.py), the repositories (also the sources
that shape a package), the frozen programs (``scripts/build``'s own key). ``--fresh`` starts
over. ``--only`` measures the chosen rows. Exit code 0 even when goals are missed; 1 on errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import random
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_deltas  # noqa: E402
import py7zr  # noqa: E402
import treegen  # noqa: E402

from tests.support.frozen_build import build_frozen  # noqa: E402
from tests.support.processes import clean_env, free_port, stop_process  # noqa: E402
from updater.core.errors import OpusiError  # noqa: E402
from updater.core.paths import BACKUP_DIR, BUILD_FILE, CONFIG_FILE, EXCLUDED_DIRS, WORK_DIR  # noqa: E402
from updater.core.protocol import LICENSE_HEADER  # noqa: E402
from updater.install import apply  # noqa: E402
from updater.install.backup import store, writer  # noqa: E402
from updater.publisher import publish, repository  # noqa: E402
from updater.publisher.licenses import open_registry  # noqa: E402
from updater.publisher.trees import scan_tree  # noqa: E402
from updater.shared import download, package, trust  # noqa: E402
from updater.shared.transport import Fetcher, NetworkSettings  # noqa: E402

try:
    import psutil
except ImportError:  # memory figures become "n/a"
    psutil = None

SEED = 1147
BUILDS = [1147, 1148, 1150, 1152, 1155, 1160]
MEM_BUILDS = [2001, 2002]
LICENSE = "BENCH-1147"
MB = 1_000_000
#: Sources whose change changes what a published package holds: the repositories are re-made.
PACKAGE_SOURCES = ("shared/package.py", "publisher/repository.py", "publisher/publish.py",
                   "core/builds.py", "core/manifest.py", "core/paths.py", "shared/delta.py",
                   "publisher/deltas.py")
IN_PROCESS = "ours n/a (in-process)"
#: The baseline builds' packages are never downloaded here: they are published with a fast zstd
#: level (a method known only to this process) so the set-up stays short. Every measured package
#: is published with the default method.
BASELINE_METHOD = "zstd-bench-baseline"


class BenchError(Exception):
    """The benchmark itself failed (a tool missing, a step that did not do its job)."""


@dataclass(frozen=True)
class Config:
    """What to generate and how often to measure."""

    quick: bool
    runs: int
    work: Path
    spec: treegen.TreeSpec
    download_size: int
    big_file: int  #: size of each of the 4 large files of the memory build
    mem_runs: int
    #: Runs of the download row: ~1 s each, and the figure moves most between runs (the
    #: shared machine's disk writeback), so it gets more of them.
    download_runs: int


@dataclass
class Row:
    """One line of the result table."""

    step: str
    ours: str
    native: str = "-"
    ratio: str = "-"
    goal: str = ""
    met: bool | None = None
    sizes: str = ""
    memory: str = ""


@dataclass
class Bench:
    """The prepared data and the running servers."""

    cfg: Config
    trees: dict[int, Path]
    repo: Path
    install: Path
    url: str
    exe: Path
    mem_repo: Path
    mem_url: str
    nginx_url: str
    download_file: Path
    rows: list[Row] = field(default_factory=list)


# --- small helpers ------------------------------------------------------------------------


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run(cmd: Sequence[str | Path], **kw: object) -> None:
    """Run a tool quietly; a failure is a :class:`BenchError` with its output."""
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise BenchError(
            f"{' '.join(map(str, cmd))} failed ({done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[-2000:]}"
        )


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def fmt_mb(size: float) -> str:
    return f"{size / MB:.1f} MB"


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in scan_tree(folder).files.values())


def source_hash(*files: Path) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@contextmanager
def cached(folder: Path, key: str) -> Iterator[bool]:
    """Yield True when ``folder`` holds what ``key`` describes; else empty it for the caller."""
    stamp = folder / ".bench-key"
    if stamp.is_file() and stamp.read_text() == key:
        yield True
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    yield False
    stamp.write_text(key)


def fresh_copy(source: Path, dest: Path) -> Path:
    """``cp -a`` of ``source`` (not timed), flushed so later writeback does not skew a timing."""
    shutil.rmtree(dest, ignore_errors=True)
    run(["cp", "-a", source, dest])
    os.sync()
    return dest


class PeakRss:
    """The largest summed RSS of a process (and its descendants), polled every 50 ms."""

    def __init__(self, pid: int, children: bool = True) -> None:
        self.pid, self.children, self.peak = pid, children, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> PeakRss:
        if psutil is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _poll(self) -> None:
        assert psutil is not None
        while not self._stop.is_set():
            try:
                proc = psutil.Process(self.pid)
                procs = [proc, *(proc.children(recursive=True) if self.children else [])]
                total = 0
                for p in procs:
                    with suppress(psutil.Error):
                        total += p.memory_info().rss
                self.peak = max(self.peak, total)
            except psutil.Error:
                return
            self._stop.wait(0.05)

    def text(self, baseline: int = 0) -> str:
        return "n/a" if psutil is None else fmt_mb(max(0, self.peak - baseline))


def timed_tool(cmd: Sequence[str | Path], cwd: Path | None = None) -> tuple[float, int]:
    """Wall time and peak memory of one tool run; a failure is a :class:`BenchError`."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(c) for c in cmd],
        cwd=cwd,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    with PeakRss(proc.pid) as peak:
        _, err = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}): {err[-2000:]}")
    return seconds, peak.peak


def timed_call(fn: Callable[[], object]) -> tuple[float, int]:
    """Wall time of an in-process call (its memory is not told apart: 0; see rows 4 and 5)."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started, 0


# --- the data -----------------------------------------------------------------------------


def make_trees(cfg: Config) -> dict[int, Path]:
    base = cfg.work / "trees"
    key = json.dumps([SEED, BUILDS, repr(cfg.spec), source_hash(ROOT / "scripts/treegen.py")])
    with cached(base, key) as ok:
        if not ok:
            log(f"generating {len(BUILDS)} trees (seed {SEED})")
            treegen.generate(base, BUILDS, cfg.spec, SEED)
    return {b: base / str(b) for b in BUILDS}


def package_key(extra: object) -> str:
    files = [ROOT / "updater" / name for name in PACKAGE_SOURCES]
    method = package.METHODS[package.DEFAULT_METHOD]
    return json.dumps([source_hash(*files), package.DEFAULT_METHOD, method, extra], default=str)


def publish_all(vendor: Path, trees: dict[int, Path]) -> Path:
    """A repository with keys, every tree published (zstd) and the license registered."""
    repo, keys = vendor / "repo", vendor / "keys"
    repository.init_repository(repo, keys)
    package.METHODS.setdefault(BASELINE_METHOD, [{"id": py7zr.FILTER_ZSTD, "level": 3}])
    for i, (build, tree) in enumerate(trees.items()):
        started = time.perf_counter()
        method = package.DEFAULT_METHOD if i else BASELINE_METHOD
        result = publish.publish_build(repo, keys, build, tree, method=method)
        log(
            f"published {build}: {fmt_mb(result.package_size)} in "
            f"{time.perf_counter() - started:.1f} s"
        )
    with open_registry(vendor / "licenses.sqlite3") as registry:
        registry.add(LICENSE, entitled_until=None, note="benchmark")
    return repo


def package_file(repo: Path, build: int) -> Path:
    target = repository.load_state(repo).builds()[build]
    return repository.target_file(repo, target)


def deleted_files(repo: Path, build: int) -> list[str]:
    return list(repository.load_state(repo).builds()[build].custom["opusi"]["deleted"])


def make_native_packages(repo: Path, trees: dict[int, Path]) -> None:
    """``targets/native/<build>.7z``: the same files as our package, LZMA2 -mx5 by 7-Zip."""
    folder = repo / "targets" / "native"
    folder.mkdir(parents=True, exist_ok=True)
    for build in BUILDS[1:]:
        names = [m.name for m in package.list_members(package_file(repo, build))]
        listing = folder / f"{build}.list"
        listing.write_text("\n".join(names) + "\n", encoding="utf-8")
        started = time.perf_counter()
        run(
            [
                "7zz",
                "a",
                "-t7z",
                "-m0=lzma2",
                "-mx5",
                "-scsUTF-8",
                folder / f"{build}.7z",
                f"@{listing}",
            ],
            cwd=trees[build],
        )
        log(
            f"native {build}.7z: {fmt_mb((folder / f'{build}.7z').stat().st_size)} in "
            f"{time.perf_counter() - started:.1f} s"
        )
        listing.unlink()


def make_vendor(cfg: Config, trees: dict[int, Path]) -> Path:
    vendor = cfg.work / "vendor"
    with cached(vendor, package_key([SEED, BUILDS, repr(cfg.spec)])) as ok:
        if not ok:
            log("publishing the builds (zstd) and packing the native LZMA2 packages")
            repo = publish_all(vendor, trees)
            make_native_packages(repo, trees)
    return vendor / "repo"


def write_big_file(path: Path, size: int, rng: random.Random) -> None:
    """Mostly random (like packed data), every 16th 4 MB block text-like."""
    text = treegen._content(rng, 4 << 20, 1.0)  # noqa: SLF001 - the generator's own text
    with path.open("wb") as out:
        for i, start in enumerate(range(0, size, 4 << 20)):
            n = min(4 << 20, size - start)
            out.write(text[:n] if i % 16 == 15 else rng.randbytes(n))


def make_mem_vendor(cfg: Config) -> Path:
    """A second repository: a small tree, then a build adding 4 large files (~2 GB package)."""
    vendor = cfg.work / "memvendor"
    with cached(vendor, package_key([SEED, MEM_BUILDS, cfg.big_file])) as ok:
        if not ok:
            log(f"making the memory build (4 x {fmt_mb(cfg.big_file)})")
            trees = treegen.generate(vendor / "trees", MEM_BUILDS[:1], treegen.DEMO, SEED)
            big = vendor / "trees" / str(MEM_BUILDS[1])
            shutil.copytree(trees[MEM_BUILDS[0]], big)
            rng = random.Random(SEED + 1)
            (big / "Program" / "Data").mkdir(parents=True)
            for i in range(4):
                write_big_file(big / "Program" / "Data" / f"opusi_data{i}.pak", cfg.big_file, rng)
            trees[MEM_BUILDS[1]] = big
            publish_all(vendor, trees)
    return vendor / "repo"


def make_download_file(cfg: Config, repo: Path) -> Path:
    """A random file of ``download_size`` bytes in ``targets/bench/``, and its sha256 beside."""
    folder = repo / "targets" / "bench"
    path = folder / "download.bin"
    with cached(folder, str(cfg.download_size)) as ok:
        if not ok:
            rng, digest = random.Random(SEED), hashlib.sha256()
            with path.open("wb") as out:
                for start in range(0, cfg.download_size, 16 << 20):
                    block = rng.randbytes(min(16 << 20, cfg.download_size - start))
                    digest.update(block)
                    out.write(block)
            (folder / "download.sha256").write_text(digest.hexdigest())
    return path


def make_install(trees: dict[int, Path], dest: Path) -> Path:
    """The customer's install of the baseline build: its tree and ``BUILD`` (no data folders)."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(trees[BUILDS[0]], dest)
    (dest / BUILD_FILE).write_text(f"{BUILDS[0]}\n")
    return dest


def with_config(install: Path, url: str) -> Path:
    ini = install / CONFIG_FILE
    ini.parent.mkdir(parents=True, exist_ok=True)
    ini.write_text(f"[Update]\nserver = {url}\nlicense = {LICENSE}\n")
    return install


# --- servers ------------------------------------------------------------------------------


def start_server(stack: ExitStack, repo: Path, log_file: Path) -> str:
    """Our server (``opusi-repo serve``, 8 threads) in its own process; returns its URL."""
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "opusi-repo"), "serve", "--repo", str(repo),
         "--db", str(repo.parent / "licenses.sqlite3"), "--bind", "127.0.0.1:0",
         "--threads", "8"],
        stdout=subprocess.PIPE, stderr=log_file.open("w"), text=True, env=clean_env(),
    )  # fmt: skip
    stack.callback(stop_process, proc, 30)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    port = line.rstrip().rpartition(":")[2]
    if not port.isdigit():
        raise BenchError(f"the server did not start: {line!r}; see {log_file}")
    return f"http://127.0.0.1:{port}"


def start_nginx(stack: ExitStack, work: Path, root: Path) -> str:
    """nginx serving ``root`` on a free loopback port, started and stopped as a subprocess."""
    folder, port = work / "nginx", free_port()
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "tmp").mkdir(parents=True)
    temps = "\n".join(
        f"  {kind}_temp_path {folder}/tmp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""
    (folder / "nginx.conf").write_text(
        f"daemon off;\n{user}worker_processes 1;\npid {folder}/nginx.pid;\n"
        f"error_log {folder}/error.log;\nevents {{ worker_connections 64; }}\n"
        f"http {{\n  access_log {folder}/access.log;\n{temps}\n  sendfile on;\n"
        f"  server {{ listen 127.0.0.1:{port}; root {root}; }}\n}}\n"
    )
    proc = subprocess.Popen(
        [str(nginx_path()), "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e",
         str(folder / "error.log")],
        stdout=subprocess.DEVNULL, stderr=(folder / "stderr.log").open("w"), text=True,
    )  # fmt: skip
    stack.callback(stop_process, proc, 30)
    for _ in range(100):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return f"http://127.0.0.1:{port}"
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise BenchError(f"nginx did not start; see {folder}/error.log and {folder}/stderr.log")


# --- the steps ----------------------------------------------------------------------------


def bench_backup(b: Bench) -> Row:
    out = b.cfg.work / "out"
    out.mkdir(exist_ok=True)
    times: dict[str, list[float]] = {"ours": [], "7zz": [], "zip": []}
    sizes: dict[str, int] = {}
    peaks: dict[str, int] = {"ours": 0, "7zz": 0, "zip": 0}

    def record(name: str, seconds: float, peak: int, size: int) -> None:
        times[name].append(seconds)
        peaks[name], sizes[name] = max(peaks[name], peak), size

    for _ in range(b.cfg.runs):
        os.sync()
        seconds, peak = timed_call(lambda: writer.create_backup(b.install, BUILDS[0]))
        made = list((b.install / BACKUP_DIR).glob("*.zip"))  # the backup's parts
        record("ours", seconds, peak, sum(part.stat().st_size for part in made))
        shutil.rmtree(b.install / BACKUP_DIR)
        for name, cmd in (
            ("7zz", ["7zz", "a", "-tzip", "-mx1"]),
            ("zip", ["zip", "-q", "-r", "-1"]),
        ):
            target = out / f"{name}.zip"
            target.unlink(missing_ok=True)
            os.sync()
            seconds, peak = timed_tool([*cmd, target, "."], cwd=b.install)
            record(name, seconds, peak, target.stat().st_size)
            target.unlink()
    ours, seven, zipped = (median(times[k]) for k in ("ours", "7zz", "zip"))
    return Row(
        "1. backup of the install",
        f"{ours:.2f}",
        f"7zz {seven:.2f} / zip {zipped:.2f}",
        f"{ours / seven:.2f} (zip: {ours / zipped:.2f})",
        "<= 0.8 of 7zz",
        ours <= 0.8 * seven,
        f"zip: ours {fmt_mb(sizes['ours'])}, 7zz {fmt_mb(sizes['7zz'])}, zip {fmt_mb(sizes['zip'])}"
        f" (of {fmt_mb(folder_size(b.install))})",
        f"{IN_PROCESS} / 7zz {fmt_mb(peaks['7zz'])} / zip {fmt_mb(peaks['zip'])}",
    )


def fetch_build(b: Bench, build: int) -> download.DownloadedBuild:
    """Build ``build``'s package and manifest, through the verified metadata, as the updater."""
    fetcher = Fetcher(NetworkSettings(LICENSE, use_environment=False))
    cache = b.cfg.work / "client"
    shutil.rmtree(cache, ignore_errors=True)
    root = (b.repo / "metadata" / "1.root.json").read_bytes()
    view = trust.read_view(b.url, cache / "metadata", root, fetcher)
    # the full package: row 2 compares its apply with 7-Zip's (row 7 measures the deltas)
    wanted = [dataclasses.replace(r, delta=None) for r in view.builds if r.build == build]
    return download.download_builds(fetcher, wanted, cache / "downloads")[0]


def bench_apply(b: Bench) -> Row:
    build = BUILDS[1]
    item = fetch_build(b, build)
    native = b.repo / "targets" / "native" / f"{build}.7z"
    copy = b.cfg.work / "copy"
    ours_t, native_t, ours_m, native_m = [], [], 0, 0

    def apply_ours() -> None:
        staging = copy / WORK_DIR / "staging"
        staged = apply.stage_build(item.package, item.build, item.manifest, staging)
        apply.install_build(copy, staged, item.build)

    for _ in range(b.cfg.runs):
        fresh_copy(b.install, copy)
        seconds, peak = timed_call(apply_ours)
        ours_t.append(seconds)
        ours_m = max(ours_m, peak)
        fresh_copy(b.install, copy)
        seconds, peak = timed_tool(["7zz", "x", "-aoa", "-y", f"-o{copy}", native])
        native_t.append(seconds)
        native_m = max(native_m, peak)
    shutil.rmtree(copy)
    ours, theirs = median(ours_t), median(native_t)
    ours_size, native_size = item.package.stat().st_size, native.stat().st_size
    return Row(
        f"2. apply one build ({build})",
        f"{ours:.2f}",
        f"7zz x {theirs:.2f}",
        f"{ours / theirs:.2f}",
        "<= 0.8, package <= 1.05 x LZMA2",
        ours <= 0.8 * theirs and ours_size <= 1.05 * native_size,
        f"package: ours (zstd) {fmt_mb(ours_size)}, LZMA2 -mx5 {fmt_mb(native_size)} "
        f"({ours_size / native_size:.3f}x); unpacked {fmt_mb(item.build.unpacked_size)}",
        f"{IN_PROCESS} / 7zz {fmt_mb(native_m)}",
    )


def bench_download(b: Bench) -> Row:
    size = b.download_file.stat().st_size
    sha = (b.download_file.parent / "download.sha256").read_text().strip()
    path = "targets/bench/download.bin"
    dest = b.cfg.work / "out" / "download.bin"
    dest.parent.mkdir(exist_ok=True)
    curl: list[str | Path] = ["curl", "-s", "-f", "--noproxy", "*", "-o", dest]
    fetcher = Fetcher(NetworkSettings(LICENSE, use_environment=False))
    times: dict[str, list[float]] = {"ours": [], "curl": [], "nginx": []}
    peaks = {"ours": 0, "curl": 0}

    def ours() -> None:
        fetcher.download_package(f"{b.url}/{path}", dest, length=size, sha256=sha)

    steps: dict[str, Callable[[], tuple[float, int]]] = {
        "ours": lambda: timed_call(ours),
        "curl": lambda: timed_tool(
            [*curl, "-H", f"{LICENSE_HEADER}: {LICENSE}", f"{b.url}/{path}"]
        ),
        "nginx": lambda: timed_tool([*curl, f"{b.nginx_url}/bench/download.bin"]),
    }
    for _ in range(b.cfg.download_runs):
        for name, step in steps.items():
            dest.unlink(missing_ok=True)
            os.sync()
            seconds, peak = step()
            if dest.stat().st_size != size:
                raise BenchError(f"{name}: got {dest.stat().st_size} bytes, not {size}")
            times[name].append(seconds)
            if name in peaks:
                peaks[name] = max(peaks[name], peak)
    dest.unlink()
    rate = {k: size / median(v) / MB for k, v in times.items()}
    return Row(
        f"3. download {fmt_mb(size)}",
        f"{median(times['ours']):.2f}",
        f"curl {median(times['curl']):.2f} / nginx+curl {median(times['nginx']):.2f}",
        f"{median(times['ours']) / median(times['curl']):.2f}",
        ">= 0.9 of curl's throughput",
        rate["ours"] >= 0.9 * rate["curl"],
        f"MB/s: ours {rate['ours']:.0f} (sha256 incl.), curl {rate['curl']:.0f}, "
        f"nginx {rate['nginx']:.0f}",
        f"{IN_PROCESS} / curl {fmt_mb(peaks['curl'])}",
    )


def run_frozen(exe: Path, install: Path, *extra: str | Path) -> tuple[float, int]:
    """The frozen updater, end to end, unattended; its wall time and peak memory."""
    return timed_tool([exe, "--install-dir", install, "--yes", "--progress", "none", *extra])


def check_build(install: Path, tree: Path, build: int, who: str) -> None:
    """The install holds ``tree``'s files with their sizes, and ``BUILD`` says ``build``."""
    found = (install / BUILD_FILE).read_text().strip()
    if found != str(build):
        raise BenchError(f"{who}: the install is at build {found}, not {build}")
    want = {p: f.stat().st_size for p, f in scan_tree(tree).files.items()}
    have = {p: f.stat().st_size for p, f in store.install_files(install).items()}
    have.pop(BUILD_FILE, None)
    if have != want:
        wrong = sorted(set(have.items()) ^ set(want.items()))[:5]
        raise BenchError(f"{who}: the install differs from the tree of {build}: {wrong}")


def native_script(b: Bench) -> Path:
    """The vendor's scripted update: curl, zip backup, 7zz x each package, rm, BUILD."""
    lines = [
        "#!/usr/bin/env bash",
        "set -euo pipefail",
        'install="$1"; work="$2"',
        'rm -rf "$work"; mkdir -p "$work"',
    ]
    for build in BUILDS[1:]:
        lines.append(
            f"curl -s -f --noproxy '*' -H '{LICENSE_HEADER}: {LICENSE}' "
            f'-o "$work/{build}.7z" {b.url}/targets/native/{build}.7z'
        )
    excluded = " ".join(shlex.quote(f"{d}/*") for d in EXCLUDED_DIRS)
    lines.append(f'(cd "$install" && zip -q -r -1 "$work/backup.zip" . -x {excluded})')
    for build in BUILDS[1:]:
        lines.append(f'7zz x -aoa -y -o"$install" "$work/{build}.7z" > /dev/null')
        gone = deleted_files(b.repo, build)
        if gone:
            lines.append('(cd "$install" && rm -f -- ' + " ".join(map(shlex.quote, gone)) + ")")
    lines.append(f'printf "{BUILDS[-1]}\\n" > "$install/{BUILD_FILE}"')
    script = b.cfg.work / "native-update.sh"
    script.write_text("\n".join(lines) + "\n")
    return script


def bench_update(b: Bench) -> Row:
    script, copy = native_script(b), b.cfg.work / "copy"
    ours_t, native_t, ours_m, native_m = [], [], 0, 0
    for i in range(b.cfg.runs):
        with_config(fresh_copy(b.install, copy), b.url)
        seconds, peak = run_frozen(b.exe, copy)
        if i == 0:
            check_build(copy, b.trees[BUILDS[-1]], BUILDS[-1], "the frozen updater")
        ours_t.append(seconds)
        ours_m = max(ours_m, peak)
        with_config(fresh_copy(b.install, copy), b.url)
        seconds, peak = timed_tool(["bash", script, copy, b.cfg.work / "native-update"])
        if i == 0:
            check_build(copy, b.trees[BUILDS[-1]], BUILDS[-1], "the native script")
        native_t.append(seconds)
        native_m = max(native_m, peak)
    shutil.rmtree(copy)
    shutil.rmtree(b.cfg.work / "native-update")
    ours, theirs = median(ours_t), median(native_t)
    our_bytes = sum(min(bench_deltas.fetch_lengths(b.repo, n)) for n in BUILDS[1:])
    native_bytes = sum((b.repo / "targets/native" / f"{n}.7z").stat().st_size for n in BUILDS[1:])
    return Row(
        f"4. whole update, {len(BUILDS) - 1} builds",
        f"{ours:.2f}",
        f"script {theirs:.2f}",
        f"{ours / theirs:.2f}",
        "<= 0.8",
        ours <= 0.8 * theirs,
        f"downloaded: ours {fmt_mb(our_bytes)} (delta packages), native {fmt_mb(native_bytes)}",
        f"ours {fmt_mb(ours_m)} / script {fmt_mb(native_m)}",
    )


def bench_memory(b: Bench) -> Row:
    tree = b.mem_repo.parent / "trees"
    target = MEM_BUILDS[1]
    pkg = repository.load_state(b.mem_repo).builds()[target].length
    copy = b.cfg.work / "memcopy"
    times, peaks = [], []
    for i in range(b.cfg.mem_runs):
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(tree / str(MEM_BUILDS[0]), copy)
        (copy / BUILD_FILE).write_text(f"{MEM_BUILDS[0]}\n")
        with_config(copy, b.mem_url)
        os.sync()
        seconds, peak = run_frozen(
            b.exe, copy, "--trusted-root", b.mem_repo / "metadata" / "1.root.json"
        )
        if i == 0:
            check_build(copy, tree / str(target), target, "the frozen updater (memory build)")
        times.append(seconds)
        peaks.append(peak)
    shutil.rmtree(copy)
    peak = max(peaks)
    return Row(
        "5. peak memory",
        f"{median(times):.2f}",
        goal="<= 150 MB",
        met=None if psutil is None else peak <= 150 * MB,
        sizes=f"package {fmt_mb(pkg)} (4 x {fmt_mb(b.cfg.big_file)} files)",
        memory="n/a (no psutil)" if psutil is None else f"{fmt_mb(peak)} (process tree)",
    )


def bench_startup(b: Bench) -> Row:
    times = [timed_tool([b.exe, "--version"])[0] for _ in range(5)]
    seconds, size = median(times), b.exe.stat().st_size
    return Row(
        "6. frozen start-up and size",
        f"{seconds:.2f}",
        goal="<= 1 s, <= 25 MB",
        met=seconds <= 1.0 and size <= 25 * MB,
        sizes=f"{b.exe.name} {fmt_mb(size)}",
        memory=f"{fmt_mb(timed_tool([b.exe, '--version'])[1])}",
    )


# --- the run ------------------------------------------------------------------------------


def table(rows: Sequence[Row]) -> str:
    head = [
        "step",
        "ours (s)",
        "native (s)",
        "ratio ours/native",
        "goal",
        "met?",
        "sizes",
        "peak memory",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        met = "n/a" if r.met is None else ("yes" if r.met else "**no**")
        cells = [r.step, r.ours, r.native, r.ratio, r.goal, met, r.sizes, r.memory]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {ram:.1f} GiB RAM"


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def config_from(args: argparse.Namespace) -> Config:
    quick = bool(args.quick)
    return Config(
        quick=quick,
        runs=args.runs or (1 if quick else 3),
        work=(args.workdir or ROOT / "build" / ("bench-quick" if quick else "bench")).resolve(),
        spec=treegen.DEMO if quick else treegen.BENCH,
        download_size=(50 if quick else 500) * MB,
        big_file=(50 if quick else 512) * MB,
        mem_runs=1,
        download_runs=args.runs or (1 if quick else 7),
    )


def nginx_path() -> str | None:
    """nginx lives in /usr/sbin, which is not on every user's PATH."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def check_tools() -> None:
    missing = [t for t in ("7zz", "zip", "curl") if shutil.which(t) is None]
    missing += [] if nginx_path() else ["nginx"]
    if missing:
        raise BenchError(f"missing tools: {', '.join(missing)} (scripts/bench installs them)")


def prepare(cfg: Config, stack: ExitStack) -> Bench:
    trees = make_trees(cfg)
    repo = make_vendor(cfg, trees)
    mem_repo = make_mem_vendor(cfg)
    download_file = make_download_file(cfg, repo)
    log("building the frozen updater (reused when unchanged)")
    # a private PyInstaller cache: test suites building at the same time share the default one
    os.environ.setdefault("PYINSTALLER_CONFIG_DIR", str(cfg.work / "pyinstaller"))
    exe, _ = build_frozen(repo / "metadata" / "1.root.json", cfg.work / "dist")
    install = make_install(trees, cfg.work / "install")
    url = start_server(stack, repo, cfg.work / "server.log")
    mem_url = start_server(stack, mem_repo, cfg.work / "memserver.log")
    nginx_url = start_nginx(stack, cfg.work, repo / "targets")
    return Bench(cfg, trees, repo, install, url, exe, mem_repo, mem_url, nginx_url, download_file)


def bench_realbins(b: Bench) -> Row:
    return bench_deltas.realbins_row(b, sys.modules[__name__])  # type: ignore[no-any-return]


def bench_slow_update(b: Bench) -> Row:
    return bench_deltas.slow_update_row(b, sys.modules[__name__])  # type: ignore[no-any-return]


def bench_downtime(b: Bench) -> Row:
    return bench_deltas.downtime_row(b, sys.modules[__name__])  # type: ignore[no-any-return]


def bench_realbins_slow(b: Bench) -> Row:
    return bench_deltas.realbins_slow_row(b, sys.modules[__name__])  # type: ignore[no-any-return]


STEPS: tuple[Callable[[Bench], Row], ...] = (
    bench_backup,
    bench_apply,
    bench_download,
    bench_update,
    bench_memory,
    bench_startup,
    bench_realbins,
    bench_slow_update,
    bench_downtime,
    bench_realbins_slow,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, one run (for tests)")
    parser.add_argument("--runs", type=int, help="runs per figure, the median counts (3; quick 1)")
    parser.add_argument("--workdir", type=Path, help="work folder (default build/bench)")
    parser.add_argument("--fresh", action="store_true", help="regenerate everything")
    parser.add_argument("--only", metavar="STEPS", default="",
                        help="comma-separated step numbers to measure, e.g. 1,4 (default: all)")
    args = parser.parse_args(argv)
    cfg = config_from(args)
    try:
        chosen = [STEPS[int(n) - 1] for n in args.only.split(",") if n.strip()] or list(STEPS)
    except (ValueError, IndexError):
        parser.error(f"--only takes step numbers 1-{len(STEPS)}, not {args.only!r}")
    started, load_before = time.monotonic(), load()
    try:
        check_tools()
        if args.fresh:
            shutil.rmtree(cfg.work, ignore_errors=True)
        cfg.work.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            b = prepare(cfg, stack)
            log(f"set up in {time.monotonic() - started:.0f} s; measuring ({cfg.runs} runs)")
            for step in chosen:
                step_started = time.monotonic()
                b.rows.append(step(b))
                log(f"{b.rows[-1].step}: {time.monotonic() - step_started:.0f} s")
    except (BenchError, OpusiError, OSError, subprocess.SubprocessError) as e:
        print(f"scripts/bench: {e}", file=sys.stderr)
        return 1
    install_size = folder_size(b.install)
    print(table(b.rows))
    print(
        f"\n{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; {machine()}; "
        f"{'quick' if cfg.quick else 'full'} run, median of {cfg.runs} (download row: "
        f"{cfg.download_runs}, peak memory row: {cfg.mem_runs}); install {fmt_mb(install_size)} in "
        f"{len(scan_tree(b.install).files)} files; load average {load_before} at the start, "
        f"{load()} at the end; total {time.monotonic() - started:.0f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
