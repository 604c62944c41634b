"""sender rates: the segments per second a sender number or e-mail domain may send

Carriers throttle by sending number and mailbox providers judge by sending domain; a sender
without a rate of its own gets its kind's default from the settings, so only the senders
given a rate have a row.
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"


def upgrade() -> None:
    op.create_table(
        "sender_rates",
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("segments_per_second", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sender", name=op.f("pk_sender_rates")),
    )


def downgrade() -> None:
    op.drop_table("sender_rates")
