"""One settings schema for the shim and the scripts: bash sees exactly what Python validated."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from maintenance_shim.settings.env import SettingsError, read_env_file
from maintenance_shim.settings.proxies import registry
from maintenance_shim.settings.scripts import ScriptSettings, load_script_settings
from maintenance_shim.settings.shim import load_settings
from tests.support import ROOT, clean_env
from tests.support.scripts import run_script

SCRIPTS = ROOT / "scripts"
SHIM_CMD = str(Path(sys.executable).with_name("maintenance-shim"))

# Values that bash sourcing used to mangle: quotes, `$`, command substitutions, backslashes, unicode.
TRICKY_ENV = """\
# comment lines and blank lines are skipped

MAINT_SWITCH=nginx
export MAINT_SERVICES='studio video:api'
MAINT_LISTEN=127.0.0.1:8080=studio,127.0.0.1:8081=video:api
MAINT_SERVICE_studio_INCLUDE=/etc/nginx/maintenance-shim/studio.upstream.conf
MAINT_SERVICE_video_INCLUDE="/etc/nginx/with space/video.conf"
MAINT_SERVICE_studio_STOP='kill $(cat /run/studio.pid) && echo "stopped $USER"'
MAINT_SERVICE_video_STOP="systemctl stop video && echo \\"it's \\$HOME\\""
MAINT_SERVICE_video_START=it\\'s\\ started
MAINT_SERVICE_studio_HEALTH_URL=http://127.0.0.1:7860/health?x=1&y=$2
MAINT_NGINX_ARGS='-p /srv/nginx -c nginx.conf'
MAINT_MESSAGE='Wir trainieren: bis gleich — 学習中 $5'
MAINT_SETTLE_SECONDS=0.5
MAINT_LOCK_TIMEOUT=
MAINT_VERIFY_PATH=/health
"""
EXPECTED = {
    "MAINT_SERVICES": "studio video:api",
    "MAINT_SERVICE_video_INCLUDE": "/etc/nginx/with space/video.conf",
    "MAINT_SERVICE_studio_STOP": 'kill $(cat /run/studio.pid) && echo "stopped $USER"',
    "MAINT_SERVICE_video_STOP": "systemctl stop video && echo \"it's $HOME\"",
    "MAINT_SERVICE_video_START": "it's started",
    "MAINT_SERVICE_studio_HEALTH_URL": "http://127.0.0.1:7860/health?x=1&y=$2",
    "MAINT_NGINX_ARGS": "-p /srv/nginx -c nginx.conf",
    "MAINT_NGINX_TEST_CMD": "nginx -p /srv/nginx -c nginx.conf -t -q",
    "MAINT_SETTLE_SECONDS": "0.5",
    "MAINT_LOCK_TIMEOUT": "10",
}


def _bash_view(env_file: Path, tmp_path: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Every MAINT_* variable as the scripts see it after load_env, NUL-separated so nothing is lost."""
    snippet = f"""
set -Eeuo pipefail
HERE={SCRIPTS}
. "$HERE/lib.sh"
ENV_FILE_ARG={env_file}
load_env
for name in $(compgen -v MAINT_); do printf '%s=%s\\0' "$name" "${{!name}}"; done
printf 'SERVICES=%s\\0' "${{SERVICES[*]}}"
printf 'SERVICE_TAG_video=%s\\0' "${{SERVICE_TAG[video]}}"
"""
    env = clean_env({"MAINT_SHIM_CMD": SHIM_CMD, "XDG_RUNTIME_DIR": str(tmp_path), **(extra or {})})
    done = subprocess.run(["bash", "-c", snippet], env=env, cwd=tmp_path, capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return dict(item.split("=", 1) for item in done.stdout.decode().split("\0") if item)


@pytest.mark.e2e
def test_bash_and_python_see_the_same_value_for_every_setting(tmp_path: Path) -> None:
    env_file = tmp_path / "maintenance.env"
    env_file.write_text(TRICKY_ENV, encoding="utf-8")
    environ = {"MAINT_SHIM_CMD": SHIM_CMD, "XDG_RUNTIME_DIR": str(tmp_path)}
    shim, scripts, resolved = load_script_settings(env_file, environ)
    bash = _bash_view(env_file, tmp_path)
    for name, value in EXPECTED.items():
        assert resolved[name] == value, name
    for name, value in resolved.items():  # every script setting, defaults and derived values included
        assert bash.get(name) == value, (name, bash.get(name), value)
    assert bash["MAINT_LISTEN"] == ",".join(shim.listen)
    assert bash["SERVICES"] == "studio video" and bash["SERVICE_TAG_video"] == "video:api"
    assert bash["MAINT_ENV_FILE"] == str(env_file.resolve())
    assert shim.message == "Wir trainieren: bis gleich — 学習中 $5"  # the shim reads the same file the same way
    assert scripts.switch == "nginx"
    # every field of the schema reaches bash
    internal = {"service_keys", "proxy_settings"}
    assert {f"MAINT_{name.upper()}" for name in ScriptSettings.model_fields if name not in internal} <= set(bash)
    for proxy in registry().values():  # and every proxy's own
        assert {f"MAINT_{name.upper()}" for name in proxy.settings.model_fields} <= set(bash)


@pytest.mark.e2e
def test_the_environment_wins_over_the_file_in_both(tmp_path: Path) -> None:
    env_file = tmp_path / "maintenance.env"
    env_file.write_text(TRICKY_ENV, encoding="utf-8")
    extra = {"MAINT_LOCK_TIMEOUT": "33", "MAINT_SERVICE_video_START": "from the environment $X"}
    bash = _bash_view(env_file, tmp_path, extra)
    _, _, resolved = load_script_settings(env_file, {"XDG_RUNTIME_DIR": str(tmp_path), **extra})
    assert bash["MAINT_LOCK_TIMEOUT"] == resolved["MAINT_LOCK_TIMEOUT"] == "33"
    assert bash["MAINT_SERVICE_video_START"] == resolved["MAINT_SERVICE_video_START"] == "from the environment $X"


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("MAINT_SWITCH=nginx # the proxy", "quote it"),
        ("MAINT_SERVICE_a_STOP=kill $(cat /run/a.pid)", "quote it"),
        ("MAINT_MESSAGE='no end", "No closing quotation"),
        ("not a setting", "not a KEY=value line"),
    ],
)
def test_a_malformed_env_file_line_is_named(tmp_path: Path, line: str, words: str) -> None:
    env_file = tmp_path / "maintenance.env"
    env_file.write_text(f"MAINT_LOCK_TIMEOUT=5\n{line}\n")
    with pytest.raises(SettingsError) as raised:
        read_env_file(env_file)
    assert raised.value.lines[0].startswith(f"{env_file}:2") and words in raised.value.lines[0]


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("MAINT_SWITCH=apache", "MAINT_SWITCH"),
        ("MAINT_LOCK_TIMEOUT=soon", "MAINT_LOCK_TIMEOUT"),
        ("MAINT_SHIM_NICE=42", "MAINT_SHIM_NICE"),
        ("MAINT_SERVICES='studio video:grpc'", "MAINT_SERVICES"),
        ("MAINT_SERVICE_studio_HEALTH_URL=localhost:7860", "MAINT_SERVICE_studio_HEALTH_URL"),
        ("MAINT_SERVICE_studio_HEALTHURL=http://x", "MAINT_SERVICE_studio_HEALTHURL"),
        ("MAINT_SERVICE_studio_LISTEN=99999", "MAINT_SERVICE_studio_LISTEN"),
        ("MAINT_SERVICE_vidoe_HEALTH_URL=http://127.0.0.1:7861/healthz", "MAINT_SERVICE_vidoe_HEALTH_URL"),
        ("MAINT_VERIFY_PATH=health", "MAINT_VERIFY_PATH"),
    ],
)
@pytest.mark.e2e
def test_check_names_a_bad_script_setting_with_exit_2(tmp_path: Path, line: str, named: str) -> None:
    env_file = tmp_path / "maintenance.env"
    env_file.write_text(f"MAINT_SWITCH=port\nMAINT_SERVICES=studio\nMAINT_SERVICE_studio_LISTEN=127.0.0.1:7860\n{line}\n")
    done = subprocess.run(
        [sys.executable, "-m", "maintenance_shim", "check", "--env-file", str(env_file)],
        env=clean_env(), cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"maintenance-shim: {named}: ") or f"maintenance-shim: {named} " in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.e2e
