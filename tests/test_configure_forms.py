"""Every form of configuration, on every first-party driver.

``Jobs.configure`` and ``JobsApp`` take the URL first or as ``url=``, the
dict form (keyword arguments or one mapping), or nothing for ``$JOBS_URL``.
Each form is used as a user would: configure, dispatch a job, run it with
``Jobs.work`` and see it ran, on memory, SQLite, PostgreSQL, MariaDB and
Kafka. A URL given twice is refused with a ``ConfigurationError`` that says
so, and the previous configuration is kept.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from jobs_core import Jobs, JobsApp, job
from jobs_core.errors import ConfigurationError
from jobs_core.facade import set_default_app

SERVERS = {
    "postgresql": os.environ.get(
        "JOBS_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("JOBS_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}

RAN: list[str] = []


@job(name="forms.record", queue="forms")
def record(payload: dict[str, str]) -> None:
    RAN.append(payload["token"])


@dataclass
class Backend:
    """One first-party backend: its URL and the same configuration as a dict."""

    url: str
    options: dict[str, Any]


def _require(name: str, error: str | None) -> None:
    if error is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{name} unavailable: {error}")
    pytest.skip(f"{name} unavailable: {error}")


def _server_error(url: str) -> str | None:
    import sqlalchemy as sa

    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return None
    except sa.exc.SQLAlchemyError as exc:
        return str(getattr(exc, "orig", exc)).splitlines()[0]
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def kafka_bootstrap() -> Iterator[str]:
    pytest.importorskip("jobs_kafka")
    from jobs_kafka.testing.broker import ENV_BOOTSTRAP, TansuBroker

    named = os.environ.get(ENV_BOOTSTRAP)
    if named:
        yield named
        return
    try:
        broker = TansuBroker.start()
    except Exception as exc:
        _require("kafka", str(exc))
        raise
    with broker:
        yield broker.bootstrap


def _memory() -> Iterator[Backend]:
    name = f"forms{uuid.uuid4().hex[:8]}"
    yield Backend(f"memory://{name}", {"driver": "memory", "name": name})


def _sqlite(tmp_path: Path) -> Iterator[Backend]:
    pytest.importorskip("jobs_database")
    path = tmp_path / "jobs.db"
    yield Backend(f"sqlite:///{path}", {"driver": "database", "connection": f"sqlite:///{path}"})


def _server(kind: str) -> Iterator[Backend]:
    pytest.importorskip("jobs_database")
    from jobs_database.schema import build_tables, drop_all

    server = SERVERS[kind]
    _require(kind, _server_error(server))
    prefix = f"f{uuid.uuid4().hex[:10]}_"
    yield Backend(
        f"{server}?table_prefix={prefix}",
        {"driver": "database", "connection": server, "table_prefix": prefix},
    )
    import sqlalchemy as sa

    engine = sa.create_engine(server)
    try:
        drop_all(engine, build_tables(prefix))
    finally:
        engine.dispose()


def _kafka(bootstrap: str) -> Iterator[Backend]:
    from jobs_kafka.testing.broker import ENV_BOOTSTRAP, FAST_TEST_SETTINGS

    settings: dict[str, Any] = {
        "topic_prefix": f"f{uuid.uuid4().hex[:8]}-",
        "group_id": f"g{uuid.uuid4().hex[:8]}",
        "partitions": "1",
        "timeout": "10",
    }
    if not os.environ.get(ENV_BOOTSTRAP):
        settings.update(FAST_TEST_SETTINGS)
    yield Backend(
        f"kafka://{bootstrap}?{urlencode(settings)}",
        {"driver": "kafka", "brokers": bootstrap, **settings},
    )


@pytest.fixture(params=["memory", "sqlite", "postgresql", "mariadb", "kafka"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each first-party backend in turn, with its own tables, topics or store."""
    kind: str = request.param
    if kind == "memory":
        source = _memory()
    elif kind == "sqlite":
        source = _sqlite(tmp_path)
    elif kind == "kafka":
        source = _kafka(request.getfixturevalue("kafka_bootstrap"))
    else:
        source = _server(kind)
    yield from source


@pytest.fixture(autouse=True)
def fresh_default_app() -> Iterator[None]:
    previous = set_default_app(None)
    try:
        yield
    finally:
        current = set_default_app(previous)
        if current is not None:
            current.close()


def _runs_a_job() -> None:
    """Dispatch one job through the facade and run it: it must run, once."""
    token = uuid.uuid4().hex
    job_id = Jobs.dispatch(record, {"token": token})
    assert isinstance(job_id, str)
    assert Jobs.work("forms", max_jobs=1) == 1
    assert token in RAN


FORMS: dict[str, Callable[[Backend, pytest.MonkeyPatch], None]] = {
    "positional": lambda b, mp: Jobs.configure(b.url),
    "keyword": lambda b, mp: Jobs.configure(url=b.url),
    "keyword and options": lambda b, mp: Jobs.configure(url=b.url, driver=b.options["driver"]),
    "mapping with url": lambda b, mp: Jobs.configure({"url": b.url}),
    "dict keywords": lambda b, mp: Jobs.configure(**b.options),
    "dict mapping": lambda b, mp: Jobs.configure(dict(b.options)),
    "environment": lambda b, mp: (mp.setenv("JOBS_URL", b.url), Jobs.configure())[-1],
}


@pytest.mark.parametrize("form", list(FORMS))
def test_every_form_configures_every_driver(
    backend: Backend, form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    FORMS[form](backend, monkeypatch)
    _runs_a_job()


def test_the_first_use_of_jobs_reads_jobs_url(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_URL", backend.url)
    _runs_a_job()
    assert Jobs.app().config.url == backend.url


@pytest.mark.parametrize("form", ["positional", "keyword", "dict"])
def test_an_app_takes_every_form(backend: Backend, form: str) -> None:
    if form == "positional":
        app = JobsApp(backend.url, load_plugins=False)
    elif form == "keyword":
        app = JobsApp(url=backend.url, load_plugins=False)
    else:
        app = JobsApp(load_plugins=False, **backend.options)
    with app:
        token = uuid.uuid4().hex
        assert isinstance(app.dispatch(record, {"token": token}), str)
        assert app.work("forms", max_jobs=1) == 1
    assert token in RAN


def test_a_url_given_twice_is_refused_and_the_old_configuration_kept() -> None:
    Jobs.configure(url="memory://kept")
    secret = "postgresql+psycopg://app:hunter2@db/app"
    attempts: list[Callable[[], None]] = [
        lambda: Jobs.configure("memory://", url="memory://"),
        lambda: Jobs.configure(secret, url="memory://other"),
        lambda: Jobs.configure({"url": "memory://a"}, url="memory://b"),
        lambda: Jobs.app().configure("memory://a", url="memory://b"),
    ]
    for attempt in attempts:
        with pytest.raises(ConfigurationError, match=r"URL is given twice") as caught:
            attempt()
        assert "hunter2" not in str(caught.value)
        assert Jobs.app().config.url == "memory://kept"
    with pytest.raises(ConfigurationError, match=r"given twice.*give it once"):
        JobsApp("memory://", url="memory://", load_plugins=False)


def test_url_must_be_a_string() -> None:
    with pytest.raises(ConfigurationError, match="url must be a string"):
        Jobs.configure(url=42)


def test_driver_must_match_a_keyword_url() -> None:
    with pytest.raises(ConfigurationError, match="does not match the URL scheme"):
        Jobs.configure(url="memory://", driver="database")
