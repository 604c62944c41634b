"""Keep the cyclic garbage collector off the long-lived startup heap.

After startup a gateway process holds a few hundred thousand long-lived objects (the schema,
SQLAlchemy's and graphql-core's caches, imported modules). Without this, every full
collection walks all of them: measured on the accept path, ~20% of the CPU per request went
to the collector and single full collections paused the event loop for ~100 ms, which is
what a request's p99 latency sees. Freezing moves them to the permanent generation, so the
collector only walks objects created since.

Full collections are made ten times rarer (the third threshold 10 -> 100). Objects that
live long but were created after startup, above all those of open websocket subscriptions,
are walked by every full collection: with 1000 subscribers one took ~50-100 ms, and the
fan-out's p99 from publish to client was that pause (~100 ms; 41-50 ms with this). Reference
counting frees everything outside reference cycles at once; cyclic garbage that survived two
younger collections just waits longer.

The young-generation threshold stays at its default on purpose: 50,000 instead of 700 saved
~10% CPU under full load but made each collection a ~30 ms pause, and doubled sendMessage's
p99 at a fixed rate (24 -> 50 ms, `bench/run.sh --only single`).
"""

from __future__ import annotations

import gc

# Full collections after this many middle-generation ones (CPython's default is 10).
FULL_COLLECTION_EVERY = 100


def freeze_startup_heap() -> None:
    # Collect first so the frozen set holds no garbage that could never be freed.
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