def test_the_scripts_refuse_a_bad_setting_with_pythons_line(tmp_path: Path) -> None:
    env_file = tmp_path / "maintenance.env"
    env_file.write_text("MAINT_SWITCH=port\nMAINT_SERVICES=studio\nMAINT_LOCK_TIMEOUT=soon\n")
    done = run_script(
        [str(SCRIPTS / "start_maintenance.sh"), "--env-file", str(env_file)],
        env=clean_env({"MAINT_SHIM_CMD": SHIM_CMD, "XDG_RUNTIME_DIR": str(tmp_path)}), cwd=tmp_path,
        timeout=30, check=False,
    )
    assert done.returncode != 0
    assert "MAINT_LOCK_TIMEOUT: Input should be a valid integer" in done.stderr
    assert "MAINT_SERVICE_studio_LISTEN is not set" not in done.stderr or "LISTEN" in done.stderr


def test_no_settings_parser_is_left_in_the_scripts() -> None:
    """The scripts take resolved values; they never source the env file or spell out defaults."""
    for path in [*SCRIPTS.glob("*.sh"), *SCRIPTS.glob("proxy/*.sh")]:
        code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        assert ':=' not in code.replace("${MAINT_VENV:=", "").replace("${MAINT_TEST_VENV:=", ""), path
        assert "set -a" not in code, path  # the env file is never sourced


