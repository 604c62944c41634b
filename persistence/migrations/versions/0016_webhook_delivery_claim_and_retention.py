"""webhook deliveries: indexes for a claim that reads only what it takes, and for retention

The claim walks the enabled endpoints and, for each, reads its earliest due deliveries from
(endpoint_id, next_attempt_at, id) over pending rows, counting the deliveries it has in flight
from the leased pending rows alone: neither read grows with the backlog. Retention deletes
settled deliveries by age, read from created_at over settled rows.
"""

from persistence.migrations.ddl import TableDDL

revision: str = "0016"
down_revision: str | None = "0015c"

DELIVERIES = TableDDL("webhook_deliveries")
_PENDING = "state = 'PENDING'"
#: Each index: its columns and the rows it holds.
_INDEXES: dict[tuple[str, ...], str] = {
    ("endpoint_id", "next_attempt_at", "id"): _PENDING,
    ("endpoint_id", "leased_until"): _PENDING + " AND leased_until IS NOT NULL",
    ("created_at",): "state <> 'PENDING'",
}


def upgrade() -> None:
    for columns, where in _INDEXES.items():
        DELIVERIES.create_index(*columns, where=where)


def downgrade() -> None:
    for columns in reversed(_INDEXES):
        DELIVERIES.drop_index(*columns)
