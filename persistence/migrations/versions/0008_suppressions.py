"""suppressions: recipients an account must not send to, and the record of lifted ones

Every accept and every claim looks a recipient up by (account_id, address), the prefix of
the unique key, so the lookup is one index probe per message and nothing when the table is
empty.
"""

from typing import Any

import sqlalchemy as sa

from persistence.migrations.ddl import JSON, TableDDL, serial_id, timestamp, uuid_column

revision: str = "0008"
down_revision: str | None = "0007"

SUPPRESSIONS = TableDDL("suppressions")
REMOVALS = TableDDL("suppression_removals")


def _suppressed() -> list[sa.Column[Any]]:
    """What a suppression holds back, which the record of its removal keeps."""
    return [
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
    ]


def upgrade() -> None:
    SUPPRESSIONS.create(
        uuid_column("id"),
        uuid_column("account_id"),
        *_suppressed(),
        sa.Column("detail", JSON, nullable=True),
        timestamp("created_at"),
        SUPPRESSIONS.account_fk(),
        SUPPRESSIONS.primary_key("id"),
        SUPPRESSIONS.unique("account_id", "address", "channel", "sender"),
    )
    SUPPRESSIONS.create_index("account_id", "created_at", "id")
    REMOVALS.create(
        serial_id(),
        uuid_column("account_id"),
        uuid_column("suppression_id"),
        *_suppressed(),
        timestamp("suppressed_at"),
        sa.Column("removal_reason", sa.Text(), nullable=True),
        timestamp("removed_at"),
        REMOVALS.account_fk(),
        REMOVALS.primary_key("id"),
    )
    REMOVALS.create_index("account_id", "address")


def downgrade() -> None:
    REMOVALS.drop_index("account_id", "address")
    REMOVALS.drop()
    SUPPRESSIONS.drop_index("account_id", "created_at", "id")
    SUPPRESSIONS.drop()
