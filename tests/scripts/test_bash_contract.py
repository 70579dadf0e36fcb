"""Bash orchestrates, Python decides (docs/architecture.md, "The contracts with code we do not own: bash"):
the scripts in scripts/ parse no JSON and no settings and build no JSON; every value comes from a
`maintenance-shim` subcommand, every record is written by one. And scripts/lib/ stays small files."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support import ROOT

SCRIPTS = ROOT / "scripts"
LIB = SCRIPTS / "lib"
MAX_LIB_LINES = 200


def _code(path: Path) -> list[tuple[int, str]]:
    """(line number, code) of a bash file: whole-line comments dropped, a trailing ` # comment` cut; the
    heredocs of usage texts dropped too (they are prose)."""
    out: list[tuple[int, str]] = []
    in_heredoc = False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if in_heredoc:
            in_heredoc = line.strip() != "EOF"
            continue
        if "<<EOF" in line or "<<'EOF'" in line:
            in_heredoc = True
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        out.append((number, line.split("  # ")[0]))
    return out


def _bash_files() -> list[Path]:
    files = sorted(SCRIPTS.rglob("*.sh"))
    assert len(files) > 15, files  # the scripts, scripts/lib/*.sh and scripts/proxy/*.sh
    return files


def _offending(pattern: str) -> list[str]:
    rule = re.compile(pattern)
    return [f"{path.relative_to(ROOT)}:{number}: {code.strip()}" for path in _bash_files()
            for number, code in _code(path) if rule.search(code)]


def test_lib_is_small_files_of_one_concern() -> None:
    files = sorted(LIB.glob("*.sh"))
    assert len(files) >= 8, files
    for path in files:
        lines = path.read_text().splitlines()
        assert len(lines) < MAX_LIB_LINES, f"{path.name}: {len(lines)} lines (split it along its concerns)"
        assert lines[0] == "# shellcheck shell=bash" and lines[1].startswith(f"# lib/{path.name}: "), path.name
    loader = (SCRIPTS / "lib.sh").read_text()
    # lib.sh only sources them (the scripts, and tests/test_plugins.py's copy of the tree, source lib.sh).
    sourced = re.findall(r'^\. "\$LIB_DIR/lib/([a-z_]+\.sh)"$', loader, re.MULTILINE)
    assert sorted(sourced) == [path.name for path in files]
    assert not re.search(r"^[a-z_]+\(\)", loader, re.MULTILINE), "lib.sh defines no function of its own"


def test_no_text_tool_or_regex_reads_anything() -> None:
    """No sed, awk, jq or perl, and no bash regex (=~, BASH_REMATCH): what needs reading is read in Python."""
    assert _offending(r"(^|[\s|;&(`])(sed|awk|gawk|mawk|jq|perl)(\s|$)") == []
    assert _offending(r"=~|BASH_REMATCH") == []


def test_no_json_is_read_or_built() -> None:
    """No JSON in the code at all: no object written by printf or echo, no key searched in a body."""
    assert _offending(r"""\{\\?"|\\?"[a-z_]+\\?":|'"[a-z_]+"'""") == []
    assert _offending(r'"maintenance"|\\"maintenance\\"') == []


def test_no_setting_is_parsed() -> None:
    """The settings come parsed by `maintenance-shim env --shell`: no expansion operator that takes a
    setting apart (`${MAINT_LISTEN%:*}`, `${MAINT_X//,/ }`), no splitting of one into words (`read -a`,
    a `words` helper), except MAINT_SHIM_CMD, a command line split as the shell splits one."""
    assert _offending(r"\$\{MAINT_[A-Z0-9_]+(#|%|/|\^|,|:[0-9 ])") == []
    assert _offending(r"<<<\s*\"?\$\{?MAINT_(?!SHIM_CMD\b)") == []
    assert _offending(r"(^|\s)words\s|\bIFS=\S*,\S*\s+read\b") == []
    listen = _offending(r"MAINT_LISTEN")
    # Only recorded as a whole by start_maintenance.sh and handed back whole to `env --shell` by the undo.
    assert sorted(line.split(": ", 1)[1] for line in listen) == sorted([
        'state_set S_LISTEN "$MAINT_LISTEN"', "[[ -n ${S_LISTEN:-} ]] && export MAINT_LISTEN=$S_LISTEN"]), listen


