"""which worker holds a SENDING message

A message in SENDING is in some worker's hands. Recording whose lets the others take back a
dead worker's messages as soon as its heartbeat stops, instead of waiting for a timeout long
enough to never cut a live worker's slow provider call short.
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"


def upgrade() -> None:
    # Nullable, no default: adding it rewrites nothing, and messages claimed before it
    # existed are taken back by age as before.
    op.add_column("messages", sa.Column("claimed_by", sa.String(length=128), nullable=True))


def downgrade() -> None:
    op.drop_column("messages", "claimed_by")
