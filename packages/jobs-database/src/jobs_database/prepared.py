"""PostgreSQL statements of the latency path, run on libpq without psycopg's cursor.

Dispatching one job and claiming are one statement each. After a process
has been idle for a while, psycopg's cursor (adapting each parameter, its
prepared-statement cache, building rows) took longer than the round trip
itself: about 0.56 ms against 0.30 ms for the same statement sent straight
through libpq. A :class:`PreparedStatement` is prepared once per connection
under a fixed name, then sent with parameters the caller has already turned
into bytes (text format, ``bytea`` in binary), and its rows come back in
binary for the caller to decode with the helpers below.

Errors are psycopg's, raised as its cursor would raise them, so the driver's
error handling (:func:`jobs_database.raw.dbapi_errors`) treats both paths
alike.
"""

from __future__ import annotations

import hashlib
import struct
import weakref
from collections.abc import Sequence
from typing import Any

generators: Any
pq: Any
errors: Any
try:
    from psycopg import errors, generators, pq
except ImportError:  # pragma: no cover - PostgreSQL support not installed
    errors = generators = pq = None

#: PostgreSQL type OIDs of the parameter types used here.
OIDS = {
    "bool": 16,
    "bytea": 17,
    "int8": 20,
    "int2": 21,
    "int4": 23,
    "text": 25,
    "float8": 701,
    "varchar": 1043,
}

_FLOAT8 = struct.Struct(">d")
_TID = struct.Struct(">IH")

# The statements already prepared on each connection (a new connection starts empty).
_PREPARED: weakref.WeakKeyDictionary[Any, set[bytes]] = weakref.WeakKeyDictionary()

#: SQLSTATE of "prepared statement does not exist" (the session was reset).
_NO_SUCH_STATEMENT = "26000"


def usable(connection: Any) -> bool:
    """Whether a statement may run on ``connection`` this way.

    Not when its owner turned psycopg's own prepared statements off
    (``prepare_threshold=None``, as behind a pooler in transaction mode), and
    not as the first statement of a transaction: psycopg sends the ``BEGIN``
    before a cursor's first statement, and only the cursor knows to. The
    driver then runs the same SQL through the cursor.
    """
    if getattr(connection, "prepare_threshold", None) is None:
        return False
    return bool(connection.autocommit) or connection.pgconn.transaction_status == pq.TransactionStatus.INTRANS


class PreparedStatement:
    """One SQL statement with ``$1, $2, ...`` parameters of the given types."""

    def __init__(self, purpose: str, sql: str, types: Sequence[str]) -> None:
        digest = hashlib.sha1(sql.encode(), usedforsecurity=False).hexdigest()[:12]
        self.name = f"jobs_{purpose}_{digest}".encode()
        self.sql = sql.encode()
        self.types = [OIDS[t] for t in types]
        self.formats = [1 if t == "bytea" else 0 for t in types]

    def run(self, connection: Any, params: Sequence[bytes | None]) -> list[tuple[bytes | None, ...]]:
        """Run on ``connection`` (a psycopg connection, idle); the rows, each value in binary."""
        pgconn = connection.pgconn
        prepared = _PREPARED.get(connection)
        if prepared is None:
            prepared = _PREPARED[connection] = set()
        for attempt in (1, 2):
            if self.name not in prepared:
                pgconn.send_prepare(self.name, self.sql, param_types=self.types)
                _result(connection, connection.wait(generators.execute(pgconn)))
                prepared.add(self.name)
            pgconn.send_query_prepared(
                self.name, params, param_formats=self.formats, result_format=pq.Format.BINARY
            )
            try:
                result = _result(connection, connection.wait(generators.execute(pgconn)))
            except Exception as exc:
                if attempt == 1 and getattr(exc, "sqlstate", None) == _NO_SUCH_STATEMENT:
                    prepared.clear()
                    continue
                raise
            fields = range(result.nfields)
            value = result.get_value
            return [tuple(value(row, field) for field in fields) for row in range(result.ntuples)]
        raise AssertionError("unreachable")  # pragma: no cover


def _result(connection: Any, results: list[Any]) -> Any:
    """The last result of a statement; psycopg's error if one failed."""
    for result in results:
        if result.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
            raise errors.error_from_result(result, encoding=connection.info.encoding)
    return results[-1]


def text(value: object) -> bytes:
    """A parameter in text format: ``str``, ``int`` or ``float`` (``repr`` reads back exactly)."""
    if type(value) is float:
        return repr(value).encode()
    return str(value).encode()


def to_int(value: bytes | None) -> int:
    """A binary ``int2``, ``int4`` or ``int8``."""
    assert value is not None
    return int.from_bytes(value, "big", signed=True)


def to_float(value: bytes | None) -> float:
    """A binary ``float8``."""
    assert value is not None
    number: float = _FLOAT8.unpack(value)[0]
    return number


def to_str(value: bytes | None) -> str:
    """A binary ``text`` or ``varchar``."""
    assert value is not None
    return value.decode()


def to_tid(value: bytes | None) -> str:
    """A binary ``tid`` (a row's address), in its text form ``(block,offset)``."""
    assert value is not None
    block, offset = _TID.unpack(value)
    return f"({block},{offset})"
