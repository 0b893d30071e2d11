"""The app object and dispatch: configuration, job forms, bulk, errors."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import pytest
from jobs_core import Job, JobsApp, job
from jobs_core.drivers.memory import MemoryDriver
from jobs_core.errors import (
    ConfigurationError,
    DriverNotFound,
    InvalidURL,
    JobNotRegistered,
    PayloadNotJSON,
    UnsupportedOperation,
)
from jobs_core.message import Message


class Echo(Job):
    queue = "echo"
    max_retries = 7

    def handle(self, payload: Any) -> Any:
        return payload


@job(queue="fn", max_retries=2, name="tests.app.add")
def add(payload: Any) -> int:
    return int(payload["a"]) + int(payload["b"])


class CountingMemory(MemoryDriver):
    """The memory driver, counting enqueue calls (a real driver, not a mock)."""

    name = "counting"
    schemes = ("counting",)
    calls: ClassVar[list[int]] = []

    def __init__(self, url: str | None = None, **options: Any) -> None:
        super().__init__("memory://", **options)
        self.url = url

    def enqueue(self, messages: Sequence[Message]) -> list[str | None]:
        type(self).calls.append(len(messages))
        return super().enqueue(messages)


@pytest.fixture
def app() -> Iterator[JobsApp]:
    with JobsApp("memory://") as app:
        yield app


def test_dispatch_returns_the_id_and_the_message_carries_the_class_defaults(app: JobsApp) -> None:
    ident = app.dispatch(Echo, {"n": 1})
    assert isinstance(ident, str) and len(ident) == 32
    [delivery] = app.driver.reserve(["echo"], limit=5)
    assert delivery.id == ident
    assert delivery.message.name == Echo.job_name
    assert delivery.message.payload == {"n": 1}
    assert delivery.message.max_retries == 7


def test_fluent_overrides_are_the_dispatch_settings_and_explicit_arguments_win(app: JobsApp) -> None:
    app.dispatch(Echo().on_queue("urgent").retries(1).timeout(5).priority(3), "x")
    [delivery] = app.driver.reserve(["urgent"])
    message = delivery.message
    assert (message.max_retries, message.timeout, message.priority) == (1, 5.0, 3)
    app.dispatch(Echo().on_queue("urgent"), "y", queue="elsewhere", delay=60)
    assert app.stats("elsewhere")["delayed"] == 1
    assert app.stats("urgent")["pending"] == 0


def test_a_decorated_function_and_a_registered_name_can_be_dispatched(app: JobsApp) -> None:
    app.dispatch(add, {"a": 1, "b": 2})
    app.register(Echo)
    app.dispatch(Echo.job_name, "by name")
    assert app.stats("fn")["pending"] == 1
    assert app.stats("echo")["pending"] == 1
    with pytest.raises(JobNotRegistered, match=r"nope\.Missing"):
        app.dispatch("nope.Missing", {})


def test_a_payload_json_cannot_hold_is_refused_at_dispatch_and_nothing_is_stored(app: JobsApp) -> None:
    with pytest.raises(PayloadNotJSON, match=r"\$\.when.*set"):
        app.dispatch(Echo, {"when": {1, 2}})
    with pytest.raises(PayloadNotJSON):
        app.dispatch_many(Echo, [{"ok": 1}, {"bad": b"bytes"}])
    assert app.stats()["pending"] == 0


def test_dispatch_later_delays_the_job(app: JobsApp) -> None:
    app.dispatch_later(300, Echo, {"later": True})
    assert app.stats("echo") == {"pending": 0, "delayed": 1, "reserved": 0, "completed": 0, "failed": 0}
    assert app.work("echo") == 0


def test_dispatch_many_stores_thousands_of_jobs_in_one_driver_call() -> None:
    with JobsApp("memory://") as app:
        app.drivers.register_class(CountingMemory)
        app.configure("counting://host")
        CountingMemory.calls.clear()
        ids = app.dispatch_many(Echo, ({"n": n} for n in range(5000)))
        assert CountingMemory.calls == [5000]
        assert len(set(ids)) == 5000
        assert app.stats("echo")["pending"] == 5000


def test_a_unique_duplicate_is_dropped_and_dispatch_returns_none(app: JobsApp) -> None:
    assert app.dispatch(Echo().unique("k"), 1) is not None
    assert app.dispatch(Echo().unique("k"), 2) is None
    assert app.stats("echo")["pending"] == 1


def test_transactional_dispatch_needs_the_capability(app: JobsApp) -> None:
    with pytest.raises(UnsupportedOperation, match=r"memory.*transactional_enqueue"):
        app.dispatch(Echo, 1, transaction=object())


def test_configuration_by_url_by_dict_and_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with JobsApp("memory://shared-a") as first, JobsApp(driver="memory", name="shared-a") as second:
        first.dispatch(Echo, 1)
        assert second.stats("echo")["pending"] == 1
    with JobsApp({"driver": "memory", "name": "shared-a"}) as third:
        assert third.stats("echo")["pending"] == 1
    monkeypatch.setenv("JOBS_URL", "memory://from-env")
    with JobsApp() as from_env, JobsApp("memory://from-env") as same:
        from_env.dispatch(Echo, 2)
        assert same.stats("echo")["pending"] == 1
    monkeypatch.delenv("JOBS_URL")
    with JobsApp() as default:
        assert default.config.url == "memory://"


def test_bad_configuration_fails_at_once_with_a_clear_error() -> None:
    with pytest.raises(InvalidURL, match="expected 'scheme://"):
        JobsApp("not a url")
    with pytest.raises(DriverNotFound, match=r"no jobs driver for 'nosuch'.*installed drivers: .*memory"):
        JobsApp("nosuch://x")
    with pytest.raises(DriverNotFound):
        JobsApp(driver="nosuch")
    with pytest.raises(ConfigurationError, match="does not match the URL scheme"):
        JobsApp("memory://", driver="kafka-ish")


def test_a_failed_reconfiguration_keeps_the_old_driver(app: JobsApp) -> None:
    app.dispatch(Echo, 1)
    with pytest.raises(InvalidURL):
        app.configure("::::")
    assert app.stats("echo")["pending"] == 1


def test_two_apps_in_one_process_share_nothing() -> None:
    with JobsApp("memory://") as one, JobsApp("memory://") as two:
        seen: list[str] = []
        one.listen("job.queued", lambda event: seen.append(event.job_id))
        ident = one.dispatch(Echo, 1)
        two.dispatch(Echo, 2)
        assert seen == [ident]
        assert one.stats()["pending"] == two.stats()["pending"] == 1
        two.register(add)
        assert add.job_name in two.registry and add.job_name not in one.registry


def test_passwords_never_appear_in_the_app_repr() -> None:
    probe = JobsApp("memory://")
    probe.drivers.register_class(CountingMemory)
    probe.configure("counting://user:s3cret@host/db")
    assert "s3cret" not in repr(probe)
    assert "s3cret" not in repr(probe.config)
    assert "s3cret" not in repr(probe.driver)
    probe.close()


def test_failed_jobs_and_retry_of_an_unknown_id(app: JobsApp) -> None:
    assert app.failed_jobs() == []
    assert app.retry("0" * 32) is False


def test_purge_and_prune(app: JobsApp) -> None:
    app.dispatch_many(Echo, range(3))
    assert app.purge("echo") == 3
    app.dispatch(Echo, 1)
    assert app.work("echo") == 1
    assert app.prune(0) == 1
    with pytest.raises(ConfigurationError):
        app.prune(-1)


def test_a_plugin_given_to_the_app_can_provide_its_driver() -> None:
    from collections.abc import Callable

    from jobs_core import Driver, hookimpl

    class CountingPlugin:
        @hookimpl
        def jobs_register_drivers(self, register: Callable[[type[Driver]], None]) -> None:
            register(CountingMemory)

    with JobsApp("counting://host", plugins=[CountingPlugin()]) as app:
        assert app.driver.name == "counting"
        app.dispatch(Echo, 1)
        assert app.stats("echo")["pending"] == 1


def test_transactional_dispatch_on_sqlite_exists_only_if_the_transaction_commits(
    tmp_path: pathlib.Path,
) -> None:
    pytest.importorskip("jobs_database")
    sa = pytest.importorskip("sqlalchemy")
    url = f"sqlite:///{tmp_path}/outbox.db"
    with JobsApp(url) as app:
        assert app.stats("echo")["pending"] == 0  # creates the schema
        engine = sa.create_engine(url)
        with engine.connect() as connection, connection.begin() as transaction:
            assert app.dispatch(Echo, "rolled back", transaction=connection) is not None
            transaction.rollback()
        assert app.stats("echo")["pending"] == 0
        with engine.begin() as connection:
            app.dispatch_many(Echo, ["a", "b"], transaction=connection)
        assert app.stats("echo")["pending"] == 2
        engine.dispose()
