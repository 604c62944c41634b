"""Full-text search of message bodies: the index each database keeps and the condition that
asks it, from terms parsed by gateway/domain/search.py.

PostgreSQL keeps each message's document in ``message_search`` (migration 0017), SQLite in the
FTS5 table ``messages_fts`` (migration 0015b): both apart from the message row, which status
changes update, and both written by triggers, so they stay out of the SQLAlchemy models;
``include_name`` keeps Alembic's comparison of models and database from seeing them.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, Select, bindparam, func, literal_column, select, text

from gateway.domain.search import Term, to_fts5, to_tsquery
from persistence.rows import MESSAGES

FTS_TABLE = "messages_fts"
DOCUMENTS = "message_search"


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    return not (
        type_ == "table" and name is not None and (name.startswith(FTS_TABLE) or name == DOCUMENTS)
    )


def body_matches(dialect: str, account_id: UUID, terms: tuple[Term, ...]) -> ColumnElement[bool]:
    """True for a message of the account whose body has every term."""
    if dialect == "postgresql":
        return documents_match(literal_column("messages.id"), account_id, terms)
    fts: ColumnElement[Any] = literal_column(FTS_TABLE)
    matching: Select[Any] = (
        select(literal_column("rowid"))
        .select_from(text(FTS_TABLE))
        .where(fts.op("MATCH")(bindparam(None, to_fts5(terms))))
    )
    return literal_column("messages.rowid").in_(matching.scalar_subquery())


def documents_match(
    message_id: ColumnElement[Any], account_id: UUID, terms: tuple[Term, ...]
) -> ColumnElement[bool]:
    """PostgreSQL: True for the id of a message of the account whose body has every term."""
    documents: Select[Any] = (
        select(literal_column("message_id"))
        .select_from(text(DOCUMENTS))
        .where(
            literal_column("account_id") == bindparam(None, account_id),
            literal_column("document").op("@@")(_tsquery(terms)),
        )
    )
    return message_id.in_(documents.scalar_subquery())


def _tsquery(terms: tuple[Term, ...]) -> ColumnElement[Any]:
    # The configuration the documents are made with, so that the words are read alike.
    return func.to_tsquery(literal_column("'simple'"), bindparam(None, to_tsquery(terms)))


def conversation_matches(
    dialect: str, account_id: UUID, terms: tuple[Term, ...]
) -> ColumnElement[bool]:
    """True for a conversation of the account with a message whose body has every term."""
    if dialect == "postgresql":
        # The documents name their conversation: asked conversation by conversation (few
        # needed, the words common) or for every match at once (the words rare), neither
        # way reads the messages themselves.
        return (
            select(literal_column("message_id"))
            .select_from(text(DOCUMENTS))
            .where(
                literal_column("conversation_id") == literal_column("conversations.id"),
                literal_column("document").op("@@")(_tsquery(terms)),
            )
            .exists()
        )
    m = MESSAGES.c
    return (
        select(m.id)
        .where(
            m.conversation_id == literal_column("conversations.id"),
            m.account_id == account_id,
            body_matches(dialect, account_id, terms),
        )
        .exists()
    )
