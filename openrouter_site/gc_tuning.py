"""The cyclic garbage collector on a server process: the loaded app is not rescanned, and small
collections run less often.

CPython collects its youngest generation after every 700 net allocations and, every tenth and
hundredth time, the older ones; the oldest walks every tracked object of the process (Django,
DRF, Twisted and the URL tree are about 150,000 of them). A burst of 500 streams allocates a
few hundred objects per request, so a process busy starting streams spent a good part of its
time re-walking objects that live as long as it does (``bench/burst.py``, Daphne on uvloop,
default setup, alternating runs: the first chunk's p50 came 471 / 500 ms after the direct one's,
264 / 330 ms with the young threshold raised; the README has the figures).

``gc_tune()``, called once the app is imported (``asgi.py``, before a server takes requests):

1. collects once, then ``gc.freeze()``: everything alive now (modules, settings, Django's
   registries) moves to the permanent generation, which collections never walk. Nothing is
   leaked: frozen objects are ordinary objects, freed by reference counting when released.
2. raises the youngest generation's threshold from 700 to ``GC_GEN0_THRESHOLD`` (20,000 by
   default; ``0`` leaves CPython's thresholds alone). Cycles are still found, only in fewer,
   larger passes; memory held by unreachable cycles between passes stays small (``bench/soak.py``
   reports RSS over 30 minutes).
"""

from __future__ import annotations

import gc
import os

DEFAULT_GEN0_THRESHOLD = 20_000
OLDER_THRESHOLD = 20  # collections of the younger generation before an older one is collected


def gc_tune() -> None:
    gc.collect()
    gc.freeze()
    gen0 = gen0_threshold()
    if gen0:
        gc.set_threshold(gen0, OLDER_THRESHOLD, OLDER_THRESHOLD)


def gen0_threshold() -> int:
    raw = os.environ.get("GC_GEN0_THRESHOLD", "")
    try:
        value = int(raw) if raw.strip() else DEFAULT_GEN0_THRESHOLD
    except ValueError:
        return DEFAULT_GEN0_THRESHOLD
    return max(0, value)
