"""CPython's cyclic garbage collector, set for a server that runs for days.

When start-up is done the process holds some 140,000 objects that live as long as it does:
modules, FastAPI's routes, pydantic's validators, SQLAlchemy's tables, the catalog. Each full
collection of the oldest generation walks every one of them: about 0.3 s on a 2-core machine,
during which every request in flight stalls (the spikes of a few hundred milliseconds in an
otherwise flat latency). ``gc.freeze()`` at the end of start-up moves them out of the
collector's sight for good (none of them is ever garbage); a full collection then walks only
what was made since, about 10 ms. Objects frozen are still freed by reference counting; only a
cycle among them would stay, and start-up's objects are not released while the server runs.

The youngest generation is collected after 50,000 allocations instead of 700. Its count is
allocations less deallocations (of any generation), never below zero, so with a steady load it
wanders rather than climbs: raising the threshold fivefold made collections some 25 times
rarer. What a collection walks is every object made since the last one and still alive. With
answers that come at once that is little (a longest pause of ~4 ms at 10,000, 64 connections).
With 1,000 requests in flight for a second each (an upstream that takes 1 s), every request's
objects were still alive at the next collection, so each was walked when young, again in the
middle generation, and often again by a full collection: at 10,000, in 12 s, 39-64 young
collections of up to 90-130 ms, 4-6 middle ones of ~150-175 ms and up to one full one of
~300 ms, 15-18 % of a core; at 50,000, 6 young collections of ~140 ms (up to ~220 ms), at most
one middle one and no full one, 7-8 % of a core (``gc.callbacks`` timing each collection in
``time.thread_time``; the peer harness's 1,000 connections against its fake upstream at 1 s,
the two alternated in one session: 436 and 496 against 535 and 616 generations/s, imagegen's
CPU per generation 1.58 and 1.26 against 1.14 and 1.04 ms). With instant answers at 64
connections there was no young collection at all in 15 s (31 of up to ~4 ms at 10,000).
Garbage kept by a cycle counts towards the threshold until it is collected, so at most ~50,000
such objects wait for a collection.

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
YOUNG_THRESHOLD = 50_000


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
