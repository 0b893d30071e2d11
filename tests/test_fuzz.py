"""Property-based fuzzing of dispatch and a real worker, on every first-party backend.

Random payloads (every JSON type, integers of any size, floats with NaN and
infinities, strings with lone surrogates and control characters, nesting
around the documented limit, values JSON cannot hold) and random options
(priorities, delays, retries, timeouts, retry delays, backoffs, unique keys:
valid values, wrong types, NaN, infinities, numbers beyond the limits) go
through ``dispatch`` to a worker running in a thread. Each case is either
refused at dispatch with a :mod:`jobs_core.errors` error, or run with exactly
the payload sent (same types, same values). Random unreadable records written
straight to the backend end in the failed store while the jobs behind them
run. The worker never exits.

Backends: memory, SQLite, PostgreSQL, MariaDB, and the Kafka test broker (or
the cluster named by ``JOBS_KAFKA_BOOTSTRAP``). ``JOBS_FUZZ_EXAMPLES`` sets
the examples per backend (default 100). Runs are derandomized, so CI sees the
same cases every time; raise the count to explore more.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from jobs_core import Job, JobsApp, serializer
from jobs_core.errors import JobsError
from jobs_core.limits import MAX_NESTING
from jobs_core.message import Message
from jobs_core.worker import Worker

EXAMPLES = int(os.environ.get("JOBS_FUZZ_EXAMPLES") or 100)
QUEUE = "fuzz"
#: Longest wait for a dispatched job to run (a broker may take a moment).
RUN_TIMEOUT = 20.0

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)


# -- what reaches the job -------------------------------------------------------

RECEIVED: queue.Queue[Any] = queue.Queue()


class FuzzJob(Job):
    """Records the payload it receives; ``async def`` so that a timeout needs no child process."""

    job_name = "fuzz.record"
    queue = QUEUE
    retry_delay = 0.0

    async def handle(self, payload: Any) -> None:
        RECEIVED.put(payload)


def same(sent: Any, got: Any) -> bool:
    """Equal and of the same types all the way down (``1 != 1.0 != True`` here; -0.0 keeps its sign)."""
    if type(sent) is not type(got):
        return False
    if type(sent) is dict:
        return sent.keys() == got.keys() and all(same(sent[k], got[k]) for k in sent)
    if type(sent) is list:
        return len(sent) == len(got) and all(same(a, b) for a, b in zip(sent, got, strict=True))
    if type(sent) is float:
        return sent == got and math.copysign(1.0, sent) == math.copysign(1.0, got)
    return bool(sent == got)


# -- strategies ---------------------------------------------------------------------

EDGE_INTEGERS = [
    0,
    -1,
    2**31 - 1,
    -(2**31),
    2**53 + 1,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,  # read as a float by orjson unless handled
    2**64 - 1,
    2**64,
    -(2**64),
    10**30,
    -(10**30),
    2**4000 - 1,  # the largest integer allowed
    2**4000,  # refused: beyond the limit
]
EDGE_FLOATS = [
    0.0,
    -0.0,
    1.5,
    1e-310,
    5e-324,
    1e308,
    -1e308,
    2.0**53,
    float("nan"),
    float("inf"),
    float("-inf"),
]
EDGE_TEXTS = [
    "",
    "\x00",
    "\u2028\u2029",
    "é",
    "😀",
    '"\\',
    "\ud800",
    "a\udfffb",
    "x" * 3000,
    "0" * 25,
    "-" + "9" * 19,
]

integers = st.one_of(st.integers(), st.integers(-(2**70), 2**70), st.sampled_from(EDGE_INTEGERS))
floats = st.one_of(st.floats(), st.sampled_from(EDGE_FLOATS))
texts = st.one_of(st.text(max_size=30), st.sampled_from(EDGE_TEXTS))
scalars = st.one_of(st.none(), st.booleans(), integers, floats, texts)
not_json = st.one_of(
    st.tuples(st.integers()),
    st.frozensets(st.integers(), max_size=2),
    st.binary(max_size=4),
    st.just(object()),
    st.complex_numbers(allow_nan=False, allow_infinity=False),
)
keys = st.one_of(texts, st.integers(), st.none())


def _json_like(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4))


def nested(depth: int, leaf: Any) -> Any:
    """``leaf`` inside ``depth`` containers, lists and objects in turn."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


