"""What every benchmarked job does, whatever the library: append one line to a file.

The line is ``<time the job ran> <time it was enqueued, or 0>``; the file is
named by ``BENCH_PEERS_OUT``. One ``write`` with ``O_APPEND`` per job, so
threads and processes of any worker share the file safely. Drain rates and
latencies are computed from these lines alone, the same way for every library.
"""

from __future__ import annotations

import os
import time

_fd = -1
_pid = 0


def record(enqueued_at: float) -> None:
    """Note that a job ran now; ``enqueued_at`` is its enqueue time (0.0 when not measured)."""
    global _fd, _pid
    now = time.time()
    if _pid != os.getpid():  # opened once per process (also after a fork)
        _fd = os.open(os.environ["BENCH_PEERS_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _pid = os.getpid()
    os.write(_fd, b"%.6f %.6f\n" % (now, enqueued_at))
