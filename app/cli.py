"""The `maintenance-shim` command: serve, check, status, progress."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .settings.env import DEFAULT_ENV_FILE, SettingsError

if TYPE_CHECKING:  # imported where used: the scripts' small subcommands (event, log, probe, pid) start fast
    from .settings.shim import Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_SETTINGS = 2
DEFAULT_URL = "http://127.0.0.1:8080"
COMMANDS = ("serve", "check", "env", "status", "progress", "history", "notify", "summary", "serving", "event",
            "runtime", "gpu", "log", "probe", "pid", "startup")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maintenance-shim",
        description="Answer every request of stopped inference services with a localized 503 and a live ETA.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the shim in the foreground (the default)")
    serve.add_argument(
        "--listen",
        action="append",
        metavar="HOST:PORT[=SERVICE[:KIND]]",
        help="address to answer on, tagged with the service it replaces and its kind: page (HTML, the default), "
        "api (JSON {detail}) or openai (JSON {error: {message}}) (repeatable; default 127.0.0.1:8080)",
    )
    env = commands.add_parser("env", help="the scripts' settings, resolved and validated (for bash: --shell)")
    env.add_argument("--shell", action="store_true", help="print `export NAME=value` lines for bash's eval")
    for sub in (serve, commands.add_parser("check", help="validate the configuration and exit"), env):
        sub.add_argument("--env-file", metavar="PATH", help="settings file (default ./maintenance.env if present)")
    status = commands.add_parser("status", help="summarize a running shim")
    status.add_argument("--url", default=DEFAULT_URL, help=f"the shim's base URL (default {DEFAULT_URL})")
    status.add_argument("--json", action="store_true", help="print the raw status JSON")
    progress = commands.add_parser("progress", help="report training progress")
    progress.add_argument("--step", type=int, required=True)
    progress.add_argument("--total", type=int)
    target = progress.add_mutually_exclusive_group()
    target.add_argument(
        "--url",
        help="push to a running shim's admin listener: http://HOST:PORT or unix:/PATH (token from "
        "MAINT_ADMIN_TOKEN); default: MAINT_ADMIN_LISTEN's, the socket admin.sock in the state directory",
    )
    target.add_argument("--file", help="write the progress file atomically")
    progress.add_argument("--env-file", metavar="PATH", help="settings file holding MAINT_ADMIN_TOKEN")
    history = commands.add_parser("history", help="the last runs (from MAINT_STATE_DIR/history.jsonl)")
    history.add_argument("--state-dir", metavar="PATH", help="default MAINT_STATE_DIR")
    history.add_argument("--last", type=int, default=10, metavar="N", help="how many runs (default 10)")
    history.add_argument("--json", action="store_true", help="print the records as JSON lines")
    history.add_argument(
        "--record", action="store_true", help="append the run that just ended (stop_maintenance.sh does this)"
    )
    history.add_argument("--env-file", metavar="PATH", help="settings file holding MAINT_STATE_DIR")
    notify = commands.add_parser("notify", help="send a notification to MAINT_NOTIFY_URLS (the scripts do)")
    notify.add_argument("event", choices=("start", "stalled", "overdue", "finished", "back", "switch-failed",
                                          "rolled-back"))
    notify.add_argument("--detail", default="", help="what happened (switch-failed, rolled-back)")
    notify.add_argument("--services", default="", help="the services' names, blank-separated")
    notify.add_argument("--state-dir", metavar="PATH", help="for `back`: the run's request counts")
    notify.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for delivery (default 20)")
    notify.add_argument("--env-file", metavar="PATH", help="settings file holding MAINT_NOTIFY_URLS")
    summary = commands.add_parser("summary", help="what the last run turned away (MAINT_STATE_DIR)")
    summary.add_argument("--state-dir", metavar="PATH", help="default MAINT_STATE_DIR")
    summary.add_argument("--json", action="store_true", help="print the counts as JSON")
    summary.add_argument("--env-file", metavar="PATH", help="settings file holding MAINT_STATE_DIR")
    serving = commands.add_parser("serving", help="who serves: the supervisor's state file (the scripts read it)")
    serving.add_argument("--state-dir", metavar="PATH", required=True)
    serving.add_argument("--shell", action="store_true", help="print SERVING_* assignments for bash's eval")
    event = commands.add_parser("event", help="append a run event to MAINT_STATE_DIR/events.jsonl (the scripts do)")
    event.add_argument("name", help="start, switched, trainer-exit, services-starting, services-waiting or "
                       "services-ready")
    event.add_argument("services", nargs="*", help="the services it concerns")
    event.add_argument("--status", type=int, help="the trainer's exit status (trainer-exit)")
    event.add_argument("--seconds", type=float, help="how long the switch in took (switched)")
    event.add_argument("--at", type=float, metavar="UNIX_TIME", help="when it happened (default now)")
    event.add_argument("--state-dir", metavar="PATH", required=True)
    log = commands.add_parser("log", help="write one JSON log line on stderr, as the shim's (the scripts do)")
    log.add_argument("level", choices=("debug", "info", "warning", "error"))
    log.add_argument("message")
    log.add_argument("--logger", default="maintenance-shim", help="the logger's name (the script's)")
    log.add_argument("--at", type=float, metavar="UNIX_TIME", help="when it happened (default now)")
    probe = commands.add_parser("probe", help="check that the shim answers as it must (the scripts do)")
    probe.add_argument("addresses", nargs="+", metavar="HOST:PORT|URL")
    probe.add_argument("--path", default="/", help="the sample request's path (MAINT_VERIFY_PATH)")
    probe.add_argument("--cors-origins", default="", help="MAINT_CORS_ORIGINS: preflight from the first")
    probe.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="retry until ready (default once)")
    probe.add_argument("--pid", type=int, help="with --wait: stop (exit 3) when this process exits")
    probe.add_argument("--side", choices=("shim", "live"),
                       help="instead: wait until each URL shows this side (exit 1; those that did not, a line each)")
    probe.add_argument("--traefik-api", metavar="URL", help="with --side: each argument is SERVICE@PROVIDER="
                       "SHIM_URL, and its side the one Traefik's API shows for that service")
    pid = commands.add_parser("pid", help="a process's start time, or whether it is still the shim (the scripts do)")
    pid.add_argument("pid", type=int)
    pid.add_argument("--start", metavar="TICKS", help="exit 0 only if PID started then and runs `serve`")
    startup = commands.add_parser("startup", help="record how long the services took to come back (the scripts do)")
    startup.add_argument("--seconds", type=float, required=True)
    startup.add_argument("--state-dir", metavar="PATH", required=True)
    runtime = commands.add_parser(
        "runtime", help="sleep, wake or check a service's inference server (MAINT_SERVICE_<name>_RUNTIME)"
    )
    runtime.add_argument("action", choices=("sleep", "wake", "ready"))
    runtime.add_argument("--service", required=True, help="the service's name in MAINT_SERVICES")
    runtime.add_argument("--env-file", metavar="PATH", help="settings file (default ./maintenance.env if present)")
    gpu = commands.add_parser("gpu", help="wait until the GPUs' memory is free (nvidia-smi; with_maintenance.sh does)")
    gpu.add_argument("--wait", type=float, default=60.0, metavar="SECONDS", help="how long to wait (default 60)")
    gpu.add_argument("--below", type=int, default=1024, metavar="MIB",
                     help="MiB in use per GPU that still counts as free (default 1024)")
    return parser


def _runtime(args: argparse.Namespace) -> int:
    from .runtime_cli import run

    return run(args.action, args.service, args.env_file)


def _gpu(args: argparse.Namespace) -> int:
    from .gpu import wait_free

    return wait_free(args.wait, args.below)


def _settings(env_file: str | None, overrides: dict[str, Any] | None = None) -> Settings:
    from .settings.shim import load_settings

    return load_settings(env_file, overrides=overrides)


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"maintenance-shim: {message}", file=sys.stderr)
    return code


def _serve(args: argparse.Namespace) -> int:
    from .server import serve

    overrides = {"listen": args.listen} if args.listen else None
    return serve(_settings(args.env_file, overrides), reload_settings=lambda: _settings(args.env_file, overrides))


def _check(args: argparse.Namespace) -> int:
    from .settings.scripts import listen_warnings, load_script_settings

    settings, scripts, resolved = load_script_settings(args.env_file)  # the shim's settings and the scripts'
    from .main import create_app

    create_app(settings)  # the brand too: logo, colours, time zone, and every page rendered once
    for line in listen_warnings(settings, scripts):
        print(f"maintenance-shim: warning: {line}", file=sys.stderr)
    from .i18n import available_catalogs

    missing = [locale for locale in settings.languages if locale not in available_catalogs()]
    if missing:
        return _fail(f"MAINT_LANGUAGES: no catalog for {', '.join(missing)}", EXIT_BAD_SETTINGS)
    if settings.notify_urls:
        import importlib.util

        if importlib.util.find_spec("apprise") is None:
            return _fail("MAINT_NOTIFY_URLS: Apprise is not installed (pip install 'maintenance-shim[notify]')",
                         EXIT_BAD_SETTINGS)
    listeners = ", ".join(str(item) for item in settings.listeners)
    from .settings.sources import registry as source_registry

    sources = [
        name
        for name, value in (
            *((source.summary(len(settings.source_paths(key))), settings.source_paths(key))
              for key, source in source_registry().items()),
            ("static ETA", settings.eta),
            ("push", settings.admin_token),
        )
        if value
    ]
    state_dir = resolved["MAINT_STATE_DIR"]
    nothing = (
        "nothing set here (under scripts/with_maintenance.sh: the command's tqdm/Rich output, "
        f"{state_dir}/train.log, and the callbacks' {state_dir}/progress.json; else the ETA is unknown)"
    )
    print(f"configuration OK: listen {listeners}; languages {', '.join(settings.languages)}; "
          f"progress from {', '.join(sources) or nothing}; switch {scripts.switch}"
          + (f" for {', '.join(spec.tag for spec in scripts.service_specs)}" if scripts.service_specs else ""))
    return EXIT_OK


def _env(args: argparse.Namespace) -> int:
    """The scripts' settings, resolved: `export` lines for bash (--shell), else NAME=value lines to read."""
    import shlex

    from .settings.scripts import listen_warnings, load_script_settings, shell_assignments

    settings, scripts, resolved = load_script_settings(args.env_file)
    for line in listen_warnings(settings, scripts):
        print(f"maintenance-shim: warning: {line}", file=sys.stderr)
    if args.env_file or Path(DEFAULT_ENV_FILE).is_file():
        resolved["MAINT_ENV_FILE"] = str(Path(args.env_file or DEFAULT_ENV_FILE).resolve())
    if args.shell:
        sys.stdout.write(shell_assignments(settings, scripts, resolved))
    else:
        sys.stdout.write("".join(f"{name}={shlex.quote(value)}\n" for name, value in sorted(resolved.items())))
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    url = args.url.rstrip("/") + "/_maintenance/status"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - operator-given URL
            data = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as error:
        return _fail(f"no shim answering at {url}: {error}")
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return EXIT_OK
    print(f"service:     {data.get('service')}")
    print(f"state:       {data.get('state')}")
    progress = data.get("progress")
    if progress:
        total = progress.get("total")
        fraction = progress.get("fraction")
        percent = f" ({fraction * 100:.1f}%)" if fraction is not None else ""
        rate = progress.get("rate_per_second")
        print(f"progress:    step {progress.get('step')}{f' of {total}' if total else ''}{percent}"
              f"{f', {rate} steps/s' if rate else ''}")
    eta = data.get("eta") or {}
    if eta.get("known"):
        print(f"eta:         {eta.get('text')} ({eta.get('seconds')} s, at {eta.get('at')})")
    else:
        print("eta:         unknown")
    print(f"retry-after: {data.get('retry_after')} s")
    if data.get("notice"):
        print(f"notice:      {data.get('notice')}")
    return EXIT_OK


