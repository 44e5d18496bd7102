"""The API's error statuses as data: the code each one carries in the error envelope and what
OpenAPI says of it. The exception handlers, the request edge and the OpenAPI entries read it."""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from server.schemas import ErrorBody, ErrorDetail


class ErrorStatus(NamedTuple):
    """One HTTP error status of the API."""

    code: str
    description: str


ERROR_STATUSES: dict[int, ErrorStatus] = {
    400: ErrorStatus("bad_request", "A parameter or the body is not valid."),
    401: ErrorStatus("unauthorized", "A bearer token is required, or the one given is not valid."),
    403: ErrorStatus(
        "forbidden", "Not allowed with this token, or admin endpoints are disabled on this node."
    ),
    404: ErrorStatus("not_found", "No such item or data version."),
    405: ErrorStatus("method_not_allowed", "The path does not take this method."),
    408: ErrorStatus(
        "request_timeout", "The request body stopped arriving for APPLIANCE_BODY_TIMEOUT seconds."
    ),
    409: ErrorStatus(
        "conflict", "The store cannot take this change now (locked, already current)."
    ),
    413: ErrorStatus("too_large", "The uploaded pack is over APPLIANCE_MAX_UPLOAD_MB."),
    414: ErrorStatus("uri_too_long", "The path or the query string is too long."),
    422: ErrorStatus(
        "pack_rejected",
        "The pack was refused; `reason` says why (signature, truncated, schema, replay, ...).",
    ),
    429: ErrorStatus("rate_limited", "Too many requests from this address; see Retry-After."),
    500: ErrorStatus("internal_error", "A fault of the server; its log has the details."),
    503: ErrorStatus(
        "unavailable",
        "No data version has been imported yet, or a fault of the node; `reason` says which.",
    ),
    507: ErrorStatus(
        "insufficient_storage", "The node has no room for this pack (`reason`: disk-full)."
    ),
}
UNLISTED_CODE = "error"  # the code of a status the table does not name


def error_code(status: int) -> str:
    """The code an error envelope carries for `status`."""
    entry = ERROR_STATUSES.get(status)
    return entry.code if entry else UNLISTED_CODE


def error_envelope(status: int, message: str, request_id: str, reason: str | None = None) -> bytes:
    """The one error envelope every error answers with, encoded."""
    detail = ErrorDetail(status, error_code(status), message, request_id, reason)
    return msgspec.json.encode(ErrorBody(detail))
