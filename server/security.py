"""Bearer tokens for the admin and (when the node has viewer tokens) the read endpoints.

Tokens are looked up in the worker's TokenGate (server/tokens.py): named tokens of the book
and the bootstrap tokens of the settings. A refused token answers 401 with a reason code
(`token_invalid`, `token_expired`, `token_revoked`) and costs the client's admin budget, so a
token cannot be guessed at the read rate. The caller of an admin action is kept in the
request's scope state for the audit trail (`caller_of`).
"""

from __future__ import annotations

import math
from typing import Any, NoReturn

from litestar.connection import ASGIConnection
from litestar.exceptions import (
    NotAuthorizedException,
    PermissionDeniedException,
    ServiceUnavailableException,
    TooManyRequestsException,
)
from litestar.handlers.base import BaseRouteHandler

from appliance.access.actors import Actor, api_actor
from appliance.access.tokens import TOKEN_BOOK_UNUSABLE, Caller, Refused
from server.metrics import RATE_LIMITED
from server.runtime import runtime_of
from server.tokens import TokenGate

CALLER_STATE = "caller"  # scope["state"] key of the Caller an admin guard let through


def bearer_of(header: str) -> str | None:
    """The token of an `Authorization: Bearer ...` header value, if it is one."""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def bearer_token(connection: ASGIConnection) -> str | None:  # type: ignore[type-arg]
    """The token of the request's `Authorization: Bearer ...` header, if any."""
    return bearer_of(connection.headers.get("authorization", ""))


def may_read(token: str | None, gate: TokenGate) -> bool:
    """Whether a request with `token` may use the read endpoints."""
    if not gate.reads_need_token:
        return True
    return token is not None and isinstance(gate.identify(token), Caller)


def refuse(refused: Refused, realm: str, connection: ASGIConnection, charge: bool) -> NoReturn:  # type: ignore[type-arg]
    """Raise the answer to a refused token: 401 (charged to the client), or 503 for the node."""
    if refused.reason == TOKEN_BOOK_UNUSABLE:  # the node's fault: not the client's, not charged
        raise ServiceUnavailableException(detail=refused.message, extra={"reason": refused.reason})
    if charge:
        charge_a_bad_token(connection)
    raise TokenRefused(refused, realm)


class TokenRefused(NotAuthorizedException):
    """401 with the refusal's reason code in the error envelope."""

    def __init__(self, refused: Refused, realm: str) -> None:
        super().__init__(
            detail=refused.message,
            headers={"WWW-Authenticate": f'Bearer realm="{realm}", error="invalid_token"'},
            extra={"reason": refused.reason},
        )


def require_admin(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Guard of the admin endpoints: refresh, upload, rollback."""
    gate = runtime_of(connection.app).tokens
    if not gate.has_admin:
        damaged = gate.book().damaged
        if damaged is not None:
            detail = f"the node cannot use its token book: {damaged}"
            raise ServiceUnavailableException(detail=detail, extra={"reason": TOKEN_BOOK_UNUSABLE})
        msg = (
            "admin endpoints are disabled on this node "
            "(set APPLIANCE_ADMIN_TOKEN_FILE, or `appliance token create NAME --role admin`)"
        )
        raise PermissionDeniedException(msg)
    token = bearer_token(connection)
    if token is None:
        msg = "admin token required (Authorization: Bearer ...)"
        raise NotAuthorizedException(
            msg,
            headers={"WWW-Authenticate": 'Bearer realm="admin"'},
            extra={"reason": "token_required"},
        )
    found = gate.identify(token)
    if isinstance(found, Refused):  # the request edge counted it against the admin budget
        refuse(found, "admin", connection, charge=False)
    if not found.is_admin:
        msg = f"token {found.name!r} is a {found.role} token: it cannot use admin endpoints"
        raise PermissionDeniedException(msg)
    connection.scope.setdefault("state", {})[CALLER_STATE] = found


def require_viewer(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Guard of the read endpoints when the node has viewer tokens (admins may read too)."""
    gate = runtime_of(connection.app).tokens
    if not gate.reads_need_token:
        return
    token = bearer_token(connection)
    if token is None:
        msg = "viewer token required (Authorization: Bearer ...)"
        raise NotAuthorizedException(
            msg,
            headers={"WWW-Authenticate": 'Bearer realm="data"'},
            extra={"reason": "token_required"},
        )
    found = gate.identify(token)
    if isinstance(found, Refused):
        # A read route also accepts admin tokens: a wrong guess here must cost what a wrong
        # guess at an admin route costs, or the read budget would be the way to guess one.
        refuse(found, "data", connection, charge=True)


def charge_a_bad_token(connection: ASGIConnection) -> None:  # type: ignore[type-arg]
    """Count a wrong token against the client's admin budget; 429 once it is spent."""
    runtime = runtime_of(connection.app)
    client = connection.client.host if connection.client else "unknown"
    allowed, retry_after = runtime.admin_limiter.hit(f"admin:{client}")
    if not allowed:
        runtime.metrics.inc(RATE_LIMITED, kind="admin")
        msg = "too many bad tokens from this address; slow down"
        raise TooManyRequestsException(
            msg, headers={"retry-after": str(max(1, math.ceil(retry_after)))}
        )


def actor_of(connection: ASGIConnection) -> Actor:  # type: ignore[type-arg]
    """Who makes the admin request, for the audit trail (the admin guard ran before)."""
    state: dict[str, Any] = connection.scope.get("state", {})
    caller: Caller = state[CALLER_STATE]
    client = connection.client.host if connection.client else "unknown"
    return api_actor(caller.name, caller.role, client, str(state.get("request_id", "")))