def _progress(args: argparse.Namespace) -> int:
    import urllib.error

    if args.step < 0 or (args.total is not None and (args.total <= 0 or args.step > args.total)):
        return _fail("--step must be >= 0 and no larger than --total (> 0)", EXIT_BAD_SETTINGS)
    if args.file:
        from .reporter import write_progress_file

        write_progress_file(args.file, args.step, args.total)
        return EXIT_OK
    settings = _settings(args.env_file)
    token = settings.admin_token
    if token is None:
        return _fail("MAINT_ADMIN_TOKEN is not set; the push endpoint needs it", EXIT_BAD_SETTINGS)
    from .integrations._core import push_endpoint, put_progress

    url = args.url
    if url is None:
        admin = settings.admin_address
        if admin is None:
            return _fail("MAINT_ADMIN_LISTEN is off: give --url or --file", EXIT_BAD_SETTINGS)
        url = admin.url or f"unix:{admin.path}"
    try:
        put_progress(push_endpoint(url), token.get_secret_value(), {"step": args.step, "total": args.total}, 5.0)
    except urllib.error.HTTPError as error:
        return _fail(f"the shim refused the report: HTTP {error.code}")
    except ValueError as error:
        return _fail(str(error), EXIT_BAD_SETTINGS)
    except (urllib.error.URLError, OSError) as error:
        return _fail(f"no shim answering at {url}: {error}")
    return EXIT_OK


