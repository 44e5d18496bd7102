"""Building data responses: version headers, ETags and 304s, gzip bodies, the shared cache."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_304_NOT_MODIFIED, HTTP_503_SERVICE_UNAVAILABLE

from appliance import __version__
from appliance.data.answers import decompress
from server.data import VersionHandle
from server.errors import ERROR_STATUSES
from server.metrics import CACHE_HITS, CACHE_MISSES
from server.node_metrics import revision
from server.runtime import Runtime, runtime_of
from server.schemas import ErrorBody

JSON = "application/json"
GZIP_VARIANT = "-gz"  # the gzip and the plain body of one answer are different representations
# What else an answer's bytes depend on: the server that made them. The response cache outlives a
# run, and a client keeps its ETags, so after an upgrade neither may give an answer that an older
# server shaped (a field it did not have yet). Raise ANSWER_REVISION when a shape changes.
ANSWER_REVISION = 1
RELEASE_KEY = f"{ANSWER_REVISION}|{__version__}|{revision()}|".encode()


class NoDataError(HTTPException):
    """No data version has been imported on this node yet."""

    status_code = HTTP_503_SERVICE_UNAVAILABLE


def runtime(request: Request[Any, Any, Any]) -> Runtime:
    """The worker runtime of the app serving `request`."""
    return runtime_of(request.app)


def require_version(handle: VersionHandle | None) -> VersionHandle:
    """The leased version, or 503 when nothing was imported yet."""
    if handle is None:
        msg = "no data version has been imported yet (appliance import, or POST /api/v1/data/packs)"
        raise NoDataError(detail=msg)
    return handle


def etag_of(vid: str, path: str, query: bytes, variant: str = "") -> str:
    """A strong ETag: the version (immutable), the exact request target, the encoding, and the
    server release that shapes the answer (RELEASE_KEY)."""
    target = RELEASE_KEY + path.encode() + b"?" + query
    return f'"{vid}-{hashlib.blake2b(target, digest_size=8).hexdigest()}{variant}"'


def etag_for(handle: VersionHandle, request: Request[Any, Any, Any], variant: str = "") -> str:
    """The ETag of `request`'s answer from `handle`."""
    return etag_of(
        handle.vid, request.scope["path"], request.scope.get("query_string", b""), variant
    )


def names_etag(header: str | None, etag: str) -> bool:
    """Whether an If-None-Match value names `etag` (or *), so a 304 will do."""
    if not header:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return etag in candidates or "*" in candidates


def matches(request: Request[Any, Any, Any], etag: str) -> bool:
    """Whether the request's If-None-Match names `etag`."""
    return names_etag(request.headers.get("if-none-match"), etag)


_GZIP_ANSWERS: dict[str, bool] = {}  # a client sends the same Accept-Encoding every time


def takes_gzip(header: str) -> bool:
    """Whether an Accept-Encoding value takes gzip (and does not refuse it with q=0)."""
    known = _GZIP_ANSWERS.get(header)
    if known is not None:
        return known
    answer = False
    for part in header.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            answer = params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
            break
    if len(_GZIP_ANSWERS) < 256:
        _GZIP_ANSWERS[header] = answer
    return answer


def accepts_gzip(request: Request[Any, Any, Any]) -> bool:
    """Whether the client takes a gzip body."""
    return takes_gzip(request.headers.get("accept-encoding", ""))


def version_headers(handle: VersionHandle, etag: str) -> dict[str, str]:
    """Headers every data answer carries."""
    return {
        "x-data-version": handle.vid,
        "etag": etag,
        "cache-control": "no-cache",
        "vary": "accept-encoding, authorization",
    }


def trace(request: Request[Any, Any, Any], handle: VersionHandle) -> None:
    """Note the version on the request, for its log line."""
    state = request.scope.setdefault("state", {})
    state["data_version"] = handle.vid
    state["dataset_id"] = handle.meta.get("dataset_id")
    state["model_version"] = handle.meta.get("model_version")


def not_modified(handle: VersionHandle, etag: str) -> Response[Any]:
    """A 304 for a client that already holds this version's answer."""
    return Response(b"", status_code=HTTP_304_NOT_MODIFIED, headers=version_headers(handle, etag))


def gzip_answer(gzip: bool, handle: VersionHandle, etag: str, stored: bytes) -> Response[Any]:
    """Send a precomputed gzip body as it is, or inflated for clients that do not take gzip."""
    headers = version_headers(handle, etag)
    if gzip:
        headers["content-encoding"] = "gzip"
        return Response(stored, media_type=JSON, headers=headers)
    return Response(decompress(stored), media_type=JSON, headers=headers)


def precomputed_answer(
    request: Request[Any, Any, Any], handle: VersionHandle, kind: str, item_id: str
) -> Response[Any]:
    """An answer built at import: 304 if the client has it, else the stored body; 404 if none."""
    gzip = accepts_gzip(request)
    etag = etag_for(handle, request, GZIP_VARIANT if gzip else "")
    trace(request, handle)
    if matches(request, etag):
        return not_modified(handle, etag)
    stored = handle.answer(kind, item_id)
    if stored is None:
        raise NotFoundException(detail=f"no {kind} for item {item_id} in data version {handle.vid}")
    return gzip_answer(gzip, handle, etag, stored)


def fresh_answer(
    request: Request[Any, Any, Any], handle: VersionHandle, compute: Callable[[], bytes]
) -> Response[Any]:
    """An answer made from memory in microseconds: 304 if the client has it, else made now."""
    etag = etag_for(handle, request)
    trace(request, handle)
    if matches(request, etag):
        return not_modified(handle, etag)
    return Response(compute(), media_type=JSON, headers=version_headers(handle, etag))


async def cached_answer(
    request: Request[Any, Any, Any],
    handle: VersionHandle,
    compute: Callable[[], bytes],
    variant: str = "",
) -> Response[Any]:
    """A query answer: 304 if the client has it, else from the shared cache, else computed.

    `variant` names what else the answer depends on besides the version and the request.
    """
    etag = etag_for(handle, request, variant)
    trace(request, handle)
    if matches(request, etag):
        return not_modified(handle, etag)
    rt = runtime(request)
    key = f"{handle.vid}|{etag}"
    body = rt.cache.get(key)
    if body is None:
        body = await _compute_once(rt, key, compute)
    else:
        rt.metrics.inc(CACHE_HITS)
    return Response(body, media_type=JSON, headers=version_headers(handle, etag))


_computing: dict[str, asyncio.Future[bytes]] = {}


async def _compute_once(rt: Runtime, key: str, compute: Callable[[], bytes]) -> bytes:
    """Compute a missing answer once per worker, however many requests ask for it at once."""
    pending = _computing.get(key)
    if pending is not None:
        return await asyncio.shield(pending)
    future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    _computing[key] = future
    try:
        rt.metrics.inc(CACHE_MISSES)
        body = await anyio.to_thread.run_sync(compute)
        rt.cache.set(key, body)
        future.set_result(body)
    except BaseException as exc:
        future.set_exception(exc)
        future.exception()  # retrieved here, so a miss nobody else awaited is not reported twice
        raise
    finally:
        del _computing[key]
    return body


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the errors a handler can answer, all in the one envelope."""
    return {
        status: ResponseSpec(
            data_container=ErrorBody, description=ERROR_STATUSES[status].description
        )
        for status in statuses
    }


READ_ERRORS = error_responses(400, 401, 404, 414, 429, 503)
ADMIN_ERRORS = error_responses(400, 401, 403, 404, 408, 409, 413, 422, 429, 503, 507)
