"""Waking workers that wait in ``reserve`` when new work arrives.

Every wait goes through a :class:`Waker`, shared by the drivers of one
process that use the same database and table prefix. Enqueues in this process
wake it directly; other processes' enqueues reach it through the backend:

* PostgreSQL: a :class:`PgListener` thread holds a dedicated connection that
  listens (``LISTEN``) on the prefix's channel; enqueue sends ``NOTIFY`` inside its
  transaction (one per queue per batch), so a waiting worker wakes within
  milliseconds of the commit.
* SQLite: :meth:`Waker.wait` watches the database and its WAL file; any
  commit changes them, which costs a ``stat`` call, not a query.
* MySQL / MariaDB: no push channel; the waiting reserve polls every
  ``poll_interval`` seconds.

Wake-ups are hints: a waiting reserve always re-polls after
``poll_interval`` as well.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import sqlalchemy as sa

log = logging.getLogger("jobs_database.wakeup")

#: How often a waiting reserve on SQLite checks the database file for changes.
FILE_WATCH_INTERVAL = 0.002


class Waker:
    """A generation counter with a condition: ``notify`` bumps it, ``wait`` waits for a bump."""

    def __init__(self, watch_files: tuple[str, ...] = ()) -> None:
        self._condition = threading.Condition()
        self._generation = 0
        self._watch = watch_files

    @property
    def generation(self) -> int:
        """The current generation (read it before polling the database)."""
        return self._generation

    def notify(self) -> None:
        """Wake every waiter."""
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def _signature(self) -> tuple[tuple[int, int], ...]:
        sig = []
        for path in self._watch:
            try:
                st = os.stat(path)
                sig.append((st.st_mtime_ns, st.st_size))
            except OSError:
                sig.append((0, 0))
        return tuple(sig)

    def wait(self, generation: int, timeout: float) -> bool:
        """Wait until the generation moves past ``generation`` (or a watched file changes).

        Returns whether something happened before ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        if not self._watch:
            with self._condition:
                return self._condition.wait_for(lambda: self._generation != generation, timeout)
        signature = self._signature()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._condition:
                if self._condition.wait_for(
                    lambda: self._generation != generation, min(remaining, FILE_WATCH_INTERVAL)
                ):
                    return True
            if self._signature() != signature:
                return True


_WAKERS: dict[tuple[str, str], Waker] = {}
_WAKERS_LOCK = threading.Lock()


def shared_waker(key: tuple[str, str], watch_files: tuple[str, ...] = ()) -> Waker:
    """The process-wide waker for ``key`` (database URL and table prefix)."""
    with _WAKERS_LOCK:
        waker = _WAKERS.get(key)
        if waker is None:
            waker = _WAKERS[key] = Waker(watch_files)
        return waker


class PgListener:
    """A thread that listens (``LISTEN``) on a channel and wakes a :class:`Waker` on each ``NOTIFY``.

    It reconnects with backoff when its connection drops, and wakes the
    waker after reconnecting (a notification may have been missed).
    """

    def __init__(self, engine: sa.Engine, channel: str, waker: Waker) -> None:
        self._engine = engine
        self._channel = channel
        self._waker = waker
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"jobs-listen-{channel}", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the first ``LISTEN`` is in place."""
        return self._ready.wait(timeout)

    def _connect(self) -> Any:
        raw = self._engine.raw_connection()
        conn = raw.driver_connection
        raw.detach()
        assert conn is not None
        conn.autocommit = True
        quoted = '"' + self._channel.replace('"', '""') + '"'
        conn.execute(f"LISTEN {quoted}")
        return conn

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            conn = None
            try:
                conn = self._connect()
                self._ready.set()
                self._waker.notify()
                backoff = 0.1
                while not self._stop.is_set():
                    for _ in conn.notifies(timeout=0.25, stop_after=1):
                        self._waker.notify()
            except Exception as exc:
                if self._stop.is_set():
                    break
                log.warning("LISTEN connection lost (%s); reconnecting in %.1fs", type(exc).__name__, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass

    def stop(self) -> None:
        """Stop listening and close the connection (returns promptly)."""
        self._stop.set()
        self._thread.join(timeout=1.0)
