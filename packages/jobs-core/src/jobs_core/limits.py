"""The limits of a job: what dispatch accepts, and what a worker reads back exactly.

A value inside these limits round-trips exactly on every backend and with
either JSON library. Dispatch refuses anything outside them with an error of
:mod:`jobs_core.errors` that names the option or the payload path; a stored
record outside them (written by other means) is moved to the failed store
with the reason when a worker reads it, and the jobs behind it run.
"""

from __future__ import annotations

#: Containers (objects and arrays) nested within each other in a payload or
#: its headers: ``{"a": [1]}`` nests 2 deep. JSON libraries decode deeper data
#: by recursion, so a deeper payload could be stored but never read back.
MAX_NESTING = 100

#: Integers in a payload: at most this many bits of magnitude (about 1,200
#: decimal digits), well inside what every JSON decoder here reads exactly.
MAX_INT_BITS = 4000

#: Priorities are 32-bit signed integers (a database column holds them).
MIN_PRIORITY = -(2**31)
#: See :data:`MIN_PRIORITY`.
MAX_PRIORITY = 2**31 - 1

#: Retries after the first failed attempt, and attempts counted: 32-bit.
MAX_RETRIES = 2**31 - 1

#: Seconds in any duration (a delay, a retry delay, a timeout, a unique ttl):
#: one hundred years. Finite, never NaN, never negative.
MAX_SECONDS = 100 * 365 * 86400.0

#: Unix timestamps (``available_at``, ``created_at``): up to the year 9999.
MAX_TIMESTAMP = 253402300799.0

#: Characters in a unique key (a database column holds it).
MAX_UNIQUE_KEY = 255

#: Characters in a job name (a database column holds it).
MAX_JOB_NAME = 255

#: Characters in an ordering key (``Job.key``): on Kafka, the record key.
MAX_KEY = 255

#: Jobs of one ordering key that may run at once: 32-bit, like the counts above.
MAX_KEY_CONCURRENCY = 2**31 - 1

#: Characters of an error text kept with a failed attempt (the summary line and
#: the end of the traceback are kept; the middle is cut). Every backend's
#: error column and a Kafka dead-letter record hold this much.
MAX_ERROR_CHARS = 16000
