"""No password is ever printed.

Every ``jobs`` command, workers (one process, a supervisor of two, with a
scheduler), a scheduler, and the reprs of the app, driver and settings run as
subprocesses, with Python logging at debug level, against SQLite, PostgreSQL,
MariaDB and Kafka URLs that carry a canary password in every place a URL can
hold one:

* the userinfo, plain and with unencoded ``@``, ``/``, ``?``, ``#`` and ``:``;
* the query string (``password=``, ``sslpassword=``, ``token=``, Kafka's
  ``sasl.password=``, ``ssl.key.password=``);
* URLs that work, and URLs that fail: wrong port, wrong password, no
  database, a bad port, an unknown option, an unknown scheme, no scheme.

Every canary is a distinct random word, and none may appear in any stdout or
stderr. The MariaDB user is created with the special-character password, so
a successful login there also proves the password reached the server whole.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

RUN = uuid.uuid4().hex[:8]


def canary(index: int) -> str:
    """A word that appears nowhere unless a secret leaked."""
    return f"cnry{RUN}w{index}"


#: A password holding every character that breaks URL parsers, around canary words.
SPECIAL = f"{canary(1)}@{canary(2)}/{canary(3)}?{canary(4)}#{canary(5)}:{canary(6)}"
#: The same characters in another order (the ``@`` late).
SPECIAL_LATE_AT = f"{canary(7)}/{canary(8)}?{canary(9)}#{canary(10)}:{canary(11)}@{canary(12)}"
CANARIES = [canary(i) for i in range(1, 30)]

SERVERS = {
    "postgresql": os.environ.get(
        "JOBS_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("JOBS_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}

JOBS_MODULE = textwrap.dedent(
    """
    from jobs_core import job


    @job(name="canary.ok")
    def ok(payload):
        return payload


    @job(name="canary.boom", max_retries=0)
    def boom(payload):
        raise RuntimeError("this job fails on purpose")
    """
)

#: Builds the app, prints the reprs a user might log, and dispatches two jobs.
REPRS = textwrap.dedent(
    """
    import logging, sys
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    from jobs_core import Jobs
    from jobs_core.app import JobsApp
    import canaryjobs

    url = sys.argv[1]
    app = JobsApp(url)
    print(repr(app), repr(app.config), app.config.display_url)
    print(repr(app.driver), repr(getattr(app.driver, "settings", None)))
    app.dispatch(canaryjobs.ok, {"n": 1})
    app.dispatch(canaryjobs.boom, {"n": 2})
    Jobs.configure(url)
    print(repr(Jobs.app()))
    app.close()
    """
)

#: ``jobs`` with the root logger at DEBUG (every library's log, not only jobs_core's).
JOBS = (
    "import logging, sys; logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, "
    "format='%(levelname)s %(name)s: %(message)s'); from jobs_core.cli import main; main(sys.argv[1:])"
)

FULL = "full"
QUICK = "quick"


@dataclass
class Case:
    """One URL, whether it works, and which commands to run with it."""

    name: str
    url: str
    works: bool
    commands: str = QUICK
    database: bool = False
    #: (backend server URL, table prefix) whose tables to drop afterwards.
    cleanup: tuple[str, str] | None = None
    #: Text the worker must print (proof that a log path really ran).
    worker_says: str = "serving default on "


@dataclass
class Run:
    """What one subprocess printed."""

    args: list[str]
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def _env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "canaryjobs.py").write_text(JOBS_MODULE)
    env = {k: v for k, v in os.environ.items() if k != "JOBS_URL"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    return env


def _python(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> Run:
    done = subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(args, done.returncode, done.stdout, done.stderr)


def _jobs(url: str, args: list[str], env: dict[str, str], cwd: Path) -> Run:
    return _python(["-c", JOBS, *args[:1], "--url", url, *args[1:]], env, cwd)


def _jobs_group(url: str, group: str, args: list[str], env: dict[str, str], cwd: Path) -> Run:
    """``jobs GROUP --url URL ARGS`` (``--url`` belongs to the group)."""
    return _python(["-c", JOBS, group, "--url", url, *args], env, cwd)


def _until_signal(url: str, args: list[str], env: dict[str, str], cwd: Path, seconds: float) -> Run:
    """Run a long-lived command, stop it with SIGTERM after ``seconds``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", JOBS, args[0], "--url", url, *args[1:]],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    return Run(args, proc.returncode, out, err)


