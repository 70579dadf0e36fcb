"""One reading of the environment and the env file, for the shim's settings and the scripts' alike."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

DEFAULT_ENV_FILE = "maintenance.env"


class SettingsError(Exception):
    """Invalid configuration; `lines` has one readable line per bad setting."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def read_env_file(path: Path) -> dict[str, str]:
    """The `KEY=value` lines of an env file; raises SettingsError naming the line of a malformed one.

    The one rule, for the shim and the scripts alike: blank lines and lines starting with `#` are skipped,
    `export ` in front is allowed, and the value is quoted as in the shell (single quotes, double quotes,
    backslashes) but never expanded: `$HOME` and `$(cmd)` stay as written. A value with blanks must be
    quoted; a comment after a value is not allowed.
    """
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].strip()
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise SettingsError([f"{path}:{number}: not a KEY=value line"])
        values[key] = _unquote(value, f"{path}:{number}: {key}")
    return values


def _unquote(value: str, where: str) -> str:
    """A shell word without expansion: quotes and backslashes removed as POSIX sh does, `$` kept literally."""
    try:
        words = shell_words(value)
    except ValueError as error:  # no closing quotation, or a trailing backslash
        raise SettingsError([f"{where}: {error} in {value!r}"]) from None
    if len(words) > 1:
        raise SettingsError([f"{where}: the value has blanks: quote it ('...'); comments go on lines of their own"])
    return words[0] if words else ""


def shell_words(text: str) -> list[str]:
    """Split `text` into words the way POSIX sh quotes them (`'...'` literal; `"..."` where a backslash
    escapes only `$`, a backquote, `"`, a backslash or a newline; a backslash outside quotes escapes the
    next character), with no expansion at all; raises ValueError for an unclosed quote."""
    words: list[str] = []
    word: list[str] = []
    in_word = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t":
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
            i += 1
            continue
        in_word = True
        if c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ValueError("No closing quotation")
            word.append(text[i + 1 : end])
            i = end + 1
        elif c == '"':
            i += 1
            while True:
                if i >= n:
                    raise ValueError("No closing quotation")
                c = text[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\" and i + 1 < n and text[i + 1] in '$`"\\\n':
                    word.append(text[i + 1])
                    i += 2
                    continue
                word.append(c)
                i += 1
        elif c == "\\":
            if i + 1 >= n:
                raise ValueError("No escaped character")
            word.append(text[i + 1])
            i += 2
        else:
            word.append(c)
            i += 1
    if in_word:
        words.append("".join(word))
    return words


def read_environment(env_file: str | Path | None = None, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Every MAINT_* value: the env file (`./maintenance.env` when present), overridden by the environment
    (`os.environ`, or exactly `environ` when given). The one place settings are read, for the shim and the
    scripts (through `maintenance-shim env --shell`)."""
    env = dict(os.environ if environ is None else environ)
    path = Path(env_file) if env_file else Path(DEFAULT_ENV_FILE)
    if env_file and not path.is_file():
        raise SettingsError([f"--env-file: {path} does not exist"])
    file_values = read_env_file(path) if path.is_file() else {}
    # The environment wins over the file. Names keep their case (service names in MAINT_SERVICE_<name>_*
    # are case-sensitive, as bash variables are); MAINT_X and maint_x are one setting.
    merged: dict[str, tuple[str, str]] = {}
    for source in (file_values, env):
        for key, value in source.items():
            if key.upper().startswith("MAINT_"):
                merged[key.upper()] = (key, value)
    return dict(merged.values())


def describe_error(error: Any) -> str:
    """One pydantic error as `MAINT_NAME: what is wrong (got ...)`."""
    loc = [str(part) for part in error.get("loc", ())]
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    value = error.get("input")
    if not loc:
        return message
    name = "MAINT_" + loc[0].upper()
    shown = "" if loc[0] in ("admin_token", "notify_urls") or isinstance(value, dict) else f" (got {value!r})"
    return f"{name}: {message}{shown}"
