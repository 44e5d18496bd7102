"""Who made a change, as the audit trail records it (docs/formats.md, "Who did what").

A change made on the node's command line is recorded under the user who ran the command: the
`appliance` wrapper exports APPLIANCE_INVOKED_BY (the sudo user, else the login user) before it
drops to the appliance user, and SUDO_USER counts when the command is run through sudo directly.
A change made through the API is recorded under the token's name and role, with the client's
address and the request id that the server's log line carries too.

What the operating system says is what is recorded: the trail is evidence of who acted, not a
barrier against the appliance user itself (which can write the trail).
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

INVOKED_BY_ENV = "APPLIANCE_INVOKED_BY"  # set by the node's `appliance` wrapper
VIA_CLI = "cli"
VIA_API = "api"


@dataclass(frozen=True)
class Actor:
    """The one who made a change: a user on the node, or a token over the API."""

    via: str
    host: str
    user: str | None = None
    token: str | None = None
    role: str | None = None
    client: str | None = None
    request_id: str | None = None

    def label(self) -> str:
        """One short line for people: `alice@node1`, or `token ops (admin) from 10.0.0.5`."""
        if self.via == VIA_API:
            return f"token {self.token} ({self.role}) from {self.client}"
        return f"{self.user}@{self.host}"

    def as_json(self) -> dict[str, Any]:
        """The structured record: only the fields that apply to how the change was made."""
        fields: dict[str, Any] = {"via": self.via, "host": self.host}
        if self.via == VIA_API:
            fields |= {
                "token": self.token,
                "role": self.role,
                "client": self.client,
                "request_id": self.request_id,
            }
        else:
            fields["user"] = self.user
        return fields

    def trail_fields(self) -> dict[str, Any]:
        """What an audit-trail line carries of its actor: `actor` (the label) and `by`."""
        return {"actor": self.label(), "by": self.as_json()}


def local_actor(env: Mapping[str, str] | None = None) -> Actor:
    """Whoever runs this process on the node (the invoking user, through the wrapper or sudo)."""
    env = os.environ if env is None else env
    user = env.get(INVOKED_BY_ENV, "").strip() or env.get("SUDO_USER", "").strip()
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
    return Actor(via=VIA_CLI, host=socket.gethostname(), user=user)


def api_actor(token: str, role: str, client: str, request_id: str) -> Actor:
    """A caller of the API, named by its token."""
    return Actor(
        via=VIA_API,
        host=socket.gethostname(),
        token=token,
        role=role,
        client=client,
        request_id=request_id,
    )
