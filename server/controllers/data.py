"""Data versions: what is served, what was imported, and the admin actions on them."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio.to_thread
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.exceptions import ClientException, HTTPException, NotFoundException
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_409_CONFLICT,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_503_SERVICE_UNAVAILABLE,
    HTTP_507_INSUFFICIENT_STORAGE,
)

from appliance.data.import_report import ImportReport
from appliance.data.importer import FREE_SPACE_FACTOR, ImportOptions, import_pack, rollback
from appliance.data.run_layout import UPLOAD_PREFIX, UPLOAD_SUFFIX
from appliance.data.store import DataStore
from appliance.data.version_build import BuildLimits
from appliance.errors import ApplianceError, NodeFault, PackRejected, StoreError
from appliance.faults import os_fault
from appliance.fsio import format_bytes
from appliance.packs.result_pack import format_timestamp
from appliance.trust.sshsig import load_allowed_signers
from server.exports import EXPORT_PATH, EXPORT_TABLES, FORMATS
from server.responses import (
    ADMIN_ERRORS,
    READ_ERRORS,
    NoDataError,
    cached_answer,
    require_version,
    runtime,
    trace,
)
from server.schemas import (
    AuditTrailStatus,
    DataVersion,
    DataVersions,
    ImportResult,
    RollbackRequest,
    TableExport,
    VersionExports,
)
from server.security import actor_of, require_admin, require_viewer

HISTORY_LIMIT = 200
UPLOADED_PACK = "the uploaded pack"


@dataclass
class PackUploadOperation(Operation):
    """OpenAPI of the upload: the request body is the .pack file itself (it is streamed, not parsed)."""

    def __post_init__(self) -> None:
        binary = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
        self.request_body = RequestBody(
            content={"application/octet-stream": OpenAPIMediaType(schema=binary)},
            description="The result pack file (`*.pack`), as made by `mlws pack`.",
            required=True,
        )


class PackRefused(HTTPException):
    """The uploaded pack was refused; `reason` is the importer's reason code."""

    status_code = HTTP_422_UNPROCESSABLE_ENTITY

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail=detail, extra={"reason": reason})


class StoreBusy(HTTPException):
    """The store could not take the change now (locked, already current)."""

    status_code = HTTP_409_CONFLICT


class NodeFaulted(HTTPException):
    """A fault of the node, not of the request: 507 when out of disk space, else 503."""

    def __init__(self, fault: NodeFault, detail: str | None = None) -> None:
        full = fault.reason == "disk-full"
        status = HTTP_507_INSUFFICIENT_STORAGE if full else HTTP_503_SERVICE_UNAVAILABLE
        super().__init__(
            detail=detail or str(fault), status_code=status, extra={"reason": fault.reason}
        )


def describe(
    report: ImportReport, current: bool, imported_via: dict[str, Any] | None = None
) -> DataVersion:
    """An import report as the API shows it: the fields of `appliance versions --json`, and
    `imported_via`, the `by` of the version's import in the audit trail (when it is known)."""
    return DataVersion(
        version=report.version, current=current, **report.summary(), imported_via=imported_via
    )


