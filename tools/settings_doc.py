"""The settings reference, generated from the schema: docs/settings.md and deploy/maintenance.env.example.

    python -m tools.settings_doc          # check that both files are current (exit 1 if not)
    python -m tools.settings_doc --write  # rewrite them

Every field of `Settings` (app/settings/shim.py) and `ScriptSettings` (app/settings/scripts.py) is listed here once,
with its meaning (a progress source's and a proxy's: their modules' field descriptions);
tests/settings/test_settings.py fails when a field has no entry or a file has drifted.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from maintenance_shim.settings.proxies import registry
from maintenance_shim.settings.scripts import SERVICE_KEYS, ScriptSettings
from maintenance_shim.settings.shim import Settings
from maintenance_shim.settings.sources import registry as source_registry

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "settings.md"
EXAMPLE = ROOT / "deploy" / "maintenance.env.example"

# The shim's settings: (section, [(field, meaning)]); the progress sources' follow `eta` (shim_sections).
SHIM: list[tuple[str, list[tuple[str, str]]]] = [
    ("Where it listens and what it answers", [
        ("listen", "comma list of `HOST:PORT[=SERVICE[:page|api|openai]]`, one per replaced service "
                   "(`--listen` replaces it); the kind sets the default format and the JSON shape"),
        ("cors_origins", "comma list of allowed browser origins (`https://studio.example.com`, or `*`)"),
        ("json_paths", "path prefixes that always get JSON (API routes)"),
        ("health_paths", "the replaced services' health paths, answered 200 so proxies keep the shim"),
        ("message", "the operator's message, replacing the catalog's (per language: `MAINT_MESSAGE_<LANG>`, "
                    "below); the ETA sentence is still added"),
        ("sdk_retry_max_seconds", "a 503 says `x-should-retry: true` while the ETA is at most this many seconds "
                                  "away, else (and while it is unknown) `false`, so SDK retry loops fail at once "
                                  "with the message"),
        ("reason_phrase", "the 503's status line says when, in short ASCII English (`503 Service Unavailable: "
                          "video back in about 45 minutes (15:30 UTC)`), which requests, httpx, aiohttp and wget "
                          "show in their errors; `off`: the stock `Service Unavailable` ([http.md](http.md))"),
        ("retry_after_min", "lower clamp for `Retry-After`"),
        ("retry_after_max", "upper clamp for `Retry-After` (these three: at most a year)"),
        ("retry_after_unknown", "`Retry-After` while the ETA is unknown"),
    ]),
    ("Languages", [
        ("languages", "offered locales, each with a catalog in `app/locales/` (one without stops start-up, as "
                      "`check` does), in the switcher's order ([translations.md](translations.md))"),
        ("default_language", "fallback locale"),
        ("lang_cookie", "cookie holding the user's language (reuse the real site's)"),
    ]),
    ("Progress and ETA", [
        ("eta", "static ETA: a duration from shim start (`45m`, `1h30m`, `2h`, `90s`, or `900` seconds; every "
                "unit written: `1h30` is an error, write `1h30m`) or an ISO-8601 time (no zone = local time); in "
                "the future and at most 365 days ahead"),
        ("resume_seconds", "time from the last training step until the services answer again (save + reload), "
                           "until run history has taught it; unset, a first run uses its longest checkpoint "
                           "save so far plus the scripts' measured time to bring the services back "
                           "(`startup.json` in the state dir; else this run's switch in), each 0 until known "
                           "(the default below applies only where there is no state dir)"),
        ("stall_seconds", "no progress for this long means `stalled` (at most a week)"),
        ("state_dir", "the state dir (the scripts export it to the shim they start): the shim follows the run "
                      "events there and the run history teaches its ETA; the scripts' default is below"),
    ]),
    ("The admin listener", [
        ("admin_listen", "the only listener serving the progress push, metrics and the API docs (the public "
                         "ones answer 404 there): `HOST:PORT`, `unix:PATH` (mode 0660), or `off`; a port of its "
                         "own, not one of `MAINT_LISTEN`. Unset: the socket `admin.sock` in the state dir "
                         "(`MAINT_STATE_DIR`, else the scripts' default), so shims with their own state dirs "
                         "never collide; push to it with `MAINT_PUSH_URL=unix:PATH`"),
        ("admin_token", "bearer token for `PUT /_maintenance/progress` (16+ characters; `openssl rand -hex 32`); "
                        "unset disables it"),
    ]),
    ("The operator's brand", [
        ("logo", "an SVG or PNG file (a regular file of at most 6 KiB, checked before it is read), shown on "
                 "the page as an image"),
        ("logo_alt", "the logo's text for people who cannot see it (needed with a logo)"),
        ("accent_color", "`#rrggbb` for the badge, the progress bar and the links on the light page; at least "
                         "4.5:1 against white"),
        ("accent_color_dark", "the same on the dark page; at least 4.5:1 against `#181c23`"),
        ("template_dir", "a directory whose `page.html`, `page.css` or `page.js` replace the built-in ones "
                         "(`{% extends 'base/page.html' %}` reaches the built-in page); rendered once per "
                         "language at start (within 10 s in all, or start-up stops), inline CSS and JS hashed "
                         "into the CSP. Sandboxed (Jinja2's `SandboxedEnvironment`): a template reaches the "
                         "values it is given and no Python beyond; each file at most 256 KiB"),
        ("timezone", "IANA zone of server-rendered times (`Europe/Berlin`); the page's script shows the viewer's "
                     "own zone"),
    ]),
    ("Limits where it faces the internet", [
        ("max_header_bytes", "bytes of request line and header fields one request may send (nginx's 32 KiB); "
                             "past it 431 (414 for a URL that takes most of it), and the connection is closed"),
        ("max_headers", "header fields per request (Apache's 100); past it 431"),
        ("header_timeout", "seconds a request's head may take to arrive, from its first byte (from the "
                           "connection's start for the first request): 408, or a plain close when nothing was "
                           "sent; also bounds a body a `/_maintenance/` endpoint waits for"),
        ("max_connections", "open connections per process; past it the oldest idle ones are closed to make "
                            "room, and only if none is idle are new ones refused; both are logged. Lowered at "
                            "start to fit the file-descriptor limit, whose soft value the shim raises to the "
                            "hard one (`LimitNOFILE=65536` in the systemd unit)"),
        ("bind_retry_seconds", "keep retrying a listener's address that is in use for this long (every 10 ms); "
                               "the scripts' port mode passes its own value (below)"),
        ("supervise", "serve from a child process that a parent holding the sockets replaces at once if it "
                      "dies; `false` serves in one process ([switching.md](switching.md))"),
    ]),
    ("Logs, metrics, notifications", [
        ("log_level", "`debug`, `info`, `warning` or `error`"),
        ("log_format", "`text`, or `json`: one JSON object a line, for the shim and the scripts"),
        ("metrics", "`false` drops the request counters, `/_maintenance/metrics` and the run summary "
                    "([observability.md](observability.md))"),
        ("access_log", "log answered requests (sampled)"),
        ("access_log_sample", "the share of answered requests the access log keeps"),
        ("notify_urls", "Apprise URLs (`pip install 'maintenance-shim[notify]'`) told about maintenance start, "
                        "stalled, overdue, training finished, services back, a failed or rolled-back switch"),
        ("notify_language", "the notifications' language (default `MAINT_DEFAULT_LANGUAGE`)"),
    ]),
]
PATTERNS = [
    ("`MAINT_MESSAGE_<LANG>`", "the operator's message in one language (`MAINT_MESSAGE_JA`)", "unset"),
    ("`MAINT_SERVICE_<tag>_DISPLAY_NAME`", "the name people see for the service tagged `<tag>` in `MAINT_LISTEN` "
     "(the tag stays the id in JSON)", "the tag"),
    ("`MAINT_SERVICE_<tag>_DISPLAY_NAME_<LANG>`", "the same in one language (`..._DISPLAY_NAME_JA`)",
     "`..._DISPLAY_NAME`"),
]
# The scripts' settings: (section, [field]); their meanings are the fields' descriptions.
SCRIPTS: list[tuple[str, list[str]]] = [
    ("Switching", ["switch", "services", "verify_path", "settle_seconds", "switch_timeout"]),
    ("The shim the scripts run", ["shim_cmd", "shim_managed", "shim_nice", "shim_log", "shim_start_timeout",
                                  "shim_stop_timeout"]),
    ("Hooks, locks and waits", ["lock_timeout", "drain_timeout", "stop_timeout", "start_timeout", "health_timeout",
                                "bind_retry_seconds", "state_dir"]),
    ("The GPU check (with_maintenance.sh)", ["gpu_free_timeout", "gpu_free_mib"]),
]
# Each proxy's own settings follow, a section each, from its module (app/settings/proxies/).
GATHERED = {"messages", "display_names", "service_keys", "proxy_settings"}  # not one variable each
SCRIPT_DEFAULTS = {  # defaults that depend on the machine or on other settings
    "shim_nice": "`-5` as root, else `0`",
    "bind_retry_seconds": "`10`",
    "state_dir": "`/run/maintenance-shim` as root, else `$XDG_RUNTIME_DIR/maintenance-shim`, else "
                 "`/tmp/maintenance-shim-$UID`",
    "shim_log": "`$MAINT_STATE_DIR/shim.log`",
}


def shim_sections() -> list[tuple[str, list[tuple[str, str]]]]:
    """SHIM with each progress source's setting (app/settings/sources/) after `eta`, its meaning its description."""
    sources = [(name, Settings.model_fields[name].description or "") for name in source_registry()]
    return [
        (section, [item for row in rows for item in ([row, *sources] if row[0] == "eta" else [row])])
        for section, rows in SHIM
    ]


