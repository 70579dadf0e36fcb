"""Arbitrary headers, cookies, paths and query strings against a real shim: always the documented answer."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import Shim, ShimFactory, request
from tests.support.nginx import Nginx, start_nginx
from tests.support.rawfuzz import bad_statuses, connection_bytes, exchange

PROBE = "<x-probe onerror=1>"
# Characters allowed in an HTTP/1.1 field value (VCHAR, SP, HTAB, obs-text); the wire parser rejects the rest.
FIELD_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=300
)
ANY_TEXT = st.text(max_size=120)
METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
HEADER_NAMES = st.sampled_from(
    ["Accept", "Accept-Language", "Cookie", "Origin", "Access-Control-Request-Method", "Content-Type",
     "Expect", "If-None-Match", "Range", "Authorization", "X-Forwarded-For", "Content-Encoding"]
)


@pytest.fixture(scope="module")
def fuzz_shim(module_shim_launcher: ShimFactory) -> Shim:
    """A shim with every feature on."""
    return module_shim_launcher(
        services=["studio"],
        env={
            "MAINT_CORS_ORIGINS": "https://studio.example.com",
            "MAINT_HEALTH_PATHS": "/healthz",
            "MAINT_ETA": "30m",
            "MAINT_ADMIN_TOKEN": "fuzz-token-0123456789",
        },
    )


@pytest.fixture(scope="module")
def connection(fuzz_shim: Shim) -> Iterator[http.client.HTTPConnection]:
    """One keep-alive connection, reopened when the server closes it."""
    conn = http.client.HTTPConnection("127.0.0.1", fuzz_shim.port, timeout=10)
    yield conn
    conn.close()


def send(conn: http.client.HTTPConnection, method: str, target: str, headers: list[tuple[str, str]],
         body: bytes) -> tuple[int, dict[str, str], bytes]:
    for attempt in range(2):
        try:
            conn.putrequest(method, target, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value.encode("latin-1"))
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            data = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        except (http.client.HTTPException, ConnectionError):
            conn.close()
            if attempt:
                raise
    raise AssertionError("unreachable")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=METHODS,
    path=ANY_TEXT,
    query=ANY_TEXT,
    headers=st.lists(st.tuples(HEADER_NAMES, FIELD_TEXT), max_size=6),
    cookie=FIELD_TEXT,
    body=st.binary(max_size=200),
    probe=st.booleans(),
)
def test_always_the_documented_answer(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    cookie: str,
    body: bytes,
    probe: bool,
) -> None:
    if probe:
        path, query = path + PROBE, f"lang={PROBE}&format=html&{query}"
        headers = [*headers, ("Accept-Language", PROBE), ("Accept", f"text/html, {PROBE}")]
    target = "/" + quote(path, safe="/") + ("?" + quote(query, safe="=&") if query else "")
    status, response_headers, data = send(
        connection, method, target, [*headers, ("Cookie", f"lang={cookie}")], body
    )
    reserved = target.startswith("/_maintenance")
    preflight = method == "OPTIONS" and any(
        name == "Origin" and value == "https://studio.example.com" for name, value in headers
    )
    health = target.split("?")[0] == "/healthz" and method in ("GET", "HEAD")
    if reserved:
        assert status in (200, 204, 401, 404, 405, 422), status
    elif preflight:
        assert status in (200, 503), status
    elif health:
        assert status == 200
    else:
        assert status == 503, (status, target, headers)
        assert response_headers["cache-control"] == "no-store"
        assert int(response_headers["retry-after"]) >= 1
    assert status != 500
    assert response_headers.get("cache-control") == "no-store"
    assert PROBE.encode() not in data and b"<x-probe" not in data


# Raw byte streams (tests/support/rawfuzz.py): a few thousand Hypothesis-built and mutated requests straight at the
# shim's listeners and through nginx; bench/fuzz_raw.py runs the same for longer.

def raw_settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def raw_shim(module_shim_launcher: ShimFactory) -> Shim:
    return module_shim_launcher(
        services=["studio", "video:api"],
        env={
            "MAINT_CORS_ORIGINS": "https://studio.example.com",
            "MAINT_HEALTH_PATHS": "/healthz",
            "MAINT_ADMIN_TOKEN": "fuzz-token-0123456789",
            "MAINT_HEADER_TIMEOUT": "2",
        },
    )


@pytest.fixture(scope="module")
def raw_nginx(raw_shim: Shim, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    """The shipped nginx site in maintenance: both services' upstreams are the shim's listeners."""
    nginx = start_nginx(tmp_path_factory.mktemp("fuzz-nginx"),
                        {"studio": raw_shim.ports[0], "video": raw_shim.ports[1]})
    yield nginx
    nginx.stop()


@raw_settings(600)
@given(data=connection_bytes())
def test_raw_requests_straight_at_the_shim(raw_shim: Shim, data: bytes) -> None:
    response = exchange(raw_shim.ports[hash(data) % 2], data)
    assert bad_statuses(response) == [], response[:300]


@raw_settings(150)
@given(data=connection_bytes())
def test_raw_requests_at_the_admin_listener(raw_shim: Shim, data: bytes) -> None:
    response = exchange(raw_shim.admin_port, data)
    assert bad_statuses(response) == [], response[:300]


@pytest.mark.proxies
@raw_settings(500)
@given(data=connection_bytes())
def test_raw_requests_through_nginx(raw_nginx: Nginx, data: bytes) -> None:
    response = exchange(raw_nginx.port, data)
    assert bad_statuses(response, proxy=b"nginx") == [], response[:300]


def test_no_traceback_after_the_raw_requests(raw_shim: Shim) -> None:
    """Run after the three above (pytest keeps the file's order): the shim logged no traceback, no 500."""
    output = raw_shim.output()
    assert "Traceback" not in output and "Exception in ASGI application" not in output, output[-3000:]
    assert raw_shim.proc.poll() is None
    assert request(raw_shim, "GET", "/")[0] == 503
