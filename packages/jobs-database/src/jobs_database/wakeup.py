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
* MySQL / MariaDB: a :class:`MySqlWatcher` thread holds one of
  :data:`MYSQL_SLOTS` named locks (``GET_LOCK``) of the database and prefix
  while its reserves wait, and waits on a dedicated connection in one
  statement that sleeps in the server (``SLEEP``) unless the newest job's
  ``seq`` has changed. After committing due jobs, enqueue asks which
  connections hold the slots (``IS_USED_LOCK``, one round trip) and
  interrupts each one's sleep (``KILL QUERY``) through :class:`MySqlBell`; the
  watcher reads the newest ``seq`` again and wakes its waker. A ``KILL QUERY``
  that arrives between two statements is lost, which the next statement's
  check of the newest ``seq`` covers.

Wake-ups are hints: a waiting reserve always re-polls after
``poll_interval`` as well.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from jobs_core.quiet_threads import quiet

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
        self._thread = threading.Thread(target=quiet(self._run), name=f"jobs-listen-{channel}", daemon=True)
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


#: MySQL / MariaDB: waiting processes of one database and table prefix that a
#: dispatch wakes at once (each holds one slot lock while it waits); beyond
#: that, a waiting process sees new jobs at its watcher's next check.
MYSQL_SLOTS = 16
#: MySQL / MariaDB: seconds a watcher stays ready after the last reserve that
#: waited on it (so a worker between two jobs keeps its slot).
MYSQL_LINGER = 2.0
#: MySQL / MariaDB: the longest single waiting statement of a watcher, in
#: seconds; it then checks the newest job again (and whether to stop).
MYSQL_MAX_WAIT = 5.0

#: MySQL error codes: the statement was interrupted (``KILL QUERY``); no such
#: connection; not the owner of that connection.
_ER_QUERY_INTERRUPTED = 1317
_ER_NO_SUCH_THREAD = 1094
_ER_KILL_DENIED = 1095
#: A "last seen" value no ``MAX(seq)`` equals (not even ``NULL``, for an empty table).
_UNKNOWN = -1


def _error_code(exc: BaseException) -> int | None:
    """The MySQL error number of a PyMySQL error (``None`` for anything else)."""
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def mysql_slot_names(database: str, prefix: str) -> tuple[str, ...]:
    """The names of the wake-up slot locks of ``database`` and table ``prefix``.

    ``GET_LOCK`` names are server-wide, so they carry a digest of both; each
    is well inside MySQL's 64-character limit.
    """
    digest = hashlib.sha256(f"{database}\0{prefix}".encode()).hexdigest()[:16]
    return tuple(f"jobs-wake-{digest}-{k}" for k in range(MYSQL_SLOTS))


class MySqlBell:
    """The dispatching side on MySQL / MariaDB: interrupts the waiting statement of every watcher.

    :meth:`ring` runs on a connection right after the enqueue committed: one
    query lists the connections holding the slot locks, then one
    ``KILL QUERY`` per holder other than this process's own watcher (whose
    reserves the waker already woke). ``KILL QUERY`` needs no privilege for
    connections of the same user; a holder it may not interrupt is skipped
    from then on (that process sees the job at its watcher's next check).
    """

    def __init__(self, slots: tuple[str, ...], own: Callable[[], int | None]) -> None:
        # The names are "jobs-wake-<hex>-<n>": safe to write inline.
        calls = ", ".join(f"IS_USED_LOCK('{name}')" for name in slots)
        self._probe = f"SELECT CONCAT_WS(',', {calls})"
        self._own = own
        self._refused: set[int] = set()

    def ring(self, dbapi_connection: Any) -> int:
        """Interrupt the waiting watchers through ``dbapi_connection`` (a PyMySQL connection).

        Returns how many were interrupted. Errors other than a watcher that
        has just gone are raised.
        """
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(self._probe)
            row = cursor.fetchone()
            holders = str(row[0] or "") if row else ""
            if not holders:
                return 0
            own = self._own()
            woken = 0
            for text in holders.split(","):
                ident = int(text)
                if ident == own or ident in self._refused:
                    continue
                try:
                    cursor.execute(f"KILL QUERY {ident}")
                    woken += 1
                except Exception as exc:
                    code = _error_code(exc)
                    if code == _ER_NO_SUCH_THREAD:
                        continue  # that watcher has just disconnected
                    if code == _ER_KILL_DENIED:
                        self._refused.add(ident)
                        log.warning(
                            "cannot wake the worker on MySQL connection %d (another database user); "
                            "it sees new jobs at its next check",
                            ident,
                        )
                        continue
                    raise
            return woken
        finally:
            cursor.close()


