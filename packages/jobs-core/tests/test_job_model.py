"""The job model: class defaults, fluent overrides, the @job decorator, building messages."""

from __future__ import annotations

import copy

import pytest
from jobs_core import Job, job
from jobs_core.errors import ConfigurationError, InvalidName, PayloadNotJSON
from jobs_core.job import job_instance
from jobs_core.message import RetryPolicy


class SendEmail(Job):
    queue = "emails"
    max_retries = 5
    retry_delay = 10.0
    backoff = "fixed"
    time_limit = 30.0
    default_priority = 2

    def handle(self, payload: object) -> object:
        return payload


class Renamed(Job):
    job_name = "billing.charge"

    def handle(self, payload: object) -> None:
        return None


def test_the_default_name_is_module_and_qualname() -> None:
    assert SendEmail.job_name == f"{__name__}.SendEmail"
    assert Renamed.job_name == "billing.charge"


def test_class_defaults_become_the_message_fields() -> None:
    msg = SendEmail().to_message({"to": "a@example.com"}, now=1000.0)
    assert msg.name == SendEmail.job_name
    assert msg.queue == "emails"
    assert msg.max_retries == 5
    assert msg.retry == RetryPolicy(backoff="fixed", delay=10.0, max_delay=3600.0, jitter=True)
    assert msg.timeout == 30.0
    assert msg.priority == 2
    assert msg.available_at == msg.created_at == 1000.0
    assert msg.unique_key is None


def test_fluent_overrides_chain_and_apply_to_one_dispatch() -> None:
    configured = (
        SendEmail()
        .on_queue("urgent")
        .retries(7)
        .retry_after(60, backoff="exponential")
        .timeout(120)
        .delay(5)
        .priority(9)
        .unique("user-1", ttl=300)
    )
    msg = configured.to_message(None, now=1000.0)
    assert (msg.queue, msg.max_retries, msg.timeout, msg.priority) == ("urgent", 7, 120.0, 9)
    assert msg.retry.delay == 60.0 and msg.retry.backoff == "exponential"
    assert msg.available_at == 1005.0 and msg.created_at == 1000.0
    assert (msg.unique_key, msg.unique_ttl) == ("user-1", 300.0)
    fresh = SendEmail().to_message(None, now=1000.0)
    assert (fresh.queue, fresh.max_retries, fresh.priority) == ("emails", 5, 2)


def test_legacy_setters_return_the_job() -> None:
    instance = SendEmail()
    assert instance.set_max_retries(1).set_retry_delay(2).set_timeout(3) is instance
    msg = instance.to_message()
    assert (msg.max_retries, msg.retry.delay, msg.timeout) == (1, 2.0, 3.0)


def test_dispatch_arguments_override_the_job() -> None:
    msg = (
        SendEmail().on_queue("urgent").to_message(None, queue="other", delay=2, headers={"h": "v"}, now=10.0)
    )
    assert msg.queue == "other"
    assert msg.available_at == 12.0
    assert dict(msg.headers) == {"h": "v"}


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda j: j.retries(-1), ConfigurationError),
        (lambda j: j.retries(True), ConfigurationError),
        (lambda j: j.retry_after(-1), ConfigurationError),
        (lambda j: j.retry_after(1, backoff="linear"), ConfigurationError),
        (lambda j: j.timeout(0), ConfigurationError),
        (lambda j: j.delay("soon"), ConfigurationError),
        (lambda j: j.priority(1.5), ConfigurationError),
        (lambda j: j.unique(""), ConfigurationError),
        (lambda j: j.on_queue("bad name"), InvalidName),
    ],
)
def test_bad_overrides_raise_a_clear_error(call: object, error: type[Exception]) -> None:
    assert callable(call)
    with pytest.raises(error):
        call(SendEmail())


def test_a_non_json_payload_is_refused_at_dispatch_naming_the_path() -> None:
    with pytest.raises(PayloadNotJSON) as caught:
        SendEmail().to_message({"items": [1, {"when": object()}]})
    assert caught.value.path == "$.items[1].when"
    assert caught.value.type_name == "object"
    assert "$.items[1].when" in str(caught.value)


def test_an_attribute_shadowing_a_fluent_method_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="shadows the fluent method"):

        class Bad(Job):
            timeout = 30  # type: ignore[assignment]


def test_the_job_decorator_keeps_the_function_callable_and_builds_a_job() -> None:
    @job(name="reports.build", queue="reports", max_retries=1, priority=4)
    def build(payload: object) -> object:
        return ("built", payload)

    assert build(3) == ("built", 3)
    assert build.job_name == "reports.build"
    assert not build.is_async
    msg = build.on_queue("fast").to_message({"id": 1})
    assert (msg.name, msg.queue, msg.max_retries, msg.priority) == ("reports.build", "fast", 1, 4)
    assert build.new().handle(5) == ("built", 5)


def test_the_job_decorator_without_arguments_and_on_async_functions() -> None:
    @job
    def plain(payload: object) -> object:
        return payload

    @job(queue="io")
    async def fetch(payload: object) -> object:
        return payload

    assert plain.job_name.endswith("plain")
    assert fetch.is_async
    assert fetch.new().to_message().queue == "io"


def test_job_instance_copies_so_overrides_do_not_leak() -> None:
    original = SendEmail().on_queue("urgent")
    clone = job_instance(original)
    clone.on_queue("other")
    assert original.to_message().queue == "urgent"
    assert copy.copy(original).to_message().queue == "urgent"
    assert isinstance(job_instance(SendEmail), SendEmail)
    with pytest.raises(ConfigurationError):
        job_instance("not a job")  # type: ignore[arg-type]


def test_a_celery_style_delay_call_that_dispatches_nothing_warns() -> None:
    import gc
    import warnings

    from jobs_core import JobsApp
    from jobs_core.errors import JobNotDispatchedWarning

    @job(name="model.send_report", queue="reports")
    def send_report(payload: object) -> None:
        return None

    with pytest.warns(JobNotDispatchedWarning, match=r"send_report\.delay\(5\) configured a job that was"):
        send_report.delay(5)  # the Celery habit: queues nothing

    with JobsApp("memory://", load_plugins=False) as app, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        app.dispatch(send_report.delay(5), {"n": 1})
        template = send_report.delay(60)
        app.dispatch_many(template, [{"n": 2}, {"n": 3}])
        del template
        app.schedule_every(send_report.delay(1), 3600, {"n": 4}, name="hourly")
        gc.collect()
        assert app.stats("reports")["delayed"] == 3
    assert [w for w in caught if issubclass(w.category, JobNotDispatchedWarning)] == []
