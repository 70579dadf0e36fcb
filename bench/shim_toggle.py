"""`maintenance-shim serve` with its request counting switched off and on while it runs: SIGUSR1 off,
SIGUSR2 on (on at start). The app, server, protocol and settings are the shim's own; only the catch-all's
hold on its Traffic is taken away and given back (and its cached answers dropped), which is all that
MAINT_METRICS=off changes on the request path. For bench/counting_crossover.py.

Usage: python bench/shim_toggle.py [serve arguments]
"""

from __future__ import annotations

import signal
import sys
from typing import Any

from maintenance_shim import server
from maintenance_shim.cli import main
from maintenance_shim.main import create_app
from maintenance_shim.progress.tracker import Tracker
from maintenance_shim.settings.shim import Settings
from maintenance_shim.web.catchall import MaintenanceApp


def create_toggled_app(settings: Settings, tracker: Tracker | None = None) -> Any:
    app = create_app(settings, tracker)
    if not isinstance(app, MaintenanceApp) or app.traffic is None:
        raise SystemExit("shim_toggle: the app has no Traffic to switch (MAINT_METRICS is off?)")
    traffic, known = app.traffic, app._known  # the bench reaches in on purpose

    # The fast path's cached answers hold the counter cell they were prepared with (none with counting
    # off): emptied at each switch, as a new progress snapshot would.
    def off(*_: object) -> None:
        app.traffic, app._known = None, None
        app._answers.clear()

    def on(*_: object) -> None:
        app.traffic, app._known = traffic, known
        app._answers.clear()

    TOGGLES[:] = [off, on]
    return app


TOGGLES: list[Any] = []
_server_signals = server.server_signals


def toggled_signals(supervised: bool) -> None:
    """The serving process's own signal handlers (USR1/USR2 are logged and ignored there), then ours."""
    _server_signals(supervised)
    off, on = TOGGLES
    signal.signal(signal.SIGUSR1, off)
    signal.signal(signal.SIGUSR2, on)


server.create_app = create_toggled_app  # serve() builds its app through this name
server.server_signals = toggled_signals  # and sets the serving process's handlers through this one
if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