WORKER = [
    "worker",
    "--import",
    "canaryjobs",
    "--stop-when-empty",
    "--log-level",
    "DEBUG",
    "--progress",
    "0.2",
]


def _commands(case: Case, env: dict[str, str], cwd: Path) -> list[Run]:
    url = case.url
    runs = [_python(["-c", REPRS, url], env, cwd)]
    runs.append(_jobs(url, ["stats"], env, cwd))
    runs.append(_jobs(url, ["stats", "--json"], env, cwd))
    runs.append(_jobs(url, WORKER, env, cwd))
    if case.database:
        runs.append(_python(["-c", JOBS, "db", "version", "--url", url], env, cwd))
    if case.commands == QUICK:
        return runs
    if case.database:
        runs.append(_python(["-c", JOBS, "db", "upgrade", "--url", url], env, cwd))
    runs += [
        _jobs(url, ["stats", "--queue", "default", "--json"], env, cwd),
        _jobs(url, ["failed"], env, cwd),
        _jobs(url, ["failed", "--json"], env, cwd),
        _jobs(url, ["retry", "--all"], env, cwd),
        _jobs(url, ["retry", "--json", "0" * 32], env, cwd),
        _jobs(url, [*WORKER, "--processes", "2"], env, cwd),
        _jobs(url, [*WORKER, "--with-scheduler"], env, cwd),
        _jobs(url, ["purge", "default", "--yes"], env, cwd),
        _jobs(url, ["purge", "default", "--yes", "--json"], env, cwd),
        _jobs(url, ["prune", "--older-than", "7d"], env, cwd),
        _jobs(url, ["prune", "--older-than", "7d", "--json"], env, cwd),
        _jobs_group(url, "schedules", [], env, cwd),
        _jobs_group(url, "schedules", ["--json"], env, cwd),
        _jobs_group(url, "schedules", ["pause", "no-such-schedule"], env, cwd),
        _jobs_group(url, "schedules", ["remove", "no-such-schedule"], env, cwd),
        _until_signal(url, ["scheduler", "--log-level", "DEBUG"], env, cwd, 4.0),
    ]
    return runs


# -- backends ------------------------------------------------------------------


def _server_error(url: str) -> str | None:
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return None
    except sa.exc.SQLAlchemyError as exc:
        return str(getattr(exc, "orig", exc)).splitlines()[0]
    finally:
        engine.dispose()


def _require(name: str, error: str | None) -> None:
    if error is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{name} unavailable: {error}")
    pytest.skip(f"{name} unavailable: {error}")


def _location(server: str) -> tuple[str, str, int, str]:
    """(user, host, port, database) of a server URL."""
    parsed = make_url(server)
    default = 5432 if parsed.get_backend_name() == "postgresql" else 3306
    return (
        parsed.username or "",
        parsed.host or "127.0.0.1",
        parsed.port or default,
        parsed.database or "test",
    )


@pytest.fixture(scope="module")
def kafka_bootstrap() -> Iterator[str]:
    """The brokers of a Kafka-protocol test broker (or the cluster named by the environment)."""
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


@pytest.fixture(scope="module")
def mariadb_user() -> Iterator[str]:
    """A MariaDB user whose password is :data:`SPECIAL_LATE_AT`; dropped afterwards."""
    server = SERVERS["mariadb"]
    _require("mariadb", _server_error(server))
    name = f"jobs_canary_{RUN}"
    engine = sa.create_engine(server)
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"CREATE USER '{name}'@'%' IDENTIFIED BY :password"), {"password": SPECIAL_LATE_AT}
        )
        _, _, _, database = _location(server)
        conn.execute(sa.text(f"GRANT ALL PRIVILEGES ON `{database}`.* TO '{name}'@'%'"))
    try:
        yield name
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP USER IF EXISTS '{name}'@'%'"))
        engine.dispose()


def _prefix() -> str:
    return f"s{uuid.uuid4().hex[:10]}_"


