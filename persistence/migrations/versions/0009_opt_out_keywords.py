"""opt-out keywords: each account's words, their scope and auto-replies, and the exemption
of an auto-reply from suppressions

A recipient who answers STOP is suppressed, and is told so by an automatic answer: that
answer must reach them although they are now suppressed. The mark is kept on the message
because the suppression check is made again when it is claimed.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "opt_out_settings",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("stop_keywords", JSON, nullable=False),
        sa.Column("start_keywords", JSON, nullable=False),
        sa.Column("help_keywords", JSON, nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("stop_reply", sa.Text(), nullable=True),
        sa.Column("start_reply", sa.Text(), nullable=True),
        sa.Column("help_reply", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_opt_out_settings_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_opt_out_settings")),
    )
    # Nullable, no default (NULL reads as false): adding it rewrites nothing.
    op.add_column("messages", sa.Column("suppression_exempt", sa.Boolean(), nullable=True))


def downgrade() -> None:
    op.drop_column("messages", "suppression_exempt")
    op.drop_table("opt_out_settings")
