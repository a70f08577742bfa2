# Sourced by the scripts: makes .venv (once) and installs the project into it.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "setting up $VENV ..." >&2
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
fi
stamp="$VENV/.opusi-installed"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)-${OPUSI_EXTRAS:-server,test}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "installing opusi-updater[${OPUSI_EXTRAS:-server,test}] into $VENV ..." >&2
    "$VENV/bin/python" -m pip install -q -e "$ROOT[${OPUSI_EXTRAS:-server,test}]" >&2
    echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
# The message catalogs: .po -> .mo where stale (build_spec/catalogs.py; quick when nothing to do).
"$VENV/bin/python" "$ROOT/build_spec/catalogs.py" compile
