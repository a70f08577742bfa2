"""The README's exit-code table lists every code the product defines."""

from __future__ import annotations

import re
from pathlib import Path

from updater.core.errors import all_error_classes

README = Path(__file__).resolve().parents[2] / "README.md"


def test_exit_code_table_is_complete() -> None:
    text = README.read_text("utf-8")
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", text, re.MULTILINE)}
    defined = {cls.exit_code for cls in all_error_classes()}
    assert defined <= documented, sorted(defined - documented)
    assert "scripts/test" in text and "scripts/demo" in text
