"""webhook endpoint events: the log an account reads of what happened to its endpoints

Created, updated, disabled (by the account, or by the dispatcher for a 410 or for failing too
long), enabled, secret rotated; each written in the transaction of the change it records.
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0016b"
down_revision: str | None = "0016"

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "webhook_endpoint_events",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_webhook_endpoint_events_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_endpoint_events_endpoint_id_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoint_events")),
    )
    op.create_index(
        op.f("ix_webhook_endpoint_events_endpoint_id_id"),
        "webhook_endpoint_events",
        ["endpoint_id", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_webhook_endpoint_events_endpoint_id_id"), table_name="webhook_endpoint_events"
    )
    op.drop_table("webhook_endpoint_events")
