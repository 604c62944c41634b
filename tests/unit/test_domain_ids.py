import itertools
import threading
import time
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain import new_id
from gateway.domain.ids import UUIDv7Generator


def unix_ms(value: uuid.UUID) -> int:
    return value.int >> 80


def counter(value: uuid.UUID) -> int:
    return (value.int >> 64) & 0xFFF


def test_version_and_variant() -> None:
    value = new_id()
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


def test_strictly_increasing_over_many_calls() -> None:
    ids = [new_id() for _ in range(10_000)]
    assert all(a < b for a, b in itertools.pairwise(ids))
    # Text form sorts the same way, which is what a database index on the string would use.
    assert [str(i) for i in ids] == sorted(str(i) for i in ids)


def test_timestamp_is_the_current_unix_millisecond() -> None:
    before = time.time() * 1000
    value = new_id()
    after = time.time() * 1000
    assert before - 5 <= unix_ms(value) <= after + 5


def test_ids_are_unique_and_ordered_per_thread_across_threads() -> None:
    results: list[list[uuid.UUID]] = [[] for _ in range(8)]

    def work(out: list[uuid.UUID]) -> None:
        out.extend(new_id() for _ in range(2_000))

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for out in results:
        assert all(a < b for a, b in itertools.pairwise(out))
    assert len({i for out in results for i in out}) == 8 * 2_000


def test_counter_overflow_borrows_the_next_millisecond() -> None:
    generate = UUIDv7Generator(clock=lambda: 1_700_000_000_000)
    ids = [generate() for _ in range(5_000)]
    assert all(a < b for a, b in itertools.pairwise(ids))
    assert unix_ms(ids[0]) == 1_700_000_000_000
    assert unix_ms(ids[-1]) in (1_700_000_000_001, 1_700_000_000_002)


def test_new_millisecond_reseeds_counter_low_enough_to_leave_room() -> None:
    ticks = iter(range(1_000, 1_200))
    generate = UUIDv7Generator(clock=lambda: next(ticks))
    assert all(counter(generate()) < 2048 for _ in range(200))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 2**48 - 1), min_size=2, max_size=50))
def test_order_survives_a_clock_that_jumps_backwards(readings: list[int]) -> None:
    clock = iter(readings)
    generate = UUIDv7Generator(clock=lambda: next(clock))
    ids = [generate() for _ in readings]
    assert all(a < b for a, b in itertools.pairwise(ids))
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert unix_ms(ids[0]) == readings[0]
    assert all(unix_ms(i) >= r for i, r in zip(ids, readings, strict=True))
