"""The Redis driver: queues in sorted sets, every state change one Lua script.

A job is a hash holding its encoded body; a queue is one sorted set of
waiting jobs per priority (scored by due time, so delayed jobs need no
separate promotion) and one of leases (scored by lease end). Every key of a
driver starts with ``{prefix}:``, one Cluster hash tag, so every script runs
on one node of a Redis Cluster. The key layout is in :mod:`jobs_redis.scripts`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import redis
import redis.exceptions as rex
from jobs_core import serializer
from jobs_core.driver import Capability, Driver
from jobs_core.errors import (
    BackendUnavailable,
    ConfigurationError,
    DriverClosed,
    MalformedMessage,
    OperationTimedOut,
    StorageFull,
)
from jobs_core.flow_state import MIN_WAIT, TokenGrant
from jobs_core.message import (
    Delivery,
    FailedJob,
    Message,
    MessageBatch,
    QueueStats,
    ScheduleRecord,
    new_id,
    validate_queue_name,
)
from jobs_core.status import (
    CANCEL_REMOVED,
    CANCELLED,
    SUCCEEDED,
    JobStatus,
    Progress,
    progress_json,
)
from jobs_core.urls import redact_text
from jobs_core.workflow_state import WORKFLOW_HEADER, WorkflowRecord, job_cancelled, job_finished
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from jobs_redis import listing_scripts, scripts, status_scripts, workflow_scripts
from jobs_redis.errors import CorruptKey, RedisDriverError, ReplicasNotReached, ScriptingNotAllowed
from jobs_redis.fairness import tenant_of
from jobs_redis.listing import ListingOperations
from jobs_redis.settings import RedisSettings, parse
from jobs_redis.status import ended_as, meta, parse_status
from jobs_redis.workflows import LOCK_MS, Transaction, parse_record

#: Longest single wait of a blocked ``reserve`` (it then checks again).
MAX_BLOCK = 5.0
#: Retries of a command whose connection dropped (redis-py's ``Retry``).
RETRIES = 2
#: Deliveries acknowledged per script call.
ACK_CHUNK = 1000

#: Seconds between two measurements of the offset of this host's clock from the server's.
SKEW_EVERY = 10.0

_NOOP = "return 1"
_TIME = "return redis.call('TIME')"

#: What counts a finished workflow job in a transaction (a call of jobs_core.workflow_state).
Decision = Callable[[Transaction], object]


def _all_of(decisions: Sequence[Decision]) -> Decision:
    """One decision running ``decisions`` in order on the same transaction."""

    def run(tx: Transaction) -> None:
        for decision in decisions:
            decision(tx)

    return run


def _succeeded(delivery: Delivery) -> Decision:
    """Count ``delivery``'s job succeeded in its workflow (with its result, for a chain)."""
    return lambda tx: job_finished(tx, delivery.message, True, delivery.result)