def _sqlite_cases(tmp_path: Path) -> list[Case]:
    path = tmp_path / "jobs.db"
    return [
        Case(
            "sqlite, password and token in the query string",
            f"sqlite:///{path}?password={canary(13)}&token={canary(14)}",
            works=True,
            commands=FULL,
            database=True,
        ),
        Case(
            "sqlite, userinfo with special characters (refused by SQLAlchemy)",
            f"sqlite://user:{SPECIAL}@/{path}",
            works=False,
            database=True,
        ),
    ]


def _postgresql_cases() -> list[Case]:
    server = SERVERS["postgresql"]
    _require("postgresql", _server_error(server))
    user, host, port, database = _location(server)
    prefix = _prefix()
    base = f"postgresql://{user}:{SPECIAL}@{host}:{port}/{database}"
    return [
        Case(
            "postgresql, special characters in the userinfo, password= and sslpassword= in the query",
            f"{base}?table_prefix={prefix}&password={canary(15)}&sslpassword={canary(16)}",
            works=True,
            commands=FULL,
            database=True,
            cleanup=(server, prefix),
        ),
        Case(
            "postgresql, password only in the query string",
            f"postgresql://{user}@{host}:{port}/{database}?table_prefix={prefix}&password={canary(17)}",
            works=True,
            database=True,
        ),
        Case(
            "postgresql, percent-encoded password",
            f"postgresql://{user}:{canary(18)}%40{canary(19)}@{host}:{port}/{database}?table_prefix={prefix}",
            works=True,
            database=True,
        ),
        Case(
            "postgresql, wrong port",
            f"postgresql://{user}:{SPECIAL}@{host}:1/{database}",
            False,
            database=True,
        ),
        Case(
            "postgresql, no database",
            f"postgresql://{user}:{SPECIAL_LATE_AT}@{host}:{port}",
            False,
            database=True,
        ),
        Case(
            "postgresql, bad port",
            f"postgresql://{user}:{SPECIAL}@{host}:port/{database}",
            False,
            database=True,
        ),
        Case(
            "postgresql, unknown connection option",
            f"postgresql://{user}:{SPECIAL}@{host}:{port}/{database}?token={canary(20)}",
            False,
            database=True,
        ),
        Case("no scheme", f"{user}:{SPECIAL}@{host}:{port}/{database}", False),
        Case("unknown scheme", f"nosuch://{user}:{SPECIAL}@{host}/x?password={canary(21)}", False),
    ]


def _mariadb_cases(user: str) -> list[Case]:
    server = SERVERS["mariadb"]
    _, host, port, database = _location(server)
    prefix = _prefix()
    return [
        Case(
            "mariadb, a user whose password has every special character",
            f"mysql://{user}:{SPECIAL_LATE_AT}@{host}:{port}/{database}?table_prefix={prefix}",
            works=True,
            commands=FULL,
            database=True,
            cleanup=(server, prefix),
        ),
        Case(
            "mariadb, wrong password",
            f"mariadb://root:{SPECIAL}@{host}:{port}/{database}",
            False,
            database=True,
        ),
        Case(
            "mariadb, wrong port",
            f"mysql://{user}:{SPECIAL_LATE_AT}@{host}:1/{database}?password={canary(22)}",
            False,
            database=True,
        ),
    ]


def _kafka_cases(bootstrap: str) -> list[Case]:
    from jobs_kafka.testing.broker import ENV_BOOTSTRAP, FAST_TEST_SETTINGS

    fast = (
        "" if os.environ.get(ENV_BOOTSTRAP) else "".join(f"&{k}={v}" for k, v in FAST_TEST_SETTINGS.items())
    )
    query = f"topic_prefix=c{RUN}-&group_id=g{RUN}&timeout=10{fast}"
    return [
        Case(
            "kafka, special characters in the SASL password, secrets in the query, librdkafka debug",
            f"kafka://app:{SPECIAL}@{bootstrap}?{query}&sasl.password={canary(23)}"
            f"&ssl.key.password={canary(24)}&debug=conf,security,broker",
            works=True,
            commands=FULL,
            worker_says="sasl.password = [redacted]",
        ),
        Case(
            "kafka, wrong port",
            f"kafka://app:{SPECIAL_LATE_AT}@127.0.0.1:1?timeout=2&sasl.password={canary(25)}",
            False,
        ),
        Case("kafka, no port", f"kafka://app:{SPECIAL}@127.0.0.1?sasl.password={canary(26)}", False),
        Case(
            "kafka, unknown setting",
            f"kafka://app:{SPECIAL}@127.0.0.1:1?colour=red&token={canary(27)}",
            False,
        ),
    ]


