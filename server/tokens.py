"""The token book as one worker sees it: looked at again within TOKEN_RECHECK_SECONDS of a change.

A token created or revoked with `appliance token` is honoured by every worker within a second,
without a restart: each check of a token first asks, at most every TOKEN_RECHECK_SECONDS,
whether tokens.json changed (one stat), and reads it again when it did. A book that cannot be
read is logged once per change and leaves only the bootstrap tokens valid, with reads closed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from appliance.access.tokens import (
    TOKEN_RECHECK_SECONDS,
    USE_RESOLUTION_SECONDS,
    Caller,
    Refused,
    TokenBook,
    TokenStore,
)

Warn = Callable[[str], None]


class TokenGate:
    """Checks bearer tokens against the book and the bootstrap tokens of the settings."""

    def __init__(
        self,
        store: TokenStore,
        bootstrap: tuple[tuple[str, str], ...],
        warn: Warn | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.bootstrap = bootstrap
        self.warn = warn
        self.clock = clock
        self._stamp = store.stamp()
        self._book = store.book(bootstrap)
        self._checked = clock()
        self._used: dict[str, float] = {}
        self._report(self._book)

    def book(self) -> TokenBook:
        """The book as it is on disk, to within TOKEN_RECHECK_SECONDS."""
        now = self.clock()
        if now - self._checked >= TOKEN_RECHECK_SECONDS:
            self._checked = now
            stamp = self.store.stamp()
            if stamp != self._stamp:
                self._stamp = stamp
                self._book = self.store.book(self.bootstrap)
                self._report(self._book)
        return self._book

    def identify(self, secret: str) -> Caller | Refused:
        """Who `secret` is, or why it is refused; a valid token's use is recorded."""
        found = self.book().identify(secret, datetime.now(UTC))
        if isinstance(found, Caller):
            self._note_use(found.name)
        return found

    @property
    def reads_need_token(self) -> bool:
        """Whether the read endpoints need a token now."""
        return self.book().reads_need_token

    @property
    def has_admin(self) -> bool:
        """Whether any admin token could be valid."""
        return self.book().has_admin

    def _note_use(self, name: str) -> None:
        now = self.clock()
        if now - self._used.get(name, -USE_RESOLUTION_SECONDS) < USE_RESOLUTION_SECONDS:
            return
        self._used[name] = now
        try:
            self.store.mark_used(name)
        except OSError as exc:  # a read-only or full disk costs the record, never the request
            if self.warn is not None:
                self.warn(f"cannot record the use of token {name!r}: {exc.strerror or exc}")

    def _report(self, book: TokenBook) -> None:
        if book.damaged is not None and self.warn is not None:
            self.warn(f"token book not usable, only the bootstrap tokens are: {book.damaged}")
