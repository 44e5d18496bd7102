"""Named API tokens: the node keeps only their SHA-256, with a name, a role and a lifetime.

The token book is `tokens.json` in the data dir (docs/formats.md, "The token book"), written by
`appliance token create|revoke` under its own lock and read by every server worker, which
looks again whenever the file changes (at most every TOKEN_RECHECK_SECONDS). A secret is
printed once, when it is made, and never stored: a token is 32 random bytes, so a fast hash is
the right one (there is nothing to guess that a slow hash would protect).

The server's environment may also hold a bootstrap admin token (APPLIANCE_ADMIN_TOKEN or
_FILE, named `bootstrap`) and a bootstrap viewer token (APPLIANCE_VIEWER_TOKEN or _FILE, named
`bootstrap-viewer`). They are not in the book, but a revocation of one is: `appliance token
revoke bootstrap` records the SHA-256 of the secret in the file as revoked, so that secret is
refused from then on, and a new secret written to the file is a new token.

Reads need a token once the node has a viewer token that is not revoked (the bootstrap viewer
token, or a named one, even an expired one, so that reads never open up by themselves when a
token runs out). Any valid token may read.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

from appliance.access.secret_files import check_private
from appliance.data import store_layout as layout
from appliance.errors import ConfigError, StoreError
from appliance.faults import os_fault
from appliance.fsio import SHA256_HEX, atomic_write_bytes
from appliance.packs.result_pack import format_timestamp, parse_timestamp
from appliance.trust.strict_json import StrictJSONError, parse_strict_json

TOKENS_FORMAT = "appliance-tokens/1"
VIEWER = "viewer"
ADMIN = "admin"
ROLES = (VIEWER, ADMIN)
TOKEN_PREFIX = "apl_"  # noqa: S105 (not a secret) so a leaked token is recognisable (in a URL, a log, a secret scanner)
TOKEN_BYTES = 32
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
BOOTSTRAP_ADMIN = "bootstrap"
BOOTSTRAP_VIEWER = "bootstrap-viewer"
BOOTSTRAP_ROLES = {BOOTSTRAP_ADMIN: ADMIN, BOOTSTRAP_VIEWER: VIEWER}
DURATION = re.compile(r"([1-9][0-9]{0,5})([mhdw])")
DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_LIFETIME = timedelta(days=3650)
FILE_MODE = 0o640
USE_RESOLUTION_SECONDS = 60.0  # how often a worker records a token's last use, at most
TOKEN_RECHECK_SECONDS = 0.5  # how often a worker looks whether the book changed, at most

ACTIVE = "active"
EXPIRED = "expired"
REVOKED = "revoked"


def token_digest(secret: str) -> str:
    """The SHA-256 hex of a secret: what the book stores and looks a token up by."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    """A fresh token: the prefix and 32 random bytes, URL-safe base64."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def parse_lifetime(text: str) -> timedelta:
    """`90d`, `12h`, `30m` or `2w`; ConfigError for anything else, or longer than ten years."""
    match = DURATION.fullmatch(text.strip())
    if match is None:
        msg = f"--expires {text!r}: give a lifetime like 90d, 12h, 30m or 2w"
        raise ConfigError(msg)
    lifetime = timedelta(**{DURATION_UNITS[match[2]]: int(match[1])})
    if lifetime > MAX_LIFETIME:
        msg = f"--expires {text!r}: at most {MAX_LIFETIME.days} days"
        raise ConfigError(msg)
    return lifetime


def check_name(name: str) -> str:
    """A token's name: 1-63 of a-z 0-9 . _ - starting with a letter or digit."""
    if not NAME.fullmatch(name):
        msg = (
            f"token name {name!r}: use 1 to 63 of a-z, 0-9, '.', '_' and '-', "
            "starting with a letter or a digit"
        )
        raise ConfigError(msg)
    return name


@dataclass(frozen=True)
class TokenRecord:
    """One token of the book (a revoked bootstrap secret is one too)."""

    name: str
    role: str
    sha256: str
    created: datetime
    created_by: str
    expires: datetime | None = None
    revoked: datetime | None = None
    revoked_by: str | None = None

    def state(self, now: datetime) -> str:
        """active, expired or revoked at `now`."""
        if self.revoked is not None:
            return REVOKED
        if self.expires is not None and now >= self.expires:
            return EXPIRED
        return ACTIVE

    def as_json(self) -> dict[str, Any]:
        """The record as the book stores it."""
        return {
            "name": self.name,
            "role": self.role,
            "sha256": self.sha256,
            "created": format_timestamp(self.created),
            "created_by": self.created_by,
            "expires": None if self.expires is None else format_timestamp(self.expires),
            "revoked": None if self.revoked is None else format_timestamp(self.revoked),
            "revoked_by": self.revoked_by,
        }


