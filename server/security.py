"""Bearer tokens for admin and (optionally) read endpoints, compared in constant time."""

from __future__ import annotations

import hmac
import math

from litestar.connection import ASGIConnection
from litestar.exceptions import (
    NotAuthorizedException,
    PermissionDeniedException,
    TooManyRequestsException,
)
from litestar.handlers.base import BaseRouteHandler

from appliance.settings import ServerSettings
from server.runtime import runtime_of


def bearer_of(header: str) -> str | None:
    """The token of an `Authorization: Bearer ...` header value, if it is one."""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def bearer_token(connection: ASGIConnection) -> str | None:  # type: ignore[type-arg]
    """The token of the request's `Authorization: Bearer ...` header, if any."""
    return bearer_of(connection.headers.get("authorization", ""))


def may_read(token: str | None, settings: ServerSettings) -> bool:
    """Whether a request with `token` may use the read endpoints (the viewer or the admin token)."""
    if not settings.viewer_token:
        return True
    return token is not None and (
        token_matches(token, settings.viewer_token) or token_matches(token, settings.admin_token)
    )


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison, so timing does not leak how much of a token was right."""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def require_admin(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Guard of the admin endpoints: refresh, upload, rollback."""
    settings = runtime_of(connection.app).settings
    if not settings.admin_token:
        msg = "admin endpoints are disabled on this node (set APPLIANCE_ADMIN_TOKEN_FILE)"
        raise PermissionDeniedException(msg)
    token = bearer_token(connection)
    if token is None:
        msg = "admin token required (Authorization: Bearer ...)"
        raise NotAuthorizedException(msg, headers={"WWW-Authenticate": 'Bearer realm="admin"'})
    if token_matches(token, settings.admin_token):
        return
    if token_matches(token, settings.viewer_token):
        msg = "a viewer token cannot use admin endpoints"
        raise PermissionDeniedException(msg)
    msg = "admin token not valid"
    raise NotAuthorizedException(
        msg, headers={"WWW-Authenticate": 'Bearer realm="admin", error="invalid_token"'}
    )


def require_viewer(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Guard of the read endpoints when the node sets a viewer token (admins may read too)."""
    settings = runtime_of(connection.app).settings
    if not settings.viewer_token:
        return
    token = bearer_token(connection)
    if token is None:
        msg = "viewer token required (Authorization: Bearer ...)"
        raise NotAuthorizedException(msg, headers={"WWW-Authenticate": 'Bearer realm="data"'})
    if not may_read(token, settings):
        # A read route also accepts the admin token: a wrong guess here must cost what a wrong
        # guess at an admin route costs, or the read budget would be the way to guess it.
        charge_a_bad_token(connection)
        msg = "token not valid"
        raise NotAuthorizedException(
            msg, headers={"WWW-Authenticate": 'Bearer realm="data", error="invalid_token"'}
        )


def charge_a_bad_token(connection: ASGIConnection) -> None:  # type: ignore[type-arg]
    """Count a wrong token against the client's admin budget; 429 once it is spent."""
    runtime = runtime_of(connection.app)
    client = connection.client.host if connection.client else "unknown"
    allowed, retry_after = runtime.admin_limiter.hit(f"admin:{client}")
    if not allowed:
        runtime.metrics.inc("appliance_rate_limited_total", kind="admin")
        msg = "too many bad tokens from this address; slow down"
        raise TooManyRequestsException(
            msg, headers={"retry-after": str(max(1, math.ceil(retry_after)))}
        )
