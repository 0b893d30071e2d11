"""The Jobs facade: its default app, its configuration, and its exact method set."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from jobs_core import Job, Jobs, JobsApp
from jobs_core.facade import set_default_app


class Hello(Job):
    def handle(self, payload: Any) -> str:
        return f"hello {payload}"


@pytest.fixture(autouse=True)
def fresh_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("JOBS_URL", raising=False)
    previous = set_default_app(None)
    yield
    Jobs.app().close()
    set_default_app(previous)


def test_the_facade_has_the_origin_methods() -> None:
    public = {name for name in vars(Jobs) if not name.startswith("_")}
    assert public >= {
        "configure",
        "dispatch",
        "dispatch_later",
        "dispatch_many",
        "work",
        "stats",
        "failed_jobs",
        "retry",
        "listen",
        "register",
    }


def test_the_default_app_comes_from_jobs_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_URL", "memory://facade-env")
    with JobsApp("memory://facade-env") as other:
        Jobs.dispatch(Hello, "world")
        assert other.stats()["pending"] == 1
    assert Jobs.app().config.url == "memory://facade-env"


def test_configure_switches_backend_and_keeps_listeners_and_jobs() -> None:
    seen: list[Any] = []
    Jobs.configure("memory://facade-one")
    Jobs.listen("job.processed", lambda event: seen.append(event.result))
    Jobs.register(Hello)
    Jobs.dispatch(Hello.job_name, "one")
    Jobs.configure(driver="memory", name="facade-two")
    assert Jobs.stats()["pending"] == 0
    Jobs.dispatch(Hello.job_name, "two")
    assert Jobs.work() == 1
    assert seen == ["hello two"]
    Jobs.configure({"driver": "memory", "name": "facade-one"})
    assert Jobs.work() == 1
    assert seen == ["hello two", "hello one"]


def test_dispatch_later_and_many_through_the_facade() -> None:
    Jobs.configure("memory://")
    Jobs.dispatch_later(120, Hello, "later", queue="slow")
    ids = Jobs.dispatch_many(Hello, ["a", "b"], queue="fast")
    assert Jobs.stats("slow")["delayed"] == 1
    assert Jobs.stats("fast")["pending"] == 2
    assert len(ids) == 2
    assert Jobs.work("fast") == 2
    assert Jobs.failed_jobs() == []
    assert Jobs.retry("missing") is False
