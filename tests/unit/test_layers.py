"""The house's import rules, checked: the core is pure, each program imports only what it may.

Two checks. Statically, every module of each folder is read (its ``import`` statements, at any
depth of the code) and held against the folder's rule. At run time, each frozen program's entry
point and each pure module is imported in a fresh interpreter, and what lands in
``sys.modules`` is held against the rule (this also sees what third-party packages import).
The figures are printed (``pytest -s``).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "updater"

#: What the modules of each folder may import from the project (besides their own folder).
ALLOWED = {
    "core": {"core"},
    "shared": {"core", "shared"},
    "install": {"core", "shared", "install"},
    "bootstrap": {"core", "shared", "bootstrap"},
    "publisher": {"core", "shared", "publisher"},
}
#: The server stack and the registry's database: the publisher's (the vendor's) code only.
SERVER_STACK = ("cheroot", "werkzeug", "sqlite3", "_sqlite3")
#: What the bootstrap never needs: it unpacks nothing and makes no backup.
NOT_IN_BOOTSTRAP = ("py7zr", "isal", "pyppmd", "pybcj", "multivolumefile", "inflate64")


def _imports(path: Path) -> set[str]:
    """Every module name ``path`` imports, absolute (``from . import x`` resolved)."""
    tree = ast.parse(path.read_text("utf-8"))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _folder_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "updater" and parts[1] in ALLOWED else None


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_every_module_keeps_its_folders_import_rule(folder: str) -> None:
    broken = []
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        for name in sorted(_imports(path)):
            other = _folder_of(name)
            if other is not None and other not in ALLOWED[folder]:
                broken.append(f"{path.relative_to(ROOT)} imports {name}")
            top = name.split(".")[0]
            if folder == "core" and top not in sys.stdlib_module_names and top not in (
                "updater", "__future__"
            ):
                broken.append(f"{path.relative_to(ROOT)} (core) imports {name}")
            if folder != "publisher" and top in SERVER_STACK:
                broken.append(f"{path.relative_to(ROOT)} imports the server stack: {name}")
    assert not broken, "\n".join(broken)


def _loaded_by(module: str) -> list[str]:
    """The modules a fresh interpreter has loaded after importing ``module``."""
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def _third_party(modules: list[str]) -> list[str]:
    tops = {m.split(".")[0] for m in modules}
    return sorted(t for t in tops if t not in sys.stdlib_module_names and t != "updater"
                  and not t.startswith("_"))


PURE = ["updater.core.plan", "updater.core.builds", "updater.core.errors", "updater.core.paths",
        "updater.core.manifest", "updater.core.protocol", "updater.core.install",
        "updater.core.report", "updater.bootstrap.policy"]


@pytest.mark.parametrize("module", PURE)
def test_pure_module_loads_no_third_party_package(module: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    loaded = _loaded_by(module)
    outside = [m for m in loaded if m.startswith("updater.") and _folder_of(m) not in (
        "core", None) and m != "updater.bootstrap.policy" and m != "updater.bootstrap"]
    with capsys.disabled():
        print(f"\n[layers] import {module}: {len(loaded)} modules, third-party: "
              f"{_third_party(loaded) or 'none'}")
    assert _third_party(loaded) == []
    assert outside == []


#: Each frozen program's entry point and what must never be loaded with it.
ENTRIES = {
    "opusi-INSTALLUpdate": ("updater.install.cli", ("updater.publisher", "updater.bootstrap"),
                            SERVER_STACK),
    "opusi-update": ("updater.bootstrap.cli", ("updater.publisher", "updater.install"),
                     (*SERVER_STACK, *NOT_IN_BOOTSTRAP)),
}


@pytest.mark.parametrize("program", sorted(ENTRIES))
def test_frozen_program_loads_only_what_it_may(program: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    entry, folders, packages = ENTRIES[program]
    loaded = _loaded_by(entry)
    with capsys.disabled():
        print(f"\n[layers] {program} ({entry}): {len(loaded)} modules, third-party: "
              f"{', '.join(_third_party(loaded))}")
    forbidden = [m for m in loaded if m.startswith(folders) or m.split(".")[0] in packages]
    assert forbidden == []


def test_the_spec_leaves_the_publisher_package_out_as_one_entry() -> None:
    spec = (ROOT / "build_spec" / "opusi.spec").read_text("utf-8")
    assert '"updater.publisher"' in spec
    assert "updater.publisher." not in spec  # one entry, not a list of its modules
