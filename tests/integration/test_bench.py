"""The benchmark in its quick configuration: it runs through and prints all ten rows.

No timing is asserted: on a loaded machine any figure may miss its goal; scripts/bench (the
full run) is where the figures are read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("7zz", "zip", "curl", "nginx")

pytestmark = [pytest.mark.posix_only, pytest.mark.frozen]


def _missing_tools() -> list[str]:
    return [t for t in TOOLS if not shutil.which(t, path=f"{os.environ.get('PATH', '')}:/usr/sbin")]


@pytest.mark.skipif(bool(_missing_tools()), reason=f"scripts/bench needs {', '.join(TOOLS)}")
def test_quick_bench_prints_every_row(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--workdir",
         str(tmp_path / "bench")],
        capture_output=True, text=True, timeout=1800, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("| step | ours (s) | native (s) | ratio ours/native | goal |")
    rows = [line for line in lines[2:] if line.startswith("| ")]
    assert [row.split(" | ")[0].removeprefix("| ")[:2] for row in rows] == [
        "1.",
        "2.",
        "3.",
        "4.",
        "5.",
        "6.",
        "7.",
        "8.",
        "9.",
        "10",
    ]
    for row in rows:
        assert row.count(" | ") == 7, row
    assert "load average" in done.stdout and "cores" in done.stdout
