"""Full-text search of message bodies: the index each database keeps (migration 0015b) and the
condition that asks it, from terms parsed by gateway/domain/search.py.

The tsvector column and the FTS5 table are maintained by the database itself (a generated
column; triggers), so they stay out of the SQLAlchemy models; ``include_name`` keeps Alembic's
comparison of models and database from seeing them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, func, literal_column, select, text

from gateway.domain.search import Term, to_fts5, to_tsquery

FTS_TABLE = "messages_fts"


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    if type_ == "table" and name is not None and name.startswith(FTS_TABLE):
        return False
    if type_ == "column" and name == "search" and parent_names.get("table_name") == "messages":
        return False
    return not (type_ == "index" and name == "ix_messages_search")


def body_matches(dialect: str, terms: tuple[Term, ...]) -> ColumnElement[bool]:
    """True for a message whose body has every term."""
    if dialect == "postgresql":
        # The configuration inline: the planner must see it to match the indexed expression.
        query: ColumnElement[Any] = func.to_tsquery(
            literal_column("'simple'"), bindparam(None, to_tsquery(terms))
        )
        return literal_column("messages.search").op("@@")(query)
    fts: ColumnElement[Any] = literal_column(FTS_TABLE)
    matching: Select[Any] = (
        select(literal_column("rowid"))
        .select_from(text(FTS_TABLE))
        .where(fts.op("MATCH")(bindparam(None, to_fts5(terms))))
    )
    return literal_column("messages.rowid").in_(matching.scalar_subquery())
