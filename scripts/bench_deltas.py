"""The benchmark's rows about fewer bytes and less downtime (run by scripts/bench, rows 7-9).

7. **real binaries**: successive releases of software no one here wrote (pyarrow's Windows
   wheels, :mod:`tests.support.realbins`; ``--quick``: the generated demo trees), published
   with and without delta packages: the bytes to download for the chain (delta versus full
   packages), the publish time with and without deltas, and the frozen updater's time and peak
   memory applying the chain by deltas.
8. **a slow link**: the whole update of the benchmark's five builds through a relay at
   2 MB/s (a 16 Mbit/s DSL line): ours (delta packages, ``--prepare`` then the update) against
   the native script (curl, zip, ``7zz x``) on the full packages.
9. **downtime**: from the host's exit to done, on the same slow link: the update after a
   ``--prepare`` against the update without one.
10. **real binaries over the slow link**: row 8 on row 7's releases. The generated builds of
   row 8 change by fresh random bytes (a region of a large binary and whole small files), which
   no delta can shrink; real releases change as rebuilt code does.

The helpers of scripts/bench (timing, servers, installs) come in as ``bench``, the module.
"""

from __future__ import annotations

import shlex
import shutil
import time
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.support import realbins
from tests.support.slowlink import SlowLink
from updater.publisher import publish, repository
from updater.publisher.licenses import open_registry
from updater.shared import package

#: The practice's line: 16 Mbit/s down.
SLOW_RATE = 2_000_000


def _publish_chain(bench: ModuleType, trees: list[Path], vendor: Path,
                   deltas: bool) -> tuple[Path, list[float], int, int]:
    """Publish ``trees`` as builds 1.. into a fresh repository; its publish times (each build
    after the first), and the bytes of the full packages and of what the updater fetches."""
    shutil.rmtree(vendor, ignore_errors=True)
    repo, keys = vendor / "repo", vendor / "keys"
    repository.init_repository(repo, keys)
    times, full, fetch = [], 0, 0
    for i, tree in enumerate(trees, 1):
        started = time.perf_counter()
        result = publish.publish_build(repo, keys, i, tree, deltas=deltas)
        if i > 1:
            times.append(time.perf_counter() - started)
            full += result.package_size
            fetch += min(result.delta_size or result.package_size, result.package_size)
        bench.log(f"published {vendor.name} {i}: {bench.fmt_mb(result.package_size)}"
                  + (f", delta {bench.fmt_mb(result.delta_size)}" if result.delta_size else ""))
    with open_registry(vendor / "licenses.sqlite3") as registry:
        registry.add(bench.LICENSE, entitled_until=None, note="benchmark")
    return repo, times, full, fetch


def realbins_row(b: Any, bench: ModuleType) -> Any:
    """Row 7: the chain of real releases by deltas."""
    if b.cfg.quick:
        trees, what = [b.trees[n] for n in bench.BUILDS[:4]], "generated demo trees"
    else:
        trees = realbins.release_trees()
        what = f"{realbins.PACKAGE} {', '.join(realbins.RELEASES)} win_amd64"
    work = b.cfg.work / "realbins"
    _, plain_t, full, _ = _publish_chain(bench, trees, work / "plain", False)
    repo, delta_t, _, fetch = _publish_chain(bench, trees, work / "delta", True)
    install = work / "install"
    shutil.rmtree(install, ignore_errors=True)
    shutil.copytree(trees[0], install)
    (install / bench.BUILD_FILE).write_text("1\n")
    with ExitStack() as stack:
        url = bench.start_server(stack, repo, work / "server.log")
        bench.with_config(install, url)
        bench.os.sync()
        seconds, peak = bench.run_frozen(b.exe, install, "--trusted-root",
                                         repo / "metadata" / "1.root.json")
    bench.check_build(install, trees[-1], len(trees), "the frozen updater (deltas)")
    shutil.rmtree(install)
    ratio = fetch / full
    publish_ratio = sum(delta_t) / sum(plain_t)
    return bench.Row(
        f"7. real binaries, {len(trees) - 1} updates by deltas",
        f"{seconds:.2f}",
        "-",
        f"bytes {ratio:.2f}",
        "bytes <= 0.35; publish <= 2x",
        ratio <= 0.35 and publish_ratio <= 2,
        f"{what}: fetched {bench.fmt_mb(fetch)} instead of {bench.fmt_mb(full)}; publish "
        f"{sum(delta_t):.1f} s with deltas, {sum(plain_t):.1f} s without ({publish_ratio:.2f}x)",
        f"ours {bench.fmt_mb(peak)}",
    )


