"""CPython's cyclic garbage collector, set for a server that runs for days.

When start-up is done the process holds some 140,000 objects that live as long as it does:
modules, FastAPI's routes, pydantic's validators, SQLAlchemy's tables, the catalog. Each full
collection of the oldest generation walks every one of them: about 0.3 s on a 2-core machine,
during which every request in flight stalls (the spikes of a few hundred milliseconds in an
otherwise flat latency). ``gc.freeze()`` at the end of start-up moves them out of the
collector's sight for good (none of them is ever garbage); a full collection then walks only
what was made since, about 10 ms. Objects frozen are still freed by reference counting; only a
cycle among them would stay, and start-up's objects are not released while the server runs.

The youngest generation is collected after 10,000 allocations instead of 700. Each collection
of it costs about as much whatever its size (it also looks at what survives into the next
generation), so at the default a generation paid ~0.4 ms of collector CPU (some 25 collections
a second at 90 generations/s); at 10,000, ~0.15 ms, for a longest pause of ~20-35 ms instead
of ~5 ms, once a second or so (measured with ``gc.callbacks`` timing each collection in
``time.thread_time``, a closed loop of generations, the thresholds alternated in one run).

While the server starts, the collector is paused (``pause``): start-up makes those objects and
almost no garbage, and collecting as they are made walked them again and again (some 4 % of
start-up's instructions, more of its time: the walks miss the cache). A start-up that ran paused
is frozen without a collection first: a full one would walk all 160,000 objects (tens of
milliseconds before the first answer) to free the ~1,000 that start-up left in cycles (~0.1 MB),
which stay instead.

Only ``imagegen serve`` (and each of its workers) pauses and freezes: an app built in a test or
embedded in another program leaves its host's collector as it is, and the other commands
collect as usual (``resume``).
"""

from __future__ import annotations

import gc

#: Allocations (less deallocations) of tracked objects between collections of the youngest
#: generation; the older generations keep their defaults.
YOUNG_THRESHOLD = 10_000


def pause() -> None:
    """No collections while start-up builds what the process keeps; ``tune_collector`` (a
    server started) or ``resume`` (anything else) ends the pause."""
    gc.disable()


def resume() -> None:
    """Collect as usual again: for a process that does not serve."""
    gc.enable()


def tune_collector() -> None:
    """Collect what start-up left as garbage (unless it ran paused), freeze the rest, raise
    the youngest generation's threshold and collect from here on.

    Freezing is a splice of the collector's lists, whatever their length; counting what froze
    (``gc.get_freeze_count``) walks all ~160,000 objects, ~10 ms before the first answer, so
    it is left to whoever wants the number."""
    if gc.isenabled():
        gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)
    gc.enable()
