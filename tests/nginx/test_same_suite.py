"""The updater's own tests, run again with nginx in front (``--front nginx``): every test that
talks to the session's update server (``server_url``) now talks to Debian's nginx with the
shipped configuration, which serves metadata and packages from disk and asks the project's
server only for the license decision."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.nginx import nginx_path

pytestmark = [pytest.mark.posix_only,
              pytest.mark.skipif(nginx_path() is None, reason="nginx is not installed")]

ROOT = Path(__file__).resolve().parents[2]
#: Every module whose tests use the ``server_url`` fixture.
MODULES = ["test_update", "test_update_ini", "test_install_search", "test_proxy",
           "test_bootstrap", "test_language", "test_durability",
           "test_window"]


def _uses_server(module: Path) -> bool:
    """Whether a test or fixture of ``module`` takes ``server_url`` or the ``install`` fixture
    (which takes ``server_url``)."""
    tree = ast.parse(module.read_text("utf-8"))
    return any(arg.arg in ("server_url", "install")
               for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
               and (node.name.startswith("test_") or node.decorator_list)
               for arg in node.args.args)


def test_the_updater_tests_pass_against_nginx(tmp_path: Path) -> None:
    uses = {p.stem for p in (ROOT / "tests" / "integration").glob("test_*.py") if _uses_server(p)}
    assert uses == set(MODULES), f"MODULES should be {sorted(uses)}"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--front", "nginx",
         "--basetemp", str(tmp_path / "t"), *[f"tests/integration/{m}.py" for m in MODULES]],
        cwd=ROOT, capture_output=True, text=True, timeout=1200, check=False)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 90, summary
    log = (tmp_path / "t" / "nginx-front0" / "access.log").read_text()
    assert "GET /metadata/timestamp.json 200" in log and "GET /targets/" in log  # nginx served
    print(summary)
