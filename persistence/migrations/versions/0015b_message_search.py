"""message search: a full-text index of message bodies on each database

PostgreSQL: a generated ``tsvector`` column (the ``simple`` configuration: no stemming, no stop
words, the same words in every language) and a GIN index on it. SQLite: an FTS5 table over
``messages.body`` (external content: the text is not stored twice), kept in step by triggers in
the same transaction as every insert, update and delete of a message.

Neither is part of the SQLAlchemy models: the database maintains them itself, and the read side
names them in SQL (persistence/search.py). Migration 0017 moves the PostgreSQL document off the
message row, into a table of its own.
"""

from alembic import op

revision: str = "0015b"
down_revision: str | None = "0015"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE messages ADD COLUMN search tsvector"
            " GENERATED ALWAYS AS (to_tsvector('simple', coalesce(body, ''))) STORED"
        )
        op.execute("CREATE INDEX ix_messages_search ON messages USING gin (search)")
        return
    # Diacritics kept, as PostgreSQL's simple configuration keeps them: both find the same.
    op.execute(
        "CREATE VIRTUAL TABLE messages_fts USING fts5(body, content='messages',"
        " content_rowid='rowid', tokenize='unicode61 remove_diacritics 0')"
    )
    op.execute("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')")
    op.execute(
        "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN"
        " INSERT INTO messages_fts (rowid, body) VALUES (new.rowid, new.body); END"
    )
    op.execute(
        "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN"
        " INSERT INTO messages_fts (messages_fts, rowid, body)"
        " VALUES ('delete', old.rowid, old.body); END"
    )
    op.execute(
        "CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages BEGIN"
        " INSERT INTO messages_fts (messages_fts, rowid, body)"
        " VALUES ('delete', old.rowid, old.body);"
        " INSERT INTO messages_fts (rowid, body) VALUES (new.rowid, new.body); END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_messages_search")
        op.execute("ALTER TABLE messages DROP COLUMN search")
        return
    for trigger in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER messages_fts_{trigger}")
    op.execute("DROP TABLE messages_fts")
