"""JSON for programs: one body that every client we test reads (`api` services), or OpenAI's error
object exactly (`openai` services). What paths under MAINT_JSON_PATHS and `*/*` on an API service get."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from . import Renderer, ResponseFormat, ServiceInfo

if TYPE_CHECKING:
    from ...progress.tracker import Snapshot
    from ..texts import Texts

# OpenAI's own 503 error object (type `service_unavailable_error`; the older API sent `server_error`),
# with a code saying why rather than OpenAI's `server_is_overloaded`: clients that special-case that
# code retry it on their own schedule, and this is no overload.
OPENAI_ERROR_TYPE = "service_unavailable_error"
OPENAI_ERROR_CODE = "service_unavailable"


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON, as every JSON answer of the shim is written."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def openai_error(detail: str, maintenance: dict[str, Any]) -> dict[str, Any]:
    """The JSON 503 of an `openai` service: OpenAI's error object, plus what huggingface_hub shows.

    openai-python (and the SDKs generated like it) put `error.message` into the exception text
    (`_base_client.py`, `_make_status_error_from_response`: `body.get("error", body)["message"]`).
    huggingface_hub's `hf_raise_for_status` (`utils/_http.py`, `_format`) shows a string `error`, an
    `error_description`, and each `errors[].message`; an `error` object it shows only as its Python
    repr (which would escape a no-break space: the sentences have plain ones, texts.plain_texts). A
    string `error` would cost openai-python the message, so `errors: [{"message": ...}]` carries the
    same sentence for huggingface_hub, which then shows it verbatim on its own line.
    """
    return {
        "error": {"message": detail, "type": OPENAI_ERROR_TYPE, "param": None, "code": OPENAI_ERROR_CODE},
        "errors": [{"message": detail}],
        "maintenance": maintenance,
    }


def api_error(detail: str, maintenance: dict[str, Any]) -> dict[str, Any]:
    """The JSON 503 of an `api` service: one body that every client we test reads (docs/http.md).

    FastAPI's `detail` (what existing error handling reads), OpenAI's error object (openai-python and
    the SDKs generated like it show `error.message`), `errors[].message` (huggingface_hub shows it on a
    line of its own) and the `maintenance` object, all with the same sentence.
    """
    return {"detail": detail, **openai_error(detail, maintenance)}


class Json(ResponseFormat):
    name = "json"
    media_types = ("application/json",)
    query_values = ("json",)
    content_type = b"application/json"
    precedence = 20
    default_for_kinds = ("api", "openai")
    for_json_paths = True

    @classmethod
    def render(
        cls, renderer: Renderer, snapshot: Snapshot, service: ServiceInfo, locale: str, texts: Texts,
        maintenance: dict[str, Any],
    ) -> bytes:
        if service.kind == "openai":
            return json_bytes(openai_error(texts.detail, maintenance))
        return json_bytes(api_error(texts.detail, maintenance))


FORMAT = Json
