"""suppressions: recipients an account must not send to, and the record of lifted ones

Every accept and every claim looks a recipient up by (account_id, address), the prefix of
the unique key, so the lookup is one index probe per message and nothing when the table is
empty.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("detail", JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_suppressions_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
        sa.UniqueConstraint(
            "account_id",
            "address",
            "channel",
            "sender",
            name=op.f("uq_suppressions_account_id_address_channel_sender"),
        ),
    )
    op.create_index(
        op.f("ix_suppressions_account_id_created_at_id"),
        "suppressions",
        ["account_id", "created_at", "id"],
        unique=False,
    )
    op.create_table(
        "suppression_removals",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("suppression_id", sa.Uuid(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("suppressed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removal_reason", sa.Text(), nullable=True),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_suppression_removals_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppression_removals")),
    )
    op.create_index(
        op.f("ix_suppression_removals_account_id_address"),
        "suppression_removals",
        ["account_id", "address"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_suppression_removals_account_id_address"), table_name="suppression_removals"
    )
    op.drop_table("suppression_removals")
    op.drop_index(op.f("ix_suppressions_account_id_created_at_id"), table_name="suppressions")
    op.drop_table("suppressions")
