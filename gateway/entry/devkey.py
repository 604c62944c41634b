"""The development API key of the embedded mode.

Keys are stored hashed, so the plain key is kept in a file next to the SQLite database (mode
0600) for the GraphiQL page to pre-fill. Only the embedded mode does this; production keys come
from ``messaging-gateway create-api-key`` and are shown once.
"""

from __future__ import annotations

import os
from pathlib import Path
from uuid import UUID

import structlog

from gateway.services.auth import ApiKeys

log = structlog.get_logger(__name__)

DEV_ACCOUNT = "development"
KEY_FILE = "dev-api-key"


async def ensure_dev_key(data_dir: Path, api_keys: ApiKeys) -> tuple[str, UUID]:
    """The development key (created and printed on first start) and its account."""
    path = data_dir / KEY_FILE
    if path.exists():
        key = path.read_text().strip()
        account = await api_keys.authenticate(key)
        if account is not None:
            return key, account.id
    account, key = await api_keys.create(DEV_ACCOUNT)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    # Printed on purpose, once: this is how a newcomer learns the key.
    print(
        f"\nDevelopment API key (account '{DEV_ACCOUNT}', saved in {path}):\n\n    {key}\n\n"
        "GraphiQL at /graphql is pre-filled with it.\n",
        flush=True,
    )
    return key, account.id
