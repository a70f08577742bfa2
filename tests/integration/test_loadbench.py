"""The load benchmark in its quick configuration: every section gives figures, nothing fails.

No speed is asserted (the machine may be busy with other tests); scripts/loadbench (the full
run) is where the figures are read. Asserted: wrk counted no error (no status the real check
did not get, no socket error, no timeout), and every download arrived whole and verified.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MISSING = [t for t in ("wrk", "nginx")
           if not shutil.which(t, path=f"{os.environ.get('PATH', '')}:/usr/sbin")]

pytestmark = [pytest.mark.posix_only,
              pytest.mark.skipif(bool(MISSING), reason=f"scripts/loadbench needs {MISSING}")]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split(" | ")]


def _number(text: str) -> float:
    return float(text.replace(",", "").split()[0])


def test_quick_loadbench_gives_every_figure_without_errors(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(ROOT / "scripts" / "loadbench"), "--quick", "--workdir", str(tmp_path / "lb")],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
        env={**os.environ, "OPUSI_NO_APT": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    rows = [_cells(line) for line in done.stdout.splitlines() if line.startswith("| ")]
    checks = {row[0]: row for row in rows if len(row) == 8 and row[1] == "50"}
    assert set(checks) == {"server alone", "server alone, `/license-check` only",
                           "nginx in front", "nginx in front, paced to 10,000 checks/s",
                           "nginx in front, every check a new license number",
                           "nginx in front, 2 license services, every check a new license number"}
    for label, row in checks.items():
        assert _number(row[2]) > 0, row  # requests/s
        if "license-check" not in label:
            assert _number(row[3]) > 0, row  # checks/s
            assert _number(row[5]) > 0, row  # p99 of a check
        p50, p99 = (_number(x) for x in row[4].split(" / "))
        assert 0 < p50 <= p99, row
        assert row[6] == "0", row  # errors
        assert "wrk" in row[7] and "all" in row[7], row
    two = checks["nginx in front, 2 license services, every check a new license number"][7]
    assert int(two.split("server 2 ")[1].split()[0]) > 0, two  # the second one did its share
    downloads = {row[0]: row for row in rows if len(row) == 8 and row[1] == "20"}
    assert set(downloads) == {"nginx in front", "server alone"}
    for row in downloads.values():
        assert _number(row[2]) > 50 and _number(row[4]) > 0, row  # MB in all, MB/s
        assert row[6] == "0", row  # failures
    goals = {row[0]: row for row in rows if len(row) == 4}
    assert goals["errors in the wrk runs"][2] == "0"
    assert any(label.startswith("nginx / server alone") for label in goals)
    assert "`GET /metadata/timestamp.json` -> 200" in done.stdout
    assert "load average" in done.stdout and "cores" in done.stdout
    for front in ("nginx", "nginx2"):
        assert not (tmp_path / "lb" / front / "access.log").exists()
