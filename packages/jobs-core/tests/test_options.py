"""Every job option is checked where it is written, on every path, against jobs_core.limits."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from jobs_core import Job, JobsApp, Retry, job
from jobs_core.errors import ConfigurationError, InvalidName
from jobs_core.limits import MAX_PRIORITY, MAX_RETRIES, MAX_SECONDS, MIN_PRIORITY
from jobs_core.message import validate_queue_name
from jobs_core.scheduler import validate_schedule_name

NAN = float("nan")
INF = float("inf")


class Plain(Job):
    def handle(self, payload: Any) -> Any:
        return payload


@pytest.fixture
def app() -> Iterator[JobsApp]:
    with JobsApp("memory://") as app:
        yield app


# Each bad value, with the words its error must contain: the option and what it allows.
BAD_SECONDS = [NAN, INF, -INF, -1, -0.5, 10**400, MAX_SECONDS + 1, True, "10", None]
BAD_PRIORITY = ["high", True, 1.5, NAN, MAX_PRIORITY + 1, MIN_PRIORITY - 1, 2**63, None]
BAD_RETRIES = [-1, True, 1.0, "3", MAX_RETRIES + 1, None]
BAD_TIMEOUT = [0, 0.0, -1, NAN, INF, True, 10**400, MAX_SECONDS * 2, "60"]


@pytest.mark.parametrize("value", BAD_PRIORITY)
def test_a_bad_priority_is_refused_on_every_path(value: object) -> None:
    allowed = f"from {MIN_PRIORITY} to {MAX_PRIORITY}"
    with pytest.raises(ConfigurationError, match=rf"@job\(priority=\.\.\.\) must be an int {allowed}"):
        job(priority=value)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match=rf"Bad\.default_priority must be an int {allowed}"):

        class Bad(Plain):
            default_priority = value  # type: ignore[assignment]

    with pytest.raises(ConfigurationError, match=rf"priority\(\) must be an int {allowed}"):
        Plain().priority(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", BAD_RETRIES)
def test_a_bad_retry_count_is_refused_on_every_path(value: object) -> None:
    allowed = f"must be an int from 0 to {MAX_RETRIES}"
    with pytest.raises(ConfigurationError, match=rf"@job\(max_retries=\.\.\.\) {allowed}"):
        job(max_retries=value)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match=rf"Bad\.max_retries {allowed}"):

        class Bad(Plain):
            max_retries = value  # type: ignore[assignment]

    with pytest.raises(ConfigurationError, match=rf"retries\(\) {allowed}"):
        Plain().retries(value)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=rf"retries\(\) {allowed}"):
        Plain().set_max_retries(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [v for v in BAD_SECONDS if v is not None])
def test_a_bad_duration_is_refused_on_every_path(value: object) -> None:
    allowed = f"must be a number of seconds from 0 to {MAX_SECONDS:.0f}"
    for option in ("retry_delay", "max_retry_delay"):
        with pytest.raises(ConfigurationError, match=rf"@job\({option}=\.\.\.\) {allowed}"):
            job(**{option: value})
    with pytest.raises(ConfigurationError, match=rf"Bad\.retry_delay {allowed}"):

        class Bad(Plain):
            retry_delay = value  # type: ignore[assignment]

    with pytest.raises(ConfigurationError, match=rf"Worse\.max_retry_delay {allowed}"):

        class Worse(Plain):
            max_retry_delay = value  # type: ignore[assignment]

    with pytest.raises(ConfigurationError, match=rf"retry_after\(\) seconds {allowed}"):
        Plain().retry_after(value)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=rf"retry_after\(\) seconds {allowed}"):
        Plain().set_retry_delay(value)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=rf"delay\(\) {allowed}"):
        Plain().delay(value)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=rf"delay {allowed}"):
        Plain().to_message(None, delay=value)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=rf"unique\(\) ttl {allowed}"):
        Plain().unique("key", ttl=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", BAD_TIMEOUT)
def test_a_bad_timeout_is_refused_on_every_path(value: object) -> None:
    allowed = "must be None \\(no limit\\) or a number of seconds above 0"
    with pytest.raises(ConfigurationError, match=rf"@job\(timeout=\.\.\.\) {allowed}"):
        job(timeout=value)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match=rf"Bad\.time_limit {allowed}"):

        class Bad(Plain):
            time_limit = value  # type: ignore[assignment]

    with pytest.raises(ConfigurationError, match=rf"timeout\(\) {allowed}"):
        Plain().timeout(value)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=rf"timeout\(\) {allowed}"):
        Plain().set_timeout(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["linear", "Fixed", None, 1, ""])
def test_a_bad_backoff_is_refused_on_every_path(value: object) -> None:
    allowed = "must be 'fixed' or 'exponential'"
    with pytest.raises(ConfigurationError, match=rf"@job\(backoff=\.\.\.\) {allowed}"):
        job(backoff=value)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match=rf"Bad\.backoff {allowed}"):

        class Bad(Plain):
            backoff = value  # type: ignore[assignment]

    if value is not None:  # retry_after(seconds, None) keeps the backoff
        with pytest.raises(ConfigurationError, match=rf"retry_after\(\) backoff {allowed}"):
            Plain().retry_after(1, backoff=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [1, 0, "yes", None])
def test_jitter_must_be_a_bool(value: object) -> None:
    with pytest.raises(ConfigurationError, match=r"@job\(jitter=\.\.\.\) must be True or False"):
        job(jitter=value)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match=r"Bad\.jitter must be True or False"):

        class Bad(Plain):
            jitter = value  # type: ignore[assignment]


@pytest.mark.parametrize("key", ["", 5, None, "k" * 256])
def test_a_unique_key_is_a_string_of_1_to_255_characters(key: object) -> None:
    with pytest.raises(ConfigurationError, match=r"unique\(\) key must be a string of 1 to 255 characters"):
        Plain().unique(key)  # type: ignore[arg-type]
    assert Plain().unique("k" * 255).to_message().unique_key == "k" * 255


@pytest.mark.parametrize("name", ["", "a\nb", "tab\there", "x" * 256, 7])
def test_a_job_name_is_1_to_255_printable_characters(name: object) -> None:
    allowed = "must be a string of 1 to 255 printable characters"
    with pytest.raises(ConfigurationError, match=rf"@job\(name=\.\.\.\) {allowed}"):
        job(name=name)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match=rf"Bad\.job_name {allowed}"):

        class Bad(Plain):
            job_name = name  # type: ignore[assignment]


def test_a_refused_fluent_value_leaves_the_job_unchanged() -> None:
    instance = Plain().retry_after(5, backoff="fixed")
    with pytest.raises(ConfigurationError):
        instance.retry_after(10, backoff="linear")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        instance.unique("key", ttl=NAN)
    message = instance.to_message()
    assert (message.retry.delay, message.retry.backoff, message.unique_key) == (5.0, "fixed", None)


def test_the_limits_themselves_are_accepted_and_stored_exactly() -> None:
    @job(priority=MAX_PRIORITY, max_retries=MAX_RETRIES, retry_delay=0, max_retry_delay=MAX_SECONDS)
    def edge(payload: Any) -> None:
        return None

    message = edge.new().to_message(None, now=1000.0)
    assert (message.priority, message.max_retries) == (MAX_PRIORITY, MAX_RETRIES)
    assert (message.retry.delay, message.retry.max_delay) == (0.0, MAX_SECONDS)
    low = edge.priority(MIN_PRIORITY).timeout(MAX_SECONDS).delay(MAX_SECONDS).to_message(None, now=1000.0)
    assert (low.priority, low.timeout, low.available_at) == (MIN_PRIORITY, MAX_SECONDS, 1000.0 + MAX_SECONDS)
    assert edge.timeout(1e-6).to_message().timeout == 1e-6


def test_a_class_attribute_changed_after_definition_is_refused_at_dispatch(app: JobsApp) -> None:
    class Mutable(Plain):
        default_priority = 1

    Mutable.default_priority = "high"  # type: ignore[assignment]
    with pytest.raises(ConfigurationError, match=r"Mutable\.default_priority must be an int"):
        app.dispatch(Mutable)
    with pytest.raises(ConfigurationError, match=r"Mutable\.default_priority must be an int"):
        app.dispatch_many(Mutable, range(3))
    Mutable.default_priority = 3
    Mutable.time_limit = 0  # type: ignore[assignment]
    with pytest.raises(ConfigurationError, match=r"Mutable\.time_limit must be None"):
        app.dispatch(Mutable)
    assert app.stats()["pending"] == 0


@pytest.mark.parametrize(
    ("kwargs", "pattern", "error"),
    [
        ({"delay": NAN}, r"delay must be a number of seconds", ConfigurationError),
        ({"delay": 10**400}, r"delay must be a number of seconds", ConfigurationError),
        ({"delay": -1}, r"delay must be a number of seconds", ConfigurationError),
        ({"queue": "emails\n"}, r"queue: invalid queue name 'emails\\n'", InvalidName),
        ({"queue": ""}, r"queue: invalid queue name", InvalidName),
    ],
)
def test_dispatch_overrides_are_checked_and_nothing_is_stored(
    app: JobsApp, kwargs: dict[str, Any], pattern: str, error: type[Exception]
) -> None:
    with pytest.raises(error, match=pattern):
        app.dispatch(Plain, None, **kwargs)
    with pytest.raises(error, match=pattern):
        app.dispatch_many(Plain, range(1000), **kwargs)
    assert app.stats()["pending"] == app.stats()["delayed"] == 0


@pytest.mark.parametrize("headers", [{"a": 1}, {1: "a"}, {"a": None}, ["a"]])
def test_headers_must_map_strings_to_strings(headers: Any) -> None:
    with pytest.raises(ConfigurationError, match="headers must"):
        Plain().to_message(None, headers=headers)
    assert dict(Plain().to_message(None, headers={"trace": "abc"}).headers) == {"trace": "abc"}


@pytest.mark.parametrize(
    ("check", "name"),
    [
        (validate_queue_name, "emails\n"),
        (validate_queue_name, "emails\r\n"),
        (validate_queue_name, "\nemails"),
        (validate_schedule_name, "nightly\n"),
    ],
)
def test_names_are_matched_whole_so_a_trailing_newline_is_refused(
    check: Callable[[object], str], name: str
) -> None:
    with pytest.raises(InvalidName, match=re.escape(repr(name))):
        check(name)
    assert check(name.strip()) == name.strip()


def test_a_queue_name_with_a_trailing_newline_is_refused_on_every_path() -> None:
    with pytest.raises(InvalidName, match=r"@job\(queue=\.\.\.\): invalid queue name"):
        job(queue="emails\n")
    with pytest.raises(InvalidName, match=r"Bad\.queue: invalid queue name"):

        class Bad(Plain):
            queue = "emails\n"

    with pytest.raises(InvalidName, match=r"on_queue\(\): invalid queue name"):
        Plain().on_queue("emails\n")


@pytest.mark.parametrize("delay", [NAN, INF, -INF, -1, True, 10**400, "5"])
def test_retry_refuses_a_delay_that_could_never_come_due(delay: object) -> None:
    with pytest.raises(
        ConfigurationError, match=r"Retry\(delay=\.\.\.\) must be None or a number of seconds"
    ):
        Retry(delay)  # type: ignore[arg-type]
    assert Retry(0).delay == 0 and Retry(2.5).delay == 2.5 and Retry(None).delay is None


def test_a_job_raising_retry_with_a_nan_delay_fails_its_attempt_with_that_reason(app: JobsApp) -> None:
    class AsksForNaN(Plain):
        max_retries = 1
        retry_delay = 0.0

        def handle(self, payload: Any) -> None:
            raise Retry(math.nan, "later")

    app.dispatch(AsksForNaN)
    assert app.work() == 2  # the first attempt is retried by the job's policy, the second fails for good
    [failed] = app.failed_jobs()
    assert failed.attempts == 2
    first_line = failed.error.splitlines()[0]
    assert "ConfigurationError: Retry(delay=...) must be None or a number of seconds" in first_line
    assert first_line.endswith("got nan")
