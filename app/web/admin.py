"""The reserved /_maintenance/ endpoints (FastAPI): health, status and the progress push."""

from __future__ import annotations

import hmac
import json
import logging
import time
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError, model_validator

from ..nodes import MAX_NODES, NODE_PATTERN, NodeLimitError
from ..progress.eta import Phase
from ..progress.tracker import MAX_COUNT
from ..traffic import Traffic
from .catchall import HEALTH_BODY, UNHEALTHY_BODY
from .negotiate import RequestFacts
from .ratelimit import FailureLimiter
from .responder import Responder

logger = logging.getLogger("maintenance_shim")
MAX_PROGRESS_BODY = 16 * 1024


class ProgressIn(BaseModel):
    """A progress report: step done so far, of total; `node` names the GPU node that trains (progress per node)."""

    step: int = Field(ge=0, le=MAX_COUNT)
    total: int | None = Field(default=None, gt=0, le=MAX_COUNT)
    phase: Phase | None = None
    node: str | None = Field(
        default=None,
        pattern=f"^{NODE_PATTERN}$",
        description=f"1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit); "
        f"at most {MAX_NODES} distinct nodes are tracked",
    )

    @model_validator(mode="after")
    def _step_within_total(self) -> ProgressIn:
        if self.total is not None and self.step > self.total:
            raise ValueError("step is larger than total")
        return self


def create_admin(responder: Responder, admin_token: str | None, traffic: Traffic | None = None) -> FastAPI:
    """The FastAPI app for the reserved endpoints and their OpenAPI document; with `traffic` (MAINT_METRICS),
    /_maintenance/metrics and the running request counts in the status."""
    app = FastAPI(
        title="maintenance-shim",
        summary="Reserved endpoints of the maintenance stand-in.",
        docs_url="/_maintenance/docs",
        redoc_url=None,
        openapi_url="/_maintenance/openapi.json",
    )
    token = admin_token.encode() if admin_token else None
    # Failed token checks: 10 per client then one a second; and 100 in all then ten a second, for the clients
    # that failed recently (a trainer with the right token is never held up by the others' failures).
    per_client = FailureLimiter(burst=10, per_second=1.0, max_clients=1024)
    overall = FailureLimiter(burst=100, per_second=10.0, max_clients=1)

    @app.api_route("/_maintenance/health", methods=["GET", "HEAD"])
    async def health() -> Response:
        """200 while the shim answers as it should, so a proxy's health check keeps it in rotation; 503 while
        its answers cannot be rendered (they go out as a plain 503 then; the log says why)."""
        if responder.render_failing:
            return Response(UNHEALTHY_BODY, status_code=503, media_type="application/json")
        return Response(HEALTH_BODY, media_type="application/json")

    @app.get("/_maintenance/status")
    async def status(request: Request) -> Response:
        """The `maintenance` object: state, ETA, progress, localized by ?lang, cookie, Accept-Language."""
        service = responder.service_for(request.scope.get("server"))
        facts = RequestFacts.from_scope_headers(request.scope["headers"])
        choice = responder.choose(request.url.path, request.scope["query_string"], facts, service)
        reply = responder.status_reply(service, choice.locale)
        body = reply.body
        if traffic is not None:  # the running counts join the maintenance object (not a hot path)
            counts = json.dumps(traffic.summary(), separators=(",", ":")).encode()
            body = body.rstrip()[:-1] + b',"requests":' + counts + b"}"
        return Response(body, status_code=200, headers=_str_headers(reply.headers))

    @app.put(
        "/_maintenance/progress",
        status_code=204,
        responses={
            401: {"description": "Missing or wrong token"},
            404: {"description": "No token set"},
            429: {"description": "Too many failed token checks; retry after Retry-After seconds"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ProgressIn.model_json_schema()}},
            }
        },
    )
    async def progress(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> Response:
        """Report training progress (bearer MAINT_ADMIN_TOKEN); 404 when no token is configured."""
        if token is None:
            raise HTTPException(404, "Not Found")
        client = request.client.host if request.client else "unix"
        now = time.monotonic()
        # The client's own bucket first; the bucket shared by all only for a client that failed recently:
        # wrong tokens from other addresses never hold up a trainer's right one (ratelimit.py).
        wait = per_client.retry_after(client, now)
        if not wait and per_client.failed_recently(client, now):
            wait = overall.retry_after("*", now)
        if wait:
            raise HTTPException(429, "Too many failed token checks", {"Retry-After": str(wait)})
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token):
            per_client.failed(client, now)
            overall.failed("*", now)
            raise HTTPException(401, "Missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        body = await _read_limited(request, MAX_PROGRESS_BODY)
        try:
            report = ProgressIn.model_validate_json(body)
        except ValidationError as error:
            # Only type, loc and msg: the input may be NaN (not JSON-encodable) and is not echoed back.
            errors = [{key: err[key] for key in ("type", "loc", "msg")} for err in error.errors()]
            raise RequestValidationError(errors) from None
        try:
            tracker = responder.tracker
            tracker.record(tracker.now(), report.step, report.total, "push", report.phase, node=report.node)
        except NodeLimitError as error:
            raise RequestValidationError([{"type": "node_limit", "loc": ("node",), "msg": str(error)}]) from None
        return Response(status_code=204)

    if traffic is not None:
        from ..metrics import add_metrics_route, registry_for

        add_metrics_route(app, registry_for(traffic, responder.tracker, traffic.since))
    return app


async def _read_limited(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"Body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _str_headers(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode(): value.decode() for name, value in headers if name != b"content-length"}

