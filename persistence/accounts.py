"""Accounts and their API keys (stored only as SHA-256 hashes)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import cast
from uuid import UUID

from sqlalchemy import Table, select, update

from gateway.domain.ids import new_id
from gateway.domain.records import Account
from persistence.base import Repository
from persistence.models import AccountRow, ApiKeyRow

ACCOUNTS = cast(Table, AccountRow.__table__)
KEYS = cast(Table, ApiKeyRow.__table__)
#: Hashes per statement when checking many keys at once: well under every driver's limit of
#: bound parameters (SQLite 32766, asyncpg 32767).
KEY_HASHES_PER_STATEMENT = 1000


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    prefix: str
    account: str
    created_at: datetime
    revoked_at: datetime | None


class AccountRepository(Repository):
    async def ensure_account(self, name: str, now: datetime) -> Account:
        async with self.engine.begin() as conn:
            await conn.execute(
                self.upsert(ACCOUNTS).on_conflict_do_nothing(),
                {"id": new_id(), "name": name, "created_at": now},
            )
            row = (await conn.execute(select(ACCOUNTS).where(ACCOUNTS.c.name == name))).one()
        return Account(id=row.id, name=row.name)

    async def add_key(self, account_id: UUID, prefix: str, key_hash: str, now: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                KEYS.insert().values(
                    id=new_id(),
                    account_id=account_id,
                    prefix=prefix,
                    key_hash=key_hash,
                    created_at=now,
                )
            )

    async def account_for_key(self, key_hash: str) -> Account | None:
        """The account of a live (not revoked) key."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(ACCOUNTS.c.id, ACCOUNTS.c.name)
                    .join(KEYS, KEYS.c.account_id == ACCOUNTS.c.id)
                    .where(KEYS.c.key_hash == key_hash, KEYS.c.revoked_at.is_(None))
                )
            ).first()
        return Account(id=row.id, name=row.name) if row else None

    async def live_key_hashes(self, key_hashes: Collection[str]) -> set[str]:
        """Those of the hashes whose key exists and is not revoked."""
        wanted = list(key_hashes)
        live: set[str] = set()
        if not wanted:
            return live
        async with self.engine.connect() as conn:
            for start in range(0, len(wanted), KEY_HASHES_PER_STATEMENT):
                chunk = wanted[start : start + KEY_HASHES_PER_STATEMENT]
                rows = await conn.execute(
                    select(KEYS.c.key_hash).where(
                        KEYS.c.key_hash.in_(chunk), KEYS.c.revoked_at.is_(None)
                    )
                )
                live.update(row.key_hash for row in rows)
        return live

    async def list_keys(self) -> list[ApiKeyInfo]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(KEYS.c.prefix, ACCOUNTS.c.name, KEYS.c.created_at, KEYS.c.revoked_at)
                .join(ACCOUNTS, KEYS.c.account_id == ACCOUNTS.c.id)
                .order_by(ACCOUNTS.c.name, KEYS.c.created_at)
            )
        return [ApiKeyInfo(r.prefix, r.name, r.created_at, r.revoked_at) for r in rows]

    async def revoke_key(self, prefix: str, now: datetime) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(KEYS)
                .where(KEYS.c.prefix == prefix, KEYS.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        return bool(result.rowcount)
