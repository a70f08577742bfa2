"""The updater in German: chosen by --lang, update.ini or the system's language; the log in English.

The real updater (from source) against the project's server: the error a German admin sees
carries the vendor's own words ("Fehler 1: Lizenzproblem"), the summary is German, the log file
keeps English for the vendor's support, and JSON progress keeps its English "text" beside the
shown one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Vendor, make_install, run_logs
from tests.integration.test_update import run
from updater.core import i18n


@pytest.fixture(autouse=True)
def _english_afterwards(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)
    yield
    i18n.use("en")




def test_error_1_in_german_with_the_vendors_words(
        vendor: Vendor, server_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    install = make_install(tmp_path / "opusi", vendor.trees[1147], 1147, server_url,
                           license_number="")
    assert run(install, vendor, "--lang", "de") == 1
    err = capsys.readouterr().err
    assert err.startswith("Fehler 1: Lizenzproblem.\n"
                          "Lizenzproblem: es wurde keine Lizenznummer angegeben.\n"), err
    assert "Tragen Sie die Lizenznummer in der update.ini ein" in err
    assert "Error 1: license problem" in run_logs(install)  # the log stays English


def test_update_in_german_from_update_ini(vendor: Vendor, server_url: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    install = make_install(tmp_path / "opusi", vendor.trees[1147], 1147, server_url,
                           extra_ini={"language": "de"})
    assert run(install, vendor) == 0
    out = capsys.readouterr().out
    assert "Von Build 1147 auf 1155 aktualisiert" in out, out
    assert "Sicherung angelegt:" in out and "Protokoll:" in out
    assert "Updated from build 1147 to 1155" in run_logs(install)


def test_system_language_and_flag_wins(vendor: Vendor, server_url: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    install = make_install(tmp_path / "opusi", vendor.trees[1147], 1147, "http://127.0.0.1:9")
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    assert run(install, vendor) == 6
    err = capsys.readouterr().err
    assert err.startswith("Fehler 6: Konnekt zum Server ist fehlgeschlagen.\n"
                          "Der Update-Server 127.0.0.1 war nicht erreichbar"), err
    assert "Es wurde nichts geändert." in err
    assert run(install, vendor, "--lang", "en") == 6
    assert capsys.readouterr().err.startswith("Error 6: connection to the server failed.")


def test_json_progress_keeps_english_text_beside_the_shown_one(
        vendor: Vendor, server_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    install = make_install(tmp_path / "opusi", vendor.trees[1147], 1147, server_url)
    assert run(install, vendor, "--lang", "de", "--progress", "json") == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()
               if line.startswith("{")]
    done = [r for r in records if r.get("event") == "message"
            and r["text"].startswith("Updated from build 1147 to 1155")]
    assert done and done[0]["lang"] == "de", records
    assert done[0]["localized"].startswith("Von Build 1147 auf 1155 aktualisiert")


def test_help_and_usage_errors_in_german(capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """argparse's own words too ("usage:", "options", its errors) come from the catalog; the
    usage error is code 10 in the chosen language, with no English line before it."""
    from updater.bootstrap.cli import main as bootstrap_main
    from updater.install.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--lang", "de", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("Aufruf: opusi-INSTALLUpdate [-h]"), out
    for words in ("\nOptionen:\n", "diese Hilfe zeigen und beenden",
                  "die Version zeigen und beenden"):
        assert words in out, words
    assert main(["--lang", "de", "--progress", "x"]) == 10
    err = capsys.readouterr().err
    assert err == ("Fehler 10: falsche Aufrufparameter.\nopusi-INSTALLUpdate: Argument "
                   "--progress: ungültige Auswahl: 'x' (möglich: 'bar', 'json', 'none')\n"
                   "Siehe 'opusi-INSTALLUpdate --help'.\n"), err
    monkeypatch.setenv("LANG", "de_DE.UTF-8")  # the bootstrap speaks the system's language
    assert bootstrap_main(["check"]) == 10
    assert "folgende Argumente fehlen: --install-dir" in capsys.readouterr().err
    monkeypatch.delenv("LANG")
    assert main(["--lang", "en", "--bogus"]) == 10
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
