"""The settlement writer: finished generations reach the database in batches.

The request path never waits for the database. It hands a GenerationRecord to
``settlement_submit`` (a queue append) and moves on; a background thread in the
same process writes whatever has queued up every ``SETTLEMENT_FLUSH_SECONDS`` (or
``SETTLEMENT_BATCH_SIZE`` records) in one transaction through
``billing.services.ledger.generations_settle``, which charges the ledger, stores the
generations and then releases the holds. A failed batch is retried (the holds
stay in place meanwhile, so nothing can be overspent); a generation is charged
once however often its batch is retried, because its ledger entry and row are
unique by generation id.

A record that cannot be written even alone (while the database is up) is set aside: its
hold is released with a charge of 0 and it is kept, with the reason, in the durable
``SettlementDeadLetter`` table (Django admin, ``billing.selectors.settlement_dead_letters``).
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
from collections import deque

from django.conf import settings
from django.db import close_old_connections, connection

from activity.records import GenerationRecord

from .counters import counters, holds_release, holds_release_retry
from .services.dead_letters import settlement_dead_letter_record
from .services.ledger import generations_settle, settlements_of

logger = logging.getLogger("openrouter.settlement")
ONE_BY_ONE_AFTER = 3  # consecutive batch failures before records are written one at a time


class SettlementWriter:
    def __init__(self) -> None:
        self._queue: deque[GenerationRecord] = deque()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._busy = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.dead_letters: list[GenerationRecord] = []  # set aside by this process (also in the database)

    def submit(self, record: GenerationRecord) -> None:
        self._queue.append(record)
        if self._thread is None:
            self._start()
        if len(self._queue) >= settings.SETTLEMENT_BATCH_SIZE:
            self._wake.set()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="settlement-writer", daemon=True)
                thread.start()
                self._thread = thread
                # Servers exit normally on SIGTERM/SIGINT: write what is queued before they go.
                atexit.register(self.flush, 10.0)

    def _run(self) -> None:
        interval = settings.SETTLEMENT_FLUSH_SECONDS
        failures = 0
        store = counters()
        while True:
            self._wake.wait(interval if failures == 0 else min(5.0, interval * 2**failures))
            self._wake.clear()
            if hasattr(store, "heartbeat") and store.beat_due():
                try:
                    store.heartbeat()
                except Exception:
                    logger.warning("counter heartbeat failed", exc_info=True)
            holds_release_retry()
            if not self._queue:
                continue
            try:
                if failures >= ONE_BY_ONE_AFTER:
                    self._write_one_by_one()
                else:
                    self._write_once()
                failures = 0
            except Exception:
                failures += 1
                logger.exception("settlement batch failed (%s in a row); will retry", failures)
                try:
                    connection.close()
                except Exception:
                    pass

    def _write_once(self) -> None:
        batch = []
        with self._idle:
            self._busy = True
        try:
            while self._queue and len(batch) < settings.SETTLEMENT_BATCH_SIZE:
                batch.append(self._queue.popleft())
            close_old_connections()
            try:
                generations_settle(records=batch)
            except Exception:
                self._queue.extendleft(reversed(batch))
                raise
        finally:
            with self._idle:
                self._busy = False
                self._idle.notify_all()

    def _write_one_by_one(self) -> None:
        """After repeated batch failures: write each record alone, and set aside one that cannot be
        written (its hold released, kept as a dead letter) so that it does not hold up every later charge."""
        batch = []
        with self._idle:
            self._busy = True
        try:
            while self._queue and len(batch) < settings.SETTLEMENT_BATCH_SIZE:
                batch.append(self._queue.popleft())
            for index, record in enumerate(batch):
                close_old_connections()
                try:
                    generations_settle(records=[record])
                except Exception:
                    if self._database_down():
                        self._queue.extendleft(reversed(batch[index:]))
                        raise
                    self._set_aside(record)
        finally:
            with self._idle:
                self._busy = False
                self._idle.notify_all()

    def _set_aside(self, record: GenerationRecord) -> None:
        """Release the record's hold (charge 0) and keep it, with the reason, as a dead letter."""
        exc = sys.exc_info()[1]
        reason = f"{type(exc).__name__}: {exc}" if exc is not None else "unknown"
        logger.error("settlement of %s set aside: it cannot be written (%s): %r", record.id, reason, record, exc_info=True)
        self.dead_letters.append(record)
        try:
            settlement_dead_letter_record(record=record, reason=reason)
        except Exception:
            logger.exception("dead letter %s could not be stored either; it stays in the log", record.id)
        holds_release(settlements_of(record, charged=False))

    @staticmethod
    def _database_down() -> bool:
        try:
            connection.close()
            connection.ensure_connection()
            return False
        except Exception:
            return True

    def ensure_started(self) -> None:
        if self._thread is None:
            self._start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every submitted record is written (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._idle:
                if not self._queue and not self._busy:
                    return True
            self._wake.set()
            time.sleep(0.005)
        return False

    def pending(self) -> int:
        return len(self._queue)


writer = SettlementWriter()


def settlement_submit(record: GenerationRecord) -> None:
    writer.submit(record)


def settlement_flush(timeout: float = 10.0) -> bool:
    return writer.flush(timeout)
