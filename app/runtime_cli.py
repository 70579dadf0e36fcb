"""`maintenance-shim runtime sleep|wake|ready --service NAME`: the scripts call this for a service whose
MAINT_SERVICE_<name>_RUNTIME names a preset, where they would run its STOP or START hook or poll its health.

sleep: free the GPU (the preset confirms where the server can tell). wake: bring the model back, then wait
until ready, bounded by RUNTIME_TIMEOUT or the preset's own. ready: one check (exit 0 ready, 1 not, the
reason on stdout). Messages go to stderr as `maintenance-shim: NAME: PRESET: ...`; a failure names the
server's answer. Exit 2 for a bad setting (one line naming it), as everywhere.
"""

from __future__ import annotations

import sys
import time

from .runtimes import COMMAND, PresetError, Server, get, wait_until

EXIT_OK, EXIT_FAILED, EXIT_BAD_SETTINGS = 0, 1, 2


def _say(message: str) -> None:
    print(f"maintenance-shim: {message}", file=sys.stderr, flush=True)


def run(action: str, service: str, env_file: str | None) -> int:
    from .settings.scripts import load_script_settings, runtime_options

    _, scripts, _ = load_script_settings(env_file)  # SettingsError: the caller prints it, exit 2
    specs = {spec.name: spec for spec in scripts.service_specs}
    if service not in specs:
        _say(f"--service {service}: not in MAINT_SERVICES ({', '.join(specs) or 'none'})")
        return EXIT_BAD_SETTINGS
    keys = specs[service].keys
    if keys["RUNTIME"] == COMMAND:
        _say(f"MAINT_SERVICE_{service}_RUNTIME is {COMMAND}: the service's STOP and START hooks run it, not a preset")
        return EXIT_BAD_SETTINGS
    preset = get(keys["RUNTIME"])
    options = runtime_options(keys)  # validated with the settings above
    server = Server(options)
    where = f"{service}: {preset.name} at {options.url}"
    start = time.monotonic()
    try:
        if action == "sleep":
            _say(f"{where}: {preset.sleep(server)} ({time.monotonic() - start:.1f}s)")
        elif action == "wake":
            what = preset.wake(server)
            seconds = preset.timeout(options, preset.wake_timeout)
            wait_until(lambda: preset.ready(server), max(0.0, seconds - (time.monotonic() - start)),
                       f"{preset.name} is not ready", every=0.5)
            _say(f"{where}: {what}; ready {time.monotonic() - start:.1f}s after the wake call")
        else:
            why = preset.ready(server)
            if why is not None:
                print(why)
                return EXIT_FAILED
    except PresetError as error:
        if action == "ready":
            print(error)
        else:
            _say(f"{where}: {action} failed: {error}")
        return EXIT_FAILED
    return EXIT_OK
