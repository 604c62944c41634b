"""Fair, paced delivery queues on Redis Streams: one stream ("lane") per account and sender.

Layout, under a prefix (``mgw:deliveries``):

- ``<prefix>:<account hex>:<sender>``: a lane, a stream whose entries name one message each
  (``id``, and ``n``: the segments it costs its sender), in the order they were enqueued, with
  the consumer group every worker reads it through;
- ``<prefix>:lanes``: the set of lanes that exist;
- ``<prefix>:wake``: a short stream every enqueue adds to, naming the lanes it enqueued to,
  which idle workers block on;
- ``mgw:pace:<sender>``: each sender's place in its pacing schedule (``workers.pacing``).

Why lanes: with one stream, one account's batch of 100,000 messages stands in front of every
message enqueued after it. With a lane per account and sender, a worker reads a few entries
from each lane in turn (``XREADGROUP`` with a small ``COUNT`` per stream, the lanes in an
order that moves on at every read), so another account's single message is taken at the next
read, and so is another sender's of the same account; within a lane, entries leave in order.

Pacing happens while reading: the read script (:data:`_TAKE`) takes a lane's entries only as
long as the lane's sender has a slot within the horizon, and gives each entry the slot it
took. Reading and taking slots are one atomic step, so that two workers reading one lane get
consecutive slots in the lane's order. A paced sender's entries stay unread in their lane: no
message is claimed, failed or counted, and no worker slot is held while they wait; the worker
is told how long until the lane may be read again, and reads other lanes meanwhile.

Nothing else changes: an entry is acknowledged only once its outcome is committed (and then
deleted from its lane, so a lane holds only unread and pending entries, and an empty lane is
dropped by the next read that finds it empty); a dead consumer's pending entries are
reclaimed lane by lane; the sweeper enqueues due work into the lanes like the API does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from gateway.domain.pacing import Queued, pacing_key
from workers.codec import redis_text
from workers.pacing import GCRA_LUA, pace_key

#: A lane's entry: (lane, entry id).
Entry = tuple[str, str]

#: Entries kept in the wake stream: it only says "something was enqueued", and where.
_WAKE_KEEP: Final = 100
#: Lanes one wake entry names at most; a worker finds any others in the lane set it reads.
_WAKE_LANES: Final = 64

# KEYS: the lane set, the wake stream, then one lane per message; ARGV: the group, then the
# message id and segments of each message, in the same order, then the wake stream's length.
# The wake entry names the lanes enqueued to (the first _WAKE_LANES of them), so that a worker
# blocked on it reads them without listing the lanes first.
_ENQUEUE: Final = """
local group = ARGV[1]
local seen, named = {}, {}
for i = 3, #KEYS do
    local lane = KEYS[i]
    if redis.call('EXISTS', lane) == 0 then
        redis.call('XGROUP', 'CREATE', lane, group, '0', 'MKSTREAM')
    end
    redis.call('SADD', KEYS[1], lane)
    local j = (i - 3) * 2 + 2
    redis.call('XADD', lane, '*', 'id', ARGV[j], 'n', ARGV[j + 1])
    if not seen[lane] and #named < 2 * WAKE_LANES then
        seen[lane] = true
        named[#named + 1] = 'l' .. (#named / 2)
        named[#named + 1] = lane
    end
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[#ARGV], '*', 'n', #KEYS - 2, unpack(named))
return #KEYS - 2
""".replace("WAKE_LANES", str(_WAKE_LANES))

# KEYS: the lane set, the wake stream, then (lane, its sender's pacing key) pairs.
# ARGV: group, consumer, budget (entries in all), entries per lane, horizon (ms), lead (ms),
# then each lane's emission interval (ms per segment; 0: not paced). An idle paced sender's
# first slot is ``min(lead, interval)`` away, not now: its entry is claimed by then, so the
# claim's time does not push its call towards the next slot.
# A lane is read in one XREADGROUP of as many entries as could have slots within the horizon
# (one segment each). Each entry read then takes its slot in order; when a message of several
# segments moves the schedule past the horizon, the entries after it are given back: removed
# from this consumer's pending list and the group's position set back to the last one taken,
# so that the next read gets them, as if they had never been read.
# Returns {taken, paced, lanes, wake}: taken = lane, entry id, message id, delay (ms) per
# entry; paced = lane, ms until its next slot comes within the horizon; lanes = the lane set
# after the read; wake = the wake stream's last id at that moment.
_TAKE: Final = (
    GCRA_LUA
    + """
local group, consumer = ARGV[1], ARGV[2]
local budget, per_lane, horizon = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local lead = tonumber(ARGV[6])
local now = now_ms()
local taken, paced = {}, {}
local function pace_off(lane, slot)
    paced[#paced + 1] = lane
    paced[#paced + 1] = string.format('%.3f', slot - now - horizon)
end
for i = 3, #KEYS, 2 do
    if budget <= 0 then break end
    local lane, pace = KEYS[i], KEYS[i + 1]
    local interval = tonumber(ARGV[7 + (i - 3) / 2])
    local earliest = now + math.min(lead, interval)
    if redis.call('EXISTS', lane) == 0 then
        redis.call('SREM', KEYS[1], lane)
    else
        local tat = tat_of(pace)
        local slot = math.max(tat, earliest)
        if slot - now > horizon then
            pace_off(lane, slot)
        else
            local want = math.min(per_lane, budget)
            if interval > 0 then
                want = math.min(want, math.floor((now + horizon - slot) / interval) + 1)
            end
            local reply = redis.pcall(
                'XREADGROUP', 'GROUP', group, consumer, 'COUNT', want, 'STREAMS', lane, '>')
            local entries = {}
            if type(reply) == 'table' and reply.err then
                -- A lane made without its group (not by an enqueue): give it one.
                redis.pcall('XGROUP', 'CREATE', lane, group, '0')
            elseif reply and reply[1] then
                entries = reply[1][2]
            end
            local count, back = 0, {}
            for e = 1, #entries do
                local entry = entries[e]
                slot = math.max(tat, earliest)
                if slot - now > horizon then
                    -- Never the first entry: its slot was checked before the read.
                    back[#back + 1] = entry[1]
                else
                    local fields = entry[2]
                    local id, cost = '', 1
                    for f = 1, #fields, 2 do
                        if fields[f] == 'id' then
                            id = fields[f + 1]
                        elseif fields[f] == 'n' then
                            cost = math.max(1, tonumber(fields[f + 1]) or 1)
                        end
                    end
                    tat = slot + cost * interval
                    taken[#taken + 1] = lane
                    taken[#taken + 1] = entry[1]
                    taken[#taken + 1] = id
                    taken[#taken + 1] = string.format('%.3f', slot - now)
                    count = count + 1
                    budget = budget - 1
                end
            end
            if #back > 0 then
                redis.call('XACK', lane, group, unpack(back))
                redis.call('XGROUP', 'SETID', lane, group, taken[#taken - 2])
            end
            if count > 0 and interval > 0 then
                keep_tat(pace, tat, now)
            end
            if count < per_lane and budget > 0 then
                -- The lane could have given more: its sender is paced, or it has no more.
                slot = math.max(tat, earliest)
                if slot - now > horizon then
                    pace_off(lane, slot)
                elseif #entries < want and redis.call('XLEN', lane) == 0 then
                    redis.call('DEL', lane)
                    redis.call('SREM', KEYS[1], lane)
                end
            end
        end
    end
end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local wake = '0-0'
if #last > 0 then
    wake = last[1][1]
end
return {taken, paced, redis.call('SMEMBERS', KEYS[1]), wake}
"""
)

# KEYS: each lane once; ARGV: the group, then per lane the number of its entries and their ids.
_ACK: Final = """
local at = 2
for i = 1, #KEYS do
    local last = at + tonumber(ARGV[at])
    redis.call('XACK', KEYS[i], ARGV[1], unpack(ARGV, at + 1, last))
    redis.call('XDEL', KEYS[i], unpack(ARGV, at + 1, last))
    at = last + 1
end
return #KEYS
"""


@dataclass(frozen=True, slots=True)
class Taken:
    entry: Entry
    #: The message id the entry names, as written (checked by the caller).
    message_id: str
    #: Seconds until the slot its sender took for it.
    delay: float


@dataclass(frozen=True, slots=True)
class Reading:
    taken: list[Taken]
    #: Lanes whose sender is paced: seconds until each may be read again.
    paced: dict[str, float]
    #: Every lane as of this read (sorted), and the wake stream's last id at that moment:
    #: blocking on it after the read misses nothing enqueued since.
    lanes: list[str]
    wake: str


class Lanes:
    def __init__(self, redis: Redis, prefix: str, group: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self.group = group
        self.registry = prefix + ":lanes"
        self.wake = prefix + ":wake"
        self._enqueue = redis.register_script(_ENQUEUE)
        self._take = redis.register_script(_TAKE)
        self._ack = redis.register_script(_ACK)

    def lane(self, account_id: UUID, sender: str) -> str:
        return f"{self.prefix}:{account_id.hex}:{sender}"

    def sender_of(self, lane: str) -> str:
        """The sender whose lane this is (after the prefix and the account's 32 hex digits)."""
        return lane[len(self.prefix) + 34 :]

    async def enqueue(self, work: Sequence[Queued]) -> None:
        """Add each message to its lane, in order, in one script call."""
        if not work:
            return
        args: list[str | int] = [self.group]
        for item in work:
            args += (item.message_id.hex, max(1, item.segments))
        args.append(_WAKE_KEEP)
        keys = [self.registry, self.wake, *(self.lane(w.account_id, w.sender) for w in work)]
        await self._enqueue(keys=keys, args=args)

    async def members(self) -> list[str]:
        return sorted(redis_text(lane) for lane in await self.redis.smembers(self.registry))

    async def take(
        self,
        consumer: str,
        lanes: Sequence[tuple[str, float]],
        *,
        budget: int,
        per_lane: int,
        horizon: float,
        lead: float = 0.0,
    ) -> Reading:
        """Read up to ``per_lane`` entries from each of ``lanes`` ((lane, its sender's rate;
        0: not paced) in the order given), ``budget`` in all, pacing each lane's sender; with
        the lane set and the wake stream's position as of the read, in the same step."""
        keys = [self.registry, self.wake]
        intervals: list[float] = []
        for lane, rate in lanes:
            keys += (lane, pace_key(pacing_key(self.sender_of(lane))))
            intervals.append(1000.0 / rate if rate > 0 else 0.0)
        reply: Any = await self._take(
            keys=keys,
            args=[
                self.group,
                consumer,
                budget,
                per_lane,
                horizon * 1000.0,
                lead * 1000.0,
                *intervals,
            ],
        )
        taken_raw, paced_raw, lanes_raw, wake = reply
        taken = [
            Taken(
                (redis_text(taken_raw[i]), redis_text(taken_raw[i + 1])),
                redis_text(taken_raw[i + 2]),
                max(0.0, float(taken_raw[i + 3]) / 1000.0),
            )
            for i in range(0, len(taken_raw), 4)
        ]
        paced = {
            redis_text(paced_raw[i]): float(paced_raw[i + 1]) / 1000.0
            for i in range(0, len(paced_raw), 2)
        }
        return Reading(
            taken, paced, sorted(redis_text(lane) for lane in lanes_raw), redis_text(wake)
        )

    async def acknowledge(self, entries: Sequence[Entry]) -> None:
        """Acknowledge entries whose work is done and drop them from their lanes."""
        if not entries:
            return
        by_lane: dict[str, list[str]] = {}
        for lane, entry_id in entries:
            by_lane.setdefault(lane, []).append(entry_id)
        args: list[str | int] = [self.group]
        for ids in by_lane.values():
            args += (len(ids), *ids)
        await self._ack(keys=list(by_lane), args=args)

    async def wait_for_work(self, after: str, within: float) -> list[str]:
        """Return once something is enqueued after the wake id ``after``, or ``within``
        seconds have passed: the lanes enqueued to since (as far as the wake entries name
        them; none when the time ran out)."""
        reply: Any = await self.redis.xread(
            {self.wake: after}, count=_WAKE_KEEP, block=max(1, int(within * 1000))
        )
        named = {
            redis_text(value)
            for _, entries in reply or []
            for _, fields in entries
            for field, value in fields.items()
            if redis_text(field).startswith("l")
        }
        return sorted(named)

    async def pending(self) -> int:
        """Entries read but not yet acknowledged, over every lane."""
        total = 0
        for lane in await self.members():
            try:
                summary = await self.redis.xpending(lane, self.group)
            except ResponseError:
                continue  # emptied and dropped since it was listed
            total += int(summary.get("pending") or 0)
        return total
