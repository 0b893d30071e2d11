"""The pytest plugin of the conformance suite (entry point ``pytest11``).

Inert unless asked: it only adds options, ini settings, a marker and
fixtures. Point it at a driver with ``--jobs-driver=URL``, the ini setting
``jobs_driver`` or the environment variable ``JOBS_DRIVER_URL``::

    pytest --pyargs jobs_core.testing.conformance --jobs-driver=memory://

Fixtures:

``jobs_driver_url``
    The configured URL (the suite is skipped when none is given).
``jobs_namespace``
    This run's namespace (session scope): ``--jobs-namespace``, the ini
    setting ``jobs_namespace`` or ``$JOBS_CONFORMANCE_NAMESPACE``, else
    ``conformance_<10 hex digits>``, new for each run. Letters, digits and
    ``_`` only, so it fits a table, key or topic prefix.
``jobs_backend_url``
    The URL every driver of one test is built with. All drivers built for
    one test must share one backend, because tests with a second worker
    build a second driver. It is the configured URL with ``{namespace}``
    replaced by the run's namespace (``redis://host/0?prefix={namespace}``:
    a run on a shared server touches only its own keys), except that a bare
    ``scheme://`` (an in-process driver's private store) becomes
    ``scheme://<namespace>-<hex>``: in-process drivers follow the ``memory``
    convention that ``scheme://NAME`` shares one store among the drivers of a
    process. Override this fixture if that convention does not fit a driver.
``jobs_driver_options``
    Extra options passed to ``Driver.from_config``; override it to configure
    a driver in code.
``jobs_driver_factory``
    ``jobs_driver_factory(**options)`` builds another driver on the same
    backend; every driver it built is closed after the test. Override it to
    build drivers entirely in code (a driver class that is not installed).
``jobs_driver``
    A fresh driver for this test.
``jobs_queue``
    A fresh queue name for this test (``q-<hex>``); ``jobs_queue_factory``
    makes more.

Marker ``@pytest.mark.jobs_requires(Capability.DELAY, ...)`` skips a test, with
the missing capability named, when the driver does not declare it.

Hook ``pytest_jobs_cleanup(config, url, namespace)``: implement it in a
``conftest.py`` or a plugin module (``-p acme_jobs.testing``) to remove what
the run left on a shared server (the tables, keys or topics of
``namespace``). It is called once, at the end of a run that built drivers
(also one that failed or was interrupted), with the URL as the drivers got it.

Tests poll rather than assert on one call, waiting up to
``$JOBS_CONFORMANCE_TIMEOUT`` seconds (default 10) for what should happen; a
broken driver therefore fails a test after that long.

Known driver bugs are listed as strict expected failures in the ini setting
``jobs_xfail``, one ``TEST: REASON`` per line, where ``TEST`` is a test name
(``test_lease_expiry_redelivers``, or with its parameters
``test_payload_round_trip[unicode]``) or the end of a node id
(``test_leases.py::test_lease_expiry_redelivers``)::

    [tool.pytest.ini_options]
    jobs_xfail = [
        "test_leases.py::test_extend_after_lease_lost_returns_false: acme#12, extend cannot see a lost lease",
    ]

Each listed test is marked ``xfail(strict=True)``: it must fail, so a fix is
noticed (the run fails with XPASS until the line is removed). A listed name
that matches no collected test is reported as a warning.
"""

from __future__ import annotations

import os
import re
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from jobs_core.driver import Capability, Driver
from jobs_core.plugins import DriverRegistry
from jobs_core.urls import redact_url, url_scheme

DriverFactory = Callable[..., Driver]
"""What ``jobs_driver_factory`` is: ``factory(**options) -> Driver``."""
QueueFactory = Callable[[], str]
"""What ``jobs_queue_factory`` is: ``factory() -> fresh queue name``."""


#: Environment variable naming the run's namespace (see ``jobs_namespace``).
NAMESPACE_VARIABLE = "JOBS_CONFORMANCE_NAMESPACE"
_NAMESPACE = re.compile(r"[A-Za-z0-9_]{1,40}")
#: Where the run keeps its namespace and the backend URLs drivers were built with.
_NAMESPACE_KEY = pytest.StashKey[str]()
_USED_KEY = pytest.StashKey[dict[str, None]]()


