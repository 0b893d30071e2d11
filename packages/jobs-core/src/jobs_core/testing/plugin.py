"""The pytest plugin of the conformance suite (entry point ``pytest11``).

Inert unless asked: it only adds options, ini settings, a marker and
fixtures. Point it at a driver with ``--jobs-driver=URL``, the ini setting
``jobs_driver`` or the environment variable ``JOBS_DRIVER_URL``::

    pytest --pyargs jobs_core.testing.conformance --jobs-driver=memory://

Fixtures:

``jobs_driver_url``
    The configured URL (the suite is skipped when none is given).
``jobs_backend_url``
    The URL every driver of one test is built with. All drivers built for
    one test must share one backend, because tests with a second worker
    build a second driver. It is the configured URL, except that a bare
    ``scheme://`` (an in-process driver's private store) becomes
    ``scheme://conformance-<hex>``: in-process drivers follow the ``memory``
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


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--jobs-driver`` and the ``jobs_driver`` ini setting."""
    group = parser.getgroup("jobs", "jobs driver conformance")
    group.addoption(
        "--jobs-driver",
        dest="jobs_driver",
        default=None,
        metavar="URL",
        help="URL of the jobs driver to test (also: ini jobs_driver, env JOBS_DRIVER_URL)",
    )
    parser.addini("jobs_driver", "URL of the jobs driver to test", default="")
    parser.addini(
        "jobs_xfail",
        "known driver bugs, one 'TEST: REASON' per line; each TEST becomes a strict xfail",
        type="linelist",
        default=[],
    )


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``jobs_requires`` marker."""
    config.addinivalue_line(
        "markers",
        "jobs_requires(*capabilities): skip unless the driver under test declares them",
    )


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


@pytest.fixture
def jobs_backend_url(jobs_driver_url: str) -> str:
    """The URL all drivers of this test are built with (one shared backend).

    A bare ``scheme://`` names an in-process driver's private store; it
    becomes ``scheme://conformance-<hex>`` so that the test's drivers share
    one store. Override for a driver whose bare URL means something else.
    """
    scheme, sep, rest = jobs_driver_url.partition("://")
    if sep and not rest:
        return f"{scheme}://conformance-{uuid.uuid4().hex[:12]}"
    return jobs_driver_url


@pytest.fixture
def jobs_driver_options() -> dict[str, Any]:
    """Extra options passed to the driver; override to configure a driver in code."""
    return {}


@pytest.fixture
def jobs_driver_factory(
    jobs_backend_url: str, jobs_driver_options: dict[str, Any]
) -> Iterator[DriverFactory]:
    """Build drivers on this test's backend; closes them after the test."""
    built: list[Driver] = []

    def make(**overrides: Any) -> Driver:
        cls = driver_class(jobs_backend_url)
        driver = cls.from_config(jobs_backend_url, {**jobs_driver_options, **overrides})
        built.append(driver)
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
    marker = request.node.get_closest_marker("jobs_requires")
    if marker is None:
        return
    driver: Driver = request.getfixturevalue("jobs_driver")
    missing = [c for c in marker.args if isinstance(c, Capability) and c not in driver.capabilities]
    if missing:
        names = ", ".join(c.value for c in missing)
        pytest.skip(f"driver {driver.name!r} does not declare capability {names}")
