"""API keys: generation, hashing, and a short-lived cache of verified keys.

Keys carry 256 random bits, so a single SHA-256 is enough to store them safely (a slow password
hash protects low-entropy secrets; these are not). Only the hash and a short prefix are stored.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Collection

from gateway.domain.records import Account
from gateway.services.clock import utcnow
from gateway.services.ports import AccountStore

KEY_PREFIX = "mgw_"
PREFIX_LENGTH = 12


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class ApiKeys:
    def __init__(self, accounts: AccountStore, cache_seconds: float) -> None:
        self._accounts = accounts
        self._ttl = cache_seconds
        self._cache: dict[str, tuple[float, Account | None]] = {}

    async def create(self, account_name: str) -> tuple[Account, str]:
        """A new key for the account (created if needed). The key is returned only here."""
        account = await self._accounts.ensure_account(account_name, utcnow())
        key = new_key()
        await self._accounts.add_key(account.id, key[:PREFIX_LENGTH], hash_key(key), utcnow())
        return account, key

    async def authenticate(self, key: str | None) -> Account | None:
        found = await self.identify(key)
        return found[0] if found else None

    async def identify(self, key: str | None) -> tuple[Account, str] | None:
        """The key's account and its hash (what ``still_live`` checks), if it is live."""
        if not key or len(key) > 200:
            return None
        digest = hash_key(key)
        account = await self._lookup(digest)
        return (account, digest) if account is not None else None

    async def still_live(self, digests: Collection[str]) -> set[str]:
        """Those of the key hashes that are still live, checked in the database now.

        A key found revoked is remembered as such, so that this process refuses it at once
        rather than when its cached verification expires.
        """
        live = await self._accounts.live_key_hashes(digests)
        expires = time.monotonic() + self._ttl
        for digest in digests:
            if digest not in live:
                self._cache[digest] = (expires, None)
        return live

    async def _lookup(self, digest: str) -> Account | None:
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        account = await self._accounts.account_for_key(digest)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now + self._ttl, account)
        return account