def script_sections() -> list[tuple[str, list[tuple[str, FieldInfo, str]]]]:
    """The scripts' settings by section: (field, its schema, its default in words or ""), the proxies' last."""
    sections = [
        (section, [(field, ScriptSettings.model_fields[field], SCRIPT_DEFAULTS.get(field, "")) for field in fields])
        for section, fields in SCRIPTS
    ]
    for proxy in registry().values():
        rows = [(field, info, proxy.defaults_doc.get(field, "")) for field, info in proxy.settings.model_fields.items()]
        sections.append((proxy.title, rows))
    return sections


def _default(info: FieldInfo) -> Any:
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    return None if info.default is PydanticUndefined else info.default


def _value(value: Any) -> str:
    """A default as it is written in the env file."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _shown(value: Any) -> str:
    text = _value(value)
    return f"`{text}`" if text else "unset"


def _name(field: str) -> str:
    return f"MAINT_{field.upper()}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def missing_entries() -> list[str]:
    """Fields of either schema that this reference does not list (or lists but do not exist)."""
    listed = {field for _, rows in shim_sections() for field, _ in rows}
    scripts = {field for _, fields in SCRIPTS for field in fields}
    out = [f"Settings.{f}" for f in sorted(set(Settings.model_fields) - GATHERED - listed)]
    out += [f"ScriptSettings.{f}" for f in sorted(set(ScriptSettings.model_fields) - GATHERED - scripts)]
    out += [f"not a field: {f}" for f in sorted(listed - set(Settings.model_fields))]
    out += [f"not a field: {f}" for f in sorted(scripts - set(ScriptSettings.model_fields))]
    return out


def markdown() -> str:
    """docs/settings.md."""
    lines = [
        "# Settings",
        "",
        "<!-- Generated by `python -m tools.settings_doc --write` from the schema (app/settings/shim.py,",
        "app/settings/scripts.py); tests/settings/test_settings.py fails when this page drifts. -->",
        "",
        "Every setting is an environment variable with the prefix `MAINT_`, or the same `KEY=value` line in an",
        "env file (`--env-file`, else `$MAINT_ENV_FILE` for the scripts, else `./maintenance.env` when present).",
        "The environment wins over the file. One schema validates the shim's settings and the scripts':",
        "`maintenance-shim check` checks all of them, and a bad value stops start-up with exit code 2 and one",
        "line naming the setting. The scripts take the resolved values from `maintenance-shim env --shell`;",
        "`maintenance-shim env` prints them.",
        "",
        "**The env file's one rule** (the shim and the scripts read it the same way): `KEY=value` lines; blank",
        "lines and lines starting with `#` are skipped; `export ` in front is allowed. A value is quoted as in",
        "the shell (`'...'`, `\"...\"`, backslashes) but never expanded: `$HOME` and `$(cmd)` stay as written",
        "(a hook command expands them when it runs). A value with blanks must be quoted, and a comment goes on",
        "a line of its own.",
        "",
        "## The shim",
        "",
    ]
    for section, rows in shim_sections():
        lines += [f"### {section}", "", "| setting | meaning | default |", "|---|---|---|"]
        for field, meaning in rows:
            info = Settings.model_fields[field]
            lines.append(f"| `{_name(field)}` | {_cell(meaning)} | {_cell(_shown(_default(info)))} |")
        lines.append("")
    lines += ["### Per language and per service", "", "| setting | meaning | default |", "|---|---|---|"]
    lines += [f"| {_cell(name)} | {_cell(meaning)} | {default} |" for name, meaning, default in PATTERNS]
    lines += ["", "## The switching scripts", ""]
    for section, rows in script_sections():
        lines += [f"### {section}", "", "| setting | meaning | default |", "|---|---|---|"]
        for field, info, words in rows:
            default = words or _shown(_default(info))
            lines.append(f"| `{_name(field)}` | {_cell(info.description or '')} | {_cell(default)} |")
        lines.append("")
    lines += [
        "### Per service (`MAINT_SERVICE_<name>_<KEY>`, `<name>` from `MAINT_SERVICES`)",
        "",
        "| key | meaning |",
        "|---|---|",
    ]
    lines += [f"| `_{key}` | {_cell(meaning)} |" for key, meaning in SERVICE_KEYS.items()]
    lines += [
        "",
        "A key that is not one of these (nor `DISPLAY_NAME`) is refused, so a typo does not pass unnoticed.",
        "",
        "### Read before the settings",
        "",
        "From the environment only, since they say where the settings are or how to read them:",
        "",
        "| variable | meaning | default |",
        "|---|---|---|",
        "| `MAINT_ENV_FILE` | the env file (or `--env-file`) | `./maintenance.env` if present |",
        "| `MAINT_SHIM_CMD` | also the command the scripts read the settings with, when set in the environment | "
        "the venv's (`.venv/bin/maintenance-shim` beside `scripts/`), else `maintenance-shim` on `PATH` |",
        "| `MAINT_VENV` | the venv `scripts/run.sh` creates and the scripts look in for `maintenance-shim` | "
        "`.venv` next to `scripts/` |",
        "| `MAINT_TEST_VENV` | the venv `scripts/test.sh` creates | `.venv` next to `scripts/` |",
        "| `TRACE` | `1` traces a script | unset |",
        "",
    ]
    return "\n".join(lines)


EXAMPLE_HEAD = """\
# maintenance.env: the settings of maintenance-shim and of its switching scripts, in one file.
#
# Generated by `python -m tools.settings_doc --write` from the schema; the reference with
# every meaning is docs/settings.md. Copy to /etc/maintenance-shim/maintenance.env (or ./maintenance.env);
# the scripts find it through --env-file PATH, else $MAINT_ENV_FILE, else ./maintenance.env, and pass it
# to the shim. Check it with `maintenance-shim check --env-file PATH`.
#
# One rule for every line: KEY=value, quoted as in the shell ('...', "...") but never expanded: $HOME
# and $(cmd) stay as written. Quote a value with blanks; comments go on lines of their own. A variable
# set in the environment wins over this file. Commented-out lines show the default.

