"""Webhook signing secrets at rest: sealed with a key from the settings, so that a copy of
the database alone does not reveal them.

With ``WEBHOOK_SECRETS_KEY`` set (a Fernet key), a secret is stored as ``fernet:<token>``.
Without it (the embedded mode's default) it is stored as ``plain:<secret>``: readable by
whoever reads the database, which the README says. Both forms open with a key set, so a key
can be introduced later; rows sealed with a key do not open without it.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

_FERNET = "fernet:"
_PLAIN = "plain:"


class SecretsKeyError(RuntimeError):
    """A stored secret cannot be opened with the key (or without one) this process has."""


class SecretBox:
    def __init__(self, key: str | None) -> None:
        self._fernet = Fernet(key.encode()) if key else None

    def __repr__(self) -> str:
        return f"SecretBox(sealed={self._fernet is not None})"

    def seal(self, secret: str) -> str:
        if self._fernet is None:
            return _PLAIN + secret
        return _FERNET + self._fernet.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        if stored.startswith(_PLAIN):
            return stored.removeprefix(_PLAIN)
        if self._fernet is None:
            raise SecretsKeyError("a webhook secret is sealed but WEBHOOK_SECRETS_KEY is not set")
        try:
            return self._fernet.decrypt(stored.removeprefix(_FERNET).encode()).decode()
        except InvalidToken as exc:
            raise SecretsKeyError("a webhook secret was sealed with another key") from exc
