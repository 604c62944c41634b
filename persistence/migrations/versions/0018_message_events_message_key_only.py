"""message events keep one foreign key, to their message

An event's account and conversation are its message's, copied from the message row by the
statement that writes the event; the event already references its message (and goes with it),
and the message references its account and conversation. The two other foreign keys checked
nothing more, yet each event insert paid for them: a lookup in ``accounts`` and one in
``conversations``, each taking a share lock on the parent row. Every event of an account locked
that account's one row, so concurrent writers (the accept, the worker's claims and records,
the status callbacks) kept turning that lock into a shared multi-transaction lock. Deleting an
account or a conversation still deletes its events, through their messages.

SQLite cannot drop a constraint: the table is rebuilt from its own schema without the two,
with its indexes and trigger. Dropping the old table deletes the webhook deliveries that
reference its events (their foreign key cascades): they are kept aside and put back.
"""

import re
from collections.abc import Callable

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"

_TABLE = "message_events"
_DROPPED = {
    "fk_message_events_account_id_accounts": ("account_id", "accounts"),
    "fk_message_events_conversation_id_conversations": ("conversation_id", "conversations"),
}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in _DROPPED:
            op.execute(f"ALTER TABLE {_TABLE} DROP CONSTRAINT {name}")
        return
    _rebuild_on_sqlite(lambda ddl: _without_constraints(ddl, _DROPPED))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, (column, parent) in _DROPPED.items():
            op.execute(
                f"ALTER TABLE {_TABLE} ADD CONSTRAINT {name} FOREIGN KEY ({column})"
                f" REFERENCES {parent} (id) ON DELETE CASCADE"
            )
        return
    _rebuild_on_sqlite(lambda ddl: _with_constraints(ddl, _DROPPED))


def _rebuild_on_sqlite(rewrite: Callable[[str], str]) -> None:
    bind = op.get_bind()
    schema = bind.exec_driver_sql(
        "SELECT type, sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL",
        (_TABLE,),
    ).all()
    [table_ddl] = [sql for kind, sql in schema if kind == "table"]
    others = [sql for kind, sql in schema if kind != "table"]  # indexes and the trigger
    # Named as first created, or quoted once a rename has rewritten it.
    new_ddl = re.sub(rf'^CREATE TABLE "?{_TABLE}"?', "CREATE TABLE _rebuilt", rewrite(table_ddl))
    op.execute("CREATE TEMP TABLE _kept_deliveries AS SELECT * FROM webhook_deliveries")
    op.execute(new_ddl)
    op.execute(f"INSERT INTO _rebuilt SELECT * FROM {_TABLE}")
    op.execute(f"DROP TABLE {_TABLE}")
    op.execute(f"ALTER TABLE _rebuilt RENAME TO {_TABLE}")
    for sql in others:
        op.execute(sql)
    op.execute("INSERT INTO webhook_deliveries SELECT * FROM _kept_deliveries")
    op.execute("DROP TABLE _kept_deliveries")


def _without_constraints(ddl: str, names: dict[str, tuple[str, str]]) -> str:
    for name in names:
        constraint = rf",\s*CONSTRAINT {name} FOREIGN KEY\([^)]*\) REFERENCES [^,)]*\([^)]*\)[^,)]*"
        ddl, found = re.subn(constraint, "", ddl)
        if found != 1:
            raise RuntimeError(f"{_TABLE} has no constraint {name} to drop")
    return ddl


def _with_constraints(ddl: str, names: dict[str, tuple[str, str]]) -> str:
    added = "".join(
        f", \n\tCONSTRAINT {name} FOREIGN KEY({column}) REFERENCES {parent} (id) ON DELETE CASCADE"
        for name, (column, parent) in names.items()
    )
    head, _, tail = ddl.rpartition(")")
    return head + added + "\n)" + tail
