"""Errors of the Redis driver, each a :mod:`jobs_core.errors` type.

Messages name the server (``host:port``), never a password, and say what to do.
"""

from __future__ import annotations

from jobs_core.errors import BackendError, ConfigurationError


class RedisDriverError(BackendError):
    """Base of the errors only the Redis driver raises."""


class ScriptingNotAllowed(ConfigurationError):
    """The Redis user may not run Lua scripts (``EVALSHA``), which every state change needs.

    Not retryable: grant the user ``+@scripting`` (``ACL SETUSER name +@scripting``).
    """


class CorruptKey(RedisDriverError):
    """A key of the driver holds a value of the wrong type (written by something else).

    The message names the key and its type; deleting the key (or moving it
    aside) lets the queue work again. Not retryable.
    """


class ReplicasNotReached(RedisDriverError):
    """An enqueue was written on the master but fewer replicas than the URL's
    ``wait_replicas`` acknowledged it within ``wait_timeout``.

    The jobs may be lost if the master fails now. Retryable: enqueue the same
    messages again (their ids make the repeat store nothing twice).
    """

    retryable = True
