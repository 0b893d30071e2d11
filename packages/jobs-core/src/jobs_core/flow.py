"""Flow control: expiry, rate limits, concurrency limits, tenants, paused queues, queue order.

What a job asks for travels in its message's headers (so every driver
carries it, and no stored schema changes): ``jobs-expires-at``,
``jobs-rate``, ``jobs-concurrency`` and ``jobs-tenant``. The state shared
by every worker (pause flags, rate windows, concurrency slots) is held by
the driver (:attr:`~jobs_core.driver.Capability.QUEUE_PAUSE`,
:attr:`~jobs_core.driver.Capability.RATE_LIMITS`,
:attr:`~jobs_core.driver.Capability.CONCURRENCY_LIMITS`); nothing is
counted in one worker's memory. :class:`FlowGate` is the worker's side: it
picks the queues to reserve from, and admits, delays or expires what was
reserved before anything starts.

Over 400 lines: what a job asks for (checked at dispatch, carried in headers)
and how the worker's gate reads it back are one format, kept in one place.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from jobs_core import flow_state
from jobs_core.driver import Capability, Driver
from jobs_core.errors import ConfigurationError, JobsError, UnsupportedOperation
from jobs_core.limits import MAX_SECONDS
from jobs_core.message import Delivery, Message, validate_queue_name

log = logging.getLogger("jobs_core.worker")

#: Header holding a job's expiry (Unix seconds, as text).
EXPIRES_HEADER = "jobs-expires-at"
#: Header holding a job's rate limit (JSON ``[key, count, per]``).
RATE_HEADER = "jobs-rate"
#: Header holding a job's concurrency limit (JSON ``[key, limit]``).
CONCURRENCY_HEADER = "jobs-concurrency"
#: Header holding a job's tenant (defined beside the drivers' arithmetic, which reads it).
TENANT_HEADER = flow_state.TENANT_HEADER

#: Longest flow-control key (rate limit, concurrency limit, tenant), in characters.
MAX_FLOW_KEY = 200
#: Seconds between two reads of the paused queues by a worker.
PAUSE_REFRESH = 0.4
#: Seconds a job refused a concurrency slot waits before it is tried again.
SLOT_RETRY = 0.5
#: Seconds within which a job granted a start of its rate limit must start. A
#: worker takes starts for a whole reserved batch at once, moments before the
#: jobs start; each grant is counted for ``per`` plus this slack, so that jobs
#: starting up to this late still never exceed the limit in any ``per``
#: seconds of their actual starts. A granted job that could not start in time
#: goes back to its queue (its start is spent). The cost: a limit that binds
#: all the time runs ``slack / per`` slower (2.5 % of a one-second period).
RATE_START_SLACK = 0.025

QueueOrder = Literal["round-robin", "weighted", "strict"]
#: The ways a worker serving several queues picks the one to reserve from first.
QUEUE_ORDERS: tuple[str, ...] = ("round-robin", "weighted", "strict")

KeySpec = str | Callable[[Any], str] | None


def _check_key_text(what: str, key: object) -> str:
    if not isinstance(key, str):
        raise ConfigurationError(f"{what} must be a string, got {type(key).__name__} {key!r}")
    if not 1 <= len(key) <= MAX_FLOW_KEY:
        raise ConfigurationError(f"{what} must be 1 to {MAX_FLOW_KEY} characters, got {len(key)}")
    return key


def _check_key_spec(what: str, key: object) -> KeySpec:
    if key is None or callable(key):
        return key
    return _check_key_text(what, key)


def _resolve_key(what: str, key: KeySpec, payload: Any, default: str) -> str:
    if key is None:
        return default
    if not callable(key):
        return key
    try:
        value = key(payload)
    except Exception as exc:
        raise ConfigurationError(f"{what} function raised {type(exc).__name__}: {exc}") from exc
    return _check_key_text(f"{what} function's result", value)


def _check_count(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{what} must be an int >= 1, got {value!r}")
    return value


def _check_period(what: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 < value <= MAX_SECONDS
    ):
        raise ConfigurationError(f"{what} must be a number of seconds > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` starts per ``per`` seconds for each key.

    ``key`` is a string, a function of the payload returning one, or
    ``None`` (one limit for the job: its name). Bad values raise
    :class:`~jobs_core.errors.ConfigurationError` here, where they are written.
    """

    count: int
    per: float = 1.0
    key: KeySpec = None

    def __post_init__(self) -> None:
        _check_count("rate_limit count", self.count)
        object.__setattr__(self, "per", _check_period("rate_limit per", self.per))
        _check_key_spec("rate_limit key", self.key)

    def header(self, payload: Any, default_key: str) -> str:
        """The ``jobs-rate`` header for one dispatch."""
        key = _resolve_key("rate_limit key", self.key, payload, default_key)
        return json.dumps([key, self.count, self.per], separators=(",", ":"))