class CleanupSpec:
    """The hook the conformance plugin adds (see :func:`pytest_jobs_cleanup`)."""

    @staticmethod
    @pytest.hookspec
    def pytest_jobs_cleanup(config: pytest.Config, url: str, namespace: str) -> None:
        """Remove what this run left on the backend at ``url``.

        Called once at the end of the run (passed, failed or interrupted) for
        each backend URL that drivers were built with, after every driver was
        closed; ``url`` has ``{namespace}`` already replaced by ``namespace``.
        Implement it in a ``conftest.py`` or a plugin module passed with
        ``-p`` for a driver tested against a shared server (drop the tables,
        keys or topics of ``namespace``). An exception fails the run.
        """


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Declare ``pytest_jobs_cleanup``."""
    pluginmanager.add_hookspecs(CleanupSpec)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--jobs-driver``, ``--jobs-namespace`` and their ini settings."""
    group = parser.getgroup("jobs", "jobs driver conformance")
    group.addoption(
        "--jobs-driver",
        dest="jobs_driver",
        default=None,
        metavar="URL",
        help="URL of the jobs driver to test (also: ini jobs_driver, env JOBS_DRIVER_URL)",
    )
    group.addoption(
        "--jobs-namespace",
        dest="jobs_namespace",
        default=None,
        metavar="NAME",
        help="namespace of this run, put in place of {namespace} in the driver URL "
        f"(also: ini jobs_namespace, env {NAMESPACE_VARIABLE}; default: conformance_<hex>, new each run)",
    )
    parser.addini("jobs_driver", "URL of the jobs driver to test", default="")
    parser.addini("jobs_namespace", "namespace of this run (see --jobs-namespace)", default="")
    parser.addini(
        "jobs_xfail",
        "known driver bugs, one 'TEST: REASON' per line; each TEST becomes a strict xfail",
        type="linelist",
        default=[],
    )


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``jobs_requires`` marker; settle the run's namespace."""
    config.addinivalue_line(
        "markers",
        "jobs_requires(*capabilities): skip unless the driver under test declares them",
    )
    name = str(
        config.getoption("jobs_namespace")
        or config.getini("jobs_namespace")
        or os.environ.get(NAMESPACE_VARIABLE, "")
        or f"conformance_{uuid.uuid4().hex[:10]}"
    )
    if not _NAMESPACE.fullmatch(name):
        raise pytest.UsageError(f"jobs namespace {name!r}: use 1 to 40 letters, digits and '_'")
    config.stash[_NAMESPACE_KEY] = name
    config.stash[_USED_KEY] = {}


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Call ``pytest_jobs_cleanup`` for each backend URL the run's drivers were built with."""
    config = session.config
    used = config.stash.get(_USED_KEY, {})
    for url in list(used):
        config.hook.pytest_jobs_cleanup(config=config, url=url, namespace=config.stash[_NAMESPACE_KEY])
    used.clear()


def configured_url(config: pytest.Config) -> str | None:
    """The driver URL from the command line, the ini file or the environment."""
    value = (
        config.getoption("jobs_driver")
        or config.getini("jobs_driver")
        or os.environ.get("JOBS_DRIVER_URL", "")
    )
    return str(value) or None


def known_failures(config: pytest.Config) -> dict[str, str]:
    """The ``jobs_xfail`` ini setting as ``{test: reason}``.

    Raises :class:`pytest.UsageError` for a line that is not ``TEST: REASON``.
    """
    entries: dict[str, str] = {}
    for line in config.getini("jobs_xfail"):
        test, sep, reason = str(line).partition(": ")
        if not sep or not test.strip() or not reason.strip():
            raise pytest.UsageError(f"jobs_xfail: expected 'TEST: REASON', got {line!r}")
        entries[test.strip()] = reason.strip()
    return entries