def import_actors(history: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Version id -> who imported it (`by` of its import event): a user on the node, or a token."""
    return {
        event["version"]: event["by"]
        for event in history
        if event.get("event") == "import"
        and isinstance(event.get("version"), str)
        and isinstance(event.get("by"), dict)
    }


def describe_current(store: DataStore, report: ImportReport) -> DataVersion:
    """The served version, with who imported it from the whole trail (in a worker thread)."""
    return describe(report, True, import_actors(store.history()).get(report.version))


def exports_of(report: ImportReport, current: bool) -> VersionExports:
    """What a version offers for export: each gold table, with links that name the version."""
    tables = [
        TableExport(
            table.name,
            report.rows.get(table.name),
            list(table.filters),
            *(f"{EXPORT_PATH}/{table.name}.{f}?version={report.version}" for f in FORMATS),
        )
        for table in EXPORT_TABLES.values()
    ]
    return VersionExports(report.version, current, report.dataset_id, report.generated_at, tables)


def list_versions(store: DataStore) -> DataVersions:
    """Every version and the latest history events (in a worker thread)."""
    current = store.current_vid()
    kept = store.versions()
    events = store.history()
    actors = import_actors(events)
    versions = [describe(v.report, v.vid == current, actors.get(v.vid)) for v in kept]
    history = events[-HISTORY_LIMIT:]
    trail = store.verify_history()
    status = AuditTrailStatus(trail.ok, trail.lines, trail.first_bad_line, trail.describe())
    exports = [exports_of(v.report, v.vid == current) for v in kept]
    return DataVersions(current, versions, history, status, exports)


def too_large(limit: int) -> ClientException:
    """The 413 of a pack over the upload limit."""
    msg = f"pack is larger than the {limit >> 20} MiB upload limit (APPLIANCE_MAX_UPLOAD_MB)"
    return ClientException(detail=msg, status_code=HTTP_413_REQUEST_ENTITY_TOO_LARGE)


def check_room_for(folder: Path, size: int) -> None:
    """Refuse, before reading a byte, a pack the node has no room to receive and import."""
    need = size * (1 + FREE_SPACE_FACTOR)  # the upload itself, then the import's own need
    free = shutil.disk_usage(folder).free
    if free < need:
        msg = (
            f"not enough free space on this node for a {format_bytes(size)} pack: need about "
            f"{format_bytes(need)} (the upload and its import), {format_bytes(free)} free; "
            "free disk space on the data dir"
        )
        raise NodeFaulted(NodeFault("disk-full", msg))


async def receive_pack(request: Request[Any, Any, Any], folder: Path, limit: int) -> Path:
    """Stream the request body to a private file, refusing it past `limit` bytes.

    A Content-Length over the limit, or more than the node has room for, is refused before a
    byte is read. A body that stalls or is cut short is refused by the request edge (408, 400).
    """
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    announced = request.content_length
    if announced is not None:
        if announced > limit:
            raise too_large(limit)
        check_room_for(folder, announced)
    fd, name = tempfile.mkstemp(prefix=UPLOAD_PREFIX, suffix=UPLOAD_SUFFIX, dir=folder)
    path = Path(name)
    received = 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    break
                out.write(chunk)
    except OSError as exc:
        path.unlink(missing_ok=True)
        fault = os_fault(exc, "receiving the pack")
        raise NodeFaulted(fault, about_upload(str(fault), path)) from exc
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if received > limit:
        path.unlink()
        raise too_large(limit)
    if received == 0:
        path.unlink()
        raise ClientException(detail="empty request body: send the .pack file as the body")
    return path


def about_upload(message: str, pack: Path) -> str:
    """An importer's message about the temporary file, as the client knows it: the uploaded pack."""
    return message.replace(str(pack), UPLOADED_PACK).replace(pack.name, UPLOADED_PACK)


class DataController(Controller):
    """The served data version, the list of versions, and the admin actions."""

    path = "/api/v1/data"
    tags = ["data"]  # noqa: RUF012

    @get(
        "/current",
        operation_id="get_current_version",
        summary="The data version being served",
        guards=[require_viewer],
        responses=READ_ERRORS,
    )
    async def get_current(self, request: Request[Any, Any, Any]) -> Response[DataVersion]:
        with runtime(request).data.lease() as leased:
            handle = require_version(leased)
            store, report = runtime(request).store, handle.report
            return await cached_answer(
                request, handle, lambda: msgspec.json.encode(describe_current(store, report))
            )

    @get(
        "/versions",
        operation_id="list_versions",
        summary="Every data version and the import history",
        guards=[require_viewer],
        responses=READ_ERRORS,
    )
    async def get_versions(self, request: Request[Any, Any, Any]) -> DataVersions:
        try:
            return await anyio.to_thread.run_sync(list_versions, runtime(request).store)
        except StoreError as exc:
            raise NoDataError(detail=str(exc)) from exc

    @post(
        "/refresh",
        operation_id="refresh_data",
        summary="Switch this worker to the current version now",
        guards=[require_admin],
        status_code=HTTP_200_OK,
        responses=ADMIN_ERRORS,
    )
    async def refresh(self, request: Request[Any, Any, Any]) -> DataVersion:
        rt = runtime(request)
        handle = require_version(await anyio.to_thread.run_sync(rt.data.refresh))
        trace(request, handle)
        store = rt.store.acting_as(actor_of(request))
        try:
            await anyio.to_thread.run_sync(
                partial(store.record, "refresh", version=handle.vid, worker=rt.worker)
            )
        except OSError as exc:
            raise NodeFaulted(os_fault(exc, "recording the refresh in the audit trail")) from exc
        return await anyio.to_thread.run_sync(describe_current, rt.store, handle.report)

    @post(
        "/packs",
        operation_id="upload_pack",
        summary="Upload a result pack (the file as the request body); import it like `appliance import`",
        guards=[require_admin],
        status_code=HTTP_201_CREATED,
        operation_class=PackUploadOperation,
        request_max_body_size=None,
        responses=ADMIN_ERRORS,
    )
    async def upload_pack(self, request: Request[Any, Any, Any]) -> ImportResult:
        rt = runtime(request)
        pack = await receive_pack(
            request, rt.settings.folders.uploads, rt.settings.max_upload_bytes
        )
        try:
            signers = load_allowed_signers(rt.settings.signers)
            options = ImportOptions(
                limits=BuildLimits(rt.settings.import_memory, rt.settings.import_threads),
                max_future_hours=rt.settings.max_future_hours,
            )
            store = rt.store.acting_as(actor_of(request))
            result = await anyio.to_thread.run_sync(import_pack, store, pack, signers, options)
        except PackRejected as exc:
            raise PackRefused(exc.reason, about_upload(str(exc), pack)) from exc
        except NodeFault as exc:
            raise NodeFaulted(exc, about_upload(str(exc), pack)) from exc
        except ApplianceError as exc:
            raise StoreBusy(detail=about_upload(str(exc), pack)) from exc
        finally:
            pack.unlink(missing_ok=True)
        await anyio.to_thread.run_sync(rt.data.refresh)
        manifest = result.manifest
        return ImportResult(
            result.vid, result.previous, manifest.pack_id, manifest.dataset_id,
            format_timestamp(manifest.generated_at), result.rows,
        )  # fmt: skip

    @post(
        "/rollback",
        operation_id="rollback_data",
        summary="Serve another version again",
        guards=[require_admin],
        status_code=HTTP_200_OK,
        responses=ADMIN_ERRORS,
    )
    async def rollback_version(
        self, request: Request[Any, Any, Any], data: RollbackRequest
    ) -> DataVersion:
        rt = runtime(request)
        try:
            store = rt.store.acting_as(actor_of(request))
            await anyio.to_thread.run_sync(rollback, store, data.version)
        except NodeFault as exc:
            raise NodeFaulted(exc) from exc
        except StoreError as exc:
            if data.version not in rt.store.version_ids():
                raise NotFoundException(
                    detail=f"no data version {data.version!r} on this node"
                ) from exc
            raise StoreBusy(detail=str(exc)) from exc
        handle = require_version(await anyio.to_thread.run_sync(rt.data.refresh))
        return await anyio.to_thread.run_sync(describe_current, rt.store, handle.report)


__all__ = ["DataController", "PackRefused", "Response"]