@dataclass(frozen=True)
class ConcurrencyLimit:
    """At most ``count`` jobs of one key running at once, across every worker.

    ``key`` as for :class:`RateLimit`; ``None`` limits the job as a whole.
    """

    count: int
    key: KeySpec = None

    def __post_init__(self) -> None:
        _check_count("concurrency_limit count", self.count)
        _check_key_spec("concurrency_limit key", self.key)

    def header(self, payload: Any, default_key: str) -> str:
        """The ``jobs-concurrency`` header for one dispatch."""
        key = _resolve_key("concurrency_limit key", self.key, payload, default_key)
        return json.dumps([key, self.count], separators=(",", ":"))


def check_tenant(key: object) -> KeySpec:
    """A tenant key as given to ``Job.tenant``: a string or a function of the payload."""
    return _check_key_spec("tenant", key)


def check_expiry(when: object) -> float | dt.datetime:
    """An expiry as given to ``Job.expires``: seconds after dispatch (> 0) or an aware datetime."""
    if isinstance(when, dt.datetime):
        if when.tzinfo is None:
            raise ConfigurationError("expires() needs a timezone-aware datetime (or seconds after dispatch)")
        return when
    return _check_period("expires() seconds", when)


@dataclass(frozen=True)
class FlowOptions:
    """The flow-control settings of one dispatch (see :func:`flow_headers`)."""

    rate_limit: RateLimit | None = None
    concurrency_limit: ConcurrencyLimit | None = None
    tenant: KeySpec = None
    expires: float | dt.datetime | None = None

    def __post_init__(self) -> None:
        if self.rate_limit is not None and not isinstance(self.rate_limit, RateLimit):
            raise ConfigurationError(f"a rate limit must be a RateLimit, got {self.rate_limit!r}")
        if self.concurrency_limit is not None and not isinstance(self.concurrency_limit, ConcurrencyLimit):
            raise ConfigurationError(
                f"a concurrency limit must be a ConcurrencyLimit, got {self.concurrency_limit!r}"
            )
        if self.tenant is not None:
            check_tenant(self.tenant)
        if self.expires is not None:
            check_expiry(self.expires)

    @property
    def empty(self) -> bool:
        """Whether nothing is asked for."""
        return (
            self.rate_limit is None
            and self.concurrency_limit is None
            and self.tenant is None
            and self.expires is None
        )

    @property
    def per_payload(self) -> bool:
        """Whether a header depends on the payload (a key function)."""
        return any(
            callable(k)
            for k in (
                self.rate_limit.key if self.rate_limit else None,
                self.concurrency_limit.key if self.concurrency_limit else None,
                self.tenant,
            )
        )


def flow_headers(flow: FlowOptions, payload: Any, job_name: str, now: float) -> dict[str, str]:
    """The headers that carry ``flow`` for one message.

    Raises :class:`~jobs_core.errors.ConfigurationError` when a key function
    raises or returns something that is not a string, so a bad key is found
    at dispatch, never by a worker.
    """
    headers: dict[str, str] = {}
    if flow.expires is not None:
        at = flow.expires.timestamp() if isinstance(flow.expires, dt.datetime) else now + flow.expires
        headers[EXPIRES_HEADER] = repr(float(at))
    if flow.rate_limit is not None:
        headers[RATE_HEADER] = flow.rate_limit.header(payload, f"job:{job_name}")
    if flow.concurrency_limit is not None:
        headers[CONCURRENCY_HEADER] = flow.concurrency_limit.header(payload, f"job:{job_name}")
    if flow.tenant is not None:
        headers[TENANT_HEADER] = _resolve_key("tenant", flow.tenant, payload, "")
    return headers


# -- reading what a message asks for ------------------------------------------------


def expires_at(message: Message) -> float | None:
    """When ``message`` expires (Unix seconds), or ``None``."""
    text = message.headers.get(EXPIRES_HEADER)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def rate_of(message: Message) -> tuple[str, int, float] | None:
    """The rate limit ``(key, count, per)`` of ``message``, or ``None`` (also for an unreadable header)."""
    text = message.headers.get(RATE_HEADER)
    return None if text is None else _parse_rate(text)