def test_records_and_probes_go_through_the_shim() -> None:
    """Run events, the start-up record, the JSON log lines and the shim's health checks are subcommands;
    the start time of a process is supervise.py's (`maintenance-shim pid`), not read again in bash."""
    code = "\n".join(line for path in _bash_files() for _, line in _code(path))
    called = r"(shim_run |SETTINGS_CMD\[@\]\}\" |args=\(|record_write \S+ )"
    for subcommand in ("event", "startup", "log", "probe", "pid", "serving", "env"):
        assert re.search(rf"{called}{subcommand}\b", code), subcommand
    assert "fields[19]" not in code and code.count("/stat\"") == 1, "only pid_alive reads /proc/PID/stat"
    # The events file is emptied at a start (`: >`), never written a line by bash; startup.json not at all.
    assert not re.search(r'>>\s*"?\$STATE_DIR/events\.jsonl|>\s*"?\$STATE_DIR/startup\.json', code)


def _substitutions(code: str) -> int:
    """How many command or process substitutions (`$(`, `<(`, `>(`, not `$((`) the shell running `code`
    expands itself: the outermost ones; those nested inside another run in its child."""
    count = depth = 0
    double = False  # inside "...": a ' is a character
    i = 0
    while i < len(code):
        char = code[i]
        if char == "\\":
            i += 1
        elif char == "'" and not double:
            end = code.find("'", i + 1)
            i = len(code) if end < 0 else end
        elif char == '"' and depth == 0:
            double = not double
        elif char in "$<>" and code[i + 1:i + 2] == "(" and code[i + 2:i + 3] != "(":
            count += depth == 0
            depth += 1
            i += 1
        elif char == "(" and depth:
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        i += 1
    return count


def test_no_command_expands_two_substitutions() -> None:
    """bash 5.2 (Debian 12's) runs a signal's pending trap inside the parser it re-enters to expand a
    `$(`, where the trap's own text fails to parse (`trap: line 2: unexpected EOF while looking for
    matching `)'`) and the trap is lost: the interrupted script carries on. A signal is left pending
    while a child runs, so the second substitution of one command is that window; bash runs pending traps
    before each command, so one substitution per command leaves none worth the name (bash 5.3 fixed it:
    eval.c's parse_command no longer runs traps inside a substitution's parse). So in the scripts that
    trap INT and TERM, and the files they source, every command expands at most one, each on a line of
    its own (a command over several lines is not looked at as one: there are none with two)."""
    trapping = [path for path in _bash_files() if path.parent != SCRIPTS
                or path.name in ("lib.sh", "start_maintenance.sh", "stop_maintenance.sh", "with_maintenance.sh")]
    two = [f"{path.relative_to(ROOT)}:{number}: {code.strip()}" for path in trapping
           for number, code in _code(path) if _substitutions(code) > 1]
    assert two == [], "\n".join(two)


def test_the_substitution_count_counts_only_the_outermost() -> None:
    assert _substitutions('x=$(a "$(b)")') == 1
    assert _substitutions('log "$(a) and $(b)"') == 2
    assert _substitutions("n=$(( $(mono) + 1 ))") == 1
    assert _substitutions("x=$(( a + b ))") == 0
    assert _substitutions("done < <(f)") == 1
    assert _substitutions("echo '$(a) $(b)'") == 0
    assert _substitutions('echo "$(a)" \\$(b)') == 1
    assert _substitutions('die "it\'s $(a): $(b)"') == 2
    assert _substitutions("x=$(printf '(') y") == 1
