"""Configuration: which driver to use, and with which settings.

Two forms are accepted, as in the origin system:

* a URL whose scheme picks the driver: ``sqlite:///jobs.db``,
  ``postgresql+psycopg://user@host/db``, ``kafka://host:9092?group_id=app``,
  ``memory://``;
* the dict form, where ``driver`` names the driver and the other keys are its
  settings: ``driver="kafka", brokers="host:9092", group_id="app"`` or
  ``driver="database", connection="sqlite:///jobs.db"``.

Both may be combined (a URL plus extra options). The URL is given first
(``parse("sqlite:///jobs.db")``) or as ``url=`` (``parse(url="sqlite:///jobs.db")``,
or a ``"url"`` key of the dict form), once: a URL given both ways is refused
with :class:`~jobs_core.errors.ConfigurationError`. With neither, the
``JOBS_URL`` environment variable is used, else ``memory://``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jobs_core.driver import Driver
from jobs_core.errors import ConfigurationError
from jobs_core.plugins import DriverRegistry
from jobs_core.urls import base_scheme, redact_url, url_scheme

#: Environment variable read when no configuration is given.
ENV_URL = "JOBS_URL"
#: The configuration used when nothing is configured and ``JOBS_URL`` is unset.
DEFAULT_URL = "memory://"


@dataclass(frozen=True)
class JobsConfig:
    """A parsed configuration: an optional URL, an optional driver name, and options.

    Build it with :meth:`parse`; turn it into a driver with :meth:`create_driver`.
    """

    url: str | None
    driver: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str | Mapping[str, Any] | None = None, /, **options: Any) -> JobsConfig:
        """Parse the URL form, the dict form, or both.

        ``url`` may also be a mapping holding the dict form
        (``{"driver": "kafka", "brokers": ...}``), and the URL may come as the
        keyword ``url=`` instead; a URL given twice (first and as ``url=``, or
        in the mapping and as ``url=``) is refused. Raises
        :class:`~jobs_core.errors.ConfigurationError` (or its subclass
        :class:`~jobs_core.errors.InvalidURL`) naming what is wrong.
        """
        keyword_url = options.pop("url", None)
        if isinstance(url, Mapping):
            options = {**url, **options}
            url = options.pop("url", None)
            if url is not None and not isinstance(url, str):
                raise ConfigurationError(f"url must be a string, got {type(url).__name__}")
        if keyword_url is not None:
            if url is not None:
                raise ConfigurationError(
                    f"the URL is given twice, as {_shown(url)} and as url={_shown(keyword_url)}: "
                    "give it once, either first or as url=..."
                )
            if not isinstance(keyword_url, str):
                raise ConfigurationError(f"url must be a string, got {type(keyword_url).__name__}")
            url = keyword_url
        if url is not None and not isinstance(url, str):
            raise ConfigurationError(
                f"expected a driver URL such as 'sqlite:///jobs.db' or a dict of options, "
                f"got {type(url).__name__}"
            )
        driver = options.pop("driver", None)
        if driver is not None and (not isinstance(driver, str) or not driver):
            raise ConfigurationError(f"driver must be a driver name such as 'database', got {driver!r}")
        if url is None and driver is None:
            url = os.environ.get(ENV_URL) or DEFAULT_URL
        if url is not None:
            url_scheme(url)  # raises InvalidURL with an example
        return cls(url=url, driver=driver, options=dict(options))

    @property
    def display_url(self) -> str:
        """The URL with its password hidden, or ``driver=NAME`` for the dict form."""
        if self.url is not None:
            return redact_url(self.url)
        return f"driver={self.driver}"

    def driver_class(self, drivers: DriverRegistry) -> type[Driver]:
        """The driver class this configuration names, loading only its plugin."""
        if self.url is not None:
            scheme = url_scheme(self.url)
            cls = drivers.get(scheme)
            if self.driver is not None and self.driver.lower() != cls.name:
                raise ConfigurationError(
                    f"driver={self.driver!r} does not match the URL scheme "
                    f"{base_scheme(scheme)!r} (handled by driver {cls.name!r})"
                )
            return cls
        assert self.driver is not None
        return drivers.get(self.driver)

    def create_driver(self, drivers: DriverRegistry) -> Driver:
        """Build the driver: ``DriverClass.from_config(url, options)``."""
        return self.driver_class(drivers).from_config(self.url, dict(self.options))

    def __repr__(self) -> str:
        keys = ", ".join(sorted(self.options))
        return f"JobsConfig({self.display_url!r}{', options: ' + keys if keys else ''})"


def _shown(url: object) -> str:
    """``url`` as an error message may show it (password hidden)."""
    return repr(redact_url(url)) if isinstance(url, str) else f"a {type(url).__name__}"