def concurrency_of(message: Message) -> tuple[str, int] | None:
    """The concurrency limit ``(key, limit)`` of ``message``, or ``None``."""
    text = message.headers.get(CONCURRENCY_HEADER)
    return None if text is None else _parse_concurrency(text)


# A worker reads the same few limits in every job of a batch: each header text is parsed once.
@functools.lru_cache(maxsize=1024)
def _parse_rate(text: str) -> tuple[str, int, float] | None:
    try:
        key, count, per = json.loads(text)
        return _check_key_text("rate key", key), _check_count("rate", count), _check_period("rate", per)
    except (ValueError, TypeError, ConfigurationError):
        return None


@functools.lru_cache(maxsize=1024)
def _parse_concurrency(text: str) -> tuple[str, int] | None:
    try:
        key, count = json.loads(text)
        return _check_key_text("concurrency key", key), _check_count("concurrency", count)
    except (ValueError, TypeError, ConfigurationError):
        return None


# -- the worker's side ----------------------------------------------------------------


def check_queue_order(order: object, weights: Mapping[str, int] | None, queues: Sequence[str]) -> str:
    """Validate a worker's ``queue_order`` and ``weights``; return the order used."""
    if weights:
        for name, weight in weights.items():
            validate_queue_name(name)
            if name not in queues:
                raise ConfigurationError(f"weight given for queue {name!r}, which the worker does not serve")
            _check_count(f"weight of queue {name!r}", weight)
        if order is None:
            order = "weighted"
    if order is None:
        order = "round-robin"
    if order not in QUEUE_ORDERS:
        raise ConfigurationError(f"queue_order must be one of {', '.join(QUEUE_ORDERS)}, got {order!r}")
    return str(order)


def check_queue_limits(
    limits: Mapping[str, RateLimit] | None, queues: Sequence[str]
) -> dict[str, tuple[str, int, float]]:
    """Validate a worker's ``queue_rate_limits``; ``(key, count, per)`` by queue.

    A queue's limit is counted under the key ``queue:<name>``, shared by every
    worker that serves the queue with the same limit (give them all the same).
    """
    checked: dict[str, tuple[str, int, float]] = {}
    for name, limit in (limits or {}).items():
        validate_queue_name(name)
        if name not in queues:
            raise ConfigurationError(f"rate limit given for queue {name!r}, which the worker does not serve")
        if not isinstance(limit, RateLimit) or limit.key is not None:
            raise ConfigurationError(
                f"the rate limit of queue {name!r} must be a RateLimit(count, per), no key: got {limit!r}"
            )
        checked[name] = (f"queue:{name}", limit.count, limit.per)
    return checked


def parse_rate(text: str) -> tuple[str, RateLimit]:
    """``QUEUE=COUNT/SECONDS`` (``jobs worker --rate-limit``) as ``(queue, RateLimit)``."""
    name, _, rest = text.partition("=")
    count, _, per = rest.partition("/")
    try:
        return name, RateLimit(int(count), float(per or 1))
    except ValueError:
        raise ConfigurationError(f"--rate-limit takes QUEUE=COUNT/SECONDS, got {text!r}") from None


