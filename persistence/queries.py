"""Read side: lookups by id (batched for DataLoaders) and keyset pages.

Every lookup that starts from a client-supplied id is scoped to the caller's account, so an
id of another account answers exactly like an id that does not exist.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import (
    Column,
    ColumnElement,
    Row,
    Select,
    Subquery,
    func,
    literal_column,
    or_,
    select,
    tuple_,
    union,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.domain.message_filters import MessageFilter, MessageSort
from gateway.domain.records import Conversation, Message, MessageEvent, Page
from gateway.domain.search import ConversationSearch, Term
from gateway.domain.statuses import MessageStatus
from gateway.services.ports import (
    ALL_EVENTS,
    ConversationFilter,
    EventScope,
    PageRequest,
    TwoWayPageRequest,
)
from persistence.base import Repository
from persistence.rows import (
    CONVERSATIONS,
    EVENTS,
    MESSAGES,
    conversation_from_row,
    event_from_row,
    message_from_row,
)
from persistence.search import (
    body_matches,
    conversation_matches,
    conversations_matching,
    document_matches,
)

T = TypeVar("T")

#: How many of the newest messages a search on PostgreSQL may test one by one before it reads
#: the full-text index instead: words in more than a page in this many are found this way.
SEARCH_WINDOW = 10_000
#: The same for a search of conversations, each tested on its own documents.
CONVERSATION_WINDOW = 200


class QueryRepository(Repository):
    async def messages(self, account_id: UUID, ids: Sequence[UUID]) -> dict[UUID, Message]:
        if not ids:
            return {}
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(MESSAGES).where(MESSAGES.c.account_id == account_id, MESSAGES.c.id.in_(ids))
            )
        return {m.id: m for m in map(message_from_row, rows)}

    async def conversations(
        self, account_id: UUID, ids: Sequence[UUID]
    ) -> dict[UUID, Conversation]:
        if not ids:
            return {}
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(CONVERSATIONS).where(
                    CONVERSATIONS.c.account_id == account_id, CONVERSATIONS.c.id.in_(ids)
                )
            )
        return {c.id: c for c in map(conversation_from_row, rows)}

    async def message_counts(self, conversation_ids: Sequence[UUID]) -> dict[UUID, int]:
        # Derived, not stored: a stored counter would make every send update one hot row.
        if not conversation_ids:
            return {}
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(MESSAGES.c.conversation_id, func.count())
                .where(MESSAGES.c.conversation_id.in_(conversation_ids))
                .group_by(MESSAGES.c.conversation_id)
            )
        return {r[0]: r[1] for r in rows}

    async def events_of_messages(
        self, message_ids: Sequence[UUID]
    ) -> dict[UUID, list[MessageEvent]]:
        result: dict[UUID, list[MessageEvent]] = defaultdict(list)
        if not message_ids:
            return result
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(EVENTS).where(EVENTS.c.message_id.in_(message_ids)).order_by(EVENTS.c.id)
            )
        for event in map(event_from_row, rows):
            result[event.message_id].append(event)
        return result

    async def conversations_page(
        self, account_id: UUID, where: ConversationFilter, request: PageRequest
    ) -> Page[Conversation]:
        c = CONVERSATIONS.c
        query = select(CONVERSATIONS).where(c.account_id == account_id)
        participant, search = where.participant, where.search
        if participant is not None:
            query = query.where(or_(c.participant_a == participant, c.participant_b == participant))
        key = (c.last_message_at, c.id)
        if search is not None and self.dialect == "postgresql":
            return await self._searched_conversations(account_id, query, search, request)
        if search is not None:
            query = query.where(
                or_(
                    c.participant_a.contains(search.fragment, autoescape=True),
                    c.participant_b.contains(search.fragment, autoescape=True),
                    conversation_matches(self.dialect, account_id, search.terms),
                )
            )
        return await keyset_page(self.engine, query, key, conversation_from_row, request)

    async def _searched_conversations(
        self,
        account_id: UUID,
        query: Select[Any],
        search: ConversationSearch,
        request: PageRequest,
    ) -> Page[Conversation]:
        """A page of the conversations of ``query`` that ``search`` finds, on PostgreSQL: the
        two ways of a message search (``_searched_page``). A conversation's documents are
        probed one conversation at a time, newest conversation first, over a bounded window;
        when the window holds less than a page, every match is read from the full-text index
        at once. Whatever the words, the statement's plan is the same, so a plan the server
        caches for all searches suits each of them."""
        c = CONVERSATIONS.c
        key = (c.last_message_at, c.id)
        recent = (
            keyset_where(query, key, request)
            .order_by(*keyset_order(key, request.descending))
            .limit(CONVERSATION_WINDOW)
            .subquery("recent")
        )
        said = or_(
            recent.c.participant_a.contains(search.fragment, autoescape=True),
            recent.c.participant_b.contains(search.fragment, autoescape=True),
            # By name: the probe's own subquery must see the window's row, not a copy of it.
            conversation_matches(
                self.dialect, account_id, search.terms, literal_column("recent.id")
            ),
        )
        recent_key = (recent.c.last_message_at, recent.c.id)
        page = await keyset_page(
            self.engine, select(recent).where(said), recent_key, conversation_from_row, request
        )
        if page.has_next:
            return page
        # A union, not an OR: a join the server may hash to disk, whatever the matches number.
        named = select(c.id).where(
            c.account_id == account_id,
            or_(
                c.participant_a.contains(search.fragment, autoescape=True),
                c.participant_b.contains(search.fragment, autoescape=True),
            ),
        )
        found = union(named, conversations_matching(account_id, search.terms))
        return await keyset_page(
            self.engine,
            query.where(c.id.in_(found.scalar_subquery())),
            key,
            conversation_from_row,
            request,
        )

    async def unread_counts(self, conversation_ids: Sequence[UUID]) -> dict[UUID, int]:
        if not conversation_ids:
            return {}
        c, m = CONVERSATIONS.c, MESSAGES.c
        after_cursor = or_(c.read_up_to.is_(None), m.id > c.read_up_to)
        # The direction as a literal: the planner must see it to use the partial index.
        inbound = m.direction == literal_column("'INBOUND'")
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(c.id, func.count())
                .select_from(CONVERSATIONS.join(MESSAGES, m.conversation_id == c.id))
                .where(c.id.in_(conversation_ids), inbound, after_cursor)
                .group_by(c.id)
            )
        return {r[0]: r[1] for r in rows}

    async def mark_read(
        self, account_id: UUID, conversation_id: UUID, up_to: UUID | None
    ) -> Conversation | None:
        c, m = CONVERSATIONS.c, MESSAGES.c
        target = select(m.id).where(
            m.conversation_id == conversation_id, m.account_id == account_id
        )
        target = (
            target.where(m.id == up_to)
            if up_to is not None
            else target.order_by(m.id.desc()).limit(1)
        )
        async with self.transaction() as conn:
            message_id = (await conn.execute(target)).scalar_one_or_none()
            if message_id is None:
                return None
            # Forward only, in one statement: two tabs marking different messages end on the
            # newer one whichever commits last.
            await conn.execute(
                CONVERSATIONS.update()
                .where(
                    c.id == conversation_id,
                    c.account_id == account_id,
                    or_(c.read_up_to.is_(None), c.read_up_to < message_id),
                )
                .values(read_up_to=message_id)
            )
            row = (await conn.execute(select(CONVERSATIONS).where(c.id == conversation_id))).one()
        return conversation_from_row(row)

    async def latest_matches(
        self, account_id: UUID, conversation_ids: Sequence[UUID], terms: tuple[Term, ...]
    ) -> dict[UUID, Message]:
        """The newest message of each conversation whose body has every term."""
        if not conversation_ids:
            return {}
        m, c = MESSAGES.c, CONVERSATIONS.c
        has_words = (
            document_matches(m.id, terms)
            if self.dialect == "postgresql"
            else body_matches(self.dialect, account_id, terms)
        )
        # Each conversation's messages newest first, tested one by one up to the first that
        # has the words: however common or rare they are, no match beyond it is read.
        newest = (
            select(m.id)
            .where(m.conversation_id == c.id, m.account_id == account_id, has_words)
            .order_by(m.created_at.desc(), m.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        # OFFSET 0: each conversation's pick is made once, not again inside the join.
        picked = (
            select(newest.label("id"))
            .where(c.id.in_(conversation_ids), c.account_id == account_id)
            .offset(0)
            .subquery()
        )
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(MESSAGES).join(picked, m.id == picked.c.id))
        return {r.conversation_id: message_from_row(r) for r in rows}

    async def messages_page(
        self, account_id: UUID, conversation_id: UUID, request: TwoWayPageRequest
    ) -> Page[Message]:
        """Oldest first. ``last``/``before`` page backwards from the end (or from ``before``)."""
        m = MESSAGES.c
        query = select(MESSAGES).where(
            m.account_id == account_id, m.conversation_id == conversation_id
        )
        if request.after is not None:
            query = query.where(m.id > request.after)
        if request.before is not None:
            query = query.where(m.id < request.before)
        backwards, size = request.backwards, request.size
        order = m.id.desc() if backwards else m.id.asc()
        async with self.engine.connect() as conn:
            rows = [
                message_from_row(r)
                for r in await conn.execute(query.order_by(order).limit(size + 1))
            ]
        more = len(rows) > size
        rows = rows[:size]
        if backwards:
            rows.reverse()
            return Page(rows, has_next=request.before is not None, has_previous=more)
        return Page(rows, has_next=more, has_previous=request.after is not None)

    async def filtered_messages_page(
        self, account_id: UUID, where: MessageFilter, request: PageRequest, *, sort: MessageSort
    ) -> Page[Message]:
        """Messages of the account that pass ``where``, keyset-paged by (``sort``, id).

        Each filter is a plain equality or range on a column that leads an index together with
        the order, so a page reads about as many index entries as it returns."""
        m = MESSAGES.c
        query = select(MESSAGES).where(m.account_id == account_id)
        if where.statuses:
            query = query.where(m.status.in_(sorted(where.statuses)))
        for column, value in (
            (m.channel, where.channel),
            (m.direction, where.direction),
            (m.sender, where.sender),
            (m.recipient, where.recipient),
            (m.conversation_id, where.conversation_id),
            (m.provider, where.provider),
        ):
            if value is not None:
                query = query.where(column == value)
        for column, window in ((m.created_at, where.created), (m.updated_at, where.updated)):
            if window.since is not None:
                query = query.where(column >= window.since)
            if window.until is not None:
                query = query.where(column < window.until)
        moment = m.updated_at if sort == MessageSort.UPDATED_AT else m.created_at
        if where.search and self.dialect == "postgresql":
            return await self._searched_page(account_id, query, where.search, moment, request)
        if where.search:
            query = query.where(body_matches(self.dialect, account_id, where.search))
        return await keyset_page(self.engine, query, (moment, m.id), message_from_row, request)

    async def _searched_page(
        self,
        account_id: UUID,
        query: Select[Any],
        terms: tuple[Term, ...],
        moment: Column[datetime],
        request: PageRequest,
    ) -> Page[Message]:
        """A page of the messages of ``query`` whose bodies have every term, on PostgreSQL.

        It can be read two ways: along the order, testing each message, which is cheap when
        many messages have the words; or from the full-text index, sorting what it finds,
        which is cheap when few have them. The planner cannot tell a rare word from a common
        one that its statistics did not sample, and a plan it caches for the statement serves
        every search alike: a word in one message of a million had it test them all. So the
        first way is bounded to a window of the newest messages, and the second runs only when
        the window held less than a page, which shows the words to be rare.
        """
        key = (moment, MESSAGES.c.id)
        recent = (
            keyset_where(query, key, request)
            .order_by(*keyset_order(key, request.descending))
            .limit(SEARCH_WINDOW)
            .subquery()
        )
        page = await self._page_of(recent, document_matches(recent.c.id, terms), moment, request)
        if page.has_next:
            return page
        # OFFSET 0 plans every match apart from the order and the LIMIT: read from the index.
        found = query.where(body_matches(self.dialect, account_id, terms)).offset(0).subquery()
        return await self._page_of(found, None, moment, request)

    async def _page_of(
        self,
        rows: Subquery,
        where: ColumnElement[bool] | None,
        moment: Column[datetime],
        request: PageRequest,
    ) -> Page[Message]:
        query = select(rows) if where is None else select(rows).where(where)
        key = (rows.c[moment.name], rows.c.id)
        return await keyset_page(self.engine, query, key, message_from_row, request)

    async def dead_letters_page(self, account_id: UUID, request: PageRequest) -> Page[Message]:
        m = MESSAGES.c
        # The status as a literal: the planner must see it to use the partial index.
        query = select(MESSAGES).where(
            m.account_id == account_id, m.status == literal_column(f"'{MessageStatus.FAILED}'")
        )
        key = (m.updated_at, m.id)
        return await keyset_page(self.engine, query, key, message_from_row, request)

    async def events_after(
        self, account_id: UUID, after: int, scope: EventScope = ALL_EVENTS, *, limit: int = 500
    ) -> list[MessageEvent]:
        e = EVENTS.c
        query = select(EVENTS).where(e.account_id == account_id, e.id > after)
        if scope.conversation_id is not None:
            query = query.where(e.conversation_id == scope.conversation_id)
        if scope.message_id is not None:
            query = query.where(e.message_id == scope.message_id)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.order_by(e.id).limit(limit))
        return [event_from_row(r) for r in rows]

    async def status_counts(self) -> dict[str, int]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(MESSAGES.c.status, func.count()).group_by(MESSAGES.c.status)
            )
        return {r[0]: r[1] for r in rows}


async def keyset_page(
    engine: AsyncEngine,
    query: Select[Any],
    key: tuple[ColumnElement[datetime], ColumnElement[UUID]],
    from_row: Callable[[Row[Any]], T],
    request: PageRequest,
) -> Page[T]:
    """The page ``request`` asks for of ``query`` ordered by ``key`` (a time, then the id
    that breaks ties)."""
    first = request.first
    query = keyset_where(query, key, request)
    query = query.order_by(*keyset_order(key, request.descending)).limit(first + 1)
    async with engine.connect() as conn:
        items = [from_row(r) for r in await conn.execute(query)]
    return Page(items[:first], len(items) > first, request.after is not None)


def keyset_where(
    query: Select[Any],
    key: tuple[ColumnElement[datetime], ColumnElement[UUID]],
    request: PageRequest,
) -> Select[Any]:
    """``query`` narrowed to the rows past the cursor of ``request`` in the order of ``key``."""
    after = request.after
    if after is None:
        return query
    moment, id_ = key
    if request.descending:
        return query.where(tuple_(moment, id_) < tuple_(*after))
    return query.where(tuple_(moment, id_) > tuple_(*after))


def keyset_order(
    key: tuple[ColumnElement[datetime], ColumnElement[UUID]], descending: bool
) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    moment, id_ = key
    return (moment.desc(), id_.desc()) if descending else (moment.asc(), id_.asc())