def _slow_copy(b: Any, bench: ModuleType, link: SlowLink, name: str) -> Path:
    copy = bench.fresh_copy(b.install, b.cfg.work / name)
    return Path(bench.with_config(copy, link.url))


def slow_update_row(b: Any, bench: ModuleType) -> Any:
    """Row 8: the whole update over a 2 MB/s line, ours (deltas, prepare) against the script."""
    script = bench.native_script(b)
    with SlowLink(_upstream(b.url), SLOW_RATE) as link:
        script.write_text(script.read_text().replace(b.url, link.url))
        copy = _slow_copy(b, bench, link, "slow-ours")
        started = time.perf_counter()
        prep, peak_p = bench.run_frozen(b.exe, copy, "--prepare")
        update, peak_u = bench.run_frozen(b.exe, copy)
        ours = time.perf_counter() - started
        bench.check_build(copy, b.trees[bench.BUILDS[-1]], bench.BUILDS[-1], "ours, slow link")
        copy = _slow_copy(b, bench, link, "slow-native")
        theirs, peak_n = bench.timed_tool(["bash", script, copy, b.cfg.work / "slow-work"])
        bench.check_build(copy, b.trees[bench.BUILDS[-1]], bench.BUILDS[-1], "script, slow link")
    for name in ("slow-ours", "slow-native", "slow-work"):
        shutil.rmtree(b.cfg.work / name, ignore_errors=True)
    fetched = sum(min(fetch_lengths(b.repo, n)) for n in bench.BUILDS[1:])
    native = sum((b.repo / "targets/native" / f"{n}.7z").stat().st_size for n in bench.BUILDS[1:])
    return bench.Row(
        f"8. whole update at {SLOW_RATE / 1e6:.0f} MB/s, {len(bench.BUILDS) - 1} builds",
        f"{ours:.1f}",
        f"script {theirs:.1f}",
        f"{ours / theirs:.2f}",
        "<= 0.4",
        ours <= 0.4 * theirs,
        f"prepare {prep:.1f} s + update {update:.1f} s; downloaded: ours "
        f"{bench.fmt_mb(fetched)} (deltas), script {bench.fmt_mb(native)} (LZMA2)",
        f"ours {bench.fmt_mb(max(peak_p, peak_u))} / script {bench.fmt_mb(peak_n)}",
    )


def downtime_row(b: Any, bench: ModuleType) -> Any:
    """Row 9: host exit to done on the slow line, after a prepare against without one."""
    with SlowLink(_upstream(b.url), SLOW_RATE) as link:
        copy = _slow_copy(b, bench, link, "downtime")
        bench.run_frozen(b.exe, copy, "--prepare")  # while the host still runs: not counted
        prepared, _ = bench.run_frozen(b.exe, copy)
        bench.check_build(copy, b.trees[bench.BUILDS[-1]], bench.BUILDS[-1], "after prepare")
        copy = _slow_copy(b, bench, link, "downtime")
        unprepared, _ = bench.run_frozen(b.exe, copy)
        bench.check_build(copy, b.trees[bench.BUILDS[-1]], bench.BUILDS[-1], "no prepare")
    shutil.rmtree(b.cfg.work / "downtime", ignore_errors=True)
    return bench.Row(
        f"9. downtime at {SLOW_RATE / 1e6:.0f} MB/s (host exit to done)",
        f"{prepared:.1f}",
        f"no prepare {unprepared:.1f}",
        f"{prepared / unprepared:.2f}",
        "<= 0.1",
        prepared <= 0.1 * unprepared,
        "with prepare: the apply (prepared files checked again); without: download, staging, "
        "backup, apply",
    )