@dataclass(frozen=True)
class Caller:
    """Who a valid token says the caller is."""

    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        """Whether the token may use the admin endpoints."""
        return self.role == ADMIN


@dataclass(frozen=True)
class Refused:
    """Why a token was refused: a reason code for the error envelope, and a message."""

    reason: str
    message: str


TOKEN_INVALID = Refused("token_invalid", "token not valid")
TOKEN_EXPIRED = "token_expired"  # noqa: S105 (reason codes, not secrets)
TOKEN_REVOKED = "token_revoked"  # noqa: S105
TOKEN_BOOK_UNUSABLE = "token-book-unusable"  # noqa: S105 (a fault of the node: 503)


@dataclass(frozen=True)
class TokenBook:
    """The tokens a node knows: the book's records and the bootstrap secrets' digests."""

    records: tuple[TokenRecord, ...] = ()
    bootstrap: tuple[tuple[str, str], ...] = ()  # (name, SHA-256) of APPLIANCE_*_TOKEN
    damaged: str | None = None  # why the book could not be read; only bootstrap tokens then

    def identify(self, secret: str, now: datetime) -> Caller | Refused:
        """The caller a secret names, or why it is refused (looked up by its SHA-256)."""
        digest = token_digest(secret)
        record = self._by_digest.get(digest)
        if record is not None:
            state = record.state(now)
            if state == REVOKED:
                when = format_timestamp(record.revoked) if record.revoked else "?"
                return Refused(TOKEN_REVOKED, f"token {record.name!r} was revoked at {when}")
            if state == EXPIRED:
                when = format_timestamp(record.expires) if record.expires else "?"
                return Refused(TOKEN_EXPIRED, f"token {record.name!r} expired at {when}")
            return Caller(record.name, record.role)
        name = self._bootstrap_by_digest.get(digest)
        if name is not None:
            return Caller(name, BOOTSTRAP_ROLES[name])
        if self.damaged is not None:  # the token may well be in the book: the node's fault
            return Refused(
                TOKEN_BOOK_UNUSABLE, f"the node cannot use its token book: {self.damaged}"
            )
        return TOKEN_INVALID

    @cached_property
    def _by_digest(self) -> dict[str, TokenRecord]:
        return {record.sha256: record for record in self.records}

    @cached_property
    def _bootstrap_by_digest(self) -> dict[str, str]:
        return {digest: name for name, digest in self.bootstrap}

    @cached_property
    def _live_bootstrap(self) -> frozenset[str]:
        """The names of the bootstrap tokens whose secret is not revoked."""
        return frozenset(n for n, d in self.bootstrap if d not in self._by_digest)

    @cached_property
    def reads_need_token(self) -> bool:
        """Whether reads need a token: a viewer token exists that is not revoked (see above)."""
        if self.damaged is not None:
            return True  # closed, not open, while the book cannot be read
        if BOOTSTRAP_VIEWER in self._live_bootstrap:
            return True
        return any(r.role == VIEWER and r.revoked is None for r in self.records)

    @cached_property
    def has_admin(self) -> bool:
        """Whether any admin token could be valid (else the admin endpoints are disabled)."""
        if BOOTSTRAP_ADMIN in self._live_bootstrap:
            return True
        return any(r.role == ADMIN and r.revoked is None for r in self.records)


def bootstrap_digests(admin_token: str, viewer_token: str) -> tuple[tuple[str, str], ...]:
    """The bootstrap tokens of the server's settings, as (name, SHA-256)."""
    pairs = [(BOOTSTRAP_ADMIN, admin_token), (BOOTSTRAP_VIEWER, viewer_token)]
    return tuple((name, token_digest(secret)) for name, secret in pairs if secret)