class FlowGate:
    """What a worker asks of flow control around each reserve.

    :meth:`queues` gives the queues to reserve from, in the order of this
    reserve (paused ones left out); :meth:`admit` sorts what was reserved
    into the deliveries to start, those to give back for later (rate or
    concurrency limit reached, queue paused meanwhile) and the expired.
    """

    def __init__(
        self,
        driver: Driver,
        queues: Sequence[str],
        order: str = "round-robin",
        weights: Mapping[str, int] | None = None,
        *,
        lease: float = 30.0,
        queue_limits: Mapping[str, RateLimit] | None = None,
    ) -> None:
        self.driver = driver
        #: Rate limits of whole queues: ``(key, count, per)`` by queue name.
        self.queue_limits = check_queue_limits(queue_limits, queues)
        self.all_queues = list(queues)
        self.order = order
        self.weights = {q: int((weights or {}).get(q, 1)) for q in queues}
        self.lease = lease
        self._turn = itertools.count()
        self._current = dict.fromkeys(queues, 0)
        self._paused: frozenset[str] = frozenset()
        self._paused_read = 0.0 if driver.supports(Capability.QUEUE_PAUSE) else math.inf
        self._slots: dict[str, str] = {}  # receipt -> concurrency key
        #: receipt -> (latest start, monotonic; the rate limit) of the rate grants not started yet.
        self._granted: dict[str, tuple[float, tuple[str, int, float]]] = {}
        self._granted_lock = threading.Lock()
        #: When a rate limit last refused a reserved job (monotonic): while limits bind, the
        #: worker reserves no more than it can start at once, so that granted starts are on time.
        self.limited_seen = -math.inf
        self._slots_lock = threading.Lock()
        self._slots_extended = time.monotonic()
        #: The slots ``(key, holder)`` of the jobs that ended, freed together by :meth:`free_ended`.
        self._ended: list[tuple[str, str]] = []

    # -- pauses ---------------------------------------------------------------

    @property
    def paused(self) -> frozenset[str]:
        """The paused queues among those served, as last read."""
        return self._paused

    def refresh(self, force: bool = False) -> bool:
        """Read the paused queues if the last read is older than :data:`PAUSE_REFRESH`; whether it changed."""
        now = time.monotonic()
        if not force and now - self._paused_read < PAUSE_REFRESH:
            return False
        self._paused_read = now
        try:
            paused = frozenset(self.driver.paused_queues()) & frozenset(self.all_queues)
        except UnsupportedOperation:
            self._paused_read = math.inf
            return False
        except JobsError as exc:
            log.warning("could not read the paused queues (keeping the last known): %s", exc)
            return False
        changed = paused != self._paused
        if changed:
            log.info("paused queues now: %s", ", ".join(sorted(paused)) or "none")
        self._paused = paused
        return changed

    # -- queue order ----------------------------------------------------------

    def queues(self) -> list[str]:
        """The queues for the next reserve, first the one whose turn it is."""
        if self._paused_read == 0.0:
            self.refresh(force=True)
        active = [q for q in self.all_queues if q not in self._paused]
        if len(active) < 2 or self.order == "strict":
            return active
        if self.order == "round-robin":
            start = next(self._turn) % len(active)
            return active[start:] + active[:start]
        # Smooth weighted round-robin: each queue gains its weight, the richest goes first
        # and pays the total; over N turns queue q goes first weight(q)/sum(weights) of them.
        total = 0
        for name in active:
            self._current[name] += self.weights[name]
            total += self.weights[name]
        first = max(active, key=lambda q: self._current[q])
        self._current[first] -= total
        rest = sorted((q for q in active if q != first), key=lambda q: -self.weights[q])
        return [first, *rest]

    # -- admission ------------------------------------------------------------

    def admit(
        self, deliveries: Sequence[Delivery]
    ) -> tuple[list[Delivery], list[tuple[Delivery, float]], list[Delivery]]:
        """Sort ``deliveries``: ``(start, give back after a delay, expired)``.

        Rate-limited deliveries take starts from their window in one call per
        key; those refused are given back due when the window has room again,
        spread over the period so they do not all come back at once.
        Deliveries with a concurrency limit take a slot each (held under the
        worker's lease until :meth:`finished`).
        """
        start: list[Delivery] = []
        later: list[tuple[Delivery, float]] = []
        expired: list[Delivery] = []
        now = time.time()
        limited: dict[tuple[str, int, float], list[Delivery]] = {}
        paused = self._paused
        for delivery in deliveries:
            message = delivery.message
            if paused and message.queue in paused:
                later.append((delivery, 0.0))
                continue
            if not message.headers and not self.queue_limits:
                start.append(delivery)
                continue
            expiry = expires_at(message)
            if expiry is not None and expiry <= now:
                expired.append(delivery)
                continue
            rate = rate_of(message) if message.headers else None
            if rate is None and self.queue_limits:
                rate = self.queue_limits.get(message.queue)
            if rate is not None and self.driver.supports(Capability.RATE_LIMITS):
                limited.setdefault(rate, []).append(delivery)
                continue
            start.append(delivery)
        first: list[Delivery] = []
        for rate, group in limited.items():
            key, count, per = rate
            granted, wait, at = self.driver.take_tokens(key, count, per + RATE_START_SLACK, len(group))
            # The deadline counts from the grants' stamp, not from the end of the call.
            deadline = time.monotonic() + RATE_START_SLACK - max(0.0, time.time() - at)
            with self._granted_lock:
                for delivery in group[:granted]:
                    self._granted[delivery.receipt] = (deadline, rate)
            first.extend(group[:granted])
            if granted < len(group):
                self.limited_seen = time.monotonic()  # the limit binds: reserve small batches
            step = per / count
            for index, delivery in enumerate(group[granted:]):
                later.append((delivery, wait + index * step))
        start = first + start  # granted starts first: they have a deadline
        if self.driver.supports(Capability.CONCURRENCY_LIMITS):
            start = self._take_slots(start, later)
        return start, later, expired

    def may_start(self, delivery: Delivery) -> float | None:
        """``None`` if ``delivery`` may start now, else the seconds it must wait.

        A rate grant past its deadline (the worker held it in its prefetch
        buffer, or a loaded machine was slow to start it) is spent: the job
        takes a fresh start then, in one call with the other jobs of its limit
        still waiting in this worker (they get fresh deadlines), or waits.
        """
        if not self._granted:
            return None
        with self._granted_lock:
            entry = self._granted.pop(delivery.receipt, None)
            if entry is None or time.monotonic() <= entry[0]:
                return None
            rate = entry[1]
            waiting = [receipt for receipt, (_, other) in self._granted.items() if other == rate]
        key, count, per = rate
        granted, wait, at = self.driver.take_tokens(key, count, per + RATE_START_SLACK, 1 + len(waiting))
        if not granted:
            return wait
        deadline = time.monotonic() + RATE_START_SLACK - max(0.0, time.time() - at)
        with self._granted_lock:
            for receipt in waiting[: granted - 1]:
                if receipt in self._granted:
                    self._granted[receipt] = (deadline, rate)
        return None

    def _take_slots(self, start: list[Delivery], later: list[tuple[Delivery, float]]) -> list[Delivery]:
        """The deliveries of ``start`` that may start: slots taken in one call per key and limit."""
        groups: dict[tuple[str, int], list[Delivery]] = {}
        for delivery in start:
            limit = concurrency_of(delivery.message) if delivery.message.headers else None
            if limit is not None:
                groups.setdefault(limit, []).append(delivery)
        if not groups:
            return start
        refused: set[str] = set()
        for (key, count), group in groups.items():
            granted = self.driver.acquire_slots(key, count, [d.receipt for d in group], self.lease)
            with self._slots_lock:
                for delivery in group[:granted]:
                    self._slots[delivery.receipt] = key
            for delivery in group[granted:]:
                refused.add(delivery.receipt)
                later.append((delivery, SLOT_RETRY))
        return [d for d in start if d.receipt not in refused]

    def finished(self, delivery: Delivery, at_once: bool = False) -> None:
        """Let go of the concurrency slot ``delivery`` holds, if any (the job ran, or was given back).

        The slot is freed with the next :meth:`free_ended`, which the worker
        calls with each acknowledgement of its finished jobs (within its
        ``ack_interval``), so that ending a job costs no round trip of its
        own; ``at_once`` frees it now (a job given back unrun, or failed for
        good, off the hot path).
        """
        if self._granted:
            with self._granted_lock:
                self._granted.pop(delivery.receipt, None)
        if not self._slots:
            return
        with self._slots_lock:
            key = self._slots.pop(delivery.receipt, None)
            if key is not None and not at_once:
                self._ended.append((key, delivery.receipt))
                return
        if key is None:
            return
        try:
            self.driver.release_slot(key, delivery.receipt)
        except JobsError as exc:
            log.warning("could not free the %r slot of job %s (its lease will): %s", key, delivery.id, exc)

    @property
    def slots_ended(self) -> bool:
        """Whether slots of ended jobs wait for :meth:`free_ended`."""
        return bool(self._ended)

    def take_ended(self) -> list[tuple[str, str]]:
        """The slots of the jobs that ended since the last call, for the worker to free
        with its next acknowledgement (:meth:`~jobs_core.driver.Driver.ack_freeing_slots`).
        """
        if not self._ended:
            return []
        with self._slots_lock:
            ended, self._ended = self._ended, []
        return ended

    def put_back_ended(self, ended: Sequence[tuple[str, str]]) -> None:
        """Keep ``ended`` for the next call (an acknowledgement that failed)."""
        with self._slots_lock:
            self._ended[:0] = ended

    def free_ended(self) -> None:
        """Free the slots of the jobs that ended since the last call, in one driver call."""
        ended = self.take_ended()
        if not ended:
            return
        try:
            self.driver.release_slots(ended)
        except JobsError as exc:
            log.warning("could not free %d concurrency slots (their leases will): %s", len(ended), exc)

    def extend_slots(self) -> None:
        """Renew the leases of the slots held, every third of a lease (heartbeat tick)."""
        if not self._slots or time.monotonic() - self._slots_extended < self.lease / 3:
            return
        self._slots_extended = time.monotonic()
        with self._slots_lock:
            held = list(self._slots.items())
        for receipt, key in held:
            try:
                self.driver.extend_slot(key, receipt, self.lease)
            except JobsError as exc:
                log.warning("could not renew a %r slot: %s", key, exc)
