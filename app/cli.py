"""The `maintenance-shim` command: serve, check, status, progress."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from .config import Settings, SettingsError, load_settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_SETTINGS = 2
DEFAULT_URL = "http://127.0.0.1:8080"
COMMANDS = ("serve", "check", "status", "progress")


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
        metavar="HOST:PORT[=SERVICE[:api]]",
        help="address to answer on, tagged with the service it replaces (repeatable; default 127.0.0.1:8080)",
    )
    for sub in (serve, commands.add_parser("check", help="validate the configuration and exit")):
        sub.add_argument("--env-file", metavar="PATH", help="settings file (default ./maintenance.env if present)")
    status = commands.add_parser("status", help="summarize a running shim")
    status.add_argument("--url", default=DEFAULT_URL, help=f"the shim's base URL (default {DEFAULT_URL})")
    status.add_argument("--json", action="store_true", help="print the raw status JSON")
    progress = commands.add_parser("progress", help="report training progress")
    progress.add_argument("--step", type=int, required=True)
    progress.add_argument("--total", type=int)
    target = progress.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="push to a running shim (token from MAINT_ADMIN_TOKEN)")
    target.add_argument("--file", help="write the progress file atomically")
    progress.add_argument("--env-file", metavar="PATH", help="settings file holding MAINT_ADMIN_TOKEN")
    return parser


def _settings(env_file: str | None, overrides: dict[str, Any] | None = None) -> Settings:
    return load_settings(env_file, overrides=overrides)


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"maintenance-shim: {message}", file=sys.stderr)
    return code


def _serve(args: argparse.Namespace) -> int:
    from .server import serve  # imported here so `check` and `status` stay light

    overrides = {"listen": args.listen} if args.listen else None
    return serve(_settings(args.env_file, overrides))


def _check(args: argparse.Namespace) -> int:
    settings = _settings(args.env_file)
    from .i18n import available_catalogs

    missing = [locale for locale in settings.languages if locale not in available_catalogs()]
    if missing:
        return _fail(f"MAINT_LANGUAGES: no catalog for {', '.join(missing)}", EXIT_BAD_SETTINGS)
    listeners = ", ".join(str(item) for item in settings.listeners)
    sources = [
        name
        for name, value in (
            ("progress file", settings.progress_file),
            ("train log", settings.train_log),
            ("static ETA", settings.eta),
            ("push", settings.admin_token),
        )
        if value
    ]
    print(f"configuration OK: listen {listeners}; languages {', '.join(settings.languages)}; "
          f"progress from {', '.join(sources) or 'nothing (ETA unknown)'}")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
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
    return EXIT_OK


def _progress(args: argparse.Namespace) -> int:
    if args.step < 0 or (args.total is not None and (args.total <= 0 or args.step > args.total)):
        return _fail("--step must be >= 0 and no larger than --total (> 0)", EXIT_BAD_SETTINGS)
    if args.file:
        from .reporter import write_progress_file

        write_progress_file(args.file, args.step, args.total)
        return EXIT_OK
    token = _settings(args.env_file).admin_token
    if token is None:
        return _fail("MAINT_ADMIN_TOKEN is not set; the push endpoint needs it", EXIT_BAD_SETTINGS)
    body = json.dumps({"step": args.step, "total": args.total}).encode()
    request = urllib.request.Request(  # noqa: S310 - operator-given URL
        args.url.rstrip("/") + "/_maintenance/progress",
        data=body,
        method="PUT",
        headers={"Authorization": f"Bearer {token.get_secret_value()}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5):  # noqa: S310
            return EXIT_OK
    except urllib.error.HTTPError as error:
        return _fail(f"the shim refused the report: HTTP {error.code}")
    except (urllib.error.URLError, OSError) as error:
        return _fail(f"no shim answering at {args.url}: {error}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad settings, with one line per bad setting)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or (arguments[0] not in COMMANDS and arguments[0] not in ("-h", "--help")):
        arguments.insert(0, "serve")  # `maintenance-shim --listen ...` means serve
    args = _parser().parse_args(arguments)
    command: str = args.command
    handlers = {"serve": _serve, "check": _check, "status": _status, "progress": _progress}
    try:
        return handlers[command](args)
    except SettingsError as error:
        for line in error.lines:
            print(f"maintenance-shim: {line}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    except KeyboardInterrupt:
        return 130
