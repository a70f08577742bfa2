"""Unit tests of updater.core.report: format_error, run_command and the ArgumentParser."""

from __future__ import annotations

import io
from collections.abc import Sequence

import pytest

from updater.core.errors import OpusiError, PlanError, UsageError
from updater.core.report import ArgumentParser, format_error, run_command


def test_format_error_renders_every_part_on_its_own_line() -> None:
    error = PlanError("No build leads on.", safe="Nothing was changed.", hint="Call support.")
    assert format_error(error) == (
        "Error 21: no update path.\nNo build leads on.\nNothing was changed.\nCall support."
    )


@pytest.mark.parametrize(
    ("safe", "hint", "lines"),
    [("", "Call support.", ["Error 21: no update path.", "msg", "Call support."]),
     ("Kept.", "", ["Error 21: no update path.", "msg", "Kept."]),
     ("", "", ["Error 21: no update path.", "msg"])],
)
def test_format_error_leaves_out_empty_parts(safe: str, hint: str, lines: list[str]) -> None:
    assert format_error(PlanError("msg", safe=safe, hint=hint)).splitlines() == lines


def test_format_error_of_an_interrupt_and_a_bug() -> None:
    assert format_error(KeyboardInterrupt()) == "Error 130: interrupted."
    text = format_error(ValueError("bad value"))
    assert text.splitlines() == [
        "Error 70: internal error (ValueError: bad value).",
        "Please send the log file to the vendor's support.",
    ]


def test_run_command_returns_the_work_result_and_prints_nothing() -> None:
    seen: list[Sequence[str]] = []

    def work(argv: Sequence[str]) -> int:
        seen.append(argv)
        return 3

    stream = io.StringIO()
    assert run_command(work, ["--check", "x"], stream) == 3
    assert seen == [["--check", "x"]]
    assert stream.getvalue() == ""


@pytest.mark.parametrize(
    ("raised", "code", "first_line"),
    [(PlanError("No way.", hint="Call support."), 21, "Error 21: no update path."),
     (KeyboardInterrupt(), 130, "Error 130: interrupted."),
     (RuntimeError("boom"), 70, "Error 70: internal error (RuntimeError: boom).")],
)
def test_run_command_turns_errors_into_code_and_text(
    raised: BaseException, code: int, first_line: str
) -> None:
    def work(argv: Sequence[str]) -> int:
        raise raised

    stream = io.StringIO()
    assert run_command(work, [], stream) == code
    assert stream.getvalue() == format_error(raised) + "\n"
    assert stream.getvalue().splitlines()[0] == first_line


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="opusi-update")
    parser.add_argument("install")
    parser.add_argument("--keep", type=int, default=3)
    return parser


@pytest.mark.parametrize(
    ("argv", "text"),
    [([], "the following arguments are required: install"),
     (["C:/opus", "--bogus"], "unrecognized arguments: --bogus"),
     (["C:/opus", "--keep", "many"], "invalid int value: 'many'")],
)
def test_argument_errors_are_usage_errors(argv: list[str], text: str) -> None:
    with pytest.raises(UsageError) as raised:
        _parser().parse_args(argv)
    error = raised.value
    assert error.exit_code == 10
    assert error.message.startswith("opusi-update: ")
    assert text in error.message
    assert error.hint == "See 'opusi-update --help'."


def test_argument_error_through_run_command_exits_10() -> None:
    def work(argv: Sequence[str]) -> int:
        _parser().parse_args(argv)
        return 0

    stream = io.StringIO()
    assert run_command(work, ["--bogus"], stream) == 10
    lines = stream.getvalue().splitlines()
    assert lines[0] == "Error 10: wrong arguments."
    assert lines[-1] == "See 'opusi-update --help'."


def test_parser_exit_with_a_status_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="stopped early"):
        _parser().exit(2, "stopped early")
    with pytest.raises(UsageError, match="opusi-update: bad arguments"):
        _parser().exit(1)


def test_help_still_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        _parser().parse_args(["--help"])
    assert raised.value.code == 0
    assert "usage: opusi-update" in capsys.readouterr().out


def test_usage_error_is_an_opusi_error() -> None:
    assert issubclass(UsageError, OpusiError) and UsageError.exit_code == 10