# -- the test ------------------------------------------------------------------


def _command(run: Run) -> str:
    return " ".join(run.args[2:] if run.args[0] == "-c" else run.args)


def _check(case: Case, runs: list[Run]) -> None:
    leaks = [
        f"{_command(run).replace(case.url, 'URL')}: {line.strip()}"
        for run in runs
        for line in run.text.splitlines()
        if any(word in line for word in CANARIES)
    ]
    assert not leaks, f"{case.name}: a secret was printed:\n" + "\n".join(leaks[:20])
    reprs, stats, stats_json, worker = runs[:4]
    if case.works:
        for run in (reprs, stats, stats_json, worker):
            assert run.code == 0, f"{case.name}: {run.args[2:]} failed: {run.err[-2000:]}"
        assert "<JobsApp " in reprs.out
        assert '"url": ' in stats_json.out
        assert case.worker_says in worker.err, worker.err[-2000:]
        assert "***" in stats_json.out and "***" in worker.err
    else:
        for run in (stats, stats_json, worker):
            assert run.code != 0, f"{case.name}: {run.args[2:]} did not fail"
            assert "jobs: error: " in run.err or "Traceback" in run.err, run.err[-2000:]


def _cleanup(case: Case) -> None:
    if case.cleanup is None:
        return
    from jobs_database.schema import build_tables, drop_all

    server, prefix = case.cleanup
    engine = sa.create_engine(server)
    try:
        drop_all(engine, build_tables(prefix))
    finally:
        engine.dispose()


def _run_cases(cases: list[Case], tmp_path: Path) -> None:
    env = _env(tmp_path)
    try:
        for case in cases:
            _check(case, _commands(case, env, tmp_path))
    finally:
        for case in cases:
            _cleanup(case)


def test_the_parsers_keep_the_whole_password() -> None:
    """The canary URLs are read as meant, so the subprocess tests exercise real logins."""
    pytest.importorskip("jobs_database")
    from jobs_database.settings import DatabaseSettings

    settings = DatabaseSettings.parse(f"postgresql://u:{SPECIAL}@h:5432/db?password={canary(15)}")
    assert (settings.url.password, settings.url.host, settings.url.database) == (SPECIAL, "h", "db")
    settings = DatabaseSettings.parse(f"mysql://u:{SPECIAL_LATE_AT}@h:3306/db")
    assert (settings.url.password, settings.url.host, settings.url.database) == (SPECIAL_LATE_AT, "h", "db")
    kafka = pytest.importorskip("jobs_kafka")
    parsed = kafka.KafkaSettings.parse(f"kafka://app:{SPECIAL}@h:9092?sasl.mechanism=PLAIN", {})
    assert parsed.brokers == ("h:9092",)
    assert parsed.config["sasl.password"] == SPECIAL


def test_sqlite(tmp_path: Path) -> None:
    pytest.importorskip("jobs_database")
    _run_cases(_sqlite_cases(tmp_path), tmp_path)


def test_postgresql(tmp_path: Path) -> None:
    pytest.importorskip("jobs_database")
    _run_cases(_postgresql_cases(), tmp_path)


def test_mariadb(tmp_path: Path, mariadb_user: str) -> None:
    pytest.importorskip("jobs_database")
    _run_cases(_mariadb_cases(mariadb_user), tmp_path)


def test_kafka(tmp_path: Path, kafka_bootstrap: str) -> None:
    _run_cases(_kafka_cases(kafka_bootstrap), tmp_path)


def test_the_check_finds_a_printed_canary(tmp_path: Path) -> None:
    """The leak check is not vacuous: a command that prints the URL as given is caught."""
    url = f"memory://u:{SPECIAL}@/?password={canary(28)}"
    printed = _python(["-c", "import sys; print(sys.argv[1])", url], _env(tmp_path), tmp_path)
    case = Case("printing the raw URL", url, works=False)
    with pytest.raises(AssertionError, match="a secret was printed"):
        _check(case, [printed, printed, printed, printed])