def _upstream(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("http://").partition(":")
    return host, int(port)


def fetch_lengths(repo: Path, build: int) -> list[int]:
    """The lengths of build ``build``'s full package and, if published, its delta package."""
    targets = repository.load_state(repo).targets.signed.targets
    return [t.length for name, t in targets.items()
            if name in (f"builds/{build}.7z", f"deltas/{build}.7z")]


def _native_chain(bench: ModuleType, repo: Path, trees: list[Path], folder: Path) -> None:
    """LZMA2 7z packages (``7zz a -mx5``) of the files of each full package after the first."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(2, len(trees) + 1):
        out = folder / f"{i}.7z"
        if out.exists():
            continue
        names = [m.name for m in package.list_members(bench.package_file(repo, i))]
        listing = folder / f"{i}.list"
        listing.write_text("\n".join(names) + "\n", encoding="utf-8")
        bench.run(["7zz", "a", "-t7z", "-m0=lzma2", "-mx5", "-scsUTF-8", out.with_suffix(".part"),
                   f"@{listing}"], cwd=trees[i - 1])
        out.with_suffix(".part").rename(out)
        listing.unlink()


def _chain_script(bench: ModuleType, repo: Path, count: int, url: str, work: Path) -> Path:
    """The native script for the real binaries: curl, zip, 7zz x, rm, BUILD."""
    lines = ["#!/usr/bin/env bash", "set -euo pipefail", 'install="$1"; work="$2"',
             'rm -rf "$work"; mkdir -p "$work"']
    for i in range(2, count + 1):
        lines.append(f"curl -s -f --noproxy '*' -H '{bench.LICENSE_HEADER}: {bench.LICENSE}' "
                     f'-o "$work/{i}.7z" {url}/targets/native/{i}.7z')
    lines.append('(cd "$install" && zip -q -r -1 "$work/backup.zip" .)')
    for i in range(2, count + 1):
        lines.append(f'7zz x -aoa -y -o"$install" "$work/{i}.7z" > /dev/null')
        gone = bench.deleted_files(repo, i)
        if gone:
            lines.append('(cd "$install" && rm -f -- ' + " ".join(map(shlex.quote, gone)) + ")")
    lines.append(f'printf "{count}\\n" > "$install/{bench.BUILD_FILE}"')
    script = work / "native-realbins.sh"
    script.write_text("\n".join(lines) + "\n")
    return script


def realbins_slow_row(b: Any, bench: ModuleType) -> Any:
    """Row 10: the real binaries' chain over the 2 MB/s line, ours (deltas, prepare) against
    the native script on the full packages (LZMA2)."""
    trees = ([b.trees[n] for n in bench.BUILDS[:4]] if b.cfg.quick
             else realbins.release_trees())
    work = b.cfg.work / "realbins"
    repo = work / "delta" / "repo"
    if not (repo / "metadata").is_dir():
        _publish_chain(bench, trees, work / "delta", True)
    _native_chain(bench, repo, trees, repo / "targets" / "native")
    root = repo / "metadata" / "1.root.json"
    with ExitStack() as stack:
        url = bench.start_server(stack, repo, work / "server-slow.log")
        link = stack.enter_context(SlowLink(_upstream(url), SLOW_RATE))
        copies = {}
        for who in ("ours", "native"):
            copies[who] = work / f"slow-{who}"
            shutil.rmtree(copies[who], ignore_errors=True)
            shutil.copytree(trees[0], copies[who])
            (copies[who] / bench.BUILD_FILE).write_text("1\n")
            bench.with_config(copies[who], link.url)
        bench.os.sync()
        started = time.perf_counter()
        bench.run_frozen(b.exe, copies["ours"], "--prepare", "--trusted-root", root)
        bench.run_frozen(b.exe, copies["ours"], "--trusted-root", root)
        ours = time.perf_counter() - started
        script = _chain_script(bench, repo, len(trees), link.url, work)
        theirs, _ = bench.timed_tool(["bash", script, copies["native"], work / "native-work"])
    for who, copy in copies.items():
        bench.check_build(copy, trees[-1], len(trees), f"{who}, real binaries, slow link")
        shutil.rmtree(copy)
    shutil.rmtree(work / "native-work", ignore_errors=True)
    fetched = sum(min(fetch_lengths(repo, i)) for i in range(2, len(trees) + 1))
    native = sum((repo / "targets/native" / f"{i}.7z").stat().st_size
                 for i in range(2, len(trees) + 1))
    return bench.Row(
        f"10. real binaries at {SLOW_RATE / 1e6:.0f} MB/s, {len(trees) - 1} updates",
        f"{ours:.1f}",
        f"script {theirs:.1f}",
        f"{ours / theirs:.2f}",
        "<= 0.4",
        ours <= 0.4 * theirs,
        f"downloaded: ours {bench.fmt_mb(fetched)} (deltas), script {bench.fmt_mb(native)} "
        "(LZMA2)",
    )