# ==== An example: two services behind nginx (the README's walkthrough) ==========================
#MAINT_SWITCH=nginx
#MAINT_SERVICES='studio video:api'
#MAINT_LISTEN=127.0.0.1:8081=studio,127.0.0.1:8082=video:api
#MAINT_SERVICE_studio_INCLUDE=/etc/nginx/maintenance-shim/studio.upstream.conf
#MAINT_SERVICE_studio_STOP='systemctl stop studio'
#MAINT_SERVICE_studio_START='systemctl start studio'
#MAINT_SERVICE_studio_HEALTH_URL=http://127.0.0.1:7860/health
#MAINT_SERVICE_studio_PROXY_URL=http://studio.example.com/
#MAINT_SERVICE_studio_DISPLAY_NAME='Image Studio'
#MAINT_SERVICE_video_INCLUDE=/etc/nginx/maintenance-shim/video.upstream.conf
#MAINT_SERVICE_video_STOP='systemctl stop video-api'
#MAINT_SERVICE_video_START='systemctl start video-api'
#MAINT_SERVICE_video_HEALTH_URL=http://127.0.0.1:7861/healthz
#MAINT_SERVICE_video_PROXY_URL=http://video-api.example.com/
"""


def _comment(text: str) -> list[str]:
    """A meaning as env-file comment lines: no Markdown, wrapped."""
    plain = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text).replace("`", "")
    return [f"# {line}" for line in textwrap.wrap(plain, width=98)]


def _quoted(text: str) -> str:
    return f"'{text}'" if any(c.isspace() for c in text) else text


def env_example() -> str:
    """deploy/maintenance.env.example."""
    lines = [EXAMPLE_HEAD]
    for section, rows in shim_sections():
        lines.append(f"# ==== The shim: {section} ".ljust(100, "="))
        for field, meaning in rows:
            lines += _comment(meaning)
            lines.append(f"#{_name(field)}={_quoted(_value(_default(Settings.model_fields[field])))}")
        lines.append("")
    for section, rows in script_sections():
        lines.append(f"# ==== The scripts: {section} ".ljust(100, "="))
        for field, info, default in rows:
            lines += _comment((info.description or "") + (f"; default {default}" if default else ""))
            lines.append(f"#{_name(field)}={_quoted(_value(_default(info)))}")
        lines.append("")
    lines.append("# ==== Per service: MAINT_SERVICE_<name>_<KEY> ".ljust(100, "="))
    for key, meaning in SERVICE_KEYS.items():
        lines += _comment(f"_{key}: {meaning}")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="generate docs/settings.md and deploy/maintenance.env.example")
    parser.add_argument("--write", action="store_true", help="rewrite the files (default: check them)")
    args = parser.parse_args(argv)
    problems = missing_entries()
    if problems:
        print("settings_doc: not in the reference: " + ", ".join(problems), file=sys.stderr)
        return 1
    stale = 0
    for path, text in ((DOCS, markdown()), (EXAMPLE, env_example())):
        if args.write:
            path.write_text(text, encoding="utf-8")
        elif not path.is_file() or path.read_text(encoding="utf-8") != text:
            print(f"settings_doc: {path.relative_to(ROOT)} is stale; run with --write", file=sys.stderr)
            stale += 1
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
