"""webhook deliveries: indexes for a claim that reads only what it takes, and for retention

The claim walks the enabled endpoints and, for each, reads its earliest due deliveries from
(endpoint_id, next_attempt_at, id) over pending rows, counting the deliveries it has in flight
from the leased pending rows alone: neither read grows with the backlog. Retention deletes
settled deliveries by age, read from created_at over settled rows.
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015c"

_PENDING = "state = 'PENDING'"
#: Each index: its columns and the rows it holds.
_INDEXES: dict[tuple[str, ...], str] = {
    ("endpoint_id", "next_attempt_at", "id"): _PENDING,
    ("endpoint_id", "leased_until"): _PENDING + " AND leased_until IS NOT NULL",
    ("created_at",): "state <> 'PENDING'",
}


def _name(columns: tuple[str, ...]) -> str:
    return "ix_webhook_deliveries_" + "_".join(columns)


def upgrade() -> None:
    for columns, where in _INDEXES.items():
        op.create_index(
            op.f(_name(columns)),
            "webhook_deliveries",
            list(columns),
            unique=False,
            postgresql_where=sa.text(where),
            sqlite_where=sa.text(where),
        )


def downgrade() -> None:
    for columns in reversed(_INDEXES):
        op.drop_index(op.f(_name(columns)), table_name="webhook_deliveries")
