"""Keep the cyclic garbage collector off the long-lived startup heap.

After startup a gateway process holds a few hundred thousand long-lived objects (the schema,
SQLAlchemy's and graphql-core's caches, imported modules). Without this, every full
collection walks all of them: measured on the accept path, ~20% of the CPU per request went
to the collector and single full collections paused the event loop for ~100 ms, which is
what a request's p99 latency sees. Freezing moves them to the permanent generation, so the
collector only walks objects created since.

The collector's thresholds stay at their defaults on purpose: a young-generation threshold
of 50,000 instead of 700 saved ~10% CPU under full load but made each collection a ~30 ms
pause, and doubled sendMessage's p99 at a fixed rate (24 -> 50 ms, `bench/run.sh --only
single`).
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    # Collect first so the frozen set holds no garbage that could never be freed.
    gc.collect()
    gc.freeze()
