"""Access token and JSAPI ticket cache shared by threads and processes.

Layering: a per-process memory copy (no DB read per API call) over a `TokenStore` (the database in
production, so every web/worker process shares one token). Refreshing is single-flight through a lease
on the stored row: one caller fetches, the others keep using the still-valid old value or wait for the
new one. DingTalk returns the *same* token when asked again before expiry (§1.3), so a rare double
fetch is harmless; the lease only keeps the token endpoint (itself rate-limited) quiet.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken

from integrations.dingtalk.sqlutil import upsert_insert
from models.db import Database
from models.platform import PlatformToken


@dataclass(frozen=True)
class CachedToken:
    value: str
    expires_at: float  # unix seconds


class TokenStore(Protocol):
    def load(self, kind: str) -> CachedToken | None: ...

    def try_lease(self, kind: str, seconds: float) -> str | None:
        """Take the refresh lease if nobody holds a live one; return the lease id or None."""

    def save(self, kind: str, token: CachedToken, lease: str) -> None: ...

    def release(self, kind: str, lease: str) -> None: ...


class MemoryTokenStore:
    """For tests and one-off scripts: the same contract, held in this process only."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._tokens: dict[str, CachedToken] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def load(self, kind: str) -> CachedToken | None:
        return self._tokens.get(kind)

    def try_lease(self, kind: str, seconds: float) -> str | None:
        with self._lock:
            held = self._leases.get(kind)
            if held and held[1] > self._clock():
                return None
            lease = secrets.token_hex(8)
            self._leases[kind] = (lease, self._clock() + seconds)
            return lease

    def save(self, kind: str, token: CachedToken, lease: str) -> None:
        with self._lock:
            self._tokens[kind] = token
            if self._leases.get(kind, ("",))[0] == lease:
                del self._leases[kind]

    def release(self, kind: str, lease: str) -> None:
        with self._lock:
            if self._leases.get(kind, ("",))[0] == lease:
                del self._leases[kind]


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class DbTokenStore:
    """`platform_tokens` rows, values Fernet-encrypted with the master key.

    The lease is a conditional UPDATE (`... WHERE refreshing_until IS NULL OR refreshing_until < now`):
    atomic on SQLite (one writer at a time) and on PostgreSQL (a concurrent updater re-checks the WHERE
    against the committed row), so no `SELECT ... FOR UPDATE` is needed and no lock is held while the
    token endpoint is being called.
    """

    def __init__(self, database: Database, corp_pk: int, master_key: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = database
        self.corp_pk = corp_pk
        self._fernet = Fernet(master_key.encode() if isinstance(master_key, str) else master_key)
        self._clock = clock
        self._table = PlatformToken.__table__

    def _where(self, kind: str):
        t = self._table
        return sa.and_(t.c.corp_id == self.corp_pk, t.c.kind == kind)

    def load(self, kind: str) -> CachedToken | None:
        t = self._table
        with self.db.session() as s:
            row = s.execute(sa.select(t.c.value_ciphertext, t.c.expires_at).where(self._where(kind))).first()
        if row is None or not row.value_ciphertext or row.expires_at is None:
            return None
        try:
            value = self._fernet.decrypt(row.value_ciphertext.encode()).decode()
        except InvalidToken:
            return None  # master key rotated: fetch a fresh token instead of failing
        return CachedToken(value, row.expires_at.timestamp())

    def try_lease(self, kind: str, seconds: float) -> str | None:
        t = self._table
        now = self._clock()
        lease = secrets.token_hex(8)
        with self.db.session() as s:
            s.execute(
                upsert_insert(s, t)
                .values(corp_id=self.corp_pk, kind=kind, updated_at=_dt(now))
                .on_conflict_do_nothing(index_elements=["corp_id", "kind"])
            )
            result = s.execute(
                t.update()
                .where(self._where(kind))
                .where(sa.or_(t.c.refreshing_until.is_(None), t.c.refreshing_until < _dt(now)))
                .values(refreshing_until=_dt(now + seconds), lease_owner=lease, updated_at=_dt(now))
            )
            return lease if result.rowcount == 1 else None

    def save(self, kind: str, token: CachedToken, lease: str) -> None:
        t = self._table
        ciphertext = self._fernet.encrypt(token.value.encode()).decode()
        with self.db.session() as s:
            s.execute(
                t.update()
                .where(self._where(kind))
                .values(value_ciphertext=ciphertext, expires_at=_dt(token.expires_at),
                        updated_at=_dt(self._clock()))
            )
            s.execute(
                t.update()
                .where(self._where(kind), t.c.lease_owner == lease)
                .values(refreshing_until=None, lease_owner=None)
            )

    def release(self, kind: str, lease: str) -> None:
        t = self._table
        with self.db.session() as s:
            s.execute(
                t.update()
                .where(self._where(kind), t.c.lease_owner == lease)
                .values(refreshing_until=None, lease_owner=None)
            )


Fetcher = Callable[[], tuple[str, float]]  # → (value, lifetime in seconds)


class TokenCache:
    """Hands out a valid value of one kind per corp, refreshing `refresh_margin` seconds early."""

    def __init__(
        self,
        store: TokenStore,
        *,
        refresh_margin: float = 600.0,  # the calling guide says refresh ~10 minutes early (§1.3)
        lease_seconds: float = 15.0,
        wait_seconds: float = 10.0,
        poll_seconds: float = 0.1,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.refresh_margin = refresh_margin
        self.lease_seconds = lease_seconds
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        self._clock = clock
        self._sleep = sleep
        self._memory: dict[str, CachedToken] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock(self, kind: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(kind, threading.Lock())

    def _fresh(self, token: CachedToken | None, rejected: str | None) -> bool:
        return (
            token is not None
            and token.value != rejected
            and token.expires_at - self._clock() > self.refresh_margin
        )

    def get(self, kind: str, fetch: Fetcher, *, rejected: str | None = None) -> str:
        """A usable value. `rejected`: the value the platform just refused — never hand it out again."""
        token = self._memory.get(kind)
        if self._fresh(token, rejected):
            return token.value
        # One thread per process goes to the shared store; the others wait for its answer.
        with self._lock(kind):
            token = self._memory.get(kind)
            if self._fresh(token, rejected):
                return token.value
            value = self._get_shared(kind, fetch, rejected)
            return value

    def invalidate(self, kind: str) -> None:
        self._memory.pop(kind, None)

    def _get_shared(self, kind: str, fetch: Fetcher, rejected: str | None) -> str:
        deadline = self._clock() + self.wait_seconds
        while True:
            stored = self.store.load(kind)
            if self._fresh(stored, rejected):
                self._memory[kind] = stored
                return stored.value
            lease = self.store.try_lease(kind, self.lease_seconds)
            if lease is not None:
                # The previous holder may have saved and let go between our load and our lease.
                again = self.store.load(kind)
                if self._fresh(again, rejected):
                    self.store.release(kind, lease)
                    self._memory[kind] = again
                    return again.value
                return self._refresh(kind, fetch, lease)
            # Someone else is refreshing: an old value that still works beats waiting.
            now = self._clock()
            if stored is not None and stored.value != rejected and stored.expires_at > now + 60:
                return stored.value
            if now >= deadline:
                # The lease holder is stuck or died; fetching ourselves is safe (§1.3: same token).
                return self._refresh(kind, fetch, None)
            self._sleep(self.poll_seconds)

    def _refresh(self, kind: str, fetch: Fetcher, lease: str | None) -> str:
        try:
            value, lifetime = fetch()
        except BaseException:
            if lease is not None:
                self.store.release(kind, lease)
            raise
        token = CachedToken(value, self._clock() + float(lifetime))
        self.store.save(kind, token, lease or "")
        self._memory[kind] = token
        return value