def parse_book(data: bytes, source: str) -> tuple[TokenRecord, ...]:
    """The records of a token book's bytes; ConfigError names what is wrong."""
    try:
        document = parse_strict_json(data)
    except StrictJSONError as exc:
        msg = f"{source}: {exc}"
        raise ConfigError(msg) from exc
    if not isinstance(document, dict) or document.get("format") != TOKENS_FORMAT:
        msg = f"{source}: not a token book (format {TOKENS_FORMAT!r} expected)"
        raise ConfigError(msg)
    entries = document.get("tokens")
    if not isinstance(entries, list):
        msg = f"{source}: 'tokens' must be a list"
        raise ConfigError(msg)
    records = []
    for number, entry in enumerate(entries, start=1):
        try:
            records.append(_record_of(entry))
        except (ValueError, TypeError, KeyError) as exc:
            msg = f"{source}: token {number}: {exc}"
            raise ConfigError(msg) from exc
    if any(r.name in BOOTSTRAP_ROLES and r.revoked is None for r in records):
        msg = f"{source}: a bootstrap token can only appear revoked (it lives in the settings)"
        raise ConfigError(msg)
    names = [r.name for r in records if r.name not in BOOTSTRAP_ROLES]
    if len(names) != len(set(names)):
        msg = f"{source}: a token name appears twice"
        raise ConfigError(msg)
    return tuple(records)


def _record_of(entry: Any) -> TokenRecord:
    if not isinstance(entry, dict):
        msg = "not an object"
        raise TypeError(msg)
    name, role, digest = entry["name"], entry["role"], entry["sha256"]
    if not isinstance(name, str) or not NAME.fullmatch(name):
        msg = f"bad name {name!r}"
        raise ValueError(msg)
    if role not in ROLES:
        msg = f"role must be one of {', '.join(ROLES)}"
        raise ValueError(msg)
    if not isinstance(digest, str) or not re.fullmatch(SHA256_HEX, digest):
        msg = "sha256 must be 64 lowercase hex digits"
        raise ValueError(msg)
    return TokenRecord(
        name=name,
        role=role,
        sha256=digest,
        created=parse_timestamp(entry["created"]),
        created_by=str(entry.get("created_by") or ""),
        expires=_optional_time(entry.get("expires")),
        revoked=_optional_time(entry.get("revoked")),
        revoked_by=entry.get("revoked_by") if isinstance(entry.get("revoked_by"), str) else None,
    )


def _optional_time(value: Any) -> datetime | None:
    return None if value is None else parse_timestamp(value)


def render_book(records: tuple[TokenRecord, ...]) -> bytes:
    """A token book's bytes."""
    document = {"format": TOKENS_FORMAT, "tokens": [r.as_json() for r in records]}
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


