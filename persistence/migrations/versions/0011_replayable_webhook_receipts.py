"""replayable webhook receipts: a kept payload's endpoint and query, and when it was replayed

A payload we could not apply is kept raw; to apply it again later (``replay-receipts``) its
endpoint (which adapter parses it) and its query string (a Twilio status callback carries our
message id there) are kept beside it, and a replay marks the row instead of deleting it.
Nullable columns without defaults: adding them rewrites nothing.
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"


def upgrade() -> None:
    op.add_column("webhook_receipts", sa.Column("route", sa.String(length=32), nullable=True))
    op.add_column("webhook_receipts", sa.Column("query", sa.Text(), nullable=True))
    op.add_column(
        "webhook_receipts", sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("webhook_receipts", "replayed_at")
    op.drop_column("webhook_receipts", "query")
    op.drop_column("webhook_receipts", "route")
