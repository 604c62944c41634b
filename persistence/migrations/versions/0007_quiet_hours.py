"""quiet hours: each account's daily window, and messages that may be sent inside it

An account may set a daily window in which nothing is sent to a recipient, read in the
recipient's local time; messages due inside it wait until it ends. A transactional message
(a one-time code) is marked to go anyway, and the mark is kept on the message because the
check is made again whenever it comes due (scheduled, retried).
"""

import sqlalchemy as sa
from alembic import op

from persistence.migrations.ddl import TableDDL

revision: str = "0007"
down_revision: str | None = "0006"

QUIET_HOURS = TableDDL("quiet_hours")


def upgrade() -> None:
    QUIET_HOURS.create_account_settings(
        sa.Column("start_minute", sa.Integer(), nullable=True),
        sa.Column("end_minute", sa.Integer(), nullable=True),
        sa.Column("default_time_zone", sa.String(length=64), nullable=False),
    )
    # Nullable, no default (NULL reads as false): adding it rewrites nothing.
    op.add_column("messages", sa.Column("bypass_quiet_hours", sa.Boolean(), nullable=True))


def downgrade() -> None:
    op.drop_column("messages", "bypass_quiet_hours")
    QUIET_HOURS.drop()
