"""webhook endpoint events: the log an account reads of what happened to its endpoints

Created, updated, disabled (by the account, or by the dispatcher for a 410 or for failing too
long), enabled, secret rotated; each written in the transaction of the change it records.
"""

import sqlalchemy as sa

from persistence.migrations.ddl import TableDDL, serial_id, timestamp, uuid_column

revision: str = "0016b"
down_revision: str | None = "0016"

EVENTS = TableDDL("webhook_endpoint_events")


def upgrade() -> None:
    EVENTS.create(
        serial_id(),
        uuid_column("endpoint_id"),
        uuid_column("account_id"),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=True),
        timestamp("occurred_at"),
        EVENTS.account_fk(),
        EVENTS.cascading_fk("endpoint_id", "webhook_endpoints"),
        EVENTS.primary_key("id"),
    )
    EVENTS.create_index("endpoint_id", "id")


def downgrade() -> None:
    EVENTS.drop_index("endpoint_id", "id")
    EVENTS.drop()