def _as_member(delivery: Delivery) -> Delivery:
    """``delivery`` of a watched job, its message given the header naming its own id (how it is counted)."""
    headers = {**delivery.message.headers, WORKFLOW_HEADER: delivery.message.id}
    return dataclasses.replace(delivery, message=delivery.message.replace(headers=headers))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisDriver(ListingOperations, Driver):
    """Jobs on Redis, Redis Sentinel or Redis Cluster.

    URL: ``redis://[user:password@]host[:port][/db][?prefix=jobs]`` (``rediss://``
    for TLS), ``redis+sentinel://host:26379[,host:port...]/db?service=mymaster``
    or ``redis+cluster://host:port[,host:port...]``; the options are listed in
    :data:`jobs_redis.settings.OPTIONS`.
    """

    name: ClassVar[str] = "redis"
    schemes: ClassVar[tuple[str, ...]] = ("redis", "rediss")
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.DELAY,
            Capability.PRIORITY,
            Capability.UNIQUE,
            Capability.FAILED_STORE,
            Capability.RETRY_FAILED,
            Capability.STATS,
            Capability.COMPLETED_COUNT,
            Capability.PURGE,
            Capability.PRUNE,
            Capability.SCHEDULES,
            Capability.BLOCKING_RESERVE,
            Capability.ATOMIC_BATCH,
            Capability.RAW_INJECTION,
            Capability.LEASE_HANDOFF,
            Capability.IDEMPOTENT_ENQUEUE,
            Capability.ORDERED_KEYS,
            Capability.TRANSACTIONAL_ENQUEUE,
            Capability.QUEUE_PAUSE,
            Capability.RATE_LIMITS,
            Capability.CONCURRENCY_LIMITS,
            Capability.STATUS,
            Capability.PROGRESS,
            Capability.CANCEL,
            Capability.WORKFLOWS,
            Capability.JOB_LISTING,
            Capability.WORKERS,
            Capability.TENANT_FAIRNESS,
        }
    )
    ack_in_background: bool = True

    def __init__(self, url: str | None = None, **options: Any) -> None:
        super().__init__(url or "redis://127.0.0.1:6379/0", **options)
        self.settings: RedisSettings = parse(self.url or "", options)
        self.max_message_bytes = self.settings.max_message_bytes
        self.results_ttl = self.settings.results_ttl
        self._base = self.settings.base
        self._seq = self._base + "seq"
        self._client: Any = self._connect()
        self._scripts = {
            name: self._client.register_script(scripts.PRELUDE + source)
            for name, source in scripts.ALL.items()
        }
        for name, source in {**status_scripts.ALL, **workflow_scripts.ALL}.items():
            self._scripts[name] = self._client.register_script(
                scripts.PRELUDE + status_scripts.HELPERS + source
            )
        for name, source in listing_scripts.ALL.items():
            self._scripts[name] = self._client.register_script(
                scripts.PRELUDE + listing_scripts.HELPERS + source
            )
        self._noop = self._client.register_script(_NOOP)
        self._time = self._client.register_script(_TIME)
        self._token_pid = 0
        self._token_base = ""
        self._tokens = itertools.count()
        #: This host's clock minus the server's (a lower bound), and when it was measured.
        self._skew = 0.0
        self._skew_at = -SKEW_EVERY

    @classmethod
    def from_config(cls, url: str | None = None, options: Mapping[str, Any] | None = None) -> Driver:
        """Build from a URL; ``options`` take the URL's query options by name (the URL wins)."""
        return cls(url, **dict(options or {}))

    def _connect(self) -> Any:
        s = self.settings
        common: dict[str, Any] = {
            "username": s.username,
            "password": s.password,
            "socket_timeout": s.socket_timeout,
            "socket_connect_timeout": s.connect_timeout,
            # Two quick retries of a dropped connection (every script is safe to run again: the
            # writes check ids and receipts); a server that stays down is reported within a second.
            "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), RETRIES),
        }
        try:
            if s.mode == "cluster":
                from redis.cluster import ClusterNode, RedisCluster

                return RedisCluster(
                    startup_nodes=[ClusterNode(h, p) for h, p in s.hosts],  # type: ignore[no-untyped-call]
                    ssl=s.tls,
                    max_connections=s.max_connections,
                    **common,
                )
            if s.mode == "sentinel":
                from redis.sentinel import Sentinel

                sentinel = Sentinel(
                    list(s.hosts),
                    sentinel_kwargs={
                        "socket_timeout": s.socket_timeout,
                        "socket_connect_timeout": s.connect_timeout,
                    },
                    **common,
                )
                return sentinel.master_for(s.service, db=s.db, max_connections=s.max_connections)
            host, port = s.hosts[0]
            return redis.Redis(
                host=host, port=port, db=s.db, ssl=s.tls, max_connections=s.max_connections, **common
            )
        except rex.RedisError as exc:
            raise self._translate(exc, "connecting") from exc

    # -- errors ---------------------------------------------------------------

    def _detail(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split()) or type(exc).__name__
        secrets = [self.settings.password] if self.settings.password else []
        return redact_text(text, self.url, secrets)[:300]

    def _translate(self, exc: rex.RedisError, action: str) -> Exception:
        where = f"Redis at {self.settings.where}"
        detail = self._detail(exc)
        if isinstance(exc, rex.NoPermissionError) or detail.startswith("NOPERM"):
            if "eval" in detail.lower() or "script" in detail.lower():
                return ScriptingNotAllowed(
                    f"{where}: the user may not run Lua scripts, which {action} needs ({detail}); "
                    "grant it with ACL SETUSER <user> +@scripting"
                )
            return ConfigurationError(f"{where}: permission denied while {action}: {detail}")
        if isinstance(exc, rex.AuthenticationError) or "WRONGPASS" in detail or "NOAUTH" in detail:
            return ConfigurationError(f"{where}: authentication failed while {action}: {detail}")
        if isinstance(exc, rex.TimeoutError):
            return OperationTimedOut(f"{where} did not answer in time while {action}: {detail}")
        if isinstance(exc, rex.ReadOnlyError):
            return BackendUnavailable(
                f"{where} is a read-only replica (a failover in progress?) while {action}: {detail}"
            )
        if isinstance(exc, (rex.ConnectionError, rex.BusyLoadingError)) or type(exc).__name__ in {
            "ClusterDownError",
            "MasterNotFoundError",
            "SlaveNotFoundError",
            "TryAgainError",
            "MaxConnectionsError",
        }:
            return BackendUnavailable(f"{where} is unavailable while {action}: {detail}")
        if isinstance(exc, rex.OutOfMemoryError) or detail.startswith("OOM") or "> 'maxmemory'" in detail:
            return StorageFull(
                f"{where} is out of memory (maxmemory reached) while {action}: {detail}; "
                "free memory (jobs prune) or raise maxmemory"
            )
        if "WRONGTYPE nothing stored: " in detail:
            problem = detail.split("WRONGTYPE nothing stored: ", 1)[1].split(" script:", 1)[0]
            return CorruptKey(
                f"{where}: key {problem} (written by another program?); nothing was stored while "
                f"{action}; delete the key to let the queue work"
            )
        if "WRONGTYPE" in detail:
            return CorruptKey(f"{where}: {self._diagnose()} (while {action})")
        return RedisDriverError(f"{where}: {action} failed: {detail}")

    def _diagnose(self) -> str:
        """Name a key of this prefix whose type is not the one the driver writes."""
        expected = {
            "seq": "string",
            "queues": "set",
            "u": "hash",
            "f": "zset",
            "s": "set",
            "paused": "set",
            "r": "zset",
            "wk": "zset",
        }
        try:
            for raw in self._client.scan_iter(match=self._base + "*", count=1000):
                key = _text(raw)
                rest = key[len(self._base) :]
                if rest in expected:
                    want = expected[rest]
                elif rest.startswith("w:") or rest.startswith("rl:"):
                    want = "list"
                elif rest.startswith(("q:", "cl:", "rk:")):
                    want = "zset"
                else:
                    want = "hash"
                kind = _text(self._client.type(raw))
                if kind != want:
                    return (
                        f"key {key!r} holds a {kind}, not the {want} the driver keeps there "
                        f"(written by another program?); delete it (DEL {key}) to let the queue work"
                    )
        except rex.RedisError:
            pass
        return "a key of the driver holds a value of the wrong type (written by another program?)"

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except rex.RedisError as exc:
            if self._closed:
                raise DriverClosed(f"driver {self.name!r} is closed") from exc
            raise self._translate(exc, action) from exc

    def _run(self, script: str, args: Sequence[Any], action: str) -> Any:
        with self._errors(action):
            registered = self._scripts[script]
            try:
                # EVALSHA straight away (redis-py's Script call adds a few microseconds per call);
                # a server that lost the script (restarted, SCRIPT FLUSH) gets it loaded again.
                sha = registered.sha
                return self._client.execute_command("EVALSHA", sha, 1, self._seq, self._base, *args)
            except rex.NoScriptError:
                return registered(keys=[self._seq], args=[self._base, *args])

    # -- the hot path ---------------------------------------------------------

    @staticmethod
    def _fields(message: Message | Mapping[str, Any], now: float) -> tuple[Any, ...]:
        """queue, priority, due, unique key, unique expiry, ordering key, key concurrency, tenant."""
        get: Any = message.get if isinstance(message, Mapping) else message.__getattribute__
        unique, ttl, key = get("unique_key"), get("unique_ttl"), get("key")
        return (
            get("queue"),
            int(get("priority")),
            repr(float(get("available_at"))),
            "" if unique is None else "k" + unique,
            "" if unique is None or ttl is None else repr(now + float(ttl)),
            "" if key is None else key,
            int(get("key_concurrency")),
            tenant_of(get("headers")),
        )

    def _enqueue_args(self, messages: Sequence[Message], bodies: list[bytes], now: float) -> list[Any]:
        """The enqueue script's arguments after ``now``: the fields messages share sent once."""
        if isinstance(messages, MessageBatch):
            ids, _ = messages.encoded()
            rows = [self._fields(messages.common, now)]
        else:
            ids = [m.id for m in messages]
            rows = [self._fields(m, now) for m in messages]
        args: list[Any] = [len(ids)]
        if all(row == rows[0] for row in rows):
            args += ("s", *rows[0])
            for ident, body in zip(ids, bodies, strict=True):
                args += (ident, body)
        else:
            args.append("m")
            for ident, body, row in zip(ids, bodies, rows, strict=True):
                args += (ident, body, *row)
        return args

    def enqueue(self, messages: Sequence[Message]) -> list[str | None]:
        """Store every message or none (one script); with ``wait_replicas``, also on replicas."""
        self.check_open()
        bodies = self.validate(messages)
        if not bodies:
            return []
        now = time.time()
        args = [repr(now), *self._enqueue_args(messages, bodies, now)]
        wanted = self.settings.wait_replicas
        if not wanted:
            stored = self._run("enqueue", args, "enqueuing")
        else:
            with self._errors("enqueuing"):
                pipe = self._client.pipeline(transaction=False)
                self._scripts["enqueue"](keys=[self._seq], args=[self._base, *args], client=pipe)
                pipe.execute_command("WAIT", wanted, int(self.settings.wait_timeout * 1000))
                stored, acknowledged = pipe.execute()
            if int(acknowledged) < wanted:
                raise ReplicasNotReached(
                    f"Redis at {self.settings.where}: {acknowledged} of {wanted} replica(s) acknowledged "
                    f"the enqueue within {self.settings.wait_timeout}s; the jobs are on the master and may "
                    "be lost if it fails now: enqueue them again (the same ids store nothing twice)"
                )
        ids = messages.ids() if isinstance(messages, MessageBatch) else [m.id for m in messages]
        return [ident if flag else None for ident, flag in zip(ids, stored, strict=True)]

    def enqueue_in(self, transaction: Any, messages: Sequence[Message]) -> list[str | None]:
        """Queue the enqueue on the caller's ``MULTI`` pipeline: the jobs exist if and only if it executes.

        ``transaction`` is a redis-py pipeline opened with ``transaction=True``
        on this driver's server and database (not a Cluster pipeline). A job
        with a ``unique_key`` is refused (whether it is a duplicate is only
        known when the pipeline executes), and ``wait_replicas`` does not
        apply (the caller runs ``EXEC``; it may send ``WAIT`` after it).
        """
        self.check_open()
        from redis.client import Pipeline

        if not isinstance(transaction, Pipeline) or not getattr(transaction, "transaction", False):
            raise ConfigurationError(
                "the redis driver joins a redis-py pipeline opened with transaction=True "
                f"(MULTI ... EXEC), got {type(transaction).__name__}"
            )
        db = transaction.connection_pool.connection_kwargs.get("db", 0)
        if int(db or 0) != self.settings.db:
            raise ConfigurationError(
                f"the pipeline writes to Redis database {db}, the driver's jobs live in database "
                f"{self.settings.db}: open the pipeline on a client of the same database"
            )
        bodies = self.validate(messages)
        common = messages.common if isinstance(messages, MessageBatch) else None
        uniques = [common["unique_key"]] if common is not None else [m.unique_key for m in messages]
        if any(u is not None for u in uniques):
            raise ConfigurationError(
                "a job with a unique_key cannot join a Redis transaction (whether it is a duplicate is "
                "known only when the transaction executes): dispatch it outside the transaction"
            )
        if not bodies:
            return []
        now = time.time()
        args = [self._base, repr(now), *self._enqueue_args(messages, bodies, now)]
        transaction.eval(scripts.PRELUDE + scripts.ENQUEUE, 1, self._seq, *args)
        ids = messages.ids() if isinstance(messages, MessageBatch) else [m.id for m in messages]
        return list(ids)

    def reserve(
        self, queues: Sequence[str], limit: int = 1, lease: float = 30.0, timeout: float = 0.0
    ) -> list[Delivery]:
        """Lease up to ``limit`` due messages; waits up to ``timeout`` for one (woken by a push)."""
        self.check_open()
        names = [validate_queue_name(q) for q in queues]
        if not names or limit < 1:
            return []
        deadline = time.monotonic() + max(0.0, timeout)
        wake_keys = [f"{self._base}w:{q}" for q in names]
        pending: Any = None
        while True:
            if pending is None:
                now = time.time()
                end = now + lease
                args = [repr(now), repr(end), limit, self._token(), *names]
                out = self._run("reserve", args, "reserving")
            else:
                out, pending = pending, None
                end = time.time() + lease
            if len(out) > 1:
                found, malformed = self._deliveries(out, end)
                if found:
                    return found
                if malformed:
                    continue
                wake_at = ""
            else:
                wake_at = _text(out[0]) if out else ""
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed:
                return []
            wait = min(remaining, MAX_BLOCK, self.settings.socket_timeout / 2)
            if wake_at:
                wait = min(wait, max(0.0, float(wake_at) - time.time()) + 0.001)
            if wait < 0.005:
                time.sleep(max(wait, 0.0))
                continue
            pending = self._wait_then_reserve(wake_keys, wait, lease, limit, names)

    def _token(self) -> str:
        """A token no other reserve or acknowledgement uses: random per process, then counted."""
        pid = os.getpid()
        if pid != self._token_pid:  # a forked child must not repeat its parent's tokens
            self._token_pid, self._token_base = pid, uuid.uuid4().hex[:12]
        return f"{self._token_base}{next(self._tokens):x}:"

    def _measure_skew(self) -> None:
        """How far this host's clock is ahead of the server's, at least (one ``TIME`` in a script)."""
        before = time.time()
        with self._errors("reading the server's clock"):
            seconds, micros = self._time(keys=[self._seq], args=[])
        self._skew = before - (int(seconds) + int(micros) / 1e6)
        self._skew_at = time.monotonic()

    def _wait_then_reserve(
        self, wake_keys: list[str], wait: float, lease: float, limit: int, names: list[str]
    ) -> Any:
        """Block on the wake-up lists with the reserve pipelined behind: one round trip, not two.

        Redis runs the reserve as soon as the pop returns, before this process
        is even scheduled again. The script's "now" is then the server's clock
        plus this host's offset from it (measured every :data:`SKEW_EVERY`
        seconds, as a lower bound: a job is never taken before its due time by
        this host's clock; one due a moment later is taken by the next call).
        Returns the reserve's reply, or ``None`` to run an ordinary reserve
        (the script was not loaded on the server).
        """
        if time.monotonic() - self._skew_at >= SKEW_EVERY:
            self._measure_skew()
        script = self._scripts["reserve"]
        args = [self._base, "@" + repr(self._skew), repr(float(lease)), limit, self._token(), *names]
        with self._errors("waiting for work"):
            pipe = self._client.pipeline(transaction=False)
            pipe.blpop(wake_keys, timeout=wait)
            pipe.evalsha(script.sha, 1, self._seq, *args)
            _, out = pipe.execute(raise_on_error=False)
        if isinstance(out, rex.NoScriptError):
            return None
        if isinstance(out, Exception):
            raise self._translate(out, "reserving") if isinstance(out, rex.RedisError) else out
        return out

    def _deliveries(self, out: list[Any], end: float) -> tuple[list[Delivery], int]:
        found: list[Delivery] = []
        malformed = 0
        for k in range(0, len(out), 4):
            queue, ident, receipt, body = _text(out[k]), _text(out[k + 1]), _text(out[k + 2]), out[k + 3]
            try:
                message = Message.decode(body)
            except MalformedMessage as exc:
                malformed += 1
                self._run(
                    "fail",
                    [queue, ident, receipt, ident, "", f"malformed message: {exc}", repr(time.time()), "1"],
                    "moving a malformed record to the failed store",
                )
                continue
            if message.queue != queue:
                message = message.replace(queue=queue)
            found.append(Delivery(message, receipt, end, ident))
        return found, malformed

    @staticmethod
    def _handle(delivery: Delivery) -> str:
        return str(delivery.handle if delivery.handle is not None else delivery.id)

    def ack(self, delivery: Delivery) -> None:
        """Finish the job (counted completed); ignored if the lease went to another worker."""
        self.ack_many((delivery,))

    def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """Finish several jobs, a thousand per script call."""
        deliveries = self._ack_workflow_jobs(deliveries, None)
        for start in range(0, len(deliveries), ACK_CHUNK):
            chunk = deliveries[start : start + ACK_CHUNK]
            args: list[Any] = [repr(time.time()), self._token()]
            for d in chunk:
                args += [d.message.queue, self._handle(d), d.receipt]
            if watched := self._run("ack", args, "acknowledging"):
                self._ack_watched(chunk, watched, None)

    def _ack_watched(
        self, chunk: Sequence[Delivery], handles: Sequence[bytes], results: Mapping[str, str | None] | None
    ) -> None:
        """Acknowledge the watched jobs an ack script left held (``handles``) as workflow jobs."""
        by_handle = {self._handle(d): d for d in chunk}
        self._ack_workflow_jobs([_as_member(by_handle[_text(h)]) for h in handles], results)

    def retry(self, delivery: Delivery, delay: float, error: str) -> None:
        """Back on its queue after ``delay`` with ``attempts + 1``, behind the waiting jobs."""
        due = time.time() + max(0.0, delay)
        body = delivery.message.replace(
            attempts=delivery.message.attempts + 1, last_error=error, available_at=due
        ).encode()
        args = [delivery.message.queue, self._handle(delivery), delivery.receipt, body, repr(due), "1"]
        self._run("put_back", args, "retrying")

    def release(self, delivery: Delivery, delay: float = 0.0) -> None:
        """Back on its queue unrun; without a delay it keeps its place in line."""
        body: bytes = b""
        due = ""
        if delay > 0:
            at = time.time() + delay
            body, due = delivery.message.replace(available_at=at).encode(), repr(at)
        args = [delivery.message.queue, self._handle(delivery), delivery.receipt, body, due, "0"]
        self._run("put_back", args, "releasing")

    def extend(self, delivery: Delivery, lease: float) -> bool:
        """Hold the lease ``lease`` more seconds; ``False`` if it was lost."""
        end = repr(time.time() + lease)
        args = [delivery.message.queue, self._handle(delivery), delivery.receipt, end]
        return bool(self._run("extend", args, "extending a lease"))

    def fail(self, delivery: Delivery, error: str) -> None:
        """Into the failed store with ``attempts + 1`` and ``error``."""
        message = delivery.message.replace(attempts=delivery.message.attempts + 1, last_error=error)
        if WORKFLOW_HEADER in message.headers:
            self._fail_in_workflow(delivery, message, error)
            return
        args = [
            message.queue,
            self._handle(delivery),
            delivery.receipt,
            message.id,
            message.encode(),
            error,
            repr(time.time()),
            "0",
        ]
        if self._run("fail", args, "failing a job") == -1:
            self._fail_in_workflow(_as_member(delivery), message, error)

    def _fail_in_workflow(self, delivery: Delivery, message: Message, error: str) -> None:
        """Fail a held workflow job (``message``: its failed body) and count it, in one commit."""
        count: Decision = lambda tx: job_finished(tx, delivery.message, False, error=error)  # noqa: E731
        self._finish_in_workflow([(delivery, ["fail", message.id, message.encode(), error], count)])

    # -- administration -------------------------------------------------------

    def queues(self) -> list[str]:
        """Every queue of this prefix that held a message."""
        self.check_open()
        with self._errors("listing queues"):
            return sorted(_text(q) for q in self._client.smembers(self._base + "queues"))

    def stats_by_queue(self, queues: Sequence[str] | None = None) -> dict[str, QueueStats]:
        """Counts of each queue, all read by one script (one snapshot)."""
        names = self.queues() if queues is None else [validate_queue_name(q) for q in queues]
        if not names:
            return {}
        out = self._run("stats", [repr(time.time()), *names], "reading stats")
        return {name: QueueStats(*(int(v) for v in out[5 * i : 5 * i + 5])) for i, name in enumerate(names)}

    def stats(self, queue: str | None = None) -> QueueStats:
        """Counts of ``queue``, or summed over every queue."""
        if queue is not None:
            return self.stats_by_queue([queue])[queue]
        total = QueueStats()
        for counts in self.stats_by_queue().values():
            total = total + counts
        return total

    def _failed_job(self, fid: str, fields: Mapping[bytes, bytes]) -> FailedJob | None:
        if b"b" not in fields:
            return None
        body = fields[b"b"]
        queue = _text(fields.get(b"q", b""))
        error = _text(fields.get(b"e", b""))
        failed_at = float(fields.get(b"t", b"0"))
        if fields.get(b"x") != b"1":
            try:
                message = Message.decode(body)
            except MalformedMessage:
                pass
            else:
                return FailedJob(
                    id=fid,
                    name=message.name,
                    queue=queue,
                    payload=message.payload,
                    attempts=message.attempts,
                    error=error,
                    failed_at=failed_at,
                    message=message,
                )
        return FailedJob(
            id=fid,
            name="",
            queue=queue,
            payload=None,
            attempts=0,
            error=error,
            failed_at=failed_at,
            raw=body.decode("utf-8", "replace"),
        )

    def failed(self, limit: int = 50, offset: int = 0, queue: str | None = None) -> list[FailedJob]:
        """Failed jobs, newest first."""
        self.check_open()
        key = self._base + ("f" if queue is None else f"q:{validate_queue_name(queue)}:f")
        if limit <= 0:
            return []
        with self._errors("listing failed jobs"):
            fids = [_text(f) for f in self._client.zrevrange(key, offset, offset + limit - 1)]
            pipe = self._client.pipeline(transaction=False)
            for fid in fids:
                pipe.hgetall(f"{self._base}f:{fid}")
            rows = pipe.execute() if fids else []
        jobs = [self._failed_job(fid, row) for fid, row in zip(fids, rows, strict=True)]
        return [j for j in jobs if j is not None]

    def retry_failed(self, failed_id: str) -> bool:
        """Back on its queue with attempts reset; ``False`` if no failed job has that id."""
        self.check_open()
        while True:
            with self._errors("reading a failed job"):
                seen, queue, raw = self._client.hmget(f"{self._base}f:{failed_id}", "b", "q", "x")
            if seen is None:
                return False
            now = time.time()
            message = None
            if raw != b"1":
                with contextlib.suppress(MalformedMessage):
                    message = Message.decode(seen)
            if message is None:
                args = [failed_id, seen, failed_id, _text(queue or b""), 0, repr(now), seen, "", 1, ""]
            else:
                again = message.replace(attempts=0, available_at=now)
                args = [failed_id, seen, again.id, again.queue, again.priority, repr(now), again.encode()]
                key = "" if again.key is None else again.key
                args += [key, again.key_concurrency, tenant_of(again.headers)]
            result = int(self._run("retry_failed", args, "retrying a failed job"))
            if result >= 0:
                return result == 1

    def forget_failed(self, failed_id: str) -> bool:
        """Delete one failed job; ``False`` if there was none."""
        self.check_open()
        return bool(self._run("forget_failed", [failed_id], "forgetting a failed job"))

    def purge(self, queue: str) -> int:
        """Remove the waiting (pending and delayed) jobs of ``queue``; return how many.

        One script removes the plain jobs; the jobs of workflows it leaves are
        cancelled one by one, which counts each in its workflow.
        """
        self.check_open()
        validate_queue_name(queue)
        removed, kept = self._run("purge", [repr(time.time()), queue], "purging")
        cancelled = sum(self.cancel(_text(job_id)) == CANCEL_REMOVED for job_id in kept)
        return int(removed) + cancelled

    def prune(self, older_than: float) -> int:
        """Remove completed and failed records finished more than ``older_than`` seconds ago."""
        self.check_open()
        cutoff = repr(time.time() - older_than)
        self._run("prune_results", [cutoff], "pruning kept results")
        workflows = int(self._run("workflow_prune", [cutoff], "pruning workflow records"))
        return workflows + int(self._run("prune", [cutoff], "pruning"))

    def inject_raw(self, queue: str, body: bytes) -> None:
        """Store ``body`` as-is under an id of the driver's choosing (tests of malformed input)."""
        self.check_open()
        validate_queue_name(queue)
        tenant = ""
        with contextlib.suppress(MalformedMessage):
            tenant = tenant_of(Message.decode(bytes(body)).headers)
        args = [new_id(), queue, bytes(body), repr(time.time()), tenant]
        self._run("inject", args, "writing a raw record")

    # -- schedules ------------------------------------------------------------

    def save_schedule(self, record: ScheduleRecord) -> None:
        """Insert or replace; keeps the stored ``last_tick`` when the record's is ``None``."""
        self.check_open()
        args = [
            record.name,
            serializer.dumps(dict(record.data)),
            "" if record.next_run_at is None else repr(float(record.next_run_at)),
            "1" if record.paused else "0",
            "" if record.last_tick is None else repr(float(record.last_tick)),
            repr(float(record.updated_at)),
        ]
        self._run("save_schedule", args, "saving a schedule")

    def schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""
        self.check_open()
        with self._errors("reading schedules"):
            names = sorted(_text(n) for n in self._client.smembers(self._base + "s"))
            pipe = self._client.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(f"{self._base}s:{name}")
            rows = pipe.execute() if names else []
        records = []
        for name, row in zip(names, rows, strict=True):
            if not row:
                continue
            data = serializer.loads(row.get(b"d", b"{}"))
            records.append(
                ScheduleRecord(
                    name=name,
                    data=data if isinstance(data, dict) else {},
                    next_run_at=float(row[b"n"]) if row.get(b"n") else None,
                    paused=row.get(b"z") == b"1",
                    last_tick=float(row[b"l"]) if row.get(b"l") else None,
                    updated_at=float(row.get(b"t") or 0),
                )
            )
        return records

    def remove_schedule(self, name: str) -> bool:
        """Delete a schedule; ``False`` if there was none."""
        self.check_open()
        return bool(self._run("remove_schedule", [name], "removing a schedule"))

    def claim_tick(self, name: str, tick: float) -> bool:
        """Claim ``tick`` for exactly one caller: a compare-and-set of ``last_tick``."""
        self.check_open()
        return bool(self._run("claim_tick", [name, repr(float(tick))], "claiming a tick"))

    def advance_schedule(self, name: str, expected: float | None, next_run_at: float | None) -> bool:
        """Set ``next_run_at`` if it still equals ``expected`` (one script)."""
        self.check_open()
        args = [
            name,
            "" if expected is None else repr(float(expected)),
            "" if next_run_at is None else repr(float(next_run_at)),
            repr(time.time()),
        ]
        return bool(self._run("advance_schedule", args, "advancing a schedule"))

    # -- status, results, progress, cancellation -------------------------------

    def _keeping(self, now: float) -> list[str]:
        """The ttl (milliseconds, '0' keeps none) and the cutoff the status scripts take."""
        ttl = self.results_ttl
        return [str(int(ttl * 1000) + 1000 if ttl > 0 else 0), repr(now - ttl)]

    def job_status(self, job_id: str) -> JobStatus | None:
        """The job, its kept record or its failed entry, read in one script (one snapshot)."""
        self.check_open()
        reply = self._run("status", [job_id], "reading a job's status")
        return parse_status(job_id, reply, time.time(), self.results_ttl)

    def ack_results(self, deliveries: Sequence[Delivery], results: Sequence[str | None]) -> None:
        """:meth:`ack_many` that keeps each result ``results_ttl`` seconds, in the same script."""
        pairs = list(zip(deliveries, results, strict=True))
        if any(WORKFLOW_HEADER in d.message.headers for d in deliveries):
            kept = dict(zip((d.receipt for d in deliveries), results, strict=True))
            plain = self._ack_workflow_jobs(deliveries, kept)
            pairs = [(d, kept[d.receipt]) for d in plain]
        for start in range(0, len(pairs), ACK_CHUNK):
            now = time.time()
            args: list[Any] = [repr(now), uuid.uuid4().hex, *self._keeping(now)]
            chunk = pairs[start : start + ACK_CHUNK]
            for d, result in chunk:
                args += [d.message.queue, self._handle(d), d.receipt, meta(SUCCEEDED, d.message, result)]
            if watched := self._run("ack_results", args, "acknowledging"):
                self._ack_watched([d for d, _ in chunk], watched, {d.receipt: r for d, r in chunk})

    def save_progress(self, delivery: Delivery, progress: Progress | None, worker: str) -> None:
        """Keep ``worker`` and ``progress`` on the job's record; ignored if the lease was lost."""
        args = [self._handle(delivery), delivery.receipt, worker, progress_json(progress) or ""]
        self._run("save_progress", args, "saving progress")

    def cancel(self, job_id: str) -> str:
        """Remove a waiting job (kept as cancelled) or mark a running one, in one script."""
        self.check_open()
        while True:
            while (answer := self._cancel_in_workflow(job_id)) == "changed":
                pass
            if answer == "ok":
                return CANCEL_REMOVED
            now = time.time()
            answer = _text(self._run("cancel", [repr(now), *self._keeping(now), job_id], "cancelling a job"))
            if answer != "watched":  # watched since it was read: cancelled as a workflow job
                return answer

    def cancel_requested(self, deliveries: Sequence[Delivery]) -> set[str]:
        """The ids among ``deliveries`` whose cancellation was asked (one script)."""
        if not deliveries:
            return set()
        handles = {self._handle(d): d.id for d in deliveries}
        asked = self._run("cancel_requested", list(handles), "reading cancellation requests")
        return {handles[_text(h)] for h in asked}

    def ack_cancelled(self, delivery: Delivery) -> None:
        """Remove the held job as cancelled (not counted completed); ignored if the lease was lost."""
        if WORKFLOW_HEADER in delivery.message.headers:
            self._cancelled_in_workflow(delivery)
            return
        now = time.time()
        args = [repr(now), *self._keeping(now), delivery.message.queue, self._handle(delivery)]
        args += [delivery.receipt, meta(CANCELLED, delivery.message, None)]
        if self._run("ack_cancelled", args, "finishing a cancelled job") == -1:
            self._cancelled_in_workflow(_as_member(delivery))

    def _cancelled_in_workflow(self, delivery: Delivery) -> None:
        """Remove a held workflow job as cancelled and count it, in one commit."""
        fields = ["cancelled", delivery.id, meta(CANCELLED, delivery.message, None), ""]
        count: Decision = lambda tx: job_cancelled(tx, delivery.message)  # noqa: E731
        self._finish_in_workflow([(delivery, fields, count)])

    # -- workflows ------------------------------------------------------------

    def _transaction(self) -> Transaction:
        return Transaction(
            self._client,
            self._base,
            self.validate,
            self._fields,
            self._lock_record,
            watch=self._watch,
            ended=self._ended,
        )

    def _watch(self, job_id: str, token: str, mark: bool) -> list[Any]:
        return list(self._run("workflow_watch", [job_id, token, "1" if mark else "0"], "watching a job"))

    def _ended(self, job_id: str, kept: bytes | None, failed_at: bytes | None) -> str | None:
        return ended_as(job_id, kept, failed_at, time.time(), self.results_ttl)

    def _lock_record(self, workflow_id: str, token: str) -> tuple[bool, bytes | None]:
        reply = self._run("workflow_lock", [token, LOCK_MS, workflow_id], "locking a workflow")
        return bool(reply[0]), (reply[1] if len(reply) > 1 else None)

    def _commit(self, tx: Transaction, acts: Sequence[Sequence[Any]]) -> Any:
        """Run ``COMMIT`` for ``tx`` and the jobs it finishes; release the locks if it wrote nothing."""
        now = time.time()
        args: list[Any] = [repr(now), tx.token, *self._keeping(now), uuid.uuid4().hex, len(acts)]
        for act in acts:
            args += act
        try:
            answer = self._run("workflow_commit", [*args, *tx.sections(now)], "committing a workflow")
        except BaseException:
            self._unlock(tx)
            raise
        if answer != b"ok":
            self._unlock(tx)
        return _text(answer) if isinstance(answer, bytes) else [int(n) - 1 for n in answer]

    def _unlock(self, tx: Transaction) -> None:
        if tx.locked:
            with contextlib.suppress(Exception):
                self._run("workflow_unlock", [tx.token, *tx.locked], "unlocking workflows")

    def _decide(self, decide: Callable[[Transaction], object]) -> Transaction:
        tx = self._transaction()
        try:
            with self._errors("reading workflow records"):
                decide(tx)
        except BaseException:
            self._unlock(tx)
            raise
        return tx

    def _finish_in_workflow(self, jobs: Sequence[tuple[Delivery, Sequence[Any], Decision]]) -> None:
        """Remove held workflow jobs and count them in one commit; a job whose lease was lost counts nothing.

        Each entry is a delivery, its action fields (action, job id, two values) and the
        decision that counts it. If some leases were lost the commit writes nothing and runs
        again without them.
        """
        todo = list(jobs)
        while todo:
            decide = _all_of([count for _, _, count in todo])
            acts = [
                [fields[0], d.message.queue, self._handle(d), d.receipt, *fields[1:]] for d, fields, _ in todo
            ]
            answer = self._commit(self._decide(decide), acts)
            if answer == "ok":
                return
            if isinstance(answer, list):
                todo = [row for n, row in enumerate(todo) if n not in set(answer)]

    def _ack_workflow_jobs(
        self, deliveries: Sequence[Delivery], results: Mapping[str, str | None] | None
    ) -> Sequence[Delivery]:
        """Acknowledge the workflow jobs among ``deliveries``, one commit per workflow; return the rest."""
        if not any(WORKFLOW_HEADER in d.message.headers for d in deliveries):
            return deliveries
        plain = []
        groups: dict[str, list[tuple[Delivery, Sequence[Any], Decision]]] = {}
        for d in deliveries:
            workflow_id = d.message.headers.get(WORKFLOW_HEADER)
            if workflow_id is None:
                plain.append(d)
                continue
            kept = "" if results is None else meta(SUCCEEDED, d.message, results[d.receipt])
            groups.setdefault(workflow_id, []).append((d, ["ack", d.id, kept, ""], _succeeded(d)))
        for rows in groups.values():
            self._finish_in_workflow(rows)
        return plain

    def _cancel_in_workflow(self, job_id: str) -> str:
        """Cancel a waiting job of a workflow, counted in its commit: ok, changed, or no (not one)."""
        with self._errors("reading a job"):
            state, body, member, lease_end, watched = self._client.hmget(
                f"{self._base}j:{job_id}", "s", "b", "m", "e", "v"
            )
        if state is None or (state == b"r" and float(lease_end or 0) > time.time()):
            return "no"
        try:
            message = Message.decode(body)
        except MalformedMessage:
            return "no"
        if WORKFLOW_HEADER not in message.headers:
            if watched is None:
                return "no"
            message = message.replace(headers={**message.headers, WORKFLOW_HEADER: message.id})
        tx = self._decide(lambda tx: job_cancelled(tx, message))
        answer = self._commit(tx, [["cancel", message.queue, job_id, _text(member), message.id, "", ""]])
        return answer if answer in {"ok", "changed"} else "no"

    @contextlib.contextmanager
    def workflow_transaction(self) -> Iterator[Transaction]:
        """Records locked as they are read; every write committed by one script when the block ends."""
        self.check_open()
        tx = self._transaction()
        try:
            with self._errors("reading workflow records"):
                yield tx
        except BaseException:
            self._unlock(tx)
            raise
        answer = self._commit(tx, [])
        if answer != "ok":
            raise OperationTimedOut(
                f"workflow transaction not committed ({answer}): a record's lock expired or a job it "
                "removes changed meanwhile; nothing was written, try again"
            )

    def workflow(self, workflow_id: str) -> WorkflowRecord | None:
        """The record as last committed (one ``HGET``, no lock)."""
        self.check_open()
        with self._errors("reading a workflow"):
            raw = self._client.hget(f"{self._base}wf:{workflow_id}", "d")
        return None if raw is None else parse_record(raw)

    def workflows(self, kind: str | None = None, limit: int = 50, offset: int = 0) -> list[WorkflowRecord]:
        """Records of ``kind`` (every kind if ``None``), newest first."""
        self.check_open()
        if limit <= 0:
            return []
        key = self._base + ("wfs" if kind is None else f"wfs:{kind}")
        with self._errors("listing workflows"):
            ids = [_text(i) for i in self._client.zrevrange(key, offset, offset + limit - 1)]
            pipe = self._client.pipeline(transaction=False)
            for ident in ids:
                pipe.hget(f"{self._base}wf:{ident}", "d")
            rows = pipe.execute() if ids else []
        return [parse_record(raw) for raw in rows if raw is not None]

    # -- flow control ---------------------------------------------------------

    def pause_queue(self, queue: str) -> bool:
        """Add ``queue`` to the prefix's set of paused queues; ``False`` if it was there."""
        self.check_open()
        validate_queue_name(queue)
        with self._errors("pausing a queue"):
            return bool(self._client.sadd(self._base + "paused", queue))

    def resume_queue(self, queue: str) -> bool:
        """Remove ``queue`` from the paused set; ``False`` if it was not paused."""
        self.check_open()
        validate_queue_name(queue)
        with self._errors("resuming a queue"):
            return bool(self._client.srem(self._base + "paused", queue))

    def paused_queues(self) -> list[str]:
        """The paused queues, sorted (one ``SMEMBERS``)."""
        self.check_open()
        with self._errors("listing paused queues"):
            return sorted(_text(q) for q in self._client.smembers(self._base + "paused"))

    def take_tokens(self, key: str, count: int, per: float, want: int = 1) -> TokenGrant:
        """Grant up to ``want`` starts from the sliding window of ``key`` (one script).

        The grants are stamped with this caller's ``time.time()``, or with the
        window's newest stamp when a caller whose clock is ahead stamped
        later, so that stamps follow the order of the grants.
        """
        self.check_open()
        args = [key, int(count), repr(float(per)), int(want), repr(time.time())]
        granted, at, oldest = self._run("take_tokens", args, "taking rate-limit tokens")
        stamp = float(_text(at))
        if int(granted) >= want:
            return TokenGrant(int(granted), 0.0, stamp)
        wait = max(MIN_WAIT, float(_text(oldest)) + float(per) - stamp)
        return TokenGrant(int(granted), wait, stamp)

    def acquire_slot(self, key: str, limit: int, holder: str, lease: float) -> bool:
        """Take (or renew) ``holder``'s slot of ``key`` unless ``limit`` others hold one (one script)."""
        self.check_open()
        now = time.time()
        args = [key, int(limit), holder, repr(now), repr(now + lease)]
        return bool(self._run("acquire_slot", args, "acquiring a concurrency slot"))

    def acquire_slots(self, key: str, limit: int, holders: Sequence[str], lease: float) -> int:
        """Take (or renew) the holders' slots of ``key`` in order, up to ``limit`` (one script)."""
        self.check_open()
        if not holders:
            return 0
        now = time.time()
        args = [key, int(limit), repr(now), repr(now + lease), *holders]
        return int(self._run("acquire_slots", args, "acquiring concurrency slots"))

    def extend_slot(self, key: str, holder: str, lease: float) -> bool:
        """Renew ``holder``'s slot until now + ``lease``; ``False`` if its lease had ended."""
        self.check_open()
        now = time.time()
        args = [key, holder, repr(now), repr(now + lease)]
        return bool(self._run("extend_slot", args, "extending a concurrency slot"))

    def release_slot(self, key: str, holder: str) -> None:
        """Free ``holder``'s slot of ``key`` (one ``ZREM``); nothing if it holds none."""
        self.check_open()
        with self._errors("releasing a concurrency slot"):
            self._client.zrem(f"{self._base}cl:{key}", holder)

    def release_slots(self, slots: Sequence[tuple[str, str]]) -> None:
        """Free the slots ``(key, holder)`` of ``slots`` (one script)."""
        self.check_open()
        if slots:
            self._run(
                "release_slots", [part for pair in slots for part in pair], "releasing concurrency slots"
            )

    # -- lifecycle ------------------------------------------------------------

    def ping(self) -> None:
        """One script round trip: the server answers and this user may run scripts."""
        self.check_open()
        with self._errors("pinging"):
            self._noop(keys=[self._seq], args=[])

    def close(self) -> None:
        """Close the connection pool; safe twice."""
        if self._closed:
            return
        super().close()
        with contextlib.suppress(Exception):
            self._client.close()
