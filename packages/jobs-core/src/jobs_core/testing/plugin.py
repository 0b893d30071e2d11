"""The pytest plugin of the conformance suite (entry point ``pytest11``).

Inert unless asked: it only adds an option, an ini setting, a marker and
fixtures. Point it at a driver with ``--jobs-driver=URL``, the ini setting
``jobs_driver`` or the environment variable ``JOBS_DRIVER_URL``::

    pytest --pyargs jobs_core.testing.conformance --jobs-driver=memory://

Fixtures:

``jobs_driver_url``
    The configured URL (the suite is skipped when none is given).
``jobs_driver_factory``
    Builds a fresh driver for that URL; every driver it built is closed
    after the test.
``jobs_driver``
    A fresh driver for this test.
``jobs_queue``
    A fresh queue name for this test (``q-<hex>``); ``jobs_queue_factory``
    makes more.

Marker ``@pytest.mark.jobs_requires(Capability.DELAY, ...)`` skips a test, with
the missing capability named, when the driver does not declare it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from jobs_core.driver import Capability, Driver
from jobs_core.plugins import DriverRegistry
from jobs_core.urls import redact_url, url_scheme

DriverFactory = Callable[..., Driver]


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
def jobs_driver_options() -> dict[str, Any]:
    """Extra options passed to the driver; override to configure a driver in code."""
    return {}


@pytest.fixture
def jobs_driver_factory(jobs_driver_url: str, jobs_driver_options: dict[str, Any]) -> Iterator[DriverFactory]:
    """Build fresh drivers for the configured URL; closes them after the test."""
    built: list[Driver] = []

    def make(**overrides: Any) -> Driver:
        cls = driver_class(jobs_driver_url)
        driver = cls.from_config(jobs_driver_url, {**jobs_driver_options, **overrides})
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
def jobs_queue_factory() -> Callable[[], str]:
    """Make fresh, unique queue names."""

    def make() -> str:
        return f"q-{uuid.uuid4().hex[:12]}"

    return make


@pytest.fixture
def jobs_queue(jobs_queue_factory: Callable[[], str]) -> str:
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
