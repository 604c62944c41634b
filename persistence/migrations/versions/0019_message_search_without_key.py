"""message search documents go with their message by a trigger, not a foreign key

A search document is written by the statement that writes its message (the trigger of 0017),
from that very row, so its foreign key could never find it missing; yet every accepted message
paid for the check: a lookup of the new message, taking a share lock on its row, once per
document. Documents now leave with their messages through a statement-level trigger on
``DELETE FROM messages`` (also fired by the deletes that cascade from accounts and
conversations), which removes the documents of all the rows a statement deleted at once, and
one on ``TRUNCATE``, which the key used to extend to the documents.

PostgreSQL only: SQLite's FTS5 index is kept by its own triggers (0015b).
"""

from alembic import op

from persistence.migrations.ddl import postgresql_only

revision: str = "0019"
down_revision: str | None = "0018"

_KEY = "fk_message_search_message_id_messages"
_FUNCTION = "message_search_of_gone_messages"
_EMPTIED = "message_search_of_emptied_messages"


@postgresql_only
def upgrade() -> None:
    op.execute(f"ALTER TABLE message_search DROP CONSTRAINT {_KEY}")
    op.execute(
        f"CREATE FUNCTION {_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " DELETE FROM message_search WHERE message_id IN (SELECT id FROM gone_messages);"
        " RETURN NULL; END $$"
    )
    op.execute(
        f"CREATE TRIGGER {_FUNCTION} AFTER DELETE ON messages"
        f" REFERENCING OLD TABLE AS gone_messages FOR EACH STATEMENT EXECUTE FUNCTION {_FUNCTION}()"
    )
    op.execute(
        f"CREATE FUNCTION {_EMPTIED}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " TRUNCATE message_search; RETURN NULL; END $$"
    )
    op.execute(
        f"CREATE TRIGGER {_EMPTIED} AFTER TRUNCATE ON messages"
        f" FOR EACH STATEMENT EXECUTE FUNCTION {_EMPTIED}()"
    )


@postgresql_only
def downgrade() -> None:
    for name in (_FUNCTION, _EMPTIED):
        op.execute(f"DROP TRIGGER {name} ON messages")
        op.execute(f"DROP FUNCTION {name}()")
    # A document without its message cannot exist with the trigger in place; should one, the
    # key could not be added.
    op.execute(
        "DELETE FROM message_search AS s WHERE NOT EXISTS"
        " (SELECT FROM messages AS m WHERE m.id = s.message_id)"
    )
    op.execute(
        f"ALTER TABLE message_search ADD CONSTRAINT {_KEY} FOREIGN KEY (message_id)"
        " REFERENCES messages (id) ON DELETE CASCADE"
    )
