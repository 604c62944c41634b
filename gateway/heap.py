"""Keep the cyclic garbage collector off the long-lived startup heap.

After startup a gateway process holds a few hundred thousand long-lived objects (the schema,
SQLAlchemy's and graphql-core's caches, imported modules). Without this, every full
collection walks all of them, costing CPU on every request and pausing the event loop for
as long as the walk takes, which is what a request's p99 latency sees. Freezing moves them to
the permanent generation, so the collector only walks objects created since.

Full collections are made ten times rarer (the third threshold 10 -> 100). Objects that
live long but were created after startup, above all those of open websocket subscriptions,
are walked by every full collection, and with many subscribers that pause is the fan-out's
p99 from publish to client. Reference counting frees everything outside reference cycles at
once; cyclic garbage that survived two younger collections just waits longer.

The young-generation threshold stays at its default on purpose: a much larger one saved some
CPU under full load but made each young collection a long pause and raised sendMessage's p99
at a fixed rate. The measurements are in bench/RESULTS.md ("Measurements behind the code").
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
