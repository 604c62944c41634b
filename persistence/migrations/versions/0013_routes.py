"""routes: an account's vendor order per channel, for every destination or for one country

The delivery worker reads an account's routes (through a short cache) to order the vendors of
each message; no row: the channel's default order from the settings.
"""

import sqlalchemy as sa

from persistence.migrations.ddl import JSON, TableDDL

revision: str = "0013"
down_revision: str | None = "0012"

ROUTES = TableDDL("routes")


def upgrade() -> None:
    ROUTES.create_account_settings(
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("providers", JSON, nullable=False),
        key=("channel", "country"),
    )


def downgrade() -> None:
    ROUTES.drop()
