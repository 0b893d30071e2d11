"""jobs-redis: the Redis driver for jobs (``redis://``, ``rediss://``, ``redis+sentinel://``, ``redis+cluster://``).

Installing the package registers the driver through the ``jobs.drivers``
entry point; nothing needs importing.
"""

from __future__ import annotations

from collections.abc import Callable

from jobs_core import Driver, hookimpl

from jobs_redis.driver import RedisDriver
from jobs_redis.errors import CorruptKey, RedisDriverError, ReplicasNotReached, ScriptingNotAllowed

__all__ = [
    "CorruptKey",
    "RedisDriver",
    "RedisDriverError",
    "ReplicasNotReached",
    "ScriptingNotAllowed",
    "jobs_register_drivers",
]


@hookimpl
def jobs_register_drivers(register: Callable[[type[Driver]], None]) -> None:
    """Register :class:`RedisDriver` for ``redis``, ``rediss``, ``redis+sentinel`` and ``redis+cluster``."""
    register(RedisDriver)
