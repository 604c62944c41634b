"""webhook endpoints, and their deliveries written with the events they carry

A trigger on message_events writes one delivery per event and enabled endpoint of its account
that wants it, inside the transaction that inserts the event: an event committed is an event
on its way, whichever statement wrote it. On PostgreSQL it runs once per statement over the
statement's new rows; an account without endpoints costs one index probe per statement.
"""

import sqlalchemy as sa
from alembic import op

from persistence.migrations.ddl import BIG_ID, TableDDL, serial_id, timestamp, uuid_column

revision: str = "0012"
down_revision: str | None = "0011"

ENDPOINTS = TableDDL("webhook_endpoints")
DELIVERIES = TableDDL("webhook_deliveries")

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
    ENDPOINTS.create(
        uuid_column("id"),
        uuid_column("account_id"),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("event_kinds", sa.Text(), nullable=False),
        sa.Column("statuses", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=16), nullable=True),
        timestamp("disabled_at", nullable=True),
        timestamp("failing_since", nullable=True),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("previous_secret", sa.Text(), nullable=True),
        timestamp("previous_secret_until", nullable=True),
        timestamp("created_at"),
        timestamp("updated_at"),
        ENDPOINTS.account_fk(),
        ENDPOINTS.primary_key("id"),
    )
    ENDPOINTS.create_index("account_id", "created_at", "id")
    DELIVERIES.create(
        serial_id(),
        uuid_column("endpoint_id"),
        uuid_column("account_id"),
        sa.Column("event_id", BIG_ID, nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        timestamp("next_attempt_at", nullable=True),
        timestamp("leased_until", nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_response", sa.Text(), nullable=True),
        timestamp("last_attempt_at", nullable=True),
        timestamp("created_at"),
        DELIVERIES.account_fk(),
        DELIVERIES.cascading_fk("endpoint_id", "webhook_endpoints"),
        DELIVERIES.cascading_fk("event_id", "message_events"),
        DELIVERIES.primary_key("id"),
    )
    DELIVERIES.create_index("endpoint_id", "id")
    DELIVERIES.create_index("event_id")
    DELIVERIES.create_index("next_attempt_at", where="state = 'PENDING'")
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
    DELIVERIES.drop_index("next_attempt_at")
    DELIVERIES.drop_index("event_id")
    DELIVERIES.drop_index("endpoint_id", "id")
    DELIVERIES.drop()
    ENDPOINTS.drop_index("account_id", "created_at", "id")
    ENDPOINTS.drop()