deep = st.builds(nested, st.integers(MAX_NESTING - 3, MAX_NESTING + 3), scalars)
#: JSON data within the limits: must always arrive exactly.
valid_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(EDGE_INTEGERS[:-1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
valid_payloads = st.recursive(
    valid_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
payloads = st.one_of(
    valid_payloads,
    st.recursive(st.one_of(scalars, not_json), _json_like, max_leaves=12),
    deep,
)

#: Options: valid values mixed with wrong types, NaN, infinities and numbers beyond the limits.
seconds_values = st.sampled_from(
    [0, 0.0, 1, 2.5, 60, -1, -0.5, float("nan"), float("inf"), 10**400, 1e12, True, "5", None]
)
options = st.fixed_dictionaries(
    {},
    optional={
        "priority": st.one_of(
            st.integers(-(2**31), 2**31 - 1), st.sampled_from([2**31, -(2**31) - 1, 2**40, True, "high", 1.5])
        ),
        "retries": st.sampled_from([0, 1, 3, -1, 2**31, 2**40, True, "3", 2.0]),
        "retry_after": seconds_values,
        "backoff": st.sampled_from(["fixed", "exponential", "linear", "", 1]),
        "timeout": seconds_values,
        "delay": st.sampled_from([None, 0, 0.0, -1, float("nan"), float("inf"), 10**400, 1e12, True, "1"]),
        "unique": st.sampled_from([None, 60, -1, float("nan"), float("inf"), 10**400]),
    },
)

#: Records written straight to the backend: bytes, and envelopes with odd field values.
odd_values = st.one_of(
    scalars,
    st.sampled_from([1e300, -1e300, 10**400, -(10**400), [], {}, "NaN", [1, 2], {"x": None}]),
)
envelope_fields = st.sampled_from(
    [
        "attempts",
        "max_retries",
        "priority",
        "timeout",
        "available_at",
        "created_at",
        "unique_ttl",
        "retry",
        "headers",
    ]
)
#: The start of a raw envelope naming a job no worker registers.
HEAD = b'{"id":"x","name":"fuzz.unregistered","queue":"fuzz",'


@st.composite
def raw_records(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "envelope", "deep", "huge-number"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "deep":
        depth = draw(st.integers(900, 3000))
        return (
            b'{"id":"x","name":"fuzz.unregistered","queue":"fuzz","payload":'
            + b"[" * depth
            + b"]" * depth
            + b"}"
        )
    if kind == "huge-number":
        field = draw(envelope_fields)
        digits = draw(st.integers(310, 5000))
        return HEAD + f'"{field}":{"9" * digits}}}'.encode()
    envelope: dict[str, Any] = {"id": uuid.uuid4().hex, "name": "fuzz.unregistered", "queue": QUEUE}
    for field in draw(st.lists(envelope_fields, max_size=4, unique=True)):
        envelope[field] = draw(odd_values)
    if draw(st.booleans()):
        envelope["retry"] = {"delay": draw(odd_values), "backoff": draw(st.sampled_from(["fixed", "linear"]))}
    return json.dumps(envelope, allow_nan=True).encode()


# -- backends -----------------------------------------------------------------------


@dataclass
class Backend:
    """An app and a worker thread serving the fuzz queue."""

    app: JobsApp
    worker: Worker
    thread: threading.Thread
    errors: list[BaseException]


def _kafka_url() -> Iterator[str]:
    from jobs_kafka.testing.broker import ENV_BOOTSTRAP, FAST_TEST_SETTINGS, TansuBroker

    fast = "&".join(f"{k}={v}" for k, v in FAST_TEST_SETTINGS.items())
    prefix = f"fz{uuid.uuid4().hex[:8]}-"
    named = os.environ.get(ENV_BOOTSTRAP)
    if named:
        yield f"kafka://{named}?partitions=1&timeout=10&topic_prefix={prefix}"
        return
    with TansuBroker.start() as broker:
        yield f"kafka://{broker.bootstrap}?partitions=1&timeout=10&topic_prefix={prefix}&{fast}"


def _urls(name: str, tmp: str) -> Iterator[str]:
    prefix = f"fz{uuid.uuid4().hex[:8]}_"
    if name == "memory":
        yield "memory://"
    elif name == "sqlite":
        yield f"sqlite:///{tmp}/fuzz.db"
    elif name == "postgresql":
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/test?table_prefix={prefix}"
    elif name == "mariadb":
        yield f"mysql+pymysql://root@127.0.0.1:3306/test?table_prefix={prefix}"
    else:
        yield from _kafka_url()


def _drop_tables(app: JobsApp) -> None:
    tables, engine = getattr(app.driver, "tables", None), getattr(app.driver, "engine", None)
    if tables is not None and engine is not None and engine.dialect.name != "sqlite":
        from jobs_database.schema import drop_all

        drop_all(engine, tables)


@pytest.fixture(scope="module", params=["memory", "sqlite", "postgresql", "mariadb", "kafka"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    if request.param == "kafka":
        pytest.importorskip("jobs_kafka")
    tmp = str(tmp_path_factory.mktemp(request.param))
    for url in _urls(request.param, tmp):
        app = JobsApp(url)
        app.register(FuzzJob)
        worker = app.worker(QUEUE, install_signal_handlers=False, poll_interval=0.2, grace=5)
        errors: list[BaseException] = []

        def run(worker: Worker = worker, errors: list[BaseException] = errors) -> None:
            try:
                worker.run()
            except BaseException as exc:
                errors.append(exc)
                raise

        thread = threading.Thread(target=run, name=f"fuzz-worker-{request.param}", daemon=True)
        thread.start()
        try:
            yield Backend(app, worker, thread, errors)
        finally:
            worker.stop(force=True)
            thread.join(30)
            _drop_tables(app)
            app.close()


def _drain_received() -> None:
    while True:
        try:
            RECEIVED.get_nowait()
        except queue.Empty:
            return


def _configured(job: Job, chosen: dict[str, Any]) -> tuple[Job, Any]:
    """Apply the drawn options through the fluent calls; return the job and the dispatch delay."""
    if "priority" in chosen:
        job = job.priority(chosen["priority"])
    if "retries" in chosen:
        job = job.retries(chosen["retries"])
    if "retry_after" in chosen or "backoff" in chosen:
        job = job.retry_after(chosen.get("retry_after", 1.0), chosen.get("backoff"))
    if "timeout" in chosen:
        job = job.timeout(chosen["timeout"])
    if "unique" in chosen:
        job = job.unique(f"fuzz-{uuid.uuid4().hex}", chosen["unique"])
    return job, chosen.get("delay")


def _assert_alive(backend: Backend) -> None:
    assert not backend.errors, f"the worker exited: {backend.errors[0]!r}"
    assert backend.thread.is_alive(), "the worker thread stopped"


def _expect_run(backend: Backend, sent: Any, what: str) -> None:
    try:
        got = RECEIVED.get(timeout=RUN_TIMEOUT)
    except queue.Empty:
        _assert_alive(backend)
        raise AssertionError(f"{what} was accepted at dispatch but never ran") from None
    assert same(sent, got), f"{what}: sent {sent!r:.300}, the job got {got!r:.300}"


#: Every edge value that must arrive exactly, in one payload (always run, before the drawn cases).
EXACT_EDGES = {
    "ints": [n for n in EDGE_INTEGERS if n != 2**4000],
    "floats": [f for f in EDGE_FLOATS if math.isfinite(f)],
    "texts": [t for t in EDGE_TEXTS if "\ud800" not in t and "\udfff" not in t],
    "deepest": nested(MAX_NESTING - 1, -(2**63) - 1),
}


@FUZZ_SETTINGS
@given(payload=payloads, chosen=st.one_of(st.just({}), options))
@example(payload=EXACT_EDGES, chosen={})
@example(payload=EXACT_EDGES, chosen={"priority": 2**31 - 1, "retries": 0, "timeout": 60, "delay": 0})
@example(payload=-(2**63) - 1, chosen={})
@example(payload=nested(MAX_NESTING + 1, 1), chosen={})
@example(payload=2**4000, chosen={})
@example(payload=1, chosen={"priority": "high"})
@example(payload=1, chosen={"delay": 10**400})
@example(payload=1, chosen={"retry_after": float("nan")})
def test_dispatch_refuses_or_the_job_gets_exactly_the_payload(
    backend: Backend, payload: Any, chosen: dict[str, Any]
) -> None:
    _drain_received()
    _assert_alive(backend)
    try:
        job, delay = _configured(FuzzJob(), chosen)
        backend.app.dispatch(job, payload, delay=delay)
    except JobsError as exc:
        event(f"refused at dispatch: {type(exc).__name__}")
        return  # refused at dispatch, with an error of jobs_core.errors
    event("ran with exactly the payload sent")
    _expect_run(backend, payload, f"payload with options {chosen}")
    _assert_alive(backend)


@FUZZ_SETTINGS
@given(records=st.lists(raw_records(), min_size=1, max_size=3), marker=st.integers(0, 10**6))
def test_unreadable_records_never_stop_the_worker(
    backend: Backend, records: list[bytes], marker: int
) -> None:
    _drain_received()
    _assert_alive(backend)
    for body in records:
        backend.app.driver.inject_raw(QUEUE, body)
    backend.app.dispatch(FuzzJob, {"behind": marker})
    _expect_run(backend, {"behind": marker}, "the job behind unreadable records")
    _assert_alive(backend)


def test_the_worker_outlived_every_case(backend: Backend) -> None:
    """Runs after the fuzz tests of its backend: the worker is still serving the queue."""
    _assert_alive(backend)
    backend.app.dispatch(FuzzJob, "still here")
    _expect_run(backend, "still here", "a job after the fuzzing")
    failed: Callable[[], int] = lambda: len(backend.app.failed_jobs(limit=1000, queue=QUEUE))  # noqa: E731
    deadline = time.monotonic() + RUN_TIMEOUT
    while failed() == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert failed() > 0, "no unreadable record reached the failed store"


@contextlib.contextmanager
def json_library(name: str) -> Iterator[None]:
    """Encode and decode with ``name`` (``"orjson"`` or ``"json"``) inside the block."""
    if name == "orjson":
        pytest.importorskip("orjson")
        yield
        return
    saved = serializer._orjson, serializer.FAST_DUMPS
    serializer._orjson, serializer.FAST_DUMPS = None, None
    try:
        yield
    finally:
        serializer._orjson, serializer.FAST_DUMPS = saved


@pytest.mark.parametrize("library", ["orjson", "json"])
@settings(max_examples=500, deadline=None, derandomize=True)
@given(payload=payloads, count=st.sampled_from([1, 3]))
@example(payload=EXACT_EDGES, count=1)
@example(payload=EXACT_EDGES, count=3)
def test_either_json_library_round_trips_every_accepted_payload_exactly(
    library: str, payload: Any, count: int
) -> None:
    """What one dispatch (or a bulk dispatch of ``count``) accepts decodes to exactly the same value."""
    with json_library(library):
        try:
            sent = FuzzJob().to_messages([payload] * count)
        except JobsError:
            return
        for message in sent:
            got = Message.decode(message.encode()).payload
            assert same(payload, got), f"{library}: sent {payload!r:.300}, decoded {got!r:.300}"