class MySqlWatcher:
    """A thread that waits in MySQL / MariaDB for new jobs on behalf of a :class:`Waker`.

    It runs only while reserves wait (:meth:`arm`, kept by :meth:`keep`, and
    for :data:`MYSQL_LINGER` seconds after): then it holds a dedicated
    connection, a free slot lock (``GET_LOCK(name, 0)``) and, in a loop, one
    statement ``SELECT m, IF(m <=> last, SLEEP(wait), 2) FROM (SELECT MAX(seq)
    AS m FROM jobs)``: it sleeps in the server unless a job newer than the
    last one seen was committed. A dispatch from another process interrupts
    the sleep (:class:`MySqlBell`); the watcher wakes the waker and runs the
    statement again with no ``last``, which returns at once with the newest
    ``seq`` and wakes the waker a second time. So a job committed after a
    reserve's claim began either is seen by that check, or interrupts a later
    sleep, or (its interruption lost between two statements) is newer than
    ``last`` when the next statement starts.
    Connection failures are logged and retried with backoff; reserves poll
    meanwhile.
    """

    def __init__(
        self, engine: sa.Engine, jobs_table: str, slots: tuple[str, ...], waker: Waker, wait: float
    ) -> None:
        self._engine = engine
        self._slots = slots
        self._waker = waker
        self._wait = max(0.01, min(wait, MYSQL_MAX_WAIT))
        self._newest = f"SELECT MAX(seq) FROM {jobs_table}"
        self._statement = (
            f"SELECT m, IF(m <=> %s, SLEEP(%s), 2) FROM (SELECT MAX(seq) AS m FROM {jobs_table}) AS t"
        )
        self._condition = threading.Condition()
        self._until = 0.0  # time.monotonic() until which to stay armed
        self._armed = False
        self._epoch = 0  # counts the times the watcher became armed
        self._failing = False
        self._stopped = False
        self._connection_id: int | None = None
        self._thread = threading.Thread(target=quiet(self._run), name="jobs-mysql-wakeup", daemon=True)
        self._thread.start()

    @property
    def connection_id(self) -> int | None:
        """The MySQL connection id of the waiting statement (``None`` while not armed)."""
        return self._connection_id

    def armed_epoch(self) -> int | None:
        """An identifier of the current armed period (``None`` when not armed); read it before a claim."""
        with self._condition:
            return self._epoch if self._armed else None

    def keep(self, until: float, epoch: int | None) -> bool:
        """Stay armed until ``until`` (``time.monotonic()``); whether armed since ``epoch`` was read."""
        with self._condition:
            self._until = max(self._until, until)
            return self._armed and epoch is not None and self._epoch == epoch

    def arm(self, until: float, timeout: float) -> bool:
        """Become armed (and stay so until ``until``); whether it is, within ``timeout`` seconds.

        Returns ``False`` at once while the watcher cannot reach the database.
        """
        with self._condition:
            self._until = max(self._until, until)
            if self._armed:
                return True
            if self._failing or self._stopped:
                return False
            self._condition.notify_all()
            self._condition.wait_for(lambda: self._armed or self._failing or self._stopped, timeout)
            return self._armed

    def _wanted(self) -> bool:
        return not self._stopped and time.monotonic() < self._until

    def _is_stopped(self) -> bool:
        return self._stopped

    def _connect(self) -> Any:
        raw = self._engine.raw_connection()
        conn = raw.driver_connection
        raw.detach()
        assert conn is not None
        conn.autocommit(True)
        return conn

    def _take_slot(self, cursor: Any) -> str | None:
        for name in self._slots:
            cursor.execute("SELECT GET_LOCK(%s, 0)", (name,))
            row = cursor.fetchone()
            if row and row[0] == 1:
                return name
        log.info(
            "all %d MySQL wake-up slots of these jobs tables are taken; this process sees new jobs "
            "every %.1fs instead of at once",
            len(self._slots),
            self._wait,
        )
        return None

    def _read_newest(self, cursor: Any) -> Any:
        cursor.execute(self._newest)
        row = cursor.fetchone()
        return row[0] if row else None

    def _run(self) -> None:
        backoff = 0.1
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._stopped or time.monotonic() < self._until)
                if self._stopped:
                    return
            conn = None
            try:
                conn = self._connect()
                cursor = conn.cursor()
                cursor.execute("SELECT CONNECTION_ID()")
                self._connection_id = int(cursor.fetchone()[0])
                slot = self._take_slot(cursor)
                last = self._read_newest(cursor)  # before the reserves claim (see arm)
                with self._condition:
                    self._armed = True
                    self._failing = False
                    self._epoch += 1
                    self._condition.notify_all()
                backoff = 0.1
                self._waker.notify()  # reserves that waited without a watcher claim again
                while self._wanted():
                    try:
                        cursor.execute(self._statement, (last, self._wait))
                        row = cursor.fetchone()
                        newest, outcome = (row[0], int(row[1])) if row else (None, 1)
                    except Exception as exc:
                        if _error_code(exc) != _ER_QUERY_INTERRUPTED:
                            raise
                        outcome = 1
                    if outcome == 0:
                        continue  # slept the whole wait: nothing new
                    # Interrupted by a dispatch (1): wake the reserves at once, and
                    # check again without sleeping: a job committed after their claim
                    # began but before that check is newer than nothing, so the check
                    # wakes them once more. A newer job was there already (2): note
                    # it, and wake them.
                    last = _UNKNOWN if outcome == 1 else newest
                    self._waker.notify()
                with self._condition:
                    self._armed = False
                if slot is not None and not self._is_stopped():
                    cursor.execute("SELECT RELEASE_LOCK(%s)", (slot,))
            except Exception as exc:
                with self._condition:
                    self._armed = False
                    self._failing = True
                    self._condition.notify_all()
                if self._is_stopped():
                    return
                log.warning(
                    "MySQL wake-up connection failed (%s); retrying in %.1fs", type(exc).__name__, backoff
                )
                self._waker.notify()  # a wake-up may have been missed
                with self._condition:
                    self._condition.wait_for(lambda: self._stopped, backoff)
                backoff = min(backoff * 2, 5.0)
                with self._condition:
                    self._failing = False
            finally:
                self._connection_id = None
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass

    def stop(self) -> None:
        """Stop waiting and close the connection (the waiting statement is interrupted)."""
        with self._condition:
            self._stopped = True
            self._condition.notify_all()
        ident = self._connection_id
        if ident is not None and self._thread.is_alive():
            try:
                with self._engine.connect() as conn:
                    conn.exec_driver_sql(f"KILL QUERY {int(ident)}")
            except Exception:
                pass  # it stops after its current wait anyway
        self._thread.join(timeout=1.0)
