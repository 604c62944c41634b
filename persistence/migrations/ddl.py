"""Builders for the columns, keys and indexes that the revisions declare again and again.

Frozen: released revisions call these, and a released revision must emit the same DDL for as
long as it exists (``tests/unit/test_migration_ddl.py`` pins each one's SQL). Never change what
a builder emits, not even a name or an option; a new shape gets a new builder.

Names follow the models' naming convention (``persistence.models.NAMING``), spelled out with
``op.f`` so that they never depend on the convention in force when a revision runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

#: JSON, stored as JSONB on PostgreSQL.
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
#: A 64-bit serial; on SQLite an INTEGER, the only type its rowid alias autoincrements.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
#: The databases whose partial indexes are given the same condition.
_PARTIAL = ("postgresql", "sqlite")


def uuid_column(name: str) -> sa.Column[Any]:
    """A UUID that every row has: a key of its own or of the row it belongs to."""
    return sa.Column(name, sa.Uuid(), nullable=False)


def serial_id() -> sa.Column[Any]:
    """The ``id`` of a table whose keys the database hands out in order."""
    return sa.Column("id", BIG_ID, autoincrement=True, nullable=False)


def timestamp(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def postgresql_only(step: Callable[[], None]) -> Callable[[], None]:
    """An upgrade or downgrade that does nothing on any other database."""

    @functools.wraps(step)
    def run() -> None:
        if op.get_bind().dialect.name == "postgresql":
            step()

    return run


@dataclass(frozen=True)
class TableDDL:
    """One table's creation, keys and indexes, each named after the table and its columns."""

    name: str

    def create(self, *elements: sa.schema.SchemaItem) -> None:
        op.create_table(self.name, *elements)

    def drop(self) -> None:
        op.drop_table(self.name)

    def primary_key(self, *columns: str) -> sa.PrimaryKeyConstraint:
        return sa.PrimaryKeyConstraint(*columns, name=op.f(f"pk_{self.name}"))

    def unique(self, *columns: str) -> sa.UniqueConstraint:
        return sa.UniqueConstraint(*columns, name=op.f(f"uq_{self.name}_{'_'.join(columns)}"))

    def cascading_fk(self, column: str, parent: str, **options: Any) -> sa.ForeignKeyConstraint:
        """``column`` references ``parent.id``; deleting the parent row deletes this one."""
        return sa.ForeignKeyConstraint(
            [column],
            [f"{parent}.id"],
            name=op.f(f"fk_{self.name}_{column}_{parent}"),
            ondelete="CASCADE",
            **options,
        )

    def account_fk(self) -> sa.ForeignKeyConstraint:
        """The row belongs to an account, and goes with it."""
        return self.cascading_fk("account_id", "accounts")

    def create_account_settings(self, *columns: sa.Column[Any], key: tuple[str, ...] = ()) -> None:
        """A table of an account's settings: keyed by its account (then ``key``), stamped with
        when they last changed, and gone with the account."""
        self.create(
            uuid_column("account_id"),
            *columns,
            timestamp("updated_at"),
            self.account_fk(),
            self.primary_key("account_id", *key),
        )

    def create_index(
        self, *columns: str, where: str | None = None, name: str | None = None
    ) -> None:
        """A plain index on ``columns``; ``where``: a partial one, of the rows it holds (on
        both databases). ``name``: one that does not follow the convention."""
        partial: dict[str, Any] = {}
        if where is not None:
            partial = {f"{db}_where": sa.text(where) for db in _PARTIAL}
        op.create_index(
            name or self._index_name(columns), self.name, list(columns), unique=False, **partial
        )

    def drop_index(self, *columns: str, name: str | None = None) -> None:
        op.drop_index(name or self._index_name(columns), table_name=self.name)

    def _index_name(self, columns: tuple[str, ...]) -> str:
        return op.f(f"ix_{self.name}_{'_'.join(columns)}")
