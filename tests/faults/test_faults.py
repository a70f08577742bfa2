"""The fault suite in its smaller configuration, against the frozen updater."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Frozen
from tests.faults import CLASSES, Suite, run_classes, table

pytestmark = [pytest.mark.frozen, pytest.mark.posix_only]


@pytest.mark.parametrize("name", list(CLASSES))
def test_fault_class(
    name: str, frozen: Frozen, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = Suite(frozen.vendor, frozen.url, (str(frozen.updater),), tmp_path, quick=True)
    outcomes = run_classes(suite, [name])
    with capsys.disabled():
        print("\n" + table(outcomes))
    assert outcomes, f"{name}: no cases ran"
    failed = [f"{o.case}: {o.detail}" for o in outcomes if not o.passed]
    assert not failed, "\n".join(failed)
