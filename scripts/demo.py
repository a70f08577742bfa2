"""The end-to-end demo (run by scripts/demo): vendor, server, customer install, host, updater.

1. The vendor: a repository with keys, five builds of a realistic program tree, a license.
2. The frozen updater, built with the demo's root metadata, published for this platform.
3. The server on 127.0.0.1.
4. A customer's install at build 1147 with data in every customer-data folder.
5. The host app: `opusi-update check`, then `opusi-update start --admin --host-pid`, exits;
   the frozen updater waits for it, updates, and is waited for here.
6. A summary. The server is stopped; nothing is left running.

Safe to run twice: the vendor side (keys, repository, build) is kept in demo/ and reused; the
install is made afresh each time.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import treegen  # noqa: E402

from updater.core.paths import BACKUP_DIR, BUILD_FILE, CONFIG_FILE, EXCLUDED_DIRS, LOG_DIR  # noqa: E402
from updater.install.backup.store import BACKUP_NAME  # noqa: E402
from updater.publisher import repository  # noqa: E402
from updater.publisher.licenses import open_registry  # noqa: E402
from updater.shared import system  # noqa: E402

DEMO = ROOT / "demo"
BUILDS = [1147, 1148, 1150, 1152, 1155]
LICENSE = "DEMO-1147"
BIN = Path(sys.executable).parent


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def run(*cmd: str | Path, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], check=True, text=True, **kw)  # type: ignore[call-overload,no-any-return]


def vendor_side() -> tuple[Path, Path, Path]:
    repo, keys, db = (
        DEMO / "vendor" / "repo",
        DEMO / "vendor" / "keys",
        DEMO / "vendor" / "licenses.sqlite3",
    )
    if repo.exists() and (DEMO / "vendor" / "complete").exists():
        say(f"Vendor: reusing the demo repository {repo}")
        return repo, keys, db
    shutil.rmtree(DEMO / "vendor", ignore_errors=True)
    say("Vendor: generating five builds of a program tree and publishing them")
    trees = treegen.generate(DEMO / "vendor" / "trees", BUILDS)
    run(BIN / "opusi-repo", "init", "--repo", repo, "--keys", keys)
    for build in BUILDS:
        run(
            BIN / "opusi-repo",
            "publish",
            "--repo",
            repo,
            "--keys",
            keys,
            "--build",
            str(build),
            "--tree",
            trees[build],
        )
    run(BIN / "opusi-repo", "license", "add", LICENSE, "--db", db, "--note", "demo practice")
    (DEMO / "vendor" / "complete").touch()
    return repo, keys, db


def frozen_programs(repo: Path, keys: Path) -> Path:
    say("Building the frozen updater and bootstrap (PyInstaller; reused when unchanged)")
    dist = DEMO / "dist"
    run(
        ROOT / "scripts" / "build",
        "--trusted-root",
        repo / "metadata" / "1.root.json",
        "--out",
        dist,
    )
    exe = dist / system.executable_name("opusi-INSTALLUpdate")
    current = repository.load_state(repo).targets.signed.targets
    platform = system.platform_name()
    digest = hashlib.sha256(exe.read_bytes()).hexdigest()
    if not any(
        t.hashes["sha256"] == digest
        for n, t in current.items()
        if n.startswith(f"updater/{platform}/")
    ):
        run(
            BIN / "opusi-repo",
            "publish-updater",
            "--repo",
            repo,
            "--keys",
            keys,
            "--file",
            exe,
            "--platform",
            platform,
        )
    return dist


def start_server(repo: Path, db: Path) -> tuple[subprocess.Popen[str], str]:
    say("Server: opusi-repo serve on 127.0.0.1")
    proc = subprocess.Popen(
        [
            str(BIN / "opusi-repo"),
            "serve",
            "--repo",
            str(repo),
            "--db",
            str(db),
            "--bind",
            "127.0.0.1:0",
            "--timestamp-key",
            str(DEMO / "vendor/keys/timestamp.pem"),
        ],
        stdout=subprocess.PIPE,
        stderr=open(DEMO / "server.log", "w"),  # noqa: SIM115 - the server writes it while it runs
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r":(\d+)\s*$", line)
    if not match:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}; see {DEMO / 'server.log'}")
    url = f"http://127.0.0.1:{match.group(1)}"
    print(f"   {url}")
    return proc, url


def customer_install(url: str) -> Path:
    say("Customer: an install of build 1147 with data in every customer-data folder")
    install = DEMO / "customer" / "opus i"
    shutil.rmtree(DEMO / "customer", ignore_errors=True)
    shutil.copytree(DEMO / "vendor" / "trees" / "1147", install)
    for i, folder in enumerate(EXCLUDED_DIRS):
        path = install / folder / f"Praxisdaten {i}.dat"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(2000) + f"Patientendaten {i}".encode())
    (install / BUILD_FILE).write_text("1147\n")
    (install / CONFIG_FILE).write_text(
        f"[Update]\nserver = {url}\nlicense = {LICENSE}\n\n[Allgemein]\n52 = 1\n53 = 1\n"
    )
    return install


def data_hashes(install: Path) -> dict[str, str]:
    own = (
        "Database/SystemFiles/Backups",
        "Database/SystemFiles/Logs",
        "Database/SystemFiles/SecuMax2/UpdateFiles",
    )
    result = {}
    for folder in EXCLUDED_DIRS:
        if folder in own:
            continue
        for path in sorted((install / folder).rglob("*")):
            if path.is_file():
                result[path.relative_to(install).as_posix()] = hashlib.sha256(
                    path.read_bytes()
                ).hexdigest()
    return result


def play_host(install: Path, dist: Path) -> tuple[dict[str, object], float]:
    bootstrap = dist / system.executable_name("opusi-update")
    say("Host app: opusi-update check --at-startup")
    check = subprocess.run(
        [
            str(bootstrap),
            "check",
            "--install-dir",
            str(install),
            "--at-startup",
            "--min-build-startup",
            "1147",
        ],
        capture_output=True,
        text=True,
    )
    print("  ", check.stdout.strip() or check.stderr.strip())
    say(
        "Host app: the admin approves; opusi-update start --admin --host-pid <host>; "
        "the host exits"
    )
    host = subprocess.Popen(["sleep", "2"])
    started = time.monotonic()
    start = subprocess.run(
        [
            str(bootstrap),
            "start",
            "--install-dir",
            str(install),
            "--admin",
            "--host-pid",
            str(host.pid),
        ],
        capture_output=True,
        text=True,
    )
    print("  ", start.stdout.strip() or start.stderr.strip())
    if start.returncode != 0:
        raise SystemExit(f"opusi-update start failed with exit code {start.returncode}")
    info = json.loads(start.stdout)
    host.wait()
    print("   host exited; the updater takes over")
    if os.environ.get("DISPLAY"):
        print("   the updater shows its window on this display: close it when it is done")
    pid = int(info["pid"])
    while system.process_alive(pid):
        time.sleep(0.2)
    return info, time.monotonic() - started


def summary(install: Path, data_before: dict[str, str], seconds: float) -> int:
    say("Result")
    build = (install / BUILD_FILE).read_text().strip()
    history = (install / LOG_DIR / "update-history.log").read_text().strip().splitlines()
    backups = sorted(p for p in (install / BACKUP_DIR).glob("*.zip") if BACKUP_NAME.match(p.name))
    same = data_hashes(install) == data_before
    expected = {
        p.relative_to(DEMO / "vendor/trees/1155").as_posix(): hashlib.sha256(
            p.read_bytes()
        ).hexdigest()
        for p in (DEMO / "vendor/trees/1155").rglob("*")
        if p.is_file()
    }
    tree_ok = all(
        (install / p).is_file() and hashlib.sha256((install / p).read_bytes()).hexdigest() == h
        for p, h in expected.items()
    )
    print(f"   installed build now:      {build}")
    print(f"   update history:           {history[-1] if history else '-'}")
    print(f"   backup:                   {backups[-1].relative_to(install) if backups else '-'}")
    print(
        f"   program files = vendor's 1155 tree ({len(expected)} files): "
        f"{'yes' if tree_ok else 'NO'}"
    )
    print(f"   customer data unchanged ({len(data_before)} files): {'yes' if same else 'NO'}")
    print(f"   time from approval to done: {seconds:.1f} s")
    ok = build == "1155" and same and tree_ok
    if not os.environ.get("DISPLAY"):
        print("   the updater's window: there is no display here, so it ran in text mode (its "
              "output is in the download folder's updater-output.log); run on a desktop "
              "(DISPLAY set) it shows its window and waits for you to close it; "
              "LANG=de_DE.UTF-8 shows it in German; pictures: docs/screenshots/")
    print("\nDemo " + ("succeeded." if ok else "FAILED."))
    return 0 if ok else 1


def main() -> int:
    DEMO.mkdir(exist_ok=True)
    repo, keys, db = vendor_side()
    with open_registry(db) as registry:
        registry.add(LICENSE, entitled_until=None, note="demo practice")
    dist = frozen_programs(repo, keys)
    server, url = start_server(repo, db)
    try:
        install = customer_install(url)
        before = data_hashes(install)
        _, seconds = play_host(install, dist)
        return summary(install, before, seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
