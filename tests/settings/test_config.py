"""Settings: parsing, defaults and one readable line per bad setting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from maintenance_shim.settings.env import SettingsError
from maintenance_shim.settings.shim import Listener, load_settings, parse_eta, parse_listener

NOW = datetime(2026, 11, 22, 15, 0, tzinfo=UTC)


def test_defaults_with_no_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.listeners == [Listener("127.0.0.1", 8080, "", "page")]
    assert settings.languages == [
        "en", "ja", "zh_Hans", "zh_Hant", "ko", "es", "fr", "de", "pt_BR", "ru", "id", "vi", "th", "ar"
    ]
    # the admin listener: a Unix socket in the state directory (two shims never collide on a port)
    assert settings.admin_address is not None and settings.admin_address.path is not None
    assert settings.admin_address.path.name == "admin.sock" and settings.admin_address.default
    assert settings.supervise is True
    assert (settings.retry_after_min, settings.retry_after_max, settings.retry_after_unknown) == (5, 3600, 60)
    assert settings.json_paths == ["/api/"] and settings.cors_origins == [] and settings.admin_token is None


def test_an_explicit_environment_is_all_there_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing from os.environ leaks into load_settings(environ=...): every field keeps its default."""
    monkeypatch.chdir(tmp_path)
    defaults = load_settings(environ={}).model_dump()
    exported = {"MAINT_RETRY_AFTER_UNKNOWN": "7", "MAINT_LISTEN": "127.0.0.1:9=x", "MAINT_LANGUAGES": "ja",
                "MAINT_DEFAULT_LANGUAGE": "ja", "MAINT_ADMIN_LISTEN": "off", "MAINT_STALL_SECONDS": "9"}
    for name, value in exported.items():
        monkeypatch.setenv(name, value)
    assert load_settings(environ={}).model_dump() == defaults
    assert load_settings().retry_after_unknown == 7  # without `environ`, the process environment counts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", Listener("127.0.0.1", 8080, "", "page")),
        ("0.0.0.0:7860=studio", Listener("0.0.0.0", 7860, "studio", "page")),
        ("[::1]:8000=video:api", Listener("::1", 8000, "video", "api")),
        ("localhost:9000=Video API:api", Listener("localhost", 9000, "Video API", "api")),
    ],
)
def test_parse_listener(text: str, expected: Listener) -> None:
    assert parse_listener(text) == expected


@pytest.mark.parametrize("text", ["8080", ":8080", "host:0", "host:http", "h:1=<b>", "h:1=x:grpc", "a b:1"])
def test_parse_listener_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_listener(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45m", NOW + timedelta(minutes=45)),
        ("1h30m", NOW + timedelta(minutes=90)),
        ("900", NOW + timedelta(seconds=900)),
        ("90s", NOW + timedelta(seconds=90)),
        ("2026-11-22T15:30:00Z", NOW + timedelta(minutes=30)),
        ("2026-11-22T16:30:00+01:00", NOW + timedelta(minutes=30)),
    ],
)
def test_parse_eta(text: str, expected: datetime) -> None:
    assert parse_eta(text, NOW) == expected


def test_env_file_environment_and_messages(tmp_path: Path) -> None:
    env_file = tmp_path / "m.env"
    env_file.write_text(
        "# the studio box\nMAINT_ETA=45m\nexport MAINT_CORS_ORIGINS='https://a.example, https://b.example'\n"
        'MAINT_MESSAGE_JA="調整中です"\nMAINT_SWITCH=nginx\nOTHER=1\n'
    )
    settings = load_settings(env_file, environ={"MAINT_ETA": "10m"})
    assert settings.eta == "10m"  # the environment wins over the file
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.message_for("ja") == "調整中です"
    assert settings.message_for("en") is None


def test_every_bad_setting_is_named_on_its_own_line(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            environ={
                "MAINT_RETRY_AFTER_MIN": "0",
                "MAINT_STALL_SECONDS": "never",
                "MAINT_JSON_PATHS": "api/",
                "MAINT_ADMIN_TOKEN": "tooshort-secret",
            },
            env_file=None,
        )
    lines = caught.value.lines
    assert len(lines) == 4
    assert {line.split(":")[0] for line in lines} == {
        "MAINT_RETRY_AFTER_MIN", "MAINT_STALL_SECONDS", "MAINT_JSON_PATHS", "MAINT_ADMIN_TOKEN",
    }
    assert not any("tooshort-secret" in line for line in lines)


def test_missing_env_file_and_bad_lines(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.env", environ={})
    bad = tmp_path / "bad.env"
    bad.write_text("MAINT_ETA = 45m\n")
    with pytest.raises(SettingsError, match=r"bad.env:1: not a KEY=value line"):
        load_settings(bad, environ={})


def test_message_for_unknown_language_is_rejected() -> None:
    with pytest.raises(SettingsError, match="MAINT_MESSAGE_NB"):
        load_settings(environ={"MAINT_MESSAGE_NB": "Wartung"}, env_file=None)