def test_load_settings_with_an_explicit_environment_ignores_os_environ(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAINT_RETRY_AFTER_UNKNOWN", "7")
    assert load_settings(environ={}).retry_after_unknown == 60
    monkeypatch.setenv("MAINT_LOCK_TIMEOUT", "77")
    _, _, resolved = load_script_settings(environ={"XDG_RUNTIME_DIR": str(tmp_path)})
    assert resolved["MAINT_LOCK_TIMEOUT"] == "10"
    assert os.environ["MAINT_LOCK_TIMEOUT"] == "77"


def test_every_setting_the_scripts_read_is_in_the_schema_and_the_reference() -> None:
    """The names the scripts use are schema fields (or read before the settings); docs/settings.md and
    deploy/maintenance.env.example are what the schema generates (python -m tools.settings_doc)."""
    from maintenance_shim.settings.scripts import SERVICE_KEYS
    from maintenance_shim.settings.shim import Settings
    from tools.settings_doc import env_example, markdown, missing_entries

    assert missing_entries() == []
    docs = (ROOT / "docs" / "settings.md").read_text()
    assert docs == markdown(), "docs/settings.md is stale: python -m tools.settings_doc --write"
    assert (ROOT / "deploy" / "maintenance.env.example").read_text() == env_example()
    fields = {f"MAINT_{name.upper()}" for name in (*Settings.model_fields, *ScriptSettings.model_fields)}
    fields |= {f"MAINT_{name.upper()}" for proxy in registry().values() for name in proxy.settings.model_fields}
    bootstrap = {"MAINT_ENV_FILE", "MAINT_VENV", "MAINT_TEST_VENV", "MAINT_SERVICE"}
    bootstrap |= {"MAINT_NODE"}  # not read: the scripts set it for the hooks and CMD of one node (--node)
    for path in [*SCRIPTS.glob("*.sh"), *SCRIPTS.glob("proxy/*.sh")]:
        code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        names = set(re.findall(r"\b(MAINT_[A-Z][A-Z_]*[A-Z])\b", code))
        assert names - fields - bootstrap == set(), (path.name, names - fields - bootstrap)
        keys = set(re.findall(r'svc "\$[0-9a-z]+" ([A-Z_]+)', code))
        assert keys <= set(SERVICE_KEYS), (path.name, keys - set(SERVICE_KEYS))
        for name in names & fields:
            assert f"`{name}`" in docs, (path.name, name)
    for key in SERVICE_KEYS:
        assert f"`_{key}`" in docs


def test_the_generated_example_is_a_valid_env_file(tmp_path: Path) -> None:
    """Commented out, it means the defaults; its example block, uncommented, passes `check`."""
    from tools.settings_doc import env_example

    example = env_example()
    assert load_script_settings(_write(tmp_path / "a.env", example), {"XDG_RUNTIME_DIR": str(tmp_path)})
    block = example.split("# ==== An example")[1].split("\n\n")[0]
    lines = [line[1:] for line in block.splitlines()[1:] if line.startswith("#MAINT_")]
    shim, scripts, _ = load_script_settings(_write(tmp_path / "b.env", "\n".join(lines) + "\n"),
                                            {"XDG_RUNTIME_DIR": str(tmp_path)})
    assert scripts.switch == "nginx" and [spec.name for spec in scripts.service_specs] == ["studio", "video"]
    assert shim.display_names == {"studio": {"": "Image Studio"}}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
