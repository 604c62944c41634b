"""opt-out keywords: each account's words, their scope and auto-replies, and the exemption
of an auto-reply from suppressions

A recipient who answers STOP is suppressed, and is told so by an automatic answer: that
answer must reach them although they are now suppressed. The mark is kept on the message
because the suppression check is made again when it is claimed.
"""

import sqlalchemy as sa
from alembic import op

from persistence.migrations.ddl import JSON, TableDDL

revision: str = "0009"
down_revision: str | None = "0008"

OPT_OUT_SETTINGS = TableDDL("opt_out_settings")


def upgrade() -> None:
    OPT_OUT_SETTINGS.create_account_settings(
        sa.Column("stop_keywords", JSON, nullable=False),
        sa.Column("start_keywords", JSON, nullable=False),
        sa.Column("help_keywords", JSON, nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("stop_reply", sa.Text(), nullable=True),
        sa.Column("start_reply", sa.Text(), nullable=True),
        sa.Column("help_reply", sa.Text(), nullable=True),
    )
    # Nullable, no default (NULL reads as false): adding it rewrites nothing.
    op.add_column("messages", sa.Column("suppression_exempt", sa.Boolean(), nullable=True))


def downgrade() -> None:
    op.drop_column("messages", "suppression_exempt")
    OPT_OUT_SETTINGS.drop()