def _history(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from .progress.runs import learn, read_history, record_run
    from .statedir import HISTORY_FILE

    state_dir = Path(args.state_dir) if args.state_dir else _settings(args.env_file).state_dir
    if state_dir is None:
        return _fail("no state dir: set MAINT_STATE_DIR or pass --state-dir", EXIT_BAD_SETTINGS)
    if args.record:
        try:
            record = record_run(state_dir, time.time())
        except OSError as error:
            return _fail(f"cannot record the run in {state_dir / HISTORY_FILE}: {error}")
        print(record.to_json())
        return EXIT_OK
    records = read_history(state_dir / HISTORY_FILE)[-max(1, args.last):]
    if args.json:
        for record in records:
            print(record.to_json())
        return EXIT_OK
    if not records:
        print(f"no runs recorded in {state_dir / HISTORY_FILE}")
        return EXIT_OK
    print(_history_table(records))
    learned = learn(records)
    if learned.resume is not None:
        print(f"\nlearned save-and-reload time (median of the last {learned.runs}): {learned.resume:.0f} s")
    return EXIT_OK


def _notify(args: argparse.Namespace) -> int:
    from pathlib import Path

    settings = _settings(args.env_file)
    if not settings.notify_urls:
        return EXIT_OK
    from .logsetup import configure_logging
    from .notify import Facts, Notifier
    from .progress.runs import read_requests

    configure_logging(settings.log_level, settings.log_format)
    facts = Facts(detail=args.detail or None)
    state_dir = Path(args.state_dir) if args.state_dir else settings.state_dir
    counts = read_requests(state_dir) if state_dir is not None and args.event == "back" else None
    if counts is not None:
        facts = Facts(duration_seconds=counts.get("duration_seconds"), turned_away=counts.get("turned_away"))
    services = args.services.split() or [item.service for item in settings.listeners]
    notifier = Notifier(settings.notify_urls, settings.notify_locale, services)
    notifier.event(args.event, facts)
    return EXIT_OK if notifier.close(args.timeout) else EXIT_FAILED


def _summary(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .progress.runs import read_requests
    from .statedir import REQUESTS_FILE

    state_dir = Path(args.state_dir) if args.state_dir else _settings(args.env_file).state_dir
    if state_dir is None:
        return _fail("no state dir: set MAINT_STATE_DIR or pass --state-dir", EXIT_BAD_SETTINGS)
    counts = read_requests(state_dir)
    if counts is None:
        return _fail(f"no request counts in {state_dir / REQUESTS_FILE} (MAINT_METRICS off, or no shim ran)")
    if args.json:
        print(json.dumps(counts, ensure_ascii=False))
        return EXIT_OK
    print(summary_text(counts))
    return EXIT_OK


def summary_text(counts: dict[str, Any]) -> str:
    """The run summary as stop_maintenance.sh prints it."""
    services = counts.get("by_service") or {}
    parts = [
        f"{name or '(unnamed)'}: " + ", ".join(f"{fmt} {count:,}" for fmt, count in sorted(formats.items()))
        for name, formats in sorted(services.items())
    ]
    exact = "" if counts.get("distinct_clients_exact", True) else " (estimated)"
    return "\n".join([
        f"requests turned away: {counts.get('turned_away', 0):,}" + (f" ({'; '.join(parts)})" if parts else ""),
        f"distinct clients:     {counts.get('distinct_clients', 0):,}{exact}",
        f"peak:                 {counts.get('peak_requests_per_second', 0)} requests/s",
        f"duration:             {_seconds(counts.get('duration_seconds'))} "
        f"(from {counts.get('since')} to {counts.get('until')})",
    ])


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def _history_table(records: Sequence[Any]) -> str:
    from datetime import datetime

    header = ("started", "duration", "steps", "rate/s", "trainer", "last step -> ready", "services")
    rows = [header]
    for record in records:
        started = (
            datetime.fromtimestamp(record.started_at).astimezone().strftime("%Y-%m-%d %H:%M")
            if record.started_at
            else "-"
        )
        steps = "-" if record.last_step is None else f"{record.first_step or 0}-{record.last_step}"
        if record.total:
            steps += f" of {record.total}"
        rows.append((
            started,
            _seconds(record.duration),
            steps,
            "-" if record.mean_rate is None else f"{record.mean_rate:.2f}",
            "-" if record.trainer_status is None else f"exit {record.trainer_status}",
            _seconds(record.resume),
            " ".join(record.services) or "-",
        ))
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def _serving(args: argparse.Namespace) -> int:
    import shlex
    from dataclasses import asdict
    from pathlib import Path

    from .supervise import read_serving_state

    state = read_serving_state(Path(args.state_dir))
    values = asdict(state) if state is not None else {}
    if not args.shell:
        print(json.dumps(values))
        return EXIT_OK
    names = ("supervisor", "serving", "serving_start", "restarts", "last_exit", "last_restart_at")
    bash = {"serving": "PID", "serving_start": "START", "last_restart_at": "LAST_AT"}
    for name in names:
        value = values.get(name)
        text = "0" if name == "restarts" and value is None else ("" if value is None else str(value))
        print(f"SERVING_{bash.get(name, name.upper())}={shlex.quote(text)}")
    return EXIT_OK


def _event(args: argparse.Namespace) -> int:
    import time

    from .scriptio import append_event
    from .statedir import EVENTS_FILE

    try:
        at = time.time() if args.at is None else args.at
        append_event(Path(args.state_dir), at, args.name, args.status, tuple(args.services), args.seconds)
    except ValueError as error:
        return _fail(f"event: {error}", EXIT_BAD_SETTINGS)
    except OSError as error:
        return _fail(f"cannot write {Path(args.state_dir) / EVENTS_FILE}: {error}")
    return EXIT_OK


def _log(args: argparse.Namespace) -> int:
    import time

    from .scriptio import log_line

    print(log_line(time.time() if args.at is None else args.at, args.level, args.logger, args.message),
          file=sys.stderr)
    return EXIT_OK


def _probe(args: argparse.Namespace) -> int:
    """Exit 0 when ready (or on the side asked); 1 with why on stdout; 3 when --pid exited first."""
    from . import probe

    if args.side:
        late = probe.wait_sides(args.addresses, args.side, args.wait, args.traefik_api)
        print("\n".join(late))
        return EXIT_FAILED if late else EXIT_OK
    code, why = probe.wait_ready(args.addresses, args.path, args.cors_origins, args.wait, args.pid)
    print(why)
    return code


def _pid(args: argparse.Namespace) -> int:
    from .scriptio import is_shim
    from .supervise import proc_starttime

    if args.start is not None:
        return EXIT_OK if is_shim(args.pid, args.start) else EXIT_FAILED
    start = proc_starttime(args.pid)
    print(start)
    return EXIT_OK if start else EXIT_FAILED


def _startup(args: argparse.Namespace) -> int:
    from .scriptio import record_startup
    from .statedir import STARTUP_FILE

    try:
        record_startup(Path(args.state_dir), args.seconds)
    except ValueError as error:
        return _fail(f"startup: {error}", EXIT_BAD_SETTINGS)
    except OSError as error:
        return _fail(f"cannot write {Path(args.state_dir) / STARTUP_FILE}: {error}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad settings, with one line per bad setting)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or (arguments[0] not in COMMANDS and arguments[0] not in ("-h", "--help")):
        arguments.insert(0, "serve")  # `maintenance-shim --listen ...` means serve
    args = _parser().parse_args(arguments)
    command: str = args.command
    handlers = {"serve": _serve, "check": _check, "env": _env, "status": _status, "progress": _progress,
                "history": _history, "notify": _notify, "summary": _summary, "serving": _serving, "event": _event,
                "runtime": _runtime, "gpu": _gpu, "log": _log, "probe": _probe, "pid": _pid, "startup": _startup}
    try:
        return handlers[command](args)
    except SettingsError as error:
        for line in error.lines:
            print(f"maintenance-shim: {line}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    except KeyboardInterrupt:
        return 130
