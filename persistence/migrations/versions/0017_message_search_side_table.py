"""message search off the hot row: each message's search document in a table of its own

The document was a stored generated column of ``messages`` with a GIN index, and every status
change updates indexed columns of that row: no such update is HOT, so each one recomputed the
document and wrote a new entry into every index of the row, the GIN index included. Now the
PostgreSQL document lives in ``message_search``, one row per message with words in its body
(message id, account, conversation, the ``simple`` tsvector), GIN-indexed for the words and
indexed by conversation for a conversation's search. It is written
once, by a statement-level trigger over the rows each INSERT into ``messages`` adds (the
accept stays one statement), never by a status change, and goes with its message (the foreign
key cascades). A row trigger rewrites it in the rare case a body itself changes.

SQLite is unchanged: its FTS5 index is a table of its own already, and its triggers fire on
insert, delete and an update of the body only, so a status change never touches it.
"""

from alembic import op

from persistence.migrations.ddl import postgresql_only

revision: str = "0017"
down_revision: str | None = "0016b"

# A body with no word (none at all, or only punctuation) has no row: nothing could match it.
_DOCUMENTS = """
    SELECT id, account_id, conversation_id, to_tsvector('simple', coalesce(body, '')) AS document
    FROM {rows}
"""
_INSERT = f"""
    INSERT INTO message_search (message_id, account_id, conversation_id, document)
    SELECT * FROM ({_DOCUMENTS}) AS d WHERE length(d.document) > 0
"""

_FUNCTIONS = {
    "message_search_of_new_messages": f"""
BEGIN
    {_INSERT.format(rows="new_messages")};
    RETURN NULL;
END
""",
    "message_search_of_new_body": f"""
BEGIN
    DELETE FROM message_search WHERE message_id = NEW.id;
    {_INSERT.format(rows="(SELECT NEW.*) AS n")};
    RETURN NULL;
END
""",
}
_TRIGGERS = {
    "message_search_of_new_messages": "AFTER INSERT ON messages"
    " REFERENCING NEW TABLE AS new_messages FOR EACH STATEMENT",
    "message_search_of_new_body": "AFTER UPDATE OF body ON messages"
    " FOR EACH ROW WHEN (OLD.body IS DISTINCT FROM NEW.body)",
}


@postgresql_only
def upgrade() -> None:
    op.execute(
        "CREATE TABLE message_search ("
        " message_id uuid NOT NULL,"
        " account_id uuid NOT NULL,"
        " conversation_id uuid NOT NULL,"
        " document tsvector NOT NULL,"
        " CONSTRAINT pk_message_search PRIMARY KEY (message_id),"
        " CONSTRAINT fk_message_search_message_id_messages FOREIGN KEY (message_id)"
        " REFERENCES messages (id) ON DELETE CASCADE)"
    )
    for name, body in _FUNCTIONS.items():
        op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ {body} $$")
        op.execute(f"CREATE TRIGGER {name} {_TRIGGERS[name]} EXECUTE FUNCTION {name}()")
    # The stored documents are copied, not computed again.
    op.execute(
        "INSERT INTO message_search (message_id, account_id, conversation_id, document)"
        " SELECT id, account_id, conversation_id, search FROM messages WHERE length(search) > 0"
    )
    op.execute("CREATE INDEX ix_message_search_document ON message_search USING gin (document)")
    op.execute("CREATE INDEX ix_message_search_conversation_id ON message_search (conversation_id)")
    op.execute("DROP INDEX ix_messages_search")
    op.execute("ALTER TABLE messages DROP COLUMN search")


@postgresql_only
def downgrade() -> None:
    op.execute(
        "ALTER TABLE messages ADD COLUMN search tsvector"
        " GENERATED ALWAYS AS (to_tsvector('simple', coalesce(body, ''))) STORED"
    )
    op.execute("CREATE INDEX ix_messages_search ON messages USING gin (search)")
    for name in _FUNCTIONS:
        op.execute(f"DROP TRIGGER {name} ON messages")
        op.execute(f"DROP FUNCTION {name}()")
    op.execute("DROP TABLE message_search")
