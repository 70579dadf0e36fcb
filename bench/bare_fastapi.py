"""The naive baseline: one FastAPI catch-all route returning a 503 JSONResponse, under the shim's uvicorn settings.

Usage: python bench/bare_fastapi.py --port PORT
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.api_route("/{path:path}", methods=METHODS)
async def maintenance(path: str) -> JSONResponse:
    """Every path and method: 503 with Retry-After."""
    return JSONResponse(
        {"detail": "The service is down for maintenance. Please retry later."},
        status_code=503,
        headers={"Retry-After": "60", "Cache-Control": "no-store"},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        server_header=False,
        workers=1,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
