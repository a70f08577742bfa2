"""update.ini read as Windows reads INI files: any case, UTF-8/16 or ANSI, misplaced named."""

from __future__ import annotations

import codecs

import pytest

from updater.core.inifile import decode_ini, parse_update_ini

INI = """; opus i Internet-Update
[update]
Server = https://updates.example/opusi
LICENSE = 12345-ABC
proxy = http://praxis:Grüße-ß@proxy.praxis.local:3128

[ALLGEMEIN]
52 = 1
53=0
"""


@pytest.mark.parametrize("encoding,data", [
    ("utf-8", INI.encode("utf-8")),
    ("utf-8-sig", codecs.BOM_UTF8 + INI.encode("utf-8")),
    ("utf-16", INI.encode("utf-16")),  # with its byte-order mark, as Notepad writes "Unicode"
    ("utf-16", codecs.BOM_UTF16_BE + INI.encode("utf-16-be")),
    ("cp1252", INI.replace("\n", "\r\n").encode("cp1252")),  # "ANSI"
])
def test_every_encoding_windows_reads(encoding: str, data: bytes) -> None:
    decoded = decode_ini(data)
    assert decoded.encoding == encoding
    settings = parse_update_ini(decoded.text, "update.ini")
    assert settings.server_url == "https://updates.example/opusi"
    assert settings.license_number == "12345-ABC"
    assert settings.proxy_url == "http://praxis:Grüße-ß@proxy.praxis.local:3128"
    assert settings.option_52 and not settings.option_53
    assert settings.warnings == ()


def test_cp1252_bytes_windows_leaves_unassigned_are_kept() -> None:
    text = decode_ini(b"[Update]\nlicense = A\x81B\x9dC\xe4").text
    assert text == "[Update]\nlicense = A\x81B\x9dCä"


def test_sections_of_one_name_in_two_spellings_are_one() -> None:
    settings = parse_update_ini("[Update]\nserver = https://a.example\n[UPDATE]\nlicense = 7\n",
                                "u.ini")
    assert (settings.server_url, settings.license_number) == ("https://a.example", "7")


def test_a_license_in_the_wrong_section_is_named_not_lost() -> None:
    settings = parse_update_ini("[Allgemein]\nlicense = 12345-ABC\n52 = 1\n", "C:\\u.ini")
    assert settings.license_number is None
    assert settings.warnings == (
        "C:\\u.ini: 'license' stands [Allgemein], where the updater does not read it; "
        "it belongs in [Update].",)


def test_values_before_any_section_and_in_unknown_sections_are_named() -> None:
    text = ("license = 1\n[Updates]\nserver = https://x.example\n"
            "[Update]\nlizenz = 2\n52 = 1\n[Sonstiges]\nfarbe = blau\n")
    settings = parse_update_ini(text, "u.ini")
    assert settings.warnings == (
        "u.ini: 'license' stands before the first section, where the updater does not read it; "
        "it belongs in [Update].",
        "u.ini: 'server' stands [Updates], where the updater does not read it; "
        "it belongs in [Update].",
        "u.ini: the key 'lizenz' in [Update] is not one the updater reads (it reads server, "
        "license, proxy, keep_backups, host_wait_seconds, language, channel, allow_http).",
        "u.ini: '52' stands [Update], where the updater does not read it; "
        "it belongs in [Allgemein].",
    )


def test_opus_i_keys_of_its_own_section_are_not_warned_about() -> None:
    assert parse_update_ini("[Allgemein]\n52 = 1\n17 = 3\nsprache = de\n", "u.ini").warnings == ()


def test_language_setting() -> None:
    assert parse_update_ini("[Update]\nlanguage = DE\n", "u.ini").language == "de"
    assert parse_update_ini("", "u.ini").language is None


@pytest.mark.parametrize("text,message", [
    ("[Update]\nlicense = 1\nthis line is no setting\n", "line 3: this line is no setting"),
    ("[Update]\nkeep_backups = drei\n", "invalid literal for int()"),
])
def test_syntax_errors_name_the_file_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_update_ini(text, "u.ini")
