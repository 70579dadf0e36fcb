"""The shim's app served by uvicorn's own httptools protocol: the "limits off" contender of bench/run.py.

Same settings (from the environment), same app and the same start-up heap settling as `maintenance-shim
serve`, but without app/uvicorn_ext/protocol.py's guard (header size and count limits, header timeout, connection
cap, closing unread bodies) and without the supervisor: the difference to the shim row is what the limits
cost.

Usage: python bench/shim_nolimits.py --port PORT
"""

from __future__ import annotations

import argparse
import sys

import uvicorn

from maintenance_shim.main import create_app
from maintenance_shim.server import BACKLOG, configure_logging, settle_heap
from maintenance_shim.settings.shim import load_settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = load_settings(overrides={"listen": [f"127.0.0.1:{args.port}=studio"], "admin_listen": "off"})
    configure_logging(settings.log_level)
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=args.port,
        http="httptools",
        lifespan="on",
        access_log=False,
        server_header=False,
        proxy_headers=False,
        log_level=settings.log_level,
        backlog=BACKLOG,
    )
    server = uvicorn.Server(config)
    settle_heap()
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
