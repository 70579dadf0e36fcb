"""Whether the shim answers as it must, for the scripts (`maintenance-shim probe`): its health endpoint says
{"maintenance": true}, a sample request gets a 503 with a valid Retry-After, and a CORS preflight from the
first allowed origin is allowed. And which side a proxied URL shows (`probe --side`): the shim's or the live
service's, or, behind Traefik, the side its API shows for a service (`probe --side --traefik-service`). The
JSON and the headers are read here, so the scripts parse neither."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Sequence
from urllib.parse import quote, urlsplit

from .scriptio import pid_alive

TIMEOUT = 3.0
CHECK_HEADERS = {"X-Maintenance-Shim": "check"}  # keeps the probe out of the shim's request counts (traffic.py)


def _request(base: str, method: str, path: str, headers: dict[str, str], timeout: float) -> tuple[int, dict[str, str],
                                                                                                   bytes]:
    """One request to `base` (http://HOST:PORT); (status, lower-cased headers, body)."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        connection.request(method, (parts.path.rstrip("/") + path) or "/", headers=headers)
        response = connection.getresponse()
        body = response.read(65536)
        return response.status, {name.lower(): value for name, value in response.getheaders()}, body
    finally:
        connection.close()


def _base(address: str) -> str:
    return address if "://" in address else f"http://{address}"


def says_maintenance(body: bytes) -> bool:
    """The health endpoint's body is the shim's: a JSON object with "maintenance": true."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("maintenance") is True


def first_origin(origins: str) -> str:
    """The origin a preflight is sent from: the first of MAINT_CORS_ORIGINS (comma-joined by `env --shell`);
    `*` allows any, so a made-up one."""
    first = next((item.strip() for item in origins.split(",") if item.strip()), "")
    return "https://example.com" if first == "*" else first


def check_shim(address: str, verify_path: str = "/", origins: str = "", timeout: float = TIMEOUT) -> str:
    """"" when the shim at HOST:PORT answers as it must, else why not (one line)."""
    base = _base(address)
    try:
        status, _, body = _request(base, "GET", "/_maintenance/health", {}, timeout)
    except (OSError, http.client.HTTPException):
        status, body = 0, b""
    if not says_maintenance(body):
        return f'health check {base}/_maintenance/health did not answer {{"maintenance": true}}'
    try:
        status, headers, _ = _request(base, "GET", verify_path, CHECK_HEADERS, timeout)
    except (OSError, http.client.HTTPException) as error:
        return f"sample request {base}{verify_path} did not answer 503 ({error})"
    if status != 503:
        return f"sample request {base}{verify_path} did not answer 503 (HTTP {status})"
    retry = headers.get("retry-after", "")
    if not retry.isdigit() or int(retry) < 1:
        return f"sample request {base}{verify_path} answered 503 without a valid Retry-After"
    origin = first_origin(origins)
    if origin:
        preflight = {"Origin": origin, "Access-Control-Request-Method": "POST"}
        try:
            status, headers, _ = _request(base, "OPTIONS", verify_path, preflight, timeout)
        except (OSError, http.client.HTTPException) as error:
            return f"CORS preflight from {origin} to {base} was not allowed ({error})"
        if not 200 <= status < 300 or "access-control-allow-origin" not in headers:
            return f"CORS preflight from {origin} to {base} was not allowed (HTTP {status})"
    return ""


def wait_ready(addresses: Sequence[str], verify_path: str, origins: str, wait: float, pid: int | None,
               interval: float = 0.05) -> tuple[int, str]:
    """Until every address passes check_shim: (0, ""); (3, "") when `pid` (the shim just launched) exits
    first; (1, why) when `wait` seconds pass."""
    deadline = time.monotonic() + wait
    for address in addresses:
        while True:
            if pid is not None and not pid_alive(pid):
                return 3, ""
            why = check_shim(address, verify_path, origins)
            if not why:
                break
            if time.monotonic() >= deadline:
                return 1, why
            time.sleep(interval)
    return 0, ""


def side(url: str, timeout: float = 2.0) -> str:
    """"shim" when URL's /_maintenance/health says maintenance, else "live" (another answer, or none)."""
    try:
        _, _, body = _request(_base(url), "GET", "/_maintenance/health", {}, timeout)
    except (OSError, http.client.HTTPException):
        return "live"
    return "shim" if says_maintenance(body) else "live"


def traefik_side(api: str, service: str, shim_url: str, timeout: float = TIMEOUT) -> str:
    """The side Traefik's API (its base URL) shows for `service` (e.g. studio@file): "shim" when it is
    enabled and one of its servers is `shim_url`, "live" when it is enabled without it, "" when the API
    does not show it enabled (not loaded yet, a config error, no answer)."""
    try:
        status, _, body = _request(_base(api), "GET", f"/api/http/services/{quote(service, safe='@')}", {}, timeout)
        data = json.loads(body)
    except (OSError, http.client.HTTPException, ValueError, RecursionError):
        return ""
    if status != 200 or not isinstance(data, dict) or data.get("status") != "enabled":
        return ""
    balancer = data.get("loadBalancer")
    servers = balancer.get("servers") if isinstance(balancer, dict) else None
    urls = [item.get("url") for item in servers if isinstance(item, dict)] if isinstance(servers, list) else []
    return "shim" if shim_url in urls else "live"


def wait_sides(targets: Sequence[str], want: str, wait: float, traefik_api: str | None = None,
               interval: float = 0.1) -> list[str]:
    """Until every target shows the `want` side (shim|live), within one deadline `wait` seconds away; the
    targets that did not. A target is a URL (its health endpoint says which side answers), or with
    `traefik_api` a SERVICE@PROVIDER=SHIM_URL (the side Traefik's API shows for that service)."""
    deadline = time.monotonic() + wait
    late = []
    for target in targets:
        service, _, shim_url = target.partition("=")
        while (side(target) if traefik_api is None else traefik_side(traefik_api, service, shim_url)) != want:
            if time.monotonic() >= deadline:
                late.append(target)
                break
            time.sleep(interval)
    return late