def _matches(item: pytest.Item, test: str) -> bool:
    nodeid = item.nodeid
    names = {item.name, getattr(item, "originalname", item.name)}
    return test in names or nodeid == test or nodeid.endswith(("/" + test, "::" + test))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests listed in ``jobs_xfail`` as strict expected failures."""
    entries = known_failures(config)
    if not entries:
        return
    unmatched = set(entries)
    for item in items:
        for test, reason in entries.items():
            if _matches(item, test):
                item.add_marker(pytest.mark.xfail(strict=True, reason=f"known driver bug: {reason}"))
                unmatched.discard(test)
                break
    for test in sorted(unmatched):
        warnings.warn(
            pytest.PytestConfigWarning(f"jobs_xfail: no collected test matches {test!r}"), stacklevel=1
        )


_registry: DriverRegistry | None = None


def driver_class(url: str) -> type[Driver]:
    """The installed driver class for ``url`` (through the entry points)."""
    global _registry
    if _registry is None:
        _registry = DriverRegistry()
    return _registry.get(url_scheme(url))


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    """Name the driver under test, its version and its capabilities."""
    url = configured_url(config)
    if not url:
        return None
    try:
        cls = driver_class(url)
    except Exception as exc:  # reported, and the fixture raises it again
        return [f"jobs driver: {redact_url(url)} (cannot load: {exc})"]
    from jobs_core.plugins import distribution_name, distribution_version

    caps = ", ".join(sorted(c.value for c in cls.capabilities)) or "none"
    return [
        f"jobs driver: {cls.name} {distribution_version(cls.__module__)} "
        f"({distribution_name(cls.__module__)}) at {redact_url(url)}",
        f"jobs capabilities: {caps}",
    ]


@pytest.fixture
def jobs_driver_url(request: pytest.FixtureRequest) -> str:
    """The URL of the driver under test; skips when none is configured."""
    url = configured_url(request.config)
    if not url:
        pytest.skip("no jobs driver configured: pass --jobs-driver=URL or set JOBS_DRIVER_URL")
    return url


@pytest.fixture(scope="session")
def jobs_namespace(pytestconfig: pytest.Config) -> str:
    """The run's namespace: put in place of ``{namespace}`` in the driver URL."""
    return pytestconfig.stash[_NAMESPACE_KEY]


@pytest.fixture
def jobs_backend_url(jobs_driver_url: str, jobs_namespace: str) -> str:
    """The URL all drivers of this test are built with (one shared backend).

    ``{namespace}`` in the configured URL becomes the run's namespace. A bare
    ``scheme://`` names an in-process driver's private store; it becomes
    ``scheme://<namespace>-<hex>`` so that the test's drivers share one
    store. Override for a driver whose bare URL means something else.
    """
    scheme, sep, rest = jobs_driver_url.partition("://")
    if sep and not rest:
        return f"{scheme}://{jobs_namespace}-{uuid.uuid4().hex[:12]}"
    return jobs_driver_url.replace("{namespace}", jobs_namespace)


@pytest.fixture
def jobs_driver_options() -> dict[str, Any]:
    """Extra options passed to the driver; override to configure a driver in code."""
    return {}


@pytest.fixture
def jobs_driver_factory(
    jobs_backend_url: str, jobs_driver_options: dict[str, Any], pytestconfig: pytest.Config
) -> Iterator[DriverFactory]:
    """Build drivers on this test's backend; closes them after the test."""
    built: list[Driver] = []

    def make(**overrides: Any) -> Driver:
        cls = driver_class(jobs_backend_url)
        driver = cls.from_config(jobs_backend_url, {**jobs_driver_options, **overrides})
        built.append(driver)
        pytestconfig.stash[_USED_KEY][jobs_backend_url] = None
        return driver

    yield make
    for driver in built:
        driver.close()


@pytest.fixture
def jobs_driver(jobs_driver_factory: DriverFactory) -> Driver:
    """A fresh driver for this test."""
    return jobs_driver_factory()


@pytest.fixture
def jobs_queue_factory() -> QueueFactory:
    """Make fresh, unique queue names."""

    def make() -> str:
        return f"q-{uuid.uuid4().hex[:12]}"

    return make


@pytest.fixture
def jobs_queue(jobs_queue_factory: QueueFactory) -> str:
    """A fresh queue name for this test."""
    return jobs_queue_factory()


@pytest.fixture(autouse=True)
def _jobs_requires(request: pytest.FixtureRequest) -> None:
    # Every jobs_requires mark applies: the module's and the test's.
    required = [c for m in request.node.iter_markers("jobs_requires") for c in m.args]
    if not required:
        return
    driver: Driver = request.getfixturevalue("jobs_driver")
    declared = driver.capabilities
    missing = [c for c in dict.fromkeys(required) if isinstance(c, Capability) and c not in declared]
    if missing:
        names = ", ".join(c.value for c in missing)
        pytest.skip(f"driver {driver.name!r} does not declare capability {names}")
