"""webhook endpoints, and their deliveries written with the events they carry

A trigger on message_events writes one delivery per event and enabled endpoint of its account
that wants it, inside the transaction that inserts the event: an event committed is an event
on its way, whichever statement wrote it. On PostgreSQL it runs once per statement over the
statement's new rows; an account without endpoints costs one index probe per statement.
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_INSERT = """
    INSERT INTO webhook_deliveries (endpoint_id, account_id, event_id, state, attempts,
                                    next_attempt_at, created_at)
    SELECT ep.id, ev.account_id, ev.id, 'PENDING', 0, ev.occurred_at, ev.occurred_at
    FROM {events} AS ev
    JOIN webhook_endpoints AS ep ON ep.account_id = ev.account_id AND ep.enabled
    WHERE (ep.event_kinds = '' OR {find}(ep.event_kinds, ',' || ev.kind || ',') > 0)
      AND (ep.statuses = '' OR {find}(ep.statuses, ',' || ev.status || ',') > 0)
"""
# Endpoints match an event by substring: their filters are comma-wrapped lists, '' for all.
_POSTGRES_INSERT = _INSERT.format(events="new_events", find="strpos")
_SQLITE_EVENT = (
    "(SELECT NEW.id AS id, NEW.account_id AS account_id, NEW.kind AS kind,"
    " NEW.status AS status, NEW.occurred_at AS occurred_at)"
)
_SQLITE_INSERT = _INSERT.format(events=_SQLITE_EVENT, find="instr")

POSTGRES_FUNCTION = f"""
CREATE FUNCTION webhook_deliveries_of_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {_POSTGRES_INSERT};
    RETURN NULL;
END
$$
"""
POSTGRES_TRIGGER = """
CREATE TRIGGER webhook_deliveries_of_events AFTER INSERT ON message_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_deliveries_of_events();
"""

SQLITE_TRIGGER = f"""
CREATE TRIGGER webhook_deliveries_of_events AFTER INSERT ON message_events
BEGIN
    {_SQLITE_INSERT};
END
"""


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("event_kinds", sa.Text(), nullable=False),
        sa.Column("statuses", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=16), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("previous_secret", sa.Text(), nullable=True),
        sa.Column("previous_secret_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_webhook_endpoints_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_index(
        op.f("ix_webhook_endpoints_account_id_created_at_id"),
        "webhook_endpoints",
        ["account_id", "created_at", "id"],
        unique=False,
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", _ID, nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_response", sa.Text(), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_webhook_deliveries_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["message_events.id"],
            name=op.f("fk_webhook_deliveries_event_id_message_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(
        op.f("ix_webhook_deliveries_endpoint_id_id"),
        "webhook_deliveries",
        ["endpoint_id", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_webhook_deliveries_event_id"), "webhook_deliveries", ["event_id"], unique=False
    )
    pending = sa.text("state = 'PENDING'")
    op.create_index(
        op.f("ix_webhook_deliveries_next_attempt_at"),
        "webhook_deliveries",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=pending,
        sqlite_where=pending,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        op.execute(POSTGRES_TRIGGER)
    else:
        op.execute(SQLITE_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER webhook_deliveries_of_events ON message_events")
        op.execute("DROP FUNCTION webhook_deliveries_of_events()")
    else:
        op.execute("DROP TRIGGER webhook_deliveries_of_events")
    op.drop_index(op.f("ix_webhook_deliveries_next_attempt_at"), table_name="webhook_deliveries")
    op.drop_index(op.f("ix_webhook_deliveries_event_id"), table_name="webhook_deliveries")
    op.drop_index(op.f("ix_webhook_deliveries_endpoint_id_id"), table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index(
        op.f("ix_webhook_endpoints_account_id_created_at_id"), table_name="webhook_endpoints"
    )
    op.drop_table("webhook_endpoints")