class TokenStore:
    """The token book of a data dir, and the record of when each token was last used."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / layout.TOKENS_FILE
        self.used_dir = data_dir / layout.TOKENS_USED_DIR

    def stamp(self) -> tuple[int, int, int] | None:
        """(inode, size, mtime_ns) of the book, None when there is none: changes when it does."""
        try:
            facts = self.path.stat()
        except FileNotFoundError:
            return None
        return facts.st_ino, facts.st_size, facts.st_mtime_ns

    def records(self) -> tuple[TokenRecord, ...]:
        """Every record of the book (none without a book); ConfigError when it is bad."""
        check_private(self.path, "the token book", secret=False)
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return ()
        except OSError as exc:
            raise os_fault(exc, f"reading {self.path}") from exc
        return parse_book(data, str(self.path))

    def book(self, bootstrap: tuple[tuple[str, str], ...]) -> TokenBook:
        """What the server checks tokens against; a bad book leaves only the bootstrap tokens."""
        try:
            return TokenBook(self.records(), bootstrap)
        except (ConfigError, StoreError) as exc:
            return TokenBook((), bootstrap, damaged=str(exc))

    @contextmanager
    def _locked(self) -> Iterator[tuple[TokenRecord, ...]]:
        try:
            self.data_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
            fd = os.open(self.data_dir / layout.TOKENS_LOCK, os.O_RDWR | os.O_CREAT, 0o640)
        except OSError as exc:
            raise os_fault(exc, f"opening the token book in {self.data_dir}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self.records()
        finally:
            os.close(fd)

    def _write(self, records: tuple[TokenRecord, ...]) -> None:
        try:
            atomic_write_bytes(self.path, render_book(records), mode=FILE_MODE)
        except OSError as exc:
            raise os_fault(exc, f"writing {self.path}") from exc

    def create(
        self, name: str, role: str, lifetime: timedelta | None, actor: str, now: datetime
    ) -> tuple[str, TokenRecord]:
        """Make a token; returns its secret (shown once, never stored) and its record."""
        check_name(name)
        if name in BOOTSTRAP_ROLES:
            msg = f"{name!r} is the name of the bootstrap token of the server's settings"
            raise ConfigError(msg)
        if role not in ROLES:
            msg = f"role {role!r}: one of {', '.join(ROLES)}"
            raise ConfigError(msg)
        self._touch_used_dir()
        with self._locked() as records:
            if any(r.name == name for r in records):
                msg = (
                    f"a token named {name!r} exists already (names are never reused, so the "
                    "audit trail stays unambiguous): choose another name"
                )
                raise ConfigError(msg)
            secret = new_secret()
            record = TokenRecord(
                name=name,
                role=role,
                sha256=token_digest(secret),
                created=now,
                created_by=actor,
                expires=None if lifetime is None else now + lifetime,
            )
            self._write((*records, record))
        return secret, record

    def keep_revocations(self, earlier: tuple[TokenRecord, ...], actor: str) -> int:
        """Carry every revocation of an earlier book into this one (a restore must not revive a
        token revoked since its backup); returns how many records changed or were added."""
        revoked = [r for r in earlier if r.revoked is not None]
        if not revoked:
            return 0
        with self._locked() as records:
            by_digest = {r.sha256: r for r in records}
            names = {r.name for r in records}
            kept = list(records)
            changed = 0
            for old in revoked:
                mine = by_digest.get(old.sha256)
                if mine is not None and mine.revoked is None:
                    kept = [replace(r, revoked=old.revoked, revoked_by=old.revoked_by or actor)
                            if r.sha256 == old.sha256 else r for r in kept]  # fmt: skip
                    changed += 1
                elif mine is None and (old.name in BOOTSTRAP_ROLES or old.name not in names):
                    kept.append(old)
                    names.add(old.name)
                    changed += 1
            if changed:
                self._write(tuple(kept))
        return changed

    def undo_create(self, name: str) -> None:
        """Take back a token just made (its creation could not be recorded in the trail)."""
        with self._locked() as records:
            self._write(tuple(r for r in records if r.name != name))

    def revoke(
        self,
        name: str,
        actor: str,
        now: datetime,
        bootstrap_secret: str | None = None,
        open_reads: bool = False,
    ) -> TokenRecord:
        """Revoke a named token, or a bootstrap token (whose secret the caller read).

        Revoking the last named viewer token would open the reads to everyone: that needs
        `open_reads`, so that retiring a leaked token never exposes more than the leak did.
        """
        check_name(name)
        with self._locked() as records:
            viewers = [r for r in records if r.role == VIEWER and r.revoked is None]
            if not open_reads and [r.name for r in viewers] == [name]:
                msg = (
                    f"{name!r} is the node's last viewer token: revoking it opens the read "
                    "endpoints to everyone. Make its successor first "
                    "(appliance token create NAME --role viewer), or pass --open-reads"
                )
                raise ConfigError(msg)
            if name in BOOTSTRAP_ROLES:
                if not bootstrap_secret:
                    msg = f"no {name} token is set in this environment, so there is none to revoke"
                    raise ConfigError(msg)
                digest = token_digest(bootstrap_secret)
                if any(r.sha256 == digest for r in records):
                    msg = f"the {name} token was revoked already: write a new one to its file"
                    raise ConfigError(msg)
                record = TokenRecord(
                    name, BOOTSTRAP_ROLES[name], digest, now, "the server's settings",
                    revoked=now, revoked_by=actor,
                )  # fmt: skip
                self._write((*records, record))
                return record
            found = [r for r in records if r.name == name]
            if not found:
                msg = f"no token named {name!r} (appliance token list shows them)"
                raise ConfigError(msg)
            if found[0].revoked is not None:
                msg = f"token {name!r} was revoked already, at {format_timestamp(found[0].revoked)}"
                raise ConfigError(msg)
            revoked = replace(found[0], revoked=now, revoked_by=actor)
            self._write(tuple(revoked if r.name == name else r for r in records))
            return revoked

    def _touch_used_dir(self) -> None:
        try:
            self.used_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        except OSError as exc:
            raise os_fault(exc, f"making {self.used_dir}") from exc

    def mark_used(self, name: str) -> None:
        """Record that `name` was just used (the file's mtime; OSError when the node cannot)."""
        path = self.used_dir / name
        try:
            os.utime(path)
        except FileNotFoundError:
            self.used_dir.mkdir(mode=0o750, exist_ok=True)
            path.touch(mode=0o640)

    def last_used(self, name: str) -> datetime | None:
        """When `name` was last used, to about a minute; None if never (or not recorded)."""
        try:
            mtime = (self.used_dir / name).stat().st_mtime
        except OSError:
            return None
        return datetime.fromtimestamp(int(mtime), UTC)
