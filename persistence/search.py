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
    """True for a message of the account whose body has every term, as a set of matches the
    database may read from the full-text index at once."""
    if dialect == "postgresql":
        documents: Select[Any] = (
            select(literal_column("message_id"))
            .select_from(text(DOCUMENTS))
            .where(
                literal_column("account_id") == bindparam(None, account_id),
                literal_column("document").op("@@")(_tsquery(terms)),
            )
        )
        return literal_column("messages.id").in_(documents.scalar_subquery())
    fts: ColumnElement[Any] = literal_column(FTS_TABLE)
    matching: Select[Any] = (
        select(literal_column("rowid"))
        .select_from(text(FTS_TABLE))
        .where(fts.op("MATCH")(bindparam(None, to_fts5(terms))))
    )
    return literal_column("messages.rowid").in_(matching.scalar_subquery())


def document_matches(
    message_id: ColumnElement[Any], terms: tuple[Term, ...]
) -> ColumnElement[bool]:
    """PostgreSQL: True for the id of a message whose body has every term, tested on its own
    document: a scalar subquery, which the planner can only run row by row (one probe of the
    documents' primary key), never by reading every match first."""
    document: ColumnElement[Any] = (
        select(literal_column("document"))
        .select_from(text(DOCUMENTS))
        .where(literal_column("message_id") == message_id)
        .scalar_subquery()
    )
    return document.op("@@")(_tsquery(terms))


def _tsquery(terms: tuple[Term, ...]) -> ColumnElement[Any]:
    # The configuration the documents are made with, so that the words are read alike.
    return func.to_tsquery(literal_column("'simple'"), bindparam(None, to_tsquery(terms)))


def conversation_matches(
    dialect: str,
    account_id: UUID,
    terms: tuple[Term, ...],
    conversation_id: ColumnElement[Any] | None = None,
) -> ColumnElement[bool]:
    """True for a conversation of the account (its id ``conversation_id``, by default the
    conversations table's) with a message whose body has every term. On PostgreSQL a scalar
    subquery, run conversation by conversation over its documents (never by reading every
    match first), which stops at the first match and never reads the messages themselves."""
    if conversation_id is None:
        conversation_id = literal_column("conversations.id")
    if dialect == "postgresql":
        # OFFSET 0: the conversation's documents are found by its index alone; asked of the
        # full-text index too, each probe would read every match of the account.
        documents = (
            select(literal_column("document"))
            .select_from(text(DOCUMENTS))
            .where(literal_column("conversation_id") == conversation_id)
            .offset(0)
            .subquery()
        )
        first_match: ColumnElement[Any] = (
            select(literal_column("1"))
            .select_from(documents)
            .where(documents.c.document.op("@@")(_tsquery(terms)))
            .limit(1)
            .scalar_subquery()
        )
        return first_match.is_not(None)
    m = MESSAGES.c
    return (
        select(m.id)
        .where(
            m.conversation_id == conversation_id,
            m.account_id == account_id,
            body_matches(dialect, account_id, terms),
        )
        .exists()
    )


def conversations_matching(account_id: UUID, terms: tuple[Term, ...]) -> Select[Any]:
    """PostgreSQL: the conversations of the account with a message whose body has every
    term, read from the full-text index at once (a conversation once per match)."""
    return (
        select(literal_column("conversation_id"))
        .select_from(text(DOCUMENTS))
        .where(
            literal_column("account_id") == bindparam(None, account_id),
            literal_column("document").op("@@")(_tsquery(terms)),
        )
    )
